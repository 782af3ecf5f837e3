"""Sparse training from scratch: ERK and uniform distributions against NumPy, SNIP / GraSP scores against
hand-derived NumPy gradients, their masks exact and fixed through training, SET / RigL rewiring at constant
per-layer sparsity with RigL's cosine schedule, early-bird detection firing exactly when the mask freezes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeopt._keras import keras, tf
from edgeopt.compress import saliency
from edgeopt.compress.early_bird import EarlyBird, EarlyBirdConfig, bn_channel_mask, early_bird, mask_distance
from edgeopt.compress.masks import capped_global_counts, kernel_of, masks_of, prunable_layers
from edgeopt.compress.sparse_dynamic import DynamicSparsity, RigLConfig, SETConfig, drop_fraction_at, reset_optimizer_slots, update_masks
from edgeopt.compress.sparse_init import (GraSPConfig, SNIPConfig, erk_densities, grasp, grasp_scores, kernel_shapes, layer_sparsities,
                                          masks_at_init, random_masks, snip, snip_scores, sparse_layers, train_with_masks, training_batches,
                                          zero_counts)
from edgeopt.compress.sparse_training import METHODS, sparse_train
from edgeopt.config import RecipeError
from edgeopt.data import Splits
from edgeopt.train import TrainConfig

L = keras.layers
QUICK = TrainConfig(epochs=1, steps_per_epoch=6, learning_rate=0.01, cosine=False, verbose=0)


def convnet() -> keras.Model:
    """Stem conv (left dense by dense_first), BN, a strided conv, a 1x1 conv, the classifier: 16x16x3 digits."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = L.ReLU()(L.BatchNormalization(name="stem_bn")(x))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = L.Conv2D(24, 1, activation="relu", name="pw")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, name="fc")(x))


@pytest.fixture(scope="module")
def splits(digits_arrays):
    """Digits in a fixed order (no shuffling), so the batch SNIP / GraSP score on can be read again by the test;
    no validation split (each fit skips its validation pass)."""
    def ds(split, n):
        x, y = digits_arrays[split]
        return tf.data.Dataset.from_tensor_slices((x[:n], y[:n])).batch(32)

    return Splits(ds("train", 320), ds("val", 64), ds("test", 64), None, {"train": 320, "val": 0, "test": 64})  # no validation pass: faster


# ---- distributions ---------------------------------------------------------------------------------------------


def numpy_erk(shapes: list[tuple[int, ...]], sparsity: float) -> np.ndarray:
    """RigL's loop over arrays: solve eps, make the layers of largest raw density dense while eps * raw > 1."""
    n = np.array([np.prod(s) for s in shapes], float)
    raw = np.array([np.sum(s) for s in shapes], float) / n
    dense = np.zeros(len(shapes), bool)
    while True:
        eps = ((1 - sparsity) * n.sum() - n[dense].sum()) / (raw[~dense] * n[~dense]).sum()
        if eps * raw[~dense].max() <= 1:
            return np.where(dense, 1.0, eps * raw)
        dense |= ~dense & (raw == raw[~dense].max())


SHAPES = {"stem": (3, 3, 3, 8), "conv": (3, 3, 8, 64), "pw": (1, 1, 64, 128), "fc": (128, 10)}


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_erk_densities_match_numpy_and_the_overall_sparsity_is_exact(sparsity):
    got = erk_densities(SHAPES, sparsity)
    expected = numpy_erk(list(SHAPES.values()), sparsity)
    np.testing.assert_allclose([got[k] for k in SHAPES], expected, rtol=1e-12)
    sizes = {k: math.prod(s) for k, s in SHAPES.items()}
    assert sum(got[k] * sizes[k] for k in SHAPES) == pytest.approx((1 - sparsity) * sum(sizes.values()), rel=1e-12)
    sparse = [k for k in SHAPES if got[k] < 1]
    ratios = [got[k] / (sum(SHAPES[k]) / sizes[k]) for k in sparse]  # one eps for every layer not capped at dense
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    counts = zero_counts(SHAPES, {k: 1 - d for k, d in got.items()})
    assert sum(counts.values()) == round(sparsity * sum(sizes.values()))  # whole weights: still exact overall
    assert all(abs(counts[k] - (1 - got[k]) * sizes[k]) < 1 for k in SHAPES)


def test_erk_caps_layers_at_dense_one_round_at_a_time_and_uniform_is_flat():
    got = erk_densities(SHAPES, 0.5)
    # the stem's raw density is the largest: it is capped first; re-solved, eps * raw of the classifier exceeds 1 too
    assert got["stem"] == 1.0 and got["fc"] == 1.0 and got["conv"] < got["pw"] < 1
    assert erk_densities(SHAPES, 0.8)["stem"] < 1  # sparse enough: nothing capped
    assert layer_sparsities(SHAPES, 0.7, "uniform") == dict.fromkeys(SHAPES, 0.7)
    with pytest.raises(ValueError, match="distribution must be one of uniform, erk; got 'er'"):
        layer_sparsities(SHAPES, 0.7, "er")


def test_dense_first_leaves_the_stem_out_and_random_masks_have_exact_counts():
    model = convnet()
    assert sparse_layers(model) == ["conv", "pw", "fc"] and sparse_layers(model, dense_first=False) == ["stem", "conv", "pw", "fc"]
    names = sparse_layers(model)
    shapes = kernel_shapes(model, names)
    masks = random_masks(model, names, 0.8, "erk", seed=1)
    counts = zero_counts(shapes, layer_sparsities(shapes, 0.8, "erk"))
    assert {n: int((m == 0).sum()) for n, m in masks.items()} == counts
    assert sum(counts.values()) == round(0.8 * sum(m.size for m in masks.values()))


# ---- SNIP and GraSP --------------------------------------------------------------------------------------------


def mlp() -> keras.Model:
    keras.utils.set_random_seed(3)
    inp = keras.Input((12,))
    x = L.Dense(9, activation="tanh", name="fc1")(inp)
    return keras.Model(inp, L.Dense(5, name="fc2")(x))


def numpy_grads(w1, b1, w2, b2, x, y, temperature=1.0):
    """dL/dW1, dL/dW2 of the mean cross-entropy of softmax(logits / T), by hand, in float64."""
    h = np.tanh(x @ w1 + b1)
    z = (h @ w2 + b2) / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(w2.shape[1])[y]) / (len(y) * temperature)
    dh = dz @ w2.T * (1 - h**2)
    return x.T @ dh, h.T @ dz


def mlp_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 12)).astype(np.float32), rng.integers(0, 5, 40)


def test_snip_scores_are_abs_gradient_times_weight():
    model, (x, y) = mlp(), mlp_data()
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    g1, g2 = numpy_grads(w1, b1, w2, b2, x, y)
    got = snip_scores(model, [(tf.constant(x), tf.constant(y))], ["fc1", "fc2"])
    np.testing.assert_allclose(got["fc1"], np.abs(g1 * w1), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["fc2"], np.abs(g2 * w2), rtol=1e-4, atol=1e-7)
    # without batch norm, training and inference mode agree: SNIP at init is the per-weight Taylor saliency of one batch
    taylor = saliency.weight_scores(model, "taylor", ["fc1", "fc2"], [(tf.constant(x), tf.constant(y))], saliency.SaliencyOptions(batches=1))
    for n in ("fc1", "fc2"):
        np.testing.assert_allclose(got[n], taylor[n], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_grasp_scores_are_minus_w_times_hessian_gradient(temperature):
    model, (x, y) = mlp(), mlp_data()
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    g1, g2 = numpy_grads(w1, b1, w2, b2, x, y, temperature)
    h = 1e-4  # Hg by central differences of the gradient along g, over both kernels, as GraSP's z = g . grad(L)
    plus = numpy_grads(w1 + h * g1, b1, w2 + h * g2, b2, x, y, temperature)
    minus = numpy_grads(w1 - h * g1, b1, w2 - h * g2, b2, x, y, temperature)
    hg1, hg2 = ((p - m) / (2 * h) for p, m in zip(plus, minus))
    got = grasp_scores(model, [(tf.constant(x), tf.constant(y))], ["fc1", "fc2"], temperature)
    for name, w, hg in (("fc1", w1, hg1), ("fc2", w2, hg2)):
        expected = -w * hg
        np.testing.assert_allclose(got[name], expected, atol=2e-3 * np.abs(expected).max())


@pytest.mark.parametrize("method, config", [
    ("snip", SNIPConfig(sparsity=0.7, distribution="global", train=QUICK)),
    ("snip", SNIPConfig(sparsity=0.7, distribution="global", max_layer_sparsity=0.72, train=QUICK)),
    ("grasp", GraSPConfig(sparsity=0.8, distribution="erk", train=QUICK)),
])
def test_masks_at_init_have_the_requested_sparsity_and_stay_fixed_through_training(splits, method, config):
    model = convnet()
    names = sparse_layers(model)
    batches = training_batches(splits, 1)
    scores = snip_scores(model, batches, names) if method == "snip" else {n: -s for n, s in grasp_scores(model, batches, names).items()}
    expected = masks_at_init(scores, config.sparsity, config.distribution, config.max_layer_sparsity)  # from the untouched input, scored apart
    trained, result = (snip if method == "snip" else grasp)(model, splits, config)
    after = masks_of(trained, names)
    for n in names:
        np.testing.assert_array_equal(after[n], expected[n])  # zeros exactly where masked; every survivor trained away from 0
    shapes = kernel_shapes(model, names)
    zeros = {n: int((after[n] == 0).sum()) for n in names}
    if config.distribution == "global":
        assert sum(zeros.values()) == round(config.sparsity * sum(math.prod(s) for s in shapes.values()))
    else:
        assert zeros == zero_counts(shapes, layer_sparsities(shapes, config.sparsity, config.distribution))
    if config.max_layer_sparsity is not None:
        uncapped = masks_at_init(scores, config.sparsity, "global")
        assert any((uncapped[n] == 0).mean() > config.max_layer_sparsity for n in names)  # the cap binds on this model
        assert all(zeros[n] <= math.floor(config.max_layer_sparsity * math.prod(shapes[n])) for n in names)
    assert result.sparsity == result.zero_fraction == pytest.approx(sum(zeros.values()) / sum(m.size for m in after.values()))
    assert not np.any(trained.get_layer("stem").kernel.numpy() == 0)  # dense_first
    assert not any(np.any(model.get_layer(n).kernel.numpy() == 0) for n in names)  # the input model is not touched
    assert not np.allclose(trained.get_layer("fc").kernel.numpy(), model.get_layer("fc").kernel.numpy())  # it trained


def test_a_capped_global_ranking_holds_each_layer_at_the_cap_and_moves_the_rest_down_the_ranking():
    """Layer ``a`` holds the 100 lowest scores: a global ranking removing 200 of 400 weights cuts it whole; capped at
    0.9 it keeps its 10 best and the 10 it no longer loses go to ``b``'s next-lowest scores, the total exact."""
    rng = np.random.default_rng(0)
    scores = {"a": rng.random((10, 10)), "b": 1.0 + rng.random((3, 100))}
    uncapped = masks_at_init(scores, 0.5, "global")
    assert not uncapped["a"].any() and int((uncapped["b"] == 0).sum()) == 100  # layer collapse
    capped = masks_at_init(scores, 0.5, "global", max_layer_sparsity=0.9)
    np.testing.assert_array_equal(capped["a"].ravel(), scores["a"].ravel() >= np.sort(scores["a"].ravel())[-10])  # its 10 highest kept
    np.testing.assert_array_equal(capped["b"].ravel(), scores["b"].ravel() > np.sort(scores["b"].ravel())[109])  # its 110 lowest cut
    three = {**scores, "c": np.full(50, -1.0)}  # c, then a, rank lowest: both held at the cap, b takes the rest
    counts = capped_global_counts(three, 0.5, 0.5)
    assert counts == {"a": 50, "b": 150, "c": 25} and sum(counts.values()) == round(0.5 * 450)
    later = {"a": np.linspace(0.0, 1.5, 100), "b": np.linspace(0.5, 1.5, 300), "c": np.full(100, -1.0)}
    # the ranking cuts c whole and 54 of a; c held at 60, the 40 it keeps go down the ranking and take a to 62: held too
    assert capped_global_counts(later, 0.5, 0.6) == {"a": 60, "b": 130, "c": 60}
    with pytest.raises(ValueError, match="cannot remove 0.5 of the weights with no layer above 0.3"):
        capped_global_counts(scores, 0.5, 0.3)


def test_training_from_masks_that_collapse_a_layer_says_so(splits, capsys):
    """pw (24 output channels) keeps 3 weights and conv none: both collapse (fewer weights than output channels); fc,
    kept whole, does not. Training says so before it starts and the result lists them with what each keeps."""
    model = convnet()
    names = sparse_layers(model)
    masks = {n: np.ones_like(model.get_layer(n).kernel.numpy()) for n in names}
    masks["conv"][:] = 0
    masks["pw"][:] = 0
    masks["pw"][0, 0, :3, 0] = 1
    result = train_with_masks(model, splits, masks, SNIPConfig(sparsity=0.5, train=QUICK), "snip")
    assert result.collapsed_layers == {"conv": 0, "pw": 3} and result.to_dict()["collapsed_layers"] == {"conv": 0, "pw": 3}
    assert "snip: layer collapse: the masks leave conv 0 weights for 16 output channels, pw 3 weights for 24 output channels" in capsys.readouterr().out
    assert not np.any(model.get_layer("conv").kernel.numpy()) and np.count_nonzero(model.get_layer("pw").kernel.numpy()) <= 3  # held


# ---- SET and RigL ----------------------------------------------------------------------------------------------


def test_update_masks_drops_smallest_and_grows_highest_score():
    masks = {"a": np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)}
    weights = {"a": np.array([0.5, -0.1, 0.3, -0.9, 0, 0, 0, 0], np.float32)}
    grow = {"a": np.array([9, 0, 0, 9, 0.1, 0.7, 0.2, 0.9])}  # the scores of positions still alive do not matter
    new, grown = update_masks(masks, weights, grow, 0.5)  # floor(0.5 * 4) = 2 go: |-0.1| and |0.3|; 0.9 and 0.7 grow
    assert new["a"].tolist() == [1, 0, 0, 1, 0, 1, 0, 1] and grown["a"].tolist() == [0, 0, 0, 0, 0, 1, 0, 1]
    again, regrown = update_masks(masks, weights, {"a": np.array([0, 5, 0, 0, 1, 0, 0, 0.0])}, 0.3)  # floor(1.2) = 1
    assert again["a"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and not regrown["a"].any()  # the dropped one may come back, kept as is


def test_cosine_drop_fraction_follows_rigl():
    assert drop_fraction_at(0, 0.3, 100) == pytest.approx(0.3)
    assert drop_fraction_at(25, 0.3, 100) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction_at(50, 0.3, 100) == pytest.approx(0.15)
    assert drop_fraction_at(100, 0.3, 100) == pytest.approx(0.0, abs=1e-15)
    assert drop_fraction_at(101, 0.3, 100) == 0.0 and drop_fraction_at(60, 0.3, 100, "constant") == 0.3


class _Record(keras.callbacks.Callback):
    """After every batch (after the dynamic-sparsity callback): the masks in use, and whether every masked weight
    of the kernels is zero."""

    def __init__(self, sparsity_cb):
        super().__init__()
        self.cb, self.masks, self.masked_are_zero = sparsity_cb, [], []

    def on_train_batch_end(self, batch, logs=None):
        self.masks.append({n: m.copy() for n, m in self.cb.masks.items()})
        self.masked_are_zero.append(all(np.all(kernel_of(self.model, n).numpy()[m == 0] == 0) for n, m in self.cb.masks.items()))


@pytest.mark.parametrize("grow", ["random", "gradient"])
def test_set_and_rigl_keep_each_layers_sparsity_while_the_mask_changes_and_grow_from_zero(splits, grow):
    model = convnet()
    names = sparse_layers(model)
    masks = random_masks(model, names, 0.8, "erk", seed=0)
    initial = {n: int((m == 0).sum()) for n, m in masks.items()}
    cb = DynamicSparsity(masks, grow, drop_fraction=0.3, update_every=2, end_fraction=0.8, data=splits.train, seed=0)
    record = _Record(cb)
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(splits.train, epochs=1, steps_per_epoch=10, callbacks=[cb, record], verbose=0)
    assert cb.end_step == 8 and [u.step for u in cb.updates] == [2, 4, 6]  # at step 8 the cosine has reached 0
    assert [u.fraction for u in cb.updates] == pytest.approx([0.15 * (1 + math.cos(math.pi * s / 8)) for s in (2, 4, 6)])
    assert all({n: int((m == 0).sum()) for n, m in ms.items()} == initial for ms in record.masks)  # each layer, every batch
    assert all(record.masked_are_zero)
    changed = sum(int((record.masks[-1][n] != masks[n]).sum()) for n in names)
    assert changed > 0 and all(u.changed > 0 for u in cb.updates)
    alive = sum(int((kernel_of(model, n).numpy() != 0).sum()) for n in names)  # after the last update the grown weights trained
    assert 0.98 * sum(int(cb.masks[n].sum()) for n in names) <= alive  # (one fed by a dead ReLU channel may keep a zero gradient)

    # one more update by hand: grown connections start at zero with Adam's moments cleared, the others keep theirs
    before, kernel = cb.masks["conv"].copy(), kernel_of(model, "conv")
    slots = [v for v in model.optimizer.variables if v.name in ("Adam/m/conv/kernel:0", "Adam/v/conv/kernel:0")]
    assert len(slots) == 2 and all(np.abs(s.numpy()).sum() > 0 for s in slots)
    cb.update(0.5)
    grown = (cb.masks["conv"] > 0) & (before == 0)
    assert grown.sum() > 0 and np.all(kernel.numpy()[grown] == 0) and all(np.all(s.numpy()[grown] == 0) for s in slots)
    assert all(np.abs(s.numpy()[(cb.masks["conv"] > 0) & ~grown]).sum() > 0 for s in slots)
    assert reset_optimizer_slots(model.optimizer, kernel, np.zeros(kernel.shape, bool)) == 2


def test_rigl_returns_a_plain_model_at_constant_sparsity(splits):
    config = RigLConfig(sparsity=0.75, distribution="uniform", update_every=2, end_fraction=1.0, train=QUICK)
    model = convnet()
    trained, result = sparse_train(model, splits, "rigl", config)
    names = sparse_layers(model)
    shapes = kernel_shapes(model, names)
    counts = zero_counts(shapes, dict.fromkeys(names, 0.75))
    assert result.layer_sparsity == {n: counts[n] / math.prod(shapes[n]) for n in names}  # the final masks: each layer as it started
    zeros = {n: int((m == 0).sum()) for n, m in masks_of(trained, names).items()}
    assert all(zeros[n] >= counts[n] for n in names) and result.zero_fraction == sum(zeros.values()) / sum(map(math.prod, shapes.values()))
    assert result.mask_updates == 2 and result.changed_fraction > 0 and result.method == "rigl"  # steps 2 and 4 (the cosine is 0 at 6)
    assert all(type(layer).__module__.startswith("tf_keras") for layer in trained.layers)  # nothing to strip


# ---- early-bird ------------------------------------------------------------------------------------------------


def _random_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(128, 16, 16, 3)).astype(np.float32), rng.integers(0, 10, 128)


def _dense_run(schedule, epochs: int, window: int, epsilon: float) -> tuple[EarlyBird, dict]:
    model = convnet()
    bird = EarlyBird(0.5, "magnitude", "global", window=window, epsilon=epsilon)
    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _random_data()
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[keras.callbacks.LearningRateScheduler(schedule), bird])
    return bird, history.history


EPSILON = 0.004  # 8 of the 1,992 kernel weights; at learning rate 0.5 the mask moves more than that every epoch


def test_early_bird_fires_when_the_mask_freezes():
    bird, history = _dense_run(lambda epoch, lr: 0.5 if epoch < 2 else 0.0, epochs=8, window=2, epsilon=EPSILON)
    assert bird.distances[0] >= EPSILON and bird.distances[1:] == [0.0, 0.0]  # masks after epochs 1, 2 differ; then frozen
    assert bird.epoch == 4 and len(history["loss"]) == 4  # two zero distances (epochs 3 and 4): stopped there


def test_early_bird_does_not_fire_while_the_mask_changes():
    bird, history = _dense_run(lambda epoch, lr: 0.5, epochs=5, window=2, epsilon=EPSILON)
    assert min(bird.distances) >= EPSILON and len(bird.distances) == 4  # the mask really moved every epoch
    assert bird.epoch is None and len(history["loss"]) == 5


def test_mask_distance_and_bn_channel_mask():
    a, b = {"x": np.array([1, 0, 1, 1.0]), "y": np.array([0, 0.0])}, {"x": np.array([1, 1, 0, 1.0]), "y": np.array([0, 1.0])}
    assert mask_distance(a, b) == 3 / 6
    model = convnet()
    model.get_layer("stem_bn").gamma.assign(np.arange(1, 9, dtype=np.float32) * np.array([1, -1] * 4, np.float32))
    assert bn_channel_mask(model, 0.25)["stem_bn"].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]  # |gamma| 1 and 2 go
    with pytest.raises(ValueError, match="criterion='bn' needs batch-norm layers"):
        bn_channel_mask(mlp(), 0.5)


def test_early_bird_function_prunes_the_ticket_and_retrains_it_fixed(splits):
    config = EarlyBirdConfig(sparsity=0.5, window=1, epsilon=1.0, retrain_epochs=1, train=TrainConfig(epochs=4, steps_per_epoch=2, verbose=0))
    trained, result = early_bird(convnet(), splits, config)  # any distance is below 1: emerges after epoch 2
    assert result.epoch == 2 and result.epochs_trained == 2 and len(result.distances) == 1
    masks = masks_of(trained, prunable_layers(trained))
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(0.5 * sum(m.size for m in masks.values())) and result.sparsity == 0.5


# ---- configs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, data, message", [
    (SNIPConfig, {"sparsity": 1.0}, r"sparsity must be in \(0, 1\)"),
    (SNIPConfig, {"distribution": "layer"}, "distribution must be one of uniform, erk, global"),
    (RigLConfig, {"distribution": "global"}, "distribution must be one of uniform, erk; got 'global'"),
    (GraSPConfig, {"temperature": 0}, "temperature must be > 0"),
    (SNIPConfig, {"distribution": "erk", "max_layer_sparsity": 0.98}, "max_layer_sparsity caps the global ranking; distribution 'erk'"),
    (GraSPConfig, {"sparsity": 0.9, "max_layer_sparsity": 0.8}, r"max_layer_sparsity must be in \[sparsity, 1\) = \[0.9, 1\)"),
    (RigLConfig, {"drop_fraction": 0}, r"drop_fraction must be in \(0, 1\)"),
    (SETConfig, {"update_every": 0}, "update_every must be >= 1"),
    (RigLConfig, {"end_fraction": 1.5}, r"end_fraction must be in \(0, 1\]"),
    (RigLConfig, {"schedule": "linear"}, "schedule must be one of cosine, constant"),
    (EarlyBirdConfig, {"criterion": "bn", "retrain_epochs": 2}, "retrain_epochs needs criterion='magnitude'"),
    (EarlyBirdConfig, {"window": 0}, "window must be >= 1"),
])
def test_configs_name_the_bad_field(cls, data, message):
    with pytest.raises(RecipeError, match=f"sparse.{message}"):
        cls.from_dict(data, "sparse")


def test_configs_round_trip_and_the_registry_lists_every_method():
    config = RigLConfig(sparsity=0.9, train=TrainConfig(epochs=3, verbose=0))
    assert RigLConfig.from_dict(config.to_dict()) == config
    assert METHODS.names() == ["early_bird", "grasp", "rigl", "set", "snip"]
    with pytest.raises(ValueError, match="unknown sparse training method 'lth'; known sparse training methods: early_bird, grasp"):
        sparse_train(convnet(), None, "lth")
    with pytest.raises(TypeError, match="method 'snip' takes a SNIPConfig, got RigLConfig"):
        sparse_train(convnet(), None, "snip", config)
