"""Low-bit weight quantizers against NumPy: n-bit levels and MSE-optimal ranges, binary +-mean|w| per channel,
the depthwise channel order, and straight-through gradients compared with tf.GradientTape."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import tf
from edgeopt.compress.lowbit_quantizers import (GRID, LowBitQuantizeConfig, LowBitWeightsQuantizer, as_channels, binarize,
                                                 mse_range, qmax, quantize_kernel)


def _np_quant(w2d: np.ndarray, alpha: np.ndarray, bits: int) -> np.ndarray:
    """The narrow symmetric grid k * alpha / Q, k in [-Q, Q], per column (round half away from zero, as FakeQuant)."""
    step = alpha / qmax(bits)
    codes = np.clip(np.sign(w2d) * np.floor(np.abs(w2d) / step + 0.5), -qmax(bits), qmax(bits))
    return codes * step


def _np_mse_alpha(w2d: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the least squared error of _np_quant over alpha = max|w| * i / GRID, and the max|w| it scales."""
    top = np.abs(w2d).max(axis=0)
    errors = np.stack([((w2d - _np_quant(w2d, top * i / GRID, bits)) ** 2).sum(axis=0) for i in range(1, GRID + 1)])
    return errors.min(axis=0), top


@pytest.mark.parametrize("bits", [2, 4])
def test_nbit_levels_and_mse_ranges_match_numpy(bits, rng):
    kernel = rng.laplace(size=(3, 3, 16, 12)).astype(np.float32) * rng.uniform(0.01, 1.0, size=12).astype(np.float32)
    w2d = kernel.reshape(-1, 12)
    alpha = mse_range(tf.constant(w2d), bits).numpy()
    q = quantize_kernel(tf.constant(kernel), bits).numpy().reshape(-1, 12)
    np.testing.assert_allclose(q, _np_quant(w2d, alpha, bits), rtol=1e-5, atol=1e-7)
    best, top = _np_mse_alpha(w2d, bits)
    got = ((w2d - q) ** 2).sum(axis=0)
    np.testing.assert_allclose(got, best, rtol=1e-4)  # no other candidate range has a smaller error
    np.testing.assert_allclose(alpha / top * GRID, np.round(alpha / top * GRID), atol=1e-3)  # alpha is on the grid
    assert (alpha < top).sum() >= 6  # the MSE range clips: not the min/max range
    for c in range(12):
        assert len(np.unique(q[:, c])) <= 2 * qmax(bits) + 1  # 15 at 4 bits, 3 at 2 bits
    minmax = quantize_kernel(tf.constant(kernel), bits, ranges="minmax").numpy().reshape(-1, 12)
    np.testing.assert_allclose(np.abs(minmax).max(axis=0), top, rtol=1e-6)  # min/max keeps the largest weight


def test_binary_is_plus_minus_mean_abs_per_channel(rng):
    kernel = rng.normal(size=(3, 3, 8, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    q = quantize_kernel(tf.constant(kernel), 1).numpy().reshape(-1, 6)
    w2d = kernel.reshape(-1, 6)
    alpha = np.abs(w2d).mean(axis=0)
    np.testing.assert_allclose(q, np.where(w2d >= 0, alpha, -alpha), rtol=1e-6)
    assert all(len(np.unique(q[:, c])) == 2 for c in range(6))


def test_depthwise_channels_are_in_tflite_order(rng):
    # (kh, kw, in=3, multiplier=2): TFLite's output channel c * 2 + m; give each (c, m) its own scale
    scales = np.array([[1.0, 10.0], [100.0, 0.1], [5.0, 0.01]], np.float32)
    kernel = (rng.normal(size=(5, 5, 3, 2)) * scales).astype(np.float32)
    assert as_channels(tf.constant(kernel), depthwise=True).shape == (25, 6)
    q = quantize_kernel(tf.constant(kernel), 4, ranges="minmax", depthwise=True).numpy()
    for c in range(3):
        for m in range(2):
            w = kernel[:, :, c, m].reshape(-1, 1)
            np.testing.assert_allclose(q[:, :, c, m].reshape(-1, 1), _np_quant(w, np.abs(w).max(axis=0), 4), rtol=1e-5, atol=1e-9)
    # one range for the whole kernel would round the 0.01-scale channel to zero
    assert np.count_nonzero(q[:, :, 2, 1]) > 10


@pytest.mark.parametrize("bits", [2, 4])
def test_nbit_gradient_is_identity_inside_the_range(bits, rng):
    w = tf.Variable(rng.normal(size=(64, 5)).astype(np.float32))
    upstream = rng.normal(size=(64, 5)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantize_kernel(w, bits) * upstream)
    grad = tape.gradient(loss, w).numpy()
    alpha = mse_range(w, bits).numpy()
    inside = np.abs(w.numpy()) <= alpha
    assert 0 < inside.mean() < 1  # some weights clipped, so a wrong gradient shows either way
    np.testing.assert_array_equal(grad, np.where(inside, upstream, 0.0))


def test_binary_gradient_is_identity_inside_the_clip(rng):
    w = tf.Variable(rng.uniform(-1.5, 1.5, size=(50, 4)).astype(np.float32))
    upstream = rng.normal(size=(50, 4)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(binarize(w, clip=1.0) * upstream)
    grad = tape.gradient(loss, w).numpy()
    inside = np.abs(w.numpy()) <= 1.0
    assert 0 < inside.mean() < 1
    np.testing.assert_array_equal(grad, np.where(inside, upstream, 0.0))


def test_quantizer_and_config_round_trip():
    q = LowBitWeightsQuantizer(2, "minmax", depthwise=True, clip=0.5)
    assert LowBitWeightsQuantizer.from_config(q.get_config()).get_config() == q.get_config()
    config = LowBitQuantizeConfig(["depthwise_kernel"], ["activation"], False, bits=1, weights_only=True)
    again = LowBitQuantizeConfig.from_config(config.get_config())
    assert again.weight_quantizer.get_config() == {"bits": 1, "ranges": "mse", "depthwise": True, "clip": 1.0}
    assert again.weights_only
    with pytest.raises(ValueError, match="bits must be one of 1, 2, 4, 8"):
        LowBitWeightsQuantizer(3)
    with pytest.raises(ValueError, match="ranges must be one of mse, minmax"):
        LowBitWeightsQuantizer(4, "lsq")
