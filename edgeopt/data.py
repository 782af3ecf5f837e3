"""Datasets -> batched tf.data pipelines plus the :class:`Preprocessing` record that export and bench reuse.

Sources (a registry): ``fashion_mnist`` (idx files from Debian's dataset-fashion-mnist package or the Keras
cache), ``digits`` (scikit-learn, always offline) and ``folder:PATH`` (one sub-folder per class, optional
``train/`` and ``test/`` sub-folders). In-memory sources are kept as uint8 until the pipeline resizes, repeats
grey channels and normalizes them: model input = (pixel - mean) / std. Image folders are streamed: the pipeline
holds the file list and reads, decodes and preprocesses each image (any size, grey or colour) with the same
functions, so memory does not grow with the number of images.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import sys
import warnings
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
BAD_IMAGE_ACTIONS = ("error", "skip")


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
    """Train / validation / test pipelines (batched, prefetched) and the preprocessing they applied.

    ``skipped``: the image files left out because they cannot be read (``on_bad_image="skip"``), in listing order.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    preprocessing: Preprocessing
    sizes: dict[str, int] = field(default_factory=dict)
    make_train: Callable[[], tf.data.Dataset] | None = field(default=None, repr=False)
    skipped: tuple[str, ...] = ()

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


# ---- image folders: listed without opening an image, checked once, decoded by tf.data while training ---------


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


def _image_paths(folder: Path) -> list[str]:
    """The image files (by suffix) directly in ``folder``, sorted by name; one ``os.scandir``, no ``stat`` per file."""
    with os.scandir(folder) as entries:
        return sorted(e.path for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file())


def _list_images(root: Path, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(paths (N,) str, labels (N,) int64) of the images of every class folder of ``root``, class by class; raises
    ValueError naming a class folder that is missing or holds no image (an empty class can be neither learned nor tested)."""
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = _image_paths(root / cls) if (root / cls).is_dir() else []
        if not found:
            raise ValueError(f"class folder {root / cls} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); add some or remove the folder")
        paths += found
        labels += [label] * len(found)
    return np.array(paths, dtype=str), np.array(labels, np.int64)


def _folder_listing(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, tuple[str, ...]]:
    """(train paths, train labels, test paths or None, test labels or None, class names) of ``folder:PATH``, without
    opening an image. Raises a one-line ValueError for fewer than 2 classes, an empty class folder or test classes
    that train lacks."""
    train_root, test_root = _folder_roots(path)
    classes = _class_folders(train_root)
    if len(classes) < 2:
        raise ValueError(f"image folder {train_root} has {len(classes)} class ({', '.join(classes)}); a classifier needs at least 2 sub-folders")
    x, y = _list_images(train_root, classes)
    if test_root is None:
        return x, y, None, None, classes
    extra = sorted({p.name for p in test_root.iterdir() if p.is_dir()} - set(classes))
    if extra:
        raise ValueError(f"test folder {test_root} has classes that {train_root} lacks ({', '.join(extra)}); give both the same sub-folders")
    return (x, y, *_list_images(test_root, classes), classes)


# (leading bytes, trailing bytes of a complete file, or None for a format without a reliable end marker)
_IMAGE_FORMATS = ((b"\xff\xd8\xff", b"\xff\xd9"), (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"), (b"GIF8", b";"), (b"BM", None))
_SKIP_HINT = 'set data.on_bad_image = "skip" (load_dataset(..., on_bad_image="skip")) to skip such files'
_DECODE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnknownError)


def _image_file_problem(path: str) -> str | None:
    """Why ``path`` is not a decodable image ("empty file", "not a JPEG, PNG, GIF or BMP image", "truncated or
    corrupt"), or None. Reads the first and last 8 bytes; only a file whose end marker is missing (truncated, a BMP,
    or data appended after the image as phone "motion photos" do) is decoded, by tf.io.decode_image as in training."""
    try:
        with open(path, "rb") as f:
            head, size = f.read(8), os.fstat(f.fileno()).st_size
            f.seek(max(size - 8, 0))
            tail = f.read(8)
    except OSError as err:
        return f"cannot be opened: {err.strerror or err}"
    if not head:
        return "empty file"
    end = next((e for magic, e in _IMAGE_FORMATS if head.startswith(magic)), False)
    if end is False:
        return "not a JPEG, PNG, GIF or BMP image"
    if end is not None and tail.endswith(end):
        return None
    try:
        tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    except _DECODE_ERRORS:
        return "truncated or corrupt: tf.io.decode_image cannot decode it"
    return None


def _image_problems(paths: np.ndarray) -> dict[str, str]:
    """{path: problem} of the files of ``paths`` that are not decodable images (see :func:`_image_file_problem`), in
    the order of ``paths``. 14-30 ms per 1,000 JPEGs in the page cache (60,000 28x28: 0.85 s), where PIL's ``verify``
    takes 45 ms and misses truncated JPEGs and a full decode 70-450 ms (28x28 to 224x224). 4 threads, each checking
    a slice, so a cold disk's read latency overlaps (one future per file would cost 3-6x more)."""
    from concurrent.futures import ThreadPoolExecutor

    def check(part: np.ndarray) -> list[str | None]:
        return [_image_file_problem(p) for p in part]

    with ThreadPoolExecutor(4) as pool:
        found = [why for part in pool.map(check, np.array_split(paths, 16)) for why in part]
    return {p: why for p, why in zip(paths, found) if why}


def _bad_images_message(problems: dict[str, str], shown: int = 3) -> str:
    """One line naming the first ``shown`` bad files and their problems."""
    named = "; ".join(f"{p} ({why})" for p, why in list(problems.items())[:shown])
    more = f" and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} image file(s) cannot be read: {named}{more}"


def _drop_bad_images(parts: dict[str, tuple[np.ndarray, np.ndarray]], on_bad_image: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[str, ...]]:
    """(``parts`` ({split: (paths, labels)}) without its unreadable files, those files' paths). ``on_bad_image``
    "error" raises a ValueError naming them instead; "skip" warns once, naming the first few."""
    problems = _image_problems(np.concatenate([p for p, _ in parts.values()]))
    if not problems:
        return parts, ()
    if on_bad_image == "error":
        raise ValueError(f"{_bad_images_message(problems)}; {_SKIP_HINT}")
    warnings.warn(f"skipped {_bad_images_message(problems)}", stacklevel=3)
    keep = {k: ~np.isin(p, list(problems)) for k, (p, _) in parts.items()}
    return {k: (p[keep[k]], y[keep[k]]) for k, (p, y) in parts.items()}, tuple(problems)


def _read_images(paths: np.ndarray) -> list[np.ndarray]:
    """The images of ``paths`` as stored (uint8 (H, W, 3): grey repeated, alpha dropped), decoded by tf.io.decode_image
    as training does; raises ValueError naming a file it cannot decode."""
    images = []
    for p in paths:
        try:
            images.append(tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False).numpy())
        except _DECODE_ERRORS as err:
            raise ValueError(f"image file {p} cannot be decoded by tf.io.decode_image; {_SKIP_HINT}") from err
    return images


def _stack_one_size(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """``images`` as one uint8 array (N, H, W, C) if they share a shape, else the list itself."""
    if not images:
        return np.zeros((0, 1, 1, 3), np.uint8)
    return np.stack(images) if len({im.shape for im in images}) == 1 else images


@SOURCES.register("folder")
def _folder(path: str = "", **_) -> RawData:
    """Every image of ``folder:PATH`` in memory (uint8 RGB); the images must share one size. Training streams
    instead (:func:`load_dataset`); this is for tools that want arrays."""
    x, y, x_test, y_test, classes = _folder_listing(path)
    arrays = [None if p is None else _stack_one_size(_read_images(p)) for p in (x, x_test)]
    if any(isinstance(a, list) for a in arrays):
        raise ValueError(f"image folder {path} holds images of different sizes; load_raw stacks one size: use load_dataset, which resizes each image")
    return RawData(arrays[0], y, arrays[1], y_test, classes)


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


def _train_test(x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None,
                test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) of a source (images or file paths); one without a test split gets a fixed one (seed 0)."""
    if x_test is not None:
        return x, y, x_test, y_test
    keep, test = _split(len(x), test_fraction, seed=0)
    return x[keep], y[keep], x[test], y[test]


def _first(n: int | None, labels: np.ndarray, balanced: bool) -> np.ndarray:
    """Positions of the first ``n`` samples (all when None). ``balanced`` (image folders, listed class by class, whose
    first n would hold only the first classes): the first of each class, then the second of each, and so on, kept in
    listing order. Fashion-MNIST and digits are stored with the classes mixed, so their first n are taken as they are."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if not balanced:
        return np.arange(n)
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        at = np.flatnonzero(labels == c)
        rank[at] = np.arange(len(at))
    return np.sort(np.lexsort((labels, rank))[:n])


def _partition(x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None, test_fraction: float,
               val_fraction: float, seed: int, limit_train: int | None, limit_test: int | None,
               balanced: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "val", "test": (images or file paths, labels)}: the test split (the source's or a fixed one), then
    ``val_fraction`` of train by ``seed``, then the first ``limit_train`` / ``limit_test`` of train and test
    (``balanced``: every class alike, see :func:`_first`)."""
    x, y, x_test, y_test = _train_test(x, y, x_test, y_test, test_fraction)
    keep, val = _split(len(x), val_fraction, seed)
    keep = keep[_first(limit_train, y[keep], balanced)]
    test = _first(limit_test, y_test, balanced)
    return {"train": (x[keep], y[keep]), "val": (x[val], y[val]), "test": (x_test[test], y_test[test])}


@dataclass(frozen=True)
class _Feed:
    """How every split is fed: preprocessing, batch size, training shuffle and augmentation, and for streamed folders
    the cache (None, "memory" or a directory) and what a file that fails to decode does ("error" or "skip")."""

    prep: Preprocessing
    batch_size: int
    seed: int
    shuffle: bool
    augment: bool
    cache: str | None = None
    on_bad_image: str = "error"
    crop_padding: int = 0


def check_feed_options(cache: str | None, on_bad_image: str) -> None:
    """Raise ValueError naming ``cache`` or ``on_bad_image`` when :func:`load_dataset` cannot take it (recipes check
    their data section with it before a run starts)."""
    if on_bad_image not in BAD_IMAGE_ACTIONS:
        raise ValueError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_ACTIONS)}; got {on_bad_image!r}")
    if cache is not None and not (isinstance(cache, str) and cache):
        raise ValueError(f'cache must be None, "memory" or a directory path; got {cache!r}')


def check_crop_padding(crop_padding: int, image_size: int | tuple[int, int]) -> None:
    """Raise ValueError naming ``crop_padding`` unless it is 0 (off) or a shift smaller than half the image."""
    side = min(image_size) if isinstance(image_size, tuple) else image_size
    if not isinstance(crop_padding, int) or isinstance(crop_padding, bool) or not 0 <= crop_padding < side / 2:
        raise ValueError(f"crop_padding must be 0 (off) or a pixel count below half the image ({side} px), e.g. 2-4 at 28-32 px; got {crop_padding!r}")


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
    cache: str | None = None,
    on_bad_image: str = "error",
    crop_padding: int = 0,
) -> Splits:
    """Load a dataset as train / validation / test ``tf.data`` pipelines plus its :class:`Preprocessing`.

    The validation split (``val_fraction`` of train) depends on ``seed``; sources without a test split
    (``digits``, a flat folder) get a fixed ``test_fraction`` split (seed 0) so every run tests on the
    same images. ``limit_train``/``limit_test`` keep the first N samples (after splitting) for quick runs; from an image
    folder, listed class by class, the first N taken from every class alike.

    ``folder:PATH`` streams: the pipelines hold file paths, and each pass reads, decodes (any size, grey or colour)
    and preprocesses every image; training shuffles the whole file list each pass. ``cache``: None re-reads the files
    every pass; "memory" keeps each split's model inputs in memory after the first pass (float32: H*W*C*4 bytes an
    image); a directory keeps them in tf.data cache files there, named by preprocessing and file list (a change makes
    new files); with a cache, training shuffles a once-permuted file list through a buffer of at most 256 MB. Before
    any pipeline is built every file used is checked (first and last bytes; see :func:`_image_file_problem`):
    ``on_bad_image="error"`` raises a ValueError naming unreadable files, "skip" leaves them out and lists them in
    ``Splits.skipped``. Training augmentation: ``augment`` flips images left-right at random (for classes a mirror
    leaves the same); ``crop_padding`` = P pads each image with P black pixels on every side and crops a random window
    of its size (a shift of up to P pixels). In-memory sources (fashion_mnist, digits) ignore ``cache`` and ``on_bad_image``: their model
    inputs are computed once and cached in memory.
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not 0 <= val_fraction < 1 or not 0 < test_fraction < 1:
        raise ValueError("val_fraction must be in [0, 1) and test_fraction in (0, 1)")
    check_feed_options(cache, on_bad_image)
    check_crop_padding(crop_padding, image_size)
    folder = name.startswith("folder:")
    if folder:
        x, y, x_test, y_test, classes = _folder_listing(name.split(":", 1)[1])
    else:
        raw = load_raw(name)
        x, y, x_test, y_test, classes = raw.x_train, raw.y_train, raw.x_test, raw.y_test, raw.class_names
    parts = _partition(x, y, x_test, y_test, test_fraction, val_fraction, seed, limit_train, limit_test, balanced=folder)
    parts, skipped = _drop_bad_images(parts, on_bad_image) if folder else (parts, ())
    feed = _Feed(Preprocessing(tuple(image_size), channels, mean, std, classes, name), batch_size, seed, shuffle, augment, cache, on_bad_image,
                 crop_padding)
    source = _streamed if folder else _in_memory

    def pipeline(split: str) -> tf.data.Dataset:
        return _batched(source(*parts[split], feed, split), feed, split == "train")

    sizes = {k: len(labels) for k, (_, labels) in parts.items()}
    return Splits(pipeline("train"), pipeline("val"), pipeline("test"), feed.prep, sizes, make_train=lambda: pipeline("train"), skipped=skipped)


def _in_memory(x: np.ndarray, y: np.ndarray, feed: _Feed, split: str) -> tf.data.Dataset:
    """Unbatched (model input, label) of uint8 images in memory: preprocessed once (batches of 1024) and cached;
    training shuffles through a buffer of up to 10,000."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.batch(1024).map(lambda a, b: (_to_model_input(a, feed.prep), b), num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()
    if split == "train" and feed.shuffle:
        ds = ds.shuffle(min(len(x), 10_000), seed=feed.seed, reshuffle_each_iteration=True)
    return ds


_SHUFFLE_BUFFER_BYTES = 256 * 2**20


def _streamed(paths: np.ndarray, labels: np.ndarray, feed: _Feed, split: str) -> tf.data.Dataset:
    """Unbatched (model input, label) read from image files, holding only the file list. Training without a cache
    shuffles the whole file list each pass, then decodes; with a cache the file list is permuted once (by seed)
    before the cached decode and each pass shuffles the cached inputs through a buffer of at most 256 MB."""
    shuffle = split == "train" and feed.shuffle and len(paths) > 0
    if shuffle and feed.cache:
        order = np.random.default_rng(feed.seed).permutation(len(paths))
        paths, labels = paths[order], labels[order]
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.constant(labels, tf.int64)))
    if shuffle and not feed.cache:
        ds = ds.shuffle(len(paths), seed=feed.seed, reshuffle_each_iteration=True)
    ds = _decode_files(ds, feed.prep, feed.on_bad_image)
    if feed.cache:
        ds = ds.cache(_cache_file(feed, split, paths))
        if shuffle:
            per_image = 4 * int(np.prod(feed.prep.input_shape))
            ds = ds.shuffle(max(1, min(len(paths), _SHUFFLE_BUFFER_BYTES // per_image)), seed=feed.seed, reshuffle_each_iteration=True)
    return ds


def _cache_file(feed: _Feed, split: str, paths: np.ndarray) -> str:
    """"" (tf.data's in-memory cache) for cache="memory", else a file name in the cache directory that changes with the
    preprocessing and the file list, so a cache written for other settings is never read."""
    if feed.cache == "memory":
        return ""
    key = hashlib.sha256(repr((feed.prep.to_dict(), feed.seed, feed.on_bad_image, list(paths))).encode()).hexdigest()[:16]
    os.makedirs(feed.cache, exist_ok=True)
    return os.path.join(feed.cache, f"{split}-{key}")


def _decode_files(ds: tf.data.Dataset, prep: Preprocessing, on_bad_image: str) -> tf.data.Dataset:
    """(path, label) -> (model input, label), decoded in parallel and kept in order. A file that tf.io.decode_image
    cannot decode after the load-time check passed it stops the pass with an InvalidArgumentError naming it
    ("error") or is dropped with a line on stderr naming it ("skip"). tf's decode error does not name the file, so
    each element carries its position and the path before it: after ``ignore_errors`` a gap in the positions names
    the lost file; an end marker (path "") catches a loss at the very end."""
    end = tf.data.Dataset.from_tensors((tf.constant(""), tf.constant(-1, tf.int64)))
    ds = ds.concatenate(end).scan((tf.constant(0, tf.int64), tf.constant("")), _number)
    ds = ds.map(lambda pos, prev, path, y: (pos, prev, _file_to_model_input(path, prep), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors().scan(tf.constant(0, tf.int64), _lost_file_check(on_bad_image == "skip"))
    return ds.filter(lambda x, y: y >= 0)


def _number(state, element):
    """scan step: (next position, path before it) -> element (position, path before, path, label)."""
    pos, before = state
    path, label = element
    return (pos + 1, path), (pos, before, path, label)


def _lost_file_check(skip: bool) -> Callable:
    """A scan step (expected position, element) that reports the file lost before an element whose position jumps."""

    def step(expected, element):
        pos, before, x, label = element
        lost = pos - expected
        message = tf.strings.join(["image file ", before, " cannot be decoded by tf.io.decode_image",
                                   tf.where(lost > 1, tf.strings.join([" (nor ", tf.strings.as_string(lost - 1), " file(s) before it in this pass)"]), ""),
                                   "" if skip else "; " + _SKIP_HINT])
        if skip:
            report = tf.cond(lost > 0, lambda: _print_skipped(message), lambda: tf.constant(False))
        else:
            report = tf.debugging.Assert(lost == 0, [message])
        with tf.control_dependencies([report]):
            return pos + 1, (tf.identity(x), label)

    return step


def _print_skipped(message) -> tf.Tensor:
    """Print one warning line to stderr (in the graph: tf.data functions cannot call Python's warnings)."""
    tf.print("edgeopt warning: skipped:", message, output_stream=sys.stderr)
    return tf.constant(True)


def _file_to_model_input(path, prep: Preprocessing):
    """An image file (JPEG, PNG, BMP, GIF's first frame; any size, grey or colour, alpha dropped) -> float32 model
    input of ``prep.input_shape`` by :func:`_to_model_input`, the function in-memory sources use; path "" -> zeros."""

    def decode():
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
        as_batch = lambda c: tf.ensure_shape(image[None, :, :, :c], (1, None, None, c))
        x = tf.cond(tf.shape(image)[-1] < 3, lambda: _to_model_input(as_batch(1), prep), lambda: _to_model_input(as_batch(3), prep))
        return tf.ensure_shape(x[0], prep.input_shape)

    return tf.cond(tf.equal(path, ""), lambda: tf.zeros(prep.input_shape), decode)


def _batched(ds: tf.data.Dataset, feed: _Feed, training: bool) -> tf.data.Dataset:
    """Batch, and when training shift at random by up to ``crop_padding`` pixels and flip left-right at random with
    ``augment``; prefetch."""
    if training and feed.crop_padding:
        ds = ds.map(_random_shift(feed), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(feed.batch_size)
    if training and feed.augment:
        ds = ds.map(lambda a, b: (tf.image.random_flip_left_right(a, seed=feed.seed), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _random_shift(feed: _Feed) -> Callable:
    """(model input, label) -> the input padded with black pixels (in model-input units) by ``crop_padding`` on each
    side and cropped back to its size at a random offset."""
    pad, black = feed.crop_padding, (0.0 - feed.prep.mean) / feed.prep.std
    paddings = [[pad, pad], [pad, pad], [0, 0]]

    def shift(x, y):
        return tf.image.random_crop(tf.pad(x, paddings, constant_values=black), tf.shape(x), seed=feed.seed), y

    return shift


def raw_test_split(name: str, limit: int | None = None, test_fraction: float = 0.2,
                   on_bad_image: str = "error") -> tuple[np.ndarray | list[np.ndarray], np.ndarray, tuple[str, ...]]:
    """The test split of dataset ``name`` as stored: uint8 images before any resizing, their labels and the class
    names; the same images, in the same order, as ``load_dataset(name, test_fraction=..., limit_test=limit,
    on_bad_image=...).test`` (before its resizing). In-memory sources give an array (N, H, W, C); an image folder's
    images are decoded as RGB and stacked into (N, H, W, 3) when they share a size, else listed as (H, W, 3) arrays."""
    if not name.startswith("folder:"):
        raw = load_raw(name)
        _, _, x_test, y_test = _train_test(raw.x_train, raw.y_train, raw.x_test, raw.y_test, test_fraction)
        return x_test[:limit], y_test[:limit], raw.class_names
    x, y, x_test, y_test, classes = _folder_listing(name.split(":", 1)[1])
    _, _, x_test, y_test = _train_test(x, y, x_test, y_test, test_fraction)
    first = _first(limit, y_test, balanced=True)
    parts, _ = _drop_bad_images({"test": (x_test[first], y_test[first])}, on_bad_image)
    return _stack_one_size(_read_images(parts["test"][0])), parts["test"][1], classes


def resize_like_mediapipe(images, size: tuple[int, int]):
    """Bilinear resize of a batch (N, H, W, C) to ``size`` the way MediaPipe's ImageClassifier resizes a camera
    frame on Android: asymmetric coordinates (source = destination * in / out, no half-pixel centers, no
    antialiasing). Measured with a probe model whose output is its input tensor: within 0.9 of a pixel level
    on average (MediaPipe rounds in uint8) where tf.image.resize's half-pixel bilinear differs by 8.6. Training,
    calibration and evaluation all resize this way, so edgeopt's accuracy is the app's."""
    return tf.raw_ops.ResizeBilinear(images=images, size=list(size), align_corners=False, half_pixel_centers=False)


def _to_model_input(images, prep: Preprocessing):
    """uint8/float images (N, H, W, 1 or 3; channels known when traced) -> float32 model inputs: resized by
    :func:`resize_like_mediapipe` when their size differs, grey repeated to RGB or RGB made grey, normalized. The one
    implementation every source and :func:`preprocess_images` use."""
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
