"""Compression stages through the runner: prune -> PQAT -> int8 export -> bench keeps the zeros, on real digits."""
import json

import pytest

from edgeopt.pipeline import run_recipe
from edgeopt.pipeline.recipe import RecipeError, parse_recipe

from conftest import make_recipe, write_recipe

RECIPE = make_recipe(
    name="comp",
    data={"limit_test": 128},
    train={"epochs": 3, "steps_per_epoch": None},  # full epochs: the accuracy claims below need a trained model
    stages=[
        {"type": "train"},
        {"type": "prune", "final_sparsity": 0.5, "schedule": "constant", "frequency": 5, "epochs": 1, "learning_rate": 0.001},
        {"type": "qat", "preserve": "sparsity", "epochs": 1, "steps_per_epoch": 10, "learning_rate": 0.0005, "calibration_samples": 128},
        {"type": "export", "mode": "int8", "min_agreement": 0.5, "baseline": False, "num_calibration": 64},
        {"type": "bench", "threads": [1], "runs": 5, "min_seconds": 0.05},
    ],
)


@pytest.mark.slow  # 71 s (3 training epochs + prune + PQAT + export); keeps the default suite under 15 minutes.
# Its parts stay in the default suite: test_prune (sparsity), test_collaborative (PQAT keeps zeros), test_export.
def test_prune_pqat_int8_recipe_keeps_sparsity_and_ships_an_int8_model(tmp_path):
    report = run_recipe(write_recipe(tmp_path / "comp.toml", RECIPE), out_dir=tmp_path / "runs", artifacts_dir=tmp_path / "art", progress=lambda s: None)
    by_type = {s["type"]: s for s in report["stages"]}
    assert by_type["prune"]["metrics"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert by_type["qat"]["metrics"]["sparsity"] == pytest.approx(0.5, abs=0.02)  # PQAT kept the zeros
    assert by_type["qat"]["metrics"]["test_top1"] > 0.3  # digits: chance is 0.1
    manifest = json.loads((tmp_path / "art" / "comp" / "model.json").read_text())
    assert manifest["mode"] == "int8" and manifest["input"]["dtype"] == "uint8" and manifest["output"]["dtype"] == "uint8"
    assert by_type["bench"]["metrics"]["model"]["accuracy"]["top1"] > 0.3
    assert (tmp_path / "art" / "comp" / "report.json").exists()


def test_compression_stage_configs_are_validated_with_field_paths():
    head = '[model]\nname = "mobilenet_v2_tiny"\n[[stages]]\ntype = "train"\n'
    with pytest.raises(RecipeError, match=r"stages\[1\]\.final_sparsity"):
        parse_recipe(head + '[[stages]]\ntype = "prune"\nfinal_sparsity = 1.5\n', source="r.toml")
    with pytest.raises(RecipeError, match=r"stages\[1\]\.preserve must be one of"):
        parse_recipe(head + '[[stages]]\ntype = "qat"\npreserve = "all"\n', source="r.toml")
    with pytest.raises(RecipeError, match=r"stages\[1\]\.teacher_stage, teacher_model or teacher_path \(a trained model file\) must be given, exactly one of them; got none"):
        parse_recipe(head + '[[stages]]\ntype = "distill"\n', source="r.toml")
    r = parse_recipe(head + '[[stages]]\ntype = "cluster"\nnumber_of_clusters = 8\nepochs = 1\n', source="r.toml")
    assert r.stages[1].config.technique.number_of_clusters == 8 and r.stages[1].config.train.epochs == 1


def test_a_qat_config_saved_before_a_field_existed_loads_with_the_layout_its_weights_were_saved_in():
    import json

    from edgeopt.pipeline.stages.compress import saved_qat_config
    from edgeopt.compress.quantize import QATConfig

    new = QATConfig(preserve="sparsity_and_clusters").to_dict()
    old = {k: v for k, v in new.items() if k not in ("clustered_scales", "depthwise_scales")}
    assert saved_qat_config(json.dumps(old)).clustered_scales == "per_channel"
    assert saved_qat_config(json.dumps(old)).depthwise_scales == "per_tensor"
    assert saved_qat_config(json.dumps(new)) == QATConfig(preserve="sparsity_and_clusters")
    assert (saved_qat_config(json.dumps(new)).clustered_scales, saved_qat_config(json.dumps(new)).depthwise_scales) == ("per_tensor", "per_channel")
