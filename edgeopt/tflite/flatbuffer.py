"""Reading and editing .tflite flatbuffers without running them: validity, I/O tensors, operators, metadata.

Uses the flatbuffer schema module TensorFlow ships (``tensorflow.lite.python.schema_py_generated``), so
nothing here needs an interpreter. Metadata entries are (name, buffer) pairs in the model's ``metadata``
table, the same place the converter stores ``min_runtime_version``; runtimes ignore names they do not know.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np

from edgeopt._keras import tf  # noqa: F401  (TensorFlow must come through edgeopt._keras)
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

_MIN_BYTES = 16  # root offset + "TFL3" identifier + a vtable at the very least
IDENTIFIER = b"TFL3"


class InvalidModelError(ValueError):
    """Bytes that are not a readable .tflite flatbuffer (empty, truncated, corrupted or another format)."""


def _names_of(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def load_model_bytes(model: bytes | bytearray | str | os.PathLike) -> tuple[bytes, str]:
    """The bytes of a .tflite given as bytes or a path, plus a label for messages; checked with :func:`check_tflite`."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, label = bytes(model), f"<{len(model)} bytes>"
    else:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist")
        data, label = path.read_bytes(), str(path)
    check_tflite(data, label)
    return data, label


def check_tflite(data: bytes, label: str = "model") -> None:
    """Raise :class:`InvalidModelError` unless ``data`` parses as a complete .tflite flatbuffer.

    Checks the ``TFL3`` identifier, then walks every table and vector the runtime will read (buffers,
    tensors, operators, metadata) so that a truncated file fails here with a clear message rather than
    deep inside the interpreter.
    """
    hint = "Re-export it (edgeopt.export.to_tflite) or copy the file again; a partial download or copy truncates it."
    if len(data) < _MIN_BYTES:
        raise InvalidModelError(f"{label} is not a .tflite model: only {len(data)} bytes. {hint}")
    if data[4:8] != IDENTIFIER:
        raise InvalidModelError(f"{label} is not a .tflite model: file identifier is {data[4:8]!r}, expected {IDENTIFIER!r}. {hint}")
    try:
        _walk(data)
    except Exception as err:  # the flatbuffer accessors raise struct/index errors on out-of-range offsets
        raise InvalidModelError(f"{label} is truncated or corrupted ({type(err).__name__}: {err}). {hint}") from None


def _walk(data: bytes) -> None:
    m = schema.Model.GetRootAs(data, 0)
    if m.SubgraphsLength() < 1:
        raise ValueError("no subgraph")
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        n = b.DataLength()
        if n and b.Data(n - 1) is None:  # touches the last byte of the vector
            raise ValueError(f"buffer {i} out of range")
        if b.Offset() and b.Offset() + b.Size() > len(data):
            raise ValueError(f"buffer {i} points past the end of the file")
    for i in range(m.OperatorCodesLength()):
        m.OperatorCodes(i).BuiltinCode()
    for s in range(m.SubgraphsLength()):
        g = m.Subgraphs(s)
        for t in range(g.TensorsLength()):
            tensor = g.Tensors(t)
            tensor.ShapeAsNumpy(), tensor.Type(), tensor.Name()
        for o in range(g.OperatorsLength()):
            op = g.Operators(o)
            op.OpcodeIndex(), op.InputsAsNumpy(), op.OutputsAsNumpy()
    for i in range(m.MetadataLength()):
        m.Metadata(i).Name()
    if len(data) < max((_end_of_buffers(m)), 0):
        raise ValueError("file shorter than its buffers")


def _end_of_buffers(m) -> int:
    end = 0
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        if b.Offset():
            end = max(end, b.Offset() + b.Size())
    return end


# ---- the op-code and tensor-type tables, and the object API ----------------------------------------

OP_NAMES: dict[int, str] = _names_of(schema.BuiltinOperator)  # builtin op code -> name ("CONV_2D")
OPS = schema.BuiltinOperator  # name -> code: OPS.CONV_2D, OPS.DEPTHWISE_CONV_2D, ...
TENSOR_TYPE_NAMES: dict[int, str] = {k: v.lower() for k, v in _names_of(schema.TensorType).items()}  # 0 -> "float32"
TENSOR_TYPES = schema.TensorType  # name -> code: TENSOR_TYPES.INT8, ...


def builtin_code(op_code) -> int:
    """The builtin op code of an OperatorCode (table or object API): the larger of the two fields, since
    codes above 127 live only in ``builtin_code`` and old files fill only ``deprecated_builtin_code``."""
    if hasattr(op_code, "BuiltinCode"):
        return max(op_code.BuiltinCode(), op_code.DeprecatedBuiltinCode())
    return max(op_code.builtinCode, op_code.deprecatedBuiltinCode)


def read_model(data: bytes):
    """The model as the schema's mutable object API (``ModelT``: buffers, subgraphs, operatorCodes, ...)."""
    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def write_model(model, size_hint: int = 1024) -> bytes:
    """Pack an object-API model back into .tflite bytes (numeric vectors shared, see :class:`SharingBuilder`)."""
    builder = SharingBuilder(max(1024, size_hint))
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


# ---- tensors and operators ------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: name, shape, dtype and (for quantized tensors) scale and zero point."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


def _tensor_info(tensor) -> TensorInfo:
    q = tensor.Quantization()
    scale = zero = None
    if q is not None and q.ScaleLength() == 1:
        scale, zero = float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0])
    name = tensor.Name().decode() if tensor.Name() else ""
    return TensorInfo(name, tuple(int(v) for v in tensor.ShapeAsNumpy()), TENSOR_TYPE_NAMES[tensor.Type()], scale, zero)


def io_tensors(data: bytes) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Inputs and outputs of the main subgraph."""
    g = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    ins = [_tensor_info(g.Tensors(int(i))) for i in g.InputsAsNumpy()]
    outs = [_tensor_info(g.Tensors(int(i))) for i in g.OutputsAsNumpy()]
    return ins, outs


@dataclass(frozen=True)
class OpInstance:
    """One operator of the main subgraph with the dtypes of its inputs and outputs (optional inputs left out)."""

    op: str
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    output_name: str
    version: int = 1  # the operator code's version (what the runtime must implement)
    inputs: tuple[int, ...] = ()  # tensor indices (optional inputs, -1, left out), as tensor_infos() numbers them
    outputs: tuple[int, ...] = ()


def list_ops(data: bytes) -> list[OpInstance]:
    """Every operator of the main subgraph, in execution order."""
    m = schema.Model.GetRootAs(data, 0)
    g = m.Subgraphs(0)
    ops = []
    for o in range(g.OperatorsLength()):
        op = g.Operators(o)
        code = m.OperatorCodes(op.OpcodeIndex())
        num = builtin_code(code)
        name = OP_NAMES.get(num, f"BUILTIN_{num}")
        if name == "CUSTOM" and code.CustomCode():
            name = "CUSTOM:" + code.CustomCode().decode()
        in_ids = [int(i) for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
        ins = tuple(TENSOR_TYPE_NAMES[g.Tensors(i).Type()] for i in in_ids)
        out_ids = [int(i) for i in op.OutputsAsNumpy()]
        outs = tuple(TENSOR_TYPE_NAMES[g.Tensors(i).Type()] for i in out_ids)
        out_name = g.Tensors(out_ids[0]).Name().decode() if out_ids else ""
        ops.append(OpInstance(name, ins, outs, out_name, code.Version(), tuple(in_ids), tuple(out_ids)))
    return ops


def tensor_infos(data: bytes) -> list[TensorInfo]:
    """Every tensor of the main subgraph, by index (what :class:`OpInstance` ``inputs``/``outputs`` point at);
    scale and zero point only for per-tensor quantized tensors."""
    g = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    return [_tensor_info(g.Tensors(i)) for i in range(g.TensorsLength())]


@dataclass(frozen=True)
class ConstantTensor:
    """A constant tensor of the main subgraph as stored: ``values`` in its shape and dtype and, when quantized, its
    ``scales`` and ``zero_points`` (one, or one per channel along axis ``axis``)."""

    name: str
    values: np.ndarray
    scales: np.ndarray | None = None
    zero_points: np.ndarray | None = None
    axis: int = 0

    def dequantized(self) -> np.ndarray:
        """The real values (float64): (values - zero point) x scale per channel; a float tensor's values as they are."""
        v = self.values.astype(np.float64)
        if self.scales is None:
            return v
        shape = [1] * v.ndim
        if self.scales.size > 1:
            shape[self.axis] = self.scales.size
        return (v - self.zero_points.reshape(shape)) * self.scales.reshape(shape)


def unpack_int4(packed: bytes, count: int) -> np.ndarray:
    """``count`` signed 4-bit values stored two to a byte, the first in the low nibble (TFLite's packed INT4
    constants, ``tensor_utils::UnpackDenseInt4IntoInt8``), as int8 in [-8, 7]."""
    raw = np.frombuffer(packed, np.uint8).astype(np.int8)
    if raw.size * 2 < count:
        raise ValueError(f"{raw.size} bytes hold {raw.size * 2} int4 values, {count} expected")
    low, high = (raw << 4) >> 4, raw >> 4  # arithmetic shifts sign-extend each nibble
    return np.stack([low, high], axis=1).reshape(-1)[:count]


def constant_tensor(data: bytes, index: int) -> ConstantTensor | None:
    """Tensor ``index`` of the main subgraph (as :class:`OpInstance` numbers them) when it is a constant (it has data
    in its buffer), else None. Packed INT4 values come back unpacked as int8 in [-8, 7] (dtype stays readable as
    the tensor's type through :func:`tensor_infos`)."""
    m = schema.Model.GetRootAs(data, 0)
    t = m.Subgraphs(0).Tensors(index)
    buf = m.Buffers(t.Buffer())
    if buf.Offset():  # stored past the flatbuffer (files over 2 GB)
        raw = np.frombuffer(data, np.uint8, buf.Size(), buf.Offset())
    elif buf.DataLength():
        raw = buf.DataAsNumpy()
    else:
        return None
    shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    if t.Type() == TENSOR_TYPES.INT4:
        values = unpack_int4(raw.tobytes(), int(np.prod(shape))).reshape(shape)
    else:
        try:
            dtype = np.dtype(TENSOR_TYPE_NAMES[t.Type()])
        except TypeError:  # a type NumPy has no name for (complex, resource): not a weight this module reads
            return None
        values = np.frombuffer(raw.tobytes(), dtype).reshape(shape)
    q = t.Quantization()
    name = t.Name().decode() if t.Name() else ""
    if q is None or not q.ScaleLength():
        return ConstantTensor(name, values)
    scales = q.ScaleAsNumpy().astype(np.float64)
    zeros = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(scales.size, np.int64)
    return ConstantTensor(name, values, scales, zeros, int(q.QuantizedDimension()))


# ---- metadata ----------------------------------------------------------------------------------------


def metadata_names(data: bytes) -> list[str]:
    m = schema.Model.GetRootAs(data, 0)
    return [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]


def read_metadata(data: bytes, name: str) -> bytes | None:
    """The bytes stored under metadata entry ``name``, or None when the model has no such entry."""
    m = schema.Model.GetRootAs(data, 0)
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        if entry.Name().decode() == name:
            buf = m.Buffers(entry.Buffer())
            if buf.Offset():
                return bytes(data[buf.Offset() : buf.Offset() + buf.Size()])
            return buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    return None


def embed_metadata(data: bytes, name: str, payload: bytes) -> bytes:
    """A copy of the model with ``payload`` stored under metadata entry ``name`` (replacing an older one).

    The model is unpacked to the schema's object API and packed again; buffers keep 4-byte alignment,
    enough for every kernel (XNNPACK packs its own weights at init). Models over 2 GB (buffer offsets)
    are not supported.
    """
    model = read_model(data)
    if any(getattr(b, "offset", 0) for b in model.buffers):
        raise ValueError("models stored with buffer offsets (> 2 GB) cannot take embedded metadata")
    metadata = [md for md in (model.metadata or []) if (md.name.decode() if isinstance(md.name, bytes) else md.name) != name]
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*metadata, entry]
    return write_model(model, len(data) + len(payload) + 4096)


class SharingBuilder(flatbuffers.Builder):
    """Writes each distinct numeric vector (int32, int64, float32) once and points every user at it.

    Per-channel quantized tensors carry an int64 zero point per channel, almost all zeros: a weight
    and its bias share one vector, and so do layers of equal width. In MobileNetV2 that saves about
    a quarter of a megabyte (7% of the int8 file) at no cost: flatbuffer readers only follow offsets.
    Tensor shapes, operator input/output lists and scales repeat too (a few KB more). Byte vectors
    (buffer data) are left alone: the converter already shares identical constants by buffer index.
    """

    _SHARED = (np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float32))

    def __init__(self, size: int):
        super().__init__(size)
        self._vectors: dict[tuple[str, bytes], int] = {}

    def CreateNumpyVector(self, x):
        if getattr(x, "dtype", None) not in self._SHARED:
            return super().CreateNumpyVector(x)
        key = (x.dtype.str, np.ascontiguousarray(x).tobytes())
        if key not in self._vectors:
            self._vectors[key] = super().CreateNumpyVector(x)
        return self._vectors[key]


# ---- constant weights ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstantWeights:
    """One constant float32/int8 weight tensor, with its output channel on the last axis."""

    name: str
    dtype: str  # "float32" | "int8"
    values: np.ndarray


def constant_weights(data: bytes, min_size: int = 64) -> list[ConstantWeights]:
    """Every constant float32/int8 tensor of the main subgraph with at least ``min_size`` elements (int32 biases
    are skipped), reshaped so that the output channel is last: TFLite keeps it on the first axis of CONV_2D /
    FULLY_CONNECTED kernels and on the last of DEPTHWISE_CONV_2D kernels."""
    model = read_model(data)
    graph = model.subgraphs[0]
    depthwise_inputs = {int(op.inputs[1]) for op in graph.operators if builtin_code(model.operatorCodes[op.opcodeIndex]) == OPS.DEPTHWISE_CONV_2D}
    numpy_types = {TENSOR_TYPES.FLOAT32: np.float32, TENSOR_TYPES.INT8: np.int8}
    out = []
    for index, tensor in enumerate(graph.tensors):
        buf = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
        if buf is None or tensor.type not in numpy_types:
            continue
        values = np.frombuffer(bytes(buf), numpy_types[tensor.type])
        if values.size < min_size or tensor.shape is None or values.size != int(np.prod(tensor.shape)):
            continue
        values = values.reshape(tuple(tensor.shape))
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        out.append(ConstantWeights(name, TENSOR_TYPE_NAMES[tensor.type], values if index in depthwise_inputs else np.moveaxis(values, 0, -1)))
    return out


def vector_storage(data: bytes) -> dict[str, tuple[int, int, int]]:
    """How the tensors' ``shape`` and ``zero_point`` vectors are stored: (places in the file, distinct
    values, vectors) each; places == distinct values when every distinct vector is written once
    (:class:`SharingBuilder`). Absent vectors are not counted."""
    g = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    tensors = [g.Tensors(i) for i in range(g.TensorsLength())]
    out = {}
    for field, vectors in (("shape", [t.ShapeAsNumpy() for t in tensors]),
                           ("zero_point", [t.Quantization().ZeroPointAsNumpy() for t in tensors if t.Quantization() is not None])):
        vectors = [v for v in vectors if isinstance(v, np.ndarray)]  # an absent field reads as 0
        places = {v.__array_interface__["data"][0] for v in vectors}  # views into the file's bytes
        out[field] = (len(places), len({v.tobytes() for v in vectors}), len(vectors))
    return out
