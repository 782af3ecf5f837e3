"""Recipe stage ``prune_saliency``: iterative saliency pruning (:mod:`edgeopt.compress.saliency_prune`), weights or
filters, by any criterion of :mod:`edgeopt.compress.saliency`; data criteria read the run's training split.

Each round's fine-tuning is the stage's training (the recipe's ``[train]`` with the stage's own ``epochs``,
``learning_rate``, ... on top), like every other training stage, so the stage takes no ``train`` table; its
``regularization`` table (a field of the pruning config) adds a penalty to every fine-tuning. A sparsity profile,
each layer to its own share (weights, ``scope = "layer"``): ``layer_sparsity = { block6a_expand_conv = 0.9, classifier = 0.5 }``
instead of ``target_sparsity``; the layers it does not name stay whole.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from edgeopt.compress.regularize import near_zero
from edgeopt.compress.saliency_prune import SaliencyPruneConfig, saliency_prune
from edgeopt.pipeline.stage import RunContext, StageOutcome, model_metrics, stage
from edgeopt.train import TrainConfig


@dataclass(frozen=True)
class SaliencyStageConfig(SaliencyPruneConfig):
    """:class:`~edgeopt.compress.saliency_prune.SaliencyPruneConfig` without its ``train`` field (a recipe stage
    trains with its training keys): a ``train`` table in the stage is an unknown field."""

    train: TrainConfig = field(init=False, default_factory=TrainConfig)


@stage("prune_saliency", SaliencyStageConfig, trains=True)
def prune_saliency_stage(ctx: RunContext, model, config) -> StageOutcome:
    """``rounds`` of score -> remove -> fine-tune; the next stage gets a plain model (exact zeros in its kernels for
    ``granularity = "weight"``, fewer filters for ``"filter"``). Metrics: the last round's and every round's."""
    technique = SaliencyPruneConfig.from_dict(config.technique.to_dict())
    with ctx.strategy.scope():
        pruned, result = saliency_prune(model, ctx.splits, replace(technique, train=config.train), evaluate_test=ctx.evaluate_test)
    last = result.rounds[-1]
    return StageOutcome(pruned, {"val_top1": last.val_top1, "remaining": round(last.remaining, 4),
                                 "rounds": [asdict(r) for r in result.rounds], **near_zero(pruned).metrics(), **model_metrics(pruned, ctx)})
