"""Result records of edgeopt.bench (kept apart so the adb parser can build them without importing bench)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one .tflite at one setting. Times in milliseconds, memory in MB (None when unknown).

    ``first_ms`` is the first run (it includes lazy allocations, e.g. XNNPACK weight packing on some
    runtimes); ``warmup_ms`` the mean of the warm-up runs; the statistics cover the timed runs only.
    Memory: growth of the process's resident memory from just before the interpreter was created
    (``init_mem_mb`` after initialization, ``peak_mem_mb`` the peak over the whole measurement); on a
    device, benchmark_model's own "memory footprint delta" figures.
    """

    model: str
    threads: int
    xnnpack: bool
    runs: int
    warmup_runs: int
    init_ms: float | None
    first_ms: float | None
    warmup_ms: float | None
    median_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    mean_ms: float | None
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    init_mem_mb: float | None
    peak_mem_mb: float | None
    inputs: str  # "dataset" (real test images) | "random"
    runtime: str
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AccuracyResult:
    """Top-1 and top-5 accuracy (fractions in [0, 1]) over ``samples`` test images."""

    top1: float
    top5: float
    samples: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SizeResult:
    """File size in bytes, raw and gzip-compressed (level 9): what an app download costs."""

    size_bytes: int
    gzip_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)
