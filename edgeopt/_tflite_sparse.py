"""Rewrite a converted .tflite so XNNPACK's sparse (NCHW) float32 kernels can take it.

XNNPACK (through the TFLite/LiteRT XNNPACK delegate) runs a float32 graph in its sparse NCHW mode only if

1. the model holds sparse weights (``Optimize.EXPERIMENTAL_SPARSITY`` -> ``DENSIFY`` ops); the delegate then
   passes ``XNN_FLAG_HINT_SPARSE_INFERENCE`` (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc);
2. one cluster of NCHW-compatible nodes runs from a 3x3 stride-2 convolution on 3 input channels with
   padding exactly 1 on every side, through 1x1 convolutions, 3x3/5x5 depthwise convolutions with
   symmetric explicit padding, adds and activations, to a spatial mean, and its 1x1 weights are more than
   2/3 zeros (XNNPACK src/subgraph.c, ``xnn_check_nchw_compatibility`` / ``xnn_subgraph_rewrite_for_nchw``).

Condition 2 fails for every file the TF converter writes: it stores each 'same' convolution as
``padding=SAME``, the delegate hands that to XNNPACK as ``XNN_FLAG_TENSORFLOW_SAME_PADDING``, and
``xnn_check_nchw_compatibility`` rejects any depthwise convolution with that flag (the converter even folds
an explicit symmetric ``PAD`` back into ``SAME``). :func:`explicit_pad_for_xnnpack` undoes that in the
flatbuffer: every SAME convolution whose TF padding is symmetric becomes ``PAD`` (a new int32 paddings
constant and a new intermediate tensor) + the convolution with ``padding=VALID``. XNNPACK fuses a
zero ``PAD`` into the following convolution's explicit padding (``xnn_subgraph_fusion``, which runs before
the NCHW rewrite), so the delegate's graph ends up with explicit padding 1 and the flag gone.

The rewrite is exact: the new file computes the same outputs (TF's SAME pads ``total // 2`` before and the
rest after, so a symmetric case is the same zeros). Asymmetric SAME (stride 2 on an even size) is left
alone because XNNPACK's sparse path could not use it anyway; for a MobileNetV2 pick an input size of
``32 k + 1`` (for example 225) so that every stride-2 layer sees an odd size and pads symmetrically, or
rebuild the model with explicit symmetric padding (``edgeopt.compress._graph.explicit_padding``).

Sparse tensors (``DENSIFY`` ops) pass through untouched. Models over 2 GB (buffer offsets) are not supported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeopt._tflite_meta import _IDENTIFIER, _SharingBuilder, _schema, check_tflite


@dataclass(frozen=True)
class PadRewriteReport:
    """What :func:`explicit_pad_for_xnnpack_report` did: counts of convolutions per outcome."""

    padded: int  # SAME with symmetric padding -> PAD + VALID
    same_to_valid: int  # SAME that pads nothing -> VALID (no PAD needed)
    asymmetric_left: int  # SAME with asymmetric padding, left as it was
    dynamic_left: int  # SAME whose input spatial size is unknown (-1), left as it was

    def to_dict(self) -> dict:
        return dict(vars(self))


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF/TFLite 'SAME' padding (before, after) of one spatial dimension, in pixels."""
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def explicit_pad_for_xnnpack(tflite_bytes: bytes) -> bytes:
    """A copy of the model with every symmetric ``padding=SAME`` CONV_2D / DEPTHWISE_CONV_2D written as
    ``PAD`` + ``padding=VALID`` (see the module docstring for why). Outputs are unchanged."""
    return explicit_pad_for_xnnpack_report(tflite_bytes)[0]


def explicit_pad_for_xnnpack_report(tflite_bytes: bytes) -> tuple[bytes, PadRewriteReport]:
    """:func:`explicit_pad_for_xnnpack` plus a :class:`PadRewriteReport` of what changed."""
    from tensorflow.lite.tools import flatbuffer_utils

    schema = _schema()
    data = bytes(tflite_bytes)
    check_tflite(data)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    if any(getattr(b, "offset", 0) for b in model.buffers):
        raise ValueError("models stored with buffer offsets (> 2 GB) are not supported")
    conv_codes = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    pad_index = None
    counts = dict(padded=0, same_to_valid=0, asymmetric_left=0, dynamic_left=0)
    for graph in model.subgraphs:
        new_ops = []
        for op in graph.operators:
            opts = op.builtinOptions
            if codes[op.opcodeIndex] not in conv_codes or opts.padding != schema.Padding.SAME:
                new_ops.append(op)
                continue
            x = graph.tensors[op.inputs[0]]
            kernel = graph.tensors[op.inputs[1]].shape  # CONV_2D [O,kh,kw,I], DEPTHWISE [1,kh,kw,C]
            h, w = int(x.shape[1]), int(x.shape[2])
            signature = x.shapeSignature if x.shapeSignature is not None else x.shape
            if h <= 0 or w <= 0 or any(int(d) < 0 for d in signature[1:3]):
                counts["dynamic_left"] += 1
                new_ops.append(op)
                continue
            ph = same_padding(h, int(kernel[1]), opts.strideH, opts.dilationHFactor or 1)
            pw = same_padding(w, int(kernel[2]), opts.strideW, opts.dilationWFactor or 1)
            if ph[0] != ph[1] or pw[0] != pw[1]:
                counts["asymmetric_left"] += 1
                new_ops.append(op)
                continue
            opts.padding = schema.Padding.VALID
            if ph == (0, 0) and pw == (0, 0):
                counts["same_to_valid"] += 1
                new_ops.append(op)
                continue
            if pad_index is None:
                pad_index = _opcode_index(model, codes, schema.BuiltinOperator.PAD)
            new_ops.append(_insert_pad(schema, model, graph, op, pad_index, ph, pw))
            new_ops.append(op)
            counts["padded"] += 1
        graph.operators = new_ops
    builder = _SharingBuilder(len(data) + 65536)
    builder.Finish(model.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output()), PadRewriteReport(**counts)


def _opcode_index(model, codes: list[int], builtin: int) -> int:
    if builtin in codes:
        return codes.index(builtin)
    schema = _schema()
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    codes.append(builtin)
    return len(codes) - 1


def _insert_pad(schema, model, graph, conv, pad_index: int, ph: tuple[int, int], pw: tuple[int, int]):
    """New PAD operator feeding ``conv``: adds the paddings constant and the padded tensor to ``graph``."""
    x = graph.tensors[conv.inputs[0]]
    paddings = np.array([[0, 0], [ph[0], ph[1]], [pw[0], pw[1]], [0, 0]], dtype=np.int32)
    buf = schema.BufferT()
    buf.data = np.frombuffer(paddings.tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    name = x.name.decode() if isinstance(x.name, bytes) else (x.name or "t")
    const = schema.TensorT()
    const.shape = np.array([4, 2], dtype=np.int32)
    const.type = schema.TensorType.INT32
    const.buffer = len(model.buffers) - 1
    const.name = f"{name}/xnn_explicit_pad/paddings"
    graph.tensors.append(const)
    const_index = len(graph.tensors) - 1

    padded = schema.TensorT()
    grow = np.array([0, sum(ph), sum(pw), 0], dtype=np.int32)
    padded.shape = np.asarray(x.shape, dtype=np.int32) + grow
    if x.shapeSignature is not None:
        padded.shapeSignature = np.asarray(x.shapeSignature, dtype=np.int32) + grow
    padded.type = x.type
    padded.quantization = x.quantization  # PAD keeps the input's scale and zero point
    empty = schema.BufferT()
    model.buffers.append(empty)
    padded.buffer = len(model.buffers) - 1
    padded.name = f"{name}/xnn_explicit_pad"
    graph.tensors.append(padded)
    padded_index = len(graph.tensors) - 1

    pad = schema.OperatorT()
    pad.opcodeIndex = pad_index
    pad.inputs = np.array([conv.inputs[0], const_index], dtype=np.int32)
    pad.outputs = np.array([padded_index], dtype=np.int32)
    pad.builtinOptionsType = schema.BuiltinOptions.PadOptions
    pad.builtinOptions = schema.PadOptionsT()
    conv.inputs = np.array(conv.inputs, dtype=np.int32).copy()
    conv.inputs[0] = padded_index
    return pad
