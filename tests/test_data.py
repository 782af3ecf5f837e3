import numpy as np
import pytest

from edgeopt import data


def test_fashion_mnist_loads_offline_with_documented_sizes():
    raw = data.load_raw("fashion_mnist")
    assert raw.x_train.shape == (60_000, 28, 28, 1) and raw.x_test.shape == (10_000, 28, 28, 1)
    assert raw.x_train.dtype == np.uint8 and set(np.unique(raw.y_train)) == set(range(10))
    assert raw.class_names[0] == "T-shirt/top" and len(raw.class_names) == 10


def test_class_names_without_loading_match_the_loaded_ones():
    for name in ("fashion_mnist", "digits"):
        assert data.class_names(name) == data.load_raw(name).class_names


def test_digits_loads_offline_with_documented_size():
    raw = data.load_raw("digits")
    assert raw.x_train.shape == (1797, 8, 8, 1) and raw.x_test is None
    assert raw.x_train.max() == 255


def test_splits_are_deterministic_resized_and_grey_repeated():
    s1 = data.load_dataset("digits", image_size=16, channels=3, seed=1)
    s2 = data.load_dataset("digits", image_size=16, channels=3, seed=1)
    s3 = data.load_dataset("digits", image_size=16, channels=3, seed=2)
    assert s1.sizes["train"] + s1.sizes["val"] + s1.sizes["test"] == 1797
    xv1, yv1 = s1.arrays("val")
    xv2, yv2 = s2.arrays("val")
    np.testing.assert_array_equal(yv1, yv2)
    np.testing.assert_array_equal(xv1, xv2)
    assert not np.array_equal(s3.arrays("val")[1], yv1)
    np.testing.assert_array_equal(s1.arrays("test")[1], s3.arrays("test")[1])  # test split fixed
    x, _ = s1.arrays("train", limit=10)
    assert x.shape == (10, 16, 16, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_fashion_mnist_split_sizes_and_limits():
    s = data.load_dataset("fashion_mnist", image_size=32, val_fraction=0.1, limit_train=500, limit_test=200)
    assert s.sizes == {"train": 500, "val": 6000, "test": 200}
    assert s.preprocessing.input_shape == (32, 32, 3)
    assert s.preprocessing.input_range == (-1.0, 1.0)


def test_preprocess_images_matches_pipeline():
    s = data.load_dataset("digits", image_size=16, channels=3)
    raw = data.load_raw("digits")
    x_pipe, _ = s.arrays("test", limit=5)
    keep, test = data._split(1797, 0.2, seed=0)
    x_np = data.preprocess_images(raw.x_train[test[:5]], s.preprocessing)
    np.testing.assert_allclose(x_np, x_pipe, atol=1e-6)


def test_missing_sources_say_what_works(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (tmp_path / "nope",))
    monkeypatch.delenv("EDGEOPT_FASHION_MNIST", raising=False)
    with pytest.raises(data.DatasetUnavailableError, match="apt-get install dataset-fashion-mnist.*digits"):
        data.load_raw("fashion_mnist")
    with pytest.raises(data.DatasetUnavailableError, match="does not exist"):
        data.load_dataset(f"folder:{tmp_path / 'none'}")
    with pytest.raises(KeyError, match="known datasets: digits, fashion_mnist, folder"):
        data.load_dataset("cifar10")


def test_image_folder_source(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    s = data.load_dataset(f"folder:{tmp_path}", image_size=8, test_fraction=0.2, val_fraction=0.25)
    assert s.preprocessing.class_names == ("cat", "dog")
    assert data.class_names(f"folder:{tmp_path}") == ("cat", "dog")  # read from the folder names alone
    assert s.sizes == {"train": 12, "val": 4, "test": 4}
    assert s.arrays("train")[0].shape == (12, 8, 8, 3)


def test_crop_padding_shifts_training_images_only_and_pads_with_black():
    import numpy as np
    import pytest

    from edgeopt.data import load_dataset

    plain = load_dataset("fashion_mnist", image_size=28, channels=1, batch_size=256, limit_train=256, limit_test=64, shuffle=False)
    shifted = load_dataset("fashion_mnist", image_size=28, channels=1, batch_size=256, limit_train=256, limit_test=64, shuffle=False, crop_padding=3)
    x0, y0 = next(iter(plain.train))
    x1, y1 = next(iter(shifted.train))
    assert np.array_equal(y0.numpy(), y1.numpy()) and x1.shape == x0.shape
    changed = np.mean([not np.array_equal(a, b) for a, b in zip(x0.numpy(), x1.numpy())])
    assert changed > 0.5  # most images moved (a shift of (0, 0) has chance 1/49)
    assert x1.numpy().min() >= -1.0 - 1e-6  # padding is a black pixel: (0 - 127.5) / 127.5
    # each shifted image is its original moved by at most 3 pixels: some offset matches it exactly
    padded = np.pad(x0.numpy()[0, :, :, 0], 3, constant_values=-1.0)
    assert any(np.array_equal(padded[i:i + 28, j:j + 28], x1.numpy()[0, :, :, 0]) for i in range(7) for j in range(7))
    assert np.array_equal(next(iter(plain.test))[0].numpy(), next(iter(shifted.test))[0].numpy())  # evaluation untouched
    with pytest.raises(ValueError, match="crop_padding"):
        load_dataset("digits", image_size=16, crop_padding=8)
