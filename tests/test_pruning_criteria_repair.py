"""benchmarks/pruning_criteria.py's measurement of one model: a model whose int8 conversion alone loses beyond the
test-sampling interval gets the diagnosis (quantize_report's worst tensors) and the repair (auto_fallback's layers kept
float, chosen on validation, and the repaired file's test top-1); one that converts well gets neither. The models are
tests/test_quant_report.py's: a small digits classifier, and the same function with one outlier activation channel."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

from edgeopt import bench

from benchmarks.pruning_criteria import INT8_REPAIR, Run
from edgeopt.stats import sampling_interval
from test_quant_report import models  # noqa: F401 (the fixture)


def _run(splits, arrays) -> SimpleNamespace:
    """What ``Run.measure`` reads of a run: the splits, the calibration pool and count, and the methods it calls."""
    run = SimpleNamespace(splits=splits, pool=arrays["train"][0], calibration=100)
    run.int8_repair, run.unloadable, run.keep = partial(Run.int8_repair, run), partial(Run.unloadable, run), Run.keep
    return run


def test_a_conversion_loss_beyond_noise_is_diagnosed_and_repaired(models, digits_splits, digits_arrays, tmp_path, monkeypatch):  # noqa: F811
    clean, bad = models
    monkeypatch.chdir(tmp_path)  # the kept model goes under runs/bench_cache/ of the working folder
    run = _run(digits_splits, digits_arrays)
    row, data = Run.measure(run, bad, 0)
    noise = sampling_interval(row["keras_top1"], digits_splits.sizes["test"])
    assert row["keras_top1"] - row["int8_top1"] > noise and len(data) == row["int8_bytes"]
    repair = row["int8_repair"]
    assert repair["worst_tensors"][0]["layers"] == ["conv1"] and repair["worst_tensors"][0]["cause"] == "outlier_channels"  # ranks first
    assert len(repair["worst_tensors"]) == INT8_REPAIR["rows"] <= repair["tensors"]
    assert repair["debug_images"] == min(INT8_REPAIR["debug_images"], digits_splits.sizes["val"])
    steps = repair["steps"]
    assert steps[0]["float_layers"] == [] and steps[-1]["float_layers"] == ["conv1", "dw"] and len(steps) <= INT8_REPAIR["steps"] + 1
    assert steps[-1]["val_top1"] > steps[0]["val_top1"] and repair["chosen"] == len(steps) - 1  # the best step on validation
    assert repair["reached"] == (steps[-1]["gap_points"] <= INT8_REPAIR["points"])
    assert repair["test_top1"] - row["int8_top1"] > noise  # keeping the culprit float wins the loss back on the test images too
    kept = Path(row["kept_model"])  # the model is kept for later study, named by its weights
    assert kept.parts[:4] == ("runs", "bench_cache", "pruning_criteria", "int8_loss") and kept.suffix == ".keras" and kept.exists()
    clean_row, _ = Run.measure(run, clean, 0)
    assert clean_row["keras_top1"] - clean_row["int8_top1"] <= noise and "int8_repair" not in clean_row and "kept_model" not in clean_row


def test_a_file_xnnpack_refuses_is_kept_and_measured_on_the_builtin_kernels(models, digits_splits, digits_arrays, tmp_path, monkeypatch):  # noqa: F811
    """XNNPACK refused to prepare a collapsed from-scratch model's int8 file ("failed to create XNNPACK runtime"): the
    run keeps the file and the model for diagnosis and measures the file on LiteRT's builtin kernels instead of stopping."""
    clean, _ = models
    real, delegates = bench.evaluate_tflite, []

    def xnnpack_refuses(data, dataset, limit=None, split="test", xnnpack=True):
        delegates.append(xnnpack)
        if xnnpack:
            raise RuntimeError("failed to create XNNPACK runtimeNode number 68 (TfLiteXNNPackDelegate) failed to prepare.\nmore")
        return real(data, dataset, limit, split, xnnpack)

    monkeypatch.setattr(bench, "evaluate_tflite", xnnpack_refuses)
    monkeypatch.chdir(tmp_path)  # the kept files go under runs/bench_cache/ of the working folder
    row, data = Run.measure(_run(digits_splits, digits_arrays), clean, 0)
    assert delegates == [True, False] and row["xnnpack_error"].endswith("failed to prepare.")  # the first line
    kept = Path(row["unloadable_file"])
    assert kept.read_bytes() == data and kept.with_suffix(".keras").exists() and kept.parts[:4] == ("runs", "bench_cache", "pruning_criteria", "unloadable")
    assert row["int8_top1"] == real(data, digits_splits.test, xnnpack=False).top1 and row["keras_top1"] - row["int8_top1"] < 0.05
    assert row["xnnpack_bound"] == 256.0 and row["xnnpack_requantization"] == []  # this file is fine: only the runtime was made to refuse
