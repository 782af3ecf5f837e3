"""Functional-graph rewrites: batch-norm folding."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.graph import fold_batch_norms
from edgeopt.models import create


def _randomize_bn_statistics(model):
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 2, var.shape)])


@pytest.mark.parametrize("name", ["mobilenet_v1_tiny", "mobilenet_v2_tiny", "shufflenet_v1_tiny"])
def test_folding_removes_conv_batch_norms_and_keeps_outputs(name):
    model = create(name, input_shape=(16, 16, 3), classes=5)
    _randomize_bn_statistics(model)  # fresh BNs are identities: folding them would prove nothing
    folded = fold_batch_norms(model)
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    left = [l for l in folded.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not left
    assert len(folded.layers) == len(model.layers) - len(bns)
    assert all(l.use_bias for l in folded.layers if isinstance(l, keras.layers.Conv2D))
    # each batch norm's vectors (gamma, beta, mean, variance) are gone; its convolution gained a bias if it had none
    expected = model.count_params()
    for bn in bns:
        conv = bn.inbound_nodes[0].inbound_layers
        channels = int(bn.moving_mean.shape[0])
        expected -= bn.count_params() - (0 if conv.use_bias else channels)
    assert folded.count_params() == expected < model.count_params()


def test_a_batch_norm_after_a_non_conv_layer_stays():
    inp = keras.Input((8,))
    out = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(4, name="fc")(inp))
    model = keras.Model(inp, out)
    folded = fold_batch_norms(model)
    assert [l.name for l in folded.layers][1:] == ["fc", "bn"]
    x = np.ones((2, 8), np.float32)
    np.testing.assert_allclose(folded(x).numpy(), model(x).numpy())
