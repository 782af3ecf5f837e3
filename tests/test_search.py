"""Search on Optuna: trials run real recipes; workers share a study; dead workers' trials are retried;
over-budget candidates are pruned before training; multi-objective searches keep their Pareto artifacts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeopt.config import RecipeError
from edgeopt.search import SearchConfig, run_search
from edgeopt.search.space import parse_search_space

from conftest import ROOT, make_recipe, recipe_toml



def _recipe(**overrides) -> dict:
    """One 4-step train stage of mobilenet_v1_tiny on digits 16x16 (each trial tests on the first 96 test images)."""
    return make_recipe(name="tinysearch", data={"limit_test": 96}, **overrides)


TRAIN_ONLY = _recipe()

GRID_SPACE = """
objectives = ["keras_accuracy"]
[params]
"train.learning_rate" = { choices = [0.001, 0.003, 0.01] }
"train.label_smoothing" = { low = 0.0, high = 0.1, step = 0.1 }
"""


@pytest.fixture
def keras_evaluated(monkeypatch) -> list:
    """The images of every Keras-model evaluation (``edgeopt.train.evaluate``, by whichever module calls it), in order,
    each reported trial's measurement on the test split starting with "reported": only the test split is evaluated
    that way (96 images in these recipes; validation accuracy comes from fitting)."""
    import importlib

    from edgeopt import train
    from edgeopt.search import runner

    stage = importlib.import_module("edgeopt.pipeline.stage")  # the module: the package's ``stage`` is the decorator
    seen, real_evaluate, real_measure = [], train.evaluate, runner.measure_on_test

    def evaluate(model, dataset):
        result = real_evaluate(model, dataset)
        seen.append(result["samples"])
        return result

    def measure_on_test(*args, **kwargs):
        seen.append("reported")
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", evaluate)
    monkeypatch.setattr(stage, "evaluate", evaluate)
    monkeypatch.setattr(runner, "measure_on_test", measure_on_test)
    return seen


def _write(tmp_path: Path, recipe: dict = TRAIN_ONLY, space: str = GRID_SPACE) -> tuple[Path, Path]:
    (tmp_path / "tinysearch.toml").write_text(recipe_toml(recipe))
    (tmp_path / "space.toml").write_text(space)
    return tmp_path / "tinysearch.toml", tmp_path / "space.toml"


def _worker(recipe: Path, space: Path, db: Path, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edgeopt.cli", "search", str(recipe), "--space", str(space), "--storage", f"sqlite:///{db}",
           "--study", "shared", "--out", str(db.parent / "out"), *extra]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def _trials(db: Path) -> list[dict]:
    import optuna

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{db}")
    return [{"number": t.number, "state": t.state.name, "worker": t.user_attrs.get("worker"), "params": t.params} for t in study.trials]


@pytest.mark.slow  # 33 s: two processes; the study's storage and resume are tested in the default suite by the others
def test_two_workers_share_one_study_and_run_each_trial_exactly_once(tmp_path):
    recipe, space = _write(tmp_path)
    db = tmp_path / "study.db"
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    procs = [_worker(recipe, space, db, logs[i], "--sampler", "grid", "--trials", "6", "--pruner", "none") for i in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, "\n".join(log.read_text()[-3000:] for log in logs)
    trials = _trials(db)
    assert [t["number"] for t in trials] == list(range(6))
    assert all(t["state"] == "COMPLETE" for t in trials), trials
    grid = {(lr, ls) for lr in (0.001, 0.003, 0.01) for ls in (0.0, 0.1)}
    assert {(t["params"]["train.learning_rate"], t["params"]["train.label_smoothing"]) for t in trials} == grid  # each point once, none lost
    assert len({t["worker"] for t in trials}) == 2, "both workers should have taken trials"
    finished = [line for log in logs for line in log.read_text().splitlines() if "stage 1/1 train done" in line]
    assert len(finished) == 6  # six trainings in all: no trial ran twice
    runs = sorted(p.name for p in (tmp_path / "out" / "trials").iterdir())
    assert runs == [f"trial-{i:04d}" for i in range(6)]
    report = (tmp_path / "out" / "search.md").read_text()
    assert "budget 6 trials (6 complete)" in report


def _has_running_trial(db: Path) -> bool:
    try:
        return any(t["state"] == "RUNNING" for t in _trials(db))
    except KeyError:  # the study is not created yet
        return False


@pytest.mark.slow  # 21-33 s each; the default suite stays under 15 minutes
def test_a_killed_worker_s_trial_is_retried_with_the_same_values(tmp_path):
    recipe, space = _write(tmp_path, recipe=_recipe(train={"steps_per_epoch": 24}))
    db = tmp_path / "study.db"
    proc = _worker(recipe, space, db, tmp_path / "dead.log", "--sampler", "random", "--trials", "2", "--heartbeat-seconds", "1", "--grace-seconds", "3")
    deadline = time.time() + 300
    while time.time() < deadline and not (db.exists() and _has_running_trial(db)):
        time.sleep(0.5)
    time.sleep(3)  # inside the trial's training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    dead = next(t for t in _trials(db) if t["state"] == "RUNNING")
    time.sleep(4)  # past the grace period: its heartbeat is stale
    config = SearchConfig(sampler="random", trials=2, study="shared", storage=f"sqlite:///{db}", heartbeat_seconds=1, grace_seconds=3)
    result = run_search(recipe, space, config, out_dir=tmp_path / "out", progress=lambda s: None)
    assert result.counts() == {"FAIL": 1, "COMPLETE": 2}
    failed = next(t for t in result.trials if t.state == "FAIL")
    retry = next(t for t in result.trials if t.retry_of is not None)
    assert failed.number == dead["number"] and retry.retry_of == dead["number"]
    assert retry.params == failed.params and retry.state == "COMPLETE"
    assert retry.run_dir.endswith(f"trial-{dead['number']:04d}")  # the rerun continues the dead trial's run directory


def test_candidates_over_the_multiply_add_budget_are_pruned_before_training(tmp_path, keras_evaluated):
    recipe = _recipe(model={"name": "mobilenet_v1", "knobs": {"alpha": 0.25}}, train={"steps_per_epoch": 1})  # costs, not accuracy: one step
    space = '''objectives = ["keras_accuracy"]
constraints = ["macs <= 10e6"]
[params]
"model.knobs.alpha" = { choices = [0.25, 1.0] }
'''
    recipe_path, space_path = _write(tmp_path, recipe, space)
    result = run_search(recipe_path, space_path, SearchConfig(sampler="grid", trials=2, pruner="none"), out_dir=tmp_path / "out", progress=lambda s: None)
    by_alpha = {t.params["model.knobs.alpha"]: t for t in result.trials}
    big, small = by_alpha[1.0], by_alpha[0.25]
    assert big.state == "PRUNED" and big.note.startswith("pruned before training: macs") and big.metrics["macs"] > 10e6
    assert not (Path(big.run_dir) / "00-train" / "result.json").exists()  # no training spent on it
    assert small.state == "COMPLETE" and small.metrics["macs"] <= 10e6 and small.feasible and small.pareto
    # a Keras-only search: the trial never read the test split; the reported model read it once, after the search
    assert "test_top1" not in json.loads((Path(small.run_dir) / "00-train" / "result.json").read_text())["metrics"]
    assert keras_evaluated == ["reported", 96]
    m = small.metrics
    assert m["test_accuracy_of"] == "keras" and m["test_accuracy"] == m["keras_test_accuracy"] and 0 <= m["test_accuracy"] <= 1


def test_objectives_the_recipe_cannot_measure_and_bad_values_fail_before_training(tmp_path):
    recipe, space = _write(tmp_path, space='objectives = ["accuracy", "latency_ms"]\n[params]\n"train.learning_rate" = { choices = [0.001] }')
    with pytest.raises(RecipeError, match="latency_ms needs export and bench stages"):
        run_search(recipe, space, SearchConfig(sampler="grid", trials=1), out_dir=tmp_path / "a", progress=lambda s: None)
    recipe, space = _write(tmp_path, space='objectives = ["accuracy"]\n[params]\n"train.epochs" = { choices = [1, -2] }')
    with pytest.raises(RecipeError, match=r"params.'train.epochs'.*train.epochs must be >= 1"):
        run_search(recipe, space, SearchConfig(sampler="grid", trials=2), out_dir=tmp_path / "b", progress=lambda s: None)
    assert not (tmp_path / "b" / "trials").exists()


def test_joining_a_study_made_for_another_space_is_refused(tmp_path):
    recipe, space = _write(tmp_path, space='objectives = ["keras_accuracy"]\n[params]\n"train.learning_rate" = { choices = [0.003] }')
    config = SearchConfig(sampler="grid", trials=1, study="one", pruner="none")
    run_search(recipe, space, config, out_dir=tmp_path / "out", progress=lambda s: None)
    space.write_text('objectives = ["keras_accuracy"]\n[params]\n"train.learning_rate" = { choices = [0.01] }')
    with pytest.raises(RecipeError, match="was created for another recipe, space or sampler"):
        run_search(recipe, space, config, out_dir=tmp_path / "out", progress=lambda s: None)


def test_multi_objective_search_chooses_on_val_reads_test_once_per_reported_trial_and_keeps_pareto_artifacts(tmp_path, monkeypatch, keras_evaluated):
    from edgeopt import bench
    from edgeopt.data import Splits, load_dataset

    evaluated, fed = [], []  # (split, images) of every .tflite accuracy; the splits latency was fed from
    real_evaluate, real_arrays = bench.evaluate_tflite, Splits.arrays

    def evaluate(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        evaluated.append((result.split, result.samples))
        return result

    def arrays(self, split="test", limit=None):
        fed.append(split)
        return real_arrays(self, split, limit)

    monkeypatch.setattr(bench, "evaluate_tflite", evaluate)
    monkeypatch.setattr(Splits, "arrays", arrays)
    recipe = _recipe(stages=[{"type": "train"},
                             {"type": "export", "mode": "int8", "baseline": False, "num_calibration": 32, "verify_samples": 64, "min_agreement": 0.0},
                             {"type": "bench", "threads": [1], "runs": 5, "min_seconds": 0.05}])  # split: the recipe's default, test
    space = '''objectives = ["accuracy", "latency_ms"]
constraints = ["latency_ms <= 1000"]
[params]
"data.image_size" = { choices = [16, 24] }
'''
    recipe_path, space_path = _write(tmp_path, recipe, space)
    result = run_search(recipe_path, space_path, SearchConfig(sampler="grid", trials=2), out_dir=tmp_path / "out", progress=lambda s: None)
    sizes = load_dataset("digits", image_size=16, limit_test=96).sizes
    assert sizes["val"] != sizes["test"] == 96  # the two splits' image counts tell which one was measured
    assert result.counts() == {"COMPLETE": 2}
    assert result.pareto, "a non-empty front"
    # every trial was chosen on the validation split; the test split was read once per reported trial, by its .tflite and its Keras model alone
    assert evaluated == [("val", sizes["val"])] * 2 + [("test", 96)] * len(result.pareto)
    assert fed == ["val"] * 2 + ["test"] * len(result.pareto)
    assert keras_evaluated == ["reported", 96] * len(result.pareto)  # the Keras models too: none in the trials, each reported one once
    for t in result.trials:
        assert "test_top1" not in json.loads((Path(t.run_dir) / "00-train" / "result.json").read_text())["metrics"]
    for t in result.trials:
        m = t.metrics
        assert m["accuracy_of"] == "tflite int8" and 0 <= m["accuracy"] <= 1 and m["val_samples"] == sizes["val"]
        assert m["latency_ms"] > 0 and m["latency_threads"] == 1 and 0 < m["gzip_bytes"] < m["size_bytes"]
        assert t.values == [m["accuracy"], m["latency_ms"]] and t.feasible
        tested = {k for k in m if k.startswith("test_") or k == "keras_test_accuracy"}
        if t.pareto:
            assert m["test_accuracy_of"] == "tflite int8" and m["test_samples"] == 96 and 0 <= m["test_accuracy"] <= 1
            assert tested == {"test_accuracy", "test_accuracy_of", "test_samples", "keras_test_accuracy"}
        else:
            assert not tested
    small, large = sorted(result.trials, key=lambda t: t.params["data.image_size"])
    assert small.metrics["macs"] < large.metrics["macs"]
    for t in result.pareto:
        kept = tmp_path / "out" / "pareto" / f"trial-{t.number:04d}"
        assert (kept / "model.tflite").stat().st_size == t.metrics["size_bytes"]
        assert (kept / "model.json").is_file() and (kept / "labels.txt").is_file()
    text = (tmp_path / "out" / "search.md").read_text()
    assert "## Pareto front" in text and "data.image_size" in text and "| accuracy | test_accuracy |" in text
    assert (tmp_path / "out" / "search_pareto.png").stat().st_size > 1000
    rows = (tmp_path / "out" / "search.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("trial,state,data.image_size") and ",test_accuracy," in rows[0]
    # a second search over the finished study reads nothing again
    evaluated.clear()
    keras_evaluated.clear()
    again = run_search(recipe_path, space_path, SearchConfig(sampler="grid", trials=2), out_dir=tmp_path / "out", progress=lambda s: None)
    assert evaluated == keras_evaluated == [] and [t.metrics for t in again.trials] == [t.metrics for t in result.trials]


def test_trial_metrics_never_use_the_test_split_and_metrics_on_test_only_it():
    from edgeopt.bench import AccuracyResult, BenchResult, SizeResult
    from edgeopt.search import metrics_on_test, trial_metrics

    def report(split: str, top1: float) -> dict:
        bench = BenchResult("model.tflite", SizeResult(1000, 600), [], AccuracyResult(top1, 1.0, 50 if split == "val" else 96, split=split))
        return {"stages": [{"stage": 0, "type": "train", "metrics": {"val_top1": 0.7, "test_top1": 0.9, "macs": 10, "params": 5}},
                           {"stage": 1, "type": "export", "metrics": {"model": {"mode": "int8", "agreement": 0.99}}},
                           {"stage": 2, "type": "bench", "metrics": {"model": bench.to_dict()}}]}

    on_val, on_test = report("val", 0.6), report("test", 0.95)
    assert trial_metrics(on_val) == {"macs": 10, "params": 5, "keras_accuracy": 0.7, "accuracy": 0.6, "accuracy_of": "tflite int8", "val_samples": 50,
                                     "int8_agreement": 0.99, "size_bytes": 1000, "gzip_bytes": 600}
    chosen_by = trial_metrics(on_test)  # a bench on the test split: its accuracy is not a selection metric
    assert chosen_by["accuracy"] == chosen_by["keras_accuracy"] == 0.7 and chosen_by["accuracy_of"] == "keras" and "val_samples" not in chosen_by
    assert metrics_on_test(on_test) == {"keras_test_accuracy": 0.9, "test_accuracy": 0.95, "test_accuracy_of": "tflite int8", "test_samples": 96}
    assert metrics_on_test(on_val) == {"keras_test_accuracy": 0.9, "test_accuracy": 0.9, "test_accuracy_of": "keras"}


def test_a_recipe_without_a_validation_split_is_refused(tmp_path):
    recipe, space = _write(tmp_path, recipe=make_recipe(name="tinysearch", data={"limit_test": 96, "val_fraction": 0.0}))
    with pytest.raises(RecipeError, match=r"^\S*tinysearch.toml: data.val_fraction is 0: a search chooses trials on the validation split") as err:
        run_search(recipe, space, SearchConfig(sampler="grid", trials=1), out_dir=tmp_path / "a", progress=lambda s: None)
    assert "\n" not in str(err.value)
    recipe, space = _write(tmp_path, space='objectives = ["keras_accuracy"]\n[params]\n"data.val_fraction" = { choices = [0.1, 0.0] }')
    with pytest.raises(RecipeError, match=r"params.'data.val_fraction': data.val_fraction is 0"):
        run_search(recipe, space, SearchConfig(sampler="grid", trials=2), out_dir=tmp_path / "b", progress=lambda s: None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any study or training


def test_a_study_scored_on_the_test_split_is_not_joined(tmp_path):
    import optuna

    from edgeopt.search.study import META_KEY

    recipe, space = _write(tmp_path)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(storage=url, study_name="old", direction="maximize")
    old.set_user_attr(META_KEY, {"fingerprint": "?", "budget": 6, "recipe": "tinysearch", "sampler": "grid", "objectives": ["keras_accuracy"], "constraints": []})
    with pytest.raises(RecipeError, match="scored its trials on the test split"):
        run_search(recipe, space, SearchConfig(sampler="grid", trials=6, storage=url, study="old"), out_dir=tmp_path / "out", progress=lambda s: None)


@pytest.mark.slow  # 21-33 s each; the default suite stays under 15 minutes
def test_compound_scaling_search_scales_an_efficientnet_by_the_flops_rule(tmp_path):
    recipe = _recipe(model={"name": "efficientnet", "knobs": {"width": 0.1, "depth": 0.2}}, train={"steps_per_epoch": 1})  # scaling, not accuracy
    space = '''objectives = ["keras_accuracy"]
[compound]
alpha = { low = 1.0, high = 1.5 }
beta = { low = 1.0, high = 1.25 }
'''
    recipe_path, space_path = _write(tmp_path, recipe, space)
    result = run_search(recipe_path, space_path, SearchConfig(sampler="random", trials=2, seed=3, pruner="none"), out_dir=tmp_path / "out", progress=lambda s: None)
    assert result.counts() == {"COMPLETE": 2}
    compound = parse_search_space(space).compound
    for t in result.trials:
        alpha, beta = t.params["compound.alpha"], t.params["compound.beta"]
        gamma = compound.gamma(alpha, beta)
        assert alpha * beta**2 * gamma**2 == pytest.approx(2.0)
        assert t.overrides == {"model.knobs.depth": round(0.2 * alpha, 4), "model.knobs.width": round(0.1 * beta, 4), "data.image_size": round(16 * gamma)}
        assert t.metrics["macs"] > 0
