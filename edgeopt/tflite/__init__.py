"""The .tflite layer: read and edit flatbuffers without running them, the op report, the XNNPACK rewrite, the runtime.

- ``flatbuffer``: validity checks, I/O tensors, operators (the op-code table), metadata read/embed, the
  object API (``read_model`` / ``write_model``). The only module that parses a .tflite flatbuffer.
- ``metadata``: standard TFLite Metadata of image classifiers (what MediaPipe's ImageClassifier reads) and
  files packed inside a .tflite (labels).
- ``interface``: uint8 input/output for full-integer models (raw camera bytes), by an exact re-quantization.
- ``inspect``: the deployability report (ops and versions, minimum runtime, GPU delegate, arena, metadata).
- ``ops``: which operators a file holds and in which number format each runs (``OpReport``).
- ``xnnpack``: rewrite SAME padding so XNNPACK's sparse kernels can take a file; whether they would.
- ``lowbit``: exact int8 codes for 4-bit / 2-bit / binary kernels of a stripped low-bit model; what each stores.
- ``int4``: INT4 kernels through ai-edge-quantizer (optional dependency).
- ``runtime``: LiteRT interpreter helpers and the app-side (de)quantization arithmetic.
"""
from edgeopt.tflite.flatbuffer import InvalidModelError, TensorInfo, check_tflite, io_tensors, list_ops, load_model_bytes, read_metadata
from edgeopt.tflite.ops import OpReport, op_report
from edgeopt.tflite.runtime import dequantize_output, make_interpreter, predict, quantize_input

__all__ = ["InvalidModelError", "OpReport", "TensorInfo", "check_tflite", "dequantize_output", "io_tensors", "list_ops", "load_model_bytes",
           "make_interpreter", "op_report", "predict", "quantize_input", "read_metadata"]
