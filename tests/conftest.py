"""Shared fixtures and helpers: real small data loaded once, tiny models trained once per session, recipes
built from keyword overrides, and the checks several test files make (sparsity, Keras vs .tflite, int8).

Test modules import the plain helpers with ``from conftest import ...`` (the one module pytest loads);
anything that is cached (data, trained models, exported files) is reached through a fixture only, so
it exists once per session.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import pytest

import edgeopt  # noqa: F401  (selects tf_keras before TensorFlow is imported anywhere else)

ROOT = Path(__file__).resolve().parents[1]
TINY_MODELS = ("mobilenet_v1_tiny", "mobilenet_v2_tiny", "shufflenet_v1_tiny", "efficientnet_tiny", "efficientnet_lite_tiny")
DIGITS_TEST_SIZE = 359  # 20% of the 1,797 digits images, a fixed split


# ---- data ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _digits(image_size: int = 16, channels: int = 3):
    from edgeopt.data import load_dataset

    return load_dataset("digits", image_size=image_size, channels=channels, batch_size=32, seed=0)


@pytest.fixture(scope="session")
def digits_splits():
    """sklearn's digits at 16x16x3 in [-1, 1]: 1,293 train, 145 val, 359 test images, batches of 32."""
    return _digits()


@pytest.fixture(scope="session")
def digits_arrays(digits_splits):
    """The digits splits as NumPy arrays: {"train": (x, y), "val": (x, y), "test": (x, y)}."""
    return {split: digits_splits.arrays(split) for split in ("train", "val", "test")}


@pytest.fixture(scope="session")
def fashion_mnist_raw():
    """The 70,000 Fashion-MNIST images as uint8 (read once per session)."""
    from edgeopt.data import load_raw

    return load_raw("fashion_mnist")


# ---- models trained once per session ------------------------------------------------------------------------


TRAINING = {}  # zoo model name -> the TrainResult of its shared training (_trained)


@functools.lru_cache(maxsize=None)
def _trained(name: str):
    from edgeopt import models
    from edgeopt._keras import keras
    from edgeopt.train import TrainConfig, fit

    splits = _digits()
    keras.utils.set_random_seed(0)  # the same initial weights whichever test asks first
    model = models.create(name, input_shape=splits.preprocessing.input_shape, classes=10)
    TRAINING[name] = fit(model, splits, TrainConfig(epochs=15, learning_rate=0.01, verbose=0))
    return model


@pytest.fixture(scope="session")
def trained_tiny():
    """``trained_tiny(name)``: zoo model ``name`` trained on digits 16x16x3 for 15 epochs (once per session; its
    TrainResult is ``TRAINING[name]``). Shared by several tests: use it as is, never train or modify it further
    (clone it first)."""
    return _trained


@functools.lru_cache(maxsize=None)
def _exported(mode: str, folder: str):
    from edgeopt.export import to_tflite

    return to_tflite(_trained("mobilenet_v2_tiny"), mode, _digits(), path=Path(folder) / f"digits_{mode}.tflite", num_calibration=200, min_agreement=0.9)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(mode)``: the trained digits mobilenet_v2_tiny exported in ``mode`` to its own folder
    (``digits_<mode>.tflite``, manifest and labels; calibrated on 200 images); returns the Artifact."""
    root = tmp_path_factory.mktemp("exported")

    def get(mode: str):
        folder = root / mode
        folder.mkdir(exist_ok=True)
        return _exported(mode, str(folder))

    return get


# ---- recipes --------------------------------------------------------------------------------------------

BASE_RECIPE = {
    "name": "tiny",
    "data": {"dataset": "digits", "image_size": 16, "batch_size": 32},
    "model": {"name": "mobilenet_v1_tiny"},
    "train": {"epochs": 1, "steps_per_epoch": 4, "learning_rate": 0.003, "verbose": 0},
    "stages": [{"type": "train"}],
}


def make_recipe(**overrides) -> dict:
    """A recipe document: :data:`BASE_RECIPE` (digits 16x16, mobilenet_v1_tiny, one 4-step train stage)
    with each keyword applied. A dict merges into the section of that name key by key (a None value removes
    the key); anything else (``name``, ``stages``: a list of stage dicts) replaces it."""
    doc = copy.deepcopy(BASE_RECIPE)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {k: v for k, v in {**doc[key], **value}.items() if v is not None}
        elif value is None:
            doc.pop(key, None)
        else:
            doc[key] = copy.deepcopy(value)
    return doc


def recipe_toml(doc: dict) -> str:
    """TOML text of a recipe (or search space) document: edgeopt's own writer (``edgeopt.config.to_toml``)."""
    from edgeopt.config import to_toml

    return to_toml(doc)


def write_recipe(path: Path, doc: dict) -> Path:
    """Write ``doc`` as TOML to ``path``; returns the path."""
    path = Path(path)
    path.write_text(recipe_toml(doc))
    return path


# ---- checks ---------------------------------------------------------------------------------------------


def assert_tflite_matches_keras(model, model_bytes: bytes, inputs: np.ndarray, atol: float = 1e-4) -> float:
    """The float .tflite gives the Keras model's outputs on ``inputs`` (max abs diff < atol)."""
    from edgeopt.export import run_tflite

    expected = model(inputs, training=False).numpy()
    got = run_tflite(model_bytes, inputs)
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff < atol, f"TFLite differs from Keras by {diff}"
    return diff


def assert_sparsity(model, targets: dict[str, float], tol: float = 0.01) -> None:
    """Each named layer's kernel has its target fraction of zeros (within ``tol``)."""
    from edgeopt.compress.prune import sparsity_report

    got = sparsity_report(model).by_name()
    for name, target in targets.items():
        assert abs(got[name] - target) <= tol, f"{name}: sparsity {got[name]:.4f}, target {target}"


def to_int8(model, calibration: np.ndarray) -> bytes:
    """Full-integer .tflite bytes of ``model`` (edgeopt.export.to_tflite: uint8 in/out, its default), calibrated on ``calibration``."""
    from edgeopt import export

    return export.to_tflite(model, "int8", calibration, verify_data=None).model_bytes


def run_int8(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """Float outputs of a quantized .tflite on float ``inputs``: edgeopt.tflite.runtime quantizes each input
    and dequantizes each output with the file's own scale and zero point."""
    from edgeopt.tflite.runtime import make_interpreter, predict

    interp = make_interpreter(model_bytes)
    interp.allocate_tensors()
    return predict(interp, inputs)


def float_ops(model_bytes: bytes) -> list[str]:
    """Names of the operators with a float32 input or output (empty for a full-integer model)."""
    from edgeopt.tflite.flatbuffer import list_ops

    return [op.op for op in list_ops(model_bytes) if "float32" in op.input_dtypes + op.output_dtypes]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows whose argmax agrees."""
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, -1) == labels))


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


__all__ = ["ROOT", "TINY_MODELS", "DIGITS_TEST_SIZE", "BASE_RECIPE", "make_recipe", "recipe_toml", "write_recipe",
           "assert_tflite_matches_keras", "assert_sparsity", "to_int8", "run_int8", "float_ops", "agreement", "top1"]
