"""Collaborative optimization: prune -> cluster -> QAT -> int8 keeping sparsity and clusters to the ``.tflite``.

- :func:`pqat`, :func:`cqat`, :func:`pcqat`: :func:`edgeopt.compress.quantize.quantize` with TF-MOT's
  pruning-preserving, cluster-preserving, or both schemes (the input must already be pruned / clustered and
  stripped).
- :func:`prune_to_sparsity`: magnitude pruning to a constant sparsity while fine-tuning, in one call
  (:func:`edgeopt.compress.prune.prune`).
- :func:`tflite_weight_report`: the constant weight tensors of a ``.tflite``
  (:func:`edgeopt.tflite.flatbuffer.constant_weights`, no interpreter), with zeros and distinct values per
  tensor and per output channel.
"""
from __future__ import annotations

from dataclasses import replace

from edgeopt._keras import keras, require_keras2_model, tf  # noqa: F401  (tf_keras before TF-MOT)
from edgeopt.compress.cluster import LayerWeights, kernel_stats
from edgeopt.compress.prune import PruneConfig, prune, pruning_callbacks, strip_pruning
from edgeopt.compress.quantize import QATConfig, quantize
from edgeopt.tflite.flatbuffer import constant_weights
from edgeopt.train import loss_for


def pqat(model: keras.Model, config: QATConfig = QATConfig()) -> keras.Model:
    """Pruning-preserving QAT: zeros of the (stripped, pruned) input stay zero."""
    return quantize(model, replace(config, preserve="sparsity"))


def cqat(model: keras.Model, config: QATConfig = QATConfig()) -> keras.Model:
    """Cluster-preserving QAT: clustered kernels of the (stripped) input keep their centroids."""
    return quantize(model, replace(config, preserve="clusters"))


def pcqat(model: keras.Model, config: QATConfig = QATConfig()) -> keras.Model:
    """Sparsity- and cluster-preserving QAT, for prune -> cluster(preserve_sparsity) -> QAT."""
    return quantize(model, replace(config, preserve="sparsity_and_clusters"))


def prune_to_sparsity(model: keras.Model, sparsity: float, train, steps: int, learning_rate: float = 1e-4) -> keras.Model:
    """A new model with ``sparsity`` (fraction) of the kernels of every Conv2D/Dense zeroed by magnitude (the stem
    too), fine-tuned for ``steps`` batches of the (repeating) dataset ``train`` while the mask is kept, then
    stripped: :func:`edgeopt.compress.prune.prune` with a constant schedule, in one call."""
    require_keras2_model(model, "edgeopt.compress.collaborative.prune_to_sparsity")
    if not 0 < sparsity < 1:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
    config = PruneConfig(schedule="constant", final_sparsity=sparsity, frequency=max(1, steps // 4), prune_first_conv=True)
    pruned = prune(model, config)
    pruned.compile(keras.optimizers.Adam(learning_rate), loss_for(model), metrics=["accuracy"])
    pruned.fit(train.repeat(), steps_per_epoch=steps, epochs=1, callbacks=pruning_callbacks(config), verbose=2)
    return strip_pruning(pruned)


def tflite_weight_report(model_bytes: bytes, min_size: int = 64) -> list[LayerWeights]:
    """Zeros and distinct values of each constant int8/float32 weight tensor of at least ``min_size`` elements
    (biases are int32 and skipped). The output channel is TFLite's first axis for CONV_2D/FULLY_CONNECTED kernels and
    its last for DEPTHWISE_CONV_2D; stats are per tensor and the most distinct values in any channel."""
    return [kernel_stats(w.name, w.dtype, w.values) for w in constant_weights(model_bytes, min_size)]
