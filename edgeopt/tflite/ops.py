"""The op report: which operators a .tflite contains and in which number format each one runs."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edgeopt.tflite import flatbuffer
from edgeopt.tflite.layers import CARRIERS, op_layers

_INT_TYPES = {"int8", "int32", "int64", "bool"}  # int32/int64: biases, shapes, axes; bool: masks

# why an op may run in float even though the model was quantized
FLOAT_OP_REASONS = {
    "DEQUANTIZE": "turns int8/int16/float16 tensors back into float32 (float output, or float ops after it)",
    "QUANTIZE": "turns float32 activations into int8/int16 (float input, or float ops before it)",
}
_HYBRID_REASON = "dynamic-range (hybrid) kernel: int8 weights, float activations quantized on the fly"
_DYNAMIC_FLOAT_REASON = "dynamic-range mode keeps activations float; weights under 1024 values stay float too"
_DEFAULT_REASON = "no integer kernel was chosen for this op in this mode, so it stays float32"
KEPT_FLOAT_REASON = "kept float by keep_float / auto_fallback (the manifest's keep_float lists its layers)"


@dataclass(frozen=True)
class OpEntry:
    """One operator type of a model: how many instances, its kernel kind and, for float kernels, why."""

    op: str
    count: int
    kernel: str  # int8 | int8x4 (int8 activations, INT4 weights) | int16x8 | float32 | float16 | hybrid
    dtypes: str  # e.g. "int8,int8,int32 -> int8"
    note: str = ""

    @property
    def is_float(self) -> bool:
        return self.kernel in ("float32", "float16", "hybrid")


@dataclass(frozen=True)
class OpReport:
    """Operators of a .tflite's main subgraph grouped by (op, dtypes), with their kernel kind."""

    entries: tuple[OpEntry, ...]

    @property
    def float_ops(self) -> list[OpEntry]:
        """The entries that run (partly) in float; empty for a fully integer model."""
        return [e for e in self.entries if e.is_float]

    @property
    def float_op_names(self) -> list[str]:
        return sorted({e.op for e in self.float_ops})

    @property
    def all_integer(self) -> bool:
        return not self.float_ops

    @property
    def op_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for e in self.entries:
            counts[e.op] += e.count
        return dict(sorted(counts.items()))

    def summary(self) -> dict:
        """Compact JSON-ready form for manifests: op counts, whether all integer, float ops and why."""
        return {
            "counts": self.op_counts,
            "all_integer": self.all_integer,
            "float_ops": [{"op": e.op, "count": e.count, "kernel": e.kernel, "why": e.note} for e in self.float_ops],
        }

    def to_dict(self) -> dict:
        return {"entries": [e.__dict__ for e in self.entries], "all_integer": self.all_integer}

    def to_markdown(self) -> str:
        lines = ["| op | count | runs in | tensor dtypes (in -> out) | note |", "|---|---:|---|---|---|"]
        for e in self.entries:
            lines.append(f"| {e.op} | {e.count} | {e.kernel} | {e.dtypes} | {e.note} |")
        return "\n".join(lines)


def _kernel(op: flatbuffer.OpInstance) -> str:
    types = set(op.input_dtypes) | set(op.output_dtypes)
    if "float32" in types or "float16" in types:
        if op.op in ("QUANTIZE", "DEQUANTIZE"):
            return "float32"
        if "int8" in op.input_dtypes and "float32" in op.output_dtypes and op.op != "DEQUANTIZE":
            return "hybrid"
        return "float16" if types <= {"float16"} else "float32"
    if "int16" in types:
        return "int16x8"
    if types <= _INT_TYPES:
        return "int8"
    if types <= _INT_TYPES | {"int4"}:
        return "int8x4"
    return "/".join(sorted(types))


def _reason(name: str, kernel: str, mode: str | None, kept: bool = False) -> str:
    if mode in ("float32", "float16"):
        return "float export"
    if kernel == "hybrid":
        return _HYBRID_REASON
    if name in FLOAT_OP_REASONS:
        return FLOAT_OP_REASONS[name]
    if kept:
        return KEPT_FLOAT_REASON
    return _DYNAMIC_FLOAT_REASON if mode == "dynamic" else _DEFAULT_REASON


def op_report(model_bytes: bytes, mode: str | None = None, kept_layers=(), scope: str = "") -> OpReport:
    """Group the model's operators by name, tensor dtypes and note, and say which run in integer arithmetic.

    ``mode`` (the export mode, when known) only shapes the notes: float ops of a float export need no reason.
    ``kept_layers``: Keras layers an int8 export kept float on purpose (``keep_float``; ``scope`` is the Keras
    model's name the file was traced under, see :mod:`edgeopt.tflite.layers`): their float ops say so instead of
    "no integer kernel was chosen", and are counted apart from float ops of the same kind that were not asked for.
    """
    kept_layers = frozenset(kept_layers)
    kept_ops = {i for i, (op, layers) in enumerate(op_layers(model_bytes, scope, kept_layers))
                if layers and op.op not in CARRIERS} if kept_layers else set()
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for i, op in enumerate(flatbuffer.list_ops(model_bytes)):
        kernel = _kernel(op)
        note = _reason(op.op, kernel, mode, i in kept_ops) if kernel in ("float32", "float16", "hybrid") else ""
        counts[(op.op, kernel, f"{','.join(op.input_dtypes)} -> {','.join(op.output_dtypes)}", note)] += 1
    return OpReport(tuple(OpEntry(name, n, kernel, dtypes, note) for (name, kernel, dtypes, note), n in sorted(counts.items())))
