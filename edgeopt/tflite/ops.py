"""The op report: which operators a .tflite contains and in which number format each one runs."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edgeopt.tflite import flatbuffer

_INT_TYPES = {"int8", "int32", "int64", "bool"}  # int32/int64: biases, shapes, axes; bool: masks

# why an op may run in float even though the model was quantized
FLOAT_OP_REASONS = {
    "DEQUANTIZE": "turns int8/int16/float16 tensors back into float32 (float output, or float ops after it)",
    "QUANTIZE": "turns float32 activations into int8/int16 (float input, or float ops before it)",
}
_HYBRID_REASON = "dynamic-range (hybrid) kernel: int8 weights, float activations quantized on the fly"
_DYNAMIC_FLOAT_REASON = "dynamic-range mode keeps activations float; weights under 1024 values stay float too"
_DEFAULT_REASON = "no integer kernel was chosen for this op in this mode, so it stays float32"


@dataclass(frozen=True)
class OpEntry:
    """One operator type of a model: how many instances, its kernel kind and, for float kernels, why."""

    op: str
    count: int
    kernel: str  # int8 | int16x8 | float32 | float16 | hybrid
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
    return "/".join(sorted(types))


def _reason(name: str, kernel: str, mode: str | None) -> str:
    if mode in ("float32", "float16"):
        return "float export"
    if kernel == "hybrid":
        return _HYBRID_REASON
    if name in FLOAT_OP_REASONS:
        return FLOAT_OP_REASONS[name]
    return _DYNAMIC_FLOAT_REASON if mode == "dynamic" else _DEFAULT_REASON


def op_report(model_bytes: bytes, mode: str | None = None) -> OpReport:
    """Group the model's operators by name and tensor dtypes, and say which run in integer arithmetic.

    ``mode`` (the export mode, when known) only shapes the notes: float ops of a float export need no reason.
    """
    counts: Counter[tuple[str, str, str]] = Counter()
    for op in flatbuffer.list_ops(model_bytes):
        kernel = _kernel(op)
        counts[(op.op, kernel, f"{','.join(op.input_dtypes)} -> {','.join(op.output_dtypes)}")] += 1
    entries = []
    for (name, kernel, dtypes), n in sorted(counts.items()):
        note = ""
        if kernel in ("float32", "float16", "hybrid"):
            note = _reason(name, kernel, mode)
        entries.append(OpEntry(name, n, kernel, dtypes, note))
    return OpReport(tuple(entries))
