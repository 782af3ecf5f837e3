"""Recipe stage ``nas``: differentiable architecture search (:func:`edgeopt.search.darts.search`) on the run's data,
optionally after a single-path warm-up of the supernet and under a cost limit; the next stage gets the derived network.

The stage replaces the model it is given (the recipe's ``model`` only has to exist). Fields:

* the space: ``preset`` (a registered space: ``mobilenet_v2``, ``tiny``) at ``width``, or ``space``, a table (as
  :class:`~edgeopt.search.nas_space.NasSpace`; it wins over the preset);
* ``search = { epochs = ..., cost_model = ..., cost_weight = ... }``: :class:`~edgeopt.search.darts.DartsConfig`
  fields, except ``cost_target``, which the stage sets from its limit (below);
* the limit, at most one of: ``cost_limit``, the whole network's cost in the unit of ``search.cost_model``
  (multiply-adds for ``macs``, parameters for ``params``, ms for ``latency``); or ``cost_limit_fraction``, a fraction
  of the cost of the space's MobileNetV2 point (``ir_k3_e6`` in every searchable block: with the ``mobilenet_v2``
  preset at ``width`` w, MobileNetV2 w itself; ``cost_limit_fraction = 1.0`` is benchmarks/nas.py's limit). With a
  limit, the search's cost term is a hinge at the limit (DartsConfig ``cost_target``: no pressure below it, ``cost_weight``
  times the excess above it), and the argmax network, if it costs more, is made to fit
  (:func:`~edgeopt.search.darts.derive_within`: each switch to a cheaper candidate loses the least probability per
  unit of cost saved). A limit below the space's cheapest network fails before anything trains. No limit: the cost
  term pushes at every cost and the network is the argmax;
* ``warmup = { epochs = 4, ... }``: :class:`~edgeopt.search.single_path.SinglePathConfig` fields: the supernet's
  weights are first trained single-path (SPOS: one uniformly drawn network per step), and the search starts from them
  (FBNet and ProxylessNAS train the weights alone first; benchmarks/nas.py does this). ``warmup = {}``: the
  SinglePathConfig defaults; no ``warmup``: the search starts from fresh weights. (``search.warmup_epochs`` is
  another thing: epochs of the search that train the mixed supernet's weights only.);
* ``latency_table = "path/to/table.json"``: with ``search.cost_model = "latency"``, the measured table
  (:func:`edgeopt.search.latency_table.measure_table`, on this machine or on a phone over adb) whose int8, 1-thread
  costs the search uses; without it the ``latency`` cost model reads the file named by ``$EDGEOPT_LATENCY_TABLE``;
* ``init = "scratch"`` hands on the derived network with new weights, to be trained from scratch by a following
  ``train`` stage (the DARTS protocol); ``"supernet"`` with the supernet's weights of its operations and
  recalibrated batch norm, to be fine-tuned.

Resumable: the warm-up and the search each save every epoch under ``<run>/checkpoints/<stage dir>-<fingerprint>/``
(outside the stage directory, which the runner empties before running an unfinished stage again), so ``--resume``
after a crash continues where it stopped (a finished warm-up is loaded from its checkpoint, and the search checks
that it starts from those exact weights); a changed recipe has another fingerprint and starts afresh.
Single device: the training loops do not run under ``train.distribute``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeopt.config import Config, RecipeError
from edgeopt.io import write_atomic
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, model_metrics, stage
from edgeopt.search.darts import DartsConfig, derive_within, search
from edgeopt.search.latency_table import LatencyTable
from edgeopt.search.nas_cost import OpCostTable, cost_model
from edgeopt.search.nas_space import MOBILENET_V2_OP, SPACES, Architecture, NasSpace, build_network, mobilenet_v2_architecture
from edgeopt.search.oneshot import calibration_batches, recalibrate_batch_norm
from edgeopt.search.single_path import SinglePathConfig, train_single_path

INITS = ("scratch", "supernet")


@dataclass(frozen=True)
class NasStageConfig(Config):
    """``preset`` (a registered space: mobilenet_v2, tiny) at ``width``, or ``space`` (a table; it wins over the
    preset), ``search`` (DartsConfig fields but cost_target), ``cost_limit`` (the search.cost_model's unit) or
    ``cost_limit_fraction`` (of the space's MobileNetV2 point), ``warmup`` (SinglePathConfig fields; None: none),
    ``init`` (scratch or supernet). See the module docstring."""

    preset: str = "mobilenet_v2"
    width: float = 1.0
    space: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    cost_limit: float | None = None
    cost_limit_fraction: float | None = None
    warmup: dict | None = None
    latency_table: str | None = None
    init: str = "scratch"

    def __post_init__(self):
        if self.preset not in SPACES:
            raise ValueError(f"preset must be one of {', '.join(SPACES.names())}; got {self.preset!r}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        space = self.nas_space()  # a bad table fails when the recipe is read, naming its field
        if "cost_target" in self.search:
            raise ValueError("search.cost_target is set by the stage: give cost_limit (in the cost model's unit) or cost_limit_fraction instead")
        darts = self.darts()
        for name in ("cost_limit", "cost_limit_fraction"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 or absent (no limit), got {getattr(self, name)}")
        if self.cost_limit is not None and self.cost_limit_fraction is not None:
            raise ValueError("cost_limit and cost_limit_fraction are both given; give one (an absolute cost, or a fraction of MobileNetV2's)")
        if self.cost_limit_fraction is not None and not _has_mobilenet_v2(space):
            raise ValueError(f"cost_limit_fraction needs {MOBILENET_V2_OP} among the space's ops (MobileNetV2's block, the cost it is a fraction of); "
                             f"the space has {', '.join(space.ops)}: give cost_limit instead")
        self.single_path()
        if self.latency_table is not None:
            if darts.cost_model != "latency":
                raise ValueError(f"latency_table is read by the latency cost model; set search.cost_model = \"latency\" or drop latency_table "
                                 f"(cost_model is {darts.cost_model!r})")
            if not Path(self.latency_table).is_file():
                raise ValueError(f"latency_table {self.latency_table!r}: no such file; measure one with edgeopt.search.latency_table.measure_table")

    def cost_table(self, space: NasSpace, input_shape, classes: int) -> OpCostTable:
        """The search's cost table: ``latency_table``'s int8 1-thread costs when given, else ``search.cost_model``'s."""
        if self.latency_table is None:
            return cost_model(self.darts().cost_model, space, input_shape, classes)
        return LatencyTable.load(self.latency_table).check(space, input_shape, classes, self.latency_table).cost_table("int8", 1)

    def nas_space(self) -> NasSpace:
        return NasSpace.from_dict(self.space, "space") if self.space else SPACES.get(self.preset)(self.width)

    def darts(self) -> DartsConfig:
        return DartsConfig.from_dict(self.search, "search")

    def single_path(self) -> SinglePathConfig | None:
        return None if self.warmup is None else SinglePathConfig.from_dict(self.warmup, "warmup")

    def limit(self, space: NasSpace, table: OpCostTable) -> tuple[float | None, float | None]:
        """(the cost limit in ``table``'s unit, the MobileNetV2 point's cost it is a fraction of), each None when not
        given. Raises ValueError naming the field when no network of ``space`` fits the limit."""
        reference = table.predict(space, mobilenet_v2_architecture(space)) if self.cost_limit_fraction is not None else None
        limit = self.cost_limit if reference is None else self.cost_limit_fraction * reference
        cheapest = table.fixed + sum(float(c.min()) for c in table.matrix(space))
        if limit is not None and limit < cheapest:
            given = (f"cost_limit = {_cost(limit)} {table.unit}" if reference is None else
                     f"cost_limit_fraction = {self.cost_limit_fraction:g} of MobileNetV2's {_cost(reference)} {table.unit} ({_cost(limit)})")
            raise ValueError(f"{given} is below the cheapest network of the space ({_cost(cheapest)} {table.unit}); raise it to at least that")
        return limit, reference


@stage("nas", NasStageConfig)
def nas_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    """Warm-up (if any), search, then the derived network. Metrics: the architecture, its cost (``cost``,
    ``cost_unit``), the limit (``cost_limit``, None without one; ``cost_limit_reference``: the MobileNetV2 point's cost
    for a fraction), the argmax architecture and its cost, whether fitting the limit changed it
    (``derive_within_changed``, ``changed_blocks``), every block's final probabilities, the supernet's last
    validation top-1, search and warm-up seconds and epochs; files: the architecture, the search's (argmax) result
    and the warm-up's history as JSON."""
    cfg: NasStageConfig = config.technique
    space, darts, warmup = cfg.nas_space(), cfg.darts(), cfg.single_path()
    try:  # before anything trains: a table that does not fit the space, or a limit that no network fits, fails at once
        table = cfg.cost_table(space, ctx.splits.preprocessing.input_shape, len(ctx.splits.preprocessing.class_names))
        limit, reference = cfg.limit(space, table)
    except ValueError as err:
        raise RecipeError(f"{ctx.stage_label}: {err}") from None
    if limit is not None:
        darts = replace(darts, cost_target=limit)
    index = ctx.stage_dirs().index(ctx.stage_dir)
    checkpoints = ctx.run_dir / "checkpoints" / f"{ctx.stage_dir.name}-{ctx.recipe.fingerprint(index)}"
    files = {"architecture": "architecture.json", "nas_result": "nas_result.json"}
    warm, initial = None, None
    if warmup is not None:  # its own checkpoint file in the same folder: a finished warm-up is loaded, not redone
        warm, warmed = train_single_path(space, ctx.splits, warmup, checkpoint_dir=checkpoints, log=ctx.progress)
        initial = warmed.state()
        write_atomic(ctx.stage_dir / "warmup_result.json", json.dumps(warm.to_dict(), indent=1) + "\n", overwrite=True)
        files["warmup_result"] = "warmup_result.json"
    result, supernet = search(space, ctx.splits, darts, checkpoint_dir=checkpoints, cost_table=table, initial_weights=initial, log=ctx.progress)
    # the supernet's own probabilities: NasResult's are rounded to 6 decimals, and a tie there could move the argmax
    arch = _fit(space, result.architecture, [p.numpy() for p in supernet.probabilities(darts.tau_at(darts.epochs - 1))], table, limit)
    changed = [b.name for b, before, after in zip(space.blocks(), result.architecture.choices, arch.choices) if before != after]
    if cfg.init == "supernet":
        derived = recalibrate_batch_norm(supernet.subnet(arch), calibration_batches(ctx.splits))
    else:
        derived = build_network(space, arch, ctx.splits.preprocessing.input_shape, supernet.classes)
    write_atomic(ctx.stage_dir / "architecture.json", arch.to_json() + "\n", overwrite=True)
    write_atomic(ctx.stage_dir / "nas_result.json", json.dumps(result.to_dict(), indent=1) + "\n", overwrite=True)
    last = result.history[-1]
    metrics = {"architecture": list(arch.choices), "cost": table.predict(space, arch), "cost_unit": table.unit, "cost_limit": limit,
               "cost_limit_reference": reference, "argmax_architecture": list(result.architecture.choices), "argmax_cost": result.cost,
               "derive_within_changed": bool(changed), "changed_blocks": changed,
               "probabilities": result.probabilities, "supernet_val_top1": round(last.val_top1, 4),
               "search_seconds": round(sum(r.seconds for r in result.history), 1), "search_epochs": len(result.history),
               "warmup_seconds": round(sum(r.seconds for r in warm.history), 1) if warm else 0.0, "warmup_epochs": len(warm.history) if warm else 0,
               "history": [asdict(r) for r in result.history], **model_metrics(derived, ctx)}
    return StageOutcome(derived, metrics, files)


def _cost(value: float) -> str:
    """A cost for a message: counts as 1,234,567, milliseconds as 0.241235."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.6g}"


def _has_mobilenet_v2(space: NasSpace) -> bool:
    try:
        mobilenet_v2_architecture(space)
    except ValueError:
        return False
    return True


def _fit(space: NasSpace, argmax: Architecture, probabilities: list, table: OpCostTable, limit: float | None) -> Architecture:
    """``argmax`` when there is no limit or it is within it; otherwise the architecture :func:`derive_within` makes
    fit from ``probabilities`` (one vector per block)."""
    if limit is None or table.predict(space, argmax) <= limit:
        return argmax
    return derive_within(space, probabilities, table, limit)
