"""One-shot evaluation: score a sub-network of a trained supernet without training it (weight sharing).

:func:`oneshot_score` builds the architecture as a plain network holding the supernet's weights of its operations
(:meth:`~edgeopt.search.supernet.Supernet.subnet`: the same outputs as the supernet with one-hot mixing),
recalibrates its batch-norm statistics, and measures top-1 on the validation split.

Why recalibrate: the supernet's moving statistics were gathered while every block's input was a mixture of all
candidates, not the output of the one operation this sub-network keeps, so they do not describe its activations
(Guo et al., Single Path One-Shot, 2019, recompute them on training data before scoring). How:
:func:`recalibrate_batch_norm` resets every batch-norm layer's moving mean and variance and runs the network in
training mode over ``batches`` training batches with momentum ``(k - 1) / k`` at the k-th batch, so each moving
statistic ends as the plain average of the per-batch statistics (mean: the mean over all images for equal batch
sizes; variance: the average of the batch variances, Bessel-corrected as TensorFlow's fused batch norm keeps
them). Nothing else changes (the network has no dropout), and the supernet is never modified.
Use the same calibration images for every candidate (:func:`calibration_batches` once per search) so scores differ
by architecture, not by the draw of images.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from edgeopt._keras import keras
from edgeopt.data import Splits
from edgeopt.search.nas_space import Architecture
from edgeopt.search.supernet import Supernet
from edgeopt.train import evaluate

__all__ = ["calibration_batches", "oneshot_score", "recalibrate_batch_norm"]

DEFAULT_CALIBRATION_BATCHES = 20


def calibration_batches(splits: Splits, batches: int = DEFAULT_CALIBRATION_BATCHES) -> list[np.ndarray]:
    """The images of the first ``batches`` batches of the training split (a fresh pipeline, so the seeded shuffle
    gives the same images on every call where the source can rebuild it)."""
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    return [x.numpy() for x, _ in splits.with_fresh_train().train.take(batches)]


def _batch_norms(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batch_norm(model: keras.Model, batches: Iterable[np.ndarray]) -> keras.Model:
    """Recompute every batch-norm layer's moving mean and variance of ``model`` (in place) as the average of their
    batch statistics over ``batches`` of images (see the module docstring); returns ``model``."""
    layers = _batch_norms(model)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    count = 0
    try:
        for count, images in enumerate(batches, start=1):
            for layer in layers:  # read at each eager call: the k-th batch gets weight 1/k
                layer.momentum = (count - 1) / count
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if count == 0:
        raise ValueError("recalibrate_batch_norm got no batches")
    return model


def oneshot_score(supernet: Supernet, arch: Architecture, splits: Splits, *, calibration: list[np.ndarray] | None = None,
                  batches: int = DEFAULT_CALIBRATION_BATCHES, split: str = "val") -> float:
    """Top-1 accuracy (a fraction) on ``split`` of ``arch`` with the supernet's weights, no retraining, after
    recalibrating batch norm on ``calibration`` (None: :func:`calibration_batches` of ``batches`` training batches)."""
    if split not in ("val", "train"):
        raise ValueError(f"split must be \"val\" or \"train\" (a search never scores on the test split), got {split!r}")
    model = supernet.subnet(arch, classifier_activation=None)
    recalibrate_batch_norm(model, calibration if calibration is not None else calibration_batches(splits, batches))
    return float(evaluate(model, getattr(splits, split))["top1"])
