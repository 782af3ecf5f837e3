"""Where an int8 model loses its accuracy: the error of every quantized tensor, worst first, with a likely cause.

``quantize_report(model, artifact, data)`` builds the int8 converter the export uses
(:func:`edgeopt.export.int8_debugger`, LiteRT's ``tf.lite.experimental.QuantizationDebugger``) and runs its debug
model on real images. The debug model has a NumericVerify probe after every op the MLIR quantizer makes int8
(checked with TF 2.21 on CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, MEAN, AVERAGE_POOL_2D, MAX_POOL_2D,
CONCATENATION, PAD, RESHAPE, SOFTMAX, LOGISTIC and TANH: every int8 op of those models); QUANTIZE/DEQUANTIZE and
ops kept float get none. The probe's inputs are the op's int8 output and the float op's output
computed from the same dequantized inputs. So a row is the error that op's quantization *adds* (its int8
weights, its output's scale, rounding and clipping), not the error it inherits, and the culprit ranks first
instead of everything after it (the ops after it still see its damaged values, which can worsen their rows too).

Per tensor, over the debug images (``float`` = the float op's output, ``dq`` = (int8 - zero_point) * scale):

- from the debugger's ``layer_statistics``: ``rmse`` (square root of its ``mean_squared_error``) and
  ``mean_error`` (mean of dq - float), averaged over images as the debugger does;
- computed here from the same two tensors: ``snr_db`` = 10 log10(sum float^2 / sum (dq - float)^2);
  ``channel_snr_db``, the median over channels (last axis) of each channel's SNR, channels with no signal left
  out; ``cosine`` similarity of float and dq; ``max_abs_error`` over all values and images; ``rmse_over_range``
  (RMSE / (max - min of float)); ``clipped_fraction``, float values outside the int8 range
  scale * (-128 - zero_point) .. scale * (127 - zero_point); ``abs_max_over_p999`` (max |float| over the
  99.9th percentile of |float| per image, averaged over images; at most 65,536 values an image are sampled) and
  ``channel_range_ratio`` (the widest channel's max |float| over the median channel's).

The weight side, for ops with a constant int8 operand (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED kernels; read
from the debug model, whose float ops keep the float kernel with batch normalization folded in, beside the int8
op's int8 kernel): ``weight_snr_db`` = 10 log10(sum w^2 / sum (dq(w) - w)^2) over the kernel and
``weight_channel_snr_db``, the median over output channels; None for ops without one. Per-channel int8 keeps
at least 10 log10(4 x 127^2 / fan_in) dB in every channel (the error per weight is at most half a step, the
channel's largest weight is 127 steps; about 10 log10(12 x 127^2 / fan_in) with uniform rounding errors), e.g.
34 (38) dB for a 3x3x3 kernel: under 20 dB needs a fan-in above 645. Kernel SNR weighs every weight alike, so it cannot see small weights lost next to a large one whose
input is small (what cross-layer equalization undoes): ``step_error_share`` can. It is (scale^2 / 12) / mean
squared error: the share of the op's error that rounding its output to the int8 step explains (uniform rounding;
above 1 when many outputs are exact, as ReLU zeros). The op's inputs are the same in both paths, so what is left
is the error of its int8 weights (and int32 bias): a share well below 1 points at the weights, about 1 or more
at the output's activations.

Rows are sorted by ``channel_snr_db``, lowest first; equal ones (a median channel whose every value rounds to zero
scores exactly 0 dB, and one destroyed tensor often destroys the next) in execution order, since error flows
downstream and the tensor computed first is the likelier cause. The tensor SNR alone misses the commonest
int8 failure: one channel far wider than the rest sets the shared per-tensor scale, the other channels get a
few levels each, and the tensor's SNR, dominated by that wide channel, still looks fine.

Likely cause, the first rule that holds (the thresholds are module constants):

0. ``fixed_range``: SOFTMAX, LOGISTIC, TANH: the int8 kernel fixes the output range (softmax: 0..255/256,
   so a probability of 1.0 is stored as 0.996 and counts as clipped); calibration plays no part.
1. ``clipping``: more than ``CLIPPED_FRACTION`` of the values fall outside the int8 range; with fewer than
   ``MIN_CALIBRATION_IMAGES`` calibration images the cause is ``too_few_calibration_images`` (the report knows
   how many calibrated the ranges; clipping shows only on images that were not among them: ``held_out``).
2. ``weights``: the op has an int8 kernel and ``step_error_share`` < ``WEIGHT_ERROR_SHARE``: its error is
   several times what rounding its output gives, so its int8 weights add most of it.
3. ``outlier_channels``: ``channel_range_ratio`` >= ``CHANNEL_RANGE_RATIO``: the median channel gets at most
   1/16 of the 256 levels.
4. ``outliers``: ``abs_max_over_p999`` >= ``OUTLIER_RATIO``: 99.9% of the values share at most 1/8 of the range.
5. ``residual_add``: an ADD whose output scale is >= ``RESIDUAL_GROWTH`` times its widest input's: the sum's
   range is wider than what it adds, so each input loses resolution.
6. ``rounding``: none of the above (weight and activation rounding with the range well used).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from edgeopt import export
from edgeopt.bench.latency import interleaved_latency, median_ms
from edgeopt.config import to_dict
from edgeopt.data import load_dataset
from edgeopt.models import load_model
from edgeopt.tflite import flatbuffer, runtime
from edgeopt.tflite import layers as tflite_layers

MIN_CALIBRATION_IMAGES = 200
CLIPPED_FRACTION = 1e-3
CHANNEL_RANGE_RATIO = 16.0
OUTLIER_RATIO = 8.0
RESIDUAL_GROWTH = 1.5
WEIGHT_ERROR_SHARE = 0.25  # the output's rounding explains under a quarter of the error: the weights add the rest
_SAMPLED_VALUES = 65536  # per tensor and image, for the 99.9th percentile
_INT8 = (-128, 127)
FIXED_RANGE_OPS = frozenset({"SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "TANH"})  # int8 kernels with a fixed output scale

CAUSES = {
    "fixed_range": "the int8 kernel fixes this op's output range (no calibration); {clip:.2%} of values at its ends",
    "too_few_calibration_images": "{clip:.2%} of values clipped by the int8 range, calibrated on only {images} images",
    "clipping": "{clip:.2%} of values clipped by the int8 range (these images reach beyond the calibration images' range)",
    "weights": "weights: the error is {excess:.0f}x what rounding the output to its int8 step gives; the int8 kernel keeps {wsnr:.0f} dB (median channel)",
    "outlier_channels": "outlier channels: the widest channel spans {ratio:.0f}x the median channel, which gets few int8 levels",
    "outliers": "outliers: max |x| is {outlier:.0f}x the 99.9th percentile, so 99.9% of values share a small part of the range",
    "residual_add": "wide range after a residual Add: the sum's int8 step is {growth:.1f}x its widest input's",
    "rounding": "no rule matched: int8 rounding with the range well used",
}


@dataclass(frozen=True)
class TensorError:
    """The error one quantized tensor adds, over the report's debug images (see the module docstring).

    ``layers``: the Keras layers its op computes; ``fallback_layers``: the layers to keep float so this tensor
    is never quantized (its producer's and its consumers'). Errors are in the tensor's float units, SNRs in dB;
    ``weight_snr_db`` / ``weight_channel_snr_db``: its op's int8 kernel against the float one (None: no kernel).
    """

    tensor: str
    op: str
    layers: tuple[str, ...]
    fallback_layers: tuple[str, ...]
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    snr_db: float
    channel_snr_db: float
    cosine: float
    max_abs_error: float
    rmse: float
    mean_error: float
    rmse_over_range: float
    clipped_fraction: float
    float_min: float
    float_max: float
    abs_max_over_p999: float
    channel_range_ratio: float
    step_error_share: float
    weight_snr_db: float | None
    weight_channel_snr_db: float | None
    cause: str
    why: str

    def to_dict(self) -> dict:
        return {k: _finite(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class QuantReport:
    """Per-tensor int8 errors of ``model``, worst first (``rows``), measured on ``debug_images`` images
    (``held_out``: not among the ``calibration_images`` that set the ranges). ``float_layers``: layers kept
    float (as the artifact was exported). ``matches_artifact``: whether the debugger's int8 model has the
    artifact's quantization (every int8 op's output scale and zero point equal), None without an artifact.
    ``debug_model``: the debugger's instrumented .tflite (:func:`probe_tensors` reads it; not serialized)."""

    model: str
    rows: tuple[TensorError, ...]
    calibration_images: int
    debug_images: int
    held_out: bool
    float_layers: tuple[str, ...] = ()
    matches_artifact: bool | None = None
    seconds: float = 0.0
    debug_model: bytes = field(default=b"", repr=False, compare=False)

    def row(self, layer: str) -> TensorError:
        """The first (worst) row whose op computes Keras layer ``layer``."""
        for r in self.rows:
            if layer in r.layers:
                return r
        raise KeyError(f"no quantized tensor of layer {layer!r}; layers with one: {sorted({n for r in self.rows for n in r.layers})}")

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("rows", "debug_model")}
        return {**out, "rows": [r.to_dict() for r in self.rows]}

    def to_markdown(self, top: int | None = None) -> str:
        where = "held-out images" if self.held_out else "the calibration images themselves (no held-out images given)"
        lines = [f"**{self.model}**: int8 error of each quantized tensor, worst first, on {self.debug_images} {where}; "
                 f"ranges calibrated on {self.calibration_images} images" + (f"; kept float: {', '.join(self.float_layers)}" if self.float_layers else ""),
                 "", "| # | layers | op | channel SNR dB | SNR dB | kernel SNR dB | cosine | max abs err | RMSE / range | clipped | "
                 "output step's share of error | likely cause |",
                 "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for i, r in enumerate(self.rows[:top] if top else self.rows, 1):
            kernel = "-" if r.weight_channel_snr_db is None else f"{r.weight_channel_snr_db:.1f}"
            lines.append(f"| {i} | {', '.join(r.layers) or r.tensor[:40]} | {r.op} | {r.channel_snr_db:.1f} | {r.snr_db:.1f} | {kernel} | {r.cosine:.5f} | "
                         f"{r.max_abs_error:.4g} | {r.rmse_over_range:.2%} | {r.clipped_fraction:.2%} | {r.step_error_share:.2f} | {r.why} |")
        if self.matches_artifact is not None:
            lines.append(f"\nsame quantization as the artifact: {'yes' if self.matches_artifact else 'NO (other calibration images or settings)'}")
        return "\n".join(lines)


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


# ---- accumulating one tensor over images --------------------------------------------------------------------


@dataclass
class _Sums:
    """Running sums of one probed tensor over the debug images."""

    channels: int
    lo: float
    hi: float
    images: int = 0
    values: int = 0
    f2: float = 0.0
    e2: float = 0.0
    fq: float = 0.0
    q2: float = 0.0
    clipped: int = 0
    max_err: float = 0.0
    fmin: float = math.inf
    fmax: float = -math.inf
    p999_sum: float = 0.0
    ch_f2: np.ndarray = field(default=None)
    ch_e2: np.ndarray = field(default=None)
    ch_absmax: np.ndarray = field(default=None)

    def add(self, f: np.ndarray, dq: np.ndarray) -> None:
        f, dq = f.astype(np.float64).reshape(-1, self.channels), dq.astype(np.float64).reshape(-1, self.channels)
        err = dq - f
        if self.ch_f2 is None:
            self.ch_f2, self.ch_e2, self.ch_absmax = (np.zeros(self.channels) for _ in range(3))
        self.images += 1
        self.values += f.size
        self.ch_f2 += (f * f).sum(0)
        self.ch_e2 += (err * err).sum(0)
        self.ch_absmax = np.maximum(self.ch_absmax, np.abs(f).max(0))
        self.f2, self.e2 = self.f2 + float((f * f).sum()), self.e2 + float((err * err).sum())
        self.fq, self.q2 = self.fq + float((f * dq).sum()), self.q2 + float((dq * dq).sum())
        self.clipped += int(((f < self.lo) | (f > self.hi)).sum())
        self.max_err = max(self.max_err, float(np.abs(err).max()))
        self.fmin, self.fmax = min(self.fmin, float(f.min())), max(self.fmax, float(f.max()))
        flat = np.abs(f).ravel()
        self.p999_sum += float(np.quantile(flat[:: max(1, flat.size // _SAMPLED_VALUES)], 0.999))

    def metrics(self) -> dict:
        has = self.ch_f2 > 0
        ch_snr = _snr(self.ch_f2[has], self.ch_e2[has]) if has.any() else np.array([_snr(self.f2, self.e2)])
        absmax = self.ch_absmax[self.ch_absmax > 0]
        p999 = self.p999_sum / self.images
        rmse = math.sqrt(self.e2 / self.values)
        return {
            "snr_db": float(_snr(self.f2, self.e2)),
            "channel_snr_db": float(np.median(ch_snr)),
            "cosine": self.fq / math.sqrt(self.f2 * self.q2) if self.f2 > 0 and self.q2 > 0 else float(self.f2 == self.q2),
            "max_abs_error": self.max_err,
            "rmse_over_range": rmse / (self.fmax - self.fmin) if self.fmax > self.fmin else 0.0,
            "clipped_fraction": self.clipped / self.values,
            "float_min": self.fmin, "float_max": self.fmax,
            "abs_max_over_p999": float(absmax.max() / p999) if p999 > 0 and absmax.size else 1.0,
            "channel_range_ratio": float(absmax.max() / np.median(absmax)) if absmax.size else 1.0,
        }


def _snr(signal, noise):
    """10 log10(signal / noise) in dB; inf where there is no noise."""
    signal, noise = np.asarray(signal, np.float64), np.asarray(noise, np.float64)
    with np.errstate(divide="ignore"):
        return np.where(noise > 0, 10 * np.log10(np.maximum(signal, 1e-300) / np.where(noise > 0, noise, 1.0)), np.inf)


def _cause(m: dict, op: str, growth: float, calibration_images: int) -> tuple[str, str]:
    """The likely cause of a row's error (the first rule of the module docstring that holds) and its sentence;
    ``m``: the row's metrics (``step_error_share`` and ``weight_channel_snr_db`` may be left out: no kernel)."""
    share, wsnr = m.get("step_error_share"), m.get("weight_channel_snr_db")
    if op in FIXED_RANGE_OPS:
        key = "fixed_range"
    elif m["clipped_fraction"] > CLIPPED_FRACTION:
        key = "too_few_calibration_images" if calibration_images < MIN_CALIBRATION_IMAGES else "clipping"
    elif wsnr is not None and share is not None and share < WEIGHT_ERROR_SHARE:
        key = "weights"
    elif m["channel_range_ratio"] >= CHANNEL_RANGE_RATIO:
        key = "outlier_channels"
    elif m["abs_max_over_p999"] >= OUTLIER_RATIO:
        key = "outliers"
    elif op == "ADD" and growth >= RESIDUAL_GROWTH:
        key = "residual_add"
    else:
        key = "rounding"
    return key, CAUSES[key].format(clip=m["clipped_fraction"], images=calibration_images, ratio=m["channel_range_ratio"],
                                   outlier=m["abs_max_over_p999"], growth=growth, excess=1 / share if share else math.inf,
                                   wsnr=wsnr if wsnr is not None else math.nan)


# ---- the report ----------------------------------------------------------------------------------------------


def probe_tensors(debug_model: bytes, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, float, int]]:
    """Run the debug model on one model input ``x`` (H, W, C) and return, per quantized tensor name, (float
    output, int8 output, scale, zero point): the two inputs of its NumericVerify probe."""
    interp, probes = _probe_interpreter(debug_model)
    tensors = flatbuffer.tensor_infos(debug_model)
    _invoke(interp, x)
    return {tensors[op.inputs[0]].name: (interp.get_tensor(op.inputs[1]).copy(), interp.get_tensor(op.inputs[0]).copy(),
                                         tensors[op.inputs[0]].scale, tensors[op.inputs[0]].zero_point) for op in probes}


def _probe_interpreter(debug_model: bytes):
    interp = runtime.make_interpreter(debug_model, preserve_all_tensors=True)  # intermediate tensors stay readable
    interp.allocate_tensors()
    return interp, [op for op in flatbuffer.list_ops(debug_model) if op.op == "CUSTOM:NumericVerify"]


def _invoke(interp, x: np.ndarray) -> None:
    interp.set_tensor(interp.get_input_details()[0]["index"], np.asarray(x, np.float32)[None])
    interp.invoke()


def _rows(debugger, model, samples: np.ndarray, calibration_images: int) -> list[TensorError]:
    debug = debugger.quant_model
    interp, probes = _probe_interpreter(debug)
    tensors = flatbuffer.tensor_infos(debug)
    pairs = tflite_layers.op_layers(debug, model.name, [layer.name for layer in model.layers])
    made_by = {t: (op, layers) for op, layers in pairs for t in op.outputs}
    sums = {}
    for op in probes:
        t = tensors[op.inputs[0]]
        sums[op.inputs[0]] = _Sums(t.shape[-1] if t.shape else 1, t.scale * (_INT8[0] - t.zero_point), t.scale * (_INT8[1] - t.zero_point))
    for x in samples:
        _invoke(interp, x)
        for op in probes:
            q_index, f_index = op.inputs
            t = tensors[q_index]
            sums[q_index].add(interp.get_tensor(f_index), (interp.get_tensor(q_index).astype(np.float64) - t.zero_point) * t.scale)
    rows = []
    for op in probes:  # in execution order: the sort below is stable
        q_index = op.inputs[0]
        t, (maker, layers) = tensors[q_index], made_by[q_index]
        users = {name for user, used in pairs if q_index in user.inputs and user.op not in tflite_layers.CARRIERS for name in used}
        m = sums[q_index].metrics()
        mse = sums[q_index].e2 / sums[q_index].values
        m["step_error_share"] = t.scale ** 2 / 12 / mse if mse > 0 else math.inf
        m["weight_snr_db"], m["weight_channel_snr_db"] = _weight_snr(debug, maker, made_by[op.inputs[1]][0])
        stats = debugger.layer_statistics[tensors[op.outputs[0]].name]
        widest_input = max((tensors[i].scale or 0.0 for i in maker.inputs), default=0.0)
        growth = t.scale / widest_input if maker.op == "ADD" and widest_input > 0 else 1.0
        cause, why = _cause(m, maker.op, growth, calibration_images)
        order = [layer.name for layer in model.layers]
        rows.append(TensorError(t.name, maker.op, tuple(n for n in order if n in layers), tuple(n for n in order if n in layers | users),
                                t.shape, t.scale, t.zero_point, rmse=math.sqrt(float(stats["mean_squared_error"])),
                                mean_error=float(stats["mean_error"]), cause=cause, why=why, **m))
    return sorted(rows, key=lambda r: r.channel_snr_db)


def kernel_pair(debug_model: bytes, int8_op, float_op) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(float kernel, dequantized int8 kernel, output-channel axis) of a debug model's int8 op and its float twin
    (the ops whose outputs a NumericVerify probe compares): the first operand that is a constant int8 tensor in
    one and a constant float32 tensor of the same shape in the other; None when the op has none."""
    for qi, fi in zip(int8_op.inputs, float_op.inputs):
        q = flatbuffer.constant_tensor(debug_model, qi)
        if q is None or q.scales is None or q.values.dtype != np.int8:
            continue
        f = flatbuffer.constant_tensor(debug_model, fi)
        if f is not None and f.values.dtype == np.float32 and f.values.shape == q.values.shape:
            # per-channel tensors name their channel axis; a per-tensor kernel's output channel is first (CONV_2D,
            # FULLY_CONNECTED: OHWI / (out, in)) or last (DEPTHWISE_CONV_2D: 1HWC)
            axis = q.axis if q.scales.size > 1 else (q.values.ndim - 1 if int8_op.op == "DEPTHWISE_CONV_2D" else 0)
            return f.values.astype(np.float64), q.dequantized(), axis
    return None


def _weight_snr(debug_model: bytes, int8_op, float_op) -> tuple[float | None, float | None]:
    """(SNR of the whole kernel, median over output channels of each channel's SNR) in dB; (None, None) without one."""
    pair = kernel_pair(debug_model, int8_op, float_op)
    if pair is None:
        return None, None
    f, dq, axis = pair
    f, err = np.moveaxis(f, axis, -1), np.moveaxis(dq - f, axis, -1)
    ch_f2, ch_e2 = (f * f).reshape(-1, f.shape[-1]).sum(0), (err * err).reshape(-1, f.shape[-1]).sum(0)
    whole = float(_snr(ch_f2.sum(), ch_e2.sum()))
    has = ch_f2 > 0  # all-zero (pruned) channels have no signal to keep
    return whole, float(np.median(_snr(ch_f2[has], ch_e2[has]))) if has.any() else whole


def quantize_report(model, artifact=None, data=None, *, debug_data=None, preprocessing=None, num_calibration: int | None = None,
                    num_debug: int = 200, keep_float=()) -> QuantReport:
    """The per-tensor int8 errors of ``model`` (see the module docstring) on real images.

    ``data`` is what :func:`edgeopt.export.to_tflite` takes as representative data (an ``edgeopt.data.Splits``:
    train calibrates, up to ``num_debug`` validation images are the debug images; or an array / tf.data dataset:
    the first ``num_calibration`` samples calibrate, the next ``num_debug`` are the debug images, and when
    there are none left the calibration images are); ``debug_data`` gives the debug images instead.
    ``artifact`` (an :class:`~edgeopt.export.Artifact`, or a .tflite's bytes or path, exported by edgeopt): the
    report uses its number of calibration images and its float layers, and says whether it reproduced the
    file's quantization (``matches_artifact``): it does when ``data`` starts with the images the export
    calibrated on (pass the same array: a Splits' training pipeline reshuffles every pass). Without one:
    ``num_calibration`` (default 300, as the export) and ``keep_float`` patterns.
    """
    start = time.perf_counter()
    if data is None:
        raise ValueError("quantize_report needs data: real model inputs to calibrate and debug on (an edgeopt.data.Splits or an array)")
    reference = None
    if artifact is not None:
        reference, manifest = _artifact(artifact)
        num_calibration = num_calibration or (manifest.get("calibration") or {}).get("samples")
        keep_float = tuple((manifest.get("keep_float") or {}).get("layers", ())) or tuple(keep_float)
    samples = export.collect_data(model, data, debug_data, preprocessing, num_calibration or 300, num_debug)
    held_out = samples.verify_inputs is not None
    debug_x = samples.verify_inputs[:num_debug] if held_out else samples.calibration[:num_debug]
    debugger, calib, kept = export.int8_debugger(model, samples.calibration, debug_x, keep_float)
    debugger.run()
    rows = _rows(debugger, model, debug_x, calib.samples)
    matches = _same_quantization(debugger.get_nondebug_quantized_model(), reference) if reference is not None else None
    return QuantReport(model.name, tuple(rows), calib.samples, len(debug_x), held_out, kept.layers if kept else (), matches,
                       time.perf_counter() - start, debugger.quant_model)


def _artifact(artifact) -> tuple[bytes, dict]:
    if isinstance(artifact, export.Artifact):
        data, manifest = artifact.model_bytes, artifact.manifest
    else:
        data, _ = flatbuffer.load_model_bytes(artifact)
        manifest = export.read_manifest(data)
    if manifest.get("mode") != "int8":
        raise ValueError(f"quantize_report explains int8 exports; this artifact is {manifest.get('mode')!r}")
    return data, manifest


def _int8_scales(data: bytes) -> list[tuple[str, float | None, int | None]]:
    """(op, output scale, output zero point) of every op computing in int8 (QUANTIZE/DEQUANTIZE left out: the
    I/O type of a file adds or drops them)."""
    tensors = flatbuffer.tensor_infos(data)
    return [(op.op, tensors[op.outputs[0]].scale, tensors[op.outputs[0]].zero_point) for op in flatbuffer.list_ops(data)
            if op.op not in tflite_layers.CARRIERS and op.output_dtypes[:1] == ("int8",)]


def _same_quantization(rebuilt: bytes, reference: bytes) -> bool:
    a, b = _int8_scales(rebuilt), _int8_scales(reference)
    return len(a) == len(b) and all(x[0] == y[0] and x[2] == y[2] and np.isclose(x[1], y[1], rtol=1e-6) for x, y in zip(a, b))


# ---- automatic float fallback --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FallbackStep:
    """One int8 file of :func:`auto_fallback`: the layers kept float (``float_layers``; ``added_layers`` by this
    step, around report tensor ``tensor``), its top-1 on the validation images (fraction), its gap to the float
    model in top-1 points, its size in bytes and what keeping those layers float costs over the first file; with
    latency measured, its median latency (ms, over interleaved rounds) and the cost over the first file (ms)."""

    tensor: str
    added_layers: tuple[str, ...]
    float_layers: tuple[str, ...]
    float_ops: int
    top1: float
    gap_points: float
    size_bytes: int
    size_cost_bytes: int
    median_ms: float | None = None
    latency_cost_ms: float | None = None


@dataclass(frozen=True)
class FallbackResult:
    """What :func:`auto_fallback` tried: ``steps[0]`` is the int8 file with only the configured ``keep_float``,
    each later step keeps the layers around one more of the report's worst tensors float. ``chosen``: the index
    of the step with the smallest validation gap (the earliest of equal ones: fewest layers float), which is not
    always the last: when the loss is spread over many layers, keeping the worst ones float can score lower on
    validation than the all-int8 file. ``reached``: the chosen step is within ``target_points`` of
    ``float_top1`` (validation top-1, fraction, of the Keras model). ``latency``: how the steps were timed (None:
    not timed). ``artifact``: the chosen step's file, ``files``: every step's .tflite bytes (neither serialized)."""

    model: str
    float_top1: float
    target_points: float
    val_images: int
    steps: tuple[FallbackStep, ...]
    reached: bool
    chosen: int
    report: QuantReport
    artifact: export.Artifact | None = field(default=None, repr=False, compare=False)
    latency: dict | None = None
    files: tuple[bytes, ...] = field(default=(), repr=False, compare=False)

    @property
    def keep_float(self) -> tuple[str, ...]:
        """The layers the chosen file keeps float: a ``keep_float`` list for :func:`edgeopt.export.to_tflite`."""
        return self.steps[self.chosen].float_layers

    def metrics(self, worst: int = 5) -> dict:
        """What an export records of this result, as JSON reads it (lists): the target, the chosen step, every step
        (validation top-1 as ``val_top1``, gap, size and latency cost) and the ``worst`` worst tensors of the report
        with the fields their likely cause is read from (:data:`WORST_FIELDS`)."""
        steps = [{**{k: v for k, v in s.items() if k != "top1"}, "val_top1": s["top1"]} for s in self.to_dict(report=False)["steps"]]
        rows = [{k: r[k] for k in WORST_FIELDS} for r in self.report.to_dict()["rows"][:worst]]
        return to_dict({"target_points": self.target_points, "reached": self.reached, "chosen": self.chosen, "float_val_top1": self.float_top1,
                        "val_images": self.val_images, "latency": self.latency, "steps": steps, "worst_tensors": rows})

    def to_dict(self, report: bool = True) -> dict:
        """JSON-ready: the steps, and the full per-tensor ``report`` unless ``report=False``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("artifact", "report", "steps", "files")}
        return {**out, "steps": [asdict(s) for s in self.steps], **({"report": self.report.to_dict()} if report else {})}

    def to_markdown(self) -> str:
        timed = self.latency is not None
        lat_head, lat_align = (" median ms | latency cost ms |", "---:|---:|") if timed else ("", "")
        lines = [f"**{self.model}**: float top-1 {self.float_top1:.2%} on {self.val_images} validation images; target: within "
                 f"{self.target_points:g} points ({'reached' if self.reached else 'NOT reached'}); chosen: step {self.chosen}", "",
                 f"| step | layers kept float | float ops | top-1 | gap (points) | size bytes | size cost bytes |{lat_head}",
                 f"|---:|---|---:|---:|---:|---:|---:|{lat_align}"]
        for i, s in enumerate(self.steps):
            lat = f" {s.median_ms:.3f} | {s.latency_cost_ms:+.3f} |" if timed else ""
            lines.append(f"| {i} | {', '.join(s.float_layers) or '-'} | {s.float_ops} | {s.top1:.2%} | {s.gap_points:.2f} | {s.size_bytes:,} | "
                         f"{s.size_cost_bytes:+,} |{lat}")
        if timed:
            lines.append(f"\nlatency: {self.latency['rounds']} interleaved rounds, {self.latency['threads']} thread(s), {self.latency['runtime']}, "
                         f"{self.latency['device']}")
        return "\n".join(lines)


# what FallbackResult.metrics keeps of a report row: where it is, how bad, and the numbers its likely cause reads
WORST_FIELDS = ("tensor", "layers", "op", "channel_snr_db", "snr_db", "weight_channel_snr_db", "step_error_share", "clipped_fraction",
                "channel_range_ratio", "abs_max_over_p999", "cause")
LATENCY_DEFAULTS = {"threads": 1, "runs": 20, "min_seconds": 0.3}  # measure_latency options of a timed auto_fallback


def auto_fallback(model, data, config: export.PrecisionConfig, *, val_data=None, preprocessing=None, num_calibration: int = 300,
                  num_val: int | None = None, io: str | None = None, report: QuantReport | None = None, latency_rounds: int = 0,
                  latency_options: dict | None = None) -> FallbackResult:
    """Keep float the layers around the worst tensors of :func:`quantize_report`, one tensor at a time, until
    the int8 file's validation top-1 is within ``config.auto_fallback`` points of the Keras model's or
    ``config.max_fallback_steps`` tensors were tried; ``config.keep_float`` is kept float from the start. The
    result's chosen step (its ``artifact`` and ``keep_float``) is the one closest to the Keras model on validation.

    ``data``: an ``edgeopt.data.Splits`` (train calibrates, val measures) or calibration inputs with
    ``val_data`` (a tf.data dataset of (inputs, labels)); at most ``num_val`` validation images. Each step
    is a full :func:`edgeopt.export.to_tflite` (``io``, calibrated on the same images); its accuracy is the
    file's own on LiteRT. ``report``: a :func:`quantize_report` of ``model`` made already (with
    ``config.keep_float`` and these calibration images), else one is made here.

    ``latency_rounds`` > 0 also times every step's file, all of them interleaved in one run
    (:func:`edgeopt.bench.interleaved_latency`, ``latency_rounds`` rounds, alternating order) on the first 16
    validation images; ``latency_options`` are :func:`edgeopt.bench.measure_latency` options over
    :data:`LATENCY_DEFAULTS`. Steps then carry ``median_ms`` and ``latency_cost_ms``.
    """
    if config.auto_fallback is None:
        raise ValueError("auto_fallback: config.auto_fallback is none; set the top-1 points to win back (e.g. 0.3)")
    if not isinstance(latency_rounds, int) or latency_rounds < 0:
        raise ValueError(f"latency_rounds must be an integer >= 0 (0: not timed), got {latency_rounds!r}")
    samples = export.collect_data(model, data, val_data, preprocessing, num_calibration, num_val or 10**9)
    if samples.verify_labels is None:
        raise ValueError("auto_fallback needs labelled validation data: an edgeopt.data.Splits, or val_data with (inputs, labels)")
    if report is None:  # on the images the exports calibrate on, debugged on the validation images
        report = quantize_report(model, None, samples.calibration, debug_data=samples.verify_inputs, num_calibration=len(samples.calibration),
                                 keep_float=config.keep_float)
    kept = list(export.match_layers(model, config.keep_float)) if config.keep_float else []
    steps, files, arts, float_top1 = [], [], [], None
    for tensor, added in [("", ())] + [(r.tensor, tuple(n for n in r.fallback_layers if n not in kept)) for r in report.rows]:
        if steps and (steps[-1].gap_points <= config.auto_fallback or len(steps) > config.max_fallback_steps):
            break
        if steps and not added:
            continue
        kept += added
        art = export.to_tflite(model, "int8", samples.calibration, preprocessing=samples.preprocessing, num_calibration=len(samples.calibration),
                               num_verify=0, keep_float=tuple(kept), io=io)
        check = export.verify(model, art.model_bytes, samples.verify_inputs, samples.verify_labels)
        float_top1, top1 = check.keras_top1, check.tflite_top1
        base = steps[0].size_bytes if steps else len(art.model_bytes)
        float_ops = len((art.manifest.get("keep_float") or {}).get("nodes", ()))
        steps.append(FallbackStep(tensor, added, tuple(kept), float_ops, top1, (float_top1 - top1) * 100, len(art.model_bytes), len(art.model_bytes) - base))
        files.append(art.model_bytes)
        arts.append(art)
    chosen = min(range(len(steps)), key=lambda i: (steps[i].gap_points, i))
    latency = None
    if latency_rounds:
        steps, latency = _timed(steps, files, samples.verify_inputs[:16], latency_rounds, {**LATENCY_DEFAULTS, **(latency_options or {})})
    reached = steps[chosen].gap_points <= config.auto_fallback
    return FallbackResult(model.name, float_top1, float(config.auto_fallback), len(samples.verify_inputs), tuple(steps), reached, chosen, report, arts[chosen],
                          latency, tuple(files))


def _timed(steps: list[FallbackStep], files: list[bytes], inputs: np.ndarray, rounds: int, options: dict) -> tuple[list[FallbackStep], dict]:
    """The steps with their median latency (ms; the median of the per-round medians) and its cost over step 0,
    every file timed in the same interleaved run; and how they were timed."""
    results = interleaved_latency(dict(enumerate(files)), rounds, alternate=True, progress="timing fallback steps", inputs=inputs, **options)
    ms = [median_ms(results[i]) for i in range(len(files))]
    first = results[0][0]
    how = {"rounds": rounds, **options, "runtime": first.runtime, "device": str(first.device)}
    return [replace(s, median_ms=m, latency_cost_ms=m - ms[0]) for s, m in zip(steps, ms)], how


# ---- files (the CLI) -----------------------------------------------------------------------------------------


def report_files(model_path, dataset: str | None, artifact_path=None, *, num_calibration: int | None = None, num_debug: int = 200) -> QuantReport:
    """:func:`quantize_report` of a saved Keras model (``edgeopt inspect --quant``) on dataset ``dataset`` (a name
    ``edgeopt.data.load_dataset`` knows, e.g. ``digits`` or ``folder:PATH``), loaded at the model's input size;
    with ``artifact_path`` (an edgeopt .tflite of that model) its normalization and calibration count are used."""
    if not dataset:
        raise ValueError("the quantization report needs --data DATASET: real images to calibrate and debug on (e.g. digits, folder:PATH)")
    model = load_model(model_path)
    mean, std = 127.5, 127.5
    if artifact_path is not None:
        prep = export.read_manifest(artifact_path).get("preprocessing") or {}
        mean, std = prep.get("mean", mean), prep.get("std", std)
    h, w, c = model.input_shape[1:]
    splits = load_dataset(dataset, image_size=(h, w), channels=c, mean=mean, std=std)
    return quantize_report(model, artifact_path, splits, num_calibration=num_calibration, num_debug=num_debug)
