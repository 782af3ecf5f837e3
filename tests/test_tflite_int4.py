"""INT4 kernels (edgeopt.tflite.int4, to_tflite(..., mode="int4")): the packed INT4 reader against a packing written
here, the one-line error when ai-edge-quantizer is missing, and (when it is installed) the w4a8 file of the tiny grid
model of test_tflite_lowbit: which operators hold INT4 kernels, their codes against the Keras kernels' levels, the
depthwise kernel's exact int8 codes, the op report, the manifest, and agreement with Keras when LiteRT runs it."""
from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import pytest

from edgeopt.export import resolve_io, to_tflite
from edgeopt.tflite import int4
from edgeopt.tflite.flatbuffer import list_ops, tensor_infos, unpack_int4
from edgeopt.tflite.lowbit import kernel_ops
from test_tflite_lowbit import LEVELS, PLAN, grid_model, layer_tensors, levels, tflite_kernel

needs_aeq = pytest.mark.skipif(not int4.available(), reason=f"ai-edge-quantizer is not installed ({int4.INSTALL})")


def test_unpack_int4_reads_the_low_nibble_first():
    values = np.array([-8, 7, -1, 0, 3, -5, 6, -7, 1], np.int64)  # odd count: the last byte's high nibble is padding
    padded = np.append(values, 0)
    packed = bytes(int((lo & 0xF) | ((hi & 0xF) << 4)) for lo, hi in zip(padded[0::2], padded[1::2]))
    np.testing.assert_array_equal(unpack_int4(packed, len(values)), values)
    with pytest.raises(ValueError, match="4 bytes hold 8 int4 values, 9 expected"):
        unpack_int4(packed[:4], 9)


def test_missing_quantizer_fails_at_once_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)  # what an environment without the package imports
    assert not int4.available()
    model = grid_model()
    with pytest.raises(int4.Int4Unavailable) as err:
        to_tflite(model, "int4", np.zeros((4, 8, 8, 3), np.float32), lowbit_bits=PLAN)
    message = str(err.value)
    assert "\n" not in message and "ai-edge-quantizer" in message and "pip install 'ai-edge-quantizer==0.10.0'" in message
    with pytest.raises(ValueError, match="io='float32' is not available with mode='int4'"):
        resolve_io("int4", "float32")
    assert resolve_io("int4", None) == "uint8"


@pytest.fixture(scope="module")
def int4_export():
    model = grid_model()
    x = np.random.default_rng(1).normal(size=(300, 8, 8, 3)).astype(np.float32)
    return model, to_tflite(model, "int4", x[:200], verify_data=x[200:], lowbit_bits=PLAN, min_agreement=0.9)


@needs_aeq
def test_int4_kernels_hold_the_levels(int4_export):
    model, art = int4_export
    data = art.model_bytes
    infos, ops = tensor_infos(data), list_ops(data)
    stored = {name: infos[ops[kernel_ops(data, "tiny", [name])[name][0]].inputs[1]].dtype for name in PLAN}
    assert stored == {"stem": "int8", "dw": "int8", "pw": "int4", "mid": "int4", "fc": "int4"}  # no INT4 depthwise
    for name in ("pw", "mid", "fc", "dw"):
        kernel, _, _ = layer_tensors(data, name)
        q = LEVELS[PLAN[name]]
        truth = tflite_kernel(model, name)[0]
        step = (7 if stored[name] == "int4" else 127) // q  # INT4 scale max|w_c| / 7; int8 rewritten to floor(127 / Q)
        np.testing.assert_array_equal(kernel.values, levels(truth, kernel.axis, q) * step)
        np.testing.assert_allclose(kernel.dequantized(), truth, rtol=1e-6, atol=1e-7 * np.abs(truth).max())


@needs_aeq
def test_int4_file_runs_and_says_what_it_stores(int4_export):
    model, art = int4_export
    assert art.verification.top1_agreement >= 0.95 and art.manifest["verified_agreement"] == art.verification.top1_agreement
    ins, outs = art.manifest["input"], art.manifest["output"]
    assert ins["dtype"] == outs["dtype"] == "uint8"
    kinds = Counter()  # an entry per dtype signature: mid's FULLY_CONNECTED has no bias (moved into fc's), fc's has one
    for e in art.op_report.entries:
        if e.op in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
            kinds[(e.op, e.kernel)] += e.count
    assert kinds == {("CONV_2D", "int8"): 1, ("CONV_2D", "int8x4"): 1, ("DEPTHWISE_CONV_2D", "int8"): 1, ("FULLY_CONNECTED", "int8x4"): 2}
    assert art.op_report.all_integer
    entry = art.manifest["lowbit"]
    assert entry["int4_ops"] == {"CONV_2D": 1, "FULLY_CONNECTED": 2} and entry["exact"] is True and entry["bits"] == PLAN
    kernels = {k["layer"]: k for k in entry["kernels"]}
    assert {n: k["storage"] for n, k in kernels.items()} == {"dw": "int8", "pw": "int4", "mid": "int4", "fc": "int4"}
    assert kernels["pw"]["stored_bytes"] == 16 * 12 // 2 and kernels["fc"]["stored_bytes"] == 16 * 5 // 2  # two weights a byte
    assert kernels["fc"]["step"] == 1 and kernels["pw"]["step"] == 7 and kernels["dw"]["step"] == 18
    assert "INT4 kernels" in entry["storage"] and art.manifest["mode"] == "int4"


@needs_aeq
@pytest.mark.slow
def test_int4_without_a_plan_makes_every_conv_and_dense_int4():
    model = grid_model()
    x = np.random.default_rng(1).normal(size=(300, 8, 8, 3)).astype(np.float32)
    art = to_tflite(model, "int4", x[:200], verify_data=x[200:], io="int8", min_agreement=0.0)
    entry = art.manifest["lowbit"]
    assert entry["bits_from"] == "int4 kernels of the file" and entry["kernels"] == [] and entry["exact"] is None
    assert entry["bits"] == {"stem": 4, "dw": 8, "pw": 4, "mid": 4, "fc": 4}
    assert entry["int4_ops"] == {"CONV_2D": 2, "FULLY_CONNECTED": 2}
