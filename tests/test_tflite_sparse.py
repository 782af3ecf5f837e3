"""explicit_pad_for_xnnpack: exact PAD + VALID rewrite of SAME convolutions, and the XNNPACK sparse check."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.tflite.flatbuffer import list_ops
from edgeopt.tflite.xnnpack import (
    explicit_pad_for_xnnpack,
    explicit_pad_for_xnnpack_report,
    same_padding,
    xnnpack_sparse_eligibility,
)


def _tiny_mobilenet(size: int) -> keras.Model:
    """Stem 3x3/2 on RGB, an inverted-residual-like body (3x3 depthwise s1 and s2, 1x1 convs, an add), mean, dense.
    80% of every 1x1 kernel is zero (XNNPACK's sparse path needs > 2/3)."""
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = inp = keras.Input((size, size, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    y = L.Conv2D(8, 1)(y)
    x = L.Add()([x, y])
    x = L.Conv2D(32, 1, activation="relu6")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(x)
    x = L.Conv2D(48, 1, activation="relu6")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(4)(x)
    model = keras.Model(inp, out)
    for layer in model.layers:
        if isinstance(layer, L.Conv2D) and not isinstance(layer, L.DepthwiseConv2D) and layer.kernel_size == (1, 1):
            k, b = layer.get_weights()
            k = rng.standard_normal(k.shape).astype(np.float32)
            k[np.abs(k) <= np.quantile(np.abs(k), 0.8)] = 0.0
            layer.set_weights([k, rng.standard_normal(b.shape).astype(np.float32)])
    return model


@functools.lru_cache(maxsize=None)
def _converted(size: int, sparse: bool) -> bytes:
    from edgeopt.export import convert

    return convert(_tiny_mobilenet(size), "float32", sparse_weights=sparse, explicit_pad=False)


def _outputs(data: bytes, x: np.ndarray, xnnpack: bool) -> np.ndarray:
    from edgeopt.tflite.runtime import make_interpreter, predict

    it = make_interpreter(data, xnnpack=xnnpack)
    it.allocate_tensors()
    return predict(it, x)


def _counts(data: bytes) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in list_ops(data):
        counts[op.op] = counts.get(op.op, 0) + 1
    return counts


def test_same_padding_matches_tf():
    assert same_padding(32, 3, 1) == (1, 1)
    assert same_padding(224, 3, 2) == (0, 1)  # asymmetric: TF pads bottom/right only
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(9, 5, 1) == (2, 2)
    assert same_padding(10, 1, 1) == (0, 0)


@pytest.mark.parametrize("sparse", [False, True])
def test_rewrite_is_exact_and_adds_one_pad_per_3x3(sparse, rng):
    before = _converted(17, sparse)  # 17 -> 9 -> 5: every stride-2 layer sees an odd size, pads symmetrically
    after, report = explicit_pad_for_xnnpack_report(before)
    ops_before, ops_after = _counts(before), _counts(after)
    assert report.padded == 3 and report.asymmetric_left == 0 and report.dynamic_left == 0
    assert ops_after.get("PAD", 0) == ops_before.get("PAD", 0) + 3
    assert ops_after.get("DENSIFY", 0) == ops_before.get("DENSIFY", 0)  # sparse tensors kept
    assert (ops_before.get("DENSIFY", 0) > 0) == sparse
    assert {k: v for k, v in ops_after.items() if k != "PAD"} == {k: v for k, v in ops_before.items() if k != "PAD"}
    x = rng.standard_normal((3, 17, 17, 3)).astype(np.float32)
    for xnnpack in (True, False):
        np.testing.assert_allclose(_outputs(after, x, xnnpack), _outputs(before, x, xnnpack), rtol=1e-5, atol=1e-5)


def test_rewrite_makes_xnnpack_sparse_path_eligible():
    before = _converted(17, True)
    check = xnnpack_sparse_eligibility(before)
    assert check.has_sparse_weights and not check.would_switch
    assert any("XNN_FLAG_TENSORFLOW_SAME_PADDING" in b for b in check.blockers)
    after = xnnpack_sparse_eligibility(explicit_pad_for_xnnpack(before))
    assert after.would_switch and after.blockers == ()
    (cluster,) = [c for c in after.clusters if c["compatible"]]
    assert cluster["zeros"] / cluster["params"] > 2 / 3
    # the dense file has the right layout too, but no sparse weights: the delegate never asks for sparse
    dense = xnnpack_sparse_eligibility(explicit_pad_for_xnnpack(_converted(17, False)))
    assert not dense.has_sparse_weights and not dense.would_switch


def test_asymmetric_same_is_left_alone(rng):
    before = _converted(16, True)  # 16 -> 8 -> 4: stride-2 SAME pads 0 before, 1 after
    after, report = explicit_pad_for_xnnpack_report(before)
    assert report.padded == 1 and report.asymmetric_left == 2
    check = xnnpack_sparse_eligibility(after)
    assert not check.would_switch
    assert any("3x3 needs explicit padding 1" in b for b in check.blockers)
    x = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(_outputs(after, x, True), _outputs(before, x, True), rtol=1e-5, atol=1e-5)


def test_rejects_non_tflite():
    from edgeopt.tflite.flatbuffer import InvalidModelError

    with pytest.raises(InvalidModelError):
        explicit_pad_for_xnnpack(b"not a model at all, not a model")


def test_to_tflite_sparse_float32_is_rewritten_and_says_whether_xnnpack_would_go_sparse():
    from edgeopt.export import to_tflite

    model = _tiny_mobilenet(33)  # odd sizes: every SAME padding symmetric
    x = np.random.default_rng(3).normal(size=(16, 33, 33, 3)).astype(np.float32)
    art = to_tflite(model, "float32", x, num_calibration=8, num_verify=8, sparse_weights=True)
    assert art.verification.top1_agreement == 1.0
    assert _counts(art.model_bytes).get("PAD", 0) >= 2 and _counts(art.model_bytes).get("DENSIFY", 0) >= 1
    assert art.manifest["xnnpack_sparse"]["would_switch"] is True
    assert art.manifest["xnnpack_sparse"]["has_sparse_weights"] is True
