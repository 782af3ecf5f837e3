"""benchmarks/_lowbit_report.py with INT4 rows: each low-bit run's INT4 file (benchmarks/lowbit.py) is a row beside its
int8 file, compared with it run by run, and the findings check its stored values per channel. The data is the committed
MobileNetV2 run with INT4 rows added (sizes, scores and latencies chosen here); no TensorFlow."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks import _lowbit_report as report

COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "lowbit_mobilenet_v2_0.35.json"
pytestmark = pytest.mark.skipif(not COMMITTED.exists(), reason="needs the committed lowbit_mobilenet_v2_0.35.json")


def with_int4(data: dict, size: int = 360_000, gain: float = 0.001, slower: float = 2.0) -> dict:
    """``data`` with an INT4 row per low-bit run: ``size`` bytes, top-1 ``gain`` above the run's int8 file, its
    latency ``slower`` times the int8 file's, 4-bit kernels holding 15 values, 2-bit 3, binary 2."""
    out = copy.deepcopy(data)
    limit = {"mixed 8/4": {"4": 15}, "4-bit QAT": {"4": 15}, "2-bit QAT": {"2": 3}, "binary": {"1": 2}}
    for r in data["runs"]:
        if r["variant"] in limit:
            out["runs"].append({**r, "variant": report.int4_variant(r["variant"]), "size_bytes": size, "top1": r["top1"] + gain,
                                "codes_per_channel": limit[r["variant"]]})
            out["latency_ms"][report.int4_variant(r["variant"])] = slower * data["latency_ms"][r["variant"]]
    return out


@pytest.fixture(scope="module")
def data():
    return json.loads(COMMITTED.read_text())


def test_int4_rows_follow_their_int8_rows(data):
    names = [r["variant"] for r in report.summary(with_int4(data))]
    for low in ("mixed 8/4", "4-bit QAT", "2-bit QAT", "binary"):
        assert names[names.index(low) + 1] == f"{low} INT4"


def test_int4_findings_compare_each_run_with_its_int8_file(data):
    text = report.findings_markdown({"models": {"mobilenet_v2_0.35": with_int4(data)}})
    int8_bytes = next(r for r in report.summary(data) if r["variant"] == "4-bit QAT")["size_bytes"]
    assert f"4-bit QAT: 360,000 B ({360_000 / int8_bytes:.3f}x its int8 file), top-1 +0.10 ± 0.00 points against the int8 file of " \
           "the same 3 runs" in " ".join(text.split())
    assert "run 2.00-2.00x the time of their int8 files, so they trade latency for size" in " ".join(text.split())
    assert "| binary INT4: at most 2 values (INT4 or int8 kernels) per channel in the file | 2 (worst layer, worst seed) | met |" in text
    assert "### MobileNetV2 0.35 (3 seeds)" in text


def test_an_int4_kernel_with_too_many_values_is_missed(data):
    bad = with_int4(data)
    next(r for r in bad["runs"] if r["variant"] == "2-bit QAT INT4")["codes_per_channel"] = {"2": 5}
    text = report.findings_markdown({"models": {"m": bad}})
    assert "| 2-bit QAT INT4: at most 3 values (INT4 or int8 kernels) per channel in the file | 5 (worst layer, worst seed) | missed |" in text


def test_without_int4_files_the_findings_say_so(data):
    text = " ".join(report.findings_markdown({"models": {"m": data}}).split())
    assert "INT4 files: this model's runs were made before the benchmark exported them" in text
    assert "INT4 files (the same stripped models" not in text
