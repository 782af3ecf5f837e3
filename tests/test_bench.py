"""Bench: latency statistics, accuracy of the .tflite itself, size, CLI, adb path and clear errors."""
from __future__ import annotations

import gzip
import json
import os
import stat

import numpy as np
import pytest

from edgeopt import bench, export
from edgeopt.bench.adb import DeviceUnavailableError
from edgeopt.cli import main
from edgeopt.data import DatasetUnavailableError
from edgeopt.tflite import runtime
from conftest import DIGITS_TEST_SIZE, top1


@pytest.fixture(scope="module")
def int8(exported):
    return exported("int8")


@pytest.fixture(scope="module")
def float32(exported):
    return exported("float32")


# ---- latency ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("xnnpack", [True, False])
def test_latency_statistics_are_consistent(int8, xnnpack):
    r = bench.measure_latency(int8.path, threads=2, runs=30, min_seconds=0.0, warmup=3, xnnpack=xnnpack)
    assert r.runs == 30 and r.warmup_runs == 3 and r.threads == 2 and r.xnnpack is xnnpack
    assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.p95_ms <= r.max_ms
    assert r.min_ms <= r.mean_ms <= r.max_ms and 0 < r.std_ms <= r.max_ms - r.min_ms
    assert r.init_ms > 0 and r.first_ms > 0 and r.warmup_ms > 0
    assert r.inputs == "random" and r.model == str(int8.path)
    assert "ai-edge-litert" in r.runtime and "cores" in r.device
    # Linux: RSS growth from just before the interpreter; the peak covers initialization, so it is not below it
    assert runtime.reset_peak_rss(), "this test expects Linux's /proc/self/clear_refs"
    assert r.init_mem_mb is not None and r.peak_mem_mb is not None
    assert 0 <= r.init_mem_mb <= r.peak_mem_mb < 500  # a 20 kB model


def test_latency_runs_until_both_minimums_are_met(float32):
    r = bench.measure_latency(float32.model_bytes, runs=5, min_seconds=0.3)
    assert r.runs >= 5
    assert r.runs * r.max_ms >= 300  # it kept going for at least 0.3 s of invoke() time in total


def test_latency_on_real_images_checks_their_size(int8, digits_arrays):
    x, _ = digits_arrays["test"]
    x = x[:8]
    assert bench.measure_latency(int8.model_bytes, runs=3, min_seconds=0, inputs=x).inputs == "dataset"
    with pytest.raises(ValueError, match="wrong input size"):
        bench.measure_latency(int8.model_bytes, runs=3, min_seconds=0, inputs=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="runs and warmup"):
        bench.measure_latency(int8.model_bytes, runs=0)


def test_interleave_calls_each_once_per_round_alternating_order():
    order = []
    calls = {k: (lambda k=k: order.append(k) or len(order)) for k in "abc"}
    results = bench.interleave(calls, 3, alternate=True)
    assert order == list("abccbaabc")
    assert results == {"a": [1, 6, 7], "b": [2, 5, 8], "c": [3, 4, 9]}  # each one's results in round order
    assert bench.interleave(calls, 2) == {"a": [10, 13], "b": [11, 14], "c": [12, 15]}
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        bench.interleave(calls, 0)


def test_pooled_rounds_take_the_median_of_per_round_medians(int8):
    rounds = bench.interleaved_latency({"int8": int8.model_bytes}, 3, runs=4, min_seconds=0.0)["int8"]
    assert len(rounds) == 3
    one = bench.pooled(rounds)
    assert one.median_ms == bench.median_ms(rounds) == float(np.median([r.median_ms for r in rounds]))
    assert one.runs == 12 and one.min_ms == min(r.min_ms for r in rounds) and one.max_ms == max(r.max_ms for r in rounds)
    assert one.min_ms <= one.median_ms <= one.max_ms and one.threads == 1 and one.first_ms == rounds[0].first_ms


# ---- accuracy and size -----------------------------------------------------------------------------------


def test_accuracy_of_the_tflite_matches_a_direct_computation(int8, digits_splits, digits_arrays, trained_tiny):
    acc = bench.evaluate_tflite(int8.path, digits_splits.test)
    x, y = digits_arrays["test"]
    scores = export.run_tflite(int8.model_bytes, x)
    assert acc.samples == len(y) == DIGITS_TEST_SIZE
    assert acc.top1 == pytest.approx(top1(scores, y))
    top5 = np.argsort(-scores, 1)[:, :5]
    assert acc.top5 == pytest.approx(float(np.mean((top5 == y[:, None]).any(1))))
    assert acc.top1 <= acc.top5
    keras_top1 = top1(trained_tiny("mobilenet_v2_tiny")(x, training=False).numpy(), y)
    assert acc.top1 > 0.8 and abs(acc.top1 - keras_top1) < 0.03  # int8 keeps the accuracy; chance is 0.1
    limited = bench.evaluate_tflite(int8.model_bytes, digits_splits.test, limit=40)
    assert limited.samples == 40 and limited.top1 == pytest.approx(top1(scores[:40], y[:40]))


def test_size_is_raw_and_gzipped_bytes(int8):
    data = int8.path.read_bytes()
    s = bench.size_of(int8.path)
    assert s.size_bytes == len(data)
    assert s.gzip_bytes == len(gzip.compress(data, 9, mtime=0)) < s.size_bytes
    assert bench.size_of(data) == s


def test_measure_uses_the_manifest_preprocessing_and_real_images(int8, digits_splits):
    r = bench.measure(int8.path, "digits", threads=(1, 2), runs=5, min_seconds=0)
    assert [lat.threads for lat in r.latency] == [1, 2]
    assert all(lat.inputs == "dataset" and lat.runs >= 5 and lat.median_ms > 0 for lat in r.latency)
    assert r.accuracy.samples == DIGITS_TEST_SIZE and r.accuracy.top1 == bench.evaluate_tflite(int8.path, digits_splits.test).top1
    assert r.size == bench.size_of(int8.path) and r.dataset == "digits"
    text = r.to_markdown()
    assert "median ms" in text and f"top-1 {r.accuracy.top1:.2%}" in text and f"{r.size.size_bytes:,}" in text
    back = bench.BenchResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r  # the JSON form reads back to the same record


# ---- errors ------------------------------------------------------------------------------------------------


def test_corrupted_and_truncated_models_are_clear_errors(int8, tmp_path, digits_splits):
    data = int8.model_bytes
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 10)
    for bad in (truncated, garbage):
        with pytest.raises(bench.InvalidModelError, match=str(bad.name)):
            bench.measure_latency(bad)
        with pytest.raises(bench.InvalidModelError):
            bench.evaluate_tflite(bad, digits_splits.test)
        with pytest.raises(bench.InvalidModelError):
            bench.size_of(bad)


def test_a_model_xnnpack_cannot_prepare_is_a_one_line_error_that_says_what_works(int8, monkeypatch):
    """What LiteRT raises when XNNPACK refuses a model (seen on an untrained cut whose head channels were all dead),
    through a stand-in interpreter: the error names the file, keeps LiteRT's reason on one line and says what works."""
    class Refusing:
        def allocate_tensors(self):
            raise RuntimeError("failed to create XNNPACK runtimeNode number 68 (TfLiteXNNPackDelegate) failed to prepare.\n")

    monkeypatch.setattr(runtime, "make_interpreter", lambda *a, **k: Refusing())
    with pytest.raises(RuntimeError) as err:
        bench.measure_latency(int8.path)
    message = str(err.value)
    assert "\n" not in message and str(int8.path) in message and "Node number 68" in message
    assert "dead channels" in message and "xnnpack=False" in message


def test_wrong_input_size_dataset_is_a_clear_error(int8):
    from edgeopt.data import load_dataset

    wrong = load_dataset("digits", image_size=32, channels=3, limit_train=8, limit_test=8).test
    with pytest.raises(ValueError, match=r"wrong input size: .*\(32, 32, 3\).*expects \(16, 16, 3\)"):
        bench.evaluate_tflite(int8.path, wrong)


def test_missing_dataset_is_a_clear_error(int8, tmp_path, monkeypatch):
    from edgeopt import data

    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        bench.load_test_data(int8.path, f"folder:{tmp_path / 'nowhere'}")
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (tmp_path,))
    monkeypatch.delenv("EDGEOPT_FASHION_MNIST", raising=False)
    with pytest.raises(DatasetUnavailableError, match="Fashion-MNIST not found.*dataset-fashion-mnist"):
        bench.load_test_data(int8.path, "fashion_mnist")


# ---- CLI -----------------------------------------------------------------------------------------------------


def test_cli_bench_prints_a_table_and_writes_json(int8, tmp_path, capsys):
    out = tmp_path / "result.json"
    rc = main(["bench", str(int8.path), "--data", "digits", "--threads", "1,2", "--runs", "5", "--min-seconds", "0", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| threads |" in printed and "top-1" in printed
    result = json.loads(out.read_text())
    assert [r["threads"] for r in result["latency"]] == [1, 2]
    assert result["latency"][0]["runs"] >= 5 and result["accuracy"]["samples"] == DIGITS_TEST_SIZE
    assert result["size"]["size_bytes"] == int8.path.stat().st_size


def test_cli_bench_errors_are_one_clear_line(int8, tmp_path, capsys):
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(int8.model_bytes[:100])
    assert main(["bench", str(bad)]) == 2
    assert "truncated or corrupted" in capsys.readouterr().err
    assert main(["bench", str(int8.path), "--data", "no_such_dataset"]) == 2
    assert "known datasets" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "missing.tflite")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- adb / benchmark_model -------------------------------------------------------------------------------

OLD_FORMAT = """STARTING!
Num threads: [4]
Graph: [/data/local/tmp/mobilenet_v1_1.0_224.tflite]
Loaded model /data/local/tmp/mobilenet_v1_1.0_224.tflite
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""

NEW_FORMAT = """INFO: Num threads: [2]
INFO: Use xnnpack: [1]
INFO: Min warmup runs: [1]
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=12162 curr=11785 min=11088 max=16105 avg=11743.2 std=716 p5=11120 median=11591 p95=13628

INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 11743.2
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=60.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 71.5
"""


def test_parse_old_benchmark_model_output():
    r = bench.parse_benchmark_output(OLD_FORMAT, threads=1, device="Pixel")
    assert r.threads == 4 and r.runs == 50 and r.model == "/data/local/tmp/mobilenet_v1_1.0_224.tflite"
    assert (r.init_ms, r.first_ms, r.warmup_ms, r.mean_ms) == pytest.approx((17.187, 3512.391, 3512.39, 2950.34))
    assert (r.min_ms, r.max_ms, r.std_ms) == pytest.approx((2727.568, 3189.954, 109.798))
    assert r.median_ms is None and r.p90_ms is None  # this version prints neither
    assert (r.init_mem_mb, r.peak_mem_mb) == pytest.approx((4.21094, 46.0859))
    assert r.device == "Pixel"


def test_parse_new_benchmark_model_output_uses_the_timed_runs_not_the_warmup():
    r = bench.parse_benchmark_output(NEW_FORMAT)
    assert r.threads == 2 and r.xnnpack is True and r.runs == 50
    assert (r.median_ms, r.p95_ms, r.min_ms, r.max_ms, r.mean_ms) == pytest.approx((11.591, 13.628, 11.088, 16.105, 11.7432))
    assert (r.init_ms, r.first_ms) == pytest.approx((119.515, 87.112))
    assert (r.init_mem_mb, r.peak_mem_mb) == pytest.approx((55.4961, 71.5))
    logcat = "\n".join("I tflite  : " + line for line in NEW_FORMAT.replace("INFO: ", "").splitlines())
    assert bench.parse_benchmark_output(logcat) == r


def test_parse_rejects_output_without_results():
    with pytest.raises(ValueError, match="no benchmark_model results"):
        bench.parse_benchmark_output("ERROR: Could not open '/data/local/tmp/x.tflite'.\nAborted")


def _fake_adb(tmp_path, devices: str, bench_output: str = "") -> None:
    """An `adb` on PATH that lists ``devices`` and answers `shell .../benchmark_model` with ``bench_output``."""
    (tmp_path / "bench_output.txt").write_text(bench_output)
    script = tmp_path / "bin" / "adb"
    script.parent.mkdir()
    script.write_text(f"""#!/bin/sh
echo "$@" >> {tmp_path}/adb_calls.txt
[ "$1" = "-s" ] && shift 2
case "$1" in
  devices) printf 'List of devices attached\\n{devices}' ;;
  push) exit 0 ;;
  shell) case "$2" in
      chmod) exit 0 ;;
      getprop) [ "$3" = "ro.product.model" ] && echo "Pixel 7" || echo "arm64-v8a" ;;
      *) cat {tmp_path}/bench_output.txt ;;
    esac ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_adb_path_pushes_runs_and_parses(int8, tmp_path, monkeypatch):
    _fake_adb(tmp_path, "emulator-5554\\tdevice\\n", NEW_FORMAT)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    r = bench.measure_latency_adb(int8.path, binary, threads=2, runs=50, xnnpack=False)
    assert r.median_ms == pytest.approx(11.591) and r.model == str(int8.path)
    assert r.device == "Pixel 7 (arm64-v8a, adb emulator-5554)"
    calls = (tmp_path / "adb_calls.txt").read_text()
    assert "push" in calls and f"--graph=/data/local/tmp/edgeopt_{int8.path.name}" in calls
    assert "--num_threads=2" in calls and "--num_runs=50" in calls and "--use_xnnpack=false" in calls


def test_adb_without_device_or_adb_says_so(int8, tmp_path, monkeypatch, capsys):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DeviceUnavailableError, match="adb .* is not on PATH"):
        bench.measure_latency_adb(int8.path, binary)
    _fake_adb(tmp_path, "")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(DeviceUnavailableError, match="no Android device connected"):
        bench.measure_latency_adb(int8.path, binary)
    assert main(["bench", str(int8.path), "--adb", "--benchmark-model", str(binary)]) == 2
    assert "no Android device connected" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="benchmark_model binary"):
        bench.measure_latency_adb(int8.path, tmp_path / "nope")
