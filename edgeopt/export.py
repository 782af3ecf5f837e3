"""Keras -> verified .tflite for apps. The only module that calls the TFLite converter.

``to_tflite(model, mode, representative_data, ...)`` converts (float32, float16, dynamic-range, full int8
with uint8 (default), int8 or float32 input/output, int16x8, int4: INT4 kernels through ai-edge-quantizer),
verifies the result against the Keras model on held-out samples, and writes ``<name>.tflite`` + ``<name>.json``
(manifest) + ``labels.txt`` atomically.

Low-bit models (``edgeopt.compress.lowbit``): ``lowbit_bits={layer: bits}`` stores the levels of a stripped
4-bit, 2-bit or binary kernel exactly, as int8 codes k * floor(127 / Q) (:mod:`edgeopt.tflite.lowbit`), or as
INT4 in CONV_2D / FULLY_CONNECTED with ``mode="int4"`` (:mod:`edgeopt.tflite.int4`); the manifest's ``lowbit``
entry lists every low-bit kernel as stored and the weights' packed size at their bit-widths.

Each file carries standard TFLite Metadata (``edgeopt.tflite.metadata``: name, description, version,
author, input image properties and NormalizationOptions, the labels packed inside as a
TENSOR_AXIS_LABELS file), so MediaPipe's ImageClassifier on Android loads it as it is. uint8 input is
what a camera or Bitmap gives: raw RGB bytes, the normalization folded into the input quantization.
The edgeopt manifest is embedded too (metadata entry ``edgeopt_manifest``) so the file alone describes
itself; ``read_manifest`` gets it back.

Models are traced with a fixed batch of 1 (what an app feeds), which keeps reshapes static so no
SHAPE/PACK ops split the graph in front of XNNPACK.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeopt._keras import ends_in_softmax, keras, require_keras2_model, tf
from edgeopt.config import Config
from edgeopt.data import Preprocessing, preprocess_images
from edgeopt.io import gzip_size, write_atomic
from edgeopt.progress import bar
from edgeopt.export_lowbit import lowbit_entry, lowbit_levels, lowbit_plan
from edgeopt.tflite import flatbuffer, interface, metadata, runtime
from edgeopt.tflite import int4 as tflite_int4
from edgeopt.tflite import layers as tflite_layers
from edgeopt.tflite import lowbit as tflite_lowbit
from edgeopt.tflite.inspect import deploy_summary
from edgeopt.tflite.flatbuffer import InvalidModelError  # noqa: F401
from edgeopt.tflite.ops import OpReport, op_report  # noqa: F401
from edgeopt.tflite.runtime import dequantize_output, quantize_input  # noqa: F401  (public: the app-side helpers)
from edgeopt.tflite.xnnpack import MAX_REQUANTIZATION_SCALE, explicit_pad_for_xnnpack, requantization_problems, xnnpack_sparse_eligibility
from edgeopt.version import __version__

MANIFEST_KEY = "edgeopt_manifest"
MANIFEST_FORMAT = "edgeopt.manifest/1"
LABELS_FILE = metadata.LABELS_NAME
IO_TYPES = ("uint8", "int8", "float32")  # input/output types of a full-integer (int8) model
INTEGER_MODES = ("int8", "int4")  # full-integer files: uint8 or int8 input and output


class ExportVerificationError(ValueError):
    """The converted model disagrees with the Keras model more than allowed; nothing was written."""


# ---- modes --------------------------------------------------------------------------------------------


def _setup_float32(conv, rep):
    pass


def _setup_float16(conv, rep):
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]


def _setup_dynamic(conv, rep):
    conv.optimizations = [tf.lite.Optimize.DEFAULT]


def _setup_int8(conv, rep):
    # int8 input/output here; export gives the file uint8 I/O afterwards (edgeopt.tflite.interface) or,
    # for io="float32", the converter keeps float I/O with QUANTIZE/DEQUANTIZE at the ends
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8


def _setup_int8_float_io(conv, rep):
    _setup_int8(conv, rep)
    conv.inference_input_type = conv.inference_output_type = tf.float32


def _setup_int16x8(conv, rep):
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    # ops without an int16x8 kernel stay float instead of failing; the op report lists them
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]


# mode -> (converter setup, needs calibration data, what it is)
MODES = {
    "float32": (_setup_float32, False, "float32 weights and activations"),
    "float16": (_setup_float16, False, "float16 weights, float32 activations (half the size)"),
    "dynamic": (_setup_dynamic, False, "dynamic-range: int8 weights, float activations quantized on the fly"),
    "int8": (_setup_int8, True, "full integer: int8 weights and activations"),
    "int16x8": (_setup_int16x8, True, "int16 activations, int8 weights, float input and output"),
    # the converter's float32 file, then ai-edge-quantizer (edgeopt.tflite.int4): the converter writes no INT4
    "int4": (_setup_float32, True, "full integer with INT4 kernels in CONV_2D/FULLY_CONNECTED (ai-edge-quantizer; the low-bit "
                                   "layers of lowbit_bits, or all), int8 in the other ops, int8 activations"),
}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")


def resolve_io(mode: str, io: str | None) -> str:
    """The input/output type of a ``mode`` export: int8 takes ``io`` (default uint8, what Android's camera
    and Bitmap APIs give), int4 uint8 or int8; the other modes have float32 I/O."""
    _check_mode(mode)
    if mode == "int4" and io == "float32":
        raise ValueError("io='float32' is not available with mode='int4' (ai-edge-quantizer's static quantization makes int8 input "
                         "and output); use io='uint8' or 'int8'")
    if mode in INTEGER_MODES:
        if io is None:
            return "uint8"
        if io not in IO_TYPES:
            raise ValueError(f"io must be one of {', '.join(IO_TYPES)} for an int8 export; got {io!r}")
        return io
    if io not in (None, "float32"):
        raise ValueError(f"io={io!r} needs mode='int8' (a {mode} model has float32 input and output); use mode='int8' or io='float32'")
    return "float32"


def describe_mode(mode: str, io: str, keep_float: dict | None = None) -> str:
    """One line saying what a ``mode`` file with ``io`` input/output holds; ``keep_float`` (a manifest's entry:
    the layers and converter nodes an int8 file keeps float) adds which layers stay float32."""
    text = f"{MODES[mode][2]}, {io} input and output" if mode in INTEGER_MODES else MODES[mode][2]
    if keep_float:
        text += f"; {len(keep_float['nodes'])} ops of layers {', '.join(keep_float['layers'])} kept float32 (keep_float)"
    return text


# ---- conversion ---------------------------------------------------------------------------------------


def _variables_of(model: keras.Model) -> tf.Module:
    """The object the converter saves beside the traced function: the model's variables, nothing else.

    The converter first writes the function and this object as a SavedModel. Given the Keras model itself, that
    save also traces every layer for Keras's own SavedModel metadata, which the .tflite never uses: about 6 of a
    small model's 8 seconds of conversion (float32, int8, int16x8, QAT, keep_float and sparse exports of the tiny
    zoo models came out byte for byte the same either way; tests/test_export.py checks it)."""
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def _concrete_function(model: keras.Model):
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="input")
    fn = tf.function(lambda x: model(x, training=False))
    return fn.get_concrete_function(spec)


@dataclass(frozen=True)
class Calibration:
    """How int8/int16x8 ranges were calibrated: ``samples`` model inputs in ``seconds`` (wall time)."""

    samples: int
    seconds: float


def convert(model: keras.Model, mode: str = "float32", representative: np.ndarray | None = None, sparse_weights: bool = False,
            explicit_pad: bool = True, io: str | None = None, lowbit_bits=None) -> bytes:
    """Convert ``model`` to .tflite bytes in ``mode`` (no verification, no metadata); see :func:`to_tflite`.

    ``representative`` holds float model inputs (N, H, W, C) for calibration; int8, int16x8 and int4 need it.
    ``explicit_pad=False`` keeps the converter's SAME padding in a float32 ``sparse_weights`` file.
    ``io``: input/output type of an int8 model (see :func:`resolve_io`). ``lowbit_bits``: as in :func:`to_tflite`.
    """
    _check_lowbit_arguments(mode, lowbit_bits, sparse_weights)
    return _convert(model, mode, representative, sparse_weights, explicit_pad, io, lowbit=lowbit_plan(model, lowbit_bits))[0]


def _converter(model, mode: str, io: str, rep):
    """The TFLiteConverter of a ``mode`` export with ``io`` input/output, set up and not yet run."""
    setup = _setup_int8_float_io if mode == "int8" and io == "float32" else MODES[mode][0]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_function(model)], _variables_of(model))
    setup(converter, rep)
    return converter


def _timed_samples(samples: np.ndarray, what: str, clock: dict):
    """The representative-dataset generator over ``samples`` (one at a time, batch 1); ``clock`` gets its start and end."""
    def rep():
        clock.setdefault("start", time.perf_counter())
        for x in bar(samples, desc=what, unit="image"):
            yield [np.asarray(x, np.float32)[None]]
        clock["end"] = time.perf_counter()

    return rep


def _convert(model, mode: str, representative: np.ndarray | None, sparse_weights: bool = False, explicit_pad: bool = True,
             io: str | None = None, preprocessing=None, keep_float: tuple[str, ...] = (),
             lowbit: dict[str, int] | None = None) -> tuple[bytes, Calibration | None, KeptFloat | None, tuple]:
    """The .tflite bytes of ``model`` in ``mode``, how it was calibrated, what it keeps float, and (with ``lowbit``, a
    :func:`lowbit_plan`) one :class:`edgeopt.tflite.lowbit.LowBitKernel` per low-bit layer as stored."""
    require_keras2_model(model, "edgeopt.export")
    io = resolve_io(mode, io)
    needs_data = MODES[mode][1]
    if needs_data and (representative is None or len(representative) == 0):
        raise ValueError(f"mode {mode!r} needs representative_data (a few hundred model inputs) to calibrate activation ranges")
    clock = {}
    converter = _converter(model, mode, io, _timed_samples(representative, f"calibrating {mode}", clock))
    kept = None
    if keep_float:
        data, kept = _convert_keep_float(model, converter, keep_float, io)
    else:
        if sparse_weights:  # store pruned kernels in TFLite's sparse format (DENSIFY ops / sparse kernels read them)
            converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        try:
            data = converter.convert()
        except Exception as err:  # the converter raises ConverterError / RuntimeError with MLIR text
            raise RuntimeError(f"TFLite conversion of {model.name!r} to {mode} failed: {err}") from err
    if mode == "int4":
        clock["start"] = time.perf_counter()  # ai-edge-quantizer calibrates (its own interpreter) and quantizes
        data = tflite_int4.quantize_int4(data, representative, model.name, None if lowbit is None else [n for n, b in lowbit.items() if b <= 4])
        clock["end"] = time.perf_counter()
    kernels = ()
    levels = lowbit_levels(lowbit or {})
    if levels:  # after int4: its depthwise kernels are int8 (and inexact at 4 bits) too
        data, kernels = tflite_lowbit.exact_lowbit_codes(data, model.name, levels)
    if sparse_weights and explicit_pad and mode == "float32":
        # XNNPACK's sparse (NCHW) kernels reject SAME-padded depthwise convolutions: write symmetric SAME
        # padding as PAD + VALID (exact; XNNPACK folds the PAD back into the convolution). See edgeopt.tflite.xnnpack.
        data = explicit_pad_for_xnnpack(data)
    if io == "uint8":
        # raw pixel bytes in: the uint8 input's quantization is the normalization when it is known
        pixels = interface.pixel_quantization(preprocessing.mean, preprocessing.std) if preprocessing is not None else None
        data = interface.retype_io(data, "uint8", input_quantization=pixels)
    calib = Calibration(len(representative), clock["end"] - clock["start"]) if needs_data and "end" in clock else None
    return data, calib, kept, kernels


# ---- low-bit kernels ---------------------------------------------------------------------------------------


def _check_lowbit_arguments(mode: str, lowbit_bits, sparse_weights: bool) -> None:
    """``lowbit_bits`` and mode int4: what they combine with, and int4's optional package (checked before converting,
    so that a missing package fails at once, in one line)."""
    if lowbit_bits is not None and mode not in INTEGER_MODES:
        raise ValueError(f"lowbit_bits needs mode='int8' (exact int8 codes) or 'int4' (INT4 kernels); got mode={mode!r}")
    if sparse_weights and (lowbit_bits is not None or mode == "int4"):
        raise ValueError(f"{'lowbit_bits' if lowbit_bits is not None else 'mode=int4'} cannot be combined with sparse_weights "
                         "(low-bit and INT4 kernels are written dense); drop one")
    if mode == "int4":
        tflite_int4.require()


# ---- selective precision and the quantization debugger ----------------------------------------------------
# TF 2.21's converter keeps chosen ops float only through the MLIR quantizer's node denylist, which it exposes as
# tf.lite.experimental.QuantizationDebugger(converter=...) with QuantizationDebugOptions(denylisted_nodes=...):
# the debugger calibrates with the converter as set up here (converter._experimental_calibrate_only) and
# quantizes the calibrated model with the same mlir_quantize the converter calls, plus the denylist.
# Per-layer int16 activations are not possible: a 16x8 export goes through the old quantizer with one
# activations_type for the whole model (tensorflow/lite/python/lite.py, TFLiteConverterBase._quantize: the MLIR
# quantizer only when activations_type != int16; calibrator.py: QuantizeModel takes one activations_type, and
# its one-op variant, calibrate_and_quantize_single, only int8), and mlir_quantize's inference_type is one type
# for all quantized ops (convert.py: mlir_quantize(inference_type=QUANTIZED_INT8, denylisted_nodes=...)).


@dataclass(frozen=True)
class PrecisionConfig(Config):
    """Selective precision of an int8 export.

    - ``keep_float``: glob patterns (``fnmatch``, e.g. ``"block5*"``) on Keras layer names; the TFLite ops those
      layers compute stay float32 (weights and activations), everything else is int8, input and output keep
      their int8/uint8 type. Each pattern must match a layer that computes an op.
    - ``auto_fallback``: top-1 points (0..100) to win back on the validation data:
      :func:`edgeopt.bench.quant_report.auto_fallback` keeps float the layers around the worst tensors of the
      quantization report, one tensor at a time, until the file is within this many points of the float model.
    - ``max_fallback_steps``: at most this many tensors (steps) for ``auto_fallback``.
    """

    keep_float: tuple[str, ...] = ()
    auto_fallback: float | None = None
    max_fallback_steps: int = 4

    def __post_init__(self):
        if isinstance(self.keep_float, str) or not all(isinstance(p, str) and p.strip() for p in self.keep_float):
            raise ValueError(f"keep_float must be a list of layer-name patterns such as [\"block5*\"], got {self.keep_float!r}")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        if self.auto_fallback is not None and not (isinstance(self.auto_fallback, (int, float)) and 0 <= self.auto_fallback <= 100):
            raise ValueError(f"auto_fallback must be top-1 points in [0, 100] (e.g. 0.3), or none; got {self.auto_fallback!r}")
        if not isinstance(self.max_fallback_steps, int) or isinstance(self.max_fallback_steps, bool) or self.max_fallback_steps < 1:
            raise ValueError(f"max_fallback_steps must be an integer >= 1, got {self.max_fallback_steps!r}")


@dataclass(frozen=True)
class KeptFloat:
    """What of an int8 export stays float: the ``keep_float`` patterns, the Keras layers they matched and the
    converter nodes (output tensor names of the ops those layers compute) that were denylisted."""

    patterns: tuple[str, ...]
    layers: tuple[str, ...]
    nodes: tuple[str, ...]


def match_layers(model: keras.Model, patterns) -> tuple[str, ...]:
    """The names of ``model``'s layers that match any glob in ``patterns``, in model order; a pattern that
    matches no layer is an error naming it."""
    patterns = PrecisionConfig(keep_float=tuple(patterns)).keep_float
    names = [layer.name for layer in model.layers]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"keep_float pattern {pattern!r} matches no layer of {model.name!r} (layers: {shown})")
    return tuple(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def keep_float_nodes(model_bytes: bytes, model: keras.Model, patterns) -> KeptFloat:
    """Which converter nodes (output tensor names) of ``model_bytes``, a float or calibrated conversion of ``model``,
    compute the layers matching ``patterns`` (see :mod:`edgeopt.tflite.layers`). Layers that compute no op of
    their own (a Dropout, a BatchNormalization folded into its convolution) are left out; a pattern left with
    no such layer is an error."""
    patterns = PrecisionConfig(keep_float=tuple(patterns)).keep_float
    layers = match_layers(model, patterns)
    pairs = tflite_layers.op_layers(model_bytes, model.name, [layer.name for layer in model.layers])
    computing = {name for _, computed in pairs for name in computed}
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in computing):
            raise ValueError(f"keep_float pattern {pattern!r} matches layers {[n for n in layers if fnmatch.fnmatchcase(n, pattern)]} that compute "
                             "no TFLite op of their own (folded into another op or removed by the converter); name the layer they are folded into")
    kept = tuple(n for n in layers if n in computing)
    return KeptFloat(patterns, kept, tuple(op.output_name for op, computed in pairs if computed & set(kept)))


def _debug_options(nodes=(), fully_quantize: bool = False):
    return tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(nodes) or None, fully_quantize=fully_quantize)


def _debugger(converter, debug_samples: np.ndarray | None, fully_quantize: bool = False):
    """QuantizationDebugger over a set-up int8 ``converter``; calibrates now."""
    debug = (lambda: ([np.asarray(x, np.float32)[None]] for x in debug_samples)) if debug_samples is not None else None
    return tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug, debug_options=_debug_options((), fully_quantize))


def _keep_nodes_float(debugger, nodes, fully_quantize: bool = False) -> None:
    """Quantize the debugger's calibrated model again with ``nodes`` denylisted (kept float)."""
    try:
        debugger.options = _debug_options(nodes, fully_quantize)
    except ValueError as err:
        if "debug mode" in str(err):  # the new debug model has no NumericVerify op: nothing left to quantize
            raise ValueError("keep_float keeps every quantizable op float: nothing would be int8; export mode='float32' instead") from None
        raise


def _convert_keep_float(model, converter, patterns: tuple[str, ...], io: str) -> tuple[bytes, KeptFloat]:
    """The int8 export of ``converter`` with the ops of the layers matching ``patterns`` kept float (int8 or float I/O)."""
    fully = io != "float32"  # mlir_quantize's fully_quantize: int8 input/output, as the converter's int8 I/O
    debugger = _debugger(converter, None, fully_quantize=fully)
    kept = keep_float_nodes(debugger.calibrated_model, model, patterns)
    _keep_nodes_float(debugger, kept.nodes, fully)
    return debugger.get_nondebug_quantized_model(), kept


def int8_debugger(model: keras.Model, calibration: np.ndarray, debug_samples: np.ndarray, keep_float=()):
    """``tf.lite.experimental.QuantizationDebugger`` of ``model``'s int8 export: the converter :func:`to_tflite`
    builds for ``mode="int8"``, calibrated on ``calibration`` (float model inputs), so the debugger sees the
    quantization the export gets; its debug dataset is ``debug_samples``. The layers matching ``keep_float``
    stay float, as in a ``keep_float`` export. Returns (debugger, :class:`Calibration`, :class:`KeptFloat` or None).

    ``debugger.quant_model`` is the debug model: float input and output, and after every quantized op a
    NumericVerify op whose inputs are the op's int8 output and the float op's output computed from the same
    (dequantized) inputs, so each tensor's error is what that op's quantization adds (layer by layer).
    """
    require_keras2_model(model, "edgeopt.export.int8_debugger")
    if calibration is None or len(calibration) == 0:
        raise ValueError("int8_debugger needs calibration samples (float model inputs)")
    clock = {}
    converter = _converter(model, "int8", "int8", _timed_samples(calibration, "calibrating int8", clock))
    debugger = _debugger(converter, debug_samples)
    kept = None
    if keep_float:
        kept = keep_float_nodes(debugger.calibrated_model, model, keep_float)
        _keep_nodes_float(debugger, kept.nodes)
    return debugger, Calibration(len(calibration), clock.get("end", 0.0) - clock.get("start", 0.0)), kept


# ---- data -----------------------------------------------------------------------------------------------


def _collect(data, preprocessing, sample_shape: tuple, limit: int, skip: int = 0, where: str = "data"):
    """Up to ``limit`` float model inputs (and labels when present) from a tf.data dataset or an array.

    uint8 arrays are raw pixels and go through ``preprocessing`` (resize, channels, (p - mean) / std),
    exactly as the dataset pipelines do it.
    """
    labels = None
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        img_spec = spec[0] if isinstance(spec, tuple) else spec
        if len(img_spec.shape) == len(sample_shape) + 1:
            data = data.unbatch()
        xs, ys = [], []
        for elem in data.skip(skip).take(limit).batch(256):
            x, y = (elem[0], elem[1]) if isinstance(elem, tuple) else (elem, None)
            xs.append(x.numpy())
            if y is not None:
                ys.append(y.numpy().reshape(-1))
        if not xs:
            raise ValueError(f"{where} is empty (after skipping {skip} samples used for calibration)")
        x = np.concatenate(xs)
        labels = np.concatenate(ys) if ys else None
    else:
        x = np.asarray(data)
        if x.ndim == len(sample_shape):
            x = x[..., None]  # (N, H, W) grey images
        x = x[skip : skip + limit]
        if x.size == 0:
            raise ValueError(f"{where} is empty (after skipping {skip} samples used for calibration)")
        if x.dtype == np.uint8:
            if preprocessing is None:
                raise ValueError(f"{where} is uint8 pixels; pass preprocessing= (edgeopt.data.Preprocessing) to normalize them, or pass float model inputs")
            x = preprocess_images(x, preprocessing)
    if tuple(x.shape[1:]) != tuple(sample_shape):
        raise ValueError(
            f"wrong input size: {where} has samples of shape {tuple(x.shape[1:])} but the model expects "
            f"{tuple(sample_shape)} (height, width, channels). Load the data at the model's size, e.g. "
            f"load_dataset(name, image_size={sample_shape[0]}, channels={sample_shape[-1]})."
        )
    return x.astype(np.float32), labels


# ---- verification ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """Keras vs .tflite on held-out samples: top-1 agreement (fraction), output differences, accuracies."""

    samples: int
    top1_agreement: float
    mean_abs_diff: float
    max_abs_diff: float
    keras_top1: float | None = None
    tflite_top1: float | None = None
    seconds: float = 0.0


def _keras_outputs(model, x: np.ndarray, batch: int = 128) -> np.ndarray:
    return np.concatenate([model(x[i : i + batch], training=False).numpy() for i in range(0, len(x), batch)])


def verify(model: keras.Model, model_bytes: bytes, inputs: np.ndarray, labels: np.ndarray | None = None) -> Verification:
    """Run the Keras model and the .tflite (LiteRT, dequantized outputs) on ``inputs`` and compare them."""
    start = time.perf_counter()
    expected = _keras_outputs(model, inputs)
    interp = runtime.make_interpreter(model_bytes)
    interp.allocate_tensors()
    got = runtime.predict(interp, inputs, progress="verifying .tflite against Keras")
    diff = np.abs(got.reshape(expected.shape) - expected)
    agree = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
    acc = (lambda out: float(np.mean(out.argmax(-1) == labels))) if labels is not None else (lambda out: None)
    return Verification(len(inputs), agree, float(diff.mean()), float(diff.max()), acc(expected), acc(got), time.perf_counter() - start)


# ---- artifact -------------------------------------------------------------------------------------------


@dataclass
class Artifact:
    """A converted, verified model: its bytes (manifest embedded), the manifest, where it was written."""

    model_bytes: bytes
    manifest: dict
    path: Path | None = None
    op_report: OpReport | None = None
    verification: Verification | None = None
    calibration: Calibration | None = None
    convert_seconds: float = 0.0
    files: list[Path] = field(default_factory=list)


def manifest_path(model_path: str | os.PathLike) -> Path:
    """Where the manifest of a model file goes: beside it, same name, ``.json``."""
    return Path(model_path).with_suffix(".json")


def file_facts(data: bytes) -> dict:
    """sha256, raw and gzipped size (bytes, gzip level 9) of a file's bytes."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), "gzip_bytes": gzip_size(data)}


def to_tflite(
    model: keras.Model,
    mode: str = "int8",
    representative_data=None,
    *,
    preprocessing=None,
    path: str | os.PathLike | None = None,
    verify_data=None,
    num_calibration: int = 300,
    num_verify: int = 500,
    min_agreement: float = 0.98,
    overwrite: bool = False,
    source: dict | None = None,
    sparse_weights: bool = False,
    io: str | None = None,
    info: ModelInfo | None = None,
    labels=None,
    android_metadata: bool = True,
    keep_float=(),
    lowbit_bits=None,
) -> Artifact:
    """Convert ``model`` to .tflite in ``mode``, verify it, and (with ``path``) write it for an app.

    ``representative_data``: a tf.data dataset (batched or not, of inputs or (inputs, labels)), a NumPy
    array of float model inputs or uint8 pixels (normalized with ``preprocessing``), or an
    ``edgeopt.data.Splits`` (train for calibration, val for verification, its preprocessing).
    The first ``num_calibration`` samples calibrate int8/int16x8. Verification runs on ``verify_data``
    or else on up to ``num_verify`` samples of ``representative_data`` after the calibration ones; when
    top-1 agreement is below ``min_agreement`` it raises :class:`ExportVerificationError` and writes
    nothing. ``source`` (e.g. the recipe) is copied into the manifest. ``sparse_weights`` adds the
    converter's ``Optimize.EXPERIMENTAL_SPARSITY``: kernels with many zeros (pruned models) are stored in
    TFLite's sparse format, which shrinks the file and lets XNNPACK's sparse kernels see the zeros.

    ``io``: input/output type of an int8 model, "uint8" (default: raw RGB bytes in, probabilities as
    uint8 out), "int8" or "float32". ``info`` (:class:`ModelInfo`) names the model in the standard
    metadata (default: the Keras model's name); ``labels`` are the class names (default: the
    preprocessing's), one per output. ``android_metadata=False`` leaves out the standard TFLite
    Metadata (for a model whose input is not an image). ``keep_float``: glob patterns on Keras layer names whose
    ops stay float32 in an int8 file (:class:`PrecisionConfig`; the manifest's ``keep_float`` lists the layers
    and converter nodes). Returns an :class:`Artifact`.

    ``lowbit_bits``: ``{layer name: weight bits}`` of a stripped low-bit model (``edgeopt.compress.lowbit``: the
    ``plan_bits`` of its QAT config; layers left out are 8-bit), for ``mode="int8"`` or ``"int4"``. Each kernel below
    8 bits is stored exactly (:mod:`edgeopt.tflite.lowbit`: int8 codes k * floor(127 / Q); with int4, INT4 codes in the
    CONV_2D / FULLY_CONNECTED of layers at 4 bits or fewer, :mod:`edgeopt.tflite.int4`), a kernel that is not on its
    grid is an error, and the manifest's ``lowbit`` entry lists the kernels as stored, whether all are exact, and
    the packed size of the weights at these bit-widths. ``mode="int4"`` without it makes every CONV_2D /
    FULLY_CONNECTED kernel INT4 (post-training; verification says what that costs). int4 needs ai-edge-quantizer.
    """
    keep_float = _check_arguments(model, mode, min_agreement, num_calibration, num_verify, keep_float, sparse_weights, lowbit_bits)
    plan = lowbit_plan(model, lowbit_bits)
    io = resolve_io(mode, io)
    class_names = _labels(model, preprocessing or getattr(representative_data, "preprocessing", None), labels)
    if android_metadata or io == "uint8":
        _check_image_input(model, io)
    targets = _targets(path)
    if targets and not overwrite:
        _refuse_existing(targets, _labels_text(class_names))
    data = collect_data(model, representative_data, verify_data, preprocessing, num_calibration, num_verify)
    start = time.perf_counter()
    raw, calib, kept, kernels = _convert(model, mode, data.calibration if MODES[mode][1] else None, sparse_weights, io=io,
                                         preprocessing=data.preprocessing, keep_float=keep_float, lowbit=plan)
    convert_seconds = time.perf_counter() - start
    report = op_report(raw, mode, kept.layers if kept else (), model.name)
    _check_io(raw, mode, io, report, model.name, kept)
    _check_xnnpack(raw, model)
    check = _verify_or_refuse(model, raw, mode, data, min_agreement)
    manifest = build_manifest(model, raw, mode, data.preprocessing, report, calib, check, convert_seconds, source, io=io, labels=class_names)
    if kept is not None:  # quantize_report reads the nodes back to debug the same quantization
        manifest["keep_float"] = {key: list(value) for key, value in asdict(kept).items()}  # as JSON reads it back
        manifest["mode_description"] = describe_mode(mode, io, manifest["keep_float"])
    if plan is not None or mode == "int4":
        manifest["lowbit"] = lowbit_entry(model, raw, mode, plan, kernels)
    if sparse_weights:
        # whether XNNPACK on ARM would run its sparse kernels, and why not (AVX x86 never does: see tflite.xnnpack)
        manifest["xnnpack_sparse"] = xnnpack_sparse_eligibility(raw).to_dict()
    manifest["deploy"] = deploy_summary(raw)  # ops + versions, minimum runtime, GPU delegate, arena (edgeopt inspect shows more)
    standard = None
    if android_metadata:
        standard = classifier_metadata(_named(info, model.name), class_names, model.input_shape[1:], data.preprocessing, ends_in_softmax(model))
        manifest["metadata"] = standard.manifest_entry()
    final = _embed(raw, manifest, standard, data.verify_inputs)
    manifest = {**manifest, "file": {"name": targets[0].name if targets else None, **file_facts(final)}}
    art = Artifact(final, manifest, None, report, check, calib, convert_seconds)
    if targets:
        art.path, art.files = targets[0], _write_all(targets, final, manifest, _labels_text(class_names), overwrite)
    return art


@dataclass(frozen=True)
class ModelInfo:
    """How the standard metadata names a model (MediaPipe and Android Studio show these)."""

    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""


def _named(info: ModelInfo | None, default_name: str) -> ModelInfo:
    """``info`` with ``default_name`` where it gives no name (a ModelInfo of just that name when None)."""
    return replace(info, name=info.name or default_name) if info else ModelInfo(default_name)


# what the output holds, as the manifest and as the standard metadata say it
_MEANINGS = {True: ("class probabilities (softmax)", "Probability of each class."),
             False: ("class logits", "Score (logit) of each class; softmax gives probabilities.")}


def classifier_metadata(info: ModelInfo, class_names, input_shape, prep, probabilities: bool) -> metadata.ClassifierMetadata:
    """The standard TFLite Metadata of an image classifier (see :mod:`edgeopt.tflite.metadata`): ``input_shape``
    is (height, width, channels), ``prep`` the :class:`~edgeopt.data.Preprocessing` (None: normalization
    unknown), ``probabilities`` whether the output is softmax probabilities."""
    h, w, c = (int(v) for v in input_shape)
    norm = {"mean": prep.mean, "std": prep.std, "input_range": tuple(prep.input_range)} if prep is not None else {}
    return metadata.ClassifierMetadata(name=info.name, labels=tuple(class_names), image_size=(h, w), channels=c,
                                       description=info.description, version=info.version, author=info.author, license=info.license,
                                       output_description=_MEANINGS[probabilities][1], normalization=prep is not None, **norm)


def _io_entries(data: bytes, io: str, probabilities: bool) -> tuple[dict, dict]:
    """The manifest's ``input`` and ``output`` entries of a .tflite with ``io`` input/output."""
    ins, outs = flatbuffer.io_tensors(data)
    feed = {"feed": "raw RGB bytes 0..255 after resizing (normalization is in the input quantization)"} if io == "uint8" else {}
    return {**ins[0].to_dict(), **feed}, {**outs[0].to_dict(), "meaning": _MEANINGS[probabilities][0]}


def _check_image_input(model, io: str) -> None:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] not in (1, 3) or None in shape[1:]:
        need = "io='uint8' needs" if io == "uint8" else "the standard image metadata needs"
        raise ValueError(f"model {model.name!r} input {shape} is not an image tensor (batch, height, width, 1 or 3 channels): {need} one; "
                         "export a non-image model with android_metadata=False and io='int8' or 'float32'")


def _check_arguments(model, mode: str, min_agreement: float, num_calibration: int, num_verify: int, keep_float=(),
                     sparse_weights: bool = False, lowbit_bits=None) -> tuple[str, ...]:
    """Raise ValueError naming the argument that is wrong; returns ``keep_float`` as a tuple of patterns."""
    require_keras2_model(model, "edgeopt.export.to_tflite")
    _check_mode(mode)
    _check_lowbit_arguments(mode, lowbit_bits, sparse_weights)
    if not 0 <= min_agreement <= 1:
        raise ValueError(f"min_agreement must be in [0, 1], got {min_agreement}")
    if num_calibration < 1 or num_verify < 0:
        raise ValueError(f"num_calibration must be >= 1 and num_verify >= 0; got {num_calibration}, {num_verify}")
    keep_float = PrecisionConfig(keep_float=tuple(keep_float) if not isinstance(keep_float, str) else keep_float).keep_float
    if keep_float and mode != "int8":
        raise ValueError(f"keep_float needs mode='int8' (TF's converter keeps chosen ops float only in an int8 export); got mode={mode!r}")
    if keep_float and sparse_weights:
        raise ValueError("keep_float cannot be combined with sparse_weights (the denylisting quantizer writes no sparse tensors); drop one")
    if keep_float:
        match_layers(model, keep_float)  # a pattern that matches no layer fails before calibration
    return keep_float


@dataclass(frozen=True)
class ExportData:
    """The samples an export uses: float model inputs to calibrate with, held-out inputs (and labels) to
    verify on (None: not verified), and the preprocessing that made them."""

    calibration: np.ndarray | None
    verify_inputs: np.ndarray | None
    verify_labels: np.ndarray | None
    preprocessing: object | None


def collect_data(model: keras.Model, representative_data, verify_data, preprocessing, num_calibration: int, num_verify: int) -> ExportData:
    """Calibration and verification samples for :func:`to_tflite` (see there for what each argument may be)."""
    if _is_splits(representative_data):
        splits = representative_data
        preprocessing = preprocessing or splits.preprocessing
        verify_data = verify_data if verify_data is not None else (splits.val if splits.sizes.get("val") else splits.test)
        representative_data = splits.train
    sample_shape = tuple(model.input_shape[1:])
    calib_x = None
    if representative_data is not None:
        calib_x, _ = _collect(representative_data, preprocessing, sample_shape, num_calibration, where="representative_data")
    verify_x = verify_y = None
    if verify_data is not None:
        verify_x, verify_y = _collect(verify_data, preprocessing, sample_shape, num_verify or 10**9, where="verify_data")
    elif representative_data is not None and num_verify and len(calib_x) == num_calibration:
        try:
            verify_x, verify_y = _collect(representative_data, preprocessing, sample_shape, num_verify, skip=num_calibration, where="representative_data")
        except ValueError:  # nothing left after the calibration samples: not verified
            verify_x = None
    return ExportData(calib_x, verify_x, verify_y, preprocessing)


def _verify_or_refuse(model, raw: bytes, mode: str, data: ExportData, min_agreement: float) -> Verification | None:
    """:func:`verify` on the held-out samples; raises :class:`ExportVerificationError` below ``min_agreement``."""
    if data.verify_inputs is None:
        return None
    check = verify(model, raw, data.verify_inputs, data.verify_labels)
    if check.top1_agreement < min_agreement:
        raise ExportVerificationError(
            f"{mode} export of {model.name!r} agrees with the Keras model on only {check.top1_agreement:.1%} of "
            f"{check.samples} held-out samples (min_agreement={min_agreement:.0%}; mean |diff| {check.mean_abs_diff:.4g}); "
            "nothing was written. Calibrate with more or more representative samples (num_calibration), "
            "use quantization-aware training, or export float16/dynamic instead."
        )
    return check


def _embed(raw: bytes, manifest: dict, standard: metadata.ClassifierMetadata | None, verify_inputs: np.ndarray | None) -> bytes:
    """The model with its manifest and standard metadata embedded and its labels packed inside, checked to
    compute exactly what ``raw`` computes."""
    final = flatbuffer.embed_metadata(raw, MANIFEST_KEY, json.dumps(manifest, sort_keys=True).encode())
    if standard is not None:
        final = metadata.attach(final, standard)
    if verify_inputs is not None:
        _check_same_outputs(raw, final, verify_inputs[:4])
    return final


def _is_splits(obj) -> bool:
    return all(hasattr(obj, a) for a in ("train", "val", "test", "preprocessing"))


def _check_io(data: bytes, mode: str, io: str, report: OpReport, name: str, kept: KeptFloat | None = None) -> None:
    """An int8 export must have ``io`` inputs/outputs and no float computation inside, except the ops of the
    ``kept`` layers. QUANTIZE/DEQUANTIZE only convert (float32 I/O has them at its ends, kept layers around them)."""
    if mode not in INTEGER_MODES:
        return
    ins, outs = flatbuffer.io_tensors(data)
    bad = [t for t in (*ins, *outs) if t.dtype != io]
    pairs = tflite_layers.op_layers(data, name, kept.layers if kept else ())  # an op of a kept layer names it
    stray = sorted({op.op for op, layers in pairs if op.op not in tflite_layers.CARRIERS and not layers
                    and {"float32", "float16"} & set(op.input_dtypes + op.output_dtypes)})
    if bad or stray:
        raise RuntimeError(f"{mode} export of {name!r} is not fully integer: I/O not {io} {[t.name for t in bad]}, float ops {stray}")


def _check_xnnpack(data: bytes, model: keras.Model) -> None:
    """Refuse an int8 file XNNPACK cannot run (:func:`edgeopt.tflite.xnnpack.requantization_problems`): LiteRT's
    default CPU path and MediaPipe's ImageClassifier fail to load it. Names the layers and what to check."""
    problems = requantization_problems(data)
    if not problems:
        return
    names = [layer.name for layer in model.layers]
    layers = [sorted(tflite_layers.layers_in_name(p.output, model.name, names)) for p in problems]
    where = "; ".join(f"{p.op} of {', '.join(found) or p.output} "
                      f"(output scale {p.output_scale:.3g}, requantization scale up to {p.max_scale:,.0f} in {p.channels} channels)"
                      for p, found in zip(problems, layers))
    float_hint = sorted({name for found in layers for name in found})
    raise RuntimeError(f"the int8 file of {model.name!r} cannot run on XNNPACK (LiteRT's default CPU delegate; MediaPipe's ImageClassifier "
                       f"would not load it): {where}; XNNPACK needs input scale x kernel scale / output scale below "
                       f"{MAX_REQUANTIZATION_SCALE:g}. A tiny output scale means the layer's output was nearly constant on the calibration "
                       "images: check that layer's weights (pruning may have left it almost none: layer collapse) and the calibration images"
                       + (f", or keep it float32 (keep_float={float_hint})" if float_hint else ""))


def _check_same_outputs(raw: bytes, final: bytes, x: np.ndarray) -> None:
    outs = []
    for data in (raw, final):
        interp = runtime.make_interpreter(data)
        interp.allocate_tensors()
        outs.append(runtime.predict(interp, x))
    if not np.array_equal(*outs):
        raise RuntimeError("embedding the manifest changed the model's outputs; this is a bug in edgeopt")


# ---- manifest -------------------------------------------------------------------------------------------


def _class_count(model) -> int:
    return int(model.output_shape[-1])


def _labels(model, preprocessing, labels=None) -> list[str]:
    """The class names of ``model``'s outputs: ``labels``, else the preprocessing's, else "0", "1", ...;
    a count that differs from the model's outputs is an error naming both."""
    names, where = (list(labels), "labels") if labels is not None else (list(getattr(preprocessing, "class_names", ()) or ()), "")
    if not where and names:
        where = f"dataset {getattr(preprocessing, 'dataset', '') or '?'!r}"
    if names and len(names) != _class_count(model):
        raise ValueError(f"{where} has {len(names)} class names but model {model.name!r} has {_class_count(model)} outputs; "
                         "give one label per output (or train the model on this dataset)")
    if any(not isinstance(n, str) or not n.strip() or "\n" in n for n in names):
        raise ValueError(f"{where or 'labels'}: every class name must be a non-empty one-line string")
    return names or [str(i) for i in range(_class_count(model))]


def _labels_text(class_names: list[str]) -> str:
    return metadata.labels_text(class_names).decode()


def _preprocessing_entry(prep) -> dict | None:
    if prep is None:
        return None
    lo, hi = prep.input_range
    return {
        "image_size": list(prep.image_size),
        "channels": prep.channels,
        "mean": prep.mean,
        "std": prep.std,
        "formula": "input = (pixel - mean) / std, pixel in [0, 255], after resizing to image_size (bilinear, "
                   "asymmetric coordinates without half-pixel centers: what MediaPipe's ImageClassifier does)",
        "input_range": [lo, hi],
        "color": "RGB" if prep.channels == 3 else "grayscale",
        "dataset": prep.dataset,
    }


def build_manifest(model, data: bytes, mode: str, prep, report, calib, check, convert_seconds: float, source: dict | None,
                   io: str | None = None, labels: list[str] | None = None) -> dict:
    """Everything an app needs to feed the model and read its output, plus provenance (JSON-ready dict)."""
    config = json.dumps(model.get_config(), sort_keys=True, default=str)
    io = resolve_io(mode, io)
    inp, out = _io_entries(data, io, ends_in_softmax(model))
    return {
        "format": MANIFEST_FORMAT,
        "mode": mode,
        "mode_description": describe_mode(mode, io),
        "io": io,
        "input": inp,
        "output": out,
        "preprocessing": _preprocessing_entry(prep),
        "labels": labels if labels is not None else _labels(model, prep),
        "labels_file": LABELS_FILE,
        "source_model": {"name": model.name, "params": int(model.count_params()), "input_shape": list(model.input_shape[1:]), "config_sha256": hashlib.sha256(config.encode()).hexdigest()},
        "source": source or {},
        "calibration": asdict(calib) if calib else None,
        "verification": asdict(check) if check else None,
        "verified_agreement": check.top1_agreement if check else None,
        "ops": report.summary(),
        "convert_seconds": round(convert_seconds, 3),
        "tools": {"edgeopt": __version__, "tensorflow": tf.__version__, "converter": "TFLiteConverter.from_concrete_functions, batch 1"},
    }


def read_manifest(model) -> dict:
    """The manifest embedded in a .tflite (bytes or path), with its ``file`` facts computed from the bytes.

    Raises ValueError when the model carries no edgeopt manifest.
    """
    data, label = flatbuffer.load_model_bytes(model)
    raw = flatbuffer.read_metadata(data, MANIFEST_KEY)
    if raw is None:
        raise ValueError(f"{label} has no embedded edgeopt manifest (metadata entry {MANIFEST_KEY!r}); it was not exported by edgeopt.export.to_tflite")
    manifest = json.loads(raw.decode())
    name = None if isinstance(model, (bytes, bytearray, memoryview)) else Path(model).name
    return {**manifest, "file": {"name": name, **file_facts(data)}}


# ---- existing files ------------------------------------------------------------------------------------


def make_android_ready(model, *, io: str | None = None, info: ModelInfo | None = None, path: str | os.PathLike | None = None,
                       overwrite: bool = False, samples: int = 64) -> Artifact:
    """An edgeopt .tflite (bytes or path) made loadable by Android's standard APIs without converting again:
    int8 input/output becomes ``io`` (default uint8: an exact re-quantization, see :mod:`edgeopt.tflite.interface`;
    float files keep float32),
    the standard metadata and the labels go inside, the manifest says so. Checked: the new file's
    dequantized outputs equal the old file's on ``samples`` inputs spread over the input range (the int8
    graph is the same, so its verification against Keras carries over). ``path`` writes it like
    :func:`to_tflite` (model, manifest, labels)."""
    data, label = flatbuffer.load_model_bytes(model)
    manifest = read_manifest(data)
    mode = manifest["mode"]
    io = resolve_io(mode, io)
    ins, _ = flatbuffer.io_tensors(data)
    prep = manifest.get("preprocessing") or {}
    if io != ins[0].dtype:
        if mode != "int8" or io != "uint8":
            raise ValueError(f"{label}: cannot change a {mode} model's {ins[0].dtype} input to {io}; export it again from the Keras model")
        _check_pixel_scale(label, ins[0], prep)
    bare = metadata.strip_files(data)
    new = interface.retype_io(bare, io) if io != ins[0].dtype else bare
    x = np.random.default_rng(0).uniform(*(prep.get("input_range") or (-1.0, 1.0)), size=(samples, *ins[0].shape[1:])).astype(np.float32)
    _check_same_outputs(data, new, x)
    default_name = (manifest.get("source") or {}).get("recipe") or manifest.get("source_model", {}).get("name") or Path(label).stem
    info = _named(info, default_name)
    preprocessing = Preprocessing(tuple(prep["image_size"]), prep["channels"], prep["mean"], prep["std"], tuple(manifest["labels"]),
                                  prep.get("dataset", "")) if prep else None
    probabilities = _ends_in_softmax_op(new) or "softmax" in manifest["output"].get("meaning", "")
    standard = classifier_metadata(info, manifest["labels"], ins[0].shape[1:], preprocessing, probabilities)
    inp, out = _io_entries(new, io, probabilities)
    updated = {key: value for key, value in manifest.items() if key != "file"}
    kept = manifest.get("keep_float")  # stays in the manifest as it is; the description and op notes say it again
    report = op_report(new, mode, (kept or {}).get("layers", ()), manifest.get("source_model", {}).get("name", ""))
    updated.update(io=io, mode_description=describe_mode(mode, io, kept), input=inp, output=out,
                   ops=report.summary(), deploy=deploy_summary(new), metadata=standard.manifest_entry(),
                   android_ready_from={"sha256": manifest["file"]["sha256"], "checked_samples": samples, "outputs": "identical"})
    final = _embed(new, updated, standard, x[:4])
    updated["file"] = {"name": Path(path).name if path else None, **file_facts(final)}
    art = Artifact(final, updated)
    if path is not None:
        targets = _targets(path)
        if not overwrite:
            _refuse_existing(targets, _labels_text(manifest["labels"]))
        art.path, art.files = targets[0], _write_all(targets, final, updated, _labels_text(manifest["labels"]), overwrite)
    return art


def _ends_in_softmax_op(data: bytes) -> bool:
    """Whether the last computing op of a .tflite (before a final QUANTIZE/DEQUANTIZE) is SOFTMAX."""
    ops = [o.op for o in flatbuffer.list_ops(data) if o.op not in ("QUANTIZE", "DEQUANTIZE")]
    return bool(ops) and ops[-1] == "SOFTMAX"


def _check_pixel_scale(label: str, tensor, prep: dict) -> None:
    """uint8 input with the int8 input's scale is raw pixels only when that scale is 1 / std (and the zero
    point the mean); otherwise an app feeding camera bytes would feed the wrong values."""
    if not prep:
        raise ValueError(f"{label}: its manifest has no preprocessing (mean/std), so uint8 pixel input cannot be checked; export it again with preprocessing=")
    scale, zero = interface.pixel_quantization(prep["mean"], prep["std"])
    if abs(tensor.scale - scale) > 1e-3 * scale or abs(tensor.zero_point + 128 - zero) > 1:
        raise ValueError(f"{label}: its int8 input quantization (scale {tensor.scale:.6g}, zero point {tensor.zero_point}) is not pixel "
                         f"normalization (scale {scale:.6g}, zero point {zero - 128}); export it again from the Keras model with io='uint8'")


# ---- writing --------------------------------------------------------------------------------------------


def _targets(path) -> list[Path]:
    if path is None:
        return []
    p = Path(path)
    if p.suffix != ".tflite":
        raise ValueError(f"path must end in .tflite, got {str(p)!r}")
    return [p, manifest_path(p), p.parent / LABELS_FILE]


def _refuse_existing(targets: list[Path], labels_text: str) -> None:
    model_path, manifest, labels = targets
    for p in (model_path, manifest):
        if p.exists():
            raise FileExistsError(f"{p} already exists; pass overwrite=True to replace it (edgeopt never overwrites silently)")
    if labels.exists() and labels.read_text() != labels_text:
        raise FileExistsError(f"{labels} exists with other labels; pass overwrite=True or export into another folder")


def _write_all(targets: list[Path], data: bytes, manifest: dict, labels_text: str, overwrite: bool) -> list[Path]:
    model_path, manifest_file, labels = targets
    written = []
    if not (labels.exists() and labels.read_text() == labels_text):
        written.append(write_atomic(labels, labels_text.encode(), overwrite))
    written.append(write_atomic(manifest_file, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), overwrite))
    written.append(write_atomic(model_path, data, overwrite))  # last: a model file implies its manifest is there
    return written


# ---- running (tests and quick checks) ------------------------------------------------------------------


def run_tflite(model_bytes: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a .tflite one sample at a time on the LiteRT interpreter; returns stacked float outputs.

    Quantized inputs/outputs are quantized/dequantized with the model's own scale and zero point.
    """
    interp = runtime.make_interpreter(model_bytes, num_threads=num_threads)
    interp.allocate_tensors()
    return runtime.predict(interp, inputs)
