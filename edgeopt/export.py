"""Keras -> .tflite. The only module that calls the TFLite converter.

Models are traced with a fixed batch of 1 (what an app feeds), which keeps reshapes static so no
SHAPE/PACK ops split the graph in front of XNNPACK.
"""
from __future__ import annotations

import numpy as np

from edgeopt._keras import keras, require_keras2_model, tf


def _concrete_function(model: keras.Model):
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="input")
    fn = tf.function(lambda x: model(x, training=False))
    return fn.get_concrete_function(spec)


def convert(model: keras.Model, mode: str = "float32") -> bytes:
    """Convert ``model`` to TFLite flatbuffer bytes (float32 for now)."""
    require_keras2_model(model, "edgeopt.export.convert")
    if mode != "float32":
        raise ValueError(f"mode {mode!r} is not supported yet; supported: float32")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_function(model)], model)
    return converter.convert()


def run_tflite(model_bytes: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a float-input .tflite one sample at a time on the LiteRT interpreter; returns stacked outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes, num_threads=num_threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for x in np.asarray(inputs, np.float32):
        interp.set_tensor(inp["index"], x[None])
        interp.invoke()
        outs.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(outs)
