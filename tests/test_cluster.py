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


def test_per_channel_and_sparsity_preserving(digits_splits):
    x, y = digits_splits.arrays("train", limit=32)
    model = create("mobilenet_v1_tiny", input_shape=x.shape[1:], classes=10)
    # zero half of every selected kernel, as magnitude pruning would
    for layer in model.layers:
        if layer.name in selected_layers(model, ClusterConfig(policy="conv_dense")):
            w = layer.get_weights()
            k = w[0]
            k[np.abs(k) < np.median(np.abs(k))] = 0.0
            layer.set_weights([k, *w[1:]])
    cfg = ClusterConfig(number_of_clusters=4, per_channel=True, preserve_sparsity=True, policy="conv_dense")
    stripped = strip_clustering(_train_steps(cluster(model, cfg), x, y))
    before = {r.name: r for r in weight_report(model)}
    for r in weight_report(stripped):
        if r.name in selected_layers(model, cfg):
            assert r.sparsity >= before[r.name].sparsity - 0.01, r
            limit = 4 if r.layer_type == "Conv2D" else 4  # per channel for Conv2D, per layer for Dense
            got = r.max_unique_per_channel if r.layer_type == "Conv2D" else r.unique_values
            assert got <= limit, r
