"""A deployability report of a .tflite: will an Android app's standard APIs load and run it, and at what cost.

``inspect_model(path)`` gathers, without a phone: every operator with its version; the minimum LiteRT
(TFLite) runtime version that runs the file (the converter records it in the ``min_runtime_version``
metadata entry); which operators the GPU delegate can take (TensorFlow's model analyzer with
``gpu_compatibility``, the check ``tf.lite.experimental.Analyzer`` prints); the activation memory the
interpreter's arena needs (peak bytes of tensors alive at once, walking the ops in order: the bound
TFLite's arena planner reaches or comes near) and the process memory measured around loading; optionally
the time of each operator; and the standard metadata MediaPipe will read, with what is missing.

Per-operator time: LiteRT's Python interpreter exposes no op profiler, so ``op_times=True`` times the
model cut after each operator (the prefix ending there, outputs moved to that op's output) and takes the
differences of the medians. A delegate fuses differently per prefix, so the numbers are estimates of
where time goes, labelled as such; ``benchmark_model --enable_op_profiling=true`` on the phone is the
reference.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeopt._keras import tf  # noqa: F401  (TensorFlow comes through edgeopt._keras)
from edgeopt.tflite import flatbuffer, metadata, runtime
from edgeopt.tflite.flatbuffer import TENSOR_TYPE_NAMES, read_model, write_model
from edgeopt.tflite.xnnpack import MAX_REQUANTIZATION_SCALE, requantization_problems

_DTYPE_BYTES = {"float32": 4, "int32": 4, "uint8": 1, "int8": 1, "int16": 2, "float16": 2, "int64": 8, "bool": 1}


@dataclass(frozen=True)
class OpEntry:
    """One operator kind with its version and how many times the model uses it."""

    op: str
    version: int
    count: int
    gpu_compatible: bool
    gpu_note: str = ""


@dataclass
class DeployReport:
    """What ``edgeopt inspect`` prints: see the module docstring."""

    file: str
    size_bytes: int
    input: dict
    output: dict
    ops: list[OpEntry]
    min_runtime_version: str | None
    gpu_compatible: bool
    gpu_summary: str
    arena_bytes: int
    load_rss_mb: float | None
    metadata: dict | None
    packed_files: list[str]
    missing_for_mediapipe: list[str]
    op_times_ms: list[dict] = field(default_factory=list)
    xnnpack_problems: list[dict] = field(default_factory=list)  # ops XNNPACK refuses (edgeopt.tflite.xnnpack.requantization_problems)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"**{self.file}**: {self.size_bytes:,} bytes",
                 f"- input: {_tensor_line(self.input)}", f"- output: {_tensor_line(self.output)}",
                 f"- minimum LiteRT/TFLite runtime: {self.min_runtime_version or 'not recorded'}",
                 f"- GPU delegate: {'all ops compatible' if self.gpu_compatible else 'NOT all ops compatible'} ({self.gpu_summary})",
                 f"- activation arena: {self.arena_bytes:,} bytes (peak live tensors)" + (f"; process memory to load and run once: {self.load_rss_mb:.1f} MB" if self.load_rss_mb is not None else ""),
                 "", "| op | version | count | GPU |", "|---|---:|---:|---|"]
        lines += [f"| {o.op} | {o.version} | {o.count} | {'yes' if o.gpu_compatible else 'no: ' + o.gpu_note} |" for o in self.ops]
        if self.xnnpack_problems:
            lines += ["", "XNNPACK (LiteRT's default CPU delegate) REFUSES this file, so LiteRT with its default delegate and MediaPipe fail "
                      f"to load it (requantization scale must stay below {MAX_REQUANTIZATION_SCALE:g}; measured here on LiteRT's builtin kernels):"]
            lines += [f"- {p['op']} `{p['output'][:80]}`: requantization scale up to {p['max_scale']:,.0f} in {p['channels']} channels, output "
                      f"scale {p['output_scale']:.3g} (an output nearly constant on the calibration images)" for p in self.xnnpack_problems]
            lines += ["", "To make it load: check those layers' weights (pruning may have left them almost none) and the calibration "
                      "images, or export again with those layers kept float32 (`keep_float`)."]
        if self.op_times_ms:
            lines += ["", "time per operator (estimate: differences of prefix-model medians, 1 thread):", "", "| # | op | output | ms |", "|---:|---|---|---:|"]
            lines += [f"| {t['index']} | {t['op']} | {t['output'][:60]} | {t['ms']:.3f} |" for t in self.op_times_ms]
        lines += ["", "standard metadata (what MediaPipe's ImageClassifier reads):"]
        if self.metadata:
            m = self.metadata
            inp = m["inputs"][0] if m["inputs"] else {}
            lines.append(f"- name {m['name']!r}, version {m['version']!r}, author {m['author']!r}, min parser {m['min_parser_version']}")
            lines.append(f"- input: {inp.get('image')}, normalization {inp.get('normalization')}, range {inp.get('stats')}")
            lines.append(f"- output label files: {[f['name'] + ' (' + f['type'] + ')' for o in m['outputs'] for f in o['associated_files']]}; packed: {self.packed_files}")
        else:
            lines.append("- none")
        refusals = self.missing_for_mediapipe + (["XNNPACK cannot create its ops (above)"] if self.xnnpack_problems else [])
        lines.append("- MediaPipe ImageClassifier: " + ("loads it" if not refusals else "will refuse it: " + "; ".join(refusals)))
        return "\n".join(lines)


def _tensor_line(t: dict) -> str:
    q = f", scale {t['scale']:.6g}, zero point {t['zero_point']}" if t.get("scale") is not None else ""
    return f"{t['name']} {t['dtype']} {t['shape']}{q}"


def op_versions(data: bytes) -> list[tuple[str, int, int]]:
    """(op name, op version, count) of the main subgraph, in order of first use."""
    counts = Counter((op.op, op.version) for op in flatbuffer.list_ops(data))
    return [(name, version, n) for (name, version), n in counts.items()]


def min_runtime_version(data: bytes) -> str | None:
    """The converter's ``min_runtime_version`` metadata entry (e.g. "1.14.0"), or None."""
    raw = flatbuffer.read_metadata(data, "min_runtime_version")
    return raw.split(b"\0", 1)[0].decode() or None if raw else None


def gpu_compatibility(data: bytes) -> tuple[bool, dict[str, str], str]:
    """(all compatible, op name -> first warning, summary line) from TensorFlow's model analyzer."""
    from tensorflow.lite.python import analyzer

    text = analyzer._analyzer_wrapper.ModelAnalyzer(bytes(data), False, True)
    notes: dict[str, str] = {}
    for line in text.splitlines():
        if "GPU COMPATIBILITY WARNING" in line:
            op = re.search(r"Op#\d+ ([A-Z0-9_]+)", line)
            notes.setdefault(op.group(1) if op else "?", line.split("GPU COMPATIBILITY WARNING:", 1)[-1].strip())
    verdict = next((ln.strip() for ln in text.splitlines() if "GPU delegate" in ln and ("compatible" in ln or "incompatib" in ln)), "")
    ok = not notes and "looks compatible" in verdict
    return ok, notes, verdict or "no verdict from the analyzer"


def arena_bytes(data: bytes) -> int:
    """Peak bytes of non-constant tensors alive at once, walking the main subgraph's ops in order
    (inputs live from the start, each tensor until its last reader, outputs to the end)."""
    model = read_model(flatbuffer.load_model_bytes(data)[0])
    g = model.subgraphs[0]

    def is_constant(i: int) -> bool:
        t = g.tensors[i]
        return t.buffer < len(model.buffers) and model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data) > 0

    def nbytes(i: int) -> int:
        t = g.tensors[i]
        return int(np.prod(t.shape if t.shape is not None else [])) * _DTYPE_BYTES.get(TENSOR_TYPE_NAMES.get(t.type, ""), 4)

    last_use = {}
    for k, op in enumerate(g.operators):
        for i in op.inputs:
            if i >= 0:
                last_use[int(i)] = k
    for i in g.outputs:
        last_use[int(i)] = len(g.operators)
    live = {int(i) for i in g.inputs}
    peak = sum(nbytes(i) for i in live)
    for k, op in enumerate(g.operators):
        live |= {int(i) for i in op.outputs if not is_constant(int(i))}
        peak = max(peak, sum(nbytes(i) for i in live))
        live = {i for i in live if last_use.get(i, -1) > k}
    return peak


def _prefix_model(data: bytes, upto: int) -> bytes:
    """The model cut after operator ``upto``: its output becomes the only model output."""
    model = read_model(data)
    g = model.subgraphs[0]
    g.operators = g.operators[: upto + 1]
    g.outputs = np.array([int(g.operators[-1].outputs[0])], np.int32)
    model.signatureDefs = []
    return write_model(model, len(data))


def op_times(data: bytes, runs: int = 30, xnnpack: bool = True) -> list[dict]:
    """Estimated time of each operator (ms, 1 thread): differences of the medians of the prefix models."""
    ops = flatbuffer.list_ops(data)
    ins, _ = flatbuffer.io_tensors(data)
    x = np.zeros(ins[0].shape, np.dtype(ins[0].dtype))
    medians = []
    for k in range(len(ops)):
        interp = runtime.make_interpreter(_prefix_model(data, k), xnnpack=xnnpack)
        interp.allocate_tensors()
        index = interp.get_input_details()[0]["index"]
        interp.set_tensor(index, x)
        interp.invoke()
        times = []
        for _ in range(runs):
            start = runtime.now_ms()
            interp.invoke()
            times.append(runtime.now_ms() - start)
        medians.append(float(np.median(times)))
    previous = [0.0, *medians[:-1]]
    return [{"index": k, "op": o.op, "output": o.output_name, "ms": max(0.0, m - p)} for k, (o, m, p) in enumerate(zip(ops, medians, previous))]


def deploy_summary(data: bytes) -> dict:
    """The part of the deployability report that needs no interpreter (JSON-ready; export puts it in the
    manifest): operators with versions and GPU-delegate support, minimum runtime version, activation arena."""
    bare = metadata.strip_files(data)
    ok, notes, summary = gpu_compatibility(bare)
    return {
        "ops": [{"op": name, "version": version, "count": count, "gpu": name not in notes} for name, version, count in op_versions(bare)],
        "min_runtime_version": min_runtime_version(bare),
        "gpu_delegate": {"compatible": ok, "summary": summary, "warnings": notes},
        "arena_bytes": arena_bytes(bare),
    }


def inspect_model(model, *, with_op_times: bool = False) -> DeployReport:
    """The deployability report of a .tflite (bytes or path); see the module docstring."""
    data, label = flatbuffer.load_model_bytes(model)
    bare = metadata.strip_files(data)
    ins, outs = flatbuffer.io_tensors(bare)
    deploy = deploy_summary(bare)
    gpu = deploy["gpu_delegate"]
    ops = [OpEntry(o["op"], o["version"], o["count"], o["gpu"], gpu["warnings"].get(o["op"], "")) for o in deploy["ops"]]
    problems = [p.to_dict() for p in requantization_problems(bare)]
    before = runtime.rss_mb()
    interp = runtime.make_interpreter(bare, xnnpack=not problems)  # a file XNNPACK refuses still runs on the builtin kernels
    interp.allocate_tensors()
    interp.invoke()
    after = runtime.rss_mb()
    del interp
    return DeployReport(
        file=label, size_bytes=len(data), input=ins[0].to_dict(), output=outs[0].to_dict(), ops=ops,
        min_runtime_version=deploy["min_runtime_version"], gpu_compatible=gpu["compatible"], gpu_summary=gpu["summary"], arena_bytes=deploy["arena_bytes"],
        load_rss_mb=(after - before) if before is not None and after is not None else None,
        metadata=metadata.read_model_metadata(bare), packed_files=sorted(metadata.packed_files(data)),
        missing_for_mediapipe=metadata.missing_for_image_classifier(data),
        op_times_ms=op_times(bare, xnnpack=not problems) if with_op_times else [], xnnpack_problems=problems,
    )
