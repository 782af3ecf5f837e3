"""Recipe parsing: every malformed recipe gets a one-line error naming the field."""
import pytest

from edgeopt.pipeline.recipe import RecipeError, load_recipe, parse_recipe

BASE = '[model]\nname = "mobilenet_v2_tiny"\n'
TRAIN = '[[stages]]\ntype = "train"\n'


def _error(text: str) -> str:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, source="r.toml")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("r.toml: ")
    return msg


@pytest.mark.parametrize(
    "text, expected",
    [
        (BASE + TRAIN + "epochs = 'two'\n", "stages[0].epochs must be integer, got str 'two'"),
        (BASE + '[[stages]]\ntype = "sharpen"\n', "stages[0].type must be one of bench, "),
        (BASE + TRAIN + '[[stages]]\ntype = "export"\nmode = "int2"\n', "stages[1].mode must be one of float32, float16, dynamic, int8, int16x8, int4; got 'int2'"),
        (BASE + TRAIN + "epochs = 1\nepochs = 2\n", "duplicated key 'epochs' at line 6"),
        ('[model]\nname = "resnet50"\n' + TRAIN, "model.name must be one of efficientnet, "),
        (BASE + '[data]\ndataset = "cifar10"\n' + TRAIN, "data.dataset must be one of digits, fashion_mnist, folder:PATH; got 'cifar10'"),
        (BASE + "[data]\nbatch_size = 0\n" + TRAIN, "data.batch_size must be >= 1, got 0"),
        (BASE + TRAIN + "warmup = 3\n", "stages[0].warmup is not a known field of a train stage; known fields: cosine, epochs"),
        (BASE + "[model.knobs]\nbeta = 2\n" + TRAIN, "model.knobs has no 'beta' for mobilenet_v2_tiny; its knobs are: "),
        (BASE, "stages is required"),
        ("[[stages]]\ntype = 'train'\n", "model is required"),
        (BASE + TRAIN + "learning_rate = -1.0\n", "stages[0].learning_rate must be > 0, got -1.0"),
        (BASE + "[data]\nimage_size = 'big'\n" + TRAIN, "data.image_size must be integer"),
        (BASE + "[data]\nimage_size = 100000\n" + TRAIN, "data.image_size must be in [8, 2048] pixels"),
        ('[model]\nname = "mobilenet_v2"\nknobs = { alpha = -1 }\n' + TRAIN, "model.knobs.alpha must be a width multiplier > 0 (e.g. 0.35, 0.5, 1.0), got -1"),
        ('[model]\nname = "shufflenet_v1"\nknobs = { groups = 5 }\n' + TRAIN, "model.knobs.groups must be one of 1, 2, 3, 4, 8"),
        ('[model]\nname = "mobilenet_v2"\nknobs = { dropout = 1.5 }\n' + TRAIN, "model.knobs.dropout must be a rate in [0, 1), got 1.5"),
        (BASE + "[train]\ndistribute = 'cluster'\n" + TRAIN, "train.distribute must be one of 'none', 'mirrored', 'multi_worker'; got 'cluster'"),
        (BASE + TRAIN + '[[stages]]\ntype = "bench"\nthreads = [1, 0]\n', "stages[1].threads must be a non-empty list of counts >= 1, got [1, 0]"),
        (BASE + TRAIN + '[[stages]]\ntype = "bench"\nsplit = "train"\n', "stages[1].split must be one of 'test', 'val'; got 'train'"),
        ("[recipe]\n" + BASE + TRAIN, "recipe is not a known section"),
        (BASE + TRAIN + "[[stages]]\nepochs = 1\n", "stages[1].type is required; known stage types: "),
    ],
)
def test_malformed_recipes_get_one_line_errors_naming_the_field(text, expected):
    assert expected in _error(text)


def test_bad_recipe_file_fails_before_a_run_directory_is_made(tmp_path):
    from edgeopt.pipeline import run_recipe

    latin1 = tmp_path / "caf\u00e9.toml"
    latin1.write_bytes('description = "caf\u00e9"\n'.encode("latin-1") + (BASE + TRAIN).encode())
    with pytest.raises(RecipeError, match=r"caf\u00e9.toml: not UTF-8 text \(byte 18 is 0xe9\); save the recipe as UTF-8 TOML"):
        load_recipe(latin1)
    huge = tmp_path / "huge.toml"
    huge.write_text(BASE + "[data]\nimage_size = 100000\n" + TRAIN)
    for bad in (latin1, huge):
        with pytest.raises(RecipeError):
            run_recipe(bad, out_dir=tmp_path / "runs", artifacts_dir=None)
    assert not (tmp_path / "runs").exists()


def test_valid_recipe_parses_with_train_defaults_and_overrides():
    r = parse_recipe(BASE + "[train]\nepochs = 3\nlearning_rate = 0.01\n" + TRAIN + "epochs = 1\n" + TRAIN, name="x")
    assert r.name == "x" and [s.type for s in r.stages] == ["train", "train"]
    assert r.stages[0].config.train.epochs == 1 and r.stages[0].config.train.learning_rate == 0.01
    assert r.stages[1].config.train.epochs == 3
    assert r.fingerprint(0) != r.fingerprint(1)
    assert r.fingerprint(0) == parse_recipe(BASE + "[train]\nepochs = 3\nlearning_rate = 0.01\n" + TRAIN + "epochs = 1\n", name="x").fingerprint(0)


def test_shipped_recipes_are_valid():
    import pathlib

    files = sorted((pathlib.Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))
    assert files, "no recipes shipped"
    for f in files:
        recipe = load_recipe(f)
        assert recipe.name == f.stem and recipe.stages


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.toml")


def _data_error(dataset: str) -> str:
    msg = _error(BASE + f"[data]\ndataset = {dataset!r}\n" + TRAIN)
    assert f"data.dataset {dataset!r} is not available" in msg
    return msg


def test_image_folder_that_is_missing_or_has_no_classes_fails_validation(tmp_path):
    assert "does not exist; use folder:PATH with PATH/<class>/<image>" in _data_error(f"folder:{tmp_path / 'nowhere'}")
    assert "has no class sub-folders; expected " in _data_error(f"folder:{tmp_path}")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    assert "has no images (.bmp, .gif, .jpeg, .jpg, .png)" in _data_error(f"folder:{tmp_path}")
    (tmp_path / "cat" / "0.png").write_bytes(b"")  # validation only looks for the file; loading reads it
    assert parse_recipe(BASE + f"[data]\ndataset = 'folder:{tmp_path}'\n" + TRAIN).data.dataset == f"folder:{tmp_path}"


@pytest.mark.parametrize("dataset", ["folder", "folder:"])
def test_folder_without_a_path_is_not_a_dataset(dataset):
    assert "data.dataset must be one of digits, fashion_mnist, folder:PATH" in _error(BASE + f"[data]\ndataset = {dataset!r}\n" + TRAIN)


def test_fashion_mnist_whose_files_are_not_installed_fails_validation(tmp_path, monkeypatch):
    from edgeopt import data

    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (tmp_path / "a", tmp_path / "b"))
    monkeypatch.delenv("EDGEOPT_FASHION_MNIST", raising=False)
    for msg in (_data_error("fashion_mnist"), _error(BASE + TRAIN)):  # named, and the default dataset
        assert msg.startswith(f"r.toml: data.dataset 'fashion_mnist' is not available on this machine: Fashion-MNIST not found in {tmp_path / 'a'}, ")
        assert "apt-get install dataset-fashion-mnist" in msg and "`digits` dataset works without any download" in msg
    assert parse_recipe(BASE + "[data]\ndataset = 'digits'\n" + TRAIN).data.dataset == "digits"
    (tmp_path / "b").mkdir()
    for name in data.FASHION_MNIST_FILES:
        (tmp_path / "b" / name).write_bytes(b"")
    assert parse_recipe(BASE + TRAIN).data.dataset == "fashion_mnist"  # found in the second place it looks


def test_other_mistakes_are_reported_before_a_missing_dataset(tmp_path):
    msg = _error(BASE + f"[data]\ndataset = 'folder:{tmp_path / 'nowhere'}'\n" + TRAIN + "epochs = 'two'\n")
    assert "stages[0].epochs must be integer" in msg
