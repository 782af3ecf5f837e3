"""Recipe stage ``prune_budget``: remove filters in rounds until a multiply-add, parameter or int8-latency budget or an
accuracy floor is reached (:mod:`edgeopt.compress.budget`); data criteria and latency calibration read the training split.

Each round's fine-tuning is the stage's training (the recipe's ``[train]`` with the stage's own ``epochs``,
``steps_per_epoch``, ... on top), so the stage takes no ``train`` table. The cost table is saved as
``cost_table.json`` in the stage directory; ``table_path`` reads one saved earlier (by a run on the same architecture
and machine) instead of measuring it again.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeopt.compress.budget import BudgetPruneConfig, budget_prune
from edgeopt.compress.cost_table import CostTable
from edgeopt.compress.regularize import near_zero
from edgeopt.io import write_atomic
from edgeopt.pipeline.stage import RunContext, StageOutcome, model_metrics, stage
from edgeopt.train import TrainConfig

TABLE_FILE = "cost_table.json"


@dataclass(frozen=True)
class BudgetStageConfig(BudgetPruneConfig):
    """:class:`~edgeopt.compress.budget.BudgetPruneConfig` without its ``train`` field (the stage trains with its
    training keys), plus ``table_path``: a ``cost_table.json`` written by an earlier ``prune_budget`` stage."""

    train: TrainConfig = field(init=False, default_factory=TrainConfig)
    table_path: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.table_path is not None and not Path(self.table_path).expanduser().is_file():
            raise ValueError(f"table_path {self.table_path!r} is not a file (a cost_table.json written by a prune_budget stage)")


@stage("prune_budget", BudgetStageConfig, trains=True)
def prune_budget_stage(ctx: RunContext, model, config) -> StageOutcome:
    """Rounds of filter removal and fine-tuning until the first budget; the next stage gets the smaller model.
    Metrics: why it stopped, the budgets met, the accuracy floor, every round (prediction and measurement)."""
    fields = {k: v for k, v in config.technique.to_dict().items() if k != "table_path"}
    technique = replace(BudgetPruneConfig.from_dict(fields), train=config.train)
    path = config.technique.table_path
    table = CostTable.from_dict(json.loads(Path(path).expanduser().read_text())) if path else None
    with ctx.strategy.scope():
        pruned, result = budget_prune(model, ctx.splits, technique, table=table, evaluate_test=ctx.evaluate_test)
    files = {}
    if getattr(ctx, "stage_dir", None) is not None and result.table:
        write_atomic(Path(ctx.stage_dir) / TABLE_FILE, json.dumps(result.table, indent=1), overwrite=True)
        files["cost_table"] = TABLE_FILE
    final = result.final
    return StageOutcome(pruned, {"val_top1": final.val_top1, "latency_ms": final.latency_ms, "stop_reason": result.stop_reason,
                                 "budgets_met": list(result.budgets_met), "budgets": result.budgets, "floor": result.floor, "resource": result.resource,
                                 "rounds": [asdict(r) for r in result.rounds], **near_zero(pruned).metrics(), **model_metrics(pruned, ctx)}, files)
