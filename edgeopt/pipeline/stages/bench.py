"""The ``bench`` stage: size, latency per thread count and accuracy of every .tflite the last export wrote."""
from __future__ import annotations

from dataclasses import dataclass

from edgeopt import bench
from edgeopt.config import RecipeError
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, stage


@dataclass(frozen=True)
class BenchStageConfig:
    """Latency at each of ``threads`` (median of >= ``runs`` runs and >= ``min_seconds``), accuracy and size
    of every .tflite the last export stage wrote."""

    threads: tuple[int, ...] = (1, 2)
    runs: int = 50
    min_seconds: float = 1.0
    xnnpack: bool = True
    accuracy: bool = True

    def __post_init__(self):
        if not self.threads or any(t < 1 for t in self.threads):
            raise ValueError(f"threads must be a non-empty list of counts >= 1, got {list(self.threads)}")
        if self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")


@stage("bench", BenchStageConfig, makes_model=False)
def bench_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    exported = ctx.last_export()
    if exported is None:
        raise RecipeError(f"{ctx.stage_label}: a bench stage needs an export stage before it")
    cfg: BenchStageConfig = config.technique
    metrics = {}
    images, _ = ctx.splits.arrays("test", limit=16)
    for stem, path in exported.items():
        latency = []
        for t in cfg.threads:
            ctx.progress(f"  timing {stem} at {t} thread(s)")
            latency.append(bench.measure_latency(path, threads=t, runs=cfg.runs, min_seconds=cfg.min_seconds, xnnpack=cfg.xnnpack, inputs=images))
        accuracy = bench.evaluate_tflite(path, ctx.splits.test) if cfg.accuracy else None
        result = bench.BenchResult(str(path), bench.size_of(path), latency, accuracy, ctx.recipe.data.dataset)
        metrics[stem] = result.to_dict()  # read back with BenchResult.from_dict
    return StageOutcome(None, metrics)
