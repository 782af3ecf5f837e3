"""Latency, accuracy and size of .tflite files on the LiteRT interpreter (or on a phone over adb).

``measure_latency`` follows TFLite's ``benchmark_model`` tool: a first run and warm-up runs, then at least
``runs`` runs and at least ``min_seconds`` seconds, timing ``invoke()`` only. ``evaluate_tflite`` feeds
float model inputs, quantized with the model's own input scale and zero point. Results are dataclasses
with units in their field names; ``BenchResult.to_markdown`` renders, it never recomputes.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edgeopt import _litert, _tflite_meta
from edgeopt._adb import measure_latency_adb, parse_benchmark_output  # noqa: F401  (public, re-exported)
from edgeopt._litert import quantize_input
from edgeopt._tflite_meta import InvalidModelError  # noqa: F401
from edgeopt._bench_results import AccuracyResult, LatencyResult, SizeResult

__all__ = [
    "AccuracyResult", "BenchResult", "LatencyResult", "SizeResult", "evaluate_tflite", "load_test_data",
    "measure", "measure_latency", "measure_latency_adb", "parse_benchmark_output", "size_of",
]


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')} (Python interpreter)"
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "ai-edge-litert (Python interpreter)"


def machine() -> str:
    """CPU model and core count of this machine, e.g. 'Intel(R) Xeon(R) Processor, 2 cores, x86_64'."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.machine()}"


def _stats(times_ms: list[float]) -> dict:
    t = np.asarray(times_ms)
    return {
        "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "p95_ms": float(np.percentile(t, 95)),
        "mean_ms": float(t.mean()), "std_ms": float(t.std()), "min_ms": float(t.min()), "max_ms": float(t.max()),
    }


def _latency_inputs(details: dict, inputs: np.ndarray | None, count: int = 16) -> list[np.ndarray]:
    shape = tuple(int(v) for v in details["shape"])
    if inputs is not None:
        return [quantize_input(x[None], details) for x in np.asarray(inputs)[:count]]
    rng = np.random.default_rng(0)
    dtype = np.dtype(details["dtype"])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return [rng.integers(info.min, info.max + 1, size=shape, dtype=dtype) for _ in range(count)]
    return [rng.uniform(-1, 1, size=shape).astype(dtype) for _ in range(count)]


def measure_latency(
    model,
    *,
    threads: int = 1,
    runs: int = 50,
    min_seconds: float = 1.0,
    warmup: int = 1,
    xnnpack: bool = True,
    inputs: np.ndarray | None = None,
    max_seconds: float = 150.0,
) -> LatencyResult:
    """Time ``invoke()`` of a .tflite (bytes or path) on the LiteRT interpreter; returns :class:`LatencyResult`.

    ``warmup`` runs come first (the first of them is reported as ``first_ms``), then runs go on until at
    least ``runs`` runs and ``min_seconds`` seconds have passed (stopping at ``max_seconds``). ``inputs``
    are float model inputs (real test images), cycled; random inputs otherwise. Memory figures are this
    process's RSS growth in MB from just before the interpreter was created (Linux; None elsewhere).
    """
    if runs < 1 or warmup < 1 or min_seconds < 0:
        raise ValueError(f"runs and warmup must be >= 1 and min_seconds >= 0; got runs={runs}, warmup={warmup}, min_seconds={min_seconds}")
    data, label = _tflite_meta.load_model_bytes(model)
    rss0 = _litert.rss_mb()
    peak_ok = _litert.reset_peak_rss()
    t0 = _litert.now_ms()
    interp = _litert.make_interpreter(data, num_threads=threads, xnnpack=xnnpack)
    interp.allocate_tensors()
    init_ms = _litert.now_ms() - t0
    init_mem = _litert.rss_mb() - rss0 if rss0 is not None else None
    details = interp.get_input_details()[0]
    if inputs is not None:
        _litert.check_input_shape(interp, np.asarray(inputs).shape[1:], "latency inputs")
    feeds = _latency_inputs(details, inputs)

    def run(i: int) -> float:
        interp.set_tensor(details["index"], feeds[i % len(feeds)])
        start = _litert.now_ms()
        interp.invoke()
        return _litert.now_ms() - start

    warm = [run(i) for i in range(warmup)]
    times: list[float] = []
    start = _litert.now_ms()
    while len(times) < runs or (_litert.now_ms() - start) < min_seconds * 1e3:
        times.append(run(len(times)))
        if _litert.now_ms() - start > max_seconds * 1e3:
            break
    peak = _litert.peak_rss_mb() - rss0 if (peak_ok and rss0 is not None) else None
    return LatencyResult(
        model=label, threads=threads, xnnpack=xnnpack, runs=len(times), warmup_runs=warmup,
        init_ms=init_ms, first_ms=warm[0], warmup_ms=float(np.mean(warm)), **_stats(times),
        init_mem_mb=init_mem, peak_mem_mb=peak, inputs="dataset" if inputs is not None else "random",
        runtime=_litert_version(), device=machine(),
    )


def evaluate_tflite(model, dataset, limit: int | None = None) -> AccuracyResult:
    """Top-1 and top-5 accuracy (fractions) of a .tflite on a batched (float inputs, labels) dataset.

    Quantized models get their inputs quantized with the model's own input scale and zero point.
    """
    interp = _litert.make_interpreter(model)
    interp.allocate_tensors()
    correct1 = correct5 = total = 0
    for x, y in dataset:
        x, y = np.asarray(x), np.asarray(y).reshape(-1)
        if limit is not None:
            x, y = x[: limit - total], y[: limit - total]
        scores = _litert.predict(interp, x)
        top = np.argsort(-scores, axis=1)[:, :5]
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(axis=1).sum())
        total += len(y)
        if limit is not None and total >= limit:
            break
    if total == 0:
        raise ValueError("evaluate_tflite got an empty dataset")
    return AccuracyResult(correct1 / total, correct5 / total, total)


def size_of(model) -> SizeResult:
    """Raw and gzipped (level 9) size in bytes of a .tflite given as bytes or a path."""
    import gzip

    data, _ = _tflite_meta.load_model_bytes(model)
    return SizeResult(len(data), len(gzip.compress(data, 9, mtime=0)))


def load_test_data(model, dataset: str, limit: int | None = None, batch_size: int = 64):
    """The test split of ``dataset`` preprocessed as ``model`` expects; returns (tf.data.Dataset, Preprocessing).

    The preprocessing comes from the model's embedded edgeopt manifest; without one, from its input
    shape with the default normalization (pixel - 127.5) / 127.5.
    """
    from edgeopt.data import load_dataset

    data, _ = _tflite_meta.load_model_bytes(model)
    ins, _ = _tflite_meta.io_tensors(data)
    (h, w, c), mean, std = ins[0].shape[1:], 127.5, 127.5
    raw = _tflite_meta.read_metadata(data, "edgeopt_manifest")
    if raw is not None:
        import json

        prep = json.loads(raw.decode()).get("preprocessing") or {}
        mean, std = prep.get("mean", mean), prep.get("std", std)
    splits = load_dataset(dataset, image_size=(h, w), channels=c, batch_size=batch_size, limit_test=limit, mean=mean, std=std, limit_train=1)
    return splits.test, splits.preprocessing


@dataclass
class BenchResult:
    """Size, latency (one entry per thread count / setting) and accuracy of one .tflite."""

    model: str
    size: SizeResult
    latency: list[LatencyResult] = field(default_factory=list)
    accuracy: AccuracyResult | None = None
    dataset: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"**{self.model}**: {self.size.size_bytes:,} bytes ({self.size.gzip_bytes:,} gzipped)"]
        if self.accuracy:
            lines.append(f"accuracy on {self.dataset} test ({self.accuracy.samples} images): top-1 {self.accuracy.top1:.2%}, top-5 {self.accuracy.top5:.2%}")
        if self.latency:
            lines += ["", "| threads | XNNPACK | runs | init ms | first ms | median ms | p90 ms | mean ms | std ms | min ms | max ms | peak MB | inputs | runtime |",
                      "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
            for r in self.latency:
                lines.append(
                    f"| {r.threads} | {'on' if r.xnnpack else 'off'} | {r.runs} | {_f(r.init_ms)} | {_f(r.first_ms)} | {_f(r.median_ms)} | {_f(r.p90_ms)} | "
                    f"{_f(r.mean_ms)} | {_f(r.std_ms)} | {_f(r.min_ms)} | {_f(r.max_ms)} | {_f(r.peak_mem_mb, 1)} | {r.inputs} | {r.runtime} |"
                )
            lines.append(f"\nmachine: {self.latency[0].device}")
        return "\n".join(lines)


def _f(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def measure(model, dataset: str | None = None, *, threads=(1,), runs: int = 50, min_seconds: float = 1.0,
            warmup: int = 1, xnnpack: bool = True, limit: int | None = None) -> BenchResult:
    """Size, latency at each thread count (on real test images when ``dataset`` is given) and accuracy."""
    data, label = _tflite_meta.load_model_bytes(model)
    accuracy = inputs = None
    if dataset:
        test, _ = load_test_data(data, dataset, limit=limit)
        accuracy = evaluate_tflite(data, test)
        inputs = next(iter(test))[0].numpy()
    latency = [
        replace(measure_latency(data, threads=t, runs=runs, min_seconds=min_seconds, warmup=warmup, xnnpack=xnnpack, inputs=inputs), model=label)
        for t in threads
    ]
    return BenchResult(label, size_of(data), latency, accuracy, dataset)
