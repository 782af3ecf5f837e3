"""Test helper: full-integer int8 export of a Keras model, through edgeopt.export.to_tflite once it supports
``mode="int8"``, until then through a private converter call (the export helper's branch owns the real one)."""
from __future__ import annotations

import numpy as np

from edgeopt._keras import tf


def to_int8(model, calibration: np.ndarray) -> bytes:
    """int8-in/int8-out flatbuffer bytes of ``model``, calibrated on ``calibration`` (float model inputs)."""
    from edgeopt import export

    if hasattr(export, "to_tflite"):
        return export.to_tflite(model, "int8", calibration, verify_data=None).model_bytes
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in np.asarray(calibration, np.float32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def run_int8(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """Dequantized outputs of an int8 .tflite on float ``inputs`` (quantized with the file's input scale)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    outs = []
    for x in np.asarray(inputs, np.float32):
        q = np.clip(np.round(x / s_in + z_in), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        outs.append((interp.get_tensor(out["index"])[0].astype(np.float32) - z_out) * s_out)
    return np.stack(outs)


def float_ops(model_bytes: bytes) -> list[str]:
    """Names of operators of the .tflite that have a float32 input or output (empty for a full-integer model)."""
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    g = m.subgraphs[0]
    names = []
    for op in g.operators:
        ids = [i for i in list(op.inputs) + list(op.outputs) if i >= 0]
        if any(g.tensors[i].type == 0 for i in ids):  # TensorType.FLOAT32
            code = m.operatorCodes[op.opcodeIndex]
            names.append(str(max(code.builtinCode, code.deprecatedBuiltinCode)))
    return names
