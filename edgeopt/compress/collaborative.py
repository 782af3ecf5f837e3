"""Collaborative optimization: prune -> cluster -> QAT -> int8 keeping sparsity and clusters to the ``.tflite``.

- :func:`pqat`, :func:`cqat`, :func:`pcqat`: :func:`edgeopt.compress.quantize.quantize` with TF-MOT's
  pruning-preserving, cluster-preserving, or both schemes (the input must already be pruned / clustered and
  stripped).
- :func:`prune_to_sparsity`: magnitude pruning with ``tfmot.sparsity.keras`` (constant sparsity while
  fine-tuning), a small private stand-in so this module does not depend on ``edgeopt.compress.prune``.
- :func:`tflite_weight_report`: reads the constant weight tensors back out of a ``.tflite`` flatbuffer (no
  interpreter) and counts zeros and distinct values per tensor and per output channel.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeopt._keras import keras, require_keras2_model, tf  # noqa: F401  (tf_keras before TF-MOT)
import tensorflow_model_optimization as tfmot  # noqa: E402
from edgeopt.compress.cluster import LayerWeights, kernel_stats
from edgeopt.compress.quantize import QATConfig, quantize
from edgeopt.train import loss_for

_SK = tfmot.sparsity.keras
L = keras.layers


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
    """A new model with ``sparsity`` (fraction) of the kernels of every Conv2D/Dense zeroed by magnitude, fine-tuned
    for ``steps`` batches of the (repeating) dataset ``train`` while the mask is kept, then stripped."""
    require_keras2_model(model, "edgeopt.compress.collaborative.prune_to_sparsity")
    if not 0 < sparsity < 1:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    schedule = _SK.ConstantSparsity(sparsity, begin_step=0, frequency=max(1, steps // 4))

    def wrap(layer):
        return _SK.prune_low_magnitude(layer, pruning_schedule=schedule) if type(layer) in (L.Conv2D, L.Dense) else layer

    pruned = keras.models.clone_model(copy, clone_function=wrap)

    pruned.compile(keras.optimizers.Adam(learning_rate), loss_for(model), metrics=["accuracy"])
    pruned.fit(train.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[_SK.UpdatePruningStep()], verbose=2)
    return _SK.strip_pruning(pruned)


def tflite_weight_report(model_bytes: bytes, min_size: int = 64) -> list[LayerWeights]:
    """Zeros and distinct values of each constant int8/float32 weight tensor of at least ``min_size`` elements
    (biases are int32 and skipped). The output channel is TFLite's first axis for CONV_2D/FULLY_CONNECTED kernels and
    its last for DEPTHWISE_CONV_2D; stats are per tensor and the most distinct values in any channel."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    depthwise_inputs = set()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == 4:  # BuiltinOperator.DEPTHWISE_CONV_2D
            depthwise_inputs.add(int(op.inputs[1]))
    report = []
    for index, tensor in enumerate(graph.tensors):
        data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
        if data is None or tensor.type not in (0, 9):  # FLOAT32, INT8
            continue
        values = np.frombuffer(bytes(data), np.float32 if tensor.type == 0 else np.int8)
        if values.size < min_size or tensor.shape is None or values.size != int(np.prod(tensor.shape)):
            continue
        values = values.reshape(tuple(tensor.shape))
        channels_last = values if index in depthwise_inputs else np.moveaxis(values, 0, -1)
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        report.append(kernel_stats(name, "int8" if tensor.type == 9 else "float32", channels_last))
    return report
