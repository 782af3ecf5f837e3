"""Model sources: user files (.keras, .h5, SavedModel; tf_keras and Keras 3), flattening nested models,
tf_keras.applications backbones with a head, and the checks that refuse code or a model that does not fit.
Every model here is tiny (16x16 or 32x32 inputs) and trains for at most two steps."""
from __future__ import annotations

import importlib
import textwrap

import numpy as np
import pytest

from conftest import assert_sparsity
from edgeopt import export
from edgeopt._keras import ends_in_softmax, keras, tf
from edgeopt.compress.prune import PruneConfig, planned_sparsity, prune, pruning_callbacks, strip_pruning
from edgeopt.compress.quantize import QATConfig, quantize
from edgeopt.models import sources
from edgeopt.tflite.flatbuffer import io_tensors

L = keras.layers
SHAPE = (16, 16, 3)


def _x(n: int = 8, shape=SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


def _randomize_bn(model) -> None:
    """Non-trivial BatchNormalization statistics, so a wrong training flag or lost weights shows in the outputs."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])


def _backbone(name: str = "backbone") -> keras.Model:
    inp = keras.Input(SHAPE)
    x = L.Conv2D(8, 3, strides=2, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(6.0, name="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(16, 1, name="pw")(x)
    model = keras.Model(inp, x, name=name)
    _randomize_bn(model)
    return model


def _nested(backbone: keras.Model, name: str = "outer") -> keras.Model:
    """The transfer-learning pattern: the backbone is one layer of the classifier, called with training=False."""
    inp = keras.Input(backbone.input_shape[1:])
    x = backbone(inp, training=False)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dropout(0.2, name="drop")(x)
    x = L.Dense(10, name="conv")(x)  # same name as a backbone layer: the nested one must be renamed
    return keras.Model(inp, L.Activation("softmax", name="predictions")(x), name=name)


def _twice_nested() -> keras.Model:
    middle_in = keras.Input(SHAPE)
    middle = keras.Model(middle_in, L.Conv2D(16, 1, name="extra")(_backbone()(middle_in)), name="middle")
    return _nested(middle, name="outer2")


def _assert_flat(model) -> None:
    assert isinstance(model, keras.Model) and model._is_graph_network and not isinstance(model, keras.Sequential)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))


def _max_diff(a, b, x) -> float:
    return float(np.abs(np.asarray(a(x, training=False)) - np.asarray(b(x, training=False))).max())


@pytest.fixture(scope="module")
def nested():
    keras.utils.set_random_seed(0)
    return _nested(_backbone())


@pytest.fixture(scope="module")
def flat_nested(nested):
    return sources.flatten_model(nested)


# ---- flatten_model ---------------------------------------------------------------------------------------


def test_flatten_nested_keeps_outputs_weights_and_names(nested, flat_nested):
    _assert_flat(flat_nested)
    assert flat_nested.input_shape == nested.input_shape == (None, *SHAPE)
    assert [l.name for l in flat_nested.layers[1:]] == ["backbone_conv", "bn", "relu", "dw", "pw", "pool", "drop", "conv", "predictions"]
    assert _max_diff(flat_nested, nested, _x()) <= 1e-6
    assert np.array_equal(flat_nested.get_layer("backbone_conv").get_weights()[0], nested.get_layer("backbone").get_layer("conv").get_weights()[0])
    # training=False on the nested call still holds for its BatchNormalization: features in training mode agree too
    x = _x()
    flat_pool, nested_pool = (keras.Model(m.input, m.get_layer("pool").output) for m in (flat_nested, nested))
    assert float(np.abs(flat_pool(x, training=True).numpy() - nested_pool(x, training=True).numpy()).max()) <= 1e-6


def test_flatten_twice_nested_and_sequential():
    keras.utils.set_random_seed(0)
    twice = _twice_nested()
    flat = sources.flatten_model(twice)
    _assert_flat(flat)
    assert "middle_backbone_conv" in [l.name for l in flat.layers]
    assert _max_diff(flat, twice, _x()) <= 1e-6

    seq = keras.Sequential([keras.Input(SHAPE), L.Conv2D(4, 3, name="c"), L.BatchNormalization(), L.Flatten(), L.Dense(3)], name="seq")
    _randomize_bn(seq)
    flat_seq = sources.flatten_model(seq)
    _assert_flat(flat_seq)
    assert flat_seq.name == "seq" and _max_diff(flat_seq, seq, _x()) <= 1e-6


def test_flat_model_is_returned_as_is_and_shared_nested_is_refused(flat_nested):
    assert sources.flatten_model(flat_nested) is flat_nested
    bb, inp = _backbone(), keras.Input(SHAPE)
    shared = keras.Model(inp, L.Add()([bb(inp), bb(inp)]), name="twice_called")
    with pytest.raises(ValueError, match="nested model 'backbone' is called 2 times in 'twice_called'"):
        sources.flatten_model(shared)


# ---- user files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["keras", "h5", "savedmodel"])
def test_tf_keras_files_load_flat_with_the_same_outputs(nested, tmp_path, fmt):
    path = tmp_path / ("model" if fmt == "savedmodel" else f"model.{fmt}")
    nested.save(path, save_format="tf") if fmt == "savedmodel" else nested.save(path)
    model = sources.load_model(path)
    _assert_flat(model)
    assert _max_diff(model, nested, _x()) <= 1e-6


def test_unknown_format_and_missing_file_name_the_file_and_the_formats(tmp_path):
    odd = tmp_path / "model.pt"
    odd.write_bytes(b"x")
    for path, why in ((odd, "is not a format edgeopt reads"), (tmp_path / "none.keras", "does not exist")):
        with pytest.raises(ValueError) as err:
            sources.load_model(path)
        assert str(path) in str(err.value) and why in str(err.value) and ".keras" in str(err.value) and "\n" not in str(err.value)


def test_savedmodel_without_keras_metadata_says_to_save_as_keras(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "exported"))
    with pytest.raises(ValueError, match=r"without Keras metadata.*model.save\(\"x.keras\"\)"):
        sources.load_model(tmp_path / "exported")


def _with_lambda() -> keras.Model:
    inp = keras.Input((4,))
    return keras.Model(inp, L.Dense(2)(L.Lambda(lambda t: t * 2.0, name="my_lambda")(inp)))


@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])  # "": a SavedModel directory
def test_lambda_layer_is_refused_unless_allowed(tmp_path, suffix):
    model = _with_lambda()
    path = tmp_path / f"lambda{suffix}"
    model.save(path, save_format=None if suffix else "tf")
    with pytest.raises(ValueError) as err:
        sources.load_model(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "layer 'my_lambda' is a Lambda layer" in msg and "allow_custom_code = true" in msg and "\n" not in msg
    loaded = sources.load_model(path, allow_custom_code=True)
    x = _x(3, (4,))
    assert _max_diff(loaded, model, x) <= 1e-6


CUSTOM_MODULE = '''
from edgeopt._keras import keras


class TimesTwo(keras.layers.Layer):
    def call(self, x):
        return x * 2.0
'''


@pytest.fixture
def custom_layer_file(tmp_path, monkeypatch):
    (tmp_path / "my_layers_for_test.py").write_text(textwrap.dedent(CUSTOM_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("my_layers_for_test")
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="head")(mod.TimesTwo(name="times_two")(inp)))
    path = tmp_path / "custom.keras"
    model.save(path)
    return path, model


def test_custom_layer_is_refused_then_loaded_from_the_named_module(custom_layer_file):
    path, model = custom_layer_file
    with pytest.raises(ValueError) as err:
        sources.load_model(path)
    msg = str(err.value)
    assert "layer 'times_two' has class 'TimesTwo'" in msg and 'custom_module = "your.module"' in msg and "\n" not in msg
    with pytest.raises(ValueError, match="set allow_custom_code = true as well"):
        sources.load_model(path, custom_module="my_layers_for_test")
    loaded = sources.load_model(path, allow_custom_code=True, custom_module="my_layers_for_test")
    assert type(loaded.get_layer("times_two")).__name__ == "TimesTwo"
    assert _max_diff(loaded, model, _x(3, (4,))) <= 1e-6


# ---- applications -----------------------------------------------------------------------------------------


def test_application_model_is_flat_with_the_zoo_head():
    model = sources.application_model("MobileNetV2", (32, 32, 3), 7, alpha=0.35)
    _assert_flat(model)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 7)
    assert [l.name for l in model.layers[-4:]] == ["avg_pool", "top_dropout", "classifier", "predictions"] and ends_in_softmax(model)
    assert sources.application_normalization("MobileNetV2") == (127.5, 127.5)
    assert sources.application_normalization("EfficientNetB0") == (0.0, 1.0)
    assert "MobileNetV2" in sources.list_applications() and "ResNet50" not in sources.list_applications()


def test_application_weights_load_by_path_and_bad_ones_are_refused(tmp_path):
    keras.utils.set_random_seed(3)
    donor = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    _randomize_bn(donor)
    donor.save_weights(tmp_path / "notop.h5")
    model = sources.application_model("MobileNetV2", (32, 32, 3), 5, weights=tmp_path / "notop.h5", alpha=0.35)
    for name in ("Conv1", "bn_Conv1", "block_16_project"):
        for got, want in zip(model.get_layer(name).get_weights(), donor.get_layer(name).get_weights()):
            assert np.array_equal(got, want)
    head = keras.Model(model.input, model.get_layer("out_relu").output)
    assert _max_diff(head, donor, _x(2, (32, 32, 3))) <= 1e-6
    with pytest.raises(ValueError, match="weights file .*missing.h5 does not exist"):
        sources.application_model("MobileNetV2", (32, 32, 3), 5, weights=tmp_path / "missing.h5", alpha=0.35)
    with pytest.raises(ValueError, match="does not fit mobilenetv2_0.50_32: Shape mismatch in layer"):  # a file from another width
        sources.application_model("MobileNetV2", (32, 32, 3), 5, weights=tmp_path / "notop.h5", alpha=0.5)
    _backbone().save_weights(tmp_path / "other.h5")
    with pytest.raises(ValueError, match=r"other.h5 does not fit mobilenetv2_0.35_32: 104 layer\(s\) missing, e.g. \['Conv1'"):
        sources.application_model("MobileNetV2", (32, 32, 3), 5, weights=tmp_path / "other.h5", alpha=0.35)


def test_application_errors_name_the_limit_and_the_known_ones():
    with pytest.raises(ValueError, match="at least 32x32 pixels; got 16x16"):
        sources.application_model("MobileNetV2", (16, 16, 3), 5)
    with pytest.raises(ValueError, match=r"unknown application 'ResNet50' \(ResNet50 is left out: caffe-style.*known: .*MobileNetV2"):
        sources.application_normalization("ResNet50")


# ---- Keras 3 ------------------------------------------------------------------------------------------------


def _keras3_model():
    """A Keras 3 classifier of every bridged kind: nested Sequential, Rescaling, Normalization, hard-swish, ..."""
    k3 = importlib.import_module("keras")
    K = k3.layers
    k3.utils.set_random_seed(0)
    inner = k3.Sequential([k3.Input((8, 8, 8)), K.DepthwiseConv2D(3, padding="same"), K.BatchNormalization(), K.Activation("hard_silu"),
                           K.Conv2D(8, 1, activation="relu6")], name="inner")
    inp = k3.Input(SHAPE)
    x = K.Rescaling(0.5, offset=0.1)(inp)
    x = K.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 0.5])(x)
    x = K.ZeroPadding2D(1)(x)
    x = K.Activation("swish")(K.BatchNormalization()(K.Conv2D(8, 3, strides=2)(x)))
    x = K.Add()([x, inner(x)])
    x = K.Multiply()([x, K.SeparableConv2D(8, 3, padding="same", activation="sigmoid")(x)])
    x = K.Concatenate()([x, K.ReLU(max_value=6.0)(x)])
    x = K.AveragePooling2D(2)(K.MaxPooling2D()(x))
    g = K.Reshape((16,))(K.GlobalAveragePooling2D(keepdims=True)(x))
    x = K.Concatenate()([g, K.GlobalMaxPooling2D()(x), K.Flatten()(x)])
    x = K.Dense(10)(K.Dropout(0.2)(x))
    model = k3.Model(inp, K.Activation("softmax")(x), name="k3net")
    rng = np.random.default_rng(1)
    for layer in [*model.layers, *inner.layers]:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def keras3_pair(tmp_path_factory):
    model = _keras3_model()
    path = tmp_path_factory.mktemp("k3") / "k3net.keras"
    model.save(path)
    return model, sources.load_model(path)


def test_keras3_file_bridges_to_flat_tf_keras_with_equal_outputs(keras3_pair):
    k3_model, model = keras3_pair
    _assert_flat(model)
    assert isinstance(model, keras.Model) and model.input_shape == (None, *SHAPE)
    x = _x(8) * 3.0
    logits_k3 = importlib.import_module("keras").Model(k3_model.input, k3_model.layers[-1].input)
    logits_tf = keras.Model(model.input, model.layers[-1].input)
    assert float(np.abs(logits_tf(x).numpy() - np.asarray(logits_k3(x))).max()) <= 1e-5
    assert float(np.abs(model(x).numpy() - np.asarray(k3_model(x))).max()) <= 1e-5


def test_keras3_layer_without_bridge_is_named(tmp_path):
    k3 = importlib.import_module("keras")
    inp = k3.Input((4,))
    k3.Model(inp, k3.layers.Dense(2)(k3.layers.LayerNormalization(name="ln")(inp))).save(tmp_path / "ln.keras")
    with pytest.raises(ValueError) as err:
        sources.load_model(tmp_path / "ln.keras")
    msg = str(err.value)
    assert "layer 'ln' has class LayerNormalization" in msg and "supported: Activation, Add" in msg and "save the model with tf_keras" in msg
    assert "\n" not in msg


# ---- the compression steps work on what the sources return -----------------------------------------------


def _prune_two_steps(model):
    config = PruneConfig(schedule="constant", final_sparsity=0.5, frequency=1)
    pruned = prune(model, config)
    pruned.compile("sgd", "sparse_categorical_crossentropy")
    x = _x(16, tuple(model.input_shape[1:]))
    pruned.fit(x, np.arange(16) % 10, batch_size=8, epochs=1, verbose=0, callbacks=pruning_callbacks(config))
    stripped = strip_pruning(pruned)
    targets = planned_sparsity(model, config)
    assert targets  # something was pruned
    assert_sparsity(stripped, targets)


@pytest.mark.parametrize("which", ["nested", "keras3"])
def test_prune_qat_and_int8_export_on_flattened_and_bridged_models(which, flat_nested, keras3_pair):
    model = flat_nested if which == "nested" else keras3_pair[1]
    _prune_two_steps(model)
    # edgeopt's QAT policy has no rule for SeparableConv2D (the Keras 3 model has one): it stays float
    qat = quantize(model, QATConfig(float_layers=tuple(l.name for l in model.layers if type(l).__name__ == "SeparableConv2D")))
    art = export.to_tflite(qat, "int8", _x(16, tuple(model.input_shape[1:])), num_calibration=16, num_verify=0)
    ins, outs = io_tensors(art.model_bytes)
    assert ins[0].dtype == outs[0].dtype == "uint8" and tuple(ins[0].shape) == (1, *SHAPE) and tuple(outs[0].shape) == (1, 10)


# ---- does the model fit the data ---------------------------------------------------------------------------


def test_check_model_fits_names_both_sides(flat_nested):
    assert sources.check_model_fits(flat_nested, SHAPE, 10, "digits") is flat_nested
    with pytest.raises(ValueError) as err:
        sources.check_model_fits(flat_nested, SHAPE, 3, "folder:/x", class_names=("cat", "dog", "fox"), model_source="my.keras")
    assert str(err.value).startswith("model my.keras outputs 10 classes") and "dataset folder:/x has 3 (class names cat, dog, fox)" in str(err.value)
    with pytest.raises(ValueError, match=r"takes input \(H, W, C\) = \(16, 16, 3\) but dataset digits gives \(32, 32, 3\)"):
        sources.check_model_fits(flat_nested, (32, 32, 3), 10, "digits")


def test_none_spatial_dims_are_fixed_to_the_data_size():
    inp = keras.Input((None, None, 3))
    free = keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inp))))
    fixed = sources.check_model_fits(free, (24, 24, 3), 4, "digits")
    assert fixed.input_shape == (None, 24, 24, 3)
    assert _max_diff(fixed, free, _x(2, (24, 24, 3))) <= 1e-6


def test_tf_op_layers_load_without_allowing_code(tmp_path):
    """``x * 2 + 1`` in a tf_keras Functional model is saved as TFOpLambda layers naming TensorFlow functions: standard, not code."""
    from edgeopt._keras import keras
    from edgeopt.models import load_model

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inp) * 2.0 + 1.0
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    model.save(tmp_path / "ops.keras")
    loaded = load_model(tmp_path / "ops.keras")
    assert {type(layer).__name__ for layer in loaded.layers} >= {"TFOpLambda"}
    data = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(data).numpy(), model(data).numpy(), atol=1e-6)


def test_cluster_and_structured_pruning_work_on_a_flattened_nested_model(flat_nested):
    """TF-MOT refuses the nested model itself; after flattening, clustering and filter pruning apply like on a zoo model."""
    from edgeopt.compress.cluster import ClusterConfig, cluster, strip_clustering
    from edgeopt.compress.structured import StructuredConfig, prune_filters

    clustered = strip_clustering(cluster(flat_nested, ClusterConfig(number_of_clusters=4, fold_batch_norms=False)))
    pw = clustered.get_layer("pw").get_weights()[0]
    assert len(np.unique(pw)) <= 4
    slim = prune_filters(flat_nested, StructuredConfig(ratio=0.5, min_channels=2))
    assert slim.get_layer("backbone_conv").get_weights()[0].shape[-1] == 4  # 8 filters -> 4
    assert slim.output_shape == flat_nested.output_shape
