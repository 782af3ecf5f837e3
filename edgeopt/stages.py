"""The stage registry: each recipe stage type maps to a config class and a function model -> model.

A stage that trains accepts the TrainConfig fields (epochs, learning_rate, ...) next to its own fields;
their defaults come from the recipe's ``[train]`` section.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt._keras import keras
from edgeopt._schema import RecipeError, from_dict
from edgeopt.registry import Registry
from edgeopt.train import TrainConfig

TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "verbose")


@dataclass
class StageOutcome:
    """What a stage hands back: the model for the next stage (None: unchanged), metrics and files written."""

    model: keras.Model | None = None
    metrics: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StageConfig:
    technique: object | None
    train: TrainConfig | None


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable
    config_cls: type | None = None
    trains: bool = False
    makes_model: bool = True
    load: Callable[[Path], keras.Model] | None = None  # how to reload its saved model (e.g. inside a TF-MOT scope)
    model_file: str = "model.keras"  # the stage's model in its directory
    save: Callable[[keras.Model, Path], None] | None = None  # how to save it there, atomically (default: the whole model)

    def parse(self, params: dict, path: str, train_section) -> StageConfig:
        own = {f.name for f in dataclasses.fields(self.config_cls)} if self.config_cls else set()
        train_keys = set(TRAIN_FIELDS) if self.trains else set()
        unknown = sorted(set(params) - own - train_keys)
        if unknown:
            known = ", ".join(sorted(own | train_keys)) or "none"
            raise RecipeError(f"{path}.{unknown[0]} is not a known field of a {self.name} stage; known fields: {known}")
        technique = from_dict(self.config_cls, {k: v for k, v in params.items() if k in own}, path) if self.config_cls else None
        train = None
        if self.trains:
            overrides = {k: v for k, v in params.items() if k in train_keys}
            base = from_dict(TrainConfig, {**{k: getattr(train_section, k) for k in TRAIN_FIELDS}, **overrides}, path)
            train = base
        return StageConfig(technique, train)


STAGES: Registry[Stage] = Registry("stage")


def stage(name: str, config_cls: type | None = None, trains: bool = False, makes_model: bool = True, load=None, model_file: str = "model.keras",
          save=None):
    """Register a stage function ``fn(ctx, model, config: StageConfig) -> StageOutcome``."""

    def deco(fn):
        STAGES.register(name)(Stage(name, fn, config_cls, trains, makes_model, load, model_file, save))
        return fn

    return deco


def model_metrics(model: keras.Model, splits) -> dict:
    """Test accuracy, parameters, multiply-adds and weight sparsity of a Keras model."""
    from edgeopt.profile import profile, weight_sparsity
    from edgeopt.train import evaluate

    test = evaluate(model, splits.test)
    cost = profile(model)
    return {"test_top1": round(test["top1"], 4), "params": cost.params, "macs": cost.macs, "sparsity": round(weight_sparsity(model), 4)}


# ---- train ---------------------------------------------------------------------------------------


@stage("train", trains=True)
def train_stage(ctx, model, config: StageConfig) -> StageOutcome:
    from edgeopt.train import fit

    with ctx.strategy.scope():
        result = fit(model, ctx.splits, config.train, callbacks=ctx.train_callbacks)
    return StageOutcome(model, {"val_top1": round(result.val_top1, 4) if result.val_top1 is not None else None, "train_seconds": round(result.seconds, 1), **model_metrics(model, ctx.splits)})


# ---- export --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportStageConfig:
    """``mode``: float32, float16, dynamic, int8 or int16x8; ``baseline`` also exports the float32 model
    of the last ``train`` stage so reports compare the shipped model against the uncompressed one;
    ``sparse_weights`` stores pruned kernels in TFLite's sparse format (smaller float files)."""

    mode: str = "int8"
    num_calibration: int = 300
    min_agreement: float = 0.98
    verify_samples: int = 500
    baseline: bool = True
    sparse_weights: bool = False

    def __post_init__(self):
        modes = ("float32", "float16", "dynamic", "int8", "int16x8")
        if self.mode not in modes:
            raise ValueError(f"mode must be one of {', '.join(modes)}; got {self.mode!r}")
        if self.num_calibration < 1:
            raise ValueError(f"num_calibration must be >= 1, got {self.num_calibration}")
        if not 0 <= self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement}")
        if self.verify_samples < 1:
            raise ValueError(f"verify_samples must be >= 1, got {self.verify_samples}")


@stage("export", ExportStageConfig, makes_model=False)
def export_stage(ctx, model, config: StageConfig) -> StageOutcome:
    from edgeopt.export import to_tflite

    cfg: ExportStageConfig = config.technique
    verify = ctx.splits.val if ctx.splits.sizes.get("val") else ctx.splits.test
    files, metrics = {}, {}
    jobs = [("model", model, cfg.mode, cfg.sparse_weights)]
    baseline = ctx.baseline_model() if cfg.baseline else None
    if baseline is not None:
        jobs.append(("baseline_float32", baseline, "float32", False))
    for stem, m, mode, sparse in jobs:
        ctx.progress(f"  converting {stem} to {mode}")
        art = to_tflite(m, mode, ctx.splits.train, preprocessing=ctx.splits.preprocessing, path=ctx.stage_dir / f"{stem}.tflite",
                        verify_data=verify, num_calibration=cfg.num_calibration, num_verify=cfg.verify_samples,
                        min_agreement=cfg.min_agreement, overwrite=True, sparse_weights=sparse,
                        source={"recipe": ctx.recipe.name, "stage": ctx.stage_label})
        files[stem] = f"{stem}.tflite"
        check = art.verification
        metrics[stem] = {"mode": mode, "size_bytes": len(art.model_bytes), "convert_seconds": round(art.convert_seconds, 1),
                         "agreement": check.top1_agreement if check else None, "mean_abs_diff": check.mean_abs_diff if check else None}
    return StageOutcome(None, metrics, files)


# ---- bench ---------------------------------------------------------------------------------------


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
def bench_stage(ctx, model, config: StageConfig) -> StageOutcome:
    from edgeopt import bench

    cfg: BenchStageConfig = config.technique
    exported = ctx.last_export()
    if exported is None:
        raise RecipeError(f"{ctx.stage_label}: a bench stage needs an export stage before it")
    metrics = {}
    images, _ = ctx.splits.arrays("test", limit=16)
    for stem, path in exported.items():
        row = {"size": dataclasses.asdict(bench.size_of(path))}
        for t in cfg.threads:
            ctx.progress(f"  timing {stem} at {t} thread(s)")
            row[f"latency_{t}t"] = dataclasses.asdict(bench.measure_latency(path, threads=t, runs=cfg.runs, min_seconds=cfg.min_seconds, xnnpack=cfg.xnnpack, inputs=images))
        if cfg.accuracy:
            row["accuracy"] = dataclasses.asdict(bench.evaluate_tflite(path, ctx.splits.test))
        metrics[stem] = row
    return StageOutcome(None, metrics)


from edgeopt import _compress_stages  # noqa: E402,F401  (registers prune, prune_structured, cluster, qat, distill)
