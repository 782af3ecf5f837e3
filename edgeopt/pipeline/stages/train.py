"""The ``train`` stage (fit the model on the recipe's data; TrainConfig fields from the recipe's ``[train]``; an optional
``regularization`` penalty) and the ``finetune`` stage (transfer learning: the head on a frozen backbone, then its top
blocks at a lower rate)."""
from __future__ import annotations

from edgeopt.compress.regularize import fit_with_penalty, near_zero
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, model_metrics, stage
from edgeopt.transfer import FinetuneConfig, finetune


@stage("train", trains=True, regularizes=True)
def train_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    """Fit the model (with the stage's ``regularization`` penalty, if any; the next stage gets the model without it).
    Metrics include the share of near-zero kernel weights and filters (see :mod:`edgeopt.compress.regularize`)."""
    with ctx.strategy.scope():
        model, result = fit_with_penalty(model, ctx.splits, config.train, config.regularization, callbacks=ctx.train_callbacks)
    return StageOutcome(model, {"val_top1": round(result.val_top1, 4) if result.val_top1 is not None else None, "train_seconds": round(result.seconds, 1),
                                **near_zero(model).metrics(), **model_metrics(model, ctx)})


@stage("finetune", FinetuneConfig, trains=True)
def finetune_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    cfg: FinetuneConfig = config.technique
    with ctx.strategy.scope():
        result = finetune(model, ctx.splits, cfg, config.train, callbacks=ctx.train_callbacks)
    ctx.progress(f"  head: {', '.join(result.head_layers)}; unfrozen blocks: {len(result.unfrozen_blocks)}")
    val = result.val_top1
    return StageOutcome(model, {"val_top1": round(val, 4) if val is not None else None, "unfrozen_blocks": len(result.unfrozen_blocks),
                                **model_metrics(model, ctx)})
