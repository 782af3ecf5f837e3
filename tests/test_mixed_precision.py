"""Mixed precision under a packed-size budget: the knapsack choice equals brute force over every assignment, the plan's
size is packed_size_bytes of its widths and fits the budget, the measured sensitivity is the loss of the model with
that one kernel quantized, a layer made fragile by an outlier input channel ranks first, and the Hutchinson trace
matches the analytic softmax-regression Hessian."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeopt._keras import keras, tf
from edgeopt.compress.derivatives import losses
from edgeopt.compress.lowbit import LowBitConfig, packed_size_bytes, plan_bits
from edgeopt.compress.lowbit_quantizers import quantize_kernel
from edgeopt.compress.mixed_precision import (MixedPrecisionConfig, choose_bits, hessian_traces, layer_costs, measure_sensitivity,
                                              plan_mixed_precision)

L = keras.layers


def _model(seed: int = 0) -> keras.Model:
    """Stem conv, depthwise, 1x1 conv, two dense layers on 8x8x3 inputs (5 weighted layers of unequal sizes)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = L.Conv2D(24, 1, activation="relu", name="pw")(x)
    x = L.Dense(16, activation="relu", name="mid")(L.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inp, L.Dense(5, name="fc")(x))


def _brute_force(costs, sens, capacity):
    """Least summed sensitivity over every assignment whose summed cost fits (None: nothing fits)."""
    names = list(costs)
    fits = [sum(sens[n][b] for n, b in zip(names, combo)) for combo in itertools.product(*(list(costs[n]) for n in names))
            if sum(costs[n][b] for n, b in zip(names, combo)) <= capacity]
    return min(fits) if fits else None


def test_config_validates_and_round_trips():
    cfg = MixedPrecisionConfig.from_dict({"budget_fraction": 0.5, "bits": [2, 8, 4], "metric": "hessian"})
    assert cfg.bits == (8, 4, 2) and MixedPrecisionConfig.from_dict(cfg.to_dict()) == cfg
    for bad, message in [({"budget_fraction": 1.5}, r"budget_fraction must be in \(0, 1\]"), ({"budget_bytes": -1}, "budget_bytes must be"),
                         ({"bits": [8, 3]}, "bits must be distinct widths"), ({"bits": [4, 4]}, "bits must be distinct"),
                         ({"metric": "snr"}, "metric must be one of loss, accuracy, hessian"), ({"samples": 0}, "samples must be")]:
        with pytest.raises(ValueError, match=message):
            MixedPrecisionConfig.from_dict(bad)


def test_choice_equals_brute_force_on_random_tables():
    rng = np.random.default_rng(0)
    for trial in range(40):
        layers = [f"l{i}" for i in range(int(rng.integers(4, 6)))]
        costs, sens = {}, {}
        for n in layers:  # costs and sensitivities fall with the width, as real ones do, with random steps
            sizes = sorted(rng.integers(1, 60, 3).tolist(), reverse=True)
            drops = np.sort(rng.exponential(1.0, 3))
            costs[n] = dict(zip((8, 4, 2), sizes))
            sens[n] = dict(zip((8, 4, 2), drops.tolist()))
        lo, hi = sum(min(c.values()) for c in costs.values()), sum(max(c.values()) for c in costs.values())
        for capacity in {lo, hi, int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))}:
            plan, resolution = choose_bits(costs, sens, capacity)
            assert resolution == 1 and set(plan) == set(layers)
            assert sum(costs[n][b] for n, b in plan.items()) <= capacity
            assert sum(sens[n][b] for n, b in plan.items()) == pytest.approx(_brute_force(costs, sens, capacity), abs=1e-12), (trial, capacity)
    with pytest.raises(ValueError, match="3 bytes below the smallest plan"):
        choose_bits({"a": {8: 5, 4: 2}}, {"a": {8: 0.0, 4: 1.0}}, -1)


def test_a_coarse_resolution_still_fits_the_budget():
    costs = {"a": {8: 1000, 4: 503, 2: 251}, "b": {8: 2000, 4: 1001, 2: 499}, "c": {8: 300, 4: 151, 2: 77}}
    sens = {n: {8: 0.0, 4: 0.1 * (i + 1), 2: 0.5 * (i + 1)} for i, n in enumerate(costs)}
    floor = {n: min(c.values()) for n, c in costs.items()}
    for capacity in (900, 1700, 2100, 3300):
        plan, resolution = choose_bits(costs, sens, capacity, max_table=100)
        assert resolution == -(-3 * (capacity - 827 + 1) // 100) > 1  # 3 layers x (slack + 1) cells over 100
        assert sum(costs[n][b] for n, b in plan.items()) <= capacity
        # optimal among the assignments whose costs, rounded up to the resolution, fit
        rounded = {n: {b: -(-(c - floor[n]) // resolution) for b, c in cs.items()} for n, cs in costs.items()}
        assert sum(sens[n][b] for n, b in plan.items()) == pytest.approx(_brute_force(rounded, sens, (capacity - 827) // resolution))


def test_layer_costs_add_up_to_the_packed_size():
    model = _model()
    options = {n: (8, 4, 2) for n in ("dw", "pw", "mid")}
    base, costs = layer_costs(model, options, {"stem": 8, "fc": 8})
    for combo in itertools.product((8, 4, 2), repeat=3):
        widths = {"stem": 8, "fc": 8, **dict(zip(options, combo))}
        assert packed_size_bytes(model, widths) == base + sum(costs[n][widths[n]] for n in options)


@pytest.mark.parametrize("choose_first_last", [False, True])
def test_plan_is_the_best_assignment_within_the_budget_by_packed_size(choose_first_last, rng):
    model = _model()
    x, y = rng.normal(size=(64, 8, 8, 3)).astype(np.float32), rng.integers(0, 5, 64)
    config = MixedPrecisionConfig(budget_fraction=0.75, samples=64, choose_first_last=choose_first_last)
    plan = plan_mixed_precision(model, x, y, config)
    int8 = packed_size_bytes(model, 8)
    assert plan.int8_size_bytes == int8 and plan.budget_bytes == int(0.75 * int8)
    assert list(plan.layer_bits) == list(plan_bits(model)) and plan.size_bytes == packed_size_bytes(model, plan.layer_bits) <= plan.budget_bytes
    free = [n for n in plan.layer_bits if n not in plan.fixed]
    assert plan.fixed == (() if choose_first_last else ("stem", "fc")) and set(plan.sensitivities) == set(free)
    best = None
    for combo in itertools.product((8, 4, 2), repeat=len(free)):  # every assignment, sized by packed_size_bytes itself
        widths = {**plan.layer_bits, **dict(zip(free, combo))}
        if packed_size_bytes(model, widths) <= plan.budget_bytes:
            total = sum(plan.sensitivities[n][widths[n]] for n in free)
            best = total if best is None else min(best, total)
    assert plan.sensitivity == pytest.approx(best, abs=1e-12)
    assert plan.apply(LowBitConfig(bits=1)).layer_bits == tuple(plan.layer_bits.items())
    assert plan_bits(model, plan.apply(LowBitConfig(bits=1))) == plan.layer_bits
    smallest = packed_size_bytes(model, {**plan.layer_bits, **{n: 4 for n in free}})
    with pytest.raises(ValueError, match=f"budget {smallest - 1:,} B cannot be met: the smallest plan with widths \\[8, 4\\] takes {smallest:,} B"):
        plan_mixed_precision(model, x, y, MixedPrecisionConfig(budget_bytes=smallest - 1, bits=(8, 4), samples=64, choose_first_last=choose_first_last))
    assert plan_mixed_precision(model, x, y, MixedPrecisionConfig(budget_bytes=smallest, bits=(8, 4), samples=64,
                                                                  choose_first_last=choose_first_last)).size_bytes == smallest  # exactly at the budget


def test_sensitivity_is_the_loss_with_only_that_kernel_quantized(rng):
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    x, y = rng.normal(size=(40, 8, 8, 3)).astype(np.float32), rng.integers(0, 5, 40)
    table = measure_sensitivity(model, x, y, ["dw", "mid"], (4, 2), batch_size=16)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the input is not modified
    reference = float(np.mean(losses(model, x, y).numpy()))
    for name, bits in (("dw", 2), ("mid", 4)):
        other = keras.models.clone_model(model)
        other.set_weights(model.get_weights())
        layer = other.get_layer(name)
        kernel = layer.depthwise_kernel if name == "dw" else layer.kernel
        kernel.assign(quantize_kernel(kernel, bits, "mse", depthwise=name == "dw"))
        assert table[name][bits] == pytest.approx(float(np.mean(losses(other, x, y).numpy())) - reference, rel=1e-4, abs=1e-6)


def test_an_outlier_input_channel_makes_its_layer_rank_first(digits_splits):
    """Layer b's weights from input channel 0 scaled by 30 and a's output channel 0 by 1/30 compute the same function
    (ReLU is positive-homogeneous), but b's per-channel ranges are now set by those weights, so its other weights lose
    their levels: measured on validation images, b becomes the most sensitive layer at 4 and 2 bits."""
    from edgeopt.train import TrainConfig, fit

    keras.utils.set_random_seed(0)
    inp = keras.Input(digits_splits.preprocessing.input_shape)
    x = L.Conv2D(8, 3, strides=2, activation="relu", name="a")(inp)
    x = L.Conv2D(12, 3, strides=2, activation="relu", name="b")(x)
    x = L.Conv2D(16, 3, activation="relu", name="c")(x)
    model = keras.Model(inp, L.Dense(10, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))
    fit(model, digits_splits.with_fresh_train(), TrainConfig(epochs=2, learning_rate=1e-2, verbose=0))  # the same order whatever ran before
    x_val, y_val = digits_splits.arrays("val")
    names = ["a", "b", "c", "fc"]
    before = measure_sensitivity(model, x_val, y_val, names, (4, 2))
    (ka, ba), (kb, bb) = model.get_layer("a").get_weights(), model.get_layer("b").get_weights()
    reference = model.predict(x_val, verbose=0)
    ka[..., 0] /= 30
    ba[0] /= 30
    kb[:, :, 0, :] *= 30
    model.get_layer("a").set_weights([ka, ba])
    model.get_layer("b").set_weights([kb, bb])
    np.testing.assert_allclose(model.predict(x_val, verbose=0), reference, atol=1e-4)  # the same function
    after = {metric: measure_sensitivity(model, x_val, y_val, names, (4, 2), metric) for metric in ("loss", "accuracy")}
    for metric, table in after.items():
        for bits in (4, 2):
            assert max(names, key=lambda n: table[n][bits]) == "b", (metric, bits, table)
    assert max(names, key=lambda n: before[n][2]) != "b" and after["loss"]["b"][2] > 4 * before["b"][2]  # the outlier made it fragile


def test_hutchinson_trace_matches_the_analytic_softmax_regression():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(3, name="fc")(inp))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    w, b = (v.numpy().astype(np.float64) for v in model.get_layer("fc").weights)
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    # H = mean_n (diag(p_n) - p_n p_n^T) (x) x_n x_n^T over the (4, 3) kernel: Tr H = mean_n |x_n|^2 sum_j p_nj (1 - p_nj)
    exact = float(np.mean(np.sum(x.astype(np.float64) ** 2, axis=1) * np.sum(p * (1 - p), axis=1)))
    # 32 Rademacher vectors: a standard deviation of about 6% of the trace here (sqrt(2 sum_{i != j} H_ij^2 / 32))
    estimate = hessian_traces(model, ["fc"], x, y, vectors=32, batch_size=12)["fc"]  # batches of 12, 12 and 8 images
    assert estimate == pytest.approx(exact, rel=0.2)
    assert hessian_traces(model, ["fc"], x, y, vectors=32, batch_size=32)["fc"] == pytest.approx(estimate, rel=1e-4)  # batches weigh by size
    table = measure_sensitivity(model, x, y, ["fc"], (4, 2), "hessian", vectors=32)
    error = {bits: float(tf.reduce_sum((quantize_kernel(tf.constant(w, tf.float32), bits) - w.astype(np.float32)) ** 2)) for bits in (4, 2)}
    for bits in (4, 2):  # HAWQ-v2's 1/2 Tr(H)/n ||Q(W) - W||^2
        assert table["fc"][bits] == pytest.approx(0.5 * estimate / 12 * error[bits], rel=1e-4)
