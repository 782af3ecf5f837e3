"""Reports render the runner's records (StageResult, BenchResult) into tables, CSV and plots without recomputing."""
import copy

from edgeopt.bench import AccuracyResult, BenchResult, LatencyResult, SizeResult
from edgeopt.pipeline import StageResult
from edgeopt.report import pareto_mask, result_rows, results_markdown, run_summary_markdown, write_results

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


def test_pareto_mask():
    # (cost, value): (1, .5) and (2, .9) are optimal; (3, .8) is beaten by (2, .9); (2, .7) too
    assert pareto_mask([1, 2, 3, 2], [0.5, 0.9, 0.8, 0.7]) == [True, True, False, False]
    assert pareto_mask([1, 1], [0.5, 0.5]) == [True, True]


def test_result_rows_pair_keras_and_tflite_metrics():
    rows = {r["artifact"]: r for r in result_rows(REPORT)}
    assert set(rows) == {"model", "baseline_float32"}
    assert rows["model"] == {"recipe": "r", "artifact": "model", "mode": "int8", "model": "mobilenet_v2(alpha=0.35) 32x32x3", "keras_top1": 0.88,
                             "tflite_top1": 0.87, "size_bytes": 1000, "gzip_bytes": 600, "median_ms_1": 1.5, "median_ms_2": 1.0, "macs": 2e6, "params": 100,
                             "machine": MACHINE}
    # the float baseline pairs with the train stage's Keras model, not the pruned one
    assert rows["baseline_float32"]["keras_top1"] == 0.9 and rows["baseline_float32"]["gzip_bytes"] == 3700 and rows["baseline_float32"]["mode"] == "float32"
    md = results_markdown(list(rows.values()))
    assert f"Latency measured on {MACHINE}." in md
    assert "| r | model | int8 | mobilenet_v2(alpha=0.35) 32x32x3 | 88.00% | 87.00% | 1,000 | 600 | 1.50 | 1.00 | 2.0 | 100 |\n" in md


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
    assert "compare latencies only between rows of one machine" in md
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
