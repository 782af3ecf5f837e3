"""The ``nas`` recipe stage: fields named with their paths, the derived network handed on, a crashed search resumed."""
from __future__ import annotations

import json

import pytest

from edgeopt.pipeline import run_recipe
from edgeopt.pipeline.recipe import RecipeError, parse_recipe
from edgeopt.search.nas_cost import cost_model
from edgeopt.search.nas_space import Architecture, tiny_space
from conftest import make_recipe, write_recipe

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
