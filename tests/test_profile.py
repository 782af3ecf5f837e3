import pytest

from edgeopt._keras import keras
from edgeopt.costs import profile


def _model():
    inp = keras.Input((8, 8, 6))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="full")(inp)  # 8*8*4*3*3*6 = 13824
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw")(x)  # 4*4*4*9 = 576
    x = keras.layers.Conv2D(6, 1, use_bias=True, name="pw")(x)  # 4*4*6*4 = 384 ; params 24+6
    x = keras.layers.Conv2D(6, 1, groups=3, use_bias=False, name="gpw")(x)  # 4*4*6*2 = 192 ; params 12
    x = keras.layers.BatchNormalization(name="bn")(x)  # params 24
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, name="fc")(x)  # 30 macs ; params 35
    return keras.Model(inp, out, name="toy")


def test_profile_counts_match_hand_computation():
    p = profile(_model())
    by = {c.name: (c.layer_type, c.params, c.macs) for c in p.layers}
    assert by["full"] == ("conv", 216, 13824)
    assert by["dw"] == ("depthwise", 36, 576)
    assert by["pw"] == ("1x1 conv", 30, 384)
    assert by["gpw"] == ("grouped conv", 12, 192)
    assert by["bn"] == ("batch norm", 24, 0)
    assert by["fc"] == ("dense", 35, 30)
    assert p.params == _model().count_params() == 353
    assert p.macs == 13824 + 576 + 384 + 192 + 30
    assert p.by_type["1x1 conv"] == (30, 384)
    assert p.share("dense") == (pytest.approx(35 / 353), pytest.approx(30 / p.macs))


def test_profile_markdown_and_dict():
    p = profile(_model())
    md = p.to_markdown(per_layer=True)
    assert "| grouped conv | 12 |" in md and "| gpw | grouped conv | 12 | 192 |" in md
    d = p.to_dict()
    assert d["params"] == 353 and d["by_type"]["depthwise"] == {"params": 36, "macs": 576}
