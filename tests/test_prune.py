"""Magnitude pruning: per-layer targets reached after stripping, 2:4 in every group, global thresholds,
policies, config validation, and clear errors for models TF-MOT cannot prune."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.prune import (
    PruneConfig,
    global_layer_sparsity,
    planned_sparsity,
    prune,
    pruning_callbacks,
    sparsity_report,
    strip_pruning,
)
from edgeopt.train import TrainConfig, fit

L = keras.layers


def small_convnet(seed: int = 0) -> keras.Model:
    """Stem 3x3, a depthwise-separable pair, two 1x1s and a classifier: every kind a policy sees."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3), name="input")
    x = L.Conv2D(16, 3, strides=2, padding="same", name="stem_conv")(inp)
    x = L.ReLU(name="stem_act")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(32, 1, name="pw1")(x)
    x = L.ReLU(name="pw1_act")(x)
    x = L.Conv2D(24, 1, name="pw2")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    out = L.Dense(10, name="classifier")(x)
    return keras.Model(inp, out)


def train_pruned(model, config, splits, steps=12):
    pruned = prune(model, config, total_steps=steps)
    fit(pruned, splits, TrainConfig(epochs=1, steps_per_epoch=steps, verbose=0), callbacks=pruning_callbacks(config))
    return strip_pruning(pruned)


def assert_sparsity(model, targets: dict[str, float], tol: float = 0.01):
    got = sparsity_report(model).by_name()
    for name, target in targets.items():
        assert abs(got[name] - target) <= tol, f"{name}: sparsity {got[name]:.4f}, target {target}"


@pytest.mark.parametrize(
    "config",
    [
        PruneConfig(schedule="constant", final_sparsity=0.5, frequency=4),
        PruneConfig(schedule="polynomial", initial_sparsity=0.1, final_sparsity=0.75, frequency=2, prune_first_conv=True),
    ],
    ids=["constant50", "polynomial75"],
)
def test_each_pruned_layer_reaches_its_target_after_strip(config, digits_splits):
    model = small_convnet()
    before = [w.copy() for w in model.get_weights()]
    final = train_pruned(model, config, digits_splits)
    targets = planned_sparsity(model, config)
    expected = {"pw1", "pw2", "classifier"} | ({"stem_conv"} if config.prune_first_conv else set())
    assert set(targets) == expected
    assert_sparsity(final, targets)
    assert sparsity_report(final).by_name()["dw"] == 0.0  # depthwise kernels are not pruned
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the input model changed"
    assert not any(type(l).__name__ == "PruneLowMagnitude" for l in final.layers)


def test_two_of_four_holds_in_every_group_of_input_channels(digits_splits):
    config = PruneConfig(m_by_n=(2, 4), schedule="constant")
    final = train_pruned(small_convnet(), config, digits_splits, steps=4)
    checked = 0
    for name in planned_sparsity(small_convnet(), config):
        kernel = final.get_layer(name).kernel.numpy()
        # TF-MOT's layout (TFLite's): output channel first, input channels last; groups of 4 input channels
        rows = kernel.T.reshape(kernel.shape[-1], -1) if kernel.ndim == 2 else np.transpose(kernel, (3, 0, 1, 2)).reshape(-1, kernel.shape[2])
        groups = rows.reshape(rows.shape[0], -1, 4)
        nonzeros = np.count_nonzero(groups, axis=-1)
        assert nonzeros.max() <= 2, f"{name}: a group of 4 has {nonzeros.max()} non-zeros"
        checked += groups.shape[0] * groups.shape[1]
    assert checked > 100


def test_global_scope_uses_one_threshold_and_reaches_the_total(digits_splits):
    model = small_convnet()
    config = PruneConfig(schedule="constant", final_sparsity=0.6, scope="global", frequency=4)
    targets = planned_sparsity(model, config)
    sizes = {n: model.get_layer(n).kernel.numpy().size for n in targets}
    total = sum(targets[n] * sizes[n] for n in targets) / sum(sizes.values())
    assert abs(total - 0.6) < 0.005
    assert len({round(v, 3) for v in targets.values()}) > 1, "global pruning gave every layer the same sparsity"
    final = train_pruned(model, config, digits_splits, steps=4)
    assert_sparsity(final, targets, tol=0.01)
    caps = global_layer_sparsity(model, list(targets), 0.6, cap=0.62)  # pw2 alone goes above 0.62: held there, the rest cut more
    assert max(targets.values()) > 0.62 and max(caps.values()) <= 0.62 and all(caps[n] >= targets[n] for n in targets if targets[n] < 0.62)
    assert sum(caps[n] * sizes[n] for n in caps) == round(0.6 * sum(sizes.values()))  # exactly the total, in whole weights
    with pytest.raises(ValueError, match="cannot remove 0.6 of the weights with no layer above 0.3"):
        global_layer_sparsity(model, list(targets), 0.6, cap=0.3)
    with pytest.raises(ValueError, match="final_sparsity 0.99 is above max_layer_sparsity 0.98"):
        PruneConfig(final_sparsity=0.99, scope="global")


def test_policies_select_the_right_layers():
    model = small_convnet()
    assert set(planned_sparsity(model, PruneConfig(policy="xnnpack"))) == {"pw1", "pw2"}
    assert set(planned_sparsity(model, PruneConfig(prune_classifier=False))) == {"pw1", "pw2"}
    explicit = planned_sparsity(model, PruneConfig(policy="explicit", layer_sparsity={"pw2": 0.3, "classifier": 0.2}))
    assert explicit == {"pw2": 0.3, "classifier": 0.2}
    with pytest.raises(ValueError, match="not prunable layers.*prunable layers: classifier, pw1, pw2, stem_conv"):
        planned_sparsity(model, PruneConfig(policy="explicit", layer_sparsity={"dw": 0.5}))


def test_config_validates_and_round_trips():
    config = PruneConfig(final_sparsity=0.8, block_size=[1, 4], layer_sparsity={"pw1": 0.5}, end_step=1000)
    assert PruneConfig.from_dict(config.to_dict()) == config
    for bad, field in [({"final_sparsity": 1.0}, "final_sparsity"), ({"schedule": "cubic"}, "schedule.*constant, polynomial"),
                       ({"policy": "all"}, "policy.*default, explicit, xnnpack"), ({"m_by_n": (4, 2)}, "m_by_n"),
                       ({"end_step": 150, "frequency": 100}, "multiple of frequency"), ({"scope": "model"}, "scope")]:
        with pytest.raises(ValueError, match=field):
            PruneConfig(**bad)
    assert PruneConfig(frequency=100).resolved_end_step(1000) == 700


def test_models_tf_mot_cannot_prune_get_a_clear_error():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(4)

        def call(self, x):
            return self.dense(x)

    sub = Subclassed()
    sub(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="subclassed model.*Functional"):
        prune(sub, PruneConfig())

    import keras as keras3

    inp = keras3.Input((4,))
    with pytest.raises(TypeError, match="Keras 3.*tf_keras"):
        prune(keras3.Model(inp, keras3.layers.Dense(2)(inp)), PruneConfig())
