"""``folder:PATH`` streamed through tf.data: listing, bad files, any size and channel count, order, caching."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeopt import data, keras, tf


def _save(path: Path, pixels: np.ndarray) -> Path:
    """Write uint8 pixels (H, W) grey or (H, W, 3) RGB as an image file; the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """scikit-learn digits (1797 images, 8x8 grey) as PNGs in one sub-folder per class, each file named by its
    index in ``load_raw("digits")``; returns (folder, the raw images)."""
    raw = data.load_raw("digits")
    root = tmp_path_factory.mktemp("digits")
    for i, (image, label) in enumerate(zip(raw.x_train[..., 0], raw.y_train)):
        _save(root / str(label) / f"{i:04d}.png", image)
    return root, raw.x_train


def _index(path: str) -> int:
    return int(Path(path).stem)


def test_streamed_digits_equal_preprocess_images_of_each_file_and_train_a_classifier(digits_folder):
    root, images = digits_folder
    s = data.load_dataset(f"folder:{root}", image_size=8, channels=1, batch_size=32, val_fraction=0.1)
    assert s.sizes == {"train": 1294, "val": 144, "test": 359} and s.skipped == ()
    assert s.preprocessing.class_names == tuple(str(i) for i in range(10))
    x, y = s.arrays("test")
    paths, labels = data._partition(*data._folder_listing(str(root))[:4], 0.2, 0.1, 0, None, None)["test"]
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x, data.preprocess_images(images[[_index(p) for p in paths]], s.preprocessing))
    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(s.train, epochs=5, verbose=0)
    assert model.evaluate(s.test, verbose=0)[1] > 0.9


def test_raw_test_split_gives_the_streamed_test_images_in_order(digits_folder):
    root, _ = digits_folder
    s = data.load_dataset(f"folder:{root}", image_size=8, channels=3, limit_test=20)
    raw_x, raw_y, classes = data.raw_test_split(f"folder:{root}", limit=20)
    assert raw_x.shape == (20, 8, 8, 3) and raw_x.dtype == np.uint8 and classes == s.preprocessing.class_names
    x, y = s.arrays("test")
    np.testing.assert_array_equal(raw_y, y)
    np.testing.assert_array_equal(data.preprocess_images(raw_x, s.preprocessing), x)


def _mixed_folder(root: Path) -> list[tuple[str, np.ndarray]]:
    """train/ and test/ with two classes; test/ holds grey and RGB PNGs of four sizes. Returns the test files
    in listing order (class, then name) with their stored pixels."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(3):
            _save(root / "train" / cls / f"{i}.jpg", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    shapes = {"a": [(12, 12), (9, 20, 3)], "b": [(31, 7, 3), (16, 16)]}
    for cls, cls_shapes in shapes.items():
        for i, shape in enumerate(cls_shapes):
            _save(root / "test" / cls / f"{i}.png", rng.integers(0, 255, shape, dtype=np.uint8))
    return [(str(p), np.asarray(Image.open(p))) for p in sorted((root / "test").glob("*/*.png"))]


@pytest.mark.parametrize("channels", [3, 1])
def test_mixed_sizes_and_grey_rgb_each_equal_preprocess_images(tmp_path, channels):
    files = _mixed_folder(tmp_path)
    s = data.load_dataset(f"folder:{tmp_path}", image_size=(10, 14), channels=channels, val_fraction=0.0)
    assert s.sizes == {"train": 6, "val": 0, "test": 4}
    x, y = s.arrays("test")
    assert x.shape == (4, 10, 14, channels) and x.dtype == np.float32
    np.testing.assert_array_equal(y, [0, 0, 1, 1])
    for got, (_, pixels) in zip(x, files):  # one image at a time: resized from its own size by the one resize
        np.testing.assert_array_equal(got, data.preprocess_images(pixels[None], s.preprocessing)[0])
    assert s.arrays("train")[0].shape == (6, 10, 14, channels)


def test_raw_test_split_of_mixed_sizes_lists_the_stored_images_as_rgb(tmp_path):
    files = _mixed_folder(tmp_path)
    images, labels, _ = data.raw_test_split(f"folder:{tmp_path}")
    assert isinstance(images, list) and [im.shape for im in images] == [(12, 12, 3), (9, 20, 3), (31, 7, 3), (16, 16, 3)]
    for image, (_, pixels) in zip(images, files):
        np.testing.assert_array_equal(image, pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, -1))
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="holds images of different sizes; load_raw stacks one size: use load_dataset"):
        data.load_raw(f"folder:{tmp_path}")


def _folder_with_bad_files(root: Path) -> list[str]:
    """Two classes of 8 good 8x8 PNGs plus a truncated JPEG, an empty .png and a text file named .jpg; returns the
    bad files' paths in listing order."""
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        for i in range(8):
            _save(root / cls / f"{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "a" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "b" / "notes.jpg").write_text("not an image")
    return [str(root / "a" / "cut.jpg"), str(root / "a" / "empty.png"), str(root / "b" / "notes.jpg")]


def test_bad_files_raise_before_training_naming_each_file(tmp_path):
    bad = _folder_with_bad_files(tmp_path)
    with pytest.raises(ValueError) as err:
        data.load_dataset(f"folder:{tmp_path}", image_size=8)
    message = str(err.value)
    assert "\n" not in message and message.startswith("3 image file(s) cannot be read: ")
    assert f"{bad[0]} (truncated or corrupt" in message and f"{bad[1]} (empty file)" in message
    assert f"{bad[2]} (not a JPEG, PNG, GIF or BMP image)" in message
    assert 'set data.on_bad_image = "skip"' in message


def test_skip_drops_exactly_the_bad_files_and_lists_them(tmp_path):
    bad = _folder_with_bad_files(tmp_path)
    with pytest.warns(UserWarning, match="skipped 3 image file"):
        s = data.load_dataset(f"folder:{tmp_path}", image_size=8, val_fraction=0.25, on_bad_image="skip")
    assert s.skipped == tuple(bad)
    assert sum(s.sizes.values()) == 16
    seen = np.concatenate([s.arrays(split)[0] for split in ("train", "val", "test")])
    good = [np.asarray(Image.open(p)) for p in sorted(tmp_path.glob("*/[0-9].png"))]
    expected = data.preprocess_images(np.stack(good), s.preprocessing)
    assert sorted(map(bytes, seen)) == sorted(map(bytes, expected))  # every good image once, no bad one


def _corrupt_inside_png(path: Path) -> None:
    """A PNG whose signature and end chunk are intact but whose pixel data is zeroed: only decoding finds it."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    raw = bytearray(buf.getvalue())
    raw[60:80] = bytes(20)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", ["3.png", "z.png"])  # in the middle of the pass, and its very last file
def test_a_file_only_the_decoder_rejects_is_named_when_reached(tmp_path, name):
    _mixed_folder(tmp_path)
    _corrupt_inside_png(tmp_path / "test" / "b" / name)
    s = data.load_dataset(f"folder:{tmp_path}", image_size=8, val_fraction=0.0)
    assert s.sizes["test"] == 5  # the cheap check at load time passes it
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"image file {tmp_path / 'test' / 'b' / name} cannot be decoded"):
        s.arrays("test")
    s = data.load_dataset(f"folder:{tmp_path}", image_size=8, val_fraction=0.0, on_bad_image="skip")
    np.testing.assert_array_equal(s.arrays("test")[1], [0, 0, 1, 1])


def test_one_class_empty_class_and_unknown_options_are_one_line_errors(tmp_path):
    _save(tmp_path / "cat" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"has 1 class \(cat\); a classifier needs at least 2 sub-folders"):
        data.load_dataset(f"folder:{tmp_path}")
    (tmp_path / "dog").mkdir()
    with pytest.raises(ValueError, match=f"class folder {tmp_path / 'dog'} has no images .*; add some or remove the folder"):
        data.load_dataset(f"folder:{tmp_path}")
    with pytest.raises(ValueError, match="on_bad_image must be one of error, skip; got 'ignore'"):
        data.load_dataset(f"folder:{tmp_path}", on_bad_image="ignore")


def test_training_order_reshuffles_each_pass_and_restarts_from_the_seed(digits_folder):
    root, _ = digits_folder
    s = data.load_dataset(f"folder:{root}", image_size=8, channels=1, batch_size=64, limit_train=256, seed=3)
    first, second = (np.concatenate([y.numpy() for _, y in s.train]) for _ in range(2))
    fresh = np.concatenate([y.numpy() for _, y in s.with_fresh_train().train])
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)
    np.testing.assert_array_equal(fresh, first)
    other = data.load_dataset(f"folder:{root}", image_size=8, channels=1, batch_size=64, limit_train=256, seed=4)
    assert not np.array_equal(np.concatenate([y.numpy() for _, y in other.train]), first)


def test_images_are_read_while_iterating_not_at_construction(tmp_path):
    files = [_save(tmp_path / cls / f"{i}.png", np.full((6, 6), 10, np.uint8)) for cls in ("a", "b") for i in range(5)]
    s = data.load_dataset(f"folder:{tmp_path}", image_size=6, channels=1, mean=0.0, std=1.0)
    for p in files:  # same format, new pixels: the pipeline must see these
        _save(p, np.full((6, 6), 200, np.uint8))
    assert set(np.unique(np.concatenate([s.arrays(k)[0] for k in ("train", "val", "test")]))) == {200.0}


@pytest.mark.parametrize("cache", ["memory", "dir"])
def test_cache_gives_the_same_inputs_and_keeps_them_after_the_first_pass(tmp_path, cache):
    files = [_save(tmp_path / "data" / cls / f"{i}.png", np.full((6, 6), 10 * i, np.uint8)) for cls in ("a", "b") for i in range(5)]
    where = "memory" if cache == "memory" else str(tmp_path / "cache")
    s = data.load_dataset(f"folder:{tmp_path / 'data'}", image_size=4, channels=1, val_fraction=0.0, cache=where, mean=0.0, std=1.0)
    plain = data.load_dataset(f"folder:{tmp_path / 'data'}", image_size=4, channels=1, val_fraction=0.0, mean=0.0, std=1.0)
    first = s.arrays("test")
    np.testing.assert_array_equal(first[0], plain.arrays("test")[0])
    train = sorted(map(bytes, s.arrays("train")[0]))
    assert train == sorted(map(bytes, plain.arrays("train")[0])) and len(train) == 8
    for p in files:
        p.unlink()  # a second pass reads the cache, not the files
    np.testing.assert_array_equal(s.arrays("test")[0], first[0])
    assert sorted(map(bytes, s.arrays("train")[0])) == train
    if cache == "dir":
        assert any(p.name.startswith("test-") for p in (tmp_path / "cache").iterdir())


def test_limits_take_every_class_of_a_folder_alike(tmp_path):
    """A folder is listed class by class; limit_train / limit_test take from every class alike, not the first classes,
    and raw_test_split keeps matching the test split."""
    for c in "abc":
        (tmp_path / c).mkdir()
        for i in range(20):
            Image.new("L", (8, 8), color=10 * i).save(tmp_path / c / f"{i:02d}.png")
    s = data.load_dataset(f"folder:{tmp_path}", image_size=8, channels=1, batch_size=8, val_fraction=0.0, limit_train=9, limit_test=6, shuffle=False)
    assert np.bincount(s.arrays("train")[1], minlength=3).tolist() == [3, 3, 3]
    assert np.bincount(s.arrays("test")[1], minlength=3).tolist() == [2, 2, 2]
    images, labels, _ = data.raw_test_split(f"folder:{tmp_path}", limit=6)
    np.testing.assert_array_equal(labels, s.arrays("test")[1])
