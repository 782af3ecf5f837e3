"""Budget-driven filter pruning (NetAdapt-like, Yang et al. 2018, arXiv 1804.03230): rounds of filter removal that
stop at whichever comes first of a multiply-add budget, a parameter budget, an int8 latency budget (LiteRT
interpreter, 1 thread) or an accuracy floor on the validation split.

Each round:

1. scores every channel of the prunable groups with a filter criterion of :mod:`edgeopt.compress.saliency`
   (:func:`~edgeopt.compress.structured.group_scores`, then :func:`~edgeopt.compress.saliency.normalize` across groups);
2. removes channels where they cost most of the *ranking resource* per unit of saliency (latency when a latency budget
   is set, else multiply-adds, else parameters): greedily, ``round_to`` channels at a time (a group's lowest-scoring
   ones), by predicted saving / summed saliency from the :class:`~edgeopt.compress.cost_table.CostTable` measured once
   before the first round, until the prediction is ``step`` below the last measurement (not below that budget);
3. rebuilds the smaller model (:func:`~edgeopt.compress.structured.rebuild`) and fine-tunes it briefly (``train``;
   optionally with a penalty, ``regularization``);
4. measures the real model: multiply-adds and parameters (:func:`edgeopt.costs.profile`), int8 latency when a latency
   budget is set (by default paired with the input model's, :func:`paired_latency`, so that a shared machine's drift
   cancels), validation top-1. The prediction of step 2 is recorded next to the measurement.

It stops when a budget is met (that round's model is returned), when validation top-1 falls below the floor (the
round is recorded as rejected and the previous round's model is returned), when no group can lose another chunk
(or no chunk saves anything by the table), or after ``max_rounds``. NetAdapt proper fine-tunes one candidate per
layer each round and keeps the most accurate; this keeps one candidate chosen by saliency, which costs one fine-tune
per round instead of one per layer.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from edgeopt._keras import keras
from edgeopt.compress import cost_table as _table
from edgeopt.compress import saliency as _saliency
from edgeopt.compress import structured as _structured
from edgeopt.compress.cost_table import CostTable
from edgeopt.compress.graph import clone_with_weights, require_functional
from edgeopt.compress.regularize import RegularizationConfig, fit_with_penalty
from edgeopt.compress.saliency import SaliencyOptions
from edgeopt.compress.saliency_prune import eligible_groups
from edgeopt.config import Config
from edgeopt.costs import profile
from edgeopt.train import TrainConfig, evaluate

STOP_REASONS = ("budget", "accuracy_floor", "exhausted", "max_rounds")
_TINY = 1e-12  # saliency below this (zero, or negative as Hutchinson's OBD can be) ranks as free to remove


@dataclass(frozen=True)
class LatencyOptions(Config):
    """How int8 latency is measured (table and rounds alike): ``threads`` of the LiteRT interpreter, at least ``runs``
    timed runs and ``min_seconds`` per measurement (the median is used), ``calibration_samples`` training images to
    calibrate each conversion, ``table_points`` channel counts per group in the cost table.

    ``paired`` (default): each round's model is timed ``repeats`` times, each time right before the input model, and
    its latency is the median of those pairs' ratios times the input model's latency of round 0 (the median of
    ``repeats`` timings); the cost table is measured the same way (``measure_table``'s ``pairs``): a shared machine's
    speed drifts (10% within minutes on a 2-core cloud machine, where one round's cut saves a few %), and drift moves
    both of a pair alike. ``paired=False``: one timing per round and per table point."""

    threads: int = 1
    runs: int = 50
    min_seconds: float = 1.0
    calibration_samples: int = 64
    table_points: int = 4
    paired: bool = True
    repeats: int = 3

    def __post_init__(self):
        if self.threads < 1 or self.runs < 1 or self.calibration_samples < 1:
            raise ValueError(f"threads, runs and calibration_samples must be >= 1; got {self.threads}, {self.runs}, {self.calibration_samples}")
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds}")
        if self.table_points < 2:
            raise ValueError(f"table_points must be >= 2 (the full width and the floor at least), got {self.table_points}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1 (timings of each round's model, each paired with the input model's), got {self.repeats}")


@dataclass(frozen=True)
class BudgetPruneConfig(Config):
    """Budgets (any of them; pruning stops at the first one met): ``max_macs`` (multiply-adds), ``max_params``,
    ``max_latency_ms`` (median int8 latency, ms, ``latency``'s settings) or ``max_latency_ratio`` (that latency as a
    share of the input model's, measured in round 0: portable across machines); and an accuracy floor on validation top-1
    (fractions): ``min_val_top1``, or ``max_val_drop`` below the input model's (the higher floor wins when both are given).

    ``step``: share of the ranking resource's last measured value each round removes by the table's prediction (never
    aiming below that resource's budget). ``criterion``: a filter criterion of :mod:`edgeopt.compress.saliency`, read
    with ``saliency`` (data criteria read the training split); ``normalize``: how group scores are put on one scale
    (``mean`` by default). ``groups`` (``internal`` or ``all``), ``exclude``, ``min_channels``, ``round_to`` as
    :class:`~edgeopt.compress.structured.StructuredConfig`. ``train``: each round's fine-tuning (its
    ``steps_per_epoch`` x ``epochs`` steps; None: none, the rounds only cut, for a fine-tune afterwards);
    ``regularization``: an optional penalty during it. ``max_rounds``: a cap.
    """

    max_macs: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None
    max_latency_ratio: float | None = None
    min_val_top1: float | None = None
    max_val_drop: float | None = None
    step: float = 0.1
    max_rounds: int = 20
    criterion: str = "l1"
    normalize: str = "mean"
    groups: str = "internal"
    exclude: tuple[str, ...] = ()
    min_channels: int = 4
    round_to: int = 1
    saliency: SaliencyOptions = field(default_factory=SaliencyOptions)
    latency: LatencyOptions = field(default_factory=LatencyOptions)
    train: TrainConfig | None = field(default_factory=lambda: TrainConfig(epochs=1, learning_rate=1e-3, cosine=False))
    regularization: RegularizationConfig | None = None

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(self.exclude))
        for name, cls in (("saliency", SaliencyOptions), ("latency", LatencyOptions), ("train", TrainConfig), ("regularization", RegularizationConfig)):
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, cls(**getattr(self, name)))
        budgets = ("max_macs", "max_params", "max_latency_ms", "max_latency_ratio", "min_val_top1", "max_val_drop")
        if all(getattr(self, b) is None for b in budgets):
            raise ValueError(f"{', '.join(budgets[:-1])} or {budgets[-1]} must be given (at least one budget); got none")
        if self.max_latency_ms is not None and self.max_latency_ratio is not None:
            raise ValueError("max_latency_ms and max_latency_ratio are both set; give one latency budget (ms, or a share of the input model's)")
        if self.max_latency_ratio is not None and not 0.0 < self.max_latency_ratio < 1.0:
            raise ValueError(f"max_latency_ratio must be in (0, 1) (0.5: twice as fast as the input model), got {self.max_latency_ratio}")
        for name in ("max_macs", "max_params"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise ValueError(f"max_latency_ms must be > 0 (median int8 latency, ms), got {self.max_latency_ms}")
        for name in ("min_val_top1", "max_val_drop"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (a fraction: 0.005 is half a point), got {getattr(self, name)}")
        if not 0.0 < self.step < 1.0:
            raise ValueError(f"step must be in (0, 1) (share of the resource removed per round, e.g. 0.1), got {self.step}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {self.max_rounds}")
        if self.criterion not in _saliency.filter_criteria():
            raise ValueError(f"criterion must be one of {', '.join(_saliency.filter_criteria())}; got {self.criterion!r}")
        if self.normalize not in _saliency.NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(_saliency.NORMALIZATIONS)}; got {self.normalize!r}")
        if self.groups not in _structured.SCOPES:
            raise ValueError(f"groups must be one of {', '.join(_structured.SCOPES)}; got {self.groups!r}")
        if self.min_channels < 1 or self.round_to < 1:
            raise ValueError(f"min_channels and round_to must be >= 1, got {self.min_channels} and {self.round_to}")
        if self.regularization is not None and self.train is None:
            raise ValueError("regularization applies to the fine-tuning between rounds: give train as well, or drop regularization")

    @property
    def resource(self) -> str:
        """What channels are ranked by: ``latency_ms`` with a latency budget, else ``macs`` (also with a floor alone),
        else ``params``."""
        if self.measures_latency:
            return "latency_ms"
        return "params" if self.max_params is not None and self.max_macs is None else "macs"

    @property
    def measures_latency(self) -> bool:
        return self.max_latency_ms is not None or self.max_latency_ratio is not None

    def budgets(self, start_latency_ms: float | None = None) -> dict[str, float]:
        """The budgets given, by resource (``latency_ms``, ``macs``, ``params``); ``max_latency_ratio`` times the input
        model's latency ``start_latency_ms``."""
        latency = self.max_latency_ms
        if self.max_latency_ratio is not None and start_latency_ms is not None:
            latency = self.max_latency_ratio * start_latency_ms
        given = {"latency_ms": latency, "macs": self.max_macs, "params": self.max_params}
        return {r: float(v) for r, v in given.items() if v is not None}


@dataclass(frozen=True)
class BudgetRound:
    """After round ``round`` (0 = the input model): ``channels`` alive in the prunable groups, ``removed`` this round,
    ``macs`` and ``params`` (exact), ``latency_ms`` (measured median int8 latency; None without a latency budget),
    ``predicted`` (the ranking resource as the table predicted it before fine-tuning; None in round 0) and ``measured``
    (the same resource measured after the round), validation top-1 after fine-tuning, test top-1 (None when the test
    split is not read), ``seconds`` spent, and whether the round was ``accepted`` (False: below the accuracy floor)."""

    round: int
    channels: int
    removed: int
    macs: int
    params: int
    latency_ms: float | None
    predicted: float | None
    measured: float
    val_top1: float | None
    top1: float | None
    seconds: float
    accepted: bool = True


@dataclass(frozen=True)
class BudgetPruneResult:
    """The rounds (round 0: the input model), why pruning stopped (``stop_reason``: one of :data:`STOP_REASONS`),
    which budgets the returned model meets, the resolved accuracy ``floor`` and ``budgets`` (by resource; a latency
    ratio as ms), and the cost ``table`` used."""

    config: dict
    resource: str
    floor: float | None
    budgets: dict[str, float]
    rounds: tuple[BudgetRound, ...]
    stop_reason: str
    budgets_met: tuple[str, ...]
    table: dict

    @property
    def final(self) -> BudgetRound:
        """The round whose model is returned: the last accepted one."""
        return [r for r in self.rounds if r.accepted][-1]

    def to_dict(self) -> dict:
        return {"config": self.config, "resource": self.resource, "floor": self.floor, "budgets": self.budgets, "rounds": [asdict(r) for r in self.rounds],
                "stop_reason": self.stop_reason, "budgets_met": list(self.budgets_met), "table": self.table}


def budget_prune(model: keras.Model, splits, config: BudgetPruneConfig, *, latency: Callable[[keras.Model], float] | None = None,
                 table: CostTable | None = None, evaluate_test: bool = True) -> tuple[keras.Model, BudgetPruneResult]:
    """Prune filters of a trained ``model`` until ``config``'s first budget is met (see the module docstring).

    ``latency``: how a model's latency (ms) is measured, default :func:`~edgeopt.compress.cost_table.int8_latency`
    with ``config.latency`` on ``splits.train`` images (used only with a latency budget). ``table``: a cost table of
    the ranking resource measured earlier on this model (default: measured here, once). ``evaluate_test=False`` never
    reads the test split. Returns the pruned model (a new one; ``model`` is not changed) and the result."""
    require_functional(model, "edgeopt.compress.budget")
    resource = config.resource
    measures = _measures(config, splits, latency)
    work = clone_with_weights(model)
    rounds_measure = {**measures, "latency_ms": paired_latency(measures["latency_ms"], work, config.latency.repeats)} if (
        config.measures_latency and config.latency.paired) else measures
    eligible = eligible_groups(work, config.groups, config.exclude)
    floor_n = _table.floor_channels(config.min_channels, config.round_to)
    start = time.perf_counter()
    first = _measure(work, 0, eligible, 0, None, _val_top1(work, splits, config), splits, rounds_measure, resource, start, evaluate_test)
    floor, budgets = _floor(config, first.val_top1), config.budgets(first.latency_ms)
    rows = [first]
    met = _met(budgets, first)
    if met or (floor is not None and first.val_top1 < floor):
        return work, _result(config, resource, floor, budgets, rows, "budget" if met else "accuracy_floor", met, table)
    if table is None:
        table = _table.measure_table(work, eligible, measures[resource], resource, floor=floor_n, round_to=config.round_to,
                                     points=config.latency.table_points, pairs=config.latency.repeats if config.latency.paired else 0)
    table.check(eligible, resource)
    reason = "max_rounds"
    for r in range(1, config.max_rounds + 1):
        start = time.perf_counter()
        groups = [g for g in _structured.channel_groups(work) if g.name in eligible]
        widths = {g.name: g.channels for g in groups}
        scores = _saliency.normalize(_structured.group_scores(work, groups, config.criterion, splits.train, config.saliency), config.normalize)
        target = max(rows[-1].measured * (1.0 - config.step), budgets.get(resource, 0.0))
        keep, predicted = plan_cut(table, widths, scores, rows[-1].measured, target, floor_n, config.round_to)
        if not keep:
            reason = "exhausted"
            break
        candidate = _structured.rebuild(work, keep)
        val = None
        if config.train is not None:
            candidate, trained = fit_with_penalty(candidate, splits, config.train, config.regularization)
            val = trained.val_top1
        removed = sum(widths[g] - len(k) for g, k in keep.items())
        val = val if val is not None else _val_top1(candidate, splits, config)
        row = _measure(candidate, r, eligible, removed, predicted, val, splits, rounds_measure, resource, start, evaluate_test)
        if floor is not None and row.val_top1 < floor:
            rows.append(replace(row, accepted=False))
            _report(config, rows[-1], resource)
            reason = "accuracy_floor"
            break
        work = candidate
        rows.append(row)
        _report(config, row, resource)
        if _met(budgets, row):
            reason = "budget"
            break
    return work, _result(config, resource, floor, budgets, rows, reason, _met(budgets, [r for r in rows if r.accepted][-1]), table)


def plan_cut(table: CostTable, widths: dict[str, int], scores: dict[str, np.ndarray], current: float, target: float, floor: int,
             round_to: int) -> tuple[dict[str, np.ndarray], float]:
    """Which channels to keep so that the table predicts ``target`` or less from ``current``: chunks of a group's
    lowest-scoring channels (down to the next multiple of ``round_to``, never below ``floor``) are removed greedily,
    the chunk with the largest predicted saving per unit of summed score first. Where the table is flat (latency is
    a staircase in channels: the benchmark MobileNetV2's head saved nothing from 1,280 channels down to 432, then 4%
    at 8), a chunk extends down to the first count that saves something, so a flat step does not hide the drop after
    it; a group with no saving left above ``floor`` stays. The prediction is clamped at the table's floor
    (:meth:`~edgeopt.compress.cost_table.CostTable.clamp`), so a target below the floor removes every chunk it can.
    Returns (kept channel indices of each changed group, sorted; the predicted resource after the cut)."""
    order = {g: np.argsort(np.asarray(scores[g]), kind="stable") for g in widths}  # lowest score first
    removed = dict.fromkeys(widths, 0)
    heap: list[tuple[float, str]] = []

    def chunk(g: str) -> tuple[int, int] | None:
        n = widths[g] - removed[g]
        nxt = ((n - 1) // round_to) * round_to
        while nxt >= floor and table.saving(g, n, nxt) <= 0:  # a flat step of the table: the chunk reaches its next drop
            nxt -= round_to
        return (n, nxt) if nxt >= floor else None

    def push(g: str) -> None:
        c = chunk(g)
        if c is None:
            return
        saving = table.saving(g, *c)
        if saving <= 0:
            return
        score = float(np.sum(np.asarray(scores[g])[order[g][removed[g]:removed[g] + c[0] - c[1]]]))
        heapq.heappush(heap, (-saving / max(score, _TINY), g))

    for g in sorted(widths):
        push(g)
    predicted = current
    while heap and predicted > target:
        _, g = heapq.heappop(heap)
        n, nxt = chunk(g)
        predicted = table.clamp(current, predicted - table.saving(g, n, nxt))  # never below the measured floor
        removed[g] += n - nxt
        push(g)
    keep = {g: np.sort(order[g][k:]) for g, k in removed.items() if k}
    return keep, predicted


def _measures(config: BudgetPruneConfig, splits, latency) -> dict[str, Callable[[keras.Model], float]]:
    out = {"macs": _table.count_macs, "params": _table.count_params}
    if config.measures_latency:
        if latency is None:
            images, _ = splits.arrays("train", limit=config.latency.calibration_samples)
            o = config.latency
            latency = _table.int8_latency(images, threads=o.threads, runs=o.runs, min_seconds=o.min_seconds)
        out["latency_ms"] = latency
    return out


def paired_latency(latency: Callable[[keras.Model], float], reference: keras.Model, repeats: int) -> Callable[[keras.Model], float]:
    """``latency`` in ``reference``'s terms (see :class:`LatencyOptions` ``paired``): the first call's model must be
    ``reference``, timed ``repeats`` times (the median is its latency, ``base``); any other model is timed ``repeats``
    times, each right before ``reference``, and gets ``base`` x the median ratio of the pairs."""
    base: list[float] = []

    def measure(model: keras.Model) -> float:
        if not base:
            if model is not reference:
                raise ValueError("paired_latency measures its reference model first (round 0), then the others against it")
            base.append(float(np.median([latency(reference) for _ in range(repeats)])))
        if model is reference:
            return base[0]
        return base[0] * _table.paired_ratio(latency, model, reference, repeats)[0]

    return measure


def _val_top1(model, splits, config: BudgetPruneConfig) -> float | None:
    if not splits.sizes.get("val"):
        if config.min_val_top1 is not None or config.max_val_drop is not None:
            raise ValueError("an accuracy floor (min_val_top1, max_val_drop) needs a validation split; the data has none")
        return None
    return evaluate(model, splits.val)["top1"]


def _floor(config: BudgetPruneConfig, start_top1: float | None) -> float | None:
    floors = [f for f in (config.min_val_top1, None if config.max_val_drop is None else start_top1 - config.max_val_drop) if f is not None]
    return max(floors) if floors else None


def _measure(model, r: int, eligible: dict[str, int], removed: int, predicted, val, splits, measures, resource: str, start: float,
             test: bool) -> BudgetRound:
    cost = profile(model)
    channels = sum(g.channels for g in _structured.channel_groups(model) if g.name in eligible)
    latency_ms = float(measures["latency_ms"](model)) if "latency_ms" in measures else None
    measured = {"latency_ms": latency_ms, "macs": float(cost.macs), "params": float(cost.params)}[resource]
    top1 = evaluate(model, splits.test)["top1"] if test else None
    return BudgetRound(r, channels, removed, cost.macs, cost.params, latency_ms, predicted, measured, val, top1, time.perf_counter() - start)


def _met(budgets: dict[str, float], row: BudgetRound) -> tuple[str, ...]:
    """The budgets ``row``'s model meets (by measurement)."""
    values = {"latency_ms": row.latency_ms, "macs": row.macs, "params": row.params}
    return tuple(r for r in ("latency_ms", "macs", "params") if r in budgets and values[r] <= budgets[r])


def _result(config, resource, floor, budgets, rows, reason, met, table) -> BudgetPruneResult:
    return BudgetPruneResult(config.to_dict(), resource, floor, budgets, tuple(rows), reason, tuple(met), table.to_dict() if table is not None else {})


def _report(config: BudgetPruneConfig, row: BudgetRound, resource: str) -> None:
    if config.train is not None and config.train.verbose:
        val = f", validation top-1 {row.val_top1:.4f}" if row.val_top1 is not None else ""
        verdict = "" if row.accepted else " (below the accuracy floor: rejected)"
        print(f"budget pruning round {row.round}: {row.channels} channels left, {resource} {row.measured:.4g} "
              f"(predicted {row.predicted:.4g}){val}{verdict}", flush=True)
