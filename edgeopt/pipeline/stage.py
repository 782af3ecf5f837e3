"""The stage contract: the stage registry, what a stage gets (:class:`RunContext`) and what it returns.

Each recipe stage type maps to a config class and a function ``fn(ctx, model, config) -> StageOutcome``
(model -> model); ``edgeopt.pipeline.stages`` registers them. A stage that trains accepts the TrainConfig
fields (epochs, learning_rate, ...) next to its own fields; their defaults come from the recipe's
``[train]`` section. A stage registered with ``regularizes=True`` also accepts a ``regularization`` table
(:class:`~edgeopt.compress.regularize.RegularizationConfig`: a penalty added to its training loss). The runner turns each outcome into a :class:`StageResult` (``result.json``); reports
and search read those objects, never key names.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edgeopt._keras import keras
from edgeopt.compress.regularize import RegularizationConfig
from edgeopt.config import RecipeError, from_dict
from edgeopt.data import Splits
from edgeopt.io import load_model_safe
from edgeopt.costs import profile, weight_sparsity
from edgeopt.registry import Registry
from edgeopt.train import TrainConfig, evaluate

if TYPE_CHECKING:  # the recipe module imports this one (its stages parse themselves); only a type here
    from edgeopt.pipeline.recipe import Recipe

# stages whose model is the float baseline of later compression: they train the full float model (distill: a student
# trained with a teacher's soft labels, from scratch or on top of a train stage) and change no weight's precision or count
BASELINE_STAGES = ("train", "finetune", "distill")
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
    regularization: RegularizationConfig | None = None  # a penalty for the stage's training (regularizes=True stages)


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
    regularizes: bool = False  # accepts a ``regularization`` table for its training

    def parse(self, params: dict, path: str, train_section) -> StageConfig:
        own = {f.name for f in dataclasses.fields(self.config_cls)} if self.config_cls else set()
        train_keys = set(TRAIN_FIELDS) if self.trains else set()
        extra = {"regularization"} if self.regularizes else set()
        unknown = sorted(set(params) - own - train_keys - extra)
        if unknown:
            known = ", ".join(sorted(own | train_keys | extra)) or "none"
            raise RecipeError(f"{path}.{unknown[0]} is not a known field of a {self.name} stage; known fields: {known}")
        technique = from_dict(self.config_cls, {k: v for k, v in params.items() if k in own}, path) if self.config_cls else None
        train = None
        if self.trains:
            overrides = {k: v for k, v in params.items() if k in train_keys}
            base = from_dict(TrainConfig, {**{k: getattr(train_section, k) for k in TRAIN_FIELDS}, **overrides}, path)
            train = base
        penalty = params.get("regularization") if self.regularizes else None
        regularization = from_dict(RegularizationConfig, penalty, f"{path}.regularization") if penalty is not None else None
        return StageConfig(technique, train, regularization)


STAGES: Registry[Stage] = Registry("stage")


def stage(name: str, config_cls: type | None = None, trains: bool = False, makes_model: bool = True, load=None, model_file: str = "model.keras",
          save=None, regularizes: bool = False):
    """Register a stage function ``fn(ctx, model, config: StageConfig) -> StageOutcome``."""

    def deco(fn):
        STAGES.register(name)(Stage(name, fn, config_cls, trains, makes_model, load, model_file, save, regularizes))
        return fn

    return deco


def keras_test_top1(model: keras.Model, splits: Splits) -> float:
    """Top-1 accuracy (a fraction, 4 decimals) of a Keras model on the test split: the one place a Keras model reads it."""
    return round(evaluate(model, splits.test)["top1"], 4)


def model_metrics(model: keras.Model, ctx: "RunContext") -> dict:
    """Parameters, multiply-adds and weight sparsity of a Keras model, and its test top-1 (``test_top1``) when
    ``ctx.evaluate_test``; otherwise the test split is not read (a search trial chooses on validation data only)."""
    cost = profile(model)
    tested = {"test_top1": keras_test_top1(model, ctx.splits)} if ctx.evaluate_test else {}
    return {**tested, "params": cost.params, "macs": cost.macs, "sparsity": round(weight_sparsity(model), 4)}


def load_stage_model(stage_dir: Path, stage_type: str) -> keras.Model:
    """The model a finished stage of type ``stage_type`` saved in ``stage_dir`` (its own loader, if any)."""
    stage = STAGES.get(stage_type)
    return (stage.load or load_model_safe)(Path(stage_dir) / stage.model_file)


@dataclass
class StageResult:
    """What a finished stage left: written as its ``result.json`` (last, atomically) and listed in the run report.

    ``metrics`` are the stage's own measurements (a model stage's ``params``, ``macs``, ``sparsity`` and, unless the
    run left the test split out, Keras ``test_top1``; an export stage's per-file entries; a bench stage's
    ``BenchResult`` dicts per file); ``files`` maps roles (``model``, a .tflite stem) to file names in ``dir``.
    """

    stage: int
    type: str
    dir: str = ""
    fingerprint: str = ""
    config: dict = field(default_factory=dict)
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StageResult":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def stage_results(report: dict) -> list[StageResult]:
    """The stages of a run report (``report.json``) as :class:`StageResult` records."""
    return [StageResult.from_dict(s) for s in report["stages"]]


def latest(results: list[StageResult], stage_type: str) -> StageResult | None:
    """The most recent finished stage of ``stage_type`` among ``results``, if any."""
    return next((r for r in reversed(results) if r.type == stage_type), None)


def latest_baseline(results: list[StageResult]) -> StageResult | None:
    """The most recent finished stage among ``results`` whose model is the float baseline (:data:`BASELINE_STAGES`)."""
    return next((r for r in reversed(results) if r.type in BASELINE_STAGES), None)


def last_model_stage(results: list[StageResult]) -> StageResult | None:
    """The last stage among ``results`` that measured a Keras model (every such stage reports ``params``;
    ``test_top1`` only where the run evaluated the test split), if any."""
    return next((r for r in reversed(results) if "params" in r.metrics), None)


def last_model_metrics(results: list[StageResult]) -> dict:
    """The metrics of the last stage that measured a Keras model (``params``, ``macs``, ``sparsity``, ``val_top1``,
    ``test_top1`` where measured, ...); empty when none did."""
    last = last_model_stage(results)
    return last.metrics if last is not None else {}


@dataclass
class RunContext:
    """What a stage can use: the recipe, data splits, its directory, and earlier stages' results."""

    recipe: "Recipe"
    splits: Splits
    run_dir: Path
    strategy: object  # a tf.distribute.Strategy
    progress: Callable[[str], None]
    results: list[StageResult] = field(default_factory=list)
    train_callbacks: tuple = ()  # extra Keras callbacks for the train stage (e.g. a search's trial pruning)
    stage_dir: Path | None = None
    stage_label: str = ""
    initial_model: Callable[[], keras.Model] | None = None  # the recipe's model before any stage (None: built from scratch)
    evaluate_test: bool = True  # stages measure their Keras model on the test split (False: a search trial, which never reads it)

    def stage_dirs(self) -> list[Path]:
        return [self.run_dir / f"{i:02d}-{s.type}" for i, s in enumerate(self.recipe.stages)]

    def last_result(self, stage_type: str) -> StageResult | None:
        """The most recent finished stage of ``stage_type``, if any."""
        return latest(self.results, stage_type)

    def baseline_model(self) -> keras.Model | None:
        """The float model to compare against: the one saved by the most recent stage of :data:`BASELINE_STAGES`, else
        the model the run started from (a user's trained model file), else None."""
        trained = latest_baseline(self.results)
        if trained is not None:
            return load_stage_model(self.run_dir / trained.dir, trained.type)
        return self.initial_model() if self.initial_model is not None else None

    def last_export(self) -> dict[str, Path] | None:
        """``{name: path}`` of the .tflite files of the most recent export stage."""
        export = self.last_result("export")
        return {stem: self.run_dir / export.dir / name for stem, name in export.files.items()} if export else None

    def train_steps(self, train_cfg: TrainConfig) -> int:
        """Optimizer steps a training stage with ``train_cfg`` takes (for schedules that need the total)."""
        per_epoch = train_cfg.steps_per_epoch or -(-self.splits.sizes["train"] // self.recipe.data.batch_size)
        return per_epoch * train_cfg.epochs
