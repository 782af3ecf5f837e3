"""Reports render the runner's records (StageResult, BenchResult) into tables, CSV and plots without recomputing;
``edgeopt report`` re-measures every artifact's latency in one interleaved run unless told --no-remeasure."""
import copy
import csv
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from edgeopt import report as report_module
from edgeopt.bench import FEATURES, AccuracyResult, BenchResult, LatencyResult, SizeResult, machine, this_machine
from edgeopt.cli import main
from edgeopt.pipeline import StageResult
from edgeopt.report import artifact_files, pareto_mask, remeasure_latency, result_rows, results_markdown, run_summary_markdown, write_results

MACHINE = "Test CPU, 2 cores, x86_64"


def _latency(threads: int, median_ms: float, device: str = MACHINE) -> LatencyResult:
    return LatencyResult(model="m.tflite", threads=threads, xnnpack=True, runs=50, warmup_runs=1, init_ms=3.0, first_ms=2.0, warmup_ms=2.0,
                         median_ms=median_ms, p90_ms=median_ms * 1.1, p95_ms=median_ms * 1.2, mean_ms=median_ms, std_ms=0.1, min_ms=median_ms * 0.9,
                         max_ms=median_ms * 1.3, init_mem_mb=1.0, peak_mem_mb=2.0, inputs="dataset", runtime="ai-edge-litert 2.0", device=device)


def _bench(stem: str, size: int, gzip: int, medians: tuple[float, float], top1: float, device: str = MACHINE) -> dict:
    result = BenchResult(f"{stem}.tflite", SizeResult(size, gzip), [_latency(1, medians[0], device), _latency(2, medians[1], device)],
                         AccuracyResult(top1, 0.99, 2000), "fashion_mnist")
    return result.to_dict()


def _report(recipe: str = "r", device: str = MACHINE) -> dict:
    """A run report as the runner writes it: its stages' StageResult records, the bench stage's BenchResult dicts."""
    stages = [
        StageResult(0, "train", "00-train", seconds=10.0, metrics={"test_top1": 0.9, "params": 100, "macs": 2e6, "sparsity": 0.0}, files={"model": "model.keras"}),
        StageResult(1, "prune", "01-prune", seconds=5.0, metrics={"test_top1": 0.88, "params": 100, "macs": 2e6, "sparsity": 0.5}, files={"model": "model.keras"}),
        StageResult(2, "export", "02-export", seconds=3.0, metrics={"model": {"mode": "int8", "size_bytes": 1000, "agreement": 0.99},
                                                                    "baseline_float32": {"mode": "float32", "size_bytes": 4000, "agreement": 1.0}},
                    files={"model": "model.tflite", "baseline_float32": "baseline_float32.tflite"}),
        StageResult(3, "bench", "03-bench", seconds=9.0, metrics={"model": _bench("model", 1000, 600, (1.5, 1.0), 0.87, device),
                                                                  "baseline_float32": _bench("baseline_float32", 4000, 3700, (1.6, 1.1), 0.9, device)}),
    ]
    return {"recipe": recipe, "description": "", "model": {"name": "mobilenet_v2", "knobs": {"alpha": 0.35}},
            "data": {"dataset": "fashion_mnist", "input_shape": [32, 32, 3]}, "stages": [s.to_dict() for s in stages]}


REPORT = _report()


def test_the_baseline_row_takes_the_last_float_training_stage_or_the_model_file_the_run_started_from():
    report = copy.deepcopy(REPORT)
    distill = StageResult(1, "distill", "01-distill", seconds=7.0, metrics={"test_top1": 0.92, "params": 100, "macs": 2e6, "sparsity": 0.0},
                          files={"model": "model.keras"})
    report["stages"].insert(1, distill.to_dict())  # train -> distill -> prune: the distilled student is the float baseline
    assert {r["artifact"]: r["keras_top1"] for r in result_rows(report)} == {"model": 0.88, "baseline_float32": 0.92}
    from_file = copy.deepcopy(REPORT)
    del from_file["stages"][0]  # a recipe that starts from model.path: no float training stage measured the baseline
    assert {r["artifact"]: r["keras_top1"] for r in result_rows(from_file)} == {"model": 0.88, "baseline_float32": None}
    from_file["model"]["source"] = {"path": "m.keras", "metrics": {"test_top1": 0.91, "params": 120, "macs": 3e6}}  # the runner measured the file
    base = next(r for r in result_rows(from_file) if r["artifact"] == "baseline_float32")
    assert (base["keras_top1"], base["params"], base["macs"]) == (0.91, 120, 3e6)


def test_pareto_mask():
    # (cost, value): (1, .5) and (2, .9) are optimal; (3, .8) is beaten by (2, .9); (2, .7) too
    assert pareto_mask([1, 2, 3, 2], [0.5, 0.9, 0.8, 0.7]) == [True, True, False, False]
    assert pareto_mask([1, 1], [0.5, 0.5]) == [True, True]


def test_result_rows_pair_keras_and_tflite_metrics():
    rows = {r["artifact"]: r for r in result_rows(REPORT)}
    assert set(rows) == {"model", "baseline_float32"}
    ci = 1.96 * np.sqrt(0.87 * 0.13 / 2000)
    assert rows["model"] == {"recipe": "r", "artifact": "model", "mode": "int8", "model": "mobilenet_v2(alpha=0.35) 32x32x3", "seeds": 1, "keras_top1": 0.88,
                             "tflite_top1": 0.87, "tflite_top1_ci95": pytest.approx(ci), "test_images": 2000, "size_bytes": 1000, "gzip_bytes": 600, "median_ms_1": 1.5, "median_ms_2": 1.0, "macs": 2e6, "params": 100,
                             "machine": MACHINE}
    # the float baseline pairs with the train stage's Keras model, not the pruned one
    assert rows["baseline_float32"]["keras_top1"] == 0.9 and rows["baseline_float32"]["gzip_bytes"] == 3700 and rows["baseline_float32"]["mode"] == "float32"
    md = results_markdown(list(rows.values()))
    assert f"Latency measured on {MACHINE}, as each run stored it (`edgeopt report --no-remeasure`; SIMD flags not recorded)." in md
    assert f"| r | model | int8 | mobilenet_v2(alpha=0.35) 32x32x3 | 1 | 88.00% | 87.00% ± {100 * ci:.2f} | 1,000 | 600 | 1.50 | 1.00 | 2.0 | 100 |\n" in md
    assert "87.00% ± 1.47" in md and "Each row is one run of its recipe (seeds = 1" in md


def test_reports_written_before_0_2_give_the_same_rows():
    old = copy.deepcopy(REPORT)
    for entry in old["stages"][3]["metrics"].values():  # {"latency": [...]} -> {"latency_1t": ..., "latency_2t": ...}
        for lat in entry.pop("latency"):
            entry[f"latency_{lat.pop('threads')}t"] = lat
    assert "latency_1t" in old["stages"][3]["metrics"]["model"]
    assert result_rows(old) == result_rows(REPORT)
    assert run_summary_markdown(old) == run_summary_markdown(REPORT)


def test_results_name_each_rows_machine_when_runs_come_from_several():
    other = _report("r2", device="Other CPU, 2 cores, x86_64")
    md = results_markdown(result_rows(REPORT) + result_rows(other))
    assert "measured on 2 different machines" in md and "compare latencies only between rows of one machine" in md
    assert f"| 1.50 | 1.00 | 2.0 | 100 | {MACHINE} |" in md
    assert "| r2 | model | int8 |" in md and "| Other CPU, 2 cores, x86_64 |" in md


def test_run_summary_shows_stages_and_float_vs_int8():
    md = run_summary_markdown(REPORT)
    assert "| 1 | prune | 5 | 88.00% | 50.0% | 100 |" in md
    assert "| model | int8 | 87.00% | 1,000 | 600 | 1.50 | 1.00 |" in md
    assert "| baseline_float32 | float32 | 90.00% | 4,000 | 3,700 | 1.60 | 1.10 |" in md


def test_write_results_writes_table_csv_and_plots(tmp_path):
    rows = write_results([REPORT], tmp_path)
    assert [r["artifact"] for r in rows] == ["model", "baseline_float32"]
    csv_lines = (tmp_path / "RESULTS.csv").read_text().splitlines()
    assert csv_lines[0].startswith("recipe,artifact,mode") and len(csv_lines) == 3
    assert csv_lines[1].startswith("r,model,int8,")
    assert "| r | model | int8 |" in (tmp_path / "RESULTS.md").read_text()
    for name in ("pareto_latency.png", "pareto_size.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / name).stat().st_size > 1000


def test_thread_columns_are_in_numeric_order():
    wide = copy.deepcopy(REPORT)
    for entry in wide["stages"][3]["metrics"].values():
        entry["latency"].append(_latency(10, 0.7).to_dict())
    md = run_summary_markdown(wide)
    assert "| median ms @1 | median ms @2 | median ms @10 |" in md
    assert "| model | int8 | 87.00% | 1,000 | 600 | 1.50 | 1.00 | 0.70 |" in md
    rows = result_rows(wide)
    assert "| median ms @1 | median ms @2 | median ms @10 | MACs (M) |" in results_markdown(rows)
    assert [k for k in rows[0] if k.startswith("median_ms_")] == ["median_ms_1", "median_ms_2", "median_ms_10"]


# ---- latency re-measured in one interleaved run ------------------------------------------------------------


def _tiny_tflite(mode: str, channels: int) -> bytes:
    """A tiny untrained conv net (8x8x3 -> 10) as a .tflite: a few kB, milliseconds to time."""
    from edgeopt import export
    from edgeopt._keras import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(channels, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    calibration = np.random.default_rng(0).uniform(-1, 1, (32, 8, 8, 3)).astype("float32")
    return export.to_tflite(model, mode, calibration, min_agreement=0.0).model_bytes


@pytest.fixture(scope="module")
def tiny_files():
    """The two .tflite files of a run (int8 model, float32 baseline), as bytes."""
    return {"model.tflite": _tiny_tflite("int8", 8), "baseline_float32.tflite": _tiny_tflite("float32", 4)}


@pytest.fixture
def shipped(tmp_path, tiny_files):
    """Two runs as `edgeopt run` ships them (tflite_models/<recipe>/: report.json beside its .tflite files),
    benchmarked on two different machines; returns their directories."""
    dirs = []
    for recipe, device in (("r", MACHINE), ("r2", "Other CPU, 2 cores, x86_64")):
        folder = tmp_path / "tflite_models" / recipe
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(_report(recipe, device)))
        for name, data in tiny_files.items():
            (folder / name).write_bytes(data)
        dirs.append(folder)
    return dirs


def _load(dirs):
    return [json.loads((d / "report.json").read_text()) for d in dirs]


def test_remeasure_times_every_artifact_at_every_thread_count_on_this_machine(shipped, tmp_path):
    reports = _load(shipped)
    again, run = remeasure_latency(reports, shipped, rounds=2, runs=3, min_seconds=0.0)
    assert reports == _load(shipped)  # the reports read are left as they were
    assert run.files == 4 and run.threads == (1, 2) and run.rounds == 2 and run.machine == this_machine().describe()
    for before, after in zip(reports, again):
        old, new = before["stages"][3]["metrics"], after["stages"][3]["metrics"]
        assert set(new) == set(old) == {"model", "baseline_float32"}
        for stem in old:
            result, stored = BenchResult.from_dict(new[stem]), BenchResult.from_dict(old[stem])
            assert result.size == stored.size and result.accuracy == stored.accuracy  # only latency is measured again
            assert [lat.threads for lat in result.latency] == [1, 2]
            for lat in result.latency:
                assert lat.runs == 2 * 3 and lat.device == machine() and lat.inputs == "random"  # 2 rounds of 3 runs, not the stored 50
                assert 0 < lat.min_ms <= lat.median_ms <= lat.max_ms

    rows = write_results(reports, tmp_path / "out", where=shipped, remeasure=True, rounds=2, runs=3, min_seconds=0.0)
    assert len(rows) == 4 and {r["machine"] for r in rows} == {machine()}
    assert all(r["median_ms_1"] > 0 and r["median_ms_2"] > 0 for r in rows)
    md = (tmp_path / "out" / "RESULTS.md").read_text()
    header = md.split("\n| recipe |")[0]
    assert this_machine().describe() in header and "one run" in header and "interleaved" in header
    assert all(name in header for name in FEATURES) and "AMX" in header and "AVX-512" in header
    assert "machine |" not in md and "Other CPU" not in md  # one machine: no per-row machine column
    with open(tmp_path / "out" / "RESULTS.csv") as f:
        assert [r["machine"] for r in csv.DictReader(f)] == [machine()] * 4


def test_remeasure_interleaves_files_and_thread_counts_round_by_round(shipped, monkeypatch):
    calls = []

    def fake(path, *, threads, runs, min_seconds):
        calls.append((path.parent.name, path.name, threads))
        return replace(_latency(threads, 1.0), runs=runs, device=machine())

    monkeypatch.setattr(report_module, "measure_latency", fake)
    remeasure_latency(_load(shipped), shipped, rounds=3, runs=2, min_seconds=0.0)
    keys = [(d.name, name, t) for t in (1, 2) for d in shipped for name in ("model.tflite", "baseline_float32.tflite")]
    assert sorted(calls) == sorted(keys * 3)
    # one run, round-robin: every file at every thread count once per round, every other round in reverse order
    assert calls == keys + keys[::-1] + keys


def test_no_remeasure_keeps_stored_latency_and_names_each_rows_machine(shipped, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report_module, "measure_latency", lambda *a, **k: pytest.fail("--no-remeasure timed a file"))
    assert main(["report", *map(str, shipped), "--out", str(tmp_path / "out"), "--no-remeasure"]) == 0
    assert "latency as each run stored it" in capsys.readouterr().out
    md = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "as each run stored it (`edgeopt report --no-remeasure`; SIMD flags not recorded), measured on 2 different machines" in md
    assert MACHINE in md.split("\n| recipe |")[0] and "Other CPU, 2 cores, x86_64" in md.split("\n| recipe |")[0]
    assert "| parameters | machine |" in md
    assert f"| r | model | int8 | mobilenet_v2(alpha=0.35) 32x32x3 | 1 | 88.00% | 87.00% ± 1.47 | 1,000 | 600 | 1.50 | 1.00 | 2.0 | 100 | {MACHINE} |" in md
    assert "| r2 | model | int8 | mobilenet_v2(alpha=0.35) 32x32x3 | 1 | 88.00% | 87.00% ± 1.47 | 1,000 | 600 | 1.50 | 1.00 | 2.0 | 100 | Other CPU, 2 cores, x86_64 |" in md


def test_stored_latency_claims_no_flags_even_when_its_machine_reads_like_this_one():
    # "AMD EPYC, 2 cores, x86_64" names machines with and without AVX-512 alike: the stored name is all there is
    md = results_markdown(result_rows(_report(device=machine())))
    assert f"Latency measured on {machine()}, as each run stored it (`edgeopt report --no-remeasure`; SIMD flags not recorded)." in md
    assert this_machine().describe() not in md and "machine |" not in md


def test_a_missing_artifact_is_one_line_naming_the_file(shipped, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report_module, "measure_latency", lambda *a, **k: pytest.fail("timed before every file was found"))
    gone = shipped[1] / "baseline_float32.tflite"
    gone.unlink()
    assert main(["report", *map(str, shipped), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"edgeopt report: error: {gone}: no such file")
    assert "--no-remeasure" in err and "re-run the recipe 'r2'" in err
    assert not (tmp_path / "out" / "RESULTS.md").exists()


def test_skip_missing_leaves_a_missing_files_latency_out_and_says_so(shipped, tmp_path, monkeypatch):
    monkeypatch.setattr(report_module, "measure_latency", lambda path, *, threads, runs, min_seconds: replace(_latency(threads, 1.0), runs=runs, device=machine()))
    gone = shipped[1] / "baseline_float32.tflite"
    gone.unlink()
    rows = write_results(_load(shipped), tmp_path / "out", where=shipped, remeasure=True, rounds=1, runs=1, min_seconds=0.0, skip_missing=True)
    timed = [r for r in rows if r.get("median_ms_1") is not None]
    assert len(rows) == 4 and len(timed) == 3  # the missing file's row stays, with no latency from another machine
    blank = next(r for r in rows if r not in timed)
    assert blank["recipe"] == "r2" and blank["artifact"] == "baseline_float32" and blank.get("median_ms_2") is None
    assert "not in this checkout" in (tmp_path / "out" / "RESULTS.md").read_text().split("\n| recipe |")[0]
    assert "r2:baseline_float32" in (tmp_path / "out" / "RESULTS.md").read_text()


def test_artifacts_are_found_beside_the_report_or_in_the_runs_export_stage(tmp_path):
    run = tmp_path / "runs" / "r"
    (run / "02-export").mkdir(parents=True)
    for name in ("model.tflite", "baseline_float32.tflite"):
        (run / "02-export" / name).write_bytes(b"x")
    assert artifact_files(REPORT, run) == {"model": run / "02-export" / "model.tflite", "baseline_float32": run / "02-export" / "baseline_float32.tflite"}
    shutil.copy(run / "02-export" / "model.tflite", run / "model.tflite")
    assert artifact_files(REPORT, run)["model"] == run / "model.tflite"
    (run / "02-export" / "baseline_float32.tflite").unlink()
    with pytest.raises(FileNotFoundError, match="02-export/baseline_float32.tflite: no such file"):
        artifact_files(REPORT, run)
