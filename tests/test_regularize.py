"""Penalties on kernels: the added losses equal a NumPy computation of L1, L2 and group lasso on the selected kernels;
group lasso concentrates a layer's norm in fewer filters than L2 at the same total norm; the penalty stays out of
the model's config, clones and the converted .tflite; near-zero shares match NumPy; recipe stages parse and apply it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgeopt._keras import keras, tf
from edgeopt.compress import prune as _prune
from edgeopt.compress.regularize import RegularizationConfig, fit_with_penalty, near_zero, regularize, regularized_layers, strip_regularization
from edgeopt.config import RecipeError
from edgeopt.pipeline.recipe import parse_recipe
from edgeopt.pipeline.stage import StageConfig
from edgeopt.pipeline.stages.train import train_stage
from edgeopt.train import TrainConfig

L = keras.layers
HEAD = '[model]\nname = "mobilenet_v1_tiny"\n[[stages]]\ntype = "train"\n'


def convnet() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(L.Conv2D(6, 3, padding="same", name="conv1")(inp)))
    x = L.ReLU(name="relu2")(L.BatchNormalization(name="bn2")(L.Conv2D(5, 3, padding="same", name="conv2")(x)))
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    return keras.Model(inp, L.Dense(4, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))


def _numpy_penalty(kernel: np.ndarray, kind: str, strength: float, sqrt_size: bool = False) -> float:
    k = kernel.astype(np.float64)
    if kind == "l1":
        return strength * np.abs(k).sum()
    if kind == "l2":
        return strength * (k**2).sum()
    filters = k.reshape(-1, k.shape[-1])  # column c: every weight producing output channel c
    return strength * (np.sqrt(filters.shape[0]) if sqrt_size else 1.0) * np.sqrt((filters**2).sum(axis=0)).sum()


@pytest.mark.parametrize("kind,sqrt_size", [("l1", False), ("l2", False), ("group_lasso", False), ("group_lasso", True)])
def test_added_losses_equal_numpy_on_the_selected_kernels(kind, sqrt_size):
    model = convnet()
    model.get_layer("conv2").kernel.assign(model.get_layer("conv2").kernel.numpy() * np.array([1, 0, 1, 1, 1], np.float32))  # a zero filter
    before = [w.copy() for w in model.get_weights()]
    config = RegularizationConfig(kind=kind, strength=3e-3, sqrt_group_size=sqrt_size)

    reg = regularize(model, config)

    assert regularized_layers(model, config) == ["conv2", "fc"]  # default policy: not the first convolution, not depthwise
    got = [float(loss) for loss in reg.losses]
    expected = [_numpy_penalty(reg.get_layer(n).kernel.numpy(), kind, 3e-3, sqrt_size) for n in ("conv2", "fc")]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert model.losses == [] and all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the input model changed"
    with tf.GradientTape() as tape:
        total = tf.add_n(reg.losses)
    grad = tape.gradient(total, reg.get_layer("conv2").kernel).numpy()
    assert np.isfinite(grad).all() and (kind != "group_lasso" or np.all(grad[..., 1] == 0))  # no NaN at the zero filter
    assert strip_regularization(reg).losses == []


def test_layers_are_chosen_by_policy_and_names_are_checked():
    model = convnet()
    assert regularized_layers(model, RegularizationConfig(first_conv=True, classifier=False)) == ["conv1", "conv2"]
    assert regularized_layers(model, RegularizationConfig(policy="explicit", layers=("conv1",))) == ["conv1"]
    assert regularized_layers(model, RegularizationConfig(exclude=("fc",))) == ["conv2"]
    with pytest.raises(ValueError, match="regularization layers names nope"):
        regularized_layers(model, RegularizationConfig(layers=("nope",)))
    # under TF-MOT's pruning wrappers the inner layers are found, and the penalty reads their kernels
    wrapped = _prune.prune(model, _prune.PruneConfig(final_sparsity=0.5, schedule="constant"))
    reg = regularize(wrapped, RegularizationConfig(kind="l1", strength=1.0))
    assert regularized_layers(wrapped, RegularizationConfig()) == ["conv2", "fc"]
    np.testing.assert_allclose([float(x) for x in reg.losses], [np.abs(model.get_layer(n).kernel.numpy()).sum() for n in ("conv2", "fc")], rtol=1e-5)


def test_config_errors_name_the_field():
    for kwargs, message in (({"kind": "l0"}, "kind must be one of group_lasso, l1, l2"), ({"strength": 0.0}, "strength must be a finite number > 0"),
                            ({"policy": "all"}, "policy must be one of default, explicit, xnnpack"),
                            ({"policy": "explicit"}, "layers must name the layers"), ({"sqrt_group_size": True}, "sqrt_group_size applies to")):
        with pytest.raises(ValueError, match=message):
            RegularizationConfig(**kwargs)


@pytest.fixture(scope="module")
def digits_8x8():
    from edgeopt.data import load_dataset

    return load_dataset("digits", image_size=8, channels=1, batch_size=64, seed=0)


def _bottleneck() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    return keras.Model(inp, L.Dense(10, name="classifier")(L.Dense(24, name="fc1")(L.Flatten(name="flatten")(inp))))


def test_group_lasso_concentrates_the_norm_in_fewer_filters_than_l2(digits_8x8):
    """Same strength, same training: both end at about the same total norm of fc1's kernel, but group lasso leaves
    the 12 smallest of its 24 filters (output units) with a far smaller share of it: whole filters go towards zero."""
    train = TrainConfig(epochs=1, steps_per_epoch=100, learning_rate=0.05, optimizer="sgd", verbose=0)
    shares, totals = {}, {}
    for kind in ("l2", "group_lasso"):
        model, _ = fit_with_penalty(_bottleneck(), digits_8x8, train, RegularizationConfig(kind=kind, strength=0.1, policy="explicit", layers=("fc1",)))
        squares = np.sort((model.get_layer("fc1").kernel.numpy().astype(np.float64) ** 2).sum(axis=0))
        shares[kind], totals[kind] = squares[:12].sum() / squares.sum(), np.sqrt(squares.sum())
        assert model.losses == []  # the trained model comes back without its penalty
    assert totals["group_lasso"] < 1.25 * totals["l2"]  # comparable overall shrinkage ...
    assert shares["group_lasso"] < 0.5 * shares["l2"], shares  # ... but group lasso empties whole filters (about 0.07 against 0.33)


def test_penalty_is_not_in_the_config_or_the_converted_model():
    from edgeopt.export import to_tflite
    from edgeopt.tflite.flatbuffer import list_ops

    model = convnet()
    reg = regularize(model, RegularizationConfig(kind="group_lasso", strength=1e-2))
    assert len(reg.losses) == 2 and reg.get_config() == model.get_config()
    x = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 3)).astype(np.float32)
    ops = [op.op for op in list_ops(to_tflite(reg, "float32", x, num_verify=0, android_metadata=False, io="float32").model_bytes)]
    assert ops == ["CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"]  # the layers (BN folded, ReLU fused), nothing of the penalty


def test_near_zero_shares_match_numpy():
    model = convnet()
    kernel = model.get_layer("conv2").kernel.numpy()
    kernel[..., 0] = 1e-4  # a whole filter far below 1% of the largest weight
    kernel[0, 0, 0, 1] = 0.0
    model.get_layer("conv2").kernel.assign(kernel)
    got = near_zero(model, eps=0.01)
    rows = {r.name: r for r in got.layers}
    assert list(rows) == ["conv1", "conv2", "fc"]  # every convolution and dense layer, not the depthwise one
    absk = np.abs(kernel)
    assert rows["conv2"].near_zero_weights == pytest.approx(np.mean((absk < 0.01 * absk.max()) | (kernel == 0)))
    norms = np.sqrt((kernel.reshape(-1, 5).astype(np.float64) ** 2).sum(axis=0))
    assert rows["conv2"].near_zero_filters == pytest.approx(np.mean(norms < 0.01 * norms.max())) and rows["conv2"].near_zero_filters == pytest.approx(0.2)
    sizes = {n: model.get_layer(n).kernel.numpy().size for n in rows}
    assert got.weights == pytest.approx(sum(rows[n].near_zero_weights * sizes[n] for n in rows) / sum(sizes.values()))
    assert got.metrics()["near_zero_eps"] == 0.01


def test_stages_parse_the_regularization_table():
    recipe = parse_recipe(HEAD + 'regularization = { kind = "group_lasso", strength = 1e-4, sqrt_group_size = true }\n'
                          '[[stages]]\ntype = "prune_structured"\nregularization = { kind = "l1" }\n'
                          '[[stages]]\ntype = "prune"\nregularization = { kind = "l2", strength = 1e-3, policy = "xnnpack" }\n'
                          '[[stages]]\ntype = "prune_saliency"\nregularization = { kind = "l1", strength = 1e-6 }\n', source="r.toml")
    train, structured, magnitude, saliency = (s.config for s in recipe.stages)
    assert train.regularization == RegularizationConfig(kind="group_lasso", strength=1e-4, sqrt_group_size=True)
    assert structured.regularization == RegularizationConfig(kind="l1") and magnitude.regularization.policy == "xnnpack"
    assert saliency.technique.regularization == RegularizationConfig(kind="l1", strength=1e-6)  # a field of the pruning config there
    with pytest.raises(RecipeError, match=r"stages\[0\]\.regularization\.kind must be one of group_lasso, l1, l2"):
        parse_recipe(HEAD + 'regularization = { kind = "l0" }\n', source="r.toml")
    with pytest.raises(RecipeError, match=r"stages\[0\]\.regularization\.strenght is not a known field"):
        parse_recipe(HEAD + 'regularization = { strenght = 1e-4 }\n', source="r.toml")
    with pytest.raises(RecipeError, match=r"stages\[1\]\.regularization is not a known field of a cluster stage"):
        parse_recipe(HEAD + '[[stages]]\ntype = "cluster"\nregularization = { kind = "l1" }\n', source="r.toml")


def test_train_stage_trains_with_the_penalty_and_reports_near_zero_shares(digits_splits):
    ctx = SimpleNamespace(splits=digits_splits, strategy=tf.distribute.get_strategy(), evaluate_test=False, train_callbacks=())
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, L.Dense(10, name="fc")(L.Flatten(name="flatten")(inp)))
    before = model.get_layer("fc").kernel.numpy().copy()
    train = TrainConfig(epochs=1, steps_per_epoch=20, learning_rate=0.01, verbose=0)

    outcome = train_stage(ctx, model, StageConfig(None, train, RegularizationConfig(kind="l1", strength=1e-2)))

    trained = outcome.model
    assert trained is not model and trained.losses == [] and np.array_equal(model.get_layer("fc").kernel.numpy(), before)
    assert outcome.metrics["near_zero_weights"] == round(near_zero(trained).weights, 4) > near_zero(model).weights  # L1 made weights near zero
    assert outcome.metrics["near_zero_eps"] == 0.01 and 0 <= outcome.metrics["near_zero_filters"] <= 1
