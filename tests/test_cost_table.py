"""Cost tables: multiply-add curves are exact against edgeopt's profile (linear in one group's width), the separable
prediction misses exactly the interaction of two adjacent groups, measured points are made monotone, tables round-trip."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.cost_table import CostTable, GroupCurve, count_macs, floor_channels, measure_table, table_counts
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


def test_noisy_points_are_made_monotone_and_the_table_round_trips():
    model = convnet()
    noisy = iter([10.0, 10.5, 9.0])  # the model as is (12 channels), then conv1 cut to 2 and to 7 channels
    table = measure_table(model, {"conv1": 12}, lambda m: next(noisy), "latency_ms", floor=2, points=3)
    curve = table.curves["conv1"]
    assert curve.channels == (2, 7, 12) and curve.values == (9.0, 9.0, 10.0)  # 10.5 at 2 channels > 9.0 at 7: clamped
    assert all(np.diff(curve.values) >= 0) and table.saving("conv1", 12, 7) == pytest.approx(1.0)
    assert CostTable.from_dict(table.to_dict()) == table
    table.check({"conv1": 12}, "latency_ms")
    with pytest.raises(ValueError, match="measures latency_ms, not macs"):
        table.check({"conv1": 12}, "macs")
    with pytest.raises(ValueError, match="no curve up to the width of groups conv1, conv2"):
        CostTable("latency_ms", 1.0, {"conv1": GroupCurve("conv1", (2, 8), (0.5, 1.0))}).check({"conv1": 12, "conv2": 10}, "latency_ms")
