"""The ``bench`` stage: size, latency per thread count and accuracy of every .tflite the last export wrote."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgeopt import bench
from edgeopt.bench.accuracy import SPLITS
from edgeopt.config import RecipeError
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, stage


@dataclass(frozen=True)
class BenchStageConfig:
    """Latency at each of ``threads`` (median of >= ``runs`` runs and >= ``min_seconds``), accuracy and size
    of every .tflite the last export stage wrote. ``split``: the data the accuracy is measured on (and the
    latency fed with): "test" for a report, "val" for choosing between models (a search sets it), so that
    choosing never reads the test split."""

    threads: tuple[int, ...] = (1, 2)
    runs: int = 50
    min_seconds: float = 1.0
    xnnpack: bool = True
    accuracy: bool = True
    split: Literal["test", "val"] = "test"

    def __post_init__(self):
        if not self.threads or any(t < 1 for t in self.threads):
            raise ValueError(f"threads must be a non-empty list of counts >= 1, got {list(self.threads)}")
        if self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}")


@stage("bench", BenchStageConfig, makes_model=False)
def bench_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    exported = ctx.last_export()
    if exported is None:
        raise RecipeError(f"{ctx.stage_label}: a bench stage needs an export stage before it")
    cfg: BenchStageConfig = config.technique
    if cfg.split == "val" and not ctx.splits.sizes.get("val"):
        raise RecipeError(f"{ctx.stage_label}: split = \"val\" needs a validation split, but data.val_fraction is 0")
    metrics = {}
    images, _ = ctx.splits.arrays(cfg.split, limit=16)
    for stem, path in exported.items():
        latency = []
        for t in cfg.threads:
            ctx.progress(f"  timing {stem} at {t} thread(s)")
            latency.append(bench.measure_latency(path, threads=t, runs=cfg.runs, min_seconds=cfg.min_seconds, xnnpack=cfg.xnnpack, inputs=images))
        accuracy = bench.evaluate_tflite(path, getattr(ctx.splits, cfg.split), split=cfg.split) if cfg.accuracy else None
        result = bench.BenchResult(str(path), bench.size_of(path), latency, accuracy, ctx.recipe.data.dataset)
        metrics[stem] = result.to_dict()  # read back with BenchResult.from_dict
    return StageOutcome(None, metrics)
