"""LiteRT interpreter helpers shared by bench and export's verification (the only two users of an interpreter).

Also the app-side arithmetic: quantizing float model inputs into a quantized input tensor and
dequantizing quantized outputs, with the tensor's own scale and zero point.
"""
from __future__ import annotations

import os
import time

import numpy as np

from edgeopt.progress import bar
from edgeopt.tflite.flatbuffer import InvalidModelError, load_model_bytes

_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def quantize_input(x: np.ndarray, params: dict) -> np.ndarray:
    """Float model inputs -> the input tensor's dtype: round(x / scale) + zero_point, clipped to the dtype.

    ``params`` is a manifest's ``input`` entry (or an interpreter's input details): ``dtype``,
    ``scale``, ``zero_point``. Float inputs pass through unchanged (as float32).
    """
    dtype = np.dtype(params["dtype"]).name
    x = np.asarray(x, np.float32)
    if dtype not in _INT_RANGES:
        return x
    scale, zero = _scale_zero(params)
    lo, hi = _INT_RANGES[dtype]
    return np.clip(np.round(x / scale) + zero, lo, hi).astype(dtype)


def dequantize_output(q: np.ndarray, params: dict) -> np.ndarray:
    """A quantized output tensor -> float32: (q - zero_point) * scale. Float outputs pass through."""
    if np.dtype(params["dtype"]).name not in _INT_RANGES:
        return np.asarray(q, np.float32)
    scale, zero = _scale_zero(params)
    return ((np.asarray(q, np.int32) - zero) * scale).astype(np.float32)


def _scale_zero(params: dict) -> tuple[float, int]:
    if "quantization" in params and params.get("scale") is None:  # interpreter details
        scale, zero = params["quantization"]
    else:
        scale, zero = params["scale"], params["zero_point"]
    if not scale:
        raise ValueError(f"tensor of dtype {params['dtype']} has no quantization scale")
    return float(scale), int(zero)


def make_interpreter(model, num_threads: int = 1, xnnpack: bool = True, preserve_all_tensors: bool = False):
    """A LiteRT interpreter (tensors not yet allocated) for a .tflite given as bytes or a path.

    ``xnnpack=False`` uses the builtin kernels only (no default delegate). ``preserve_all_tensors`` keeps every
    intermediate tensor readable after ``invoke`` (no arena reuse; more memory), for per-tensor diagnostics.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data, label = load_model_bytes(model)
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        return Interpreter(model_content=data, num_threads=num_threads, experimental_op_resolver_type=resolver,
                           experimental_preserve_all_tensors=preserve_all_tensors)
    except ValueError as err:
        raise InvalidModelError(f"LiteRT cannot load {label}: {err}. Is it a complete .tflite file?") from err


def check_input_shape(interp, sample_shape: tuple[int, ...], where: str = "inputs") -> None:
    """Raise ValueError when one sample of shape ``sample_shape`` does not fit the model's input."""
    expected = tuple(int(v) for v in interp.get_input_details()[0]["shape"][1:])
    if tuple(sample_shape) != expected:
        raise ValueError(
            f"wrong input size: {where} have samples of shape {tuple(sample_shape)} but the model expects "
            f"{expected} (height, width, channels). Load the data at that size, e.g. "
            f"load_dataset(name, image_size={expected[0]}, channels={expected[-1]})."
        )


def predict(interp, inputs: np.ndarray, progress: str = "") -> np.ndarray:
    """Run float model inputs (N, H, W, C) one at a time; quantizes inputs and dequantizes outputs as needed.

    Returns the float32 outputs stacked to (N, ...). ``interp`` must have its tensors allocated. A ``progress``
    label shows a bar with time left.
    """
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    inputs = np.asarray(inputs)
    check_input_shape(interp, inputs.shape[1:])
    outs = []
    for x in bar(inputs, desc=progress, unit="image") if progress else inputs:
        interp.set_tensor(inp["index"], quantize_input(x[None], inp))
        interp.invoke()
        outs.append(dequantize_output(interp.get_tensor(out["index"])[0], out))
    return np.stack(outs) if outs else np.zeros((0, *out["shape"][1:]), np.float32)


# ---- memory -------------------------------------------------------------------------------------------


def rss_mb() -> float | None:
    """Resident set size of this process in MB (Linux), or None."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    return _status_mb("VmHWM")


def _status_mb(key: str) -> float | None:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def now_ms() -> float:
    return time.perf_counter() * 1e3
