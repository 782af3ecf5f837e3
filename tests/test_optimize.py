"""`edgeopt optimize` and recipes that start from the user's own model file."""
import json
import tomllib

import pytest

from edgeopt.cli import main
from edgeopt.config import RecipeError
from edgeopt.pipeline import run_recipe
from edgeopt.pipeline.optimize import optimize_recipe, prepare_run
from edgeopt.pipeline.recipe import load_recipe, recipe_from_dict


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """scikit-learn's digits as a folder of 8x8 PNGs, one sub-folder per digit (real images, as a user's folder)."""
    from PIL import Image

    from edgeopt.data import load_raw

    raw = load_raw("digits")
    root = tmp_path_factory.mktemp("digits_folder")
    for i, (img, label) in enumerate(zip(raw.x_train, raw.y_train)):
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(img[..., 0]).save(root / str(label) / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def user_model_file(trained_tiny, tmp_path_factory):
    """A trained digits classifier (16x16x3, 10 classes) saved as the user's .keras file."""
    path = tmp_path_factory.mktemp("user") / "my_digits.keras"
    trained_tiny("mobilenet_v2_tiny").save(path)
    return path


def test_optimize_a_user_model_on_an_image_folder_end_to_end(user_model_file, digits_folder, tmp_path, capsys):
    out = tmp_path / "opt"
    assert main(["optimize", str(user_model_file), "--data", f"folder:{digits_folder}", "--out", str(out)]) == 0
    recipe = load_recipe(out / "recipe.toml")  # written next to the artifacts, and a valid recipe
    assert recipe.model.path == str(user_model_file.resolve()) and [s.type for s in recipe.stages] == ["export", "bench"]
    assert "edgeopt optimize" in (out / "recipe.toml").read_text().splitlines()[0]
    report = json.loads((out / "my_digits" / "report.json").read_text())
    assert report["data"]["input_shape"] == [16, 16, 3]  # from the model file
    source = report["model"]["source"]["metrics"]  # the user's model is the baseline: measured once by the runner
    assert source["params"] > 0 and source["macs"] > 0 and source["test_top1"] > 0.8
    bench = {k: v for s in report["stages"] if s["type"] == "bench" for k, v in s["metrics"].items()}
    top1 = {name: b["accuracy"]["top1"] for name, b in bench.items()}
    assert top1["baseline_float32"] > 0.8  # the user's trained model, measured on the folder's test split
    assert abs(top1["model"] - top1["baseline_float32"]) < 0.03  # int8 (post-training) close to float
    assert (out / "my_digits" / "model.tflite").exists()
    assert "baseline_float32" in capsys.readouterr().out  # the float vs int8 table
    # the same command again: the recipe is unchanged and --resume skips every finished stage
    assert main(["optimize", str(user_model_file), "--data", f"folder:{digits_folder}", "--out", str(out), "--resume"]) == 0
    assert "done earlier, skipped" in capsys.readouterr().out


def test_optimize_recipe_chooses_stages_from_the_flags(user_model_file, digits_folder, tmp_path):
    doc = optimize_recipe(str(user_model_file), f"folder:{digits_folder}", prune=0.5, cluster=16, qat=True, distill_from=str(user_model_file))
    assert [s["type"] for s in doc["stages"]] == ["distill", "prune", "cluster", "qat", "export", "bench"]
    assert doc["stages"][3]["preserve"] == "sparsity_and_clusters" and doc["stages"][2]["preserve_sparsity"] is True
    assert doc["stages"][0]["teacher_path"] == str(user_model_file.resolve())
    # five classes in the folder but ten outputs in the model: a new head and a finetune stage come first
    five = tmp_path / "five"
    for d in range(5):
        (five / str(d)).mkdir(parents=True)
        for f in sorted((digits_folder / str(d)).iterdir())[:3]:
            (five / str(d) / f.name).write_bytes(f.read_bytes())
    doc = optimize_recipe(str(user_model_file), f"folder:{five}")
    assert doc["model"]["new_head"] is True and doc["stages"][0]["type"] == "finetune"
    # another recipe in the same folder is not replaced unless asked
    path = prepare_run(doc, tmp_path / "out", "edgeopt optimize ...")
    assert tomllib.loads(path.read_text())["model"]["new_head"] is True
    with pytest.raises(FileExistsError, match="exists with other settings: pass --force"):
        prepare_run({**doc, "description": "other"}, tmp_path / "out", "edgeopt optimize ...")


def test_model_file_whose_classes_differ_is_refused_before_a_run_directory(user_model_file, tmp_path):
    few = tmp_path / "three"
    for c in "abc":
        (few / c).mkdir(parents=True)
        from PIL import Image

        Image.new("RGB", (16, 16)).save(few / c / "x.png")
    doc = {"name": "mine", "data": {"dataset": f"folder:{few}"}, "model": {"path": str(user_model_file)}, "stages": [{"type": "export"}]}
    with pytest.raises(ValueError, match=r"outputs 10 classes .* but dataset folder:.*three has 3 \(class names a, b, c\); .*new_head = true"):
        run_recipe(recipe_from_dict(doc), out_dir=tmp_path / "runs", artifacts_dir=None)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("model, message", [
    ({"name": "mobilenet_v2_tiny", "path": "x.keras"}, "model.name (a zoo model), path (your model file) or application"),
    ({"path": "missing.keras"}, "model.path 'missing.keras' does not exist"),
    ({"path": "weights.npz"}, "model.path 'weights.npz' is not a model file"),
    ({"application": "ResNet9000"}, "model.application must be one of "),
    ({"name": "mobilenet_v2_tiny", "new_head": True}, "new_head, allow_custom_code and custom_module apply to a model file only"),
])
def test_model_section_errors_name_the_field(model, message):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"model": model, "stages": [{"type": "train"}]}, source="r.toml")
    assert message in str(err.value)
