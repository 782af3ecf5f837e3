"""Test helpers: full-integer int8 export of a Keras model through edgeopt.export.to_tflite, and running it."""
from __future__ import annotations

import numpy as np



def to_int8(model, calibration: np.ndarray) -> bytes:
    """int8-in/int8-out flatbuffer bytes of ``model`` (edgeopt.export.to_tflite), calibrated on ``calibration``."""
    from edgeopt import export

    return export.to_tflite(model, "int8", calibration, verify_data=None).model_bytes


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
