"""benchmarks/_nas_report.py and the plan of benchmarks/nas.py, without TensorFlow: the findings and tables render from
data shaped like nas.json (built here from a seeded RNG, since the full run's JSON is not committed yet), every
number in the findings comes from the data (tests/test_findings.py's perturbation check), the verdicts and costs are
the stats of the same numbers, and the run's estimate follows its settings."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import _nas_report as report
from benchmarks.nas import MODELS, Plan, _within_budget
from edgeopt.stats import kendall_tau, seed_stats, verdict
from test_findings import PERTURBATIONS, _tokens, heavy_modules_after, perturb, typed_numbers, unmoved, write_plainly

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
IMAGES = 10_000
OPS = ["ir_k3_e3", "ir_k3_e6", "ir_k5_e3", "ir_k5_e6", "ir_k7_e3", "ir_k7_e6", "ir_k3_e3_se0.25", "ir_k3_e6_se0.25", "ir_k5_e3_se0.25",
       "ir_k5_e6_se0.25", "ir_k7_e3_se0.25", "ir_k7_e6_se0.25", "skip"]


def _arch(rng, mobilenet: bool = False) -> list[str]:
    return ["ir_k3_e1"] + ["ir_k3_e6" if mobilenet else OPS[int(rng.integers(len(OPS) - (i in (0, 2, 5, 9, 12, 15))))] for i in range(16)]


def fake_data(seed: int = 0, darts_forced: bool = True) -> dict:
    """A nas.json as benchmarks/nas.py's ``Run.collect`` writes it (3 seeds, 12 random candidates)."""
    rng = np.random.default_rng(seed)
    limit = 0.2412
    archs = {"mobilenet_v2": _arch(rng, True), "darts": _arch(rng), "evolution": _arch(rng), "random": _arch(rng)}
    level = {"mobilenet_v2": 0.884, "darts": 0.889, "evolution": 0.887, "random": 0.878}
    runs = []
    for sd in SEEDS:
        for key in MODELS:
            t = float(level[key] + rng.normal(0, 0.002))
            runs.append({"model": key, "seed": sd, "val_top1": t + 0.004, "keras_top1": t + 0.0006, "int8_top1": t, "int8_bytes": 600_000 + 1000 * MODELS.index(key),
                         "params": 400_000 + 9_000 * MODELS.index(key), "macs": 5_000_000 + 100_000 * MODELS.index(key), "train_s": float(rng.uniform(350, 420)),
                         "seconds": 450.0})
    ms = {"mobilenet_v2": 0.244, "darts": 0.239, "evolution": 0.241, "random": 0.236}
    rounds = {k: [v * float(rng.uniform(0.98, 1.02)) for _ in range(7)] for k, v in ms.items()}
    candidates = [{"architecture": _arch(rng), "predicted_ms": float(rng.uniform(0.18, limit)), "val_top1": float(rng.uniform(0.80, 0.83)),
                   "train_s": float(rng.uniform(180, 200)), "oneshot_val": float(rng.uniform(0.55, 0.7)), "score_s": 14.0} for _ in range(12)]
    for c in candidates:  # the one-shot score tracks the stand-alone accuracy loosely
        c["oneshot_val"] = 0.6 + 2 * (c["val_top1"] - 0.8) + float(rng.normal(0, 0.01))
    tau, p = kendall_tau([c["oneshot_val"] for c in candidates], [c["val_top1"] for c in candidates])
    evo = [{"trial": i, "architecture": _arch(rng), "score": float(rng.uniform(0.55, 0.7)), "cost": float(rng.uniform(0.15, 0.3))} for i in range(80)]
    for c in evo:
        c["feasible"] = c["cost"] <= limit
    evo[7]["architecture"] = evo[3]["architecture"]  # a repeated suggestion: one architecture scored once
    pareto = sorted([c for c in evo if c["feasible"]], key=lambda c: c["cost"])[:6]
    history = [{"epoch": e + 1, "seconds": 300.0 + e, "tau": 1.0, "train_loss": 1.0 - 0.05 * e, "train_top1": 0.6 + 0.02 * e, "val_loss": 1.1 - 0.05 * e,
                "val_top1": 0.6 + 0.02 * e, "expected_cost": 0.2 - 0.003 * e, "derived_cost": 0.26 - 0.003 * e, "architecture": archs["darts"]} for e in range(6)]
    probabilities = [[1.0]] + [list(rng.dirichlet(np.ones(13 - (i in (0, 2, 5, 9, 12, 15))))) for i in range(16)]
    header = {"input_shape": [28, 28, 3], "classes": 10, "config": {"precisions": ["int8"], "threads": [1], "rounds": 3, "probe_copies": 4,
                                                                     "calibration_samples": 8, "seed": 0},
              "runner": {"device": "AMD EPYC, 2 cores", "runtime": "ai-edge-litert 2.3.0 (Python interpreter)", "timing": "invoke() only, min of >= 20 runs",
                         "name": "litert"}, "machine": {"describe": "AMD EPYC, 2 cores"}, "format": "edgeopt.latency_table/1", "export_seconds": 700.0,
              "timing_seconds": 120.0}
    return {
        "format": 1, "cmd": "benchmarks/nas.py ", "quick": False, "cores": 2, "test_images": IMAGES, "val_images": 3000, "train_images": 57_000,
        "seeds": SEEDS, "machine": "AMD EPYC, 2 cores, x86_64 (avx2, avx512f; AVX2, AVX-512, VNNI, no AMX)", "wall_s": 12_500.0,
        "baseline_recipe": "recipes/fmnist_mobilenet_v2.toml",
        "space": {"name": "mobilenet_v2", "width": 0.35, "ops": OPS, "blocks": 17, "searchable": 16, "log10_size": 17.1},
        "settings": {"recipe": {"learning_rate": 0.004, "warmup_fraction": 0.03, "weight_decay": 0.05, "label_smoothing": 0.1},
                     "data": {"image_size": 28, "channels": 3, "val_fraction": 0.05, "seed": 0, "mean": 127.5, "std": 127.5, "augment": True, "crop_padding": 2},
                     "baseline_epochs": 24, "retrain_epochs": 2, "candidate_epochs": 1, "train_steps": 446, "supernet_epochs": 4, "calibration": 500,
                     "min_candidates": 10, "latency_rounds": 7},
        "table": {"path": "runs/bench_cache/nas/x/latency_table.json", "header": header, "parts": 197, "overhead_ms": 0.0012, "limit_ms": limit,
                  "fixed_ms": 0.031, "export_s": 700.0, "timing_s": 120.0, "ops_ms": {"block2a": {"ir_k3_e6": 0.011}}},
        "supernet": {"history": [{"epoch": e + 1, "seconds": 270.0, "train_loss": 1.2 - 0.1 * e, "train_top1": 0.6 + 0.03 * e} for e in range(4)],
                     "steps_per_epoch": 446, "seconds": 1080.0, "call_s": 1110.0, "resumed_at_epoch": None, "config": {"epochs": 4}},
        "darts": {"config": {"epochs": 6, "steps_per_epoch": 60, "optimizer": "adam", "learning_rate": 0.001, "arch_optimizer": "adam",
                             "arch_learning_rate": 0.01, "cost_weight": 1.0, "cost_target": limit},
                  "argmax": archs["darts"] if not darts_forced else archs["darts"][:-1] + ["ir_k7_e6_se0.25"], "argmax_ms": 0.2605 if darts_forced else 0.2301,
                  "architecture": archs["darts"], "predicted_ms": 0.2398, "probabilities": probabilities, "history": history, "seconds": 1815.0,
                  "oneshot_val": 0.66},
        "evolution": {"candidates": evo, "pareto": pareto, "cost_unit": "ms", "cost_limit": limit, "scored": 79, "resumed_trials": 0, "seconds": 1150.0,
                      "best": pareto[-1], "config": {"trials": 80, "population": 16, "cost_limit": limit, "seed": 0}, "architecture": archs["evolution"],
                      "predicted_ms": 0.2405, "oneshot_val": 0.69, "distinct": len({tuple(c["architecture"]) for c in evo})},
        "random": {"budget_s": 2895.0, "candidates": candidates, "within_budget": 11, "best": 4},
        "kendall": {"tau": tau, "p": p, "pairs": len(candidates)},
        "models": [{"key": k, "architecture": archs[k], "predicted_ms": ms[k] * 1.02, "measured_ms": ms[k], "oneshot_val": 0.6 + 0.01 * i}
                   for i, k in enumerate(MODELS)],
        "runs": runs,
        "latency": {"rounds_ms": rounds, "ms": {k: float(np.median(v)) for k, v in rounds.items()}, "timing": "invoke() only, min of >= 20 runs",
                    "rounds": 7, "threads": 1},
    }


@pytest.fixture(scope="module")
def data():
    return fake_data()


def test_findings_and_tables_render(data):
    findings = report.findings_markdown(data)
    tables = report.tables_markdown(data)
    for name in report.NAMES.values():
        assert name in tables
    for text in ("**DARTS, latency term:", "**One-shot evolution (NSGA-II):", "**Random search:", "**Search cost**", "Kendall tau", "Against random search"):
        assert text in findings
    assert "resumed" not in findings
    resumed = {**data, "evolution": {**data["evolution"], "resumed_trials": 30}}
    assert "the time of its last 50 trials only: it was resumed" in " ".join(report.findings_markdown(resumed).split())
    # header + alignment + rows: summary 4, architectures 4, costs 10, DARTS epochs 6, Pareto 6, random 12, runs 12
    assert sum(line.startswith("|") for line in tables.splitlines()) == 2 * 7 + 4 + 4 + 10 + 6 + 6 + 12 + 12
    assert "over the limit, so blocks were switched" in tables
    assert "within the limit, it is the derived network" in report.tables_markdown(fake_data(darts_forced=False))


def test_latency_measured_on_two_machines_is_said(data):
    """The table and the timed networks can come from different sessions' machines: the report says so, and only then."""
    same = " ".join(report.tables_markdown(data).split())
    assert "come from different machines" not in same
    assert "come from different machines" not in " ".join(report.tables_markdown({**data, "latency": {**data["latency"], "device": "AMD EPYC, 2 cores"}}).split())
    moved = {**data, "latency": {**data["latency"], "device": "Intel Xeon, 2 cores"}}
    text = " ".join(report.tables_markdown(moved).split())
    assert "The latency table was measured on AMD EPYC, 2 cores, the four networks were timed on Intel Xeon, 2 cores" in text


def test_every_number_in_the_findings_comes_from_the_data(data):
    assert typed_numbers(report, data) == set()


def test_a_typed_number_is_caught(data):
    text = report.findings_markdown(data) + "\nThe search took 12.75 hours.\n"
    other = report.findings_markdown(perturb(data, PERTURBATIONS[0])) + "\nThe search took 12.75 hours.\n"
    tokens = _tokens(text)
    assert "12.75" in {tokens[i][1] for i in unmoved(text, other)}


def test_verdicts_are_the_stats_of_the_runs(data):
    rows = {r["model"]: r for r in report.summary(data)}
    of = lambda key, field: [r[field] for r in sorted((r for r in data["runs"] if r["model"] == key), key=lambda r: r["seed"])]  # noqa: E731
    for key in ("darts", "evolution", "random"):
        st = seed_stats(of(key, "int8_top1"), of("mobilenet_v2", "int8_top1"), IMAGES, 0.0)
        assert (rows[key]["int8_diff"], rows[key]["int8_noise"], rows[key]["int8_verdict"]) == (st["diff_mean"], st["noise"], st["verdict"])
        st = seed_stats(of(key, "keras_top1"), of("mobilenet_v2", "keras_top1"), IMAGES, 0.0)
        assert (rows[key]["keras_diff"], rows[key]["keras_verdict"]) == (st["diff_mean"], st["verdict"])
    assert rows["mobilenet_v2"]["int8_verdict"] == "" and rows["mobilenet_v2"]["int8_diff"] == 0.0
    rounds = data["latency"]["rounds_ms"]
    ratios = [a / b for a, b in zip(rounds["darts"], rounds["mobilenet_v2"])]
    noise = 1.96 * float(np.std(ratios, ddof=1)) / np.sqrt(len(ratios))
    assert rows["darts"]["latency_noise"] == pytest.approx(noise, rel=1e-9)
    ratio = data["latency"]["ms"]["darts"] / data["latency"]["ms"]["mobilenet_v2"]
    assert rows["darts"]["latency_vs_mobilenet_v2"] == ratio and rows["darts"]["latency_verdict"] == verdict(1 - ratio, noise)


def test_search_cost_is_computed_from_the_phases(data):
    c = report.search_cost(data)
    candidate = float(np.mean([x["train_s"] for x in data["random"]["candidates"]]))
    differentiable = data["supernet"]["seconds"] + data["darts"]["seconds"]
    assert c["differentiable_s"] == differentiable and c["oneshot_s"] == data["supernet"]["seconds"] + data["evolution"]["seconds"]
    assert c["evaluated"] == data["evolution"]["distinct"] == 79  # 80 trials, one architecture suggested twice
    assert c["ratio_evaluated"] == pytest.approx(79 * candidate / differentiable) and c["breakeven"] == pytest.approx(differentiable / candidate)
    assert c["log10_ratio_space"] == pytest.approx(17.1 + math.log10(candidate / differentiable))
    assert c["random_s"] == pytest.approx(sum(x["train_s"] for x in data["random"]["candidates"][:11]))


def test_kendall_tau_of_the_data_is_the_stored_one(data):
    """The run stores scipy's tau (a rank statistic: rendering from perturbed data must not recompute it, or it
    would not move); here the stored value is checked against the pairs it came from."""
    cands = data["random"]["candidates"]
    assert (data["kendall"]["tau"], data["kendall"]["p"]) == kendall_tau([c["oneshot_val"] for c in cands], [c["val_top1"] for c in cands])
    assert f"Kendall tau {data['kendall']['tau']:.2f}" in report.findings_markdown(data)
    undefined = {**data, "kendall": {"tau": None, "p": None, "pairs": 12}}
    assert "Kendall tau is undefined over the 12 candidates" in report.findings_markdown(undefined)


def test_random_search_budget_prefix():
    assert _within_budget([100, 100, 100], 250) == 2
    assert _within_budget([300, 100], 250) == 1  # the first candidate counts even when it alone is over the budget
    assert _within_budget([100, 100], 1000) == 2


def test_render_writes_every_file(tmp_path, data, monkeypatch):
    write_plainly(monkeypatch, report)
    (tmp_path / report.DATA).write_text(json.dumps(data))
    report.render(tmp_path)
    assert (tmp_path / report.FINDINGS).read_text() == report.findings_markdown(data)
    assert (tmp_path / "nas.md").read_text() == report.tables_markdown(data) + "\n" + report.findings_markdown(data)
    lines = (tmp_path / "nas.csv").read_text().splitlines()
    assert lines[0] == ",".join(report.CSV_FIELDS) and len(lines) == 1 + len(MODELS)


def test_plan_estimate_follows_the_settings():
    full = Plan(argparse.Namespace(quick=False, seeds=3))
    seconds = full.seconds()
    assert list(seconds) == ["table", "supernet", "darts", "evolution", "random", "retrain", "latency"]
    assert 3 * 3600 < sum(seconds.values()) < 4 * 3600  # the docstring's "about 3.7 h"
    assert full.parts() == 197 and full.train_steps == 446
    assert Plan(argparse.Namespace(quick=False, seeds=5)).seconds()["retrain"] == pytest.approx(seconds["retrain"] * 5 / 3)
    quick = Plan(argparse.Namespace(quick=True, seeds=3))
    assert quick.seeds == [0, 1] and sum(quick.seconds().values()) < 600
    assert quick.settings() != full.settings()


def test_rendering_and_the_plan_import_no_tensorflow():
    assert heavy_modules_after("import argparse\nfrom benchmarks import _nas_report\nfrom benchmarks.nas import Plan\n"
                               "Plan(argparse.Namespace(quick=False, seeds=3)).seconds()") == []


@pytest.mark.skipif(not (ROOT / "benchmarks" / report.DATA).exists(), reason="benchmarks/nas.json is committed by the full run")
def test_committed_report_is_rendered_from_the_committed_data():
    data = report.findings_data(ROOT / "benchmarks")
    assert (ROOT / "benchmarks" / "nas.md").read_text() == report.tables_markdown(data) + "\n" + report.findings_markdown(data)
