"""Recipe stages over the compression steps: prune, prune_structured, cluster, qat, distill.

Each stage applies its ``edgeopt.compress`` step, fine-tunes with the stage's training settings (defaults
from the recipe's ``[train]``), strips training wrappers where the next stage needs a plain model, and
reports the Keras model's metrics. ``prune`` and ``prune_structured`` also take a ``regularization`` table
(a penalty on kernels during their fine-tuning, :mod:`edgeopt.compress.regularize`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeopt.compress import cluster as _cluster
from edgeopt.compress import prune as _prune
from edgeopt.compress import quantize as _quantize
from edgeopt.compress import structured as _structured
from edgeopt.compress.distill import DistillConfig, Distiller
from edgeopt.compress.regularize import fit_with_penalty, near_zero
from edgeopt.costs import profile
from edgeopt.io import load_model_safe, save_model_atomic, save_weights_atomic, write_atomic
from edgeopt.models import MODELS, check_model_fits, check_model_path, create, load_model
from edgeopt.pipeline.stage import RunContext, StageOutcome, keras_test_top1, load_stage_model, model_metrics, stage
from edgeopt.train import fit, make_optimizer


@stage("prune", _prune.PruneConfig, trains=True, regularizes=True)
def prune_stage(ctx: RunContext, model, config) -> StageOutcome:
    """Magnitude pruning while fine-tuning (with the stage's ``regularization`` penalty, if any), then stripped: the
    next stage gets a plain model with zeros."""
    cfg = config.technique
    with ctx.strategy.scope():
        wrapped = _prune.prune(model, cfg, total_steps=ctx.train_steps(config.train))
        wrapped, result = fit_with_penalty(wrapped, ctx.splits, config.train, config.regularization, callbacks=_prune.pruning_callbacks(cfg))
        plain = _prune.strip_pruning(wrapped)
    report = _prune.sparsity_report(plain)
    return StageOutcome(plain, {"val_top1": result.val_top1, "pruned_layers": len(report.layers), **near_zero(plain).metrics(), **model_metrics(plain, ctx)})


@stage("prune_structured", _structured.StructuredConfig, trains=True, regularizes=True)
def prune_structured_stage(ctx: RunContext, model, config) -> StageOutcome:
    """Remove whole filters by the config's criterion (L1 norm by default; data criteria read the training split),
    giving a smaller dense model, then fine-tune it (with the stage's ``regularization`` penalty, if any)."""
    before = profile(model)  # its cost only: the model before is not evaluated
    with ctx.strategy.scope():
        smaller = _structured.prune_filters(model, config.technique, data=ctx.splits.train)
        smaller, result = fit_with_penalty(smaller, ctx.splits, config.train, config.regularization)
    after = model_metrics(smaller, ctx)
    return StageOutcome(smaller, {"val_top1": result.val_top1, **near_zero(smaller).metrics(), **after, "macs_before": before.macs,
                                  "params_before": before.params})


@stage("cluster", _cluster.ClusterConfig, trains=True)
def cluster_stage(ctx: RunContext, model, config) -> StageOutcome:
    """Weight clustering while fine-tuning, then stripped (kernels hold only centroid values)."""
    with ctx.strategy.scope():
        wrapped = _cluster.cluster(model, config.technique)
        result = fit(wrapped, ctx.splits, config.train)
        plain = _cluster.strip_clustering(wrapped)
    unique = {w.name: w.unique_values for w in _cluster.weight_report(plain)}
    return StageOutcome(plain, {"val_top1": result.val_top1, "max_unique_weights": max(unique.values()) if unique else None, **model_metrics(plain, ctx)})


# A QAT model is saved as its weights beside the plain model it was made from and its QATConfig, and rebuilt
# by quantize() on load: tf_keras cannot load TF-MOT's wrappers back from a .keras file ("Layer
# 'quantize_layer' expected 5 variables, but received 3"), and from HDF5 the cluster-preserving wrappers
# come back with other variables, since they size them from the kernel values present when they are built.
_QAT_INPUT, _QAT_CONFIG = "qat_input.keras", "qat_config.json"


def saved_qat_config(text: str) -> "_quantize.QATConfig":
    """The QATConfig a qat stage saved. Fields added later default to what older edgeopt did, since the saved
    weights only load into a model rebuilt that way: before ``clustered_scales`` existed clustered kernels had
    TF-MOT's per-channel scales, and before ``depthwise_scales`` depthwise kernels had one range per tensor."""
    return _quantize.QATConfig.from_dict({"clustered_scales": "per_channel", "depthwise_scales": "per_tensor", **json.loads(text)})


def _load_qat(path: Path):
    plain = load_model_safe(path.parent / _QAT_INPUT)
    qat = _quantize.quantize(plain, saved_qat_config((path.parent / _QAT_CONFIG).read_text()))
    qat.load_weights(path)
    return qat


@stage("qat", _quantize.QATConfig, trains=True, load=_load_qat, model_file="model.weights.h5", save=save_weights_atomic)
def qat_stage(ctx: RunContext, model, config) -> StageOutcome:
    """Quantization-aware fine-tuning (``preserve`` = sparsity / clusters for PQAT / CQAT / PCQAT); the model
    stays QAT-wrapped so the export stage converts it with its learned quantization ranges."""
    save_model_atomic(model, ctx.stage_dir / _QAT_INPUT)
    write_atomic(ctx.stage_dir / _QAT_CONFIG, json.dumps(config.technique.to_dict()), overwrite=True)
    with ctx.strategy.scope():
        qat = _quantize.quantize(model, config.technique)
        if config.technique.calibration_samples:
            samples, _ = ctx.splits.arrays("train", limit=config.technique.calibration_samples)
            _quantize.calibrate_ranges(qat, model, samples)
        result = fit(qat, ctx.splits, config.train)
    return StageOutcome(qat, {"val_top1": result.val_top1, **model_metrics(qat, ctx)})


@dataclass(frozen=True)
class DistillStageConfig:
    """Distil into the current model (the student) from a teacher: the model saved by an earlier stage
    (``teacher_stage``, its index), a trained model file (``teacher_path``) or a zoo model (``teacher_model`` +
    ``teacher_knobs``) loaded from ``teacher_weights`` or trained here for ``teacher_epochs``. ``alpha`` weighs the hard-label loss."""

    alpha: float = 0.1
    temperature: float = 4.0
    teacher_stage: int | None = None
    teacher_model: str | None = None
    teacher_knobs: dict = field(default_factory=dict)
    teacher_weights: str | None = None
    teacher_epochs: int = 3
    teacher_path: str | None = None

    def __post_init__(self):
        DistillConfig(self.alpha, self.temperature)
        given = [k for k in ("teacher_stage", "teacher_model", "teacher_path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("teacher_stage, teacher_model or teacher_path (a trained model file) must be given, exactly one of them; "
                             f"got {', '.join(given) or 'none'}")
        if self.teacher_path is not None:
            check_model_path(self.teacher_path, "teacher_path")
        if self.teacher_model is not None:
            if self.teacher_model not in MODELS:
                raise ValueError(f"teacher_model must be one of {', '.join(MODELS.names())}; got {self.teacher_model!r}")
        if self.teacher_epochs < 0:
            raise ValueError(f"teacher_epochs must be >= 0, got {self.teacher_epochs}")


def _teacher(ctx: RunContext, cfg: DistillStageConfig, train_cfg):
    if cfg.teacher_stage is not None:
        done = [r for r in ctx.results if r.stage == cfg.teacher_stage and "model" in r.files]
        if not done:
            raise ValueError(f"{ctx.stage_label}: teacher_stage={cfg.teacher_stage} is not an earlier stage that saved a model")
        return load_stage_model(ctx.run_dir / done[0].dir, done[0].type)
    prep = ctx.splits.preprocessing
    if cfg.teacher_path is not None:  # a trained model file, checked against the data like the student
        teacher = check_model_fits(load_model(cfg.teacher_path), prep.input_shape, len(prep.class_names), ctx.recipe.data.dataset,
                                   class_names=prep.class_names, model_source=cfg.teacher_path)
        return teacher
    teacher = create(cfg.teacher_model, input_shape=prep.input_shape, classes=len(prep.class_names), weights=cfg.teacher_weights, **cfg.teacher_knobs)
    if cfg.teacher_weights is None and cfg.teacher_epochs:
        ctx.progress(f"  training teacher {cfg.teacher_model} for {cfg.teacher_epochs} epochs")
        fit(teacher, ctx.splits, replace(train_cfg, epochs=cfg.teacher_epochs))
    return teacher


@stage("distill", DistillStageConfig, trains=True)
def distill_stage(ctx: RunContext, model, config) -> StageOutcome:
    """Knowledge distillation (Hinton loss with temperature) of the current model from a teacher."""
    cfg: DistillStageConfig = config.technique
    with ctx.strategy.scope():
        teacher = _teacher(ctx, cfg, config.train)
        distiller = Distiller(model, teacher)
        distiller.compile(optimizer=make_optimizer(config.train, ctx.train_steps(config.train)), metrics=["accuracy"], alpha=cfg.alpha, temperature=cfg.temperature)
        result = fit(distiller, ctx.splits, config.train, compile=False)
    of_teacher = {"teacher_test_top1": keras_test_top1(teacher, ctx.splits)} if ctx.evaluate_test else {}
    return StageOutcome(distiller.student, {"val_top1": result.val_top1, **of_teacher, **model_metrics(distiller.student, ctx)})
