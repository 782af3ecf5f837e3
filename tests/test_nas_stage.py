"""The ``nas`` recipe stage: fields named with their paths, the derived network handed on, a crashed search resumed,
a cost limit (absolute or a fraction of MobileNetV2's) met by the derived network, and a single-path warm-up whose
weights the search starts from."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.pipeline import run_recipe
from edgeopt.pipeline.recipe import RecipeError, parse_recipe
from edgeopt.pipeline.stage import RunContext
from edgeopt.pipeline.stages.nas import NasStageConfig, _fit, nas_stage
from edgeopt.search.darts import CHECKPOINT_FILE, _weights_digest, read_checkpoint
from edgeopt.search.nas_cost import OpCostTable, cost_model
from edgeopt.search.nas_space import SKIP, Architecture, NasSpace, mobilenet_v2_architecture, tiny_space
from edgeopt.search.single_path import CHECKPOINT_FILE as WARMUP_FILE
from edgeopt.search.supernet import Supernet
from edgeopt.costs import profile
from conftest import make_recipe, recipe_toml, write_recipe

HEAD = '[model]\nname = "mobilenet_v1_tiny"\n'
OPS = ("ir_k3_e3", "skip")
SPACE = {"stem": "cn_k3_s2_c8", "head_channels": 32, "ops": list(OPS), "stages": [{"channels": 8}, {"channels": 16, "stride": 2}]}
NAS = {"type": "nas", "space": SPACE, "search": {"epochs": 1, "steps_per_epoch": 2}}


@pytest.mark.parametrize("stage, message", [
    ('search = { tau = 0 }', r"stages\[0\]\.search\.tau must be > 0"),
    ('space = { stages = [{ channels = 0 }] }', r"stages\[0\]\.space\.stages\[0\]\.channels must be >= 1"),
    ('preset = "resnet"', r"stages\[0\]\.preset must be one of mobilenet_v2, tiny"),
    ('init = "imagenet"', r"stages\[0\]\.init must be one of scratch, supernet"),
    ('epochs = 3', r"stages\[0\]\.epochs is not a known field of a nas stage"),
    ('cost_limit = 0', r"stages\[0\]\.cost_limit must be > 0 or absent"),
    ('cost_limit_fraction = -0.5', r"stages\[0\]\.cost_limit_fraction must be > 0 or absent"),
    ('cost_limit = 1e6\ncost_limit_fraction = 0.5', r"stages\[0\]\.cost_limit and cost_limit_fraction are both given; give one"),
    ('search = { cost_target = 2.0 }', r"stages\[0\]\.search\.cost_target is set by the stage: give cost_limit"),
    ('cost_limit = "fast"', r"stages\[0\]\.cost_limit must be number or none"),
    ('preset = "tiny"\nspace = { stem = "cn_k3_s2_c8", ops = ["ir_k3_e3", "skip"], stages = [{ channels = 8 }] }\ncost_limit_fraction = 0.5',
     r"stages\[0\]\.cost_limit_fraction needs ir_k3_e6 among the space's ops .* give cost_limit instead"),
    ('warmup = { epochs = 0 }', r"stages\[0\]\.warmup\.epochs must be >= 1"),
    ('warmup = { steps = 2 }', r"stages\[0\]\.warmup\.steps is not a known field"),
    ('warmup = 4', r"stages\[0\]\.warmup must be table or none"),
])
def test_bad_nas_stage_fields_are_named(stage, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(HEAD + f'[[stages]]\ntype = "nas"\n{stage}\n', source="r.toml")


@pytest.mark.slow  # two recipe runs with a search and a training stage: about 40 s on a busy 2-core machine
def test_nas_stage_hands_on_the_derived_network_and_resumes_its_search(tmp_path):
    recipe = write_recipe(tmp_path / "nas.toml", make_recipe(name="nas", stages=[NAS, {"type": "train", "steps_per_epoch": 2}]))
    lines = []
    report = run_recipe(recipe, out_dir=tmp_path, artifacts_dir=None, progress=lines.append)
    nas = report["stages"][0]["metrics"]
    arch = Architecture(tuple(nas["architecture"]))
    space = tiny_space(OPS)
    assert nas["cost"] == cost_model("macs", space, (16, 16, 3), 10).predict(space, arch) and nas["cost_unit"] == "macs"
    assert sum(1 for s in lines if s.startswith("nas epoch 1/1")) == 1
    run = tmp_path / "nas"
    assert Architecture.from_json((run / "00-nas" / "architecture.json").read_text()) == arch
    assert report["stages"][1]["metrics"]["params"] == nas["params"]  # the train stage trained the derived network

    (run / "00-nas" / "result.json").unlink()  # a crash after the search's last checkpoint, before the stage finished
    lines.clear()
    again = run_recipe(recipe, out_dir=tmp_path, resume=True, artifacts_dir=None, progress=lines.append)
    assert not [s for s in lines if s.startswith("nas epoch")]  # the saved search was continued, not redone
    assert json.loads((run / "00-nas" / "nas_result.json").read_text())["resumed_at_epoch"] == 1
    assert again["stages"][0]["metrics"]["architecture"] == nas["architecture"]


# ---- cost limit and warm-up ---------------------------------------------------------------------------------------

# first candidate the most expensive: with both loss weights 0 the architecture parameters never move (zero gradients,
# so Adam's steps are 0), every block's argmax is its first candidate, and it is over a MobileNetV2 limit
LIMIT_OPS = ("ir_k5_e6", "ir_k3_e6", SKIP)
LIMIT_SPACE = {**SPACE, "ops": list(LIMIT_OPS)}
# a toy ms table of tiny_space(LIMIT_OPS): block1a 3, 2, 0; block2a (no skip) 6, 4; fixed 1.5
TOY = OpCostTable("ms", {"block1a": {"ir_k5_e6": 3.0, "ir_k3_e6": 2.0, SKIP: 0.0}, "block2a": {"ir_k5_e6": 6.0, "ir_k3_e6": 4.0}}, fixed=1.5)


def test_the_limit_is_absolute_or_a_fraction_of_mobilenet_v2s_cost():
    space = tiny_space(LIMIT_OPS)
    assert NasStageConfig(space=LIMIT_SPACE).limit(space, TOY) == (None, None)
    assert NasStageConfig(space=LIMIT_SPACE, cost_limit=6.0).limit(space, TOY) == (6.0, None)
    # MobileNetV2's point: ir_k3_e6 in both blocks, 1.5 + 2 + 4 = 7.5 ms
    assert NasStageConfig(space=LIMIT_SPACE, cost_limit_fraction=0.8).limit(space, TOY) == pytest.approx((0.8 * 7.5, 7.5))
    assert NasStageConfig(space=LIMIT_SPACE, cost_limit=5.5).limit(space, TOY) == (5.5, None)  # the cheapest network: 1.5 + 0 + 4
    with pytest.raises(ValueError, match=r"cost_limit = 5.4 ms is below the cheapest network of the space \(5.5 ms\)"):
        NasStageConfig(space=LIMIT_SPACE, cost_limit=5.4).limit(space, TOY)
    with pytest.raises(ValueError, match=r"cost_limit_fraction = 0.7 of MobileNetV2's 7.5 ms \(5.25\) is below the cheapest network"):
        NasStageConfig(space=LIMIT_SPACE, cost_limit_fraction=0.7).limit(space, TOY)


def _context(tmp_path, stage: dict, lines: list) -> RunContext:
    recipe = parse_recipe(recipe_toml(make_recipe(name="nas", stages=[stage])), source="nas.toml")
    stage_dir = tmp_path / "00-nas"
    stage_dir.mkdir(exist_ok=True)
    return RunContext(recipe, None, tmp_path, None, lines.append, stage_dir=stage_dir, stage_label="stages[0] (nas)")


def _run(tmp_path, splits, stage: dict):
    lines = []
    ctx = _context(tmp_path, stage, lines)
    ctx.splits = splits
    return nas_stage(ctx, None, ctx.recipe.stages[0].config), lines


def test_a_limit_no_network_fits_fails_before_anything_trains(tmp_path, digits_splits):
    space = tiny_space(LIMIT_OPS)
    macs = cost_model("macs", space, (16, 16, 3), 10)
    cheapest = macs.predict(space, Architecture((SKIP, "ir_k3_e6")))
    assert cheapest > 1000  # counts are written 1,234
    message = rf"stages\[0\] \(nas\): cost_limit = {cheapest - 1:,.0f} macs is below the cheapest network of the space \({cheapest:,.0f} macs\)"
    with pytest.raises(RecipeError, match=message):
        _run(tmp_path, digits_splits, {"type": "nas", "space": LIMIT_SPACE, "cost_limit": cheapest - 1, "warmup": {"epochs": 1}})
    assert not (tmp_path / "checkpoints").exists()


# a 2-step single-path warm-up, then a 1-step search that moves neither the architecture (both loss weights 0) nor the
# weights (learning rate 1e-9), under a limit of MobileNetV2's multiply-adds; init = supernet hands on the search's weights
WARM_LIMITED = {"type": "nas", "space": LIMIT_SPACE, "init": "supernet", "cost_limit_fraction": 1.0, "warmup": {"epochs": 2, "steps_per_epoch": 1},
                "search": {"epochs": 1, "steps_per_epoch": 1, "data_loss_weight": 0.0, "cost_weight": 0.0, "learning_rate": 1e-9}}


def test_an_argmax_within_the_limit_is_kept_and_one_over_it_is_fitted():
    space, argmax = tiny_space(LIMIT_OPS), Architecture(("ir_k3_e6", "ir_k3_e6"))  # 7.5 ms
    tied = [[0.2, 0.4, 0.4], [0.5, 0.5]]  # rounded probabilities can tie: an argmax within the limit is never re-derived
    assert _fit(space, argmax, tied, TOY, None) is argmax and _fit(space, argmax, tied, TOY, 7.5) is argmax
    # over 7 ms: block1a to skip loses log(0.4 / 0.4) = 0 for 2 ms saved; block2a has nothing cheaper
    assert _fit(space, argmax, tied, TOY, 7.0) == Architecture((SKIP, "ir_k3_e6"))


def test_warmed_up_search_fits_the_limit_and_starts_from_the_warmup(tmp_path, digits_splits):
    """The argmax (every block's first candidate: the parameters never moved) is over the limit; the network handed
    on is within it, and holds the warm-up's weights."""
    outcome, lines = _run(tmp_path, digits_splits, WARM_LIMITED)
    m, space = outcome.metrics, tiny_space(LIMIT_OPS)
    macs = cost_model("macs", space, (16, 16, 3), 10)
    reference = macs.predict(space, mobilenet_v2_architecture(space))
    arch = Architecture(tuple(m["architecture"]))
    assert m["cost_limit"] == m["cost_limit_reference"] == reference and m["cost_unit"] == "macs"
    assert m["argmax_architecture"] == ["ir_k5_e6", "ir_k5_e6"] and m["argmax_cost"] == macs.predict(space, Architecture(("ir_k5_e6",) * 2)) > reference
    assert m["cost"] == macs.predict(space, arch) == profile(outcome.model).macs <= reference  # the network handed on costs what is reported
    assert m["derive_within_changed"] and m["changed_blocks"] == [b.name for b, op in zip(space.blocks(), arch.choices) if op != "ir_k5_e6"]
    assert m["warmup_epochs"] == 2 and sum(1 for s in lines if s.startswith("single-path epoch")) == 2
    assert (tmp_path / "00-nas" / "warmup_result.json").exists() and outcome.files["warmup_result"] == "warmup_result.json"
    assert Architecture.from_json((tmp_path / "00-nas" / "architecture.json").read_text()) == arch

    # the search started from the warm-up's weights: its checkpoint names their digest, and the network holds them
    [folder] = (tmp_path / "checkpoints").iterdir()
    warm = read_checkpoint(folder / WARMUP_FILE)[1]
    assert read_checkpoint(folder / CHECKPOINT_FILE)[0]["initial_weights"] == _weights_digest(warm)
    stem = next(layer for layer in outcome.model.layers if layer.name == "stem_conv").get_weights()[0]
    np.testing.assert_allclose(stem, warm["w/stem/0"], atol=1e-6)
    keras.utils.set_random_seed(0)
    fresh = Supernet(NasSpace.from_dict(LIMIT_SPACE), (16, 16, 3), 10, seed=0).state()["w/stem/0"]
    assert np.abs(warm["w/stem/0"] - fresh).max() > 1e-4  # what the search would start from without the warm-up


@pytest.mark.slow  # a recipe run with a warm-up and a search, then its resumption: about 20 s on a busy 2-core machine
def test_warmed_up_limited_stage_resumes_without_training_again(tmp_path):
    recipe = write_recipe(tmp_path / "nas.toml", make_recipe(name="nas", stages=[WARM_LIMITED]))
    lines = []
    first = run_recipe(recipe, out_dir=tmp_path, artifacts_dir=None, progress=lines.append)["stages"][0]["metrics"]
    assert sum(1 for s in lines if s.startswith("single-path epoch")) == 2 and first["cost"] <= first["cost_limit"]
    (tmp_path / "nas" / "00-nas" / "result.json").unlink()  # a crash after both checkpoints, before the stage finished
    lines.clear()
    again = run_recipe(recipe, out_dir=tmp_path, resume=True, artifacts_dir=None, progress=lines.append)["stages"][0]["metrics"]
    assert not [s for s in lines if s.startswith(("single-path epoch", "nas epoch"))]  # both were loaded, not redone
    assert again["architecture"] == first["architecture"] and again["cost"] == first["cost"] and again["warmup_epochs"] == 2
