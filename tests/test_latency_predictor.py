"""Predictor check: random whole networks timed against the table's prediction. With the fake timer of
test_latency_table (additive in parameters plus a per-inference overhead) the prediction is exact and the plain sum
is off by the overhead counted once per extra part, both computed here by hand; one slow test measures for real."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.search.latency_predictor import check_predictor, short_op
from edgeopt.search.latency_table import LatencyTableConfig, LiteRTRunner, measure_table, parts_dir
from edgeopt.search.nas_space import SKIP, Architecture, build_network, tiny_space
from test_latency_table import CONFIG, OPS, SHAPE, CountingConvert, FakeRunner, fake_convert, fake_ms, fake_overhead_ms  # the fake timer, shared


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "table.json"
    return measure_table(tiny_space(OPS), SHAPE, 10, path, CONFIG, runner=FakeRunner(), converter=fake_convert, log=lambda line: None), path


@pytest.fixture(scope="module")
def table(measured):
    return measured[0]


def test_prediction_against_whole_networks(table):
    runner = FakeRunner()
    check = check_predictor(table, 4, threads=(1, 2), rounds=2, seed=3, runner=runner, converter=fake_convert, log=lambda line: None)
    space = table.space
    archs = [r.architecture for r in check.rows[::2]]
    assert len(set(archs)) == 4 and all(r.threads == t for r, t in zip(check.rows, [1, 2] * 4))
    assert len(runner.calls) == 4 * 2 * 2  # networks x threads x rounds, nothing else
    whole = {a: build_network(space, Architecture(a), SHAPE, 10).count_params() for a in archs}
    for r in check.rows:
        assert r.measured_ms == pytest.approx(fake_ms(whole[r.architecture], "int8", r.threads), rel=1e-12)
        assert r.predicted_ms == pytest.approx(r.measured_ms, rel=1e-9) and r.error < 1e-9
        parts = 2 + sum(op != SKIP for op in r.architecture)
        assert r.sum_ms - r.measured_ms == pytest.approx((parts - 1) * fake_overhead_ms("int8", r.threads), rel=1e-9)
    summary = {s["threads"]: s for s in check.summary()}
    errors = [r.sum_error for r in check.rows if r.threads == 2]
    assert summary[2]["sum_median_error"] == pytest.approx(float(np.median(errors))) and summary[2]["sum_max_error"] == max(errors)
    assert summary[1]["networks"] == 4 and summary[1]["overhead_ms"] == pytest.approx(0.05)
    md = check.to_markdown()
    assert "Device: fake device" in md and "| 1 | 4 | 0.0500 |" in md and " ".join(short_op(op) for op in archs[0]) in md
    assert check.to_dict()["summary"][0]["threads"] == 1
    assert all(r.same_round_ms is None for r in check.rows) and summary[1]["same_round_median_error"] is None


def test_parts_timed_in_the_same_rounds_take_out_the_machines_drift(measured, tmp_path):
    table, path = measured
    busier = FakeRunner(load=1.25)  # the machine is 25% slower while the networks are timed than while the table was
    convert = CountingConvert()
    check = check_predictor(table, 3, threads=(1,), rounds=2, runner=busier, converter=convert, parts_dir=parts_dir(path), networks_dir=tmp_path,
                            log=lambda line: None)
    assert convert.calls == 3 and len(list(tmp_path.glob("net_*.int8.tflite"))) == 3
    used = {part for r in check.rows for part in table.parts_of(Architecture(r.architecture))}
    assert len(busier.calls) == (3 + len(used)) * 2  # networks and the parts they use, every round
    for r in check.rows:
        assert r.error == pytest.approx(1 - 1 / 1.25)  # the stored table misses the drift...
        assert r.same_round_ms == pytest.approx(r.measured_ms, rel=1e-9)  # ...the parts timed beside the networks do not
    assert check.summary()[0]["same_round_max_error"] < 1e-9 and "| same rounds ms |" in check.to_markdown()
    again = check_predictor(table, 3, threads=(1,), rounds=1, runner=FakeRunner(), converter=convert, networks_dir=tmp_path, log=lambda line: None)
    assert convert.calls == 3 and [r.architecture for r in again.rows] == [r.architecture for r in check.rows]  # the kept networks, not exported again


def test_the_check_uses_the_tables_runner_and_device(table):
    with pytest.raises(ValueError, match="the table was measured by fake on 'fake device', not fake on 'phone': check it with the same runner"):
        check_predictor(table, 2, runner=FakeRunner("phone"), converter=fake_convert)
    assert short_op("ir_k5_e6_se0.25") == "k5e6se" and short_op(SKIP) == "skip"


@pytest.mark.slow
def test_real_litert_measurement(tmp_path):
    """Exports and times a small table and two networks on this machine's LiteRT interpreter (no timing asserted)."""
    space = tiny_space(("ir_k3_e3", "ir_k5_e6", SKIP))
    runner = LiteRTRunner(runs=5, min_seconds=0.01)
    table = measure_table(space, SHAPE, 10, tmp_path / "t.json", LatencyTableConfig(precisions=("int8",), threads=(1,), rounds=1), runner=runner)
    assert table.complete and all(np.isfinite(table.median_ms(part)) and table.median_ms(part) > 0 for part in table.parts())
    check = check_predictor(table, 2, rounds=1, runner=runner, parts_dir=parts_dir(tmp_path / "t.json"))
    assert len(check.rows) == 2 and all(r.measured_ms > 0 and np.isfinite(r.error) and np.isfinite(r.same_round_error) for r in check.rows)
