"""Latency lookup tables: every (block, operation) measured, the overhead probe taken out, resumable measuring, the
``latency`` cost model in the DARTS search. Timing is faked: an injected runner returns a latency computed from each
exported part's parameter count (o per inference + a cost per parameter), and an injected converter "exports" a
model as that count, so every expected number is a hand computation and no test waits on a real timer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeopt.search.latency_table import LATENCY_TABLE_ENV, LatencyTable, LatencyTableConfig, LiteRTRunner, measure_table, setting_key
from edgeopt.search.nas_cost import cost_model, part_layers, part_model
from edgeopt.search.nas_space import SKIP, Architecture, build_network, random_architecture, tiny_space

OPS = ("ir_k3_e3", "ir_k5_e6", "ir_k3_e3_se0.25", SKIP)
SHAPE = (16, 16, 3)
CONFIG = LatencyTableConfig(threads=(1, 2), rounds=2)


def fake_overhead_ms(precision: str, threads: int) -> float:
    """The fake's per-inference overhead: more threads, more to wake."""
    return 0.05 * threads + (0.01 if precision == "float32" else 0.0)


def fake_ms(params: int, precision: str, threads: int) -> float:
    """The fake's latency of a model of ``params`` parameters: overhead plus a cost per parameter."""
    return fake_overhead_ms(precision, threads) + params * (1e-5 if precision == "int8" else 3e-5) / threads


def fake_convert(model, precision, representative) -> bytes:
    assert representative.shape[1:] == tuple(model.input_shape[1:])
    return json.dumps({"params": model.count_params(), "precision": precision}).encode()


class FakeRunner:
    """Returns :func:`fake_ms` of the part it is given, times ``load`` (a busier machine); raises after ``fail_after``
    calls (a killed run)."""

    name = "fake"

    def __init__(self, device: str = "fake device", fail_after: int | None = None, load: float = 1.0, timing: str = "fake timer"):
        self.device, self.fail_after, self.load, self.timing, self.calls = device, fail_after, load, timing, []

    def describe(self) -> dict:
        return {"device": self.device, "runtime": "fake runtime", "timing": self.timing}

    def __call__(self, model: bytes, threads: int) -> float:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        d = json.loads(model)
        self.calls.append((d["params"], d["precision"], threads))
        return self.load * fake_ms(d["params"], d["precision"], threads)


class CountingConvert:
    """:func:`fake_convert`, counting its calls and keeping each model's parameter count by model name."""

    def __init__(self):
        self.calls, self.params = 0, {}

    def __call__(self, model, precision, representative):
        self.calls += 1
        self.params[model.name] = model.count_params()
        return fake_convert(model, precision, representative)


@pytest.fixture(scope="module")
def space():
    return tiny_space(OPS)


@pytest.fixture(scope="module")
def measured(space, tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "table.json"
    runner, convert = FakeRunner(), CountingConvert()
    table = measure_table(space, SHAPE, 10, path, CONFIG, runner=runner, converter=convert, log=lambda line: None)
    return table, path, runner, convert


@pytest.fixture(scope="module")
def params(measured):
    """Parameter count of every part (what the fake's latency is made of), as the converter saw it (models are named
    after their part: ``block1a/ir_k3_e3_se0.25`` -> ``block1a__ir_k3_e3_se0p25``)."""
    seen = measured[3].params
    assert len(seen) == len(measured[0].parts())
    return {part: seen[part.replace("/", "__").replace(".", "p")] for part in measured[0].parts()}


def test_parts_are_the_cost_models_parts_and_the_probe(space, params):
    for key, (shape, layers) in part_layers(space, SHAPE, 10).items():
        assert params[key] == part_model(shape, layers).count_params(), key
    assert params["probe/1"] == 16 * 16 + 4 * 16  # 1x1 conv 16 -> 16 (no bias) + batch norm, at the head's 4x4x16 input
    assert params["probe/4"] == 4 * params["probe/1"]


def test_table_has_every_block_and_operation(space, measured, params):
    table, path, runner, convert = measured
    expected = {"stem", "head", "probe/1", "probe/4"} | {f"{b.name}/{op}" for b in space.blocks() for op in b.ops if op != SKIP}
    assert set(table.parts()) == expected == set(table.measurements)
    keys = {setting_key(p, t) for p in ("int8", "float32") for t in (1, 2)}
    for part, by in table.measurements.items():
        assert set(by) == keys and all(len(v) == 2 for v in by.values()), part
        assert by["int8@2"] == [fake_ms(params[part], "int8", 2)] * 2
    assert len(runner.calls) == len(expected) * 4 * 2  # every part, 4 settings, 2 rounds
    assert convert.calls == len(expected) * 2  # each part exported once per precision
    assert len(list(path.with_name("table.json.models").glob("*.tflite"))) == len(expected) * 2
    for p in ("int8", "float32"):
        for t in (1, 2):
            cost = table.cost_table(p, t).check(space)
            assert cost.unit == "ms" and cost.blocks["block1a"][SKIP] == 0.0
    saved = json.loads(path.read_text())
    assert saved["runner"]["device"] == "fake device" and saved["machine"]["describe"] and "flags" in saved["machine"]
    assert LatencyTable.load(path).to_dict() == table.to_dict()
    md = table.to_markdown()
    assert "fake device" in md and "| block2a/ir_k5_e6 |" in md and "int8@2 0.1000 ms" in md


def test_predictor_sums_the_table_with_the_overhead_once(space, measured, params):
    table = measured[0]
    rng = np.random.default_rng(1)
    archs = [random_architecture(space, rng) for _ in range(4)] + [Architecture((SKIP, "ir_k3_e3"))]
    whole = {arch.choices: build_network(space, arch, SHAPE, 10).count_params() for arch in archs[-2:]}
    for p, t in [("int8", 1), ("float32", 2)]:
        o = fake_overhead_ms(p, t)
        assert table.overhead_ms(p, t) == pytest.approx(o, rel=1e-9)  # (4 T1 - T4) / 3 of the probe
        cost, plain = table.cost_table(p, t), table.cost_table(p, t, overhead=False)
        for arch in archs:
            parts = ["stem", "head"] + [f"{b.name}/{op}" for b, op in zip(space.blocks(), arch.choices) if op != SKIP]
            by_hand = sum(fake_ms(params[k], p, t) for k in parts)
            assert plain.predict(space, arch) == pytest.approx(by_hand, rel=1e-12)
            assert cost.predict(space, arch) == pytest.approx(by_hand - (len(parts) - 1) * o, rel=1e-9)
            assert table.predict(arch, p, t) == pytest.approx(cost.predict(space, arch), rel=1e-12)
            assert table.parts_of(arch) == [parts[0], *parts[2:], "head", "probe/1", "probe/4"]
            if arch.choices in whole:  # the fake is additive in parameters: taking the overhead out predicts the whole network exactly
                assert cost.predict(space, arch) == pytest.approx(fake_ms(whole[arch.choices], p, t), rel=1e-9)


def test_resume_continues_a_partial_table_without_measuring_again(space, tmp_path, measured):
    path = tmp_path / "t.json"
    killed, convert = FakeRunner(fail_after=13), CountingConvert()
    with pytest.raises(KeyboardInterrupt):
        measure_table(space, SHAPE, 10, path, CONFIG, runner=killed, converter=convert, log=lambda line: None)
    partial = LatencyTable.load(path)
    assert sum(len(v) for by in partial.measurements.values() for v in by.values()) == 13
    runner = FakeRunner()
    table = measure_table(space, SHAPE, 10, path, CONFIG, runner=runner, converter=convert, log=lambda line: None)
    total = len(table.parts()) * 4 * 2
    assert len(runner.calls) == total - 13 and convert.calls == len(table.parts()) * 2  # nothing exported or timed twice
    assert table.complete and table.measurements == measured[0].measurements
    more = FakeRunner()
    table = measure_table(space, SHAPE, 10, path, LatencyTableConfig(threads=(1, 2), rounds=3), runner=more, converter=convert, log=lambda line: None)
    assert len(more.calls) == total // 2 and all(len(v) == 3 for by in table.measurements.values() for v in by.values())
    with pytest.raises(ValueError, match="measured by fake on 'fake device', not fake on 'phone'"):
        measure_table(space, SHAPE, 10, path, CONFIG, runner=FakeRunner("phone"), converter=convert)
    with pytest.raises(ValueError, match="was timed as 'fake timer', not 'min of the runs'"):
        measure_table(space, SHAPE, 10, path, CONFIG, runner=FakeRunner(timing="min of the runs"), converter=convert)
    with pytest.raises(ValueError, match="other settings"):
        measure_table(space, SHAPE, 10, path, LatencyTableConfig(threads=(1,)), runner=FakeRunner(), converter=convert)
    with pytest.raises(ValueError, match=r"measured for \(16, 16, 3\) inputs and 10 classes, not \(32, 32, 3\) and 10"):
        measure_table(space, (32, 32, 3), 10, path, CONFIG, runner=FakeRunner(), converter=convert)


def test_latency_cost_model_plugs_into_darts(space, measured, monkeypatch):
    from edgeopt.search.darts import DartsConfig, DartsTrainer
    from edgeopt.search.supernet import Supernet

    table, path = measured[0], measured[1]
    monkeypatch.delenv(LATENCY_TABLE_ENV, raising=False)
    with pytest.raises(ValueError, match=f"set {LATENCY_TABLE_ENV}"):
        cost_model("latency", space, SHAPE, 10)
    monkeypatch.setenv(LATENCY_TABLE_ENV, str(path))
    cost = cost_model("latency", space, SHAPE, 10)
    assert cost == table.cost_table("int8", 1)
    with pytest.raises(ValueError, match="another search space"):
        cost_model("latency", tiny_space(("ir_k3_e3", SKIP)), SHAPE, 10)
    config = DartsConfig(epochs=1, cost_model="latency")
    trainer = DartsTrainer(Supernet(space, SHAPE, 10), cost, config, steps_per_epoch=1)
    reference = sum(np.mean(list(cost.blocks[b.name].values())) for b in space.blocks())
    assert trainer.cost_reference == pytest.approx(reference)
    for c, b in zip(trainer.costs, space.blocks()):
        np.testing.assert_allclose(c.numpy(), [cost.blocks[b.name][op] / reference for op in b.ops], rtol=1e-6)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="precisions must list some of int8, float32"):
        LatencyTableConfig(precisions=("int4",))
    with pytest.raises(ValueError, match="probe_copies must be >= 2"):
        LatencyTableConfig(probe_copies=1)
    with pytest.raises(ValueError, match="threads must list thread counts >= 1 once each"):
        LatencyTableConfig(threads=(1, 1))
    with pytest.raises(ValueError, match="statistic must be one of median, min"):
        LiteRTRunner(statistic="mean")
    assert "min of >= 20 runs" in LiteRTRunner(statistic="min").describe()["timing"]


def test_nas_stage_reads_the_table_its_recipe_names(space, measured, tmp_path, monkeypatch):
    from edgeopt.pipeline.stages.nas import NasStageConfig

    table, path = measured[0], measured[1]
    monkeypatch.delenv(LATENCY_TABLE_ENV, raising=False)  # the recipe's path, not the environment
    cfg = NasStageConfig(space=space.to_dict(), search={"cost_model": "latency"}, latency_table=str(path))
    assert cfg.cost_table(space, SHAPE, 10) == table.cost_table("int8", 1)
    with pytest.raises(ValueError, match="measured for .* inputs and 10 classes, not"):
        cfg.cost_table(space, (32, 32, 3), 10)
    with pytest.raises(ValueError, match="latency_table is read by the latency cost model; set search.cost_model"):
        NasStageConfig(space=space.to_dict(), search={"cost_model": "macs"}, latency_table=str(path))
    with pytest.raises(ValueError, match="latency_table '.*missing.json': no such file"):
        NasStageConfig(space=space.to_dict(), search={"cost_model": "latency"}, latency_table=str(tmp_path / "missing.json"))


def test_nas_table_command_measures_the_preset_with_the_runner_it_names(tmp_path, monkeypatch, capsys):
    """``edgeopt nas-table``: the preset space at the input shape and classes given, with LiteRTRunner's settings from
    the flags (converter and timer faked), into a table the nas stage can read."""
    from edgeopt.cli import main
    from edgeopt.search import latency_table as lt
    from edgeopt.search.nas_space import SPACES

    made = []

    def runner(**kwargs):
        made.append(kwargs)
        return FakeRunner()

    monkeypatch.setattr(lt, "LiteRTRunner", runner)
    monkeypatch.setattr(lt, "export_part", fake_convert)
    path = tmp_path / "table.json"
    argv = ["nas-table", str(path), "--preset", "tiny", "--image-size", "16", "--classes", "10", "--threads", "1,2", "--rounds", "2",
            "--precisions", "int8,float32", "--runs", "7"]
    assert main(argv) == 0
    assert made == [{"runs": 7, "xnnpack": True, "statistic": "min"}]  # min_seconds not given: LiteRTRunner's default
    table = LatencyTable.load(path)
    assert table.space.to_dict() == SPACES.get("tiny")(1.0).to_dict() and table.input_shape == (16, 16, 3) and table.classes == 10
    assert table.complete and (table.config.threads, table.config.rounds) == ((1, 2), 2)
    assert set(table.measurements) == set(table.parts()) and all(len(by) == 4 for by in table.measurements.values())
    assert f'latency_table = "{path}"' in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [(["--adb"], "--adb needs --benchmark-model"), (["--precisions", "int4"], "--precisions expects")])
def test_nas_table_command_refuses_bad_flags_in_one_line(tmp_path, extra, message):
    from edgeopt.cli import main

    with pytest.raises(SystemExit, match=message):
        main(["nas-table", str(tmp_path / "t.json"), "--preset", "tiny", "--image-size", "16", "--classes", "10", *extra])
    assert not (tmp_path / "t.json").exists()
