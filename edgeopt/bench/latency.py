"""Latency of a .tflite on the LiteRT interpreter, timed the way TFLite's ``benchmark_model`` does it.

A first run and warm-up runs, then at least ``runs`` runs and at least ``min_seconds`` seconds, timing
``invoke()`` only; the result holds statistics (median, percentiles, min, max, std), never one number.
"""
from __future__ import annotations

from importlib import metadata

import numpy as np

from edgeopt.bench.machine import machine
from edgeopt.bench.results import LatencyResult
from edgeopt.progress import bar
from edgeopt.tflite import flatbuffer, runtime
from edgeopt.tflite.runtime import quantize_input


def litert_version() -> str | None:
    """The installed ai-edge-litert version, e.g. "2.3.0"; None when its package metadata is missing."""
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:  # pragma: no cover - metadata missing in odd installs
        return None


def _runtime_label() -> str:
    """What every LatencyResult records as its ``runtime``."""
    version = litert_version()
    return f"ai-edge-litert {version} (Python interpreter)" if version else "ai-edge-litert (Python interpreter)"


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
    data, label = flatbuffer.load_model_bytes(model)
    rss0 = runtime.rss_mb()
    peak_ok = runtime.reset_peak_rss()
    t0 = runtime.now_ms()
    interp = runtime.make_interpreter(data, num_threads=threads, xnnpack=xnnpack)
    interp.allocate_tensors()
    init_ms = runtime.now_ms() - t0
    init_mem = runtime.rss_mb() - rss0 if rss0 is not None else None
    details = interp.get_input_details()[0]
    if inputs is not None:
        runtime.check_input_shape(interp, np.asarray(inputs).shape[1:], "latency inputs")
    feeds = _latency_inputs(details, inputs)

    def run(i: int) -> float:
        interp.set_tensor(details["index"], feeds[i % len(feeds)])
        start = runtime.now_ms()
        interp.invoke()
        return runtime.now_ms() - start

    warm = [run(i) for i in range(warmup)]
    times: list[float] = []
    start = runtime.now_ms()
    with bar(total=runs, desc=f"timing {label} ({threads} thread{'s' if threads > 1 else ''})", unit="run") as shown:
        while len(times) < runs or (runtime.now_ms() - start) < min_seconds * 1e3:
            times.append(run(len(times)))
            if len(times) <= runs:  # runs past the count (to fill min_seconds) leave the bar full
                shown.update(1)
            if runtime.now_ms() - start > max_seconds * 1e3:
                break
    peak = runtime.peak_rss_mb() - rss0 if (peak_ok and rss0 is not None) else None
    return LatencyResult(
        model=label, threads=threads, xnnpack=xnnpack, runs=len(times), warmup_runs=warmup,
        init_ms=init_ms, first_ms=warm[0], warmup_ms=float(np.mean(warm)), **_stats(times),
        init_mem_mb=init_mem, peak_mem_mb=peak, inputs="dataset" if inputs is not None else "random",
        runtime=_runtime_label(), device=machine(),
    )
