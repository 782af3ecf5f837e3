"""The shared loss derivatives: per-image losses (with a temperature), batch-norm state kept in training mode,
gradients equal to a plain GradientTape, Hessian-vector products of a linear softmax model equal to the analytic ones,
per-image squared gradients in chunks equal to NumPy's whatever the chunk, each derivative traced once per instance."""
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


def _per_image_gradients(model, x, y) -> np.ndarray:
    """Each image's gradient of its own loss over the softmax regression's kernel, (images, 4, 3), in NumPy."""
    w, b = (v.numpy().astype(np.float64) for v in model.get_layer("fc").weights)
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return np.einsum("ni,nc->nic", x.astype(np.float64), p - np.eye(3)[y])


def test_squared_per_image_gradients_in_chunks_match_numpy():
    model, (x, y) = softmax_regression(False), _data()
    expected = (_per_image_gradients(model, x, y) ** 2).sum(axis=0)
    d = LossDerivatives(model, ["fc"])
    traced, seen = d._squared, []
    d._squared = lambda xc, yc: seen.append(int(xc.shape[0])) or traced(xc, yc)  # the images each Jacobian sees
    for chunk, sizes in ((1, [1] * 8), (3, [3, 3, 2]), (8, [8]), (100, [8])):
        seen.clear()
        got = d.squared_per_image(x, y, chunk)[0].numpy()
        assert seen == sizes and got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        d.squared_per_image(x, y, 0)


def test_each_derivative_is_traced_once_for_any_batch_chunk_and_label_dtype():
    model, (x, y) = softmax_regression(False), _data()
    d = LossDerivatives(model, ["fc"])
    v = tf.constant(np.random.default_rng(1).normal(size=(2, 4, 3)).astype("float32"))
    for n in (8, 3, 5, 8):
        for labels in (y[:n], tf.constant(y[:n], tf.int32), y[:n, None].astype(np.uint8)):
            d.gradient(x[:n], labels)
            d.squared_per_image(x[:n], labels, chunk=3)
            d.hvp(tf.constant(x[:n], tf.float64), labels, [v])
    assert d.tracing_counts() == {"gradient": 1, "squared_per_image": 1, "hvp": 1}
    np.testing.assert_allclose(d.gradient(x[:3], y[:3])[0].numpy(), _per_image_gradients(model, x[:3], y[:3]).mean(0), rtol=1e-4, atol=1e-6)
    d.hvp(x, y, [v[:1]])  # another number of vectors: its own trace
    assert d.tracing_counts()["hvp"] == 2
