"""Latency of a .tflite on the LiteRT interpreter, timed the way TFLite's ``benchmark_model`` does it.

A first run and warm-up runs, then at least ``runs`` runs and at least ``min_seconds`` seconds, timing
``invoke()`` only; the result holds statistics (median, percentiles, min, max, std), never one number.

Variants that are compared are timed interleaved (:func:`interleaved_latency`: A, B, C, C, B, A, ...) so the
load of a shared machine hits all of them alike; :func:`pooled` makes one result of their rounds.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from importlib import metadata
from typing import TypeVar

import numpy as np

from edgeopt.bench.machine import machine
from edgeopt.bench.results import LatencyResult
from edgeopt.progress import bar
from edgeopt.tflite import flatbuffer, runtime
from edgeopt.tflite.runtime import quantize_input

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


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
    try:
        interp.allocate_tensors()
    except RuntimeError as err:
        hint = (" XNNPACK refuses degenerate int8 scales, such as a layer whose calibrated output is constant (dead channels): "
                "calibrate on real images, keep live channels, or time it with xnnpack=False" if xnnpack else "")
        raise RuntimeError(f"LiteRT could not prepare {label} for timing: {' '.join(str(err).split())}.{hint}") from err
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


# ---- interleaved timing ---------------------------------------------------------------------------------


def interleave(calls: Mapping[K, Callable[[], T]], rounds: int, *, alternate: bool = False, progress: str = "") -> dict[K, list[T]]:
    """Call every function once per round (A, B, C, A, B, C, ...; with ``alternate`` every other round runs
    backwards, C, B, A), so the load of a shared machine hits all of them alike. Returns each one's results in
    round order, with a bar over every call of every round (time left) labelled ``progress``."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1; got {rounds}")
    results: dict[K, list[T]] = {k: [] for k in calls}
    with bar(total=rounds * len(calls), desc=progress or "interleaved rounds", unit="call") as shown:
        for i in range(rounds):
            for k in (reversed(list(calls)) if alternate and i % 2 else list(calls)):
                results[k].append(calls[k]())
                shown.update(1)
            shown.set_postfix_str(f"round {i + 1}/{rounds}", refresh=False)
    return results


def interleaved_latency(files: Mapping[K, bytes | os.PathLike], rounds: int, *, alternate: bool = False, progress: str = "",
                        **measure_kw) -> dict[K, list[LatencyResult]]:
    """:func:`measure_latency` ``(file, **measure_kw)`` of every .tflite (bytes or path) once per round,
    interleaved as :func:`interleave`; returns each file's results in round order."""
    return interleave({k: partial(measure_latency, f, **measure_kw) for k, f in files.items()}, rounds, alternate=alternate, progress=progress)


def median_ms(results: Sequence[LatencyResult]) -> float:
    """Median over rounds of the per-round median latencies (ms)."""
    return float(np.median([r.median_ms for r in results]))


def pooled(results: Sequence[LatencyResult]) -> LatencyResult:
    """One :class:`LatencyResult` of the rounds of one file at one setting: ``median_ms`` is :func:`median_ms`
    (the median of per-round medians), the other statistics the median of the per-round ones, ``min_ms`` /
    ``max_ms`` / ``peak_mem_mb`` over all rounds, ``runs`` the timed runs of all rounds; initialization and
    first-run figures are the first round's."""
    if not results:
        raise ValueError("pooled needs at least one round")

    def mid(name: str) -> float | None:
        values = [getattr(r, name) for r in results if getattr(r, name) is not None]
        return float(np.median(values)) if values else None

    peaks = [r.peak_mem_mb for r in results if r.peak_mem_mb is not None]
    return replace(results[0], runs=sum(r.runs for r in results), median_ms=median_ms(results), p90_ms=mid("p90_ms"), p95_ms=mid("p95_ms"),
                   mean_ms=mid("mean_ms"), std_ms=mid("std_ms"), min_ms=min(r.min_ms for r in results), max_ms=max(r.max_ms for r in results),
                   peak_mem_mb=max(peaks) if peaks else None)
