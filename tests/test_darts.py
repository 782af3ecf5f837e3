"""Differentiable search: the cost term's gradient, alternating steps that touch only their own variables,
exact checkpoints, resuming after a crash, and named config errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras, tf
from edgeopt.config import RecipeError
from edgeopt.search.darts import CHECKPOINT_FILE, DartsConfig, DartsTrainer, derive_within, read_checkpoint, search
from edgeopt.search.nas_cost import OpCostTable
from edgeopt.search.nas_space import SKIP, Architecture, tiny_space
from edgeopt.search.supernet import Supernet

OPS = ("ir_k3_e3", "ir_k5_e6", SKIP)
SHAPE = (16, 16, 3)
# a toy cost table: block1a's candidates cost 1, 4, 0; block2a's 2, 8 (skip is not a candidate there)
COSTS = OpCostTable("ms", {"block1a": {"ir_k3_e3": 1.0, "ir_k5_e6": 4.0, SKIP: 0.0}, "block2a": {"ir_k3_e3": 2.0, "ir_k5_e6": 8.0}}, fixed=3.0)
LR = 0.01


def _trainer(**config) -> DartsTrainer:
    keras.utils.set_random_seed(0)
    net = Supernet(tiny_space(OPS), SHAPE, 10)
    return DartsTrainer(net, COSTS, DartsConfig(epochs=2, arch_learning_rate=LR, **config), steps_per_epoch=4)


@pytest.fixture(scope="module")
def batch(digits_arrays):
    x, y = digits_arrays["train"]
    return tf.constant(x[:16]), tf.constant(y[:16])


@pytest.fixture(scope="module")
def _shared():
    """One trainer (its steps traced once) and its initial state."""
    trainer = _trainer(cost_weight=0.5)
    return trainer, trainer.state()


@pytest.fixture
def trainer(_shared):
    """The shared trainer put back exactly to its initial weights, architecture and optimizer state."""
    trainer, initial = _shared
    trainer.load_state(initial)
    return trainer


def _snapshot(trainer) -> dict[str, np.ndarray]:
    return trainer.supernet.state()


def test_cost_gradient_moves_alpha_toward_cheaper_ops(batch):
    """With no data loss the architecture loss is E[cost] / reference; at alpha = 0 its gradient g_j is
    p_j (c_j - E[c]) / reference with p_j = 1/n, and Adam's first step moves each alpha by
    -lr * g / (|g| + epsilon / sqrt(1 - beta_2)), about -lr * sign(g)."""
    trainer = _trainer(data_loss_weight=0.0, cost_weight=1.0)
    reference = sum(np.mean(list(COSTS.blocks[b].values())) for b in ("block1a", "block2a"))  # expected cost at uniform probabilities
    assert trainer.cost_reference == pytest.approx(reference)
    expected_grads = []
    for b in trainer.supernet.blocks:
        c = np.array([COSTS.blocks[b.name][op] for op in b.ops]) / reference
        expected_grads.append((c - c.mean()) / len(c))
    with tf.GradientTape() as tape:
        cost = trainer.supernet.expected_cost(trainer.costs)
    for g, e in zip(tape.gradient(cost, trainer.supernet.alphas), expected_grads):
        np.testing.assert_allclose(g.numpy(), e, atol=1e-7)

    before = [p.numpy() for p in trainer.supernet.probabilities()]
    trainer.arch_step(*batch, tf.constant(1.0))  # one alternating step: architecture on one batch ...
    trainer.weight_step(*batch, tf.constant(1.0))  # ... then weights on another
    after = [p.numpy() for p in trainer.supernet.probabilities()]
    for alpha, e in zip(trainer.supernet.alphas, expected_grads):
        np.testing.assert_allclose(alpha.numpy(), -LR * e / (np.abs(e) + 1e-7 / np.sqrt(1 - 0.999)), rtol=1e-5)
    for b, p0, p1 in zip(trainer.supernet.blocks, before, after):
        costs = [COSTS.blocks[b.name][op] for op in b.ops]
        assert p1[int(np.argmin(costs))] > p0[int(np.argmin(costs))] and p1[int(np.argmax(costs))] < p0[int(np.argmax(costs))]


def test_alternating_updates_touch_only_their_own_variables(trainer, batch):
    start = _snapshot(trainer)
    trainer.arch_step(*batch, tf.constant(1.0))
    after_arch = _snapshot(trainer)
    changed = {k for k in start if not np.array_equal(start[k], after_arch[k])}
    assert changed == {f"alpha/{b.name}" for b in trainer.supernet.blocks}  # batch-norm statistics put back too

    trainer.weight_step(*batch, tf.constant(1.0))
    after_weights = _snapshot(trainer)
    changed = {k for k in start if not np.array_equal(after_arch[k], after_weights[k])}
    assert not {k for k in changed if k.startswith("alpha/")}
    trainable = {f"w/{key}/{i}" for key, m in trainer.supernet.parts() for i, v in enumerate(m.weights) if v.trainable}
    statistics = {f"w/{key}/{i}" for key, m in trainer.supernet.parts() for i, v in enumerate(m.weights) if not v.trainable}
    assert trainable <= changed and statistics <= changed  # every weight gets a gradient under softmax mixing; BN statistics move


def test_checkpoint_restores_alpha_weights_and_optimizers_exactly(tmp_path, trainer, batch):
    for _ in range(2):
        trainer.arch_step(*batch, tf.constant(1.0))
        trainer.weight_step(*batch, tf.constant(1.0))
    path = tmp_path / CHECKPOINT_FILE
    trainer.save(path, {"epoch": 1})
    meta, arrays = read_checkpoint(path)
    assert meta == {"epoch": 1}
    fresh = _trainer(cost_weight=0.5)
    fresh.load_state(arrays)
    saved, restored = trainer.state(), fresh.state()
    assert saved.keys() == restored.keys() and any(k.startswith("opt_a/") for k in saved)
    for key in saved:
        np.testing.assert_array_equal(restored[key], saved[key], err_msg=key)


class _Crash(Exception):
    pass


def test_search_resumes_after_a_crash(tmp_path, digits_splits):
    config = DartsConfig(epochs=2, steps_per_epoch=1, cost_weight=0.5)

    def crash_after_first_epoch(line):
        raise _Crash(line)

    with pytest.raises(_Crash, match="nas epoch 1/2"):
        search(tiny_space(OPS), digits_splits, config, checkpoint_dir=tmp_path, cost_table=COSTS, log=crash_after_first_epoch)
    meta, saved = read_checkpoint(tmp_path / CHECKPOINT_FILE)
    lines = []
    result, supernet = search(tiny_space(OPS), digits_splits, config, checkpoint_dir=tmp_path, cost_table=COSTS, log=lines.append)
    assert result.resumed_at_epoch == 1 and [r.epoch for r in result.history] == [1, 2] and len(lines) == 1
    assert vars(result.history[0]) == meta["history"][0]
    assert result.architecture == supernet.derive() and result.cost == COSTS.predict(supernet.space, result.architecture)
    assert result.history[-1].architecture == list(result.architecture.choices)
    with pytest.raises(ValueError, match=r"another config \(cost_weight\)"):
        search(tiny_space(OPS), digits_splits, DartsConfig(epochs=2, steps_per_epoch=1, cost_weight=0.25), checkpoint_dir=tmp_path, cost_table=COSTS)


def test_cost_target_makes_the_cost_term_a_hinge(batch):
    """The uniform mixture's whole-network cost is 3 + 5/3 + 5 = 9.67: a target above it leaves the architecture
    alone (no data loss here); below it, the step is the linear term's (Adam's first step, as in the test above)."""
    above, below = (_trainer(data_loss_weight=0.0, cost_weight=1.0, cost_target=target) for target in (20.0, 5.0))
    assert below.cost_target == pytest.approx((5.0 - COSTS.fixed) / below.cost_reference)
    for t in (above, below):
        t.arch_step(*batch, tf.constant(1.0))
    for b, a_above, a_below in zip(below.supernet.blocks, above.supernet.alphas, below.supernet.alphas):
        assert not np.any(a_above.numpy())
        g = np.array([COSTS.blocks[b.name][op] for op in b.ops]) / below.cost_reference
        g = (g - g.mean()) / len(g)
        np.testing.assert_allclose(a_below.numpy(), -LR * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999)), rtol=1e-5)


def test_search_starts_from_initial_weights(tmp_path, digits_splits):
    keras.utils.set_random_seed(7)
    donor = Supernet(tiny_space(OPS), digits_splits.preprocessing.input_shape, 10, seed=7).state()
    config = DartsConfig(epochs=1, steps_per_epoch=1, learning_rate=1e-9, clip_norm=None)  # the weights barely move
    _, supernet = search(tiny_space(OPS), digits_splits, config, checkpoint_dir=tmp_path, cost_table=COSTS, initial_weights=donor, log=lambda line: None)
    state = supernet.state()
    trainable = [f"w/{key}/{i}" for key, m in supernet.parts() for i, v in enumerate(m.weights) if v.trainable]
    for key in trainable:
        np.testing.assert_allclose(state[key], donor[key], atol=1e-6, err_msg=key)
    other = {**donor, "w/stem/0": donor["w/stem/0"] + 1.0}
    with pytest.raises(ValueError, match=r"another initial_weights"):
        search(tiny_space(OPS), digits_splits, config, checkpoint_dir=tmp_path, cost_table=COSTS, initial_weights=other)
    with pytest.raises(ValueError, match="initial_weights has no w/stem/0"):
        search(tiny_space(OPS), digits_splits, config, cost_table=COSTS, initial_weights={k: v for k, v in donor.items() if k != "w/stem/0"})


def test_derive_within_switches_the_cheapest_loss_per_cost_saved():
    """block1a: ir_k3_e3 (cost 1, p 0.5), ir_k5_e6 (4, 0.1), skip (0, 0.4); block2a: ir_k3_e3 (2, 0.1), ir_k5_e6 (8, 0.9);
    fixed 3. The argmax (ir_k3_e3, ir_k5_e6) costs 12. Switching block1a to skip loses log(0.5/0.4) = 0.22 for 1 saved,
    block2a to ir_k3_e3 log(9) = 2.2 for 6 saved (0.37 per unit): block1a first, then block2a if still over."""
    space, probs = tiny_space(OPS), [[0.5, 0.1, 0.4], [0.1, 0.9]]
    assert derive_within(space, probs, COSTS, 12.0) == Architecture(("ir_k3_e3", "ir_k5_e6"))
    assert derive_within(space, probs, COSTS, 11.5) == Architecture((SKIP, "ir_k5_e6"))
    assert derive_within(space, probs, COSTS, 10.5) == Architecture((SKIP, "ir_k3_e3"))
    with pytest.raises(ValueError, match="no architecture of the space costs at most 4.9 ms: the cheapest costs 5"):
        derive_within(space, probs, COSTS, 4.9)
    with pytest.raises(ValueError, match="one vector per block"):
        derive_within(space, probs[:1], COSTS, 12.0)


def test_temperature_decays_exponentially():
    config = DartsConfig(epochs=5, tau=5.0, tau_final=0.5, mixing="gumbel")
    taus = [config.tau_at(e) for e in range(5)]
    assert taus[0] == 5.0 and taus[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(np.array(taus[1:]) / np.array(taus[:-1]), (0.1) ** 0.25)
    assert DartsConfig(epochs=3).tau_at(2) == 1.0


@pytest.mark.parametrize("data, message", [
    ({"tau": 0}, "tau must be > 0"),
    ({"hard": True}, "hard needs mixing = \"gumbel\""),
    ({"mixing": "sigmoid"}, "mixing must be one of softmax, gumbel"),
    ({"cost_model": "latency_pixel9"}, "cost_model must be one of latency, macs, params"),
    ({"epochs": 3, "warmup_epochs": 3}, r"warmup_epochs must be in \[0, epochs\)"),
    ({"cost_weight": -1}, "cost_weight and data_loss_weight must be >= 0"),
    ({"cost_target": 0}, "cost_target must be > 0"),
    ({"arch_optimizer": "lion"}, "arch_optimizer must be one of adam, sgd, rmsprop"),
    ({"learning_rate": 0}, "learning_rate must be > 0"),
    ({"epoch": 3}, "epoch is not a known field"),
])
def test_bad_config_fields_are_named(data, message):
    with pytest.raises(RecipeError, match=message):
        DartsConfig.from_dict(data)
