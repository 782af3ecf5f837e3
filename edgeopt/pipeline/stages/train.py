"""The ``train`` stage (fit the model on the recipe's data; TrainConfig fields from the recipe's ``[train]``) and the
``finetune`` stage (transfer learning: the head on a frozen backbone, then its top blocks at a lower rate)."""
from __future__ import annotations

from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, model_metrics, stage
from edgeopt.train import fit
from edgeopt.transfer import FinetuneConfig, finetune


@stage("train", trains=True)
def train_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    with ctx.strategy.scope():
        result = fit(model, ctx.splits, config.train, callbacks=ctx.train_callbacks)
    return StageOutcome(model, {"val_top1": round(result.val_top1, 4) if result.val_top1 is not None else None, "train_seconds": round(result.seconds, 1), **model_metrics(model, ctx)})


@stage("finetune", FinetuneConfig, trains=True)
def finetune_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    cfg: FinetuneConfig = config.technique
    with ctx.strategy.scope():
        result = finetune(model, ctx.splits, cfg, config.train, callbacks=ctx.train_callbacks)
    ctx.progress(f"  head: {', '.join(result.head_layers)}; unfrozen blocks: {len(result.unfrozen_blocks)}")
    val = result.val_top1
    return StageOutcome(model, {"val_top1": round(val, 4) if val is not None else None, "unfrozen_blocks": len(result.unfrozen_blocks),
                                **model_metrics(model, ctx)})
