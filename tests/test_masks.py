"""Fixed masks: scores decide which weights go (per layer or globally, of what is still alive), masked kernels
hold exact zeros through training, bad arguments are named."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.masks import (MaskCallback, collapsed_layers, dense_masks, kernel_of, mask_sparsity, masks_of, output_channels,
                                    prunable_layers, prune_by_score, remaining)

L = keras.layers


def small() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="conv")(inp)
    x = L.DepthwiseConv2D(3, name="dw")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(4, name="fc")(x))


def test_prunable_layers_and_kernels():
    model = small()
    assert prunable_layers(model) == ["conv", "fc"]
    assert kernel_of(model, "dw").shape == (3, 3, 8, 1)
    with pytest.raises(ValueError, match="'gap'.*no kernel"):
        kernel_of(model, "gap")


def test_output_channels_and_collapse():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw2")(inp)
    model = keras.Model(inp, L.Dense(4, name="fc")(L.Flatten()(x)))
    assert output_channels(model, "dw2") == 3 * 2 and output_channels(model, "fc") == 4
    masks = {"dw2": np.zeros((3, 3, 3, 2), np.float32), "fc": np.zeros((6 * 6 * 6, 4), np.float32)}
    masks["dw2"].flat[:6] = 1  # as many weights as outputs: not collapsed (each output could still have one)
    masks["fc"].flat[:3] = 1  # fewer weights than its 4 outputs
    assert collapsed_layers(model, masks) == {"fc": 3}
    masks["dw2"].flat[5] = 0
    assert collapsed_layers(model, masks) == {"dw2": 5, "fc": 3}


def test_layer_scope_removes_the_lowest_scores_of_what_is_alive():
    scores = {"a": np.arange(10.0), "b": np.arange(20.0)[::-1].copy()}
    masks = {"a": np.ones(10, np.float32), "b": np.ones(20, np.float32)}
    first = prune_by_score(scores, masks, 0.5)
    assert first["a"].tolist() == [0] * 5 + [1] * 5
    assert first["b"].tolist() == [1] * 10 + [0] * 10
    second = prune_by_score(scores, first, {"a": 0.4})  # 40% of the 5 alive in "a"; "b" untouched
    assert second["a"].tolist() == [0] * 7 + [1] * 3
    np.testing.assert_array_equal(second["b"], first["b"])
    assert remaining(second) == pytest.approx(13 / 30)
    assert mask_sparsity(second) == {"a": 0.7, "b": 0.5}


def test_global_scope_ranks_all_layers_together():
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([0.5, 10.0, 11.0, 12.0])}
    masks = {n: np.ones(4, np.float32) for n in scores}
    new = prune_by_score(scores, masks, 0.5, scope="global")
    assert new["a"].tolist() == [0, 0, 0, 1] and new["b"].tolist() == [0, 1, 1, 1]
    again = prune_by_score(scores, new, 0.5, scope="global")  # of the 4 alive: 4.0 and 10.0 go
    assert again["a"].tolist() == [0, 0, 0, 0] and again["b"].tolist() == [0, 0, 1, 1]


def test_bad_arguments_are_named():
    masks = {"a": np.ones(4, np.float32)}
    with pytest.raises(ValueError, match="scope must be one of layer, global"):
        prune_by_score({"a": np.ones(4)}, masks, 0.5, scope="row")
    with pytest.raises(ValueError, match="layers a"):
        prune_by_score({"a": np.ones(3)}, masks, 0.5)
    with pytest.raises(ValueError, match="fraction for layer 'a' must be in"):
        prune_by_score({"a": np.ones(4)}, masks, 1.5)
    with pytest.raises(ValueError, match="without a mask: z"):
        prune_by_score({"a": np.ones(4)}, masks, {"z": 0.5})


def test_mask_callback_keeps_pruned_weights_zero_through_training():
    model = small()
    scores = {n: np.abs(kernel_of(model, n).numpy()) for n in prunable_layers(model)}
    masks = prune_by_score(scores, dense_masks(model), 0.75)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32"), np.arange(64) % 4
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[MaskCallback(masks)])
    after = masks_of(model)
    for n, m in masks.items():
        np.testing.assert_array_equal(after[n], m)  # zeros exactly where masked, the survivors trained (non-zero)
    assert remaining(after) == pytest.approx(0.25, abs=0.01)
