"""Transfer learning (edgeopt.transfer): what is frozen stays exactly as it was, what is unfrozen trains."""
import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.config import RecipeError, from_dict
from edgeopt.models import create
from edgeopt.train import TrainConfig
from edgeopt.transfer import FinetuneConfig, backbone_blocks, block_of, finetune, head_start

QUICK = TrainConfig(epochs=1, steps_per_epoch=3, learning_rate=1e-2, verbose=0)


def _model():
    keras.utils.set_random_seed(0)
    return create("mobilenet_v2_tiny", input_shape=(16, 16, 3), classes=10)


def _weights(layers):
    return {w.name: w.numpy().copy() for layer in layers for w in layer.weights}


def _changed(before, layers):
    return {w.name for layer in layers for w in layer.weights if not np.array_equal(before[w.name], w.numpy())}


def test_blocks_follow_zoo_and_keras_application_names():
    model = _model()
    blocks = [name for name, _ in backbone_blocks(model)]
    assert blocks[0] == "stem" and blocks[1] == "block1a" and blocks[-1].startswith("block7")
    assert model.layers[head_start(model)].name == "avg_pool"
    assert [block_of(n) for n in ("block_13_expand", "conv_dw_5_bn", "conv_pw_5", "expanded_conv_3/depthwise", "conv4_block2_1_conv", "Conv_1")] == \
        ["block_13", "conv_5", "conv_5", "expanded_conv_3", "conv4_block2", None]
    # the top convolution (no block name) belongs to the last block
    assert "head_conv" in [layer.name for layer in backbone_blocks(model)[-1][1]]


def test_head_phase_leaves_the_backbone_and_its_batchnorm_statistics_untouched(digits_splits):
    model = _model()
    start = head_start(model)
    before = _weights(model.layers)
    result = finetune(model, digits_splits, FinetuneConfig(head_epochs=1, unfreeze=0), QUICK)
    assert result.backbone is None and result.unfrozen_blocks == ()
    assert _changed(before, model.layers[:start]) == set()  # kernels and moving mean/variance alike
    assert _changed(before, model.layers[start:]) == {w.name for w in model.get_layer("classifier").weights}
    assert all(layer.trainable for layer in model.layers)  # trainable again for later stages


def test_unfreezing_the_top_block_trains_it_and_nothing_below(digits_splits):
    model = _model()
    blocks = backbone_blocks(model)
    before = _weights(model.layers)
    result = finetune(model, digits_splits, FinetuneConfig(head_epochs=1, unfreeze=1), QUICK)
    top_name, top_layers = blocks[-1]
    assert result.unfrozen_blocks == (top_name,)
    assert _changed(before, [layer for _, layers in blocks[:-1] for layer in layers]) == set()
    changed_top = _changed(before, top_layers)
    kernels = {w.name for layer in top_layers if isinstance(layer, keras.layers.Conv2D) for w in layer.weights}
    assert kernels and kernels <= changed_top
    bn_stats = {w.name for layer in top_layers if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights}
    assert bn_stats and not bn_stats & changed_top  # batch norm stays in inference mode unless train_batchnorm


@pytest.mark.parametrize("fields, message", [
    ({"unfreeze": -1}, "stages[0].unfreeze must be \"all\" or a number of top blocks >= 0, got -1"),
    ({"unfreeze": "top"}, "stages[0].unfreeze must be \"all\""),
    ({"learning_rate_factor": 2.0}, "stages[0].learning_rate_factor must be in (0, 1], got 2.0"),
    ({"head_epochs": 0, "unfreeze": 0}, "would train nothing"),
])
def test_bad_finetune_fields_are_named(fields, message):
    with pytest.raises(RecipeError) as err:
        from_dict(FinetuneConfig, fields, "stages[0]")
    assert message in str(err.value)


def test_a_model_without_pooling_head_is_refused_with_a_way_out():
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 8)(inp))
    with pytest.raises(ValueError, match="has no GlobalAveragePooling2D, GlobalMaxPooling2D or Flatten layer"):
        head_start(model)


def test_new_head_keeps_the_backbone_and_its_features():
    from edgeopt.transfer import new_head

    model = _model()
    swapped = new_head(model, classes=3)
    assert swapped.output_shape == (None, 3)
    features = keras.Model(model.inputs, model.layers[head_start(model)].input)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    same = keras.Model(swapped.inputs, swapped.layers[head_start(swapped)].input)
    np.testing.assert_array_equal(features(x).numpy(), same(x).numpy())
