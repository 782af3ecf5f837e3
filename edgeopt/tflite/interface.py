"""The input/output types of a full-integer .tflite: int8 (what the converter writes) or uint8 (what a camera gives).

Android's image APIs hand an app raw RGB bytes (0..255). A full-integer model with an int8 input makes
the app subtract 128 from every byte; MediaPipe's ImageClassifier refuses it ("Requested one of these
types: uint8/float32, got INT8"). :func:`retype_io` gives such a model uint8 input and output by the
same edit TensorFlow's converter makes for ``inference_input_type=tf.uint8``: a QUANTIZE op in front
that re-quantizes uint8 -> int8 (same scale, zero point + 128: exact) and one at the end for the
output. The int8 graph between them is untouched, so the file computes what the int8 file computes.
"""
from __future__ import annotations

import numpy as np

from edgeopt.tflite.flatbuffer import OPS, TENSOR_TYPES, builtin_code, io_tensors, read_model, schema, write_model

IO_TYPES = ("uint8", "int8")
_QUANTIZE_VERSION = 2  # QUANTIZE with int8/uint8 on both sides (requantization) is version 2 of the op
_UINT8_OFFSET = 128


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or "")


def _opcode_index(model, code: int, version: int) -> int:
    for i, op_code in enumerate(model.operatorCodes):
        if builtin_code(op_code) == code and op_code.version == version:
            return i
    op_code = schema.OperatorCodeT()
    op_code.builtinCode, op_code.deprecatedBuiltinCode, op_code.version = code, min(code, 127), version
    model.operatorCodes.append(op_code)
    return len(model.operatorCodes) - 1


def _uint8_twin(model, graph, index: int, suffix: str, quantization: tuple[float, int] | None = None) -> int:
    """A new uint8 tensor with the shape of int8 tensor ``index``, its scale and zero point + 128 unless
    ``quantization`` (scale, zero point) says otherwise."""
    old = graph.tensors[index]
    twin = schema.TensorT()
    twin.shape = np.array(old.shape, np.int32)
    twin.shapeSignature = None if old.shapeSignature is None else np.array(old.shapeSignature, np.int32)
    twin.type = TENSOR_TYPES.UINT8
    twin.name = _name(old)
    old.name = _name(old) + suffix  # the app-facing name stays on the app-facing tensor
    q = schema.QuantizationParametersT()
    if quantization is None:
        q.scale = np.array(old.quantization.scale, np.float32)
        q.zeroPoint = np.array(old.quantization.zeroPoint, np.int64) + _UINT8_OFFSET
    else:
        q.scale, q.zeroPoint = np.array([quantization[0]], np.float32), np.array([quantization[1]], np.int64)
    twin.quantization = q
    buf = schema.BufferT()
    model.buffers.append(buf)
    twin.buffer = len(model.buffers) - 1
    graph.tensors.append(twin)
    return len(graph.tensors) - 1


def _quantize_op(opcode: int, src: int, dst: int):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, np.array([src], np.int32), np.array([dst], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.QuantizeOptions
    op.builtinOptions = schema.QuantizeOptionsT()
    return op


def io_dtypes(data: bytes) -> tuple[str, str]:
    """(input dtype, output dtype) of the main subgraph's first input and output."""
    ins, outs = io_tensors(data)
    return ins[0].dtype, outs[0].dtype


def pixel_quantization(mean: float, std: float) -> tuple[float, int]:
    """The uint8 input quantization under which a raw pixel byte p *is* the model input (p - mean) / std:
    scale 1 / std, zero point mean (rounded: a mean of 127.5 becomes 128, half a step off)."""
    if not std or not 0 <= mean <= 255:
        raise ValueError(f"pixel normalization needs std != 0 and mean in [0, 255]; got mean={mean}, std={std}")
    return 1.0 / float(std), int(round(mean))


def retype_io(data: bytes, io: str = "uint8", input_quantization: tuple[float, int] | None = None) -> bytes:
    """A full-integer model with ``io`` ("uint8" or "int8") input and output tensors; see the module docstring.

    ``input_quantization`` (scale, zero point) sets the uint8 input's own quantization, e.g.
    :func:`pixel_quantization` so raw camera bytes are the input whatever range calibration saw; the
    QUANTIZE op in front then re-quantizes to the int8 tensor's scale. Default: the int8 input's scale
    and zero point + 128 (an exact copy).

    ``data`` must have int8 (or already uint8) per-tensor quantized inputs and outputs; a model that is
    already of type ``io`` is returned unchanged. uint8 -> int8 is not supported (export int8 instead).
    """
    if io not in IO_TYPES:
        raise ValueError(f"io must be one of {', '.join(IO_TYPES)}; got {io!r}")
    current = io_dtypes(data)
    if current == (io, io):
        return data
    if io == "int8" or set(current) != {"int8"}:
        raise ValueError(f"cannot change a model with {current[0]} input and {current[1]} output to {io}; "
                         "only int8 -> uint8 is supported: export with mode='int8' and io='uint8'")
    model = read_model(data)
    graph = model.subgraphs[0]
    for index in (*graph.inputs, *graph.outputs):
        q = graph.tensors[index].quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            raise ValueError(f"tensor {_name(graph.tensors[index])!r} is not per-tensor quantized; cannot give it a uint8 twin")
    opcode = _opcode_index(model, OPS.QUANTIZE, _QUANTIZE_VERSION)
    renamed = {}
    new_inputs, head = [], []
    for index in graph.inputs:
        twin = _uint8_twin(model, graph, int(index), "_int8", input_quantization)
        head.append(_quantize_op(opcode, twin, int(index)))
        new_inputs.append(twin)
        renamed[int(index)] = twin
    new_outputs, tail = [], []
    for index in graph.outputs:
        twin = _uint8_twin(model, graph, int(index), "_int8")
        tail.append(_quantize_op(opcode, int(index), twin))
        new_outputs.append(twin)
        renamed[int(index)] = twin
    graph.operators = [*head, *graph.operators, *tail]
    graph.inputs, graph.outputs = np.array(new_inputs, np.int32), np.array(new_outputs, np.int32)
    for signature in model.signatureDefs or []:
        for entry in (*(signature.inputs or []), *(signature.outputs or [])):
            entry.tensorIndex = renamed.get(int(entry.tensorIndex), entry.tensorIndex)
    return write_model(model, len(data) + 4096)
