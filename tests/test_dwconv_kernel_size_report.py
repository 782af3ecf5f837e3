"""benchmarks/dwconv_kernel_size.py's Markdown: its findings read the committed JSON's numbers (ratios of the table's
cells) and turn their words when the data turns; no TensorFlow."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from benchmarks import dwconv_kernel_size as bench

COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "dwconv_kernel_size.json"
pytestmark = pytest.mark.skipif(not COMMITTED.exists(), reason="needs the committed dwconv_kernel_size.json")


@pytest.fixture(scope="module")
def data():
    return json.loads(COMMITTED.read_text())


def ratios(rows, kernels):
    ms = {(r["shape"], r["kernel"], r["precision"], r["kernels"]): r["ms"] for r in rows}
    return [ms[(s, k, p, "XNNPACK")] / ms[(s, k, p, "built-in")] for (s, k, p, x) in ms if x == "XNNPACK" and k in kernels]


def test_findings_state_the_ranges_of_the_committed_data(data):
    text = bench.markdown(data["rows"], data["machine"], data["rounds"])
    small, large = ratios(data["rows"], (3, 5)), ratios(data["rows"], (7, 9))
    assert f"{min(small):.2f}x-{max(small):.2f}x" in text and f"{min(large):.1f}x-{max(large):.1f}x" in text
    assert text == (COMMITTED.parent / "dwconv_kernel_size.md").read_text()  # the committed page is this rendering
    rows = [line for line in text.splitlines() if re.match(r"\| \d+x\d+x\d+ \|", line)]
    assert len(rows) == len(bench.KERNELS) * len(bench.SHAPES) * len(bench.PRECISIONS)


def test_the_words_follow_the_data(data):
    rows = copy.deepcopy(data["rows"])
    for r in rows:  # make kernel 7 fast with XNNPACK in one setting
        if (r["kernel"], r["kernels"], r["precision"]) == (7, "XNNPACK", "float32") and r["shape"] == "4x4x168":
            r["ms"] = 1e-6
    text = bench.markdown(rows, data["machine"], data["rounds"])
    assert "not slower in every setting" in text and "(faster in every setting)" in text
