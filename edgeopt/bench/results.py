"""Result records of edgeopt.bench: dataclasses with units in their field names; reports render them, never recompute."""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields


class _Record:
    """Results serialize to plain dicts (JSON) with their field names, units included."""

    def to_dict(self) -> dict:
        return asdict(self)


def _from_fields(cls, data: dict):
    """``cls`` from a dict written by ``asdict``; fields a record gained later (absent in older files) take
    their default, or None when they have none."""
    return cls(**{f.name: data.get(f.name) for f in fields(cls) if f.name in data or f.default is MISSING})


@dataclass(frozen=True)
class LatencyResult(_Record):
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


@dataclass(frozen=True)
class AccuracyResult(_Record):
    """Top-1 and top-5 accuracy (fractions in [0, 1]) over ``samples`` images of the dataset's ``split``."""

    top1: float
    top5: float
    samples: int
    runtime: str = "litert"  # "litert": edgeopt's preprocessing + LiteRT interpreter; "mediapipe": MediaPipe's ImageClassifier
    split: str = "test"  # "test", or "val" where a search selects models (records written before this field: test)


@dataclass(frozen=True)
class SizeResult(_Record):
    """File size in bytes, raw and gzip-compressed (level 9): what an app download costs."""

    size_bytes: int
    gzip_bytes: int


@dataclass
class BenchResult(_Record):
    """Size, latency (one entry per thread count / setting) and accuracy of one .tflite."""

    model: str
    size: SizeResult
    latency: list[LatencyResult] = field(default_factory=list)
    accuracy: AccuracyResult | None = None
    dataset: str | None = None
    app_accuracy: AccuracyResult | None = None  # through MediaPipe's ImageClassifier (bench --runtime mediapipe)

    @classmethod
    def from_dict(cls, data: dict, model: str = "") -> "BenchResult":
        """A BenchResult from :meth:`to_dict`; also reads the bench-stage entries of run reports written
        before 0.2 (``{"size": ..., "latency_1t": ..., "accuracy": ...}``), which committed reports hold."""
        if "latency" in data:
            latency = [_from_fields(LatencyResult, d) for d in data["latency"]]
        else:
            legacy = {int(k[len("latency_"):].rstrip("t")): v for k, v in data.items() if k.startswith("latency_")}
            latency = [_from_fields(LatencyResult, {"threads": t, **legacy[t]}) for t in sorted(legacy)]
        accuracy = _from_fields(AccuracyResult, data["accuracy"]) if data.get("accuracy") else None
        app = _from_fields(AccuracyResult, data["app_accuracy"]) if data.get("app_accuracy") else None
        return cls(data.get("model", model), _from_fields(SizeResult, data["size"]), latency, accuracy, data.get("dataset"), app)

    def median_ms(self, threads: int) -> float | None:
        """Median latency at ``threads`` threads (XNNPACK as measured), or None when not measured."""
        return next((r.median_ms for r in self.latency if r.threads == threads), None)

    def to_markdown(self) -> str:
        lines = [f"**{self.model}**: {self.size.size_bytes:,} bytes ({self.size.gzip_bytes:,} gzipped)"]
        if self.accuracy:
            lines.append(f"accuracy on {self.dataset} {self.accuracy.split} ({self.accuracy.samples} images): top-1 {self.accuracy.top1:.2%}, top-5 {self.accuracy.top5:.2%}")
        if self.app_accuracy:
            a = self.app_accuracy
            gap = f" ({(a.top1 - self.accuracy.top1) * 100:+.2f} points vs LiteRT)" if self.accuracy else ""
            lines.append(f"accuracy through MediaPipe's ImageClassifier ({a.samples} images): top-1 {a.top1:.2%}{gap}, top-5 {a.top5:.2%}")
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
