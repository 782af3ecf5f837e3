"""The export stage's selective precision (issue #23): ``keep_float`` and ``auto_fallback`` in a recipe, validated
with errors naming the field; the run's metrics, the shipped manifest and its op notes say which layers stayed float;
auto_fallback measures its steps on the validation split and never reads the test split.

The model: a small digits classifier whose first convolution gets one output channel 1000x wider while the depthwise
convolution after it divides that channel by 1000 (the same function; see tests/test_quant_report.py), so its int8
file loses accuracy that keeping ``conv1`` and ``dw`` float wins back.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edgeopt import export
from edgeopt._keras import keras
from edgeopt.pipeline import run_recipe
from edgeopt.pipeline.recipe import RecipeError, parse_recipe, recipe_from_dict
from edgeopt.pipeline.runner import recipe_splits
from edgeopt.pipeline.stage import RunContext, StageConfig
from edgeopt.pipeline.stages.export import ExportStageConfig, export_stage
from edgeopt.tflite.ops import KEPT_FLOAT_REASON

from conftest import make_recipe, write_recipe

HEAD = '[model]\nname = "mobilenet_v2_tiny"\n[[stages]]\ntype = "train"\n[[stages]]\ntype = "export"\n'
QUICK = {"type": "export", "baseline": False, "num_calibration": 100, "min_agreement": 0.5}


@pytest.fixture(scope="module")
def model_file(digits_arrays, tmp_path_factory):
    """The digits model with conv1's widest channel x1000 and dw's / 1000, trained 3 epochs, saved as .keras."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Conv2D(16, 1, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="head")(x), name="small")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x, y = digits_arrays["train"]
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    channel = int(np.abs(keras.Model(model.input, model.get_layer("conv1").output)(x[:64]).numpy()).reshape(-1, 8).max(0).argmax())
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., channel] *= 1000.0
    bias[channel] *= 1000.0
    model.get_layer("conv1").set_weights([kernel, bias])
    dw_kernel, dw_bias = model.get_layer("dw").get_weights()
    dw_kernel[:, :, channel, :] /= 1000.0
    model.get_layer("dw").set_weights([dw_kernel, dw_bias])
    path = tmp_path_factory.mktemp("export_stage") / "small.keras"
    model.save(path)
    return path


def _doc(name: str, path, stage: dict) -> dict:
    return make_recipe(name=name, model={"name": None, "path": str(path)}, stages=[{**QUICK, **stage}])


@pytest.mark.parametrize("stage, expected", [
    ('keep_float = "block5*"\n', "stages[1].keep_float must be list, got str 'block5*'"),
    ("keep_float = [\"\"]\n", "stages[1].keep_float must be a list of layer-name patterns such as [\"block5*\"]"),
    ("auto_fallback = -0.3\n", "stages[1].auto_fallback must be top-1 points in [0, 100] (e.g. 0.3), or none; got -0.3"),
    ("auto_fallback = 0.3\nmax_fallback_steps = 0\n", "stages[1].max_fallback_steps must be an integer >= 1, got 0"),
    ('mode = "float16"\nkeep_float = ["block5*"]\n', "stages[1].keep_float needs mode = \"int8\""),
    ('mode = "dynamic"\nauto_fallback = 0.3\n', "stages[1].auto_fallback needs mode = \"int8\""),
    ("sparse_weights = true\nkeep_float = [\"conv*\"]\n", "stages[1].keep_float cannot be combined with sparse_weights = true"),
    ("fallback_latency_rounds = 2\n", "stages[1].fallback_latency_rounds times auto_fallback's steps: set auto_fallback"),
    ("auto_fallback = 0.3\nfallback_latency_rounds = -1\n", "stages[1].fallback_latency_rounds must be an integer >= 0"),
])
def test_selective_precision_fields_are_validated_with_field_paths(stage, expected):
    with pytest.raises(RecipeError) as err:
        parse_recipe(HEAD + stage, source="r.toml")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_keep_float_and_auto_fallback_parse():
    cfg = parse_recipe(HEAD + 'keep_float = ["block5*"]\nauto_fallback = 0.3\n').stages[1].config.technique
    assert (cfg.keep_float, cfg.auto_fallback, cfg.max_fallback_steps, cfg.fallback_latency_rounds) == (("block5*",), 0.3, 4, 0)
    assert cfg.precision() == export.PrecisionConfig(keep_float=("block5*",), auto_fallback=0.3)
    assert ExportStageConfig().precision() == export.PrecisionConfig()


def test_keep_float_recipe_ships_a_file_that_says_which_layers_stayed_float(model_file, tmp_path):
    recipe = write_recipe(tmp_path / "kf.toml", _doc("kf", model_file, {"keep_float": ["dw*", "conv1"]}))
    report = run_recipe(recipe, out_dir=tmp_path / "runs", artifacts_dir=tmp_path / "art", progress=lambda s: None)
    metrics = report["stages"][0]["metrics"]["model"]
    assert metrics["float_layers"] == ["conv1", "dw"] and "fallback" not in metrics
    manifest = json.loads((tmp_path / "art" / "kf" / "model.json").read_text())
    assert manifest["keep_float"]["layers"] == ["conv1", "dw"] and manifest["keep_float"]["patterns"] == ["dw*", "conv1"]
    assert manifest["mode_description"].endswith("2 ops of layers conv1, dw kept float32 (keep_float)") and manifest["io"] == "uint8"
    assert [(f["op"], f["why"]) for f in manifest["ops"]["float_ops"] if f["op"] not in ("QUANTIZE", "DEQUANTIZE")] == [
        ("CONV_2D", KEPT_FLOAT_REASON), ("DEPTHWISE_CONV_2D", KEPT_FLOAT_REASON)]
    assert export.read_manifest(tmp_path / "art" / "kf" / "model.tflite")["keep_float"] == manifest["keep_float"]  # embedded too


class _NeverRead:
    """A test split that fails any use: auto_fallback must measure on the validation split only."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read (.{name})")


def test_auto_fallback_stage_records_each_step_and_ships_the_chosen_one(model_file, tmp_path):
    doc = _doc("fb", model_file, {"auto_fallback": 1.0, "max_fallback_steps": 1, "verify_samples": 1000})
    recipe = recipe_from_dict(doc)
    splits = replace(recipe_splits(recipe), test=_NeverRead())
    ctx = RunContext(recipe, splits, tmp_path, None, lambda s: None, stage_dir=tmp_path, stage_label="stages[0] (export)")
    cfg = recipe.stages[0].config.technique
    out = export_stage(ctx, keras.models.load_model(model_file), StageConfig(cfg, None))
    metrics = out.metrics["model"]
    fb = metrics["fallback"]
    steps = fb["steps"]
    assert fb["val_images"] == splits.sizes["val"] and (fb["target_points"], fb["latency"]) == (1.0, None)
    assert len(steps) == 2 and steps[0]["float_layers"] == [] and steps[0]["gap_points"] > 5  # int8 loses real accuracy
    assert steps[1]["added_layers"] == ["conv1", "dw"] and steps[1]["gap_points"] < steps[0]["gap_points"]
    assert fb["worst_tensors"][0]["layers"] == ["conv1"] and fb["worst_tensors"][0]["cause"] == "outlier_channels"
    for s in steps:
        assert s["gap_points"] == pytest.approx((fb["float_val_top1"] - s["val_top1"]) * 100)
        assert s["size_cost_bytes"] == s["size_bytes"] - steps[0]["size_bytes"]
    assert fb["chosen"] == 1 and fb["reached"] == (steps[1]["gap_points"] <= 1.0) and metrics["float_layers"] == ["conv1", "dw"]
    manifest = export.read_manifest(tmp_path / "model.tflite")
    assert manifest["keep_float"]["layers"] == ["conv1", "dw"]
    assert manifest["source"]["auto_fallback"]["val_gap_points"] == [round(s["gap_points"], 4) for s in steps]
    assert manifest["source"]["auto_fallback"]["chosen_step"] == 1
    # the shipped file is the chosen step's: calibrated on the same images, it scores the same on the same validation images
    assert manifest["verification"]["samples"] == fb["val_images"] and manifest["verification"]["tflite_top1"] == steps[-1]["val_top1"]
    assert json.loads(json.dumps(out.metrics)) == out.metrics  # plain JSON data: result.json holds the same


def test_auto_fallback_without_a_validation_split_is_refused(model_file, tmp_path):
    doc = _doc("noval", model_file, {"auto_fallback": 0.3})
    doc["data"]["val_fraction"] = 0.0
    with pytest.raises(RecipeError, match=r"auto_fallback measures each step on the validation split \(never the test split\), but data.val_fraction is 0"):
        run_recipe(write_recipe(tmp_path / "noval.toml", doc), out_dir=tmp_path / "runs", artifacts_dir=None, progress=lambda s: None)


@pytest.mark.slow
def test_auto_fallback_stage_times_its_steps_when_asked(model_file, tmp_path):
    doc = _doc("timed", model_file, {"auto_fallback": 1.0, "max_fallback_steps": 1, "fallback_latency_rounds": 1})
    report = run_recipe(write_recipe(tmp_path / "timed.toml", doc), out_dir=tmp_path / "runs", artifacts_dir=None, progress=lambda s: None)
    fb = report["stages"][0]["metrics"]["model"]["fallback"]
    assert fb["latency"]["rounds"] == 1 and all(s["median_ms"] > 0 for s in fb["steps"])  # filled; timing is not asserted
