"""The supernet: mixed op = chosen op under one-hot mixing, argmax derivation, sub-networks with its weights, state."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras, tf
from edgeopt.search.nas_space import SKIP, Architecture, tiny_space
from edgeopt.search.supernet import Supernet
from conftest import agreement, run_int8, to_int8

OPS = ("ir_k3_e3", "ir_k5_e6", "ir_k3_e3_se0.25", SKIP)
SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def supernet():
    """A tiny supernet with random architecture parameters and batch-norm statistics that are not the initial 0/1."""
    keras.utils.set_random_seed(0)
    net = Supernet(tiny_space(OPS), SHAPE, 10, seed=0)
    rng = np.random.default_rng(0)
    for a in net.alphas:
        a.assign(rng.normal(size=a.shape).astype(np.float32))
    for v in net.batch_norm_statistics:  # moving means around 0, variances around 1, all different
        v.assign(rng.uniform(0.5, 1.5, size=v.shape).astype(np.float32) - (0.0 if "variance" in v.name else 1.0))
    return net


@pytest.fixture(scope="module")
def images(digits_arrays):
    return digits_arrays["val"][0][:16]


def test_mixed_op_with_one_hot_weights_is_the_chosen_op(supernet, images):
    x = supernet.stem(images, training=False)
    for index, block in enumerate(supernet.blocks):
        for j, op in enumerate(block.ops):
            mixed = supernet.mixed_op(index, x, tf.one_hot(j, len(block.ops)), training=False).numpy()
            alone = x.numpy() if op == SKIP else supernet.candidates[index][j](x, training=False).numpy()
            np.testing.assert_array_equal(mixed, alone)
        x = supernet.candidates[index][0](x, training=False)


def test_mixed_op_is_the_softmax_weighted_sum(supernet, images):
    x = supernet.stem(images, training=False)
    probs = supernet.probabilities(tau=0.5)[0].numpy()
    expected = sum(p * (x.numpy() if op == SKIP else m(x, training=False).numpy()) for p, op, m in zip(probs, supernet.blocks[0].ops, supernet.candidates[0]))
    np.testing.assert_allclose(supernet.mixed_op(0, x, probs, training=False).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(probs, np.exp(supernet.alphas[0].numpy() / 0.5) / np.exp(supernet.alphas[0].numpy() / 0.5).sum(), rtol=1e-5)


def test_derived_network_has_the_argmax_ops_and_the_supernets_outputs(supernet, images):
    arch = supernet.derive()
    expected = tuple(b.ops[int(np.argmax(a.numpy()))] for b, a in zip(supernet.blocks, supernet.alphas))
    assert arch.choices == expected
    for arch in (arch, Architecture((SKIP, "ir_k5_e6")), Architecture(("ir_k3_e3_se0.25", "ir_k3_e3"))):
        model = supernet.subnet(arch, classifier_activation=None)
        names = [layer.name for layer in model.layers]
        for block, op in zip(supernet.blocks, arch.choices):
            if op == SKIP:
                assert not any(n.startswith(block.name) for n in names)
            else:
                assert model.get_layer(f"{block.name}_dwconv").kernel_size == (int(op[4]), int(op[4]))
                assert (f"{block.name}_se_reduce" in names) == op.endswith("se0.25")
        np.testing.assert_allclose(model(images, training=False).numpy(), supernet(images, supernet.one_hot(arch)).numpy(), atol=1e-5)


def test_derived_network_exports_to_int8(supernet, digits_arrays):
    model = supernet.subnet(supernet.derive())
    x = digits_arrays["val"][0][:64]
    got = run_int8(to_int8(model, digits_arrays["train"][0][:64]), x)
    assert agreement(got, model(x, training=False).numpy()) >= 0.9


def test_gumbel_samples(supernet):
    soft = supernet.mixing_weights("gumbel", tau=1.0)
    assert all(abs(float(tf.reduce_sum(w)) - 1) < 1e-6 for w in soft)
    with tf.GradientTape() as tape:
        hard = supernet.mixing_weights("gumbel", tau=1.0, hard=True)
        target = tf.add_n([tf.reduce_sum(w * tf.range(w.shape[0], dtype=w.dtype)) for w in hard])
    for w in hard:  # one-hot values forward ...
        assert sorted(w.numpy().tolist())[-1] == 1.0 and np.count_nonzero(w.numpy()) == 1
    grads = tape.gradient(target, supernet.alphas)  # ... and the soft sample's gradient backward (straight-through)
    assert all(np.any(g.numpy() != 0) for g in grads)
    with pytest.raises(ValueError, match="mixing must be one of softmax, gumbel"):
        supernet.mixing_weights("sigmoid")


def test_variables_are_split_into_weights_and_architecture(supernet):
    weights = {v.ref() for v in supernet.weight_variables}
    arch = {v.ref() for v in supernet.arch_variables}
    assert not weights & arch and len(arch) == len(supernet.blocks)
    parts = supernet.parts()
    assert len(weights) == sum(len(m.trainable_variables) for _, m in parts)
    assert [k for k, _ in parts] == ["stem", "block1a/ir_k3_e3", "block1a/ir_k5_e6", "block1a/ir_k3_e3_se0.25", "block2a/ir_k3_e3",
                                     "block2a/ir_k5_e6", "block2a/ir_k3_e3_se0.25", "head"]


def test_state_round_trip_is_exact(supernet):
    state = supernet.state()
    other = Supernet(supernet.space, SHAPE, 10, seed=1)
    assert not np.array_equal(other.state()["w/stem/0"], state["w/stem/0"])
    other.load_state(state)
    for key, value in other.state().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    with pytest.raises(ValueError, match="the saved state has no w/stem/0"):
        other.load_state({k: v for k, v in state.items() if k != "w/stem/0"})


def test_single_path_is_the_one_hot_mixture_and_uses_only_its_weights(supernet, images):
    for arch in (Architecture((SKIP, "ir_k5_e6")), Architecture(("ir_k3_e3_se0.25", "ir_k3_e3"))):
        np.testing.assert_allclose(supernet.path(images, arch).numpy(), supernet(images, supernet.one_hot(arch)).numpy(), atol=1e-5)
        chosen = [supernet.stem] + [m for m in supernet.path_parts(arch) if m is not None] + [supernet.head]
        assert [v.ref() for v in supernet.path_variables(arch)] == [v.ref() for m in chosen for v in m.trainable_variables]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(supernet.path(images, arch, training=False))
        grads = tape.gradient(loss, supernet.weight_variables)
        used = {v.ref() for v in supernet.path_variables(arch)}
        # exactly the path's weights get a gradient: every other candidate is not run
        assert {v.ref() for v, g in zip(supernet.weight_variables, grads) if g is not None} == used
    assert supernet.path_parts(Architecture((SKIP, "ir_k5_e6")))[0] is None


def _layer(net, block: int, op: str, suffix: str):
    b = net.blocks[block]
    return net.candidates[block][b.ops.index(op)].get_layer(f"{b.name}_{suffix}")


def test_tied_candidates_share_kernel_centres_and_first_channels():
    keras.utils.set_random_seed(1)
    net = Supernet(tiny_space(OPS), SHAPE, 10, seed=1)
    i = next(k for k, b in enumerate(net.blocks) if "ir_k5_e6" in b.ops)
    small = _layer(net, i, "ir_k3_e3", "dwconv").depthwise_kernel.numpy()  # (3, 3, C*3, 1)
    assert not np.allclose(small, _layer(net, i, "ir_k5_e6", "dwconv").depthwise_kernel.numpy()[1:4, 1:4, : small.shape[2]])
    net.tie_candidates()  # the largest candidate (k3 e3 with squeeze-excite has fewer weights than k5 e6) is the source
    big_dw = _layer(net, i, "ir_k5_e6", "dwconv").depthwise_kernel.numpy()  # (5, 5, C*6, 1)
    for op in ("ir_k3_e3", "ir_k3_e3_se0.25"):
        dw = _layer(net, i, op, "dwconv").depthwise_kernel.numpy()
        np.testing.assert_array_equal(dw, big_dw[1:4, 1:4, : dw.shape[2]])
        expand = _layer(net, i, op, "expand_conv").kernel.numpy()
        np.testing.assert_array_equal(expand, _layer(net, i, "ir_k5_e6", "expand_conv").kernel.numpy()[..., : expand.shape[3]])
        project = _layer(net, i, op, "project_conv").kernel.numpy()
        np.testing.assert_array_equal(project, _layer(net, i, "ir_k5_e6", "project_conv").kernel.numpy()[:, :, : project.shape[2]])
        gamma = _layer(net, i, op, "dwconv_bn").gamma.numpy()
        np.testing.assert_array_equal(gamma, _layer(net, i, "ir_k5_e6", "dwconv_bn").gamma.numpy()[: gamma.shape[0]])


def test_sharing_from_a_small_candidate_writes_only_the_overlap():
    keras.utils.set_random_seed(2)
    net = Supernet(tiny_space(OPS), SHAPE, 10, seed=2)
    i = next(k for k, b in enumerate(net.blocks) if "ir_k5_e6" in b.ops)
    small, big = _layer(net, i, "ir_k3_e3", "dwconv").depthwise_kernel, _layer(net, i, "ir_k5_e6", "dwconv").depthwise_kernel
    se_before = _layer(net, i, "ir_k3_e3_se0.25", "se_reduce").kernel.numpy()
    before = big.numpy()
    small.assign(np.full(small.shape, 7.0, np.float32))
    net.share_weights_from(i, "ir_k3_e3")
    after = big.numpy()
    c = small.shape[2]
    assert np.all(after[1:4, 1:4, :c] == 7.0)
    mask = np.ones(after.shape, bool)
    mask[1:4, 1:4, :c] = False
    np.testing.assert_array_equal(after[mask], before[mask])  # the ring and the extra channels keep their own values
    np.testing.assert_array_equal(_layer(net, i, "ir_k3_e3_se0.25", "se_reduce").kernel.numpy(), se_before)  # a layer the source lacks
    np.testing.assert_array_equal(_layer(net, i, "ir_k3_e3_se0.25", "dwconv").depthwise_kernel.numpy(), small.numpy())
