"""The ``train`` stage: fit the model on the recipe's data (TrainConfig fields from the recipe's ``[train]``)."""
from __future__ import annotations

from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, model_metrics, stage
from edgeopt.train import fit


@stage("train", trains=True)
def train_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    with ctx.strategy.scope():
        result = fit(model, ctx.splits, config.train, callbacks=ctx.train_callbacks)
    return StageOutcome(model, {"val_top1": round(result.val_top1, 4) if result.val_top1 is not None else None, "train_seconds": round(result.seconds, 1), **model_metrics(model, ctx.splits)})
