from edgeopt.report import pareto_mask, result_rows, results_markdown, run_summary_markdown, write_results

REPORT = {
    "recipe": "r", "description": "", "model": {"name": "mobilenet_v2", "knobs": {"alpha": 0.35}}, "data": {"dataset": "fashion_mnist", "input_shape": [32, 32, 3]},
    "stages": [
        {"stage": 0, "type": "train", "seconds": 10.0, "metrics": {"test_top1": 0.9, "params": 100, "macs": 2e6, "sparsity": 0.0}},
        {"stage": 1, "type": "prune", "seconds": 5.0, "metrics": {"test_top1": 0.88, "params": 100, "macs": 2e6, "sparsity": 0.5}},
        {"stage": 2, "type": "export", "seconds": 3.0, "metrics": {"model": {"mode": "int8"}, "baseline_float32": {"mode": "float32"}}, "files": {}},
        {"stage": 3, "type": "bench", "seconds": 9.0, "metrics": {
            "model": {"size": {"size_bytes": 1000, "gzip_bytes": 600}, "latency_1t": {"median_ms": 1.5, "device": "Test CPU, 2 cores, x86_64"}, "latency_2t": {"median_ms": 1.0, "device": "Test CPU, 2 cores, x86_64"}, "accuracy": {"top1": 0.87}},
            "baseline_float32": {"size": {"size_bytes": 4000, "gzip_bytes": 3700}, "latency_1t": {"median_ms": 1.6, "device": "Test CPU, 2 cores, x86_64"}, "latency_2t": {"median_ms": 1.1, "device": "Test CPU, 2 cores, x86_64"}, "accuracy": {"top1": 0.9}}}},
    ],
}


def test_pareto_mask():
    # (cost, value): (1, .5) and (2, .9) are optimal; (3, .8) is beaten by (2, .9); (2, .7) too
    assert pareto_mask([1, 2, 3, 2], [0.5, 0.9, 0.8, 0.7]) == [True, True, False, False]
    assert pareto_mask([1, 1], [0.5, 0.5]) == [True, True]


def test_result_rows_pair_keras_and_tflite_metrics():
    rows = {r["artifact"]: r for r in result_rows(REPORT)}
    assert rows["model"]["keras_top1"] == 0.88 and rows["model"]["tflite_top1"] == 0.87 and rows["model"]["mode"] == "int8"
    assert rows["baseline_float32"]["keras_top1"] == 0.9 and rows["baseline_float32"]["gzip_bytes"] == 3700
    assert rows["model"]["median_ms_2"] == 1.0
    assert rows["model"]["machine"] == "Test CPU, 2 cores, x86_64"
    md = results_markdown(list(rows.values()))
    assert "Latency measured on Test CPU, 2 cores, x86_64." in md
    assert "| r | model | int8 | mobilenet_v2(alpha=0.35) 32x32x3 | 88.00% | 87.00% | 1,000 | 600 | 1.50 | 1.00 | 2.0 | 100 |\n" in md


def test_results_name_each_rows_machine_when_runs_come_from_several():
    import copy

    other = copy.deepcopy(REPORT)
    other["recipe"] = "r2"
    for lat in ("latency_1t", "latency_2t"):
        other["stages"][3]["metrics"]["model"][lat]["device"] = other["stages"][3]["metrics"]["baseline_float32"][lat]["device"] = "Other CPU, 2 cores, x86_64"
    md = results_markdown(result_rows(REPORT) + result_rows(other))
    assert "compare latencies only between rows of one machine" in md
    assert "| 1.50 | 1.00 | 2.0 | 100 | Test CPU, 2 cores, x86_64 |" in md
    assert "| r2 | model | int8 |" in md and "| Other CPU, 2 cores, x86_64 |" in md


def test_run_summary_shows_stages_and_float_vs_int8():
    md = run_summary_markdown(REPORT)
    assert "| 1 | prune | 5 | 88.00% | 50.0% | 100 |" in md
    assert "| model | int8 | 87.00% | 1,000 | 600 | 1.50 | 1.00 |" in md
    assert "| baseline_float32 | float32 | 90.00% | 4,000 | 3,700 | 1.60 | 1.10 |" in md


def test_write_results_writes_table_csv_and_plots(tmp_path):
    rows = write_results([REPORT], tmp_path)
    assert len(rows) == 2
    assert (tmp_path / "RESULTS.csv").read_text().splitlines()[0].startswith("recipe,artifact,mode")
    for name in ("RESULTS.md", "pareto_latency.png", "pareto_size.png"):
        assert (tmp_path / name).stat().st_size > 100
