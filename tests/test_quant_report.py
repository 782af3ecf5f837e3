"""Per-tensor quantization report, keep_float exports and the automatic float fallback (edgeopt.bench.quant_report).

The bad model: a small digits classifier whose first convolution gets one output channel 1000x wider (kernel and
bias times 1000) while the depthwise convolution after it divides that channel's kernel by 1000. ReLU commutes
with a positive scale and a depthwise kernel is quantized per channel, so the float model computes the same
function and only the int8 activation range of ``conv1`` changes: one channel sets the shared scale and the
other channels get a few levels each (what cross-layer equalization undoes in MobileNets).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from edgeopt import export
from edgeopt._keras import keras
from edgeopt.bench import quant_report as qr
from edgeopt.compress.graph import clone_with_weights
from edgeopt.config import RecipeError
from edgeopt.tflite.flatbuffer import io_tensors, list_ops
from edgeopt.tflite.layers import CARRIERS, layers_in_name, op_layers
from edgeopt.tflite.ops import KEPT_FLOAT_REASON

CALIBRATION = 100  # images; few, to stay fast (the report's own default is 300)
DEBUG = 64
SCALE = 1000.0


def _tiny(name: str = "tiny") -> keras.Model:
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Conv2D(16, 1, strides=2, activation="relu", name="conv2")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="head")(x), name=name)


@pytest.fixture(scope="module")
def models(digits_splits, digits_arrays):
    """(trained float model, the same model with conv1's widest channel scaled by SCALE and dw's by 1 / SCALE)."""
    keras.utils.set_random_seed(0)
    clean = _tiny()
    clean.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x, y = digits_arrays["train"]
    clean.fit(x, y, epochs=3, batch_size=32, verbose=0)  # about 96% on the validation images
    bad = clone_with_weights(clean)
    act = keras.Model(clean.input, clean.get_layer("conv1").output)(x[:64]).numpy()
    channel = int(np.abs(act).reshape(-1, 8).max(0).argmax())  # the widest channel: scaled, it dwarfs the rest
    kernel, bias = bad.get_layer("conv1").get_weights()
    kernel[..., channel] *= SCALE
    bias[channel] *= SCALE
    bad.get_layer("conv1").set_weights([kernel, bias])
    dw_kernel, dw_bias = bad.get_layer("dw").get_weights()
    dw_kernel[:, :, channel, :] /= SCALE
    bad.get_layer("dw").set_weights([dw_kernel, dw_bias])
    return clean, bad


@pytest.fixture(scope="module")
def report(models, digits_splits):
    return qr.quantize_report(models[1], None, digits_splits, num_calibration=CALIBRATION, num_debug=DEBUG)


@pytest.fixture(scope="module")
def kept(models, digits_splits, digits_arrays):
    """The bad model exported int8 (uint8 I/O) with conv1 and dw kept float, calibrated on the first training
    images (an array: a Splits' training pipeline reshuffles every pass) and verified against Keras on the
    validation images (at least 98% top-1 agreement, to_tflite's default)."""
    return export.to_tflite(models[1], "int8", digits_arrays["train"][0], preprocessing=digits_splits.preprocessing, verify_data=digits_splits.val,
                            num_calibration=CALIBRATION, keep_float=["dw*", "conv1"])


# ---- the report ------------------------------------------------------------------------------------------


def test_the_scaled_model_computes_what_the_trained_one_does(models, digits_arrays):
    clean, bad = models
    x = digits_arrays["val"][0][:32]
    np.testing.assert_allclose(bad(x).numpy(), clean(x).numpy(), atol=1e-5)


def test_the_layer_with_outlier_channels_ranks_first(report):
    worst = report.rows[0]
    assert worst.layers == ("conv1",) and worst.op == "CONV_2D"
    assert worst.cause == "outlier_channels" and worst.channel_range_ratio > 100
    assert worst.fallback_layers == ("conv1", "dw")  # its producer and its one consumer keep the tensor float
    # the tensor SNR hides it (the wide channel dominates signal and noise); the median channel's shows it
    assert worst.snr_db > 30 and worst.channel_snr_db < 3  # the median channel keeps no signal: 0 dB
    # past the culprit and its consumer (whose input it destroyed; how badly depends on how the model trained), the
    # next tensor keeps clearly more signal
    others = [r for r in report.rows[1:] if not set(r.layers) <= set(worst.fallback_layers)]
    assert others[0].channel_snr_db > worst.channel_snr_db + 5
    keys = [r.channel_snr_db for r in report.rows]
    assert keys == sorted(keys)  # ties (0 dB: every value of the median channel rounds to zero) in execution order
    # one row per quantized op: conv1, dw, conv2, conv3, add, flat (RESHAPE), head (FULLY_CONNECTED and SOFTMAX)
    assert sorted(r.op for r in report.rows) == ["ADD", "CONV_2D", "CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    assert report.row("head").op in ("FULLY_CONNECTED", "SOFTMAX")
    assert (report.calibration_images, report.debug_images, report.held_out) == (CALIBRATION, DEBUG, True)


def test_metrics_equal_numpy_on_the_debuggers_tensors(report, models, digits_splits):
    data = export.collect_data(models[1], digits_splits, None, None, CALIBRATION, DEBUG)
    row = report.rows[0]
    dumps = [qr.probe_tensors(report.debug_model, x)[row.tensor] for x in data.verify_inputs]
    f = np.stack([d[0] for d in dumps]).astype(np.float64)
    q = np.stack([d[1] for d in dumps]).astype(np.float64)
    scale, zero = dumps[0][2], dumps[0][3]
    assert (scale, zero) == (row.scale, row.zero_point) and dumps[0][1].dtype == np.int8
    dq = (q - zero) * scale
    err = dq - f
    assert row.snr_db == pytest.approx(10 * math.log10((f ** 2).sum() / (err ** 2).sum()), rel=1e-9)
    assert row.cosine == pytest.approx((f * dq).sum() / math.sqrt((f ** 2).sum() * (dq ** 2).sum()), rel=1e-9)
    assert row.max_abs_error == pytest.approx(np.abs(err).max(), rel=1e-9)
    assert row.rmse_over_range == pytest.approx(math.sqrt((err ** 2).mean()) / (f.max() - f.min()), rel=1e-9)
    assert row.clipped_fraction == np.mean((f < scale * (-128 - zero)) | (f > scale * (127 - zero)))
    signal = (f ** 2).reshape(-1, 8).sum(0)
    per_channel = 10 * np.log10(signal / (err ** 2).reshape(-1, 8).sum(0))[signal > 0]  # dead channels left out
    assert row.channel_snr_db == pytest.approx(np.median(per_channel), rel=1e-9)
    absmax = np.abs(f).reshape(-1, 8).max(0)
    assert row.channel_range_ratio == pytest.approx(absmax.max() / np.median(absmax), rel=1e-9)
    # the debugger's own statistic (its NumericVerify diffs, on TF's interpreter) agrees with the dumped tensors
    assert row.rmse == pytest.approx(math.sqrt((err ** 2).mean()), rel=1e-3)
    assert row.step_error_share == pytest.approx(scale ** 2 / 12 / (err ** 2).mean(), rel=1e-9)


def _int8_per_channel(kernel: np.ndarray) -> tuple[float, float]:
    """(SNR of the whole kernel, median channel SNR) in dB of symmetric per-channel int8 (scale = max |w| / 127 per
    output channel, the last axis of ``kernel``; values rounded and clipped to -127..127), in NumPy."""
    w = kernel.astype(np.float64).reshape(-1, kernel.shape[-1])
    scale = np.abs(w).max(0) / 127
    err = np.clip(np.round(w / scale), -127, 127) * scale - w
    channel = 10 * np.log10((w ** 2).sum(0) / (err ** 2).sum(0))
    return 10 * math.log10((w ** 2).sum() / (err ** 2).sum()), float(np.median(channel))


def test_kernel_snr_equals_numpy_per_channel_int8(report, models):
    bad = models[1]
    for layer in ("conv1", "dw", "conv2", "head"):  # Conv2D, DepthwiseConv2D (channels on its input axis), Dense
        kernel = bad.get_layer(layer).get_weights()[0]
        kernel = kernel.reshape(*kernel.shape[:2], -1) if layer == "dw" else kernel  # (3, 3, 8, 1) -> channels last
        row = next(r for r in report.rows if r.layers == (layer,) and r.op != "SOFTMAX")
        whole, channel = _int8_per_channel(kernel)
        assert (row.weight_snr_db, row.weight_channel_snr_db) == (pytest.approx(whole, rel=1e-6), pytest.approx(channel, rel=1e-6)), layer
    assert all(r.weight_snr_db is None for r in report.rows if r.op in ("ADD", "RESHAPE", "SOFTMAX"))
    # conv1's outlier channel is an activation problem: its int8 kernel is fine (per-channel scales) and the
    # output's int8 step explains its whole error
    conv1 = report.row("conv1")
    assert conv1.weight_channel_snr_db > 35 and conv1.step_error_share > 0.5 and conv1.cause == "outlier_channels"


def test_a_layer_hurt_by_its_weights_is_told_apart(models, digits_splits):
    """dw's output channel c divided by K and conv2's kernel rows for input channel c times K: the same function
    (ReLU commutes with a positive scale), but each conv2 output channel's int8 scale is set by its one K-times
    weight and the other seven round to zero. Its output ranges are as before, so only the weights explain it."""
    clean = models[0]
    c, k = 0, 1000.0
    hurt = clone_with_weights(clean)
    dw_kernel, dw_bias = hurt.get_layer("dw").get_weights()
    dw_kernel[:, :, c, :] /= k
    dw_bias[c] /= k
    hurt.get_layer("dw").set_weights([dw_kernel, dw_bias])
    kernel, bias = hurt.get_layer("conv2").get_weights()
    kernel[:, :, c, :] *= k
    hurt.get_layer("conv2").set_weights([kernel, bias])
    rep = qr.quantize_report(hurt, None, digits_splits, num_calibration=CALIBRATION, num_debug=32)
    worst = rep.rows[0]
    assert worst.layers == ("conv2",) and worst.cause == "weights" and worst.step_error_share < qr.WEIGHT_ERROR_SHARE
    assert worst.clipped_fraction <= qr.CLIPPED_FRACTION and worst.channel_range_ratio < qr.CHANNEL_RANGE_RATIO  # activations fine
    assert worst.weight_channel_snr_db > 30  # kernel SNR weighs every weight alike: the K-times weight's energy hides the rest
    assert f"{1 / worst.step_error_share:.0f}x what rounding" in worst.why


def test_report_serializes_and_renders(report):
    d = report.to_dict()
    assert [r["tensor"] for r in d["rows"]] == [r.tensor for r in report.rows] and "debug_model" not in d
    md = report.to_markdown(top=3)
    assert md.count("\n| ") == 2 + 3 - 1 and "outlier channels" in md  # header row, separator, 3 rows


def test_cause_rules_in_order():
    m = {"clipped_fraction": 0.0, "channel_range_ratio": 1.0, "abs_max_over_p999": 1.0}
    assert qr._cause(m, "CONV_2D", 1.0, 300)[0] == "rounding"
    weights = {**m, "step_error_share": 0.1, "weight_channel_snr_db": 40.0, "channel_range_ratio": 99.0}
    assert qr._cause(weights, "CONV_2D", 1.0, 300)[0] == "weights"  # before outlier channels
    assert qr._cause({**weights, "step_error_share": qr.WEIGHT_ERROR_SHARE}, "CONV_2D", 1.0, 300)[0] == "outlier_channels"
    assert qr._cause({**weights, "weight_channel_snr_db": None}, "ADD", 1.0, 300)[0] == "outlier_channels"  # no kernel
    assert qr._cause({**weights, "clipped_fraction": 1.0}, "CONV_2D", 1.0, 300)[0] == "clipping"
    assert qr._cause(m, "ADD", qr.RESIDUAL_GROWTH, 300)[0] == "residual_add"
    assert qr._cause({**m, "abs_max_over_p999": qr.OUTLIER_RATIO}, "ADD", 2.0, 300)[0] == "outliers"
    assert qr._cause({**m, "channel_range_ratio": qr.CHANNEL_RANGE_RATIO, "abs_max_over_p999": 9.0}, "ADD", 2.0, 300)[0] == "outlier_channels"
    clipped = {**m, "clipped_fraction": 2 * qr.CLIPPED_FRACTION, "channel_range_ratio": 99.0}
    assert qr._cause(clipped, "CONV_2D", 1.0, qr.MIN_CALIBRATION_IMAGES)[0] == "clipping"
    key, why = qr._cause(clipped, "CONV_2D", 1.0, 50)
    assert key == "too_few_calibration_images" and "50 images" in why
    assert qr._cause(clipped, "SOFTMAX", 1.0, 50)[0] == "fixed_range"  # its int8 range is the kernel's, not calibrated


# ---- keep_float ------------------------------------------------------------------------------------------


def test_keep_float_keeps_exactly_the_matched_ops_float(kept, models, digits_splits):
    bad = models[1]
    assert kept.manifest["keep_float"]["layers"] == ["conv1", "dw"] and kept.manifest["keep_float"]["patterns"] == ["dw*", "conv1"]
    assert [t.dtype for t in (*io_tensors(kept.model_bytes)[0], *io_tensors(kept.model_bytes)[1])] == ["uint8", "uint8"]
    computing = [(op, layers) for op, layers in op_layers(kept.model_bytes, bad.name, [l.name for l in bad.layers]) if op.op not in CARRIERS]
    float_ops = [sorted(layers) for op, layers in computing if "float32" in op.input_dtypes + op.output_dtypes]
    int8_ops = [sorted(layers) for op, layers in computing if set(op.input_dtypes + op.output_dtypes) <= {"int8", "int32"}]
    assert float_ops == [["conv1"], ["dw"]]
    assert len(int8_ops) == len(computing) - 2 and not any({"conv1", "dw"} & set(layers) for layers in int8_ops)
    assert kept.verification.samples == digits_splits.sizes["val"] and kept.verification.top1_agreement >= 0.98  # to_tflite verified it
    # the op report says why they are float (not "no integer kernel was chosen")
    notes = {(e.op, e.note) for e in kept.op_report.float_ops}
    assert ("CONV_2D", KEPT_FLOAT_REASON) in notes and ("DEPTHWISE_CONV_2D", KEPT_FLOAT_REASON) in notes
    assert {e.op for e in kept.op_report.float_ops if e.note == KEPT_FLOAT_REASON} == {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert [e.count for e in kept.op_report.entries if e.op == "CONV_2D"] == [1, 2]  # kept conv1 apart from int8 conv2, conv3
    assert {f["why"] for f in kept.manifest["ops"]["float_ops"] if f["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D")} == {KEPT_FLOAT_REASON}


def test_a_named_op_never_takes_a_kept_producers_layers(kept, models):
    pairs = op_layers(kept.model_bytes, "tiny", ["conv1", "dw"])  # asked about the kept layers only
    named = [(op.op, sorted(layers)) for op, layers in pairs if op.op not in CARRIERS and layers]
    assert named == [("CONV_2D", ["conv1"]), ("DEPTHWISE_CONV_2D", ["dw"])]  # conv2 reads dw's output, but is conv2's


def test_android_ready_keeps_the_keep_float_note(kept):
    art = export.make_android_ready(kept.model_bytes)
    assert art.manifest["keep_float"] == kept.manifest["keep_float"]
    assert art.manifest["mode_description"] == kept.manifest["mode_description"]
    assert "ops of layers conv1, dw kept float32 (keep_float)" in art.manifest["mode_description"]
    assert art.manifest["ops"]["float_ops"] == kept.manifest["ops"]["float_ops"]


def test_keep_float_with_float_input_and_output(models, digits_arrays):
    x = digits_arrays["train"][0]
    art = export.to_tflite(models[1], "int8", x[:40], io="float32", keep_float=["head"], num_verify=0, android_metadata=False)
    ops = [(op.op, op.output_dtypes[0]) for op in list_ops(art.model_bytes)]
    assert ops[0] == ("QUANTIZE", "int8") and ops[-3:] == [("DEQUANTIZE", "float32"), ("FULLY_CONNECTED", "float32"), ("SOFTMAX", "float32")]
    assert sum(dtype == "float32" for _, dtype in ops) == 3 and art.manifest["keep_float"]["nodes"][-1] == "StatefulPartitionedCall:0"


def test_report_of_an_artifact_reproduces_its_quantization(kept, models, digits_arrays):
    again = qr.quantize_report(models[1], kept, digits_arrays["train"][0], num_debug=16)
    assert again.matches_artifact is True and again.float_layers == ("conv1", "dw")
    assert again.calibration_images == CALIBRATION  # taken from the artifact's manifest
    assert not any({"conv1", "dw"} & set(r.layers) for r in again.rows)
    assert again.rows[0].channel_snr_db > 15  # the outlier tensor is float now


def test_keep_float_and_precision_config_errors(models, digits_arrays):
    bad = models[1]
    x = digits_arrays["val"][0][:8]
    with pytest.raises(ValueError, match="keep_float pattern 'block5\\*' matches no layer of 'tiny'"):
        export.to_tflite(bad, "int8", x, keep_float=["block5*"])
    with pytest.raises(ValueError, match="keep_float needs mode='int8'"):
        export.to_tflite(bad, "float16", x, keep_float=["conv1"])
    with pytest.raises(ValueError, match="keep_float must be a list of layer-name patterns"):
        export.PrecisionConfig(keep_float="conv1")
    with pytest.raises(ValueError, match="auto_fallback must be top-1 points"):
        export.PrecisionConfig(auto_fallback=-1)
    with pytest.raises(RecipeError, match=r"export\.max_fallback_steps must be an integer >= 1"):
        export.PrecisionConfig.from_dict({"max_fallback_steps": 0}, "export")
    config = export.PrecisionConfig.from_dict({"keep_float": ["block5*"], "auto_fallback": 0.3})
    assert config.keep_float == ("block5*",) and export.PrecisionConfig.from_dict(config.to_dict()) == config


def test_layer_names_from_tensor_names():
    names = ["conv1", "relu1", "add", "conv10"]
    assert layers_in_name("tiny/relu1/Relu;tiny/conv1/BiasAdd;tiny/conv1/Conv2D", "tiny", names) == {"relu1", "conv1"}
    assert layers_in_name("tiny/add/add1", "tiny", names) == {"add"}
    assert layers_in_name("other/conv1/Conv2D;StatefulPartitionedCall:0;tfl.quantize", "tiny", names) == frozenset()


# ---- automatic fallback ------------------------------------------------------------------------------------


def test_auto_fallback_wins_back_accuracy(models, digits_splits, report):
    result = qr.auto_fallback(models[1], digits_splits, export.PrecisionConfig(auto_fallback=1.0, max_fallback_steps=1),
                              num_calibration=CALIBRATION, report=report)
    first, last = result.steps[0], result.steps[-1]
    assert first.float_layers == () and first.gap_points > 5  # the outlier channel costs real accuracy
    assert result.steps[1].added_layers == ("conv1", "dw") and result.steps[1].tensor == result.report.rows[0].tensor
    assert len(result.steps) == 2 and last.gap_points < first.gap_points and result.keep_float == last.float_layers
    assert result.steps[1].size_cost_bytes == result.steps[1].size_bytes - first.size_bytes > 0  # float kernels are bigger
    assert result.reached == (last.gap_points <= 1.0) and result.val_images == digits_splits.sizes["val"]
    assert result.steps[1].gap_points == pytest.approx((result.float_top1 - result.steps[1].top1) * 100)
    assert "| 1 | conv1, dw |" in result.to_markdown() and result.to_dict()["steps"][1]["float_layers"] == ("conv1", "dw")


def test_auto_fallback_ships_the_step_closest_to_keras_not_the_last(models, digits_splits, report, monkeypatch):
    """When keeping the worst tensors float scores lower on validation (a loss spread over many layers does that), the
    result's file and keep_float are the earlier, better step's: here every step after the first is made to score 0."""
    real, files = export.verify, []

    def later_steps_score_zero(model, data, inputs, labels=None):
        files.append(data)
        check = real(model, data, inputs, labels)
        return check if len(files) == 1 else dataclasses.replace(check, tflite_top1=0.0)

    monkeypatch.setattr(export, "verify", later_steps_score_zero)
    result = qr.auto_fallback(models[1], digits_splits, export.PrecisionConfig(auto_fallback=1.0, max_fallback_steps=1),
                              num_calibration=CALIBRATION, report=report)
    assert len(result.steps) == 2 and result.steps[1].gap_points > result.steps[0].gap_points > 5
    assert result.chosen == 0 and result.keep_float == () and result.artifact.model_bytes == files[0] == result.files[0]
    assert not result.reached and result.metrics()["chosen"] == 0 and "chosen: step 0" in result.to_markdown()


@pytest.mark.slow
def test_auto_fallback_times_every_step_when_asked(models, digits_splits, report):
    result = qr.auto_fallback(models[1], digits_splits, export.PrecisionConfig(auto_fallback=1.0, max_fallback_steps=1),
                              num_calibration=CALIBRATION, report=report, latency_rounds=1, latency_options={"runs": 3, "min_seconds": 0.0})
    assert len(result.files) == len(result.steps) == 2 and result.files[-1] == result.artifact.model_bytes
    assert all(s.median_ms > 0 for s in result.steps)  # timing itself is not asserted: only that each step was timed
    assert [s.latency_cost_ms for s in result.steps] == [s.median_ms - result.steps[0].median_ms for s in result.steps]
    assert result.latency["rounds"] == 1 and result.latency["threads"] == 1 and "median ms" in result.to_markdown()


# ---- command line ------------------------------------------------------------------------------------------


def test_inspect_quant_needs_data_and_a_model(capsys):
    from edgeopt.cli import main

    assert main(["inspect", "--quant", "model.keras"]) == 2
    assert "needs --data DATASET" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="give a .tflite file, or --quant MODEL.keras --data DATASET"):
        main(["inspect"])


@pytest.mark.slow
def test_inspect_quant_prints_the_report(models, tmp_path, capsys):
    from edgeopt.cli import main

    path = tmp_path / "bad.keras"
    models[1].save(path)
    assert main(["inspect", "--quant", str(path), "--data", "digits", "--num-calibration", "50"]) == 0
    out = capsys.readouterr().out
    assert "ranges calibrated on 50 images" in out and out.index("| 1 | conv1 |") < out.index("| 2 |")
