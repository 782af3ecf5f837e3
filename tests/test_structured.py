"""Filter pruning: a genuinely smaller model whose outputs equal the original's when the removed channels
carried nothing; residual and squeeze-excite ties respected; ShuffleNet groups refused plainly."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.compress import saliency
from edgeopt.compress.structured import StructuredConfig, channel_groups, group_scores, plan, prune_filters
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


# ---- saliency criteria (edgeopt.compress.saliency) -----------------------------------------------------------


def two_conv_model() -> keras.Model:
    """8x8x3 -> conv(8) -> BN -> ReLU -> conv(8) -> BN -> ReLU -> GAP -> Dense(4): two prunable groups; every
    batch norm's beta distinct, so the kept channels can be read back from the pruned model."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = inp
    for i in (1, 2):
        x = L.Conv2D(8, 3, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
    model = keras.Model(inp, L.Dense(4, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))
    rng = np.random.default_rng(4)
    for i in (1, 2):
        model.get_layer(f"bn{i}").set_weights([rng.uniform(0.2, 2, 8), rng.normal(0, 0.5, 8), rng.normal(0, 0.3, 8), rng.uniform(0.5, 2, 8)])
    return model


@pytest.mark.parametrize("criterion", saliency.filter_criteria())
def test_each_filter_criterion_removes_the_lowest_scoring_channels(criterion):
    model = two_conv_model()
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(32, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 32))
    options = saliency.SaliencyOptions(batches=1, fisher="batch", hutchinson_samples=2)  # per-image Fisher: test_saliency.py
    config = StructuredConfig(ratio=0.5, criterion=criterion, min_channels=1, saliency=options)
    groups = [g for g in channel_groups(model) if g.name in ("conv1", "conv2")]
    scores = group_scores(model, groups, criterion, data, options)

    pruned = prune_filters(model, config, data=data)

    for i, group in ((1, "conv1"), (2, "conv2")):
        beta = model.get_layer(f"bn{i}").beta.numpy()
        kept = np.flatnonzero(np.isin(beta, pruned.get_layer(f"bn{i}").beta.numpy()))
        removed = np.setdiff1d(np.arange(8), kept)
        assert len(kept) == 4
        assert scores[group][kept].min() >= scores[group][removed].max(), f"{criterion}: a removed channel outscored a kept one"
        expected = model.get_layer(f"conv{i}").kernel.numpy()[..., kept]
        if i == 2:  # conv2 also lost the input rows of conv1's removed channels
            expected = expected[:, :, np.flatnonzero(np.isin(model.get_layer("bn1").beta.numpy(), pruned.get_layer("bn1").beta.numpy()))]
        np.testing.assert_array_equal(pruned.get_layer(f"conv{i}").kernel.numpy(), expected)


def test_group_scores_combine_producers_each_divided_by_its_mean():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(6, 1, name="conv_a")(inp))
    b = L.BatchNormalization(name="bn_b")(L.Conv2D(6, 3, padding="same", name="conv_b")(inp))
    x = L.ReLU(name="relu")(L.Add(name="add")([a, b]))
    model = keras.Model(inp, L.Dense(3, name="fc")(L.GlobalAveragePooling2D(name="gap")(L.Conv2D(4, 1, name="conv_c")(x))))
    tied = next(g for g in channel_groups(model) if "conv_a" in g.producers)
    assert sorted(tied.producers) == ["conv_a", "conv_b"] and tied.residual
    norms = {n: np.linalg.norm(model.get_layer(n).kernel.numpy().reshape(-1, 6).astype(np.float64), axis=0) for n in tied.producers}
    np.testing.assert_allclose(group_scores(model, [tied], "l2")[tied.name], sum(v / v.mean() for v in norms.values()), rtol=1e-12)
    assert [saliency.channel_output_layer(model, n) for n in ("conv_a", "conv_b")] == ["bn_a", "bn_b"]  # before the Add
    kept = plan(model, StructuredConfig(ratio=0.5, scope="all", criterion="l2", min_channels=1))[tied.name]
    assert kept.tolist() == sorted(np.argsort(-group_scores(model, [tied], "l2")[tied.name], kind="stable")[:3].tolist())


def test_data_criteria_refuse_without_data_and_unknown_criteria_are_listed():
    model = two_conv_model()
    with pytest.raises(ValueError, match=r"criterion 'apoz' needs data: call prune_filters\(model, config, data=...\)") as err:
        prune_filters(model, StructuredConfig(criterion="apoz"))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="criterion 'taylor' needs data.* and labels"):
        prune_filters(model, StructuredConfig(criterion="taylor"))
    with pytest.raises(ValueError, match="criterion must be one of activation, apoz, fpgm, l1, l2, obd_fisher, obd_hutchinson, taylor, variance; got 'snip'"):
        StructuredConfig(criterion="snip")
    config = StructuredConfig(criterion="obd_fisher", saliency={"batches": 2, "fisher": "batch"})
    assert config.saliency == saliency.SaliencyOptions(batches=2, fisher="batch")
    assert StructuredConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="saliency.fisher must be one of sample, batch"):
        StructuredConfig.from_dict({"criterion": "obd_fisher", "saliency": {"fisher": "exact"}})
