"""One-shot evolutionary architecture search: NSGA-II over a space's architectures, each scored with a trained
supernet's shared weights (no training per candidate) and costed by a lookup table.

Every trial is one architecture, suggested as one categorical per searchable block (:meth:`Architecture.to_params`
names) by Optuna's NSGA-II sampler (Deb et al. 2002: the first generation random, then crossover and mutation of
the non-dominated, crowding-sorted parents), with two objectives: the score to maximize (``score(arch)``, e.g.
:func:`oneshot_scorer`: top-1 on the validation split after batch-norm recalibration) and the predicted cost to
minimize (:meth:`OpCostTable.predict`, e.g. a latency table in ms). With ``cost_limit`` the cost is also a
constraint (``cost - cost_limit <= 0``): NSGA-II ranks feasible trials first, and the result's Pareto set and best
architecture hold feasible ones only. An architecture suggested again is not scored again (a search of a small
space keeps drawing the same few).

The study can be stored (``storage``: a file path for Optuna's journal file, an append-only log that one process
writes quickly, or a database URL such as ``sqlite:///evolution.db``): calling :func:`evolve` again with the same
space, table and config continues it up to ``config.trials`` complete trials. (The recipe search's
:mod:`edgeopt.search.study` helpers queue a budget for several workers with heartbeats and recipe fingerprints;
one process evolving one population needs none of that, so this module opens its study with Optuna directly.)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

from edgeopt.config import Config
from edgeopt.progress import bar
from edgeopt.search import oneshot
from edgeopt.search.nas_cost import OpCostTable
from edgeopt.search.nas_space import Architecture, NasSpace

__all__ = ["Candidate", "EvolutionConfig", "EvolutionResult", "evolve", "oneshot_scorer", "pareto_front"]

_META_KEY = "edgeopt_evolution"


@dataclass(frozen=True)
class EvolutionConfig(Config):
    """``trials``: complete trials (architectures suggested; a repeated one is scored once), ``population``: NSGA-II's
    generation size, ``cost_limit``: the most an architecture may cost (the table's unit; None: no constraint), ``seed``."""

    trials: int = 100
    population: int = 20
    cost_limit: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.population < 2:
            raise ValueError(f"population must be >= 2 (NSGA-II crosses two parents), got {self.population}")
        if self.cost_limit is not None and not self.cost_limit > 0:
            raise ValueError(f"cost_limit must be > 0 (in the cost table's unit, e.g. ms) or none, got {self.cost_limit}")


@dataclass(frozen=True)
class Candidate:
    """One complete trial: its number, architecture, score (higher is better), predicted cost and whether it keeps
    the cost limit (always True without one)."""

    trial: int
    architecture: Architecture
    score: float
    cost: float
    feasible: bool

    def to_dict(self) -> dict:
        return {"trial": self.trial, "architecture": list(self.architecture.choices), "score": self.score, "cost": self.cost, "feasible": self.feasible}


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """The feasible candidates no other feasible one dominates (a score at least as high and a cost at least as low,
    one of them strictly), one per architecture (its first trial), by increasing cost."""
    feasible, seen = [], set()
    for c in candidates:
        if c.feasible and c.architecture.choices not in seen:
            seen.add(c.architecture.choices)
            feasible.append(c)

    def dominated(c: Candidate) -> bool:
        return any(d.score >= c.score and d.cost <= c.cost and (d.score > c.score or d.cost < c.cost) for d in feasible)

    return sorted((c for c in feasible if not dominated(c)), key=lambda c: (c.cost, -c.score))


@dataclass
class EvolutionResult:
    """Every complete trial (``candidates``, trial order), the Pareto set of the feasible ones, the cost's unit and
    limit, ``scored`` (distinct architectures scored by this call), ``resumed_trials`` (complete trials found in the
    study when it started) and ``seconds`` (this call)."""

    candidates: list[Candidate]
    pareto: list[Candidate]
    cost_unit: str
    cost_limit: float | None
    scored: int
    resumed_trials: int
    seconds: float

    @property
    def best(self) -> Candidate | None:
        """The feasible candidate of highest score (the cheaper on a tie); None when none is feasible."""
        return min(self.pareto, key=lambda c: (-c.score, c.cost)) if self.pareto else None

    def to_dict(self) -> dict:
        best = self.best
        return {"candidates": [c.to_dict() for c in self.candidates], "pareto": [c.to_dict() for c in self.pareto], "cost_unit": self.cost_unit,
                "cost_limit": self.cost_limit, "scored": self.scored, "resumed_trials": self.resumed_trials, "seconds": self.seconds,
                "best": best.to_dict() if best else None}

    def to_markdown(self) -> str:
        """The search in a line, then the Pareto set (trial, operations, score, cost)."""
        limit = f", cost limit {self.cost_limit:g} {self.cost_unit}" if self.cost_limit is not None else ""
        feasible = sum(c.feasible for c in self.candidates)
        lines = [f"{len(self.candidates)} trials ({feasible} feasible{limit}), {self.scored} architectures scored in this call, "
                 f"{self.seconds:.0f} s; Pareto set ({len(self.pareto)}):", "",
                 f"| trial | operations | score | cost ({self.cost_unit}) |", "|---:|---|---:|---:|"]
        lines += [f"| {c.trial} | {' '.join(c.architecture.choices)} | {c.score:.4f} | {c.cost:.4g} |" for c in self.pareto]
        return "\n".join(lines) + "\n"


def oneshot_scorer(supernet, splits, batches: int | None = None) -> Callable[[Architecture], float]:
    """``score(arch)``: :func:`edgeopt.search.oneshot.oneshot_score` of ``arch`` on the validation split, with the
    same calibration images (``batches`` training batches, drawn once) for every candidate."""
    calibration = oneshot.calibration_batches(splits, batches or oneshot.DEFAULT_CALIBRATION_BATCHES)
    return lambda arch: oneshot.oneshot_score(supernet, arch, splits, calibration=calibration)


def _fingerprint(space: NasSpace, table: OpCostTable, config: EvolutionConfig) -> str:
    blob = json.dumps([space.to_dict(), table.to_dict(), config.cost_limit, config.population, config.seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _storage(storage: str | os.PathLike | None):
    """None (in memory), a database URL (``...://...``) as it is, or a path: an Optuna journal file."""
    if storage is None or "://" in str(storage):
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(storage)))


def _open_study(storage: str | os.PathLike | None, name: str, config: EvolutionConfig, fingerprint: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def violation(frozen):  # set by the objective; a trial that stopped before setting it counts as breaking the limit
        return frozen.user_attrs.get("constraint", [1.0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constraints_func is "experimental" in some Optuna versions
        sampler = optuna.samplers.NSGAIISampler(population_size=config.population, seed=config.seed,
                                                constraints_func=violation if config.cost_limit is not None else None)
    study = optuna.create_study(storage=_storage(storage), study_name=name, directions=["maximize", "minimize"], sampler=sampler, load_if_exists=True)
    saved = study.user_attrs.get(_META_KEY)
    if saved is None:
        study.set_user_attr(_META_KEY, fingerprint)
    elif saved != fingerprint:
        raise ValueError(f"study {name!r} in {storage} was made for another space, cost table, cost limit, population or seed; "
                         "pass another study name or storage for a new search")
    return study


def evolve(space: NasSpace, score: Callable[[Architecture], float], table: OpCostTable, config: EvolutionConfig = EvolutionConfig(), *,
           storage: str | os.PathLike | None = None, study_name: str = "nas-evolution", log: Callable[[str], None] | None = None) -> EvolutionResult:
    """Search ``space`` with NSGA-II for architectures of high ``score`` and low ``table`` cost (see the module
    docstring); with ``storage`` (a journal file path or a database URL) a search started before continues to ``config.trials``
    complete trials. ``log`` gets a line at the end (default: printed). Returns the :class:`EvolutionResult`."""
    from optuna.trial import TrialState

    table.check(space)
    log = log or (lambda line: print(line, file=sys.stdout, flush=True))
    study = _open_study(storage, study_name, config, _fingerprint(space, table, config))
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    cache = {tuple(t.user_attrs["architecture"]): t.values[0] for t in done}
    searchable = [b for b in space.blocks() if b.searchable]
    scored = 0

    def objective(trial) -> tuple[float, float]:
        nonlocal scored
        arch = Architecture.from_params(space, {b.name: trial.suggest_categorical(b.name, list(b.ops)) for b in searchable})
        cost = table.predict(space, arch)
        trial.set_user_attr("architecture", list(arch.choices))
        if config.cost_limit is not None:
            trial.set_user_attr("constraint", [cost - config.cost_limit])
        if arch.choices not in cache:
            cache[arch.choices] = float(score(arch))
            scored += 1
        return cache[arch.choices], cost

    start, left = time.perf_counter(), max(0, config.trials - len(done))
    with bar(total=left, desc="evolution", unit="trial") as shown:
        study.optimize(objective, n_trials=left, callbacks=[lambda study, trial: shown.update(1)])
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    candidates = [Candidate(t.number, Architecture(tuple(t.user_attrs["architecture"])), t.values[0], t.values[1],
                            config.cost_limit is None or t.values[1] <= config.cost_limit) for t in complete]
    result = EvolutionResult(candidates, pareto_front(candidates), table.unit, config.cost_limit, scored, len(done), round(time.perf_counter() - start, 3))
    best = result.best
    log(f"evolution: {len(candidates)} trials, {scored} architectures scored now, Pareto set of {len(result.pareto)}"
        + (f", best score {best.score:.4f} at {best.cost:.4g} {table.unit}" if best else ", nothing within the cost limit"))
    return result
