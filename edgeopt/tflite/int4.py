"""INT4 kernels in a .tflite through ai-edge-quantizer (Google's quantizer for LiteRT models), an optional dependency.

TF 2.21's converter writes no INT4 tensors. ai-edge-quantizer (``pip install ai-edge-quantizer==0.10.0``, pure
Python on top of ai-edge-litert 2.3.0, which it pins; edgeopt's extra ``edgeopt[int4]``) quantizes a float .tflite itself:
:func:`quantize_int4` asks it for static "w4a8" quantization, int8 activations calibrated on sample inputs
(min/max over them, as its own interpreter sees them), int8 input and output, every weight symmetric per output
channel, CONV_2D and FULLY_CONNECTED kernels of the chosen layers as INT4 (scale max|w_c| / 7, codes in [-7, 7],
packed two to a byte) and all other kernels int8. It has no INT4 DEPTHWISE_CONV_2D: depthwise kernels stay int8.

What LiteRT (ai-edge-litert 2.3, x86) does with such a file, measured: CONV_2D with an INT4 filter runs on
TFLite's built-in kernel (XNNPACK leaves it), FULLY_CONNECTED with INT4 weights is delegated to XNNPACK; both
read the INT4 tensor (no DEQUANTIZE op in the graph). ai-edge-quantizer leaves operator versions as the float
file had them (1), so a runtime too old for INT4 kernels fails when it prepares the op, not when it reads the file.

For the weights of a stripped low-bit model (levels k * D_c with the largest level Q * D_c reached in every
channel, see :mod:`edgeopt.tflite.lowbit`) the INT4 scale max|w_c| / 7 = Q D_c / 7 stores each level exactly:
code 7 k / Q (k itself at 4 bits; +-7 and 0 at 2 bits and binary).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable

import numpy as np

from edgeopt.tflite.flatbuffer import OPS, builtin_code, read_model
from edgeopt.tflite.lowbit import kernel_ops

PACKAGE = "ai-edge-quantizer"
INSTALL = "pip install 'ai-edge-quantizer==0.10.0' (or pip install -e '.[int4]')"
INT4_OPS = {OPS.CONV_2D: "CONV_2D", OPS.FULLY_CONNECTED: "FULLY_CONNECTED"}  # what ai-edge-quantizer writes as INT4


class Int4Unavailable(ImportError):
    """ai-edge-quantizer (or what it imports) is not installed; the message says how to install it."""


def available() -> bool:
    """Whether :func:`quantize_int4` can run here (ai-edge-quantizer imports)."""
    try:
        require()
    except Int4Unavailable:
        return False
    return True


def require() -> None:
    """Raise :class:`Int4Unavailable` (one line: the package and the pip command) unless ai-edge-quantizer imports."""
    _aeq()


def _aeq():
    """ai-edge-quantizer's ``quantizer``, ``recipe_manager`` and ``qtyping`` modules, or :class:`Int4Unavailable`."""
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    except ImportError as err:
        raise Int4Unavailable(f"mode='int4' needs {PACKAGE} ({err.name or err} is not installed): {INSTALL}") from None
    return quantizer, recipe_manager, qtyping


def int4_ops(float_bytes: bytes, scope: str, layers: Iterable[str] | None = None) -> list[int]:
    """Indices of the operators :func:`quantize_int4` makes INT4: the CONV_2D / FULLY_CONNECTED operators of the main
    subgraph whose kernels belong to ``layers`` (Keras layer names, traced under ``scope``; see
    :func:`edgeopt.tflite.lowbit.kernel_ops`), or all of them when ``layers`` is None. DEPTHWISE_CONV_2D is never one."""
    model = read_model(float_bytes)
    codes = [builtin_code(c) for c in model.operatorCodes]
    ops = model.subgraphs[0].operators
    if layers is None:
        return [i for i, op in enumerate(ops) if codes[op.opcodeIndex] in INT4_OPS]
    layers = list(layers)
    found = kernel_ops(model, scope, layers) if layers else {}
    return sorted(i for indices in found.values() for i in indices if codes[ops[i].opcodeIndex] in INT4_OPS)


def quantize_int4(float_bytes: bytes, samples: np.ndarray, scope: str, layers: Iterable[str] | None = None,
                  num_threads: int | None = None) -> bytes:
    """The w4a8 .tflite of a float32 .tflite (module docstring): INT4 kernels in the operators :func:`int4_ops` picks,
    int8 elsewhere, int8 activations calibrated on ``samples`` (float model inputs, N x the model input's shape
    without its batch of 1). Raises :class:`Int4Unavailable` when ai-edge-quantizer is missing."""
    quantizer, recipe_manager, qtyping = _aeq()
    if samples is None or len(samples) == 0:
        raise ValueError("int4 quantization needs calibration samples (float model inputs) for its int8 activations")
    model = read_model(float_bytes)
    graph = model.subgraphs[0]
    codes = [builtin_code(c) for c in model.operatorCodes]
    recipe = recipe_manager.RecipeManager()
    recipe.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    for index in int4_ops(float_bytes, scope, layers):
        op = graph.operators[index]
        # later entries win; an op's scope is its output tensor names, each followed by ";" (ai-edge-quantizer's get_op_scope)
        exact_scope = "^" + re.escape("".join(_name(graph.tensors[t]) + ";" for t in op.outputs if t >= 0)) + "$"
        recipe.add_static_config(exact_scope, getattr(qtyping.TFLOperationName, INT4_OPS[codes[op.opcodeIndex]]),
                                 activation_num_bits=8, weight_num_bits=4)
    q = quantizer.Quantizer(bytearray(float_bytes), recipe.get_quantization_recipe())
    signature = model.signatureDefs[0]
    key, input_name = _name_of(signature.signatureKey), _name_of(signature.inputs[0].name)
    data = {key: [{input_name: np.asarray(x, np.float32)[None]} for x in samples]}
    calibration = q.calibrate(data, num_threads=num_threads or min(os.cpu_count() or 1, 4))
    return bytes(q.quantize(calibration, enable_progress_bar=False, enable_progress_report=False).quantized_model)


def _name(tensor) -> str:
    return _name_of(tensor.name)


def _name_of(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
