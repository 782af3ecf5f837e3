"""edgeopt.bench.results: records round-trip through JSON, and run reports written before 0.2 still read."""
import json

import pytest

from edgeopt.bench import AccuracyResult, BenchResult, LatencyResult, SizeResult, this_machine


def _latency(threads: int, median: float) -> LatencyResult:
    return LatencyResult("m.tflite", threads, True, 50, 1, 3.0, 2.0, 1.5, median, median * 1.2, median * 1.3, median, 0.1, median * 0.9,
                         median * 1.5, 1.0, 2.0, "dataset", "ai-edge-litert", "Test CPU, 2 cores, x86_64")


def test_bench_result_round_trips_through_json():
    result = BenchResult("m.tflite", SizeResult(1000, 600), [_latency(1, 1.5), _latency(2, 1.0)], AccuracyResult(0.87, 0.99, 500), "digits")
    back = BenchResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result
    assert back.median_ms(2) == 1.0 and back.median_ms(4) is None


def test_bench_result_reads_the_legacy_bench_stage_entry():
    legacy = {"size": {"size_bytes": 1000, "gzip_bytes": 600}, "latency_2t": {"median_ms": 1.0, "device": "X"},
              "latency_1t": {"median_ms": 1.5, "device": "X"}, "accuracy": {"top1": 0.87, "top5": 0.99, "samples": 500}}
    result = BenchResult.from_dict(legacy, model="model")
    assert result.model == "model" and result.size == SizeResult(1000, 600)
    assert [(r.threads, r.median_ms) for r in result.latency] == [(1, 1.5), (2, 1.0)]
    assert result.accuracy == AccuracyResult(0.87, 0.99, 500)


def test_machine_description_names_cpu_cores_and_vnni():
    m = this_machine()
    assert m.cores >= 1 and m.cpu
    line = m.describe()
    assert f"{m.cores} cores" in line and ("no VNNI" in line) == (not m.vnni)
    assert m.to_dict()["vnni"] == m.vnni


@pytest.mark.parametrize("flags,vnni", [(("avx2", "avx512_vnni"), True), (("avx2",), False), (("asimd", "asimddp"), True)])
def test_vnni_comes_from_the_flags(flags, vnni):
    from edgeopt.bench import Machine

    assert Machine("cpu", 2, "x86_64", "Linux", flags).vnni is vnni


@pytest.mark.parametrize("flags,line", [
    (("avx", "avx2", "fma"), "(avx, avx2, fma; AVX2, no AVX-512, no VNNI, no AMX)"),
    (("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"), "(avx2, avx512f, avx512_vnni, amx_tile, amx_int8; AVX2, AVX-512, VNNI, AMX)"),
    ((), "(no SIMD flags found; no AVX2, no AVX-512, no VNNI, no AMX)"),
])
def test_machine_description_says_each_feature_present_or_absent(flags, line):
    from edgeopt.bench import Machine

    m = Machine("Test CPU", 4, "x86_64", "Linux", flags)
    assert m.describe() == f"Test CPU, 4 cores, x86_64 {line}"
    assert m.to_dict()["features"] == {name: f"no {name}" not in line for name in ("AVX2", "AVX-512", "VNNI", "AMX")}
