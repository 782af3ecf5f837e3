"""Cost tables: multiply-add curves are exact against edgeopt's profile (linear in one group's width), the separable
prediction misses exactly the interaction of two adjacent groups, measured points are made monotone, tables round-trip;
with noise on the base measurements an injected separable latency is predicted exactly (one outlier: the median base)
or never below the measured floor (every base off); int8_latency converts each distinct model once and only re-times
a model measured again (conversion and timing counted through monkeypatched stand-ins)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress import cost_table as cost_table_module
from edgeopt.compress.cost_table import (CostTable, GroupCurve, count_macs, floor_channels, int8_latency, measure_table, model_digest,
                                        strongest_channels, table_counts)
from edgeopt.compress.graph import clone_with_weights
from edgeopt.compress.structured import rebuild
from edgeopt.costs import profile

L = keras.layers


def convnet() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(L.Conv2D(12, 3, strides=2, padding="same", name="conv1")(inp)))
    x = L.ReLU(name="relu2")(L.BatchNormalization(name="bn2")(L.Conv2D(10, 3, strides=2, padding="same", name="conv2")(x)))
    return keras.Model(inp, L.Dense(10, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))


def test_counts_and_floor():
    assert floor_channels(4, 1) == 4 and floor_channels(5, 4) == 8 and floor_channels(3, 8) == 8
    assert table_counts(16, 2, 4, 1) == [2, 7, 12, 16]  # linspace(2, 16, 4) rounded up, then the width
    assert table_counts(30, 8, 3, 8) == [8, 24, 30]  # multiples of 8 (19 -> 24), then the width itself
    assert table_counts(8, 8, 4, 1) == [8]  # nothing to cut


def test_mac_curves_are_exact_and_prediction_misses_only_the_interaction():
    model = convnet()
    table = measure_table(model, {"conv1": 12, "conv2": 10}, count_macs, "macs", floor=2)
    assert table.base == profile(model).macs and table.curves["conv1"].channels == (2, 12)  # linear: two points
    for g, n in (("conv1", 5), ("conv1", 9), ("conv2", 3), ("conv2", 7)):  # between the measured points: still exact
        assert table.curves[g].at(n) == pytest.approx(profile(rebuild(model, {g: np.arange(n)})).macs)
    a, b = 4, 3  # channels removed from conv1's and conv2's groups together
    exact = profile(rebuild(model, {"conv1": np.arange(12 - a), "conv2": np.arange(10 - b)})).macs
    predicted = table.predict(table.base, {"conv1": 12, "conv2": 10}, {"conv1": 12 - a, "conv2": 10 - b})
    assert exact - predicted == pytest.approx(3 * 3 * 4 * 4 * a * b)  # conv2 (3x3, 4x4 output) reads conv1's group: n1 * n2 term


def test_cuts_keep_each_groups_strongest_channels():
    """Every cut a table times (its points and the floor model) keeps the channels with the largest L1 filter norms, not
    the first ones: an untrained cut keeping only dead channels can be a model XNNPACK refuses."""
    model = convnet()
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., :6] *= 1e-3  # the first six of conv1's twelve filters are the weakest
    model.get_layer("conv1").set_weights([kernel, bias])
    timed = []
    measure_table(model, {"conv1": 12}, lambda m: timed.append(m) or 1.0, "latency_ms", floor=4, points=2)
    cuts = [m for m in timed if m.get_layer("conv1").filters == 4]
    strongest = np.sort(np.argsort(-np.abs(kernel).sum(axis=(0, 1, 2)))[:4])  # NumPy: the four largest L1 norms
    assert len(cuts) == 2 and set(strongest) <= set(range(6, 12))  # the point at 4 channels and the floor model
    for m in cuts:
        np.testing.assert_array_equal(m.get_layer("conv1").get_weights()[0], kernel[..., strongest])
    np.testing.assert_array_equal(strongest_channels(model, ["conv1", "conv2"])("conv1", 4), strongest)
    with pytest.raises(ValueError, match="no channel group named conv9 in .*channel_groups"):
        strongest_channels(model, {"conv9": 3})


def test_paired_points_cancel_the_machines_drift():
    """The machine slows by 30% with every new model timed (a pair's two timings share it): paired points keep each cut
    model's true share of the whole model's latency; single timings carry the drift into the curve."""
    seen: list[int] = []

    def drifting_ms(m) -> float:
        if id(m) not in seen:
            seen.append(id(m))
        return separable_ms(m.get_layer("conv1").filters, m.get_layer("conv2").filters) * 1.3 ** (len(seen) - 1)

    model, whole = convnet(), separable_ms(12, 10)
    table = measure_table(model, {"conv1": 12, "conv2": 10}, drifting_ms, "latency_ms", floor=2, points=3, pairs=3)
    assert len(table.base_samples) == 3 * (2 + 2 + 1)  # 2 points per group and the floor model, 3 pairs each
    for g, true in (("conv1", lambda n: separable_ms(n, 10)), ("conv2", lambda n: separable_ms(12, n))):
        curve = table.curves[g]
        assert [v / table.base for v in curve.values] == pytest.approx([true(n) / whole for n in curve.channels])
    assert table.floor / table.base == pytest.approx(separable_ms(2, 2) / whole)
    seen.clear()
    single = measure_table(model, {"conv1": 12, "conv2": 10}, drifting_ms, "latency_ms", floor=2, points=3)
    assert single.curves["conv2"].values[0] / single.base != pytest.approx(separable_ms(12, 2) / whole)
    with pytest.raises(ValueError, match="pairs must be >= 0"):
        measure_table(model, {"conv1": 12}, drifting_ms, "latency_ms", floor=2, pairs=-1)


def test_noisy_points_are_made_monotone_and_the_table_round_trips():
    model = convnet()
    noisy = iter([10.0, 10.5, 9.0, 10.4, 8.0])  # the model as is (12 channels), conv1 cut to 2 and 7, the model again, the floor
    table = measure_table(model, {"conv1": 12}, lambda m: next(noisy), "latency_ms", floor=2, points=3)
    curve = table.curves["conv1"]
    assert table.base_samples == (10.0, 10.4) and table.base == pytest.approx(10.2) and table.floor == 8.0
    assert curve.channels == (2, 7, 12) and curve.values == (9.0, 9.0, 10.2)  # 10.5 at 2 channels > 9.0 at 7: clamped
    assert all(np.diff(curve.values) >= 0) and table.saving("conv1", 12, 7) == pytest.approx(1.2)
    assert CostTable.from_dict(table.to_dict()) == table
    old = {k: v for k, v in table.to_dict().items() if k not in ("floor", "base_samples")}  # written before floors existed
    assert CostTable.from_dict(old).floor == 0.0 and CostTable.from_dict(old).base_samples == (10.2,)
    table.check({"conv1": 12}, "latency_ms")
    with pytest.raises(ValueError, match="measures latency_ms, not macs"):
        table.check({"conv1": 12}, "macs")
    with pytest.raises(ValueError, match="no curve up to the width of groups conv1, conv2"):
        CostTable("latency_ms", 1.0, {"conv1": GroupCurve("conv1", (2, 8), (0.5, 1.0))}).check({"conv1": 12, "conv2": 10}, "latency_ms")


def separable_ms(conv1: int, conv2: int) -> float:
    """A latency that is exactly separable: 1 ms fixed, 0.25 ms per conv1 channel, 0.5 ms per conv2 channel."""
    return 1.0 + 0.25 * conv1 + 0.5 * conv2


def noisy_base(noise: list[float]):
    """A measure returning :func:`separable_ms` of the model, plus the next of ``noise`` when it is the whole model."""
    left = iter(noise)

    def measure(model) -> float:
        n1, n2 = model.get_layer("conv1").filters, model.get_layer("conv2").filters
        return separable_ms(n1, n2) + (next(left) if (n1, n2) == (12, 10) else 0.0)

    return measure


def test_base_noise_neither_scales_with_the_groups_nor_pushes_predictions_below_the_floor():
    model, full = convnet(), {"conv1": 12, "conv2": 10}
    grid = [{"conv1": a, "conv2": b} for a in range(2, 13) for b in range(2, 11)]
    # one outlier among the three base measurements (a cold first run): with it as the base, cutting both groups to 2
    # would be predicted at 9 - ((15 - 6.5) + (15 - 5)) = -9.5 ms
    table = measure_table(model, full, noisy_base([6.0, 0.0, -0.5]), "latency_ms", floor=2, points=3)
    assert table.base_samples == (15.0, 9.0, 8.5) and table.base == 9.0 and table.floor == separable_ms(2, 2)
    for widths in grid:  # the median base is exact, so is the separable prediction at every width, measured or not
        assert table.predict(separable_ms(12, 10), full, widths) == pytest.approx(separable_ms(widths["conv1"], widths["conv2"]))

    # every base measurement 3 ms high: savings are over-counted by 3 ms per group, the floor holds the prediction up
    table = measure_table(model, full, noisy_base([3.0, 3.5, 2.5]), "latency_ms", floor=2, points=3)
    assert table.base == 12.0 and table.floor == separable_ms(2, 2) == 2.5
    predicted = {tuple(w.values()): table.predict(separable_ms(12, 10), full, w) for w in grid}
    assert min(predicted.values()) == 2.5 == predicted[(2, 2)]  # 9 - (5.5 + 7) = -3.5 unclamped
    assert all(p >= separable_ms(2, 2) for p in predicted.values())
    assert table.clamp(2.0, -1.0) == 2.0 and CostTable("macs", 5.0).predict(5.0, {}, {}) == 5.0  # below the floor already; nothing cut


@pytest.fixture
def counted(monkeypatch):
    """int8 conversion and LiteRT timing replaced by counters: ``converted`` lists the filters of conv1 of each model
    converted, ``timed`` the bytes each timing got; a model's "latency" is its conv1 width (ms)."""
    calls = SimpleNamespace(converted=[], timed=[])

    def to_tflite(model, mode, calibration, **kw):
        assert mode == "int8" and kw["num_calibration"] == len(calibration) == 4
        calls.converted.append(model.get_layer("conv1").filters)
        return SimpleNamespace(model_bytes=f"int8 of {model_digest(model)}".encode())

    def measure_latency(data, **kw):
        calls.timed.append(data)
        return SimpleNamespace(median_ms=float(len(calls.converted)))

    monkeypatch.setattr(cost_table_module, "to_tflite", to_tflite)
    monkeypatch.setattr(cost_table_module, "measure_latency", measure_latency)
    return calls


def test_int8_latency_converts_a_model_measured_again_once(counted):
    model, images = convnet(), np.zeros((4, 16, 16, 3), np.float32)
    measure = int8_latency(images, runs=3, min_seconds=0.0)
    for _ in range(3):
        measure(model)
    assert counted.converted == [12] and len(counted.timed) == 3 and len(set(counted.timed)) == 1  # re-timed, converted once
    measure(clone_with_weights(model))  # the same architecture and weights: the same digest
    changed = clone_with_weights(model)
    changed.get_layer("fc").bias.assign(np.ones(10, np.float32))  # one weight differs: converted again
    measure(changed)
    assert counted.converted == [12, 12] and len(counted.timed) == 5 and counted.timed[-1] != counted.timed[0]

    # the cost table: every distinct model (2 cuts of conv1, 2 of conv2, the base, the floor) converted once; the base,
    # measured before each group's points and after the last, only re-timed
    counted.converted.clear()
    counted.timed.clear()
    table = measure_table(model, {"conv1": 12, "conv2": 10}, int8_latency(images, min_seconds=0.0), "latency_ms", floor=2, points=3)
    assert len(table.base_samples) == 3 and len(counted.timed) == 4 + 3 + 1
    assert sorted(counted.converted) == [2, 2, 7, 12, 12, 12]  # conv1 at 2 and 7; conv2 cut (conv1 whole) twice; base; floor
    assert len(set(counted.timed)) == 6

    counted.converted.clear()
    lru = int8_latency(images, keep=1)  # keeps only the last model: A, B, A converts three times; keep=0 every time
    for m in (model, changed, model):
        lru(m)
    never = int8_latency(images, keep=0)
    never(model), never(model)
    assert counted.converted == [12] * 5
    with pytest.raises(ValueError, match="keep must be >= 0"):
        int8_latency(images, keep=-1)
