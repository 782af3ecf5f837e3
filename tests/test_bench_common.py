"""benchmarks/_common.py's resumable cache: results committed in benchmarks/raw/, files kept under runs/."""
from __future__ import annotations

import json

import pytest

from benchmarks import _common
from benchmarks._common import SeedRuns, seed_runs


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "RAW_ROOT", tmp_path / "benchmarks" / "raw")
    monkeypatch.setattr(_common, "CACHE_ROOT", tmp_path / "runs" / "bench_cache")
    return tmp_path


def test_a_full_run_keeps_results_in_raw_and_files_under_runs(roots):
    cache = seed_runs("lowbit/mobilenet", {"steps": 600}, quick=False)
    assert cache.path.parent.parent == roots / "benchmarks" / "raw" / "lowbit" / "mobilenet"
    assert cache.files.parent == roots / "runs" / "bench_cache" / "lowbit" / "mobilenet"
    assert cache.path.parent.name == cache.files.name  # the same settings key names both folders
    assert cache.file("layer-wise 50%", 0, ".tflite") == cache.files / "layer-wise-50-s0.tflite"
    quick = seed_runs("lowbit/mobilenet", {"steps": 600}, quick=True)
    assert quick.folder == quick.files and quick.folder.parent == roots / "runs" / "bench_cache" / "quick" / "lowbit" / "mobilenet"
    assert seed_runs("lowbit/mobilenet", {"steps": 1200}, quick=False).folder != cache.folder  # other settings, other folder


def test_a_fresh_clone_reads_the_results_and_reruns_only_jobs_whose_files_a_later_job_needs(roots, capsys):
    cache = seed_runs("pruning", {"steps": 600}, quick=False)
    ran = []

    def work(variant, seed):
        ran.append((variant, seed))
        cache.file(variant, seed, ".tflite").write_bytes(b"x")
        return {"top1": 0.9}

    cache.run([("a", 0), ("b", 0), ("a", 1)], work, lambda _: 1.0, "test")
    assert ran == [("a", 0), ("b", 0), ("a", 1)]
    assert set(json.loads(cache.path.read_text())["results"]) == {"a | seed 0", "b | seed 0", "a | seed 1"}
    for f in cache.files.iterdir():  # a fresh clone: the committed runs.json, no files
        f.unlink()
    again = seed_runs("pruning", {"steps": 600}, quick=False)
    assert len(again.results) == 3
    gone = again.ensure_files([("a", 0, (".tflite",)), ("b", 0, (".tflite",)), ("never ran", 0, (".tflite",))], "latency")
    assert gone == [("a", 0), ("b", 0)]
    assert "a (seed 0) is cached in" in capsys.readouterr().out
    assert set(SeedRuns(again.folder.parent, {"steps": 600}).results) == {"a | seed 1"}  # the forgetting is saved
    ran.clear()
    cache = again
    again.run([("a", 0), ("b", 0), ("a", 1)], work, lambda _: 1.0, "test")
    assert ran == [("a", 0), ("b", 0)]  # seed 1's result stays: nothing needs its file
    assert again.ensure_files([("a", 0, (".tflite",))], "latency") == []


def test_forget_drops_one_result_saved_and_says_whether_there_was_one(roots):
    cache = seed_runs("lowbit/m", {"steps": 600}, quick=False)
    cache.run([("latency", None), ("a", 0)], lambda v, s: {"ms": 1.0}, lambda _: 1.0, "test")
    assert cache.forget("latency") is True and cache.forget("latency") is False
    assert set(seed_runs("lowbit/m", {"steps": 600}, quick=False).results) == {"a | seed 0"}  # saved at once


def test_two_processes_saving_one_cache_keep_each_others_results(roots):
    """Jobs split between processes (``--only``) share runs.json: each save merges under a lock, and a forgotten
    result stays forgotten even though the other process's file still had it."""
    first = seed_runs("pruning_criteria/scratch_full", {"steps": 600}, quick=False)
    second = seed_runs("pruning_criteria/scratch_full", {"steps": 600}, quick=False)  # read before either saved
    first.put("grasp 90%", 0, {"int8_top1": 0.91})
    second.put("set 90%", 1, {"int8_top1": 0.93})
    first.put("grasp 90%", 1, {"int8_top1": 0.92})
    on_disk = json.loads(first.path.read_text())["results"]
    assert set(on_disk) == {"grasp 90% | seed 0", "set 90% | seed 1", "grasp 90% | seed 1"}
    assert on_disk["set 90% | seed 1"]["int8_top1"] == 0.93 and first.get("set 90%", 1)["int8_top1"] == 0.93
    assert second.forget("grasp 90%", 0) and set(second.results) == {"set 90% | seed 1", "grasp 90% | seed 1"}
    first.put("grasp 90%", 2, {"int8_top1": 0.9})  # first still holds seed 0 from before: its save does not bring it back
    assert set(json.loads(first.path.read_text())["results"]) == {"set 90% | seed 1", "grasp 90% | seed 1", "grasp 90% | seed 2"}
    assert first.get("grasp 90%", 0) is None  # and it reads the forgetting back
    assert not (first.folder / "runs.json.lock").exists() and (first.files / "runs.json.lock").exists()  # the lock stays out of git
    assert second.forget_all() == 3 and json.loads(second.path.read_text())["results"] == {}


def test_only_selects_a_variants_seeds_or_one_run_and_names_what_would_work(roots):
    jobs = [("grasp 90%", 0), ("grasp 90%", 1), ("set 90%", 0), ("set 90%", 1)]
    assert SeedRuns.selected(jobs, []) == jobs
    assert SeedRuns.selected(jobs, ["grasp 90%"]) == jobs[:2]
    assert SeedRuns.selected(jobs, ["set 90% | seed 1", "grasp 90% | seed 0"]) == [("grasp 90%", 0), ("set 90%", 1)]
    with pytest.raises(ValueError, match=r"--only 'snip 90%' names no job here.*'grasp 90%', 'set 90%', 'grasp 90% \| seed 0'"):
        SeedRuns.selected(jobs, ["snip 90%"])
    with pytest.raises(ValueError, match="names no job"):
        SeedRuns.selected(jobs, ["set 90% | seed 7"])
