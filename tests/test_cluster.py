"""Weight clustering: config validation, layer selection, unique values per layer after stripping."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.cluster import ClusterConfig, cluster, selected_layers, strip_clustering, weight_report
from edgeopt.models import create


def test_config_validates_and_round_trips():
    cfg = ClusterConfig(number_of_clusters=8, centroid_init="density", per_channel=True, layers=("a",), exclude=("b",))
    assert ClusterConfig.from_dict(cfg.to_dict()) == cfg
    for bad, field in ((dict(number_of_clusters=1), "number_of_clusters"), (dict(centroid_init="kmeans"), "centroid_init"),
                       (dict(policy="everything"), "policy"), (dict(layers="conv"), "layers")):
        with pytest.raises(ValueError, match=field):
            ClusterConfig(**bad)


def test_selection_by_policy_and_name():
    model = create("mobilenet_v2_tiny", input_shape=(16, 16, 3), classes=4)
    convs = selected_layers(model, ClusterConfig(number_of_clusters=4, policy="conv"))
    both = selected_layers(model, ClusterConfig(number_of_clusters=4))
    assert "block1a_project_conv" in convs and not any(n.endswith("_dwconv") for n in both)
    assert set(both) == set(convs) | {"classifier"}
    assert selected_layers(model, ClusterConfig(layers=("classifier",))) == ["classifier"]
    assert "classifier" not in selected_layers(model, ClusterConfig(exclude=("classifier",)))
    with pytest.raises(ValueError, match="does not have"):
        selected_layers(model, ClusterConfig(layers=("nope",)))


def _train_steps(model, x, y, steps=3):
    # eager on purpose: for three steps, tracing the clustered model's train function costs more than it saves
    # (measured: the per-channel test below 48 s eager vs 160 s traced, the others 3-5 s vs 7-8 s)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", run_eagerly=True)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density", "random"])
def test_unique_values_per_layer_at_most_clusters_after_strip(init, digits_splits):
    x, y = digits_splits.arrays("train", limit=32)
    model = create("mobilenet_v1_tiny", input_shape=x.shape[1:], classes=10)
    before = [w.copy() for w in model.get_weights()]
    cfg = ClusterConfig(number_of_clusters=8, centroid_init=init)
    stripped = strip_clustering(_train_steps(cluster(model, cfg), x, y))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # input untouched
    report = {r.name: r for r in weight_report(stripped)}
    chosen = selected_layers(model, cfg)
    assert chosen and all(report[n].unique_values <= 8 for n in chosen)
    # unclustered float weights really are all distinct, so the check above can fail
    assert all(r.unique_values > 8 for r in weight_report(model) if r.name in chosen)
    np.testing.assert_allclose(stripped(x).numpy().sum(1), 1.0, rtol=1e-4)


def _half_zero_convnet():
    """A bias-free stem (as the zoo's conv + batch norm), a 3x3 Conv2D with a bias on 16 channels and a
    classifier, half of every kernel zeroed as magnitude pruning would."""
    L = keras.layers
    inp = keras.Input((16, 16, 3))
    x = L.ReLU()(L.Conv2D(16, 3, strides=2, use_bias=False, name="stem")(inp))
    x = L.ReLU()(L.Conv2D(16, 3, use_bias=True, name="conv_bias")(x))
    model = keras.Model(inp, L.Dense(10, activation="softmax", name="classifier")(L.GlobalAveragePooling2D()(x)))
    for name in ("stem", "conv_bias", "classifier"):
        layer = model.get_layer(name)
        w = layer.get_weights()
        w[0][np.abs(w[0]) < np.median(np.abs(w[0]))] = 0.0
        layer.set_weights(w)
    return model


def test_per_channel_and_sparsity_preserving(digits_splits):
    x, y = digits_splits.arrays("train", limit=32)
    model = _half_zero_convnet()
    cfg = ClusterConfig(number_of_clusters=4, per_channel=True, preserve_sparsity=True, policy="conv_dense")
    assert selected_layers(model, cfg) == ["stem", "conv_bias", "classifier"]
    stripped = strip_clustering(_train_steps(cluster(model, cfg), x, y))
    before = {r.name: r for r in weight_report(model)}
    after = {r.name: r for r in weight_report(stripped)}
    for name in ("stem", "conv_bias", "classifier"):
        assert before[name].sparsity >= 0.49 and after[name].sparsity >= before[name].sparsity - 0.01, after[name]  # the zeros stayed
    # a Conv2D with a bias gets one table of 4 values per output channel: more than 4 values in the kernel
    assert after["conv_bias"].max_unique_per_channel <= 4 < after["conv_bias"].unique_values, after["conv_bias"]
    # TF-MOT cannot cluster a bias-free Conv2D per channel, nor a Dense layer: one table for the whole kernel
    assert after["stem"].unique_values <= 4 and after["classifier"].unique_values <= 4, (after["stem"], after["classifier"])
    assert all(before[n].unique_values > 4 for n in after if n in before and n in selected_layers(model, cfg))  # the checks above can fail
