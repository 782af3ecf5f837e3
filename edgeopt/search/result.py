"""What a search is asked (``SearchConfig``) and what it found (``TrialRecord``, ``SearchResult``, ``summarize``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from edgeopt.report import pareto_front
from edgeopt.search.study import META_KEY, TEST_KEY, retry_history


@dataclass(frozen=True)
class SearchConfig:
    """How to search: ``sampler`` (grid, random, bayes = TPE, nsga2), ``trials`` (the budget; a grid runs
    at most its size), ``pruner`` for single-objective accuracy searches, ``storage`` (database URL;
    default ``sqlite:///<out>/study.db``) and ``study`` name, heartbeat and grace period in seconds."""

    sampler: Literal["grid", "random", "bayes", "nsga2"] = "bayes"
    trials: int = 20
    seed: int = 0
    pruner: Literal["none", "median", "hyperband"] = "median"
    storage: str | None = None
    study: str | None = None
    heartbeat_seconds: int = 30
    grace_seconds: int = 120
    max_retry: int = 2
    join_timeout_seconds: float = 120.0

    def __post_init__(self):
        if self.sampler not in ("grid", "random", "bayes", "nsga2"):
            raise ValueError(f"sampler must be one of grid, random, bayes, nsga2; got {self.sampler!r}")
        if self.pruner not in ("none", "median", "hyperband"):
            raise ValueError(f"pruner must be one of none, median, hyperband; got {self.pruner!r}")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.heartbeat_seconds < 1 or self.grace_seconds <= self.heartbeat_seconds:
            raise ValueError(f"heartbeat_seconds must be >= 1 and grace_seconds larger, got {self.heartbeat_seconds} and {self.grace_seconds}")


@dataclass
class TrialRecord:
    """One trial as stored: Optuna state and parameters, recipe overrides, measured metrics, objective
    values, constraint violations (<= 0 holds), feasibility, Pareto membership and where its run is.

    ``metrics`` are what the trial was chosen by, all measured on the validation split (``accuracy``,
    ``keras_accuracy``, ``val_samples``, ...: :func:`edgeopt.search.trial_metrics`); for a reported trial (on the
    Pareto front, or the best) the ``test_*`` keys too (``test_accuracy``, ``test_accuracy_of``, ``test_samples``,
    ``keras_test_accuracy``: :func:`edgeopt.search.metrics_on_test`), read once after the search and never used to choose."""

    number: int
    state: str
    params: dict
    overrides: dict
    metrics: dict
    values: list | None
    violations: list
    feasible: bool | None
    pareto: bool = False
    run_dir: str | None = None
    worker: str | None = None
    seconds: float | None = None
    note: str | None = None
    retry_of: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    study: str
    storage: str
    sampler: str
    recipe: str
    objectives: list[str]
    directions: list[str]
    constraints: list[str]
    budget: int
    trials: list[TrialRecord] = field(default_factory=list)

    @property
    def pareto(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.pareto]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = self.counts()
        return d


def summarize(study, storage_url: str = "") -> SearchResult:
    """The study as a :class:`SearchResult`: every trial, constraint feasibility, and the Pareto front among
    complete feasible trials (for one objective: the best trial), chosen by the objective values (validation
    split); test metrics where they were measured (:func:`edgeopt.search.runner.measure_reported`)."""
    meta = study.user_attrs.get(META_KEY, {})
    tested = study.user_attrs.get(TEST_KEY, {})
    objectives = meta.get("objectives", [f"objective_{i}" for i in range(len(study.directions))])
    directions = [d.name.lower() for d in study.directions]
    records = []
    for t in study.get_trials(deepcopy=False):
        violations = t.user_attrs.get("constraints", [])
        history = retry_history(t)
        records.append(TrialRecord(
            number=t.number, state=t.state.name, params=dict(t.params), overrides=t.user_attrs.get("overrides", {}),
            metrics={**t.user_attrs.get("metrics", {}), **tested.get(str(t.number), {})}, values=list(t.values) if t.values is not None else None, violations=violations,
            feasible=(all(v <= 0 for v in violations) if violations else True) if t.state.name == "COMPLETE" else None,
            run_dir=t.user_attrs.get("run_dir"), worker=t.user_attrs.get("worker"), seconds=t.user_attrs.get("seconds"),
            note=t.user_attrs.get("note"), retry_of=history[0] if history else None))
    candidates = [r for r in records if r.state == "COMPLETE" and r.feasible]
    for r, keep in zip(candidates, pareto_front([r.values for r in candidates], directions)):
        r.pareto = keep
    return SearchResult(study.study_name, storage_url, meta.get("sampler", "?"), meta.get("recipe", "?"), objectives, directions,
                        meta.get("constraints", []), meta.get("budget", 0), records)
