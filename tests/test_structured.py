"""Filter pruning: a genuinely smaller model whose outputs equal the original's when the removed channels
carried nothing; residual and squeeze-excite ties respected; ShuffleNet groups refused plainly."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress.structured import StructuredConfig, channel_groups, plan, prune_filters
from edgeopt.models import create
from edgeopt.costs import profile

L = keras.layers


def make_inert(model, config: StructuredConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Zero, in place, the producing filters and every batch norm's gamma/beta of a random ``ratio`` of the
    channels of each group the config prunes, so those channels carry exactly zero everywhere.
    Returns the channels left alive per group."""
    rng = np.random.default_rng(seed)
    alive = {}
    for name, kept in plan(model, config).items():
        group = next(g for g in channel_groups(model) if g.name == name)
        dead = np.sort(rng.choice(group.channels, group.channels - len(kept), replace=False))
        alive[name] = np.setdiff1d(np.arange(group.channels), dead)
        for layer in (model.get_layer(n) for n in group.producers + group.members):
            weights = layer.get_weights()
            if isinstance(layer, L.BatchNormalization):
                weights[0][dead] = 0.0  # gamma
                weights[1][dead] = 0.0  # beta
            elif isinstance(layer, (L.Conv2D, L.Dense)) and not isinstance(layer, L.DepthwiseConv2D):
                weights[0][..., dead] = 0.0
                for b in weights[1:]:
                    b[dead] = 0.0
            layer.set_weights(weights)
    return alive


@pytest.mark.parametrize(
    "name,scope",
    [("mobilenet_v1_tiny", "internal"), ("mobilenet_v2_tiny", "internal"), ("mobilenet_v2_tiny", "all"), ("efficientnet_tiny", "all")],
)
def test_pruned_model_is_smaller_and_equal_when_removed_channels_were_inert(name, scope):
    keras.utils.set_random_seed(1)
    model = create(name, input_shape=(16, 16, 3), classes=10, classifier_activation=None)
    config = StructuredConfig(ratio=0.5, scope=scope)
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype(np.float32)
    # give batch norms non-trivial statistics so "inert" is not an accident of the defaults
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([g + rng.uniform(0, 0.5, g.shape), b + rng.normal(0, 0.1, b.shape), rng.normal(0, 0.1, m.shape), 1 + rng.uniform(0, 0.5, v.shape)])
    alive = make_inert(model, config)
    assert alive, "nothing was planned for pruning"
    before = model(x, training=False).numpy()
    weights_before = [w.copy() for w in model.get_weights()]

    pruned = prune_filters(model, config)

    assert pruned.count_params() < model.count_params()
    assert profile(pruned).macs < profile(model).macs
    for group, kept in plan(model, config).items():
        np.testing.assert_array_equal(kept, alive[group])  # the zero-L1 channels were the ones removed
        assert pruned.get_layer(group).output.shape[-1] == len(kept)
    np.testing.assert_allclose(pruned(x, training=False).numpy(), before, atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(weights_before, model.get_weights())), "the input model changed"


def test_residual_and_squeeze_excite_ties():
    v2 = {g.name: g for g in channel_groups(create("mobilenet_v2_tiny", input_shape=(16, 16, 3), classes=10))}
    tied = [g for g in v2.values() if g.residual]
    assert tied and all(len(g.producers) >= 2 for g in tied)  # project convs of a stage share channels
    assert not any(g.residual for n, g in v2.items() if n.endswith("expand_conv"))
    internal = plan(create("mobilenet_v2_tiny", input_shape=(16, 16, 3), classes=10), StructuredConfig(scope="internal"))
    assert internal and all(not v2[n].residual for n in internal)

    eff = {g.name: g for g in channel_groups(create("efficientnet_tiny", input_shape=(16, 16, 3), classes=10))}
    se = eff["block2a_expand_conv"]
    assert "block2a_se_expand" in se.producers and "block2a_dwconv" in se.members  # the Multiply ties them


def test_shufflenet_groups_are_refused_with_the_reason():
    model = create("shufflenet_v1_tiny", input_shape=(16, 16, 3), classes=10)
    blocked = [why for g in channel_groups(model) for why in g.blocked]
    assert any("grouped convolution" in why for why in blocked) and any("Reshape" in why for why in blocked)
    with pytest.raises(ValueError, match="no channel group .* can be pruned.*Grouped convolutions and channel shuffles"):
        prune_filters(model, StructuredConfig(scope="all"))


def test_config_validates_and_round_trips():
    config = StructuredConfig(ratio=0.3, scope="all", round_to=8, exclude=["head_conv"])
    assert StructuredConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="scope must be one of internal, all"):
        StructuredConfig(scope="everything")
    with pytest.raises(ValueError, match="ratio"):
        StructuredConfig(ratio=1.0)
    model = create("mobilenet_v2_tiny", input_shape=(16, 16, 3), classes=10)
    kept = plan(model, StructuredConfig(ratio=0.4, round_to=8, exclude=("block2a_expand_conv",)))
    assert "block2a_expand_conv" not in kept and all(len(k) % 8 == 0 for k in kept.values())
