"""Converted models shared by test_export and test_bench (conversion costs seconds: do it once per session)."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=None)
def digits_splits_16():
    from edgeopt.data import load_dataset

    return load_dataset("digits", image_size=16, channels=3, batch_size=32, seed=0)


@functools.lru_cache(maxsize=None)
def trained_digits_model():
    """mobilenet_v2_tiny trained on digits at 16x16x3 (a few seconds)."""
    from edgeopt import models
    from edgeopt.train import TrainConfig, fit

    splits = digits_splits_16()
    model = models.create("mobilenet_v2_tiny", input_shape=splits.preprocessing.input_shape, classes=10)
    fit(model, splits, TrainConfig(epochs=8, learning_rate=3e-3, verbose=0))
    return model


@functools.lru_cache(maxsize=None)
def exported(mode: str):
    """The trained digits model exported in ``mode`` into its own temporary folder; returns the Artifact."""
    from edgeopt.export import to_tflite

    out = Path(tempfile.mkdtemp(prefix=f"edgeopt-test-{mode}-"))
    atexit.register(shutil.rmtree, out, True)
    return to_tflite(trained_digits_model(), mode, digits_splits_16(), path=out / f"digits_{mode}.tflite", num_calibration=200, min_agreement=0.9)
