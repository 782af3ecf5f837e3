"""Collaborative optimization: PQAT keeps sparsity, PCQAT keeps sparsity and clusters into the int8 .tflite."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import float_ops, to_int8
from edgeopt._keras import keras
from edgeopt.compress.cluster import ClusterConfig, cluster, selected_layers, strip_clustering, weight_report
from edgeopt.compress.collaborative import pcqat, pqat, prune_to_sparsity, tflite_weight_report
from edgeopt.models import create


def _sparsity_of_qat_kernels(q, names):
    """Fraction of zeros in the float kernels the QAT model trains, per original layer name."""
    out = {}
    for layer in q.layers:
        inner = getattr(layer, "layer", None)
        if inner is not None and inner.name in names:
            out[inner.name] = float(np.mean(inner.kernel.numpy() == 0))
    return out


@pytest.mark.slow  # 17 s; PQAT's sparsity in the int8 file is tested by test_compress_stages
def test_pqat_keeps_sparsity_within_one_percent(digits_splits):
    x, y = digits_splits.arrays("train", limit=64)
    model = create("mobilenet_v1_tiny", input_shape=x.shape[1:], classes=10)
    pruned = prune_to_sparsity(model, 0.5, digits_splits.train, steps=4, learning_rate=1e-3)
    before = {r.name: r.sparsity for r in weight_report(pruned) if r.layer_type in ("Conv2D", "Dense")}
    assert all(abs(s - 0.5) < 0.02 for s in before.values()), before
    q = pqat(pruned)
    q.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", run_eagerly=True)
    for i in range(3):
        q.train_on_batch(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
    after = _sparsity_of_qat_kernels(q, set(before))
    assert set(after) == set(before)
    assert all(after[n] >= before[n] - 0.01 for n in before), (before, after)


@pytest.mark.slow
def test_prune_cluster_pcqat_survives_into_int8_tflite(digits_splits):
    x, y = digits_splits.arrays("train", limit=64)
    model = create("mobilenet_v1_tiny", input_shape=x.shape[1:], classes=10)
    pruned = prune_to_sparsity(model, 0.5, digits_splits.train, steps=4, learning_rate=1e-3)
    cfg = ClusterConfig(number_of_clusters=16, preserve_sparsity=True)
    clustered = cluster(pruned, cfg)
    clustered.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", run_eagerly=True)
    clustered.train_on_batch(x[:32], y[:32])
    clustered = strip_clustering(clustered)
    q = pcqat(clustered)
    q.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", run_eagerly=True)
    q.train_on_batch(x[:32], y[:32])
    tflite = to_int8(q, x[:32])
    assert float_ops(tflite) == []
    report = tflite_weight_report(tflite, min_size=16)
    for name in selected_layers(clustered, cfg):
        kernel = [r for r in report if f"quant_{name}/" in r.name and r.layer_type == "int8" and r.sparsity > 0]
        assert len(kernel) == 1, (name, [r.name for r in report])
        # pruned to 50% and clustered to 16: both survive BN folding and int8 quantization, per output channel
        assert kernel[0].sparsity >= 0.49 and kernel[0].max_unique_per_channel <= 16, kernel[0]


def _kernel_var(wrapper):
    return next(w for w in wrapper.weights if w.name.split("/")[-1] in ("kernel:0", "depthwise_kernel:0"))


def test_pcqat_keeps_zeros_and_clusters_of_convolutions_that_feed_a_relu(digits_splits):
    # Clustering folds BN, so each convolution feeds its ReLU6 directly: TF-MOT's LayerReLUQuantize would give
    # it a no-op quantize config and its kernel would train in float, losing zeros and centroids.
    x, y = digits_splits.arrays("train", limit=64)
    model = create("mobilenet_v1_tiny", input_shape=x.shape[1:], classes=10)
    pruned = prune_to_sparsity(model, 0.5, digits_splits.train, steps=2, learning_rate=1e-3)
    cfg = ClusterConfig(number_of_clusters=16, preserve_sparsity=True)
    clustered = strip_clustering(cluster(pruned, cfg))
    names = set(selected_layers(clustered, cfg))
    assert not any(type(l).__name__ == "BatchNormalization" for l in clustered.layers)
    q = pcqat(clustered)
    wrappers = {l.layer.name: l for l in q.layers if getattr(l, "layer", None) is not None and l.layer.name in names}
    assert set(wrappers) == names
    q.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", run_eagerly=True)
    for i in range(3):
        q.train_on_batch(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
    for name, wrapper in wrappers.items():
        assert any(w.name.endswith("kernel_min:0") for w in wrapper.weights), f"{name}: kernel not fake-quantized"
        kernel = _kernel_var(wrapper).numpy()
        assert np.mean(kernel == 0) >= 0.49, (name, np.mean(kernel == 0))
        # TF-MOT keeps centroids per output channel when every channel holds (about) all of them
        per_channel = kernel.reshape(-1, kernel.shape[-1])
        most = max(len(np.unique(per_channel[:, c])) for c in range(per_channel.shape[1]))
        assert most <= 16, (name, most)


def test_qat_of_conv_feeding_relu_quantizes_weights_not_the_conv_output(tmp_path):
    from edgeopt.compress.quantize import quantize, quantize_scope

    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="conv")(inp)
    h = keras.layers.ReLU(6.0, name="relu")(h)
    h = keras.layers.Add(name="add")([h, h])
    h = keras.layers.ReLU(name="add_relu")(h)
    out = keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D(name="gap")(h))
    q = quantize(keras.Model(inp, out))
    conv = q.get_layer("quant_conv")
    assert type(conv.quantize_config).__name__ == "WeightsOnlyQuantizeConfig"
    assert {w.name.split("/")[-1] for w in conv.weights} >= {"kernel_min:0", "kernel_max:0"}
    assert not any("output_m" in w.name or "post_activation" in w.name for w in conv.weights)
    assert type(q.get_layer("quant_add").quantize_config).__name__ == "NoOpQuantizeConfig"  # Add -> ReLU as TF-MOT does
    path = tmp_path / "qat.h5"
    q.save(path)
    with quantize_scope():
        loaded = keras.models.load_model(path)
    probe = np.random.default_rng(0).random((2, 8, 8, 3), np.float32)
    np.testing.assert_allclose(loaded.predict(probe, verbose=0), q.predict(probe, verbose=0), atol=1e-5)


def _clustered_kernel(shape, rng, zeros: bool):
    """A kernel of 16 distinct values (one of them 0 at half the positions when ``zeros``)."""
    centroids = np.linspace(-1, 1, 16, dtype=np.float32)
    centroids[np.argmin(np.abs(centroids))] = 0.0 if zeros else 0.05
    kernel = rng.choice(centroids[centroids != 0] if zeros else centroids, size=shape).astype(np.float32)
    if zeros:
        kernel[rng.random(shape) < 0.5] = 0.0
    return kernel


def _pcqat_probe_model():
    # "first" has no zeros (an unpruned linear projection); "second" and "fc" are pruned and clustered. No ReLU
    # directly after the convolutions: they take their quantize config from the scheme's registry.
    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="first")(inp)
    h = keras.layers.Activation("tanh", name="tanh")(keras.layers.Conv2D(16, 1, name="second")(h))
    out = keras.layers.Dense(4, name="fc")(keras.layers.GlobalAveragePooling2D(name="gap")(h))
    model = keras.Model(inp, out)
    for name, zeros in (("first", False), ("second", True), ("fc", True)):
        layer = model.get_layer(name)
        layer.kernel.assign(_clustered_kernel(tuple(layer.kernel.shape), rng, zeros))
    return model


@pytest.mark.parametrize("scales, kernel_range_shape", [("per_tensor", ()), ("per_channel", (16,))])
def test_pcqat_keeps_zeros_after_a_layer_without_any_and_scales_clustered_kernels_as_asked(scales, kernel_range_shape):
    # TF-MOT shares one weight quantizer among all Conv2D layers and switches its sparsity preservation off at
    # the first layer without zeros: "second" then lost its zeros in training. edgeopt gives each layer its own.
    from edgeopt.compress.quantize import QATConfig

    model = _pcqat_probe_model()
    before = model.get_layer("second").kernel.numpy()
    q = pcqat(model, QATConfig(clustered_scales=scales))
    second = q.get_layer("quant_second")
    kernel_min = next(w for w in second.weights if w.name.endswith("kernel_min:0"))
    assert tuple(kernel_min.shape) == kernel_range_shape
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 8, 8, 3), np.float32), rng.integers(0, 4, 32)
    q.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    for i in range(3):
        q.train_on_batch(x, y)
    after = _kernel_var(second).numpy()
    assert not np.array_equal(after, before), "the kernel did not train"
    np.testing.assert_array_equal(after == 0, before == 0)
