"""The shared loss derivatives: per-image losses (with a temperature), batch-norm state kept in training mode,
gradients equal to a plain GradientTape, Hessian-vector products of a linear softmax model equal to the analytic ones."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras, tf
from edgeopt.compress.derivatives import KeepState, LossDerivatives, losses

L = keras.layers


def softmax_regression(softmax: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    return keras.Model(inp, L.Dense(3, activation="softmax" if softmax else None, name="fc")(inp))


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8)


@pytest.mark.parametrize("softmax", [False, True])
def test_losses_with_temperature_match_numpy(softmax):
    model, (x, y) = softmax_regression(softmax), _data()
    w, b = (v.numpy() for v in model.get_layer("fc").weights)
    z = (x @ w + b) / 4.0
    z = z - z.max(axis=1, keepdims=True)
    expected = -(z[np.arange(8), y] - np.log(np.exp(z).sum(axis=1)))
    np.testing.assert_allclose(losses(model, x, y, temperature=4.0).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_gradient_and_hvp_match_the_analytic_softmax_regression():
    model, (x, y) = softmax_regression(False), _data()
    d = LossDerivatives(model, ["fc"])
    w, b = (v.numpy().astype(np.float64) for v in model.get_layer("fc").weights)
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(3)[y]
    np.testing.assert_allclose(d.gradient(x, y)[0].numpy(), x.T @ (p - onehot) / 8, rtol=1e-4, atol=1e-6)
    v = np.random.default_rng(1).normal(size=(2, 4, 3)).astype("float32")
    hv = d.hvp(x, y, [tf.constant(v)])[0].numpy()
    for s in range(2):  # H v for the kernel: mean over images of x (diag(p) - p p^T)(v^T x) ... written per image
        expected = np.zeros((4, 3))
        for n in range(8):
            u = v[s].T @ x[n]  # (3,)
            expected += np.outer(x[n], p[n] * u - p[n] * (p[n] @ u))
        np.testing.assert_allclose(hv[s], expected / 8, rtol=1e-3, atol=1e-5)


def test_keep_state_restores_batch_norm_statistics_after_training_mode():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(3, name="fc")(L.BatchNormalization(name="bn")(inp)))
    x, y = _data()
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    with KeepState(model):
        LossDerivatives(model, ["fc"], training=True).gradient(x * 5 + 3, y)
        assert not np.allclose(model.get_layer("bn").moving_mean.numpy(), before[0])  # training mode moved them
    for w, b in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
