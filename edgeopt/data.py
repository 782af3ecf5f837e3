"""Datasets -> batched tf.data pipelines plus the :class:`Preprocessing` record that export and bench reuse.

Sources (a registry): ``fashion_mnist`` (idx files from Debian's dataset-fashion-mnist package or the Keras
cache), ``digits`` (scikit-learn, always offline) and ``folder:PATH`` (one sub-folder per class, optional
``train/`` and ``test/`` sub-folders). Images are kept as uint8 until the pipeline resizes, repeats grey
channels and normalizes them: model input = (pixel - mean) / std.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt._keras import tf
from edgeopt.config import Config
from edgeopt.registry import Registry

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_DIRS = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path.home() / ".keras" / "datasets" / "fashion-mnist",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


class DatasetUnavailableError(FileNotFoundError):
    """A dataset source that is not on this machine; the message says how to get it."""


@dataclass(frozen=True)
class Preprocessing(Config):
    """What an app must feed the model: resize to ``image_size``, ``channels``, then (pixel - mean) / std.

    ``mean``/``std`` are in pixel units (0..255), the TFLite-metadata convention; the defaults map
    [0, 255] to [-1, 1].
    """

    image_size: tuple[int, int]
    channels: int
    mean: float = 127.5
    std: float = 127.5
    class_names: tuple[str, ...] = ()
    dataset: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, self.channels)

    @property
    def input_range(self) -> tuple[float, float]:
        return ((0 - self.mean) / self.std, (255 - self.mean) / self.std)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8/float pixels (already resized) -> float32 model input."""
        return ((np.asarray(pixels, np.float32) - self.mean) / self.std).astype(np.float32)


@dataclass(frozen=True)
class RawData:
    """A source's images as uint8 (N, H, W, C) with integer labels; test may be split off by the loader."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: tuple[str, ...]


@dataclass
class Splits:
    """Train / validation / test pipelines (batched, prefetched) and the preprocessing they applied."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    preprocessing: Preprocessing
    sizes: dict[str, int] = field(default_factory=dict)
    make_train: Callable[[], tf.data.Dataset] | None = field(default=None, repr=False)

    def with_fresh_train(self) -> "Splits":
        """A copy whose training pipeline is new, so its shuffle order restarts from the seed (each
        iteration of a seeded tf.data pipeline reshuffles differently; resumed runs need the same order)."""
        return replace(self, train=self.make_train()) if self.make_train else self

    def arrays(self, split: str = "test", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The model inputs and labels of a split as NumPy arrays (at most ``limit`` samples)."""
        ds = getattr(self, split).unbatch()
        if limit:
            ds = ds.take(limit)
        xs, ys = [], []
        for x, y in ds.batch(1024):
            xs.append(x.numpy())
            ys.append(y.numpy())
        return np.concatenate(xs), np.concatenate(ys)


SOURCES: Registry[Callable[..., RawData]] = Registry("dataset")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {arr.size}")
    return arr.reshape(shape)


FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _fashion_mnist_dir() -> Path:
    """The first directory holding the four Fashion-MNIST idx files; raises DatasetUnavailableError saying how to get them."""
    dirs = [Path(os.environ["EDGEOPT_FASHION_MNIST"])] if os.environ.get("EDGEOPT_FASHION_MNIST") else []
    dirs += list(FASHION_MNIST_DIRS)
    for d in dirs:
        if all((d / n).exists() for n in FASHION_MNIST_FILES):
            return d
    raise DatasetUnavailableError(
        "Fashion-MNIST not found in " + ", ".join(map(str, dirs)) + ". Install it offline with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; scripts/setup.sh does this), or put the "
        "four idx .gz files in ~/.keras/datasets/fashion-mnist/ or $EDGEOPT_FASHION_MNIST. "
        "The `digits` dataset works without any download."
    )


@SOURCES.register("fashion_mnist")
def _fashion_mnist(**_) -> RawData:
    d = _fashion_mnist_dir()
    xtr, ytr, xte, yte = (_read_idx(d / n) for n in FASHION_MNIST_FILES)
    return RawData(xtr[..., None], ytr.astype(np.int64), xte[..., None], yte.astype(np.int64), FASHION_MNIST_CLASSES)


@SOURCES.register("digits")
def _digits(**_) -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return RawData(images, d.target.astype(np.int64), None, None, tuple(str(i) for i in range(10)))


def _read_folder(root: Path, class_names: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from PIL import Image

    classes = _class_folders(root, class_names)
    images, labels, size = [], [], None
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if (root / cls).is_dir() else []
        for p in files:
            try:
                img = Image.open(p).convert("RGB")
            except OSError as err:
                raise ValueError(f"cannot read image {p}: {err}") from err
            size = size or img.size
            if img.size != size:
                img = img.resize(size)
            images.append(np.asarray(img, np.uint8))
            labels.append(label)
    if not images:
        raise DatasetUnavailableError(f"image folder {root} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class sub-folders")
    return np.stack(images), np.asarray(labels, np.int64), classes


def _class_folders(root: Path, class_names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The class names of image folder ``root`` (its sub-folders, sorted, unless given); raises DatasetUnavailableError
    if there are none or none holds an image file. Lists directories only: no image is opened."""
    classes = class_names or tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not classes:
        raise DatasetUnavailableError(f"image folder {root} has no class sub-folders; expected {root}/<class>/<image>.png")
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for c in classes if (root / c).is_dir() for p in (root / c).iterdir()):
        raise DatasetUnavailableError(f"image folder {root} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class sub-folders")
    return classes


def _folder_roots(path: str) -> tuple[Path, Path | None]:
    """(train folder, test folder or None) of ``folder:PATH``: PATH/train and PATH/test when both exist, else PATH."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetUnavailableError(f"image folder {root} does not exist; use folder:PATH with PATH/<class>/<image>")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root / "train", root / "test"
    return root, None


@SOURCES.register("folder")
def _folder(path: str = "", **_) -> RawData:
    train_root, test_root = _folder_roots(path)
    x, y, classes = _read_folder(train_root)
    if test_root is None:
        return RawData(x, y, None, None, classes)
    xte, yte, _ = _read_folder(test_root, classes)
    return RawData(x, y, xte, yte, classes)


def _check_folder(path: str) -> None:
    train_root, test_root = _folder_roots(path)
    classes = _class_folders(train_root)
    if test_root is not None:
        _class_folders(test_root, classes)


# How to tell, cheaply, that a source's files are on this machine; sources not listed (digits) always are.
_AVAILABILITY_CHECKS: dict[str, Callable[[str], object]] = {
    "fashion_mnist": lambda _: _fashion_mnist_dir(),
    "folder": _check_folder,
}


def check_dataset(name: str) -> None:
    """Raise :class:`DatasetUnavailableError` (its one-line message says what would work) if dataset ``name``
    is not on this machine. Cheap: it looks for the files and folders and reads no image."""
    source, _, path = name.partition(":") if name.startswith("folder:") else (name, "", "")
    SOURCES.get(source)
    check = _AVAILABILITY_CHECKS.get(source)
    if check is not None:
        check(path)


def class_names(name: str) -> tuple[str, ...]:
    """The class names of dataset ``name`` without reading its images where the source allows it
    (Fashion-MNIST's are fixed, an image folder's are its sub-folders); other sources are loaded."""
    if name == "fashion_mnist":
        return FASHION_MNIST_CLASSES
    if name.startswith("folder:"):
        return _class_folders(_folder_roots(name.split(":", 1)[1])[0])
    return load_raw(name).class_names


def load_raw(name: str) -> RawData:
    """The uint8 images of a source; ``folder:PATH`` reads an image folder."""
    if name.startswith("folder:"):
        return SOURCES.get("folder")(path=name.split(":", 1)[1])
    return SOURCES.get(name)()


def list_datasets() -> list[str]:
    return [n if n != "folder" else "folder:PATH" for n in SOURCES.names()]


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * fraction))
    return np.sort(order[k:]), np.sort(order[:k])


def load_dataset(
    name: str,
    image_size: int | tuple[int, int] = 32,
    channels: int = 3,
    batch_size: int = 64,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    mean: float = 127.5,
    std: float = 127.5,
    augment: bool = False,
    shuffle: bool = True,
) -> Splits:
    """Load a dataset as train / validation / test ``tf.data`` pipelines plus its :class:`Preprocessing`.

    The validation split (``val_fraction`` of train) depends on ``seed``; sources without a test split
    (``digits``, a flat folder) get a fixed ``test_fraction`` split (seed 0) so every run tests on the
    same images. ``limit_train``/``limit_test`` keep the first N samples (after splitting) for quick runs.
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not 0 <= val_fraction < 1 or not 0 < test_fraction < 1:
        raise ValueError("val_fraction must be in [0, 1) and test_fraction in (0, 1)")
    raw = load_raw(name)
    x_train, y_train, x_test, y_test = _train_test(raw, test_fraction)
    keep, val = _split(len(x_train), val_fraction, seed)
    x_val, y_val = x_train[val], y_train[val]
    x_train, y_train = x_train[keep][:limit_train], y_train[keep][:limit_train]
    x_test, y_test = x_test[:limit_test], y_test[:limit_test]
    prep = Preprocessing(tuple(image_size), channels, mean, std, raw.class_names, name)

    def pipeline(x, y, training: bool) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.batch(1024).map(lambda a, b: (_to_model_input(a, prep), b), num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()
        if training and shuffle:
            ds = ds.shuffle(min(len(x), 10_000), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if training and augment:
            ds = ds.map(lambda a, b: (tf.image.random_flip_left_right(a, seed=seed), b), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    sizes = {"train": len(x_train), "val": len(x_val), "test": len(x_test)}
    return Splits(pipeline(x_train, y_train, True), pipeline(x_val, y_val, False), pipeline(x_test, y_test, False), prep, sizes,
                  make_train=lambda: pipeline(x_train, y_train, True))


def _train_test(raw: RawData, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) of a source; one without a test split gets a fixed one (seed 0)."""
    if raw.x_test is not None:
        return raw.x_train, raw.y_train, raw.x_test, raw.y_test
    keep, test = _split(len(raw.x_train), test_fraction, seed=0)
    return raw.x_train[keep], raw.y_train[keep], raw.x_train[test], raw.y_train[test]


def raw_test_split(name: str, limit: int | None = None, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The test split of dataset ``name`` as stored: uint8 images (N, H, W, C) before any resizing, their
    labels and the class names; the same images, in the same order, as ``load_dataset(name).test`` (before its resizing)."""
    raw = load_raw(name)
    _, _, x_test, y_test = _train_test(raw, test_fraction)
    return x_test[:limit], y_test[:limit], raw.class_names


def resize_like_mediapipe(images, size: tuple[int, int]):
    """Bilinear resize of a batch (N, H, W, C) to ``size`` the way MediaPipe's ImageClassifier resizes a camera
    frame on Android: asymmetric coordinates (source = destination * in / out, no half-pixel centers, no
    antialiasing). Measured with a probe model whose output is its input tensor: within 0.9 of a pixel level
    on average (MediaPipe rounds in uint8) where tf.image.resize's half-pixel bilinear differs by 8.6. Training,
    calibration and evaluation all resize this way, so edgeopt's accuracy is the app's."""
    return tf.raw_ops.ResizeBilinear(images=images, size=list(size), align_corners=False, half_pixel_centers=False)


def _to_model_input(images, prep: Preprocessing):
    x = tf.cast(images, tf.float32)
    if tuple(x.shape[1:3]) != prep.image_size:
        x = resize_like_mediapipe(x, prep.image_size)
    if x.shape[-1] == 1 and prep.channels == 3:
        x = tf.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 3 and prep.channels == 1:
        x = tf.image.rgb_to_grayscale(x)
    return (x - prep.mean) / prep.std


def preprocess_images(images: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 images (N, H, W, C) of any size -> float32 model inputs, exactly as the pipelines do it."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return _to_model_input(tf.constant(images), prep).numpy()
