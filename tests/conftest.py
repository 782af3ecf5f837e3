"""Shared fixtures and helpers: tiny models, real small data, and the Keras-vs-TFLite check."""
from __future__ import annotations

import numpy as np
import pytest

import edgeopt  # noqa: F401  (selects tf_keras before TensorFlow is imported anywhere else)

TINY_MODELS = ("mobilenet_v1_tiny", "mobilenet_v2_tiny", "shufflenet_v1_tiny", "efficientnet_tiny", "efficientnet_lite_tiny")


def assert_tflite_matches_keras(model, model_bytes: bytes, inputs: np.ndarray, atol: float = 1e-4):
    """The float .tflite gives the Keras model's outputs on ``inputs`` (max abs diff < atol)."""
    from edgeopt.export import run_tflite

    expected = model(inputs, training=False).numpy()
    got = run_tflite(model_bytes, inputs)
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff < atol, f"TFLite differs from Keras by {diff}"
    return diff


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def digits_splits():
    from edgeopt.data import load_dataset

    return load_dataset("digits", image_size=16, channels=3, batch_size=32, seed=0)
