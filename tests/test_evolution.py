"""One-shot evolutionary search: architectures from the space, costs from the table, a Pareto set that is exactly the
non-dominated feasible trials (checked by brute force), the cost limit, resuming a stored study. Scores are a fake
(a deterministic function of the architecture) so the search runs in a second; the one-shot scorer is checked
against oneshot_score itself."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.search.evolution import Candidate, EvolutionConfig, evolve, oneshot_scorer, pareto_front
from edgeopt.search.nas_cost import OpCostTable
from edgeopt.search.nas_space import DEFAULT_OPS, SKIP, Architecture, parse_op, tiny_space

SPACE = tiny_space(DEFAULT_OPS)  # block1a: 13 candidates, block2a: 12 (no skip): 156 architectures


def op_cost(op: str) -> float:
    row = parse_op(op)
    return 0.0 if row is None else row.kernel * row.expand * (1.25 if row.se else 1.0)


TABLE = OpCostTable("ms", {b.name: {op: op_cost(op) for op in b.ops} for b in SPACE.blocks()}, fixed=1.0)


def fake_score(arch: Architecture) -> float:
    """More capacity scores higher, with diminishing returns and a squeeze-excite bonus: a real trade-off."""
    rows = [parse_op(op) for op in arch.choices]
    return float(sum(np.log1p(r.kernel * r.expand) + (0.3 if r.se else 0.0) for r in rows if r is not None))


class Counting:
    def __init__(self):
        self.seen = []

    def __call__(self, arch):
        self.seen.append(arch.choices)
        return fake_score(arch)


def non_dominated_by_brute_force(candidates):
    out = {}
    for c in candidates:
        if c.feasible and not any(d.feasible and d.score >= c.score and d.cost <= c.cost and (d.score > c.score or d.cost < c.cost) for d in candidates):
            out.setdefault(c.architecture.choices, c)
    return out


def test_evolution_returns_space_architectures_and_a_consistent_pareto_set():
    score = Counting()
    result = evolve(SPACE, score, TABLE, EvolutionConfig(trials=30, population=8, seed=1), log=lambda line: None)
    assert [c.trial for c in result.candidates] == list(range(30))
    for c in result.candidates:
        c.architecture.check(SPACE)
        assert c.cost == TABLE.predict(SPACE, c.architecture) and c.score == fake_score(c.architecture) and c.feasible
    assert len(score.seen) == len(set(score.seen)) == result.scored == len({c.architecture.choices for c in result.candidates})
    front = non_dominated_by_brute_force(result.candidates)
    assert {c.architecture.choices for c in result.pareto} == set(front) and len(result.pareto) == len(front)
    assert [c.cost for c in result.pareto] == sorted(c.cost for c in result.pareto)
    assert result.best.score == max(c.score for c in result.candidates)
    assert result.to_dict()["best"]["trial"] == result.best.trial and "Pareto set" in result.to_markdown()


def test_cost_limit_keeps_the_pareto_set_and_best_within_it():
    every = [TABLE.predict(SPACE, Architecture((a, b))) for a in SPACE.blocks()[0].ops for b in SPACE.blocks()[1].ops]
    limit = float(np.median(every))  # half of the space fits
    result = evolve(SPACE, fake_score, TABLE, EvolutionConfig(trials=24, population=8, cost_limit=limit, seed=0), log=lambda line: None)
    assert all(c.feasible == (c.cost <= limit) for c in result.candidates)
    assert result.pareto and all(c.cost <= limit for c in result.pareto)
    feasible = [c for c in result.candidates if c.feasible]
    assert result.best.score == max(c.score for c in feasible)
    assert {c.architecture.choices for c in result.pareto} == set(non_dominated_by_brute_force(result.candidates))


def test_a_stored_study_continues(tmp_path):
    url = tmp_path / "evolution.journal"  # Optuna's journal file (a sqlite URL works the same, slower to create)
    first = evolve(SPACE, fake_score, TABLE, EvolutionConfig(trials=5, population=4), storage=url, log=lambda line: None)
    score = Counting()
    more = evolve(SPACE, score, TABLE, EvolutionConfig(trials=8, population=4), storage=url, log=lambda line: None)
    assert more.resumed_trials == 5 and len(more.candidates) == 8 and len(score.seen) <= 3
    assert [c.architecture for c in more.candidates[:5]] == [c.architecture for c in first.candidates]
    assert not set(score.seen) & {c.architecture.choices for c in first.candidates}  # scored once, in the first call
    with pytest.raises(ValueError, match="made for another space, cost table, cost limit"):
        evolve(SPACE, fake_score, TABLE, EvolutionConfig(trials=8, population=4, cost_limit=20.0), storage=url)


def test_pareto_front_by_hand():
    a = [Architecture(("ir_k3_e3", op)) for op in ("ir_k3_e3", "ir_k5_e3", "ir_k7_e3", "ir_k3_e6", "ir_k5_e6")]
    cands = [Candidate(0, a[0], 0.5, 1.0, True), Candidate(1, a[1], 0.7, 2.0, True), Candidate(2, a[2], 0.6, 3.0, True),  # 2: dominated by 1
             Candidate(3, a[3], 0.9, 5.0, False), Candidate(4, a[4], 0.7, 2.0, True), Candidate(5, a[1], 0.7, 2.0, True)]  # 4: a tie, 5: a repeat
    assert [c.trial for c in pareto_front(cands)] == [0, 1, 4]
    assert pareto_front([]) == []


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="population must be >= 2"):
        EvolutionConfig(population=1)
    with pytest.raises(ValueError, match="cost_limit must be > 0"):
        EvolutionConfig(cost_limit=0)


def test_oneshot_scorer_uses_one_calibration_for_every_candidate(monkeypatch):
    from edgeopt.search import oneshot

    drawn, calls = [], []
    monkeypatch.setattr(oneshot, "calibration_batches", lambda splits, batches: drawn.append(batches) or [np.full((2, 1), len(drawn))])
    monkeypatch.setattr(oneshot, "oneshot_score", lambda supernet, arch, splits, calibration: calls.append((arch, calibration)) or 0.5)
    score = oneshot_scorer("supernet", "splits", batches=3)
    archs = [Architecture((SKIP, "ir_k3_e3")), Architecture(("ir_k3_e3", "ir_k3_e3"))]
    assert [score(a) for a in archs] == [0.5, 0.5]
    assert drawn == [3] and [a for a, _ in calls] == archs and calls[0][1] is calls[1][1]  # drawn once, the same images for both
