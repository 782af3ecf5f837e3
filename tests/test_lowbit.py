"""Low-bit weight QAT: config and plan, the QAT model's kernels after stripping (at most 2^bits - 1 values per output
channel, binary +-mean|w|, first and last layers at 8 bits), training above chance on digits with 4-bit weights,
and the packed size against a hand count."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.cluster import weight_report
from edgeopt.compress.lowbit import LowBitConfig, lowbit_scope, packed_size_bytes, plan_bits, quantize_lowbit, strip_lowbit
from edgeopt.compress.lowbit_quantizers import LowBitQuantizeConfig, quantize_kernel

L = keras.layers
LIMIT = {1: 2, 2: 3, 4: 15}  # most distinct values an output channel may hold at each width


def _model(classes: int = 5) -> keras.Model:
    """Conv+BN+ReLU stem (27 weights per channel), depthwise 5x5 with multiplier 2 (25 per channel), a 1x1 conv
    straight into a ReLU (no batch norm: the weights-only layout), two dense layers: every channel has more weights
    than 15, so a 4-bit bound that does not hold shows."""
    inp = keras.Input((8, 8, 3))
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(L.Conv2D(12, 3, padding="same", use_bias=False, name="stem")(inp)))
    x = L.DepthwiseConv2D(5, padding="same", depth_multiplier=2, use_bias=False, name="dw")(x)
    x = L.ReLU(name="dw_relu")(L.BatchNormalization(name="dw_bn")(x))
    x = L.ReLU(name="pw_relu")(L.Conv2D(20, 1, name="pw")(x))
    x = L.Dense(24, name="mid")(L.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inp, L.Dense(classes, name="fc")(x))


def test_config_validates_and_round_trips():
    cfg = LowBitConfig.from_dict({"bits": 2, "layer_bits": {"pw": 4, "dw": 8}, "depthwise_bits": 4})
    assert cfg.layer_bits == (("pw", 4), ("dw", 8))
    assert LowBitConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bits must be one of 1, 2, 4, 8"):
        LowBitConfig(bits=3)
    with pytest.raises(ValueError, match=r"layer_bits\['pw'\] must be one of"):
        LowBitConfig(layer_bits={"pw": 16})
    with pytest.raises(ValueError, match="ranges must be one of mse, minmax"):
        LowBitConfig(ranges="lsq")
    with pytest.raises(ValueError, match="binary_clip must be a number > 0"):
        LowBitConfig(binary_clip=0)


def test_plan_keeps_first_and_last_at_8_bits():
    model = _model()
    assert plan_bits(model, LowBitConfig(bits=2)) == {"stem": 8, "dw": 2, "pw": 2, "mid": 2, "fc": 8}
    assert plan_bits(model, LowBitConfig(bits=4, first_last_bits=4, depthwise_bits=8, layer_bits={"mid": 1})) == {
        "stem": 4, "dw": 8, "pw": 4, "mid": 1, "fc": 4}
    with pytest.raises(ValueError, match="layer_bits names nope, which are not .* those are: stem, dw, pw, mid, fc"):
        plan_bits(model, LowBitConfig(layer_bits={"nope": 2}))


def _np_8bit(kernel: np.ndarray) -> np.ndarray:
    """8-bit symmetric per-channel (last axis) min/max fake quantization, as int8 post-training quantization stores it."""
    step = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0) / 127
    return np.clip(np.sign(kernel) * np.floor(np.abs(kernel) / step + 0.5), -127, 127) * step


def test_stripped_kernels_hold_the_quantized_values(rng):
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    widths = {"dw": 4, "pw": 2, "mid": 1}  # one QAT model with each low width (the first and last layers at 8 bits)
    qat = quantize_lowbit(model, LowBitConfig(bits=4, layer_bits=widths))
    x = rng.normal(size=(16, 8, 8, 3)).astype(np.float32)
    qat.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    qat.train_on_batch(x, np.arange(16) % 5)
    plain = strip_lowbit(qat)
    assert [(type(l), l.name) for l in plain.layers] == [(type(l), l.name) for l in model.layers]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the input model is untouched
    trained = {v.name.split(":")[0]: v.numpy() for v in qat.weights}
    per_channel = {r.name: r.max_unique_per_channel for r in weight_report(plain)}
    for name, bits in widths.items():
        assert per_channel[name] <= LIMIT[bits], (name, per_channel[name])
        attr = "depthwise_kernel" if name == "dw" else "kernel"
        expected = quantize_kernel(trained[f"{name}/{attr}"], bits, depthwise=name == "dw").numpy()
        np.testing.assert_array_equal(plain.get_layer(name).get_weights()[0], expected)
    # binary: exactly +-alpha_c, alpha_c = mean |w_c| of the trained float kernel
    w = trained["mid/kernel"]
    np.testing.assert_allclose(plain.get_layer("mid").kernel.numpy(), np.where(w >= 0, 1, -1) * np.abs(w).mean(axis=0), rtol=1e-6)
    assert per_channel["mid"] == 2
    for name in ("stem", "fc"):  # first and last layers: 8 bits, as post-training int8 would store them
        np.testing.assert_allclose(plain.get_layer(name).kernel.numpy(), _np_8bit(trained[f"{name}/kernel"]), rtol=1e-5, atol=1e-8)
        assert per_channel[name] > 15
    np.testing.assert_array_equal(plain.get_layer("dw_bn").get_weights()[2], qat.get_layer("quant_dw_bn").layer.moving_mean.numpy())
    # rebuilt from the input model and given the saved weights (how a pipeline stage reloads QAT), it strips the same
    again = quantize_lowbit(model, LowBitConfig(bits=4, layer_bits=widths))
    again.set_weights(qat.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(strip_lowbit(again).get_weights(), plain.get_weights()))


def test_saved_quantize_config_loads_in_the_scope():
    config = LowBitQuantizeConfig(["kernel"], ["activation"], False, bits=2, ranges="minmax")
    with lowbit_scope():
        again = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(config))
    assert isinstance(again, LowBitQuantizeConfig) and again.get_config() == config.get_config()


def test_trains_above_chance_on_digits_with_4_bit_weights(digits_splits):
    from edgeopt.train import TrainConfig, evaluate, fit

    keras.utils.set_random_seed(0)
    inp = keras.Input(digits_splits.preprocessing.input_shape)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, use_bias=False, name="stem")(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, use_bias=False, name="conv")(x)))
    model = keras.Model(inp, L.Dense(10, name="fc")(L.Flatten()(x)))
    qat = quantize_lowbit(model, LowBitConfig(bits=4, first_last_bits=4))  # every kernel at 4 bits
    fit(qat, digits_splits, TrainConfig(epochs=2, learning_rate=1e-2, verbose=0))
    plain = strip_lowbit(qat)
    assert max(r.max_unique_per_channel for r in weight_report(plain)) <= 15
    assert evaluate(plain, digits_splits.test)["top1"] > 0.6  # chance: 0.1; measured 0.89


def test_packed_size_is_the_hand_count():
    inp = keras.Input((6, 6, 3))
    x = L.BatchNormalization(name="conv_bn")(L.Conv2D(8, 3, use_bias=False, name="conv")(inp))  # folds: not counted
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.BatchNormalization(name="lonely_bn")(L.GlobalAveragePooling2D()(x))  # not after a conv: 4 x 16 params counted
    x = L.Dense(7, name="mid")(x)
    model = keras.Model(inp, L.Dense(3, use_bias=False, name="fc")(x))
    bits = {"conv": 4, "dw": 2, "mid": 1, "fc": 2}
    expected = (
        (3 * 3 * 3 * 8 * 4) // 8 + 8 * 8  # conv: 216 weights at 4 bits = 108 bytes; 8 channels x (scale + bias)
        + (3 * 3 * 8 * 2 * 2) // 8 + 8 * 16  # dw: 144 weights at 2 bits = 36 bytes; 16 channels
        + 16 * 7 // 8 + 8 * 7  # mid: 112 weights at 1 bit = 14 bytes; 7 channels
        + 6 + 8 * 3  # fc: 21 weights at 2 bits = 42 bits -> 6 bytes; 3 channels (the bias counts although it has none)
        + 4 * 4 * 16  # lonely_bn: gamma, beta, mean, variance of 16 channels, float32
    )
    assert packed_size_bytes(model, bits) == expected == 108 + 64 + 36 + 128 + 14 + 56 + 6 + 24 + 256
    assert packed_size_bytes(model, 8) == 216 + 64 + 144 + 128 + 112 + 56 + 21 + 24 + 256
    with pytest.raises(ValueError, match="bits has no width for fc"):
        packed_size_bytes(model, {"conv": 4, "dw": 2, "mid": 1})


# the int8 code each level of a channel lands on: the converter's scale is max|w_c| / 127, so level k of Q is code round(127 k / Q)
_CODES = {1: {-127, 127}, 2: {-127, 0, 127}, 4: {sign * int(np.floor(127 * k / 7 + 0.5)) for k in range(8) for sign in (1, -1)}}


@pytest.mark.slow
@pytest.mark.parametrize("bits", [4, 2, 1])
def test_int8_export_stores_each_channels_levels(bits, trained_tiny, digits_splits):
    """The stripped model through edgeopt's int8 export: every low-bit kernel keeps its levels as int8 codes
    (binary and 2-bit exactly +-127 and 0; 4-bit on round(127 k / 7)), and the file passes verification."""
    from edgeopt.compress.cluster import kernel_stats
    from edgeopt.compress.quantize import calibrate_ranges
    from edgeopt.export import to_tflite
    from edgeopt.tflite.flatbuffer import constant_weights
    from edgeopt.train import TrainConfig, fit

    model = trained_tiny("mobilenet_v2_tiny")
    config = LowBitConfig(bits=bits)
    qat = quantize_lowbit(model, config)
    calibrate_ranges(qat, model, digits_splits.arrays("train", limit=256)[0])
    fit(qat, digits_splits, TrainConfig(epochs=1, learning_rate=1e-3, verbose=0))
    plain = strip_lowbit(qat)
    artifact = to_tflite(plain, "int8", digits_splits, num_calibration=200, min_agreement=0.9)
    plan = plan_bits(model, config)
    found = {}
    for tensor in constant_weights(artifact.model_bytes):
        owners = [name for name in plan if f"/{name}/" in tensor.name]
        if tensor.dtype == "int8" and len(owners) == 1:
            found[owners[0]] = tensor.values
    assert set(found) == set(plan)
    for name, codes in found.items():
        if plan[name] == 8:
            continue
        assert kernel_stats(name, "", codes).max_unique_per_channel <= LIMIT[plan[name]], name
        assert set(np.unique(codes).tolist()) <= _CODES[plan[name]], name
