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
rebuild the model with explicit symmetric padding (``edgeopt.compress.graph.explicit_padding``).

Sparse tensors (``DENSIFY`` ops) pass through untouched. Models over 2 GB (buffer offsets) are not supported.

:func:`requantization_problems` finds the int8 convolutions and fully connected layers XNNPACK refuses to run:
it requires input scale x kernel scale / output scale below 256 in every output channel (src/operators/
convolution-nhwc.c, deconvolution-nhwc.c, fully-connected-nc.c: ``xnn_status_unsupported_parameter``), and the delegate then fails the
whole graph ("failed to create XNNPACK runtime"), so LiteRT's default CPU path and MediaPipe's ImageClassifier
cannot load the file (measured: a from-scratch SNIP model whose ``head_conv`` kept 4 of 143,360 weights; its output
stayed within 2e-6 of zero on the calibration images: output scale 7.8e-9, requantization scale 124,772).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeopt.tflite.flatbuffer import OP_NAMES, OPS, TENSOR_TYPES, builtin_code, check_tflite, list_ops, read_model, schema, write_model

MAX_REQUANTIZATION_SCALE = 256.0  # XNNPACK's bound on input scale x kernel scale / output scale (quantized conv / FC)
# the ops XNNPACK requantizes: positions of their data and kernel inputs (TRANSPOSE_CONV: output shape, kernel, data)
_REQUANTIZED_OPS = {"CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "FULLY_CONNECTED": (0, 1), "TRANSPOSE_CONV": (2, 1)}


@dataclass(frozen=True)
class RequantizationProblem:
    """One quantized operator XNNPACK refuses: its index and kind, its output tensor's name, how many output
    channels reach :data:`MAX_REQUANTIZATION_SCALE`, the largest requantization scale and the output scale (a tiny
    one: the output was nearly constant on the calibration images)."""

    op_index: int
    op: str
    output: str
    channels: int
    max_scale: float
    output_scale: float

    def to_dict(self) -> dict:
        return asdict(self)


def requantization_problems(tflite_bytes: bytes) -> list[RequantizationProblem]:
    """The quantized (transposed) convolutions and fully connected layers of ``tflite_bytes`` whose requantization scale (input
    scale x kernel scale / output scale, per output channel) reaches XNNPACK's 256: XNNPACK cannot create them, and
    the file fails to load wherever XNNPACK is the CPU path (LiteRT's default, MediaPipe). Empty for float files."""
    check_tflite(tflite_bytes)
    g = schema.Model.GetRootAs(tflite_bytes, 0).Subgraphs(0)

    def scales(index: int) -> np.ndarray:
        q = g.Tensors(index).Quantization()
        return q.ScaleAsNumpy().astype(np.float64) if q is not None and q.ScaleLength() else np.zeros(0)

    problems = []
    for i, op in enumerate(list_ops(tflite_bytes)):
        data, kernel = _REQUANTIZED_OPS.get(op.op, (None, None))
        if data is None or len(op.input_dtypes) <= data or op.input_dtypes[data] not in ("int8", "uint8"):
            continue
        s_in, s_kernel, s_out = scales(op.inputs[data]), scales(op.inputs[kernel]), scales(op.outputs[0])
        if not (s_in.size and s_kernel.size and s_out.size):
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = s_in[0] * s_kernel / s_out[0]
        over = ~(ratio < MAX_REQUANTIZATION_SCALE)  # NaN and inf count as over
        if over.any():
            problems.append(RequantizationProblem(i, op.op, op.output_name, int(over.sum()), float(np.nanmax(np.where(np.isnan(ratio), np.inf, ratio))),
                                                  float(s_out[0])))
    return problems


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
    data = bytes(tflite_bytes)
    check_tflite(data)
    model = read_model(data)
    if any(getattr(b, "offset", 0) for b in model.buffers):
        raise ValueError("models stored with buffer offsets (> 2 GB) are not supported")
    conv_codes = {OPS.CONV_2D, OPS.DEPTHWISE_CONV_2D}
    codes = [builtin_code(c) for c in model.operatorCodes]
    pad_index = None
    counts = dict(padded=0, same_to_valid=0, asymmetric_left=0, dynamic_left=0)
    for graph in model.subgraphs:
        new_ops = []
        paddings_tensors: dict = {}  # one int32 paddings constant per distinct padding, shared by its PADs
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
                pad_index = _opcode_index(model, codes, OPS.PAD)
            new_ops.append(_insert_pad(schema, model, graph, op, pad_index, ph, pw, paddings_tensors))
            new_ops.append(op)
            counts["padded"] += 1
        graph.operators = new_ops
    return write_model(model, len(data) + 65536), PadRewriteReport(**counts)


def _opcode_index(model, codes: list[int], builtin: int) -> int:
    if builtin in codes:
        return codes.index(builtin)
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    codes.append(builtin)
    return len(codes) - 1


def _insert_pad(schema, model, graph, conv, pad_index: int, ph: tuple[int, int], pw: tuple[int, int], paddings_tensors: dict):
    """New PAD operator feeding ``conv``: adds the padded tensor (and, once per distinct padding, the
    paddings constant) to ``graph``."""
    x = graph.tensors[conv.inputs[0]]
    if (ph, pw) not in paddings_tensors:
        paddings = np.array([[0, 0], [ph[0], ph[1]], [pw[0], pw[1]], [0, 0]], dtype=np.int32)
        buf = schema.BufferT()
        buf.data = np.frombuffer(paddings.tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        const = schema.TensorT()
        const.shape = np.array([4, 2], dtype=np.int32)
        const.type = schema.TensorType.INT32
        const.buffer = len(model.buffers) - 1
        const.name = f"xnn_explicit_pad/paddings_{ph[0]}_{ph[1]}_{pw[0]}_{pw[1]}"
        graph.tensors.append(const)
        paddings_tensors[(ph, pw)] = len(graph.tensors) - 1
    const_index = paddings_tensors[(ph, pw)]

    padded = schema.TensorT()
    grow = np.array([0, sum(ph), sum(pw), 0], dtype=np.int32)
    padded.shape = np.asarray(x.shape, dtype=np.int32) + grow
    if x.shapeSignature is not None:
        padded.shapeSignature = np.asarray(x.shapeSignature, dtype=np.int32) + grow
    padded.type = x.type
    padded.quantization = x.quantization  # PAD keeps the input's scale and zero point
    sentinel = model.buffers[0] if model.buffers else None
    if sentinel is not None and (sentinel.data is None or len(sentinel.data) == 0):
        padded.buffer = 0  # the schema's empty sentinel buffer: no constant data
    else:
        model.buffers.append(schema.BufferT())
        padded.buffer = len(model.buffers) - 1
    padded.name = f"xnn_explicit_pad_{len(graph.tensors)}"  # short: converter names run to hundreds of bytes
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


# ---- will XNNPACK switch to sparse inference? ------------------------------------------------------
#
# A static re-enactment, on the flatbuffer, of what the XNNPACK delegate and XNNPACK do with a float32
# graph: DENSIFY outputs become static weights (and set XNN_FLAG_HINT_SPARSE_INFERENCE), SAME convolutions
# carry XNN_FLAG_TENSORFLOW_SAME_PADDING, a zero PAD with one consumer is fused into a following
# convolution without that flag (xnn_subgraph_fusion), then xnn_check_nchw_compatibility and the cluster
# search of xnn_subgraph_rewrite_for_nchw (XNNPACK src/subgraph.c). It answers for a machine where
# XNNPACK's CHW kernels are enabled: ARM (every Android phone); on x86 CPUs with AVX
# xnn_is_chw_compatible_config() is false and XNNPACK never runs sparse, whatever the model.

_NCHW, _NHWC2NCHW, _NCHW2NHWC, _BAD_CLUSTER = 1, 2, 4, 8


@dataclass(frozen=True)
class SparseEligibility:
    """Outcome of :func:`xnnpack_sparse_eligibility`.

    ``would_switch``: XNNPACK (on ARM) would run at least one cluster in sparse NCHW mode.
    ``has_sparse_weights``: the file has DENSIFY'd float weights (the delegate's trigger).
    ``clusters``: one dict per candidate cluster: ``nodes`` (count), ``zeros`` / ``params`` (1x1 and
    fully-connected weights), ``compatible`` (no incompatible member or consumer) and ``sparse_enough``
    (zeros > 2/3 of params). ``blockers``: why each convolution is not NCHW-compatible (op index: reason).
    """

    would_switch: bool
    has_sparse_weights: bool
    clusters: tuple[dict, ...]
    blockers: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"would_switch": self.would_switch, "has_sparse_weights": self.has_sparse_weights,
                "clusters": list(self.clusters), "blockers": list(self.blockers)}


@dataclass
class _Node:
    index: int  # operator index in the file
    kind: str  # conv, dwconv, pad, binary, mean, fc, unary, other
    inputs: list  # dynamic input tensor ids (static weights dropped)
    outputs: list
    params: dict
    flags: int = 0
    cluster: int = 0


def _conv_node(i, code, o, graph, ins, outs, dyn, static, params):
    opts = o.builtinOptions
    k = graph.tensors[ins[1]].shape
    params.update(kh=int(k[1]), kw=int(k[2]), sh=opts.strideH, sw=opts.strideW,
                  dil=(opts.dilationHFactor or 1, opts.dilationWFactor or 1), same=opts.padding == schema.Padding.SAME,
                  pad=[0, 0, 0, 0], cin=int(k[3]), weights=ins[1])
    if code == OPS.DEPTHWISE_CONV_2D:
        params["multiplier"] = opts.depthMultiplier or 1
    return _Node(i, "conv" if code == OPS.CONV_2D else "dwconv", dyn, outs, params)


def _pad_node(i, code, o, graph, ins, outs, dyn, static, params):
    if ins[1] not in static:  # paddings computed at run time: XNNPACK cannot fold it
        return _Node(i, "other", dyn, outs, params)
    return _Node(i, "pad", [ins[0]], outs, {**params, "p": static[ins[1]].reshape(-1, 2)})


def _binary_node(i, code, o, graph, ins, outs, dyn, static, params):
    params["rank4"] = all(len(graph.tensors[t].shape) == 4 for t in ins)
    params["static_vec"] = all(int(np.sum(np.asarray(graph.tensors[t].shape) != 1)) <= 1 for t in ins if t in static)
    return _Node(i, "binary", dyn, outs, params)


def _mean_node(i, code, o, graph, ins, outs, dyn, static, params):
    params["rank4"] = len(graph.tensors[ins[0]].shape) == 4
    return _Node(i, "mean", [ins[0]], outs, params)


def _fc_node(i, code, o, graph, ins, outs, dyn, static, params):
    params["weights"] = ins[1]
    return _Node(i, "fc", dyn, outs, params)


def _unary_node(i, code, o, graph, ins, outs, dyn, static, params):
    params["rank4"] = len(graph.tensors[ins[0]].shape) == 4
    return _Node(i, "unary", dyn, outs, params)


# builtin op code -> how it becomes a node of XNNPACK's NCHW analysis; any other op is "other"
_NODE_OF_OP = {
    OPS.CONV_2D: _conv_node, OPS.DEPTHWISE_CONV_2D: _conv_node, OPS.PAD: _pad_node, OPS.ADD: _binary_node, OPS.MUL: _binary_node,
    OPS.MEAN: _mean_node, OPS.SUM: _mean_node, OPS.FULLY_CONNECTED: _fc_node,
    **{code: _unary_node for code in (OPS.RELU, OPS.RELU6, OPS.LOGISTIC, OPS.TANH, OPS.HARD_SWISH, OPS.ABS, OPS.NEG, OPS.ELU, OPS.LEAKY_RELU)},
}
_WEIGHTED = (OPS.CONV_2D, OPS.DEPTHWISE_CONV_2D, OPS.FULLY_CONNECTED)


def _static_tensors(model, graph, codes: list[int]) -> tuple[dict[int, np.ndarray], set[int]]:
    """Constant tensors by id (float32 / int32 values, other types as bytes), sparse float32 weights densified,
    and the ids of those densified sparse weights (the outputs of DENSIFY ops)."""
    static: dict[int, np.ndarray] = {}
    for t, tensor in enumerate(graph.tensors):
        buf = model.buffers[tensor.buffer]
        if buf.data is not None and len(buf.data):
            dtype = {TENSOR_TYPES.FLOAT32: np.float32, TENSOR_TYPES.INT32: np.int32}.get(tensor.type, np.uint8)
            static[t] = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), dtype=dtype)
    sparse_outputs: set[int] = set()
    for o in graph.operators:
        if codes[o.opcodeIndex] == OPS.DENSIFY:
            src = graph.tensors[o.inputs[0]]
            if src.sparsity is not None and src.type == TENSOR_TYPES.FLOAT32:
                sparse_outputs.add(int(o.outputs[0]))
                static[int(o.outputs[0])] = _densify(src, static.get(int(o.inputs[0])))
    return static, sparse_outputs


def xnnpack_sparse_eligibility(tflite_bytes: bytes) -> SparseEligibility:
    """Would XNNPACK run this float32 .tflite (first subgraph) in sparse NCHW mode on ARM? See module notes."""
    model = read_model(bytes(tflite_bytes))
    graph = model.subgraphs[0]
    codes = [builtin_code(c) for c in model.operatorCodes]
    static, sparse_outputs = _static_tensors(model, graph, codes)
    is_fp32 = lambda t: graph.tensors[t].type == TENSOR_TYPES.FLOAT32  # noqa: E731
    nodes: list[_Node] = []
    has_sparse = False
    for i, o in enumerate(graph.operators):
        code = codes[o.opcodeIndex]
        if code == OPS.DENSIFY:
            continue
        ins, outs = [int(t) for t in o.inputs if t >= 0], [int(t) for t in o.outputs]
        has_sparse |= any(t in sparse_outputs for t in ins)
        fp = all(is_fp32(t) for t in ins + outs if t not in static or code in _WEIGHTED)
        params: dict = {"fp32": fp, "name": OP_NAMES.get(code, str(code))}
        dyn = [t for t in ins if t not in static]
        make = _NODE_OF_OP.get(code)
        nodes.append(make(i, code, o, graph, ins, outs, dyn, static, params) if make else _Node(i, "other", dyn, outs, params))
    graph_inputs = {int(t) for t in graph.inputs}
    graph_outputs = {int(t) for t in graph.outputs}
    nodes = _fuse_pads(nodes, graph_outputs)
    blockers: list[str] = []
    for n in nodes:
        n.flags, reason = _nchw_flags(n)
        if reason and n.kind in ("conv", "dwconv"):
            blockers.append(f"op {n.index} {n.params['name']}: {reason}")
    clusters = _clusters(nodes, static, graph_inputs, graph_outputs)
    would = has_sparse and any(c["compatible"] and c["sparse_enough"] for c in clusters)
    return SparseEligibility(would, has_sparse, tuple(clusters), tuple(blockers))


def _densify(tensor, values) -> np.ndarray:
    """Zeros of a sparse (CSR-like, TFLite format) weight: only the count matters here, so the stored
    non-zeros plus zeros up to the dense size."""
    size = int(np.prod(tensor.shape))
    vals = np.asarray(values if values is not None else [], np.float32)
    return np.concatenate([vals, np.zeros(max(size - vals.size, 0), np.float32)])[:size]


def _fuse_pads(nodes: list[_Node], graph_outputs: set[int]) -> list[_Node]:
    consumers: dict[int, list[_Node]] = {}
    for n in nodes:
        for t in set(n.inputs):
            consumers.setdefault(t, []).append(n)
    keep = []
    for n in nodes:
        if n.kind == "pad":
            out = n.outputs[0]
            users = consumers.get(out, [])
            p = n.params["p"]
            spatial = p.shape == (4, 2) and not (p[0].any() or p[3].any())
            if len(users) == 1 and out not in graph_outputs and spatial and users[0].kind in ("conv", "dwconv") and not users[0].params["same"]:
                c = users[0]
                c.params["pad"] = [c.params["pad"][0] + int(p[1][0]), c.params["pad"][1] + int(p[2][1]),
                                   c.params["pad"][2] + int(p[1][1]), c.params["pad"][3] + int(p[2][0])]  # top, right, bottom, left
                c.inputs = [n.inputs[0] if t == out else t for t in c.inputs]
                continue
        keep.append(n)
    return keep


def _nchw_flags(n: _Node) -> tuple[int, str]:
    """xnn_check_nchw_compatibility: (layout flags, reason when incompatible)."""
    p = n.params
    if not p["fp32"]:
        return 0, "not float32"
    if n.kind == "fc":
        return _NCHW, ""
    if n.kind == "conv":
        if p["dil"] != (1, 1):
            return 0, "dilation"
        if p["kh"] == p["kw"] == 1:
            if p["same"]:
                return _NCHW, ""  # SAME pads nothing for 1x1 stride 1; the flag is only looked at for depthwise
            if any(p["pad"]) or (p["sh"], p["sw"]) != (1, 1):
                return 0, "1x1 with padding or stride"
            return _NCHW, ""
        if (p["kh"], p["kw"]) == (3, 3):
            if p["same"] or p["pad"] != [1, 1, 1, 1]:
                return 0, f"3x3 needs explicit padding 1 on each side (SAME={p['same']}, pad={p['pad']})"
            if (p["sh"], p["sw"]) != (2, 2):
                return 0, "3x3 convolution must have stride 2"
            if p["cin"] != 3:
                return 0, f"3x3 convolution must have 3 input channels, has {p['cin']}"
            return _NHWC2NCHW, ""
        return 0, f"{p['kh']}x{p['kw']} convolution"
    if n.kind == "dwconv":
        if p["dil"] != (1, 1):
            return 0, "dilation"
        if p["same"]:
            return 0, "padding SAME (XNN_FLAG_TENSORFLOW_SAME_PADDING)"
        if p.get("multiplier", 1) != 1:
            return 0, "depth multiplier"
        if p["sh"] != p["sw"] or p["sh"] not in (1, 2) or p["kh"] != p["kw"] or p["kh"] not in (3, 5):
            return 0, "kernel/stride"
        if p["pad"] != [p["kh"] // 2] * 4:
            return 0, f"padding {p['pad']} is not {p['kh'] // 2} on each side"
        return _NCHW, ""
    if n.kind == "binary":
        return (_NCHW, "") if p["rank4"] and p["static_vec"] else (0, "shape")
    if n.kind == "unary":
        return (_NCHW, "") if p["rank4"] else (0, "shape")
    if n.kind == "mean":
        return (_NCHW | _NCHW2NHWC, "") if p["rank4"] else (0, "shape")
    return 0, "operator"


def _clusters(nodes: list[_Node], static: dict, graph_inputs: set[int], graph_outputs: set[int]) -> list[dict]:
    """The connected-components part of xnn_subgraph_rewrite_for_nchw, node by node."""
    producer = {t: k for k, n in enumerate(nodes) for t in n.outputs}
    num_consumers: dict[int, int] = {}
    for n in nodes:
        for t in set(n.inputs):
            num_consumers[t] = num_consumers.get(t, 0) + 1
    for t in graph_outputs:
        num_consumers[t] = num_consumers.get(t, 0) + 1
    for k, n in enumerate(nodes):
        n.cluster = k

    def visit(n: _Node) -> bool:
        changed = False
        for t in n.inputs:
            if t in graph_inputs:
                n.flags |= _BAD_CLUSTER
                continue
            prod = nodes[producer[t]]
            if prod.flags & (_NHWC2NCHW | _NCHW) and not prod.flags & _BAD_CLUSTER:
                prod.flags &= ~_NCHW2NHWC
                if prod.cluster != n.cluster:
                    prod.cluster = n.cluster = max(prod.cluster, n.cluster)
                    changed = True
            else:
                n.flags |= _BAD_CLUSTER
        return changed

    update = False
    for k, n in enumerate(nodes):
        if n.flags & _NCHW2NHWC:
            update |= visit(n)
    if not update:
        return []
    while update:
        update = False
        for k, n in enumerate(nodes):
            if n.flags & _BAD_CLUSTER or not n.flags & (_NCHW | _NCHW2NHWC):
                continue
            update |= visit(n)
    for n in nodes:
        nodes[n.cluster].flags |= n.flags & _BAD_CLUSTER
    members = [n for n in nodes if n.flags & (_NCHW | _NCHW2NHWC) and not nodes[n.cluster].flags & _BAD_CLUSTER]
    nchw_consumers: dict[int, int] = {}
    for n in members:
        for t in n.inputs:
            nchw_consumers[t] = nchw_consumers.get(t, 0) + 1
    for n in members:
        if any(nchw_consumers[t] != num_consumers.get(t, 0) for t in n.inputs):
            nodes[n.cluster].flags |= _BAD_CLUSTER
    out: dict[int, dict] = {}
    for k, n in enumerate(nodes):
        if n.cluster == k and not (n.flags & (_NCHW | _NCHW2NHWC | _NHWC2NCHW)):
            continue
        c = out.setdefault(n.cluster, {"nodes": 0, "zeros": 0, "params": 0, "compatible": True})
        c["nodes"] += 1
        c["compatible"] &= not nodes[n.cluster].flags & _BAD_CLUSTER
        one_by_one = n.kind == "conv" and max(n.params["kh"], n.params["kw"]) == 1
        if one_by_one or n.kind == "fc":
            w = static[n.params["weights"]]
            c["zeros"] += int(np.sum(w == 0.0))
            c["params"] += int(w.size)
    clusters = [c for c in out.values() if c["nodes"] > 1]
    for c in clusters:
        c["sparse_enough"] = c["params"] > 0 and c["zeros"] * 3 > c["params"] * 2
    return clusters
