"""Low-bit kernels in a quantized .tflite: exact int8 codes for 4-bit, 2-bit and binary levels, and what each kernel stores.

A stripped low-bit Keras model (``edgeopt.compress.lowbit.strip_lowbit``) has kernels whose output channel c holds
the levels k * D_c, k in [-Q, Q] (Q = 7 at 4 bits, 1 at 2 bits; binary: +-alpha_c, Q = 1 without the 0). A batch
norm folded into the kernel scales D_c and keeps the grid. TF's converter quantizes channel c with scale
s_c = max|w_c| / 127 = Q D_c / 127, so level k becomes code round(127 k / Q): exact when Q divides 127 (binary,
2 bits, 8 bits) but at 4 bits up to 3/7 of a code away from the level (k D_c is no multiple of s_c).

:func:`exact_lowbit_codes` writes such kernels again with codes k * m, m = floor(127 / Q) (18 at Q = 7; 127 at
Q = 1, where nothing changes), and scale s'_c = D_c / m = s_c * 127 / (Q m), so code x scale is k D_c (to float32
rounding). The int32 bias, stored at scale input_scale x s_c, is requantized to input_scale x s'_c:
b' = round(b s_c / s'_c), adding at most half a unit of that scale (the product of two quantization steps, far below
the output's step). The activations' quantization is the converter's, untouched. k is read back from the converter's codes as
round(Q q / 127), which recovers it exactly (|q - 127 k / Q| <= 1/2 and Q / 127 * 1/2 < 1/2), and a kernel whose
codes are not round(127 k / Q) for every weight is refused: it is not a stripped kernel of that width.

A kernel is found by its tensor name: the converter names a constant after the TF ops that made it,
``<model>/<layer>/Conv2D`` (see :mod:`edgeopt.tflite.layers`), also when a batch norm was folded into it. Shared
buffers (the converter stores identical constants once) are copied before they are changed.
"""
from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from edgeopt.tflite.flatbuffer import OPS, TENSOR_TYPE_NAMES, TENSOR_TYPES, builtin_code, read_model, schema, unpack_int4, write_model
from edgeopt.tflite.layers import layers_in_name

KERNEL_OPS = {OPS.CONV_2D: "CONV_2D", OPS.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D", OPS.FULLY_CONNECTED: "FULLY_CONNECTED"}
_CODE_MAX = {"int8": 127, "int4": 7}  # the narrow symmetric range of each integer storage type


@dataclass(frozen=True)
class LowBitKernel:
    """What a .tflite stores for the kernel of one low-bit layer.

    ``levels`` Q: the channel grid is k * D_c, k in [-Q, Q]. ``storage``: the kernel tensor's type (int8, int4, or
    float32 for a layer kept float). ``step``: the code distance between neighbouring levels, floor(code max / Q)
    (18 for 4 bits in int8, 127 for 2 bits and binary in int8, 1 for 4 bits in int4; 0 for float storage).
    ``exact``: every stored code is k * step with |k| <= Q, so code x scale is the level itself. ``max_values``: the
    most distinct values one output channel holds. ``stored_bytes``: bytes of the kernel's buffer (int4: packed two
    to a byte). ``code_error``: before :func:`exact_lowbit_codes` rewrote it, the largest distance (in codes) of a
    converter code from its level, |q - 127 k / Q| (3/7 at 4 bits, 0 when nothing was rewritten).
    """

    layer: str
    op: str
    levels: int
    storage: str
    step: int
    exact: bool
    channels: int
    max_values: int
    stored_bytes: int
    code_error: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def kernel_ops(data_or_model, scope: str, layers: Iterable[str]) -> dict[str, list[int]]:
    """``{layer: [operator indices]}``: the CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED operators of the main
    subgraph whose kernel tensor is named after one of ``layers`` (traced under ``scope``, the Keras model's name).
    Takes .tflite bytes or an object-API model (:func:`edgeopt.tflite.flatbuffer.read_model`). A layer with no such
    operator is an error naming it; a kernel named after two of the layers too."""
    model = read_model(bytes(data_or_model)) if isinstance(data_or_model, (bytes, bytearray, memoryview)) else data_or_model
    names = list(layers)
    graph = model.subgraphs[0]
    found: dict[str, list[int]] = {name: [] for name in names}
    for index, op in enumerate(graph.operators):
        if builtin_code(model.operatorCodes[op.opcodeIndex]) not in KERNEL_OPS or len(op.inputs) < 2:
            continue
        owners = layers_in_name(_name(graph.tensors[op.inputs[1]]), scope, names)
        if len(owners) > 1:
            raise ValueError(f"kernel {_name(graph.tensors[op.inputs[1]])!r} is named after several layers ({', '.join(sorted(owners))})")
        for owner in owners:
            found[owner].append(index)
    missing = [name for name, ops in found.items() if not ops]
    if missing:
        raise ValueError(f"no CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED kernel of the .tflite is named after layer(s) {', '.join(missing)} "
                         f"(model traced as {scope!r}); give only Conv2D/DepthwiseConv2D/Dense layers of the exported model")
    return found


def exact_lowbit_codes(data: bytes, scope: str, levels: Mapping[str, int]) -> tuple[bytes, tuple[LowBitKernel, ...]]:
    """A copy of a quantized .tflite whose int8 kernels of the layers in ``levels`` (``{layer: Q}``, see the module
    docstring) hold codes k * floor(127 / Q) with per-channel scales D_c / floor(127 / Q), and their int32 biases
    requantized to match. Float (kept float) and int4 kernels are left as they are. Returns the bytes and one
    :class:`LowBitKernel` per layer, read back from the new file. Raises ValueError for a kernel whose codes are
    not on the converter's grid of its Q, or that is not quantized per output channel."""
    _check_levels(levels)
    model = read_model(data)
    if any(getattr(b, "offset", 0) for b in model.buffers):
        raise ValueError("models stored with buffer offsets (> 2 GB) are not supported")
    graph = model.subgraphs[0]
    users = Counter(t.buffer for g in model.subgraphs for t in g.tensors)
    bias_users = Counter(int(op.inputs[2]) for op in graph.operators if len(op.inputs) > 2 and op.inputs[2] >= 0)
    ratios: dict[int, np.ndarray] = {}  # kernel tensor -> s'_c / s_c of each channel (once per tensor, shared or not)
    errors: dict[str, float] = {}
    for layer, ops in kernel_ops(model, scope, levels).items():
        for index in ops:
            op = graph.operators[index]
            kernel = int(op.inputs[1])
            if graph.tensors[kernel].type != TENSOR_TYPES.INT8:
                continue
            if kernel not in ratios:
                ratios[kernel], errors[layer] = _rewrite_kernel(model, graph, kernel, levels[layer], layer, users)
            bias = int(op.inputs[2]) if len(op.inputs) > 2 else -1
            if bias < 0:
                continue
            if bias_users[bias] > 1:  # a bias tensor other operators read too (identical constants merged): give this one its own
                bias_users[bias] -= 1
                bias = _own_copy(graph, op, 2, users)
            _rewrite_bias(model, graph, bias, ratios[kernel], graph.tensors[kernel], graph.tensors[op.inputs[0]], layer, users)
    out = write_model(model, len(data) + 4096)
    kernels = lowbit_kernels(out, scope, levels)
    return out, tuple(k if k.layer not in errors else _with_error(k, errors[k.layer]) for k in kernels)


def lowbit_kernels(data: bytes, scope: str, levels: Mapping[str, int]) -> tuple[LowBitKernel, ...]:
    """One :class:`LowBitKernel` per layer of ``levels`` (``{layer: Q}``) as the .tflite ``data`` stores its kernel
    (the first operator using it, when the layer is called more than once), in the file's operator order."""
    _check_levels(levels)
    model = read_model(data)
    graph = model.subgraphs[0]
    out = []
    for layer, ops in sorted(kernel_ops(model, scope, levels).items(), key=lambda item: item[1][0]):
        op = graph.operators[ops[0]]
        tensor = graph.tensors[op.inputs[1]]
        storage = TENSOR_TYPE_NAMES[tensor.type]
        op_name = KERNEL_OPS[builtin_code(model.operatorCodes[op.opcodeIndex])]
        values, axis = _values(model, tensor), _channel_axis(tensor, op_name)
        per_channel = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
        distinct = max(len(np.unique(per_channel[:, c])) for c in range(per_channel.shape[1]))
        q = levels[layer]
        if storage in _CODE_MAX:
            step = _CODE_MAX[storage] // q
            codes = per_channel.astype(np.int64)
            exact = bool(step >= 1 and np.all(codes % step == 0) and np.all(np.abs(codes) <= q * step))
        else:
            step, exact = 0, storage == "float32"  # a float32 kernel holds the Keras values themselves
        nbytes = len(model.buffers[tensor.buffer].data)
        out.append(LowBitKernel(layer, op_name, q, storage, step, exact, per_channel.shape[1], distinct, nbytes))
    return tuple(out)


def kernel_storage(data: bytes, scope: str, layers: Iterable[str]) -> dict[str, str]:
    """``{layer: dtype}``: the type of each layer's kernel tensor in the .tflite (float32, int8, int4, ...), for the
    layers' first operator (:func:`kernel_ops`)."""
    model = read_model(data)
    graph = model.subgraphs[0]
    return {layer: TENSOR_TYPE_NAMES[graph.tensors[graph.operators[ops[0]].inputs[1]].type]
            for layer, ops in kernel_ops(model, scope, layers).items()}


# ---- helpers ---------------------------------------------------------------------------------------------


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or "")


def _check_levels(levels: Mapping[str, int]) -> None:
    bad = {name: q for name, q in levels.items() if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 1 <= q <= 127}
    if bad:
        raise ValueError(f"levels must map layer names to Q in 1..127 (7 for 4 bits, 1 for 2 bits and binary); got {bad}")


def _values(model, tensor) -> np.ndarray:
    """A constant tensor's values in its shape (int4 unpacked to int8)."""
    raw = np.asarray(model.buffers[tensor.buffer].data if model.buffers[tensor.buffer].data is not None else [], np.uint8).tobytes()
    shape = tuple(int(v) for v in tensor.shape)
    if not raw:
        raise ValueError(f"kernel {_name(tensor)!r} is not a constant tensor (it has no data)")
    if tensor.type == TENSOR_TYPES.INT4:
        return unpack_int4(raw, int(np.prod(shape))).reshape(shape)
    return np.frombuffer(raw, np.dtype(TENSOR_TYPE_NAMES[tensor.type])).reshape(shape)


def _channel_axis(tensor, op_name: str) -> int:
    """The output-channel axis: the quantized dimension of a quantized kernel; else 3 for a depthwise kernel
    [1, kh, kw, C] and 0 for CONV_2D [O, kh, kw, I] and FULLY_CONNECTED [O, I]."""
    q = tensor.quantization
    if q is not None and q.scale is not None and len(q.scale) > 1:
        return int(q.quantizedDimension)
    return 3 if op_name == "DEPTHWISE_CONV_2D" else 0


def _own_copy(graph, op, position: int, users: Counter) -> int:
    """A copy of ``op``'s input tensor at ``position`` (same buffer until :func:`_store` changes it), now read by ``op``
    alone; returns its index."""
    tensor = copy.deepcopy(graph.tensors[op.inputs[position]])
    graph.tensors.append(tensor)
    users[tensor.buffer] += 1
    inputs = np.array(op.inputs, np.int32).copy()
    inputs[position] = len(graph.tensors) - 1
    op.inputs = inputs
    return len(graph.tensors) - 1


def _store(model, tensor, values: np.ndarray, users: Counter) -> None:
    """Put ``values`` into ``tensor``'s buffer, or into a new buffer when other tensors share it."""
    payload = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
    if users[tensor.buffer] > 1:
        users[tensor.buffer] -= 1
        buf = schema.BufferT()
        model.buffers.append(buf)
        tensor.buffer = len(model.buffers) - 1
        users[tensor.buffer] = 1
    model.buffers[tensor.buffer].data = payload


def _rewrite_kernel(model, graph, index: int, q: int, layer: str, users: Counter) -> tuple[np.ndarray, float]:
    """Rewrite int8 kernel ``index`` of a Q-level layer (module docstring). Returns the per-channel scale ratio
    s'_c / s_c (float64, of the stored float32 scales) and the converter's largest code error."""
    tensor = graph.tensors[index]
    qp = tensor.quantization
    scales = np.asarray(qp.scale if qp is not None and qp.scale is not None else [], np.float32)
    axis = int(qp.quantizedDimension) if qp is not None else 0
    values = _values(model, tensor)
    channels = values.shape[axis] if values.ndim else 1
    if scales.size != channels or channels < 1:
        raise ValueError(f"layer {layer!r}: kernel {_name(tensor)!r} has {scales.size} scale(s) for {channels} output channels; "
                         "exact low-bit codes need one scale per output channel (TF's converter writes that for Conv2D/Dense)")
    if qp.zeroPoint is not None and np.any(np.asarray(qp.zeroPoint) != 0):
        raise ValueError(f"layer {layer!r}: kernel {_name(tensor)!r} is not symmetric (non-zero zero points)")
    codes = np.moveaxis(values, axis, -1).reshape(-1, channels).astype(np.int64)
    k = np.round(codes * q / 127).astype(np.int64)
    if np.any(np.abs(k) > q) or np.any(codes != np.round(127 * k / q)):
        bad = np.argwhere(codes != np.round(127 * k / q))
        where = f"code {int(codes[tuple(bad[0])])} in channel {int(bad[0][1])}" if bad.size else "codes beyond the grid"
        raise ValueError(f"layer {layer!r}: its int8 kernel is not a {2 * q + 1}-level grid per channel ({where} is no level "
                         f"round(127 k / {q})); export a model stripped at this width (edgeopt.compress.lowbit.strip_lowbit), "
                         "or leave the layer out of lowbit_bits")
    error = float(np.max(np.abs(codes - 127 * k / q))) if codes.size else 0.0
    m = 127 // q
    live = np.any(codes != 0, axis=0)  # an all-zero channel keeps its scale: any scale stores zeros exactly
    new_scales = np.where(live, scales.astype(np.float64) * 127 / (q * m), scales).astype(np.float32)
    new_codes = np.moveaxis((k * m).astype(np.int8).reshape(np.moveaxis(values, axis, -1).shape), -1, axis)
    _store(model, tensor, new_codes, users)
    qp.scale = new_scales
    return new_scales.astype(np.float64) / scales.astype(np.float64), error


def _rewrite_bias(model, graph, index: int, ratio: np.ndarray, kernel, input_tensor, layer: str, users: Counter) -> None:
    """Requantize int32 bias ``index`` from scale input_scale x s_c to input_scale x s'_c (``ratio`` = s'_c / s_c;
    ``kernel`` holds s'_c), as the converter computes a bias scale: the float32 product of the two scales."""
    tensor = graph.tensors[index]
    if tensor.type != TENSOR_TYPES.INT32:
        raise ValueError(f"layer {layer!r}: bias {_name(tensor)!r} is {TENSOR_TYPE_NAMES[tensor.type]}, not int32 (an int8 export's bias)")
    values = _values(model, tensor).astype(np.float64)
    if values.shape != ratio.shape:
        raise ValueError(f"layer {layer!r}: bias {_name(tensor)!r} has shape {values.shape}, the kernel {ratio.shape[0]} channels")
    in_scale = float(np.asarray(input_tensor.quantization.scale, np.float32)[0])
    _store(model, tensor, np.round(values / ratio).astype(np.int32), users)
    tensor.quantization.scale = (in_scale * np.asarray(kernel.quantization.scale, np.float64)).astype(np.float32)


def _with_error(kernel: LowBitKernel, error: float) -> LowBitKernel:
    return LowBitKernel(**{**asdict(kernel), "code_error": round(error, 6)})
