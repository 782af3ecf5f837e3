"""Recipe stage ``nas``: differentiable architecture search (:func:`edgeopt.search.darts.search`) on the run's data;
the next stage gets the derived (argmax) network.

The stage replaces the model it is given (the recipe's ``model`` only has to exist): it searches a space, named
(``preset = "mobilenet_v2"`` at ``width``) or given as a table (``space = { stages = [...], ... }``, as
:class:`~edgeopt.search.nas_space.NasSpace`), with ``search = { epochs = ..., cost_weight = ... }``
(:class:`~edgeopt.search.darts.DartsConfig`). ``init = "scratch"`` hands on the derived network with new weights,
to be trained from scratch by a following ``train`` stage (the DARTS protocol); ``"supernet"`` with the
supernet's weights of its operations and recalibrated batch norm, to be fine-tuned.

Resumable: the search saves every epoch under ``<run>/checkpoints/<stage dir>-<fingerprint>/`` (outside the stage
directory, which the runner empties before running an unfinished stage again), so ``--resume`` after a crash
continues the search where it stopped; a changed recipe has another fingerprint and starts afresh.
Single device: the search's training loop does not run under ``train.distribute``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from edgeopt.config import Config
from edgeopt.io import write_atomic
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, model_metrics, stage
from edgeopt.search.darts import DartsConfig, search
from edgeopt.search.nas_space import SPACES, NasSpace, build_network
from edgeopt.search.oneshot import calibration_batches, recalibrate_batch_norm

INITS = ("scratch", "supernet")


@dataclass(frozen=True)
class NasStageConfig(Config):
    """``preset`` (a registered space: mobilenet_v2, tiny) at ``width``, or ``space`` (a table; it wins over the
    preset), ``search`` (DartsConfig fields), ``init`` (scratch or supernet)."""

    preset: str = "mobilenet_v2"
    width: float = 1.0
    space: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    init: str = "scratch"

    def __post_init__(self):
        if self.preset not in SPACES:
            raise ValueError(f"preset must be one of {', '.join(SPACES.names())}; got {self.preset!r}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        self.nas_space()  # a bad table fails when the recipe is read, naming its field
        self.darts()

    def nas_space(self) -> NasSpace:
        return NasSpace.from_dict(self.space, "space") if self.space else SPACES.get(self.preset)(self.width)

    def darts(self) -> DartsConfig:
        return DartsConfig.from_dict(self.search, "search")


@stage("nas", NasStageConfig)
def nas_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    """Search, then the derived network. Metrics: the architecture, its cost (``cost``, ``cost_unit``), every block's
    final probabilities, the supernet's last validation top-1, search seconds and epochs; files: the architecture and
    the search result as JSON."""
    cfg: NasStageConfig = config.technique
    space, darts = cfg.nas_space(), cfg.darts()
    index = ctx.stage_dirs().index(ctx.stage_dir)
    checkpoints = ctx.run_dir / "checkpoints" / f"{ctx.stage_dir.name}-{ctx.recipe.fingerprint(index)}"
    result, supernet = search(space, ctx.splits, darts, checkpoint_dir=checkpoints, log=ctx.progress)
    if cfg.init == "supernet":
        derived = recalibrate_batch_norm(supernet.subnet(result.architecture), calibration_batches(ctx.splits))
    else:
        derived = build_network(space, result.architecture, ctx.splits.preprocessing.input_shape, supernet.classes)
    write_atomic(ctx.stage_dir / "architecture.json", result.architecture.to_json() + "\n", overwrite=True)
    write_atomic(ctx.stage_dir / "nas_result.json", json.dumps(result.to_dict(), indent=1) + "\n", overwrite=True)
    last = result.history[-1]
    metrics = {"architecture": list(result.architecture.choices), "cost": result.cost, "cost_unit": result.cost_unit,
               "probabilities": result.probabilities, "supernet_val_top1": round(last.val_top1, 4),
               "search_seconds": round(sum(r.seconds for r in result.history), 1), "search_epochs": len(result.history),
               "history": [asdict(r) for r in result.history], **model_metrics(derived, ctx)}
    return StageOutcome(derived, metrics, {"architecture": "architecture.json", "nas_result": "nas_result.json"})
