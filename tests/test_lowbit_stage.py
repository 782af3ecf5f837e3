"""The lowbit recipe stage: a tiny recipe trains mixed-precision weight QAT under a packed-size budget; the stage hands
on the stripped model, and the model rebuilt from what it saved is that model value for value; its metrics are the
model's (widths, packed size, values per channel); lowbit -> export int8 keeps each channel's levels as int8 codes;
bad settings are named by their path when the recipe is read."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.compress import lowbit
from edgeopt.compress.cluster import kernel_stats, weight_report
from edgeopt.pipeline import load_stage_model, run_recipe
from edgeopt.pipeline.recipe import RecipeError, parse_recipe

from conftest import make_recipe, write_recipe

LIMIT = {1: 2, 2: 3, 4: 15, 8: 255}  # most distinct values an output channel may hold at each width
# the int8 codes level k of Q = 2^(bits-1) - 1 lands on: the converter's per-channel scale is max|w_c| / 127 (tests/test_lowbit.py)
CODES = {1: {-127, 127}, 2: {-127, 0, 127}, 4: {s * int(np.floor(127 * k / 7 + 0.5)) for k in range(8) for s in (1, -1)}}
TRAIN = {"epochs": 1, "steps_per_epoch": 3, "learning_rate": 3e-4, "calibration_samples": 32}
EXPORT = {"type": "export", "mode": "int8", "min_agreement": 0.0, "baseline": False, "num_calibration": 32, "verify_samples": 32}


def _run(tmp_path, stages, monkeypatch=None) -> tuple[dict, list]:
    """Run a tiny recipe (train, then ``stages``); returns its report and every model strip_lowbit returned (the stage's first)."""
    stripped = []
    if monkeypatch is not None:
        strip = lowbit.strip_lowbit
        monkeypatch.setattr(lowbit, "strip_lowbit", lambda qat: stripped.append(strip(qat)) or stripped[-1])
    doc = make_recipe(name="lowbit", data={"limit_test": 64}, stages=[{"type": "train"}, *stages])
    report = run_recipe(write_recipe(tmp_path / "lowbit.toml", doc), out_dir=tmp_path / "runs", artifacts_dir=None, progress=lambda s: None)
    return report, stripped


def _values_per_channel(model, bits: dict[str, int]) -> dict[str, int]:
    out = {}
    for layer in weight_report(model):
        out[str(bits[layer.name])] = max(out.get(str(bits[layer.name]), 0), layer.max_unique_per_channel)
    return dict(sorted(out.items()))


def _tiny_model(input_shape):
    """Conv+BN+ReLU stem, depthwise+BN+ReLU, 1x1 conv+ReLU, two dense layers: five kernels, a second to build as QAT."""
    from edgeopt._keras import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input(input_shape)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(L.Conv2D(8, 3, strides=2, use_bias=False, name="stem")(inp)))
    x = L.ReLU(name="dw_relu")(L.BatchNormalization(name="dw_bn")(L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)))
    x = L.ReLU(name="pw_relu")(L.Conv2D(32, 1, name="pw")(x))
    x = L.Dense(32, activation="relu", name="mid")(L.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inp, L.Dense(10, name="fc")(x))


def test_mixed_precision_stage_meets_its_budget_and_reloads_the_model_it_handed_on(tmp_path, digits_splits):
    """The stage function on a five-kernel model (a recipe run with a zoo model is the slow test below)."""
    from types import SimpleNamespace

    from edgeopt._keras import tf
    from edgeopt.pipeline.stage import STAGES, StageConfig
    from edgeopt.pipeline.stages.lowbit import LowBitStageConfig, lowbit_stage
    from edgeopt.train import TrainConfig

    model = _tiny_model(digits_splits.preprocessing.input_shape)
    before = [w.copy() for w in model.get_weights()]
    ctx = SimpleNamespace(stage_dir=tmp_path, strategy=tf.distribute.get_strategy(), splits=digits_splits.with_fresh_train(), progress=lambda s: None,
                          stage_label="stages[1] (lowbit)", evaluate_test=True)
    cfg = LowBitStageConfig.from_dict({"layer_bits": {"mid": 1}, "calibration_samples": 32,
                                       "mixed_precision": {"budget_fraction": 0.6, "bits": [8, 4, 2], "samples": 64}})
    outcome = lowbit_stage(ctx, model, StageConfig(cfg, TrainConfig(epochs=1, steps_per_epoch=2, learning_rate=3e-4, verbose=0)))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the input model is untouched
    handed, m = outcome.model, outcome.metrics
    assert not any("quant" in type(l).__name__.lower() for l in handed.layers)  # stripped: plain Keras layers
    stage = STAGES.get("lowbit")
    stage.save(handed, tmp_path / stage.model_file)  # what the runner does next: the stage wrote the QAT weights already
    loaded = load_stage_model(tmp_path, "lowbit")  # rebuilt from input model + config + QAT weights, then stripped
    assert [l.name for l in loaded.layers] == [l.name for l in handed.layers]
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), handed.get_weights()))
    bits = m["bits"]
    assert bits == lowbit.plan_bits(model, lowbit.LowBitConfig(layer_bits=bits))
    assert (bits["mid"], bits["stem"], bits["fc"]) == (1, 8, 8) and {bits["dw"], bits["pw"]} <= {2, 4, 8}  # fixed: layer_bits, first and last
    assert m["int8_packed_bytes"] == lowbit.packed_size_bytes(model, 8) and m["budget_bytes"] == int(0.6 * m["int8_packed_bytes"])
    assert m["packed_bytes"] == m["planned_bytes"] == lowbit.packed_size_bytes(handed, bits) <= m["budget_bytes"]
    assert set(m["sensitivities"]) == {"dw", "pw"}
    assert m["max_values_per_channel"] == _values_per_channel(handed, bits)
    assert all(int(b) == 8 or v <= LIMIT[int(b)] for b, v in m["max_values_per_channel"].items()) and m["max_values_per_channel"]["1"] == 2
    assert m["params"] == handed.count_params() and 0 <= m["val_top1"] <= 1


@pytest.mark.slow  # ~50 s of CPU: a zoo model's QAT build and training, twice (the run, the reload)
def test_a_tiny_recipe_runs_mixed_precision_lowbit_and_reloads_the_model_it_handed_on(tmp_path, monkeypatch):
    stage = {"type": "lowbit", "layer_bits": {"block5a_project_conv": 1}, **TRAIN,
             "mixed_precision": {"budget_fraction": 0.5, "bits": [8, 4, 2], "samples": 64}}
    report, stripped = _run(tmp_path, [stage], monkeypatch)
    result = report["stages"][1]
    m = result["metrics"]
    loaded = load_stage_model(tmp_path / "runs" / "lowbit" / result["dir"], "lowbit")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), stripped[0].get_weights()))
    bits = m["bits"]
    assert bits["block5a_project_conv"] == 1 and bits["stem_conv"] == bits["classifier"] == 8 and set(bits.values()) - {1, 8}
    assert m["packed_bytes"] == m["planned_bytes"] == lowbit.packed_size_bytes(loaded, bits) <= m["budget_bytes"] == int(0.5 * m["int8_packed_bytes"])
    assert m["max_values_per_channel"] == _values_per_channel(loaded, bits)


@pytest.mark.slow  # ~50 s of CPU: the zoo model's QAT and the int8 conversion
def test_lowbit_then_int8_export_keeps_each_channels_levels(tmp_path):
    widths = {"block2a_project_conv": 4, "block4a_dwconv": 4, "block6a_project_conv": 1, "block7a_dwconv": 1}
    report, _ = _run(tmp_path, [{"type": "lowbit", "bits": 2, "layer_bits": widths, **TRAIN}, EXPORT])
    lowbit_result, export = report["stages"][1:]
    bits = lowbit_result["metrics"]["bits"]
    assert {b for b in bits.values()} == {1, 2, 4, 8}
    from edgeopt.tflite.flatbuffer import constant_weights

    tflite = (tmp_path / "runs" / "lowbit" / export["dir"] / next(iter(export["files"].values()))).read_bytes()
    found = {}
    for tensor in constant_weights(tflite):
        owners = [name for name in bits if f"/{name}/" in tensor.name]
        if tensor.dtype == "int8" and len(owners) == 1:
            found[owners[0]] = tensor.values
    assert set(found) == set(bits)
    for name, codes in found.items():
        per_channel = kernel_stats(name, "", codes).max_unique_per_channel
        if bits[name] == 8:
            assert per_channel > LIMIT[4], name  # the 8-bit layers keep their many levels
            continue
        assert per_channel <= LIMIT[bits[name]], (name, per_channel)
        assert set(np.unique(codes).tolist()) <= CODES[bits[name]], name
    assert max(kernel_stats(n, "", c).max_unique_per_channel for n, c in found.items() if bits[n] == 1) == 2
    from edgeopt.export import read_manifest  # the export stage passed the lowbit stage's widths on: exact, packed size reported

    entry = read_manifest(tflite)["lowbit"]
    assert entry["bits"] == bits and entry["exact"] is True and entry["packed_weight_bytes"] < entry["int8_weight_bytes"]


@pytest.mark.parametrize("fields, message", [
    ("bits = 3\n", r"stages\[1\]\.bits must be one of 1, 2, 4, 8"),
    ("layer_bits = { block1a_dwconv = 16 }\n", r"stages\[1\]\.layer_bits\['block1a_dwconv'\] must be one of 1, 2, 4, 8"),
    ("calibration_samples = -1\n", r"stages\[1\]\.calibration_samples must be an integer >= 0"),
    ("mixed_precision = { budget_fraction = 1.5 }\n", r"stages\[1\]\.mixed_precision\.budget_fraction must be in \(0, 1\]"),
    ("mixed_precision = { bits = [8, 3] }\n", r"stages\[1\]\.mixed_precision\.bits must be distinct widths"),
    ("depthwise_bits = 8\nmixed_precision = { budget_fraction = 0.6 }\n", r"depthwise_bits has no effect with mixed_precision"),
    ("budget = 0.6\n", r"stages\[1\]\.budget is not a known field of a lowbit stage"),
])
def test_bad_stage_settings_are_named_when_the_recipe_is_read(fields, message):
    head = '[model]\nname = "mobilenet_v1_tiny"\n[[stages]]\ntype = "train"\n[[stages]]\ntype = "lowbit"\n'
    with pytest.raises(RecipeError, match=message):
        parse_recipe(head + fields, source="r.toml")


def test_stage_fields_reach_the_configs():
    r = parse_recipe('[model]\nname = "mobilenet_v1_tiny"\n[[stages]]\ntype = "lowbit"\nbits = 1\nfirst_last_bits = 4\n'
                     'layer_bits = { block1a_dwconv = 8 }\nmixed_precision = { budget_bytes = 9000, bits = [4, 2], metric = "hessian" }\n'
                     'epochs = 3\n', source="r.toml")
    cfg = r.stages[0].config
    assert cfg.technique.lowbit_config() == lowbit.LowBitConfig(bits=1, first_last_bits=4, layer_bits={"block1a_dwconv": 8})
    mp = cfg.technique.mixed_precision
    assert (mp.budget_bytes, mp.bits, mp.metric, cfg.train.epochs) == (9000, (4, 2), "hessian", 3)
