"""Iterative pruning and lottery tickets: masks shrink by the stated fraction of what remains, pruned
weights stay zero through training, rewinding restores the initial survivors, accuracy is recorded."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.lottery import LotteryConfig, iterative_prune, lottery_ticket, prunable_layers, prune_masks, remaining
from edgeopt.train import TrainConfig, fit

L = keras.layers
TRAIN = TrainConfig(epochs=1, learning_rate=3e-3, cosine=False, verbose=0)


def mlp() -> keras.Model:
    inp = keras.Input((16, 16, 3), name="input")
    x = L.Flatten(name="flatten")(inp)
    x = L.Dense(64, activation="relu", name="fc1")(x)
    x = L.Dense(32, activation="relu", name="fc2")(x)
    return keras.Model(inp, L.Dense(10, name="classifier")(x))


def test_prune_masks_removes_the_fraction_of_what_remains():
    keras.utils.set_random_seed(0)
    model = mlp()
    masks = {n: np.ones(model.get_layer(n).kernel.shape, np.float32) for n in prunable_layers(model)}
    first = prune_masks(model, masks, 0.2)
    second = prune_masks(model, first, 0.2)
    for n in masks:
        rate = 0.2 if n != "classifier" else 0.1  # the output layer at half the rate
        assert first[n].sum() == masks[n].size - round(rate * masks[n].size)
        assert second[n].sum() == first[n].sum() - round(rate * first[n].sum())
        assert np.all(second[n] <= first[n])  # masks only shrink
        kernel = np.abs(model.get_layer(n).kernel.numpy())
        assert kernel[first[n] == 0].max() <= kernel[first[n] == 1].min()  # the smallest magnitudes went
    glob = prune_masks(model, masks, 0.5, scope="global")
    assert abs(sum(glob[n].sum() for n in ("fc1", "fc2")) / sum(masks[n].size for n in ("fc1", "fc2")) - 0.5) < 1e-3


def test_iterative_pruning_keeps_zeros_and_accuracy(digits_splits):
    keras.utils.set_random_seed(0)
    model = mlp()
    fit(model, digits_splits, TRAIN)
    pruned, result = iterative_prune(model, digits_splits, LotteryConfig(rounds=2, fraction=0.5, random_control=False, train=TRAIN))
    assert [r.round for r in result.rounds] == [0, 1, 2]
    fc1 = pruned.get_layer("fc1").kernel.numpy()
    assert abs((fc1 == 0).mean() - 0.75) < 0.01  # two rounds of half of what remains
    alive = {n: (pruned.get_layer(n).kernel.numpy() != 0).astype(float) for n in prunable_layers(pruned)}
    assert result.rounds[-1].remaining == pytest.approx(remaining(alive), abs=1e-6)  # reported = counted zeros
    assert result.rounds[-1].top1 > 0.5  # ten classes: chance is 0.1
    assert np.count_nonzero(model.get_layer("fc1").kernel.numpy() == 0) == 0  # input untouched


def test_lottery_ticket_rounds_with_random_control(digits_splits):
    config = LotteryConfig(rounds=2, fraction=0.6, rewind="init", random_control=True, train=TRAIN, seed=3)
    result = lottery_ticket(mlp, digits_splits, config)
    rows = result.rounds
    assert [r.round for r in rows] == [0, 1, 2]
    assert rows[0].remaining == 1.0 and rows[1].remaining > rows[2].remaining
    assert rows[2].remaining == pytest.approx(0.4 * 0.4, abs=0.05)
    assert all(r.top1 > 0.3 and r.top1_random is not None and r.top1_random > 0.1 for r in rows)
    assert result.to_dict()["config"]["rewind"] == "init"


def test_late_rewinding_and_config_validation(digits_splits):
    result = lottery_ticket(mlp, digits_splits, LotteryConfig(rounds=1, fraction=0.5, rewind="step", rewind_step=5, random_control=False, train=TRAIN))
    assert len(result.rounds) == 2 and result.rounds[1].top1 > 0.3
    config = LotteryConfig(rounds=3, fraction=0.3, rewind="step", rewind_step=10)
    assert LotteryConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="rewind must be one of init, step, none"):
        LotteryConfig(rewind="late")
    with pytest.raises(ValueError, match="rewind_step"):
        LotteryConfig(rewind="step")
    with pytest.raises(ValueError, match="fraction"):
        LotteryConfig(fraction=1.0)
