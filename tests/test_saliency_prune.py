"""Iterative saliency pruning: the rounds reach the requested sparsity (exact counts), pruned weights stay zero
through fine-tuning, global ranking uses the normalized scores, filter rounds shrink the model, bad fields are named."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress import saliency
from edgeopt.compress.masks import dense_masks, prune_by_score
from edgeopt.compress.saliency_prune import SaliencyPruneConfig, saliency_prune
from edgeopt.compress.structured import channel_groups
from edgeopt.config import RecipeError
from edgeopt.train import TrainConfig

L = keras.layers
TRAIN = TrainConfig(epochs=1, steps_per_epoch=8, learning_rate=3e-3, cosine=False, verbose=0)


def mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.Flatten(name="flatten")(inp)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    x = L.Dense(16, activation="relu", name="fc2")(x)
    return keras.Model(inp, L.Dense(10, name="classifier")(x))


def convnet() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = inp
    for i, width in ((1, 8), (2, 16)):
        x = L.Conv2D(width, 3, strides=2, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
    return keras.Model(inp, L.Dense(10, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))


def _expected_zeros(size: int, per_round: float, rounds: int) -> int:
    alive = size
    for _ in range(rounds):
        alive -= int(round(per_round * alive))
    return size - alive


def test_weight_rounds_reach_the_target_and_keep_zeros_through_fine_tuning(digits_splits):
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    config = SaliencyPruneConfig(criterion="taylor", rounds=2, target_sparsity=0.75, exclude=("classifier",), train=TRAIN,
                                 saliency=saliency.SaliencyOptions(batches=2))
    assert config.per_round == pytest.approx(0.5)

    pruned, result = saliency_prune(model, digits_splits, config)

    for name in ("fc1", "fc2"):
        kernel = pruned.get_layer(name).kernel.numpy()
        assert np.count_nonzero(kernel == 0) == _expected_zeros(kernel.size, 0.5, 2)  # exactly the masked ones, after two fine-tunings
    assert np.count_nonzero(pruned.get_layer("classifier").kernel.numpy() == 0) == 0  # excluded
    rows = result.rounds
    assert [r.round for r in rows] == [0, 1, 2] and rows[0].remaining == 1.0 and rows[0].val_top1 is None
    assert rows[1].remaining == pytest.approx(0.5, abs=1e-3) and rows[2].remaining == pytest.approx(0.25, abs=1e-3)
    counted = sum(np.count_nonzero(pruned.get_layer(n).kernel.numpy() == 0) for n in ("fc1", "fc2", "classifier"))
    total = sum(pruned.get_layer(n).kernel.numpy().size for n in ("fc1", "fc2", "classifier"))
    assert rows[2].weight_sparsity == pytest.approx(counted / total)
    assert rows[2].top1 > 0.3 and rows[2].val_top1 is not None  # ten classes: chance is 0.1
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the input model changed"
    assert result.to_dict()["config"]["criterion"] == "taylor"


def test_global_weight_round_ranks_normalized_scores(digits_splits):
    model = mlp()
    config = SaliencyPruneConfig(criterion="l2", rounds=1, fraction=0.6, scope="global", normalize="mean", train=TRAIN)
    names = ["fc1", "fc2", "classifier"]
    scores = saliency.normalize(saliency.weight_scores(model, "l2", names), "mean")
    expected = prune_by_score(scores, dense_masks(model, names), 0.6, "global")

    pruned, result = saliency_prune(model, digits_splits, config, evaluate_test=False)

    assert all(r.top1 is None for r in result.rounds)  # the test split was not read
    for name in names:
        np.testing.assert_array_equal(pruned.get_layer(name).kernel.numpy() != 0, expected[name] > 0)
    assert result.rounds[1].remaining == pytest.approx(0.4, abs=1e-3)
    raw = prune_by_score(saliency.weight_scores(model, "l2", names), dense_masks(model, names), 0.6, "global")
    assert abs(raw["classifier"].mean() - expected["classifier"].mean()) > 0.1  # unnormalized ranking would differ


def test_filter_rounds_layer_and_global(digits_splits):
    model = convnet()
    layer = SaliencyPruneConfig(criterion="apoz", granularity="filter", rounds=2, fraction=0.5, min_channels=1, train=TRAIN,
                                saliency=saliency.SaliencyOptions(batches=2))
    pruned, result = saliency_prune(model, digits_splits, layer, evaluate_test=False)
    assert [pruned.get_layer(n).filters for n in ("conv1", "conv2")] == [2, 4]  # 8 -> 4 -> 2, 16 -> 8 -> 4
    assert [r.remaining for r in result.rounds] == [1.0, 0.5, 0.25]
    assert result.rounds[2].params < result.rounds[1].params < result.rounds[0].params == model.count_params()
    assert result.rounds[2].macs < result.rounds[0].macs

    glob = SaliencyPruneConfig(criterion="l1", granularity="filter", rounds=1, fraction=0.5, scope="global", min_channels=3, train=TRAIN)
    smaller, _ = saliency_prune(model, digits_splits, glob, evaluate_test=False)
    widths = {g.name: g.channels for g in channel_groups(smaller) if g.name in ("conv1", "conv2")}
    assert sum(widths.values()) == 12 and min(widths.values()) >= 3  # half of the 24 channels, none below min_channels


def test_config_fields_are_named():
    with pytest.raises(ValueError, match="criterion must be one of l1, l2, obd_fisher, obd_hutchinson, taylor, wanda for granularity='weight'; got 'fpgm'"):
        SaliencyPruneConfig(criterion="fpgm")
    assert SaliencyPruneConfig(criterion="fpgm", granularity="filter").criterion == "fpgm"
    with pytest.raises(ValueError, match="granularity must be one of weight, filter"):
        SaliencyPruneConfig(granularity="block")
    with pytest.raises(ValueError, match="fraction and target_sparsity are both set"):
        SaliencyPruneConfig(fraction=0.2, target_sparsity=0.9)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        SaliencyPruneConfig(fraction=1.0)
    with pytest.raises(ValueError, match="scope must be one of layer, global"):
        SaliencyPruneConfig(scope="internal")
    with pytest.raises(ValueError, match="normalize must be one of l2, mean, none"):
        SaliencyPruneConfig(normalize="max")
    with pytest.raises(ValueError, match="groups must be one of internal, all"):
        SaliencyPruneConfig(granularity="filter", criterion="l1", groups="some")
    with pytest.raises(RecipeError, match="stages\\[1\\].saliency.batches must be >= 1"):
        SaliencyPruneConfig.from_dict({"saliency": {"batches": 0}}, "stages[1]")
    with pytest.raises(RecipeError, match="stages\\[1\\].rounds must be >= 1"):
        SaliencyPruneConfig.from_dict({"rounds": 0}, "stages[1]")
    config = SaliencyPruneConfig(criterion="obd_hutchinson", rounds=4, target_sparsity=0.9, scope="global", exclude=["classifier"])
    assert SaliencyPruneConfig.from_dict(config.to_dict()) == config
    assert config.per_round == pytest.approx(1 - 0.1 ** 0.25) and SaliencyPruneConfig().per_round == 0.2


def test_unknown_exclude_and_nothing_to_prune_are_refused(digits_splits):
    with pytest.raises(ValueError, match="exclude names fc9, which are not layers"):
        saliency_prune(mlp(), digits_splits, SaliencyPruneConfig(exclude=("fc9",), train=TRAIN))
    with pytest.raises(ValueError, match="no channel group of .* can be pruned"):
        saliency_prune(mlp(), digits_splits, SaliencyPruneConfig(granularity="filter", exclude=("fc1", "fc2"), train=TRAIN))


@pytest.mark.slow
def test_weight_pruned_zeros_survive_int8_export(digits_splits, digits_arrays):
    from conftest import to_int8
    from edgeopt.tflite.flatbuffer import constant_weights

    pruned, _ = saliency_prune(mlp(), digits_splits, SaliencyPruneConfig(criterion="obd_fisher", rounds=1, fraction=0.8, train=TRAIN))
    data = to_int8(pruned, digits_arrays["train"][0][:100])
    fc1 = pruned.get_layer("fc1").kernel.numpy()
    int8 = next(w.values for w in constant_weights(data) if w.dtype == "int8" and w.values.shape == fc1.shape)
    assert np.all(int8[fc1 == 0] == 0)  # every pruned weight is an exact int8 zero


def test_a_layer_sparsity_profile_prunes_each_named_layer_to_its_share(digits_splits):
    config = SaliencyPruneConfig(criterion="l1", rounds=2, layer_sparsity={"fc1": 0.75, "fc2": 0.36}, train=TRAIN)
    assert config.per_round_of(["fc1", "fc2", "classifier"]) == pytest.approx({"fc1": 0.5, "fc2": 0.2, "classifier": 0.0})

    pruned, result = saliency_prune(mlp(), digits_splits, config, evaluate_test=False)

    for name, per_round in (("fc1", 0.5), ("fc2", 0.2)):
        kernel = pruned.get_layer(name).kernel.numpy()
        assert np.count_nonzero(kernel == 0) == _expected_zeros(kernel.size, per_round, 2)
    assert np.count_nonzero(pruned.get_layer("classifier").kernel.numpy() == 0) == 0  # not named: left whole
    assert SaliencyPruneConfig.from_dict(config.to_dict()) == config


def test_a_bad_layer_sparsity_profile_is_named(digits_splits):
    with pytest.raises(ValueError, match="layer_sparsity is set with fraction or target_sparsity"):
        SaliencyPruneConfig(layer_sparsity={"fc1": 0.5}, target_sparsity=0.5)
    with pytest.raises(ValueError, match="layer_sparsity needs granularity='weight' and scope='layer'"):
        SaliencyPruneConfig(layer_sparsity={"fc1": 0.5}, scope="global")
    with pytest.raises(ValueError, match=r"layer_sparsity must map layer names to shares in \[0, 1\), e.g. .*; got fc1: 1.0"):
        SaliencyPruneConfig(layer_sparsity={"fc1": 1.0})
    with pytest.raises(RecipeError, match=r"stages\[0\].layer_sparsity must map layer names"):
        SaliencyPruneConfig.from_dict({"layer_sparsity": {}}, "stages[0]")
    with pytest.raises(RecipeError, match=r"stages\[0\].layer_sparsity must map layer names to shares .*; got \{'fc1': 'most'\}"):
        SaliencyPruneConfig.from_dict({"layer_sparsity": {"fc1": "most"}}, "stages[0]")
    with pytest.raises(ValueError, match="layer_sparsity names fc9, which are not convolution or dense layers of .* left to prune"):
        saliency_prune(mlp(), digits_splits, SaliencyPruneConfig(layer_sparsity={"fc9": 0.5}, train=TRAIN))
    with pytest.raises(ValueError, match="layer_sparsity names classifier"):  # excluded: not left to prune
        saliency_prune(mlp(), digits_splits, SaliencyPruneConfig(layer_sparsity={"classifier": 0.5}, exclude=("classifier",), train=TRAIN))
