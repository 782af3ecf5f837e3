"""Saliency criteria against NumPy computations of the same quantities: a hand-built conv -> BN -> ReLU -> GAP
-> Dense model whose forward pass and gradients are written out in NumPy, and a softmax regression whose
cross-entropy Hessian is analytic (OBD with the empirical Fisher and with Hutchinson's estimator)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras, tf
from edgeopt.compress import saliency as S
from edgeopt.compress.masks import prune_by_score

L = keras.layers
OPTIONS = S.SaliencyOptions(batches=10, hutchinson_samples=3, seed=5)


def conv_model() -> keras.Model:
    """6x6x2 -> conv 3x3 (4 filters, valid) -> BN -> ReLU -> GAP -> Dense(3) logits, BN statistics non-trivial."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, L.Dense(3, name="fc")(x))
    rng = np.random.default_rng(1)
    model.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.3, 4), rng.normal(0, 0.2, 4), rng.uniform(0.5, 2.0, 4)])
    model.get_layer("conv").set_weights([rng.normal(0, 0.4, (3, 3, 2, 4)).astype("float32"), rng.normal(0, 0.1, 4).astype("float32")])
    return model


def conv_data(n: int = 20):
    rng = np.random.default_rng(2)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), rng.integers(0, 3, n)


def numpy_forward(model, x, y):
    """Every intermediate of conv_model in NumPy (float64) and the gradients of each image's own loss."""
    K, b = (w.astype(np.float64) for w in model.get_layer("conv").get_weights())
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    eps = model.get_layer("bn").epsilon
    W, bW = (w.astype(np.float64) for w in model.get_layer("fc").get_weights())
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (3, 3), axis=(1, 2))  # (n, 4, 4, cin, 3, 3)
    z = np.einsum("nijkab,abkc->nijc", windows, K) + b
    scale = gamma / np.sqrt(var + eps)
    pre = (z - mean) * scale + beta
    a = np.maximum(pre, 0)
    logits = a.mean(axis=(1, 2)) @ W + bW
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    err = p - np.eye(3)[y]  # d loss_n / d logits
    da = np.broadcast_to((err @ W.T)[:, None, None, :] / 16, a.shape)  # d loss_n / d a (GAP over 4x4)
    dz = da * (pre > 0) * scale
    dK = np.einsum("nijkab,nijc->nabkc", windows, dz)  # per image, (n, 3, 3, cin, cout)
    dW = np.einsum("nc,nd->ncd", a.mean(axis=(1, 2)), err)
    return a, da, dK, dW


def test_channel_output_is_after_the_batch_norm_and_activation():
    model = conv_model()
    assert S.channel_output_layer(model, "conv") == "relu"
    assert S.channel_output_layer(model, "fc") == "fc"  # nothing follows the classifier
    inp = keras.Input((4, 4, 3))
    c = L.Conv2D(4, 1, name="c")(inp)
    bn = L.BatchNormalization(name="bn")(c)
    two = keras.Model(inp, [L.Add(name="add")([bn, bn]), L.ReLU(name="r")(bn)])
    assert S.channel_output_layer(two, "c") == "bn"  # the BN output has two readers: stop there


def test_magnitude_and_fpgm_without_data():
    model = conv_model()
    K = model.get_layer("conv").kernel.numpy()
    np.testing.assert_array_equal(S.weight_scores(model, "l1", ["conv"])["conv"], np.abs(K))
    np.testing.assert_array_equal(S.weight_scores(model, "l2", ["conv"])["conv"], K**2)
    filters = K.reshape(-1, 4).T.astype(np.float64)  # (filters, 18)
    np.testing.assert_allclose(S.filter_scores(model, "l1", ["conv"])["conv"], np.abs(filters).sum(1), rtol=1e-6)
    np.testing.assert_allclose(S.filter_scores(model, "l2", ["conv"])["conv"], np.sqrt((filters**2).sum(1)), rtol=1e-12)
    fpgm = S.filter_scores(model, "fpgm", ["conv"])["conv"]
    gm = S.geometric_median(filters)
    # the geometric median: the (sub)gradient of the summed distances vanishes there
    units = (gm - filters) / np.linalg.norm(gm - filters, axis=1, keepdims=True)
    assert np.linalg.norm(units.sum(0)) < 1e-6
    np.testing.assert_allclose(fpgm, np.linalg.norm(filters - gm, axis=1), rtol=1e-12)


def test_geometric_median_known_cases():
    np.testing.assert_allclose(S.geometric_median(np.array([[0.0], [1.0], [10.0]])), [1.0], atol=1e-9)  # the middle point itself
    triangle = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, np.sqrt(3.0)]])
    np.testing.assert_allclose(S.geometric_median(triangle), triangle.mean(0), atol=1e-8)  # Fermat point = centroid


def test_activation_statistics_against_numpy():
    model = conv_model()
    x, y = conv_data()
    a, _, _, _ = numpy_forward(model, x, y)
    flat = a.reshape(-1, 4)
    assert 0 < (flat == 0).mean() < 1  # some zeros: APoZ is not trivially 0 or 1
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # three uneven batches (8, 8, 4)
    np.testing.assert_allclose(S.filter_scores(model, "activation", ["conv"], data, OPTIONS)["conv"], np.abs(flat).mean(0), rtol=1e-5)
    np.testing.assert_allclose(S.filter_scores(model, "apoz", ["conv"], data, OPTIONS)["conv"], (flat != 0).mean(0), atol=1e-12)
    np.testing.assert_allclose(S.filter_scores(model, "variance", ["conv"], x, OPTIONS)["conv"], flat.var(0), rtol=1e-4)


def test_wanda_is_magnitude_times_the_input_channel_norm():
    model = conv_model()
    x, y = conv_data()
    a, _, _, _ = numpy_forward(model, x, y)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    got = S.weight_scores(model, "wanda", ["conv", "fc"], data, OPTIONS)
    image_norms = np.sqrt(np.square(x.astype(np.float64)).sum(axis=(0, 1, 2)))  # per input channel, over images and positions
    K = model.get_layer("conv").get_weights()[0].astype(np.float64)
    np.testing.assert_allclose(got["conv"], np.abs(K) * image_norms[None, None, :, None], rtol=1e-5)
    pooled_norms = np.sqrt(np.square(a.mean(axis=(1, 2))).sum(0))  # fc reads the pooled channels
    W = model.get_layer("fc").get_weights()[0].astype(np.float64)
    np.testing.assert_allclose(got["fc"], np.abs(W) * pooled_norms[:, None], rtol=1e-5)
    assert not np.allclose(got["conv"] / np.abs(K), got["conv"][0, 0, 0, 0] / abs(K[0, 0, 0, 0]))  # the norms differ by channel


def test_wanda_scales_a_depthwise_kernel_by_its_own_channel():
    keras.utils.set_random_seed(3)
    inp = keras.Input((5, 5, 3))
    model = keras.Model(inp, L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inp))
    x = np.random.default_rng(4).normal(size=(6, 5, 5, 3)).astype("float32") * np.array([0.1, 1.0, 10.0], "float32")
    got = S.weight_scores(model, "wanda", ["dw"], x, OPTIONS)["dw"]
    norms = np.sqrt(np.square(x.astype(np.float64)).sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(got, np.abs(model.get_layer("dw").get_weights()[0]) * norms[None, None, :, None], rtol=1e-5)


def test_taylor_per_channel_and_per_weight_against_analytic_gradients():
    model = conv_model()
    x, y = conv_data()
    a, da, dK, dW = numpy_forward(model, x, y)
    expected = np.abs((a * da).mean(axis=(1, 2))).mean(0)  # per image |mean over positions|, averaged over images
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    np.testing.assert_allclose(S.filter_scores(model, "taylor", ["conv"], data, OPTIONS)["conv"], expected, rtol=1e-4)
    scores = S.weight_scores(model, "taylor", ["conv", "fc"], data, OPTIONS)
    batches = [slice(0, 8), slice(8, 16), slice(16, 20)]
    K, W = model.get_layer("conv").kernel.numpy(), model.get_layer("fc").kernel.numpy()
    np.testing.assert_allclose(scores["conv"], np.mean([np.abs(K * dK[s].mean(0)) for s in batches], axis=0), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(scores["fc"], np.mean([np.abs(W * dW[s].mean(0)) for s in batches], axis=0), rtol=1e-4, atol=1e-9)
    l2 = S.normalize({"conv": expected}, "l2")["conv"]  # Molchanov's per-layer normalization
    assert np.linalg.norm(l2) == pytest.approx(1.0)


def softmax_regression():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    model = keras.Model(inp, L.Dense(3, name="fc")(inp))
    rng = np.random.default_rng(3)
    model.get_layer("fc").set_weights([rng.normal(0, 0.5, (5, 3)).astype("float32"), rng.normal(0, 0.1, 3).astype("float32")])
    x = rng.normal(size=(24, 5)).astype("float32")
    return model, x, rng.integers(0, 3, 24)


def _probs(model, x):
    W, b = (w.astype(np.float64) for w in model.get_layer("fc").get_weights())
    logits = x.astype(np.float64) @ W + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def test_obd_fisher_per_image_and_per_batch():
    model, x, y = softmax_regression()
    W = model.get_layer("fc").kernel.numpy().astype(np.float64)
    g = np.einsum("ni,nc->nic", x, _probs(model, x) - np.eye(3)[y])  # per-image gradient of the loss wrt W
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    per_image = S.weight_scores(model, "obd_fisher", ["fc"], data, OPTIONS)["fc"]
    np.testing.assert_allclose(per_image, (g**2).mean(0) * W**2 / 2, rtol=1e-4)
    for chunk in (1, 3, 8):  # images per vectorized Jacobian: memory only, the same Fisher
        chunked = S.weight_scores(model, "obd_fisher", ["fc"], data, S.SaliencyOptions(batches=10, fisher_chunk=chunk))["fc"]
        np.testing.assert_allclose(chunked, per_image, rtol=1e-6)
    batch = S.weight_scores(model, "obd_fisher", ["fc"], data, S.SaliencyOptions(batches=10, fisher="batch"))["fc"]
    np.testing.assert_allclose(batch, np.mean([g[i : i + 8].mean(0) ** 2 for i in (0, 8, 16)], axis=0) * W**2 / 2, rtol=1e-4)
    np.testing.assert_allclose(S.filter_scores(model, "obd_fisher", ["fc"], data, OPTIONS)["fc"], per_image.sum(0), rtol=1e-6)


def test_obd_hutchinson_with_the_analytic_hessian():
    model, x, y = softmax_regression()
    W = model.get_layer("fc").kernel.numpy().astype(np.float64)
    p = _probs(model, x)
    # Hessian of one image's cross-entropy over W (flattened row-major, index i*3 + c): x x^T (kron) (diag p - p p^T)
    hess = np.stack([np.kron(np.outer(xn, xn), np.diag(pn) - np.outer(pn, pn)) for xn, pn in zip(x.astype(np.float64), p)])
    v = np.random.default_rng(9).normal(size=(2, 5, 3)).astype("float32")
    hv = S.hessian_vector_products(model, ["fc"], x[:8], y[:8], [v])[0]
    np.testing.assert_allclose(hv.reshape(2, -1), (hess[:8].mean(0) @ v.reshape(2, -1).T).T, rtol=1e-4, atol=1e-6)
    rng = np.random.default_rng(OPTIONS.seed)  # the draws the module docstring describes: per batch, per sample
    estimate = np.zeros(15)
    for start in (0, 8, 16):
        for _ in range(OPTIONS.hutchinson_samples):
            z = (rng.integers(0, 2, (5, 3)) * 2 - 1).ravel()
            estimate += z * (hess[start : start + 8].mean(0) @ z)
    estimate /= 3 * OPTIONS.hutchinson_samples
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    got = S.weight_scores(model, "obd_hutchinson", ["fc"], data, OPTIONS)["fc"]
    np.testing.assert_allclose(got, estimate.reshape(5, 3) * W**2 / 2, rtol=1e-4, atol=1e-8)
    assert not np.allclose(estimate, np.diagonal(hess.mean(0)))  # an estimate: off-diagonal terms leak in


def test_registry_declares_data_and_labels():
    assert S.weight_criteria() == ["l1", "l2", "obd_fisher", "obd_hutchinson", "taylor", "wanda"]
    assert S.filter_criteria() == ["activation", "apoz", "fpgm", "l1", "l2", "obd_fisher", "obd_hutchinson", "taylor", "variance"]
    needs = {n: S.criterion_needs(n) for n in S.CRITERIA}
    assert [n for n, (d, _) in needs.items() if not d] == ["fpgm", "l1", "l2"]
    assert [n for n, (_, lab) in needs.items() if lab] == ["obd_fisher", "obd_hutchinson", "taylor"]


def test_missing_data_labels_and_wrong_kind_are_refused():
    model = conv_model()
    x, _ = conv_data()
    with pytest.raises(ValueError, match="criterion 'apoz' needs data"):
        S.filter_scores(model, "apoz", ["conv"])
    with pytest.raises(ValueError, match="criterion 'taylor' needs labels"):
        S.weight_scores(model, "taylor", ["conv"], x)
    with pytest.raises(ValueError, match="'fpgm' does not score single weights; weight criteria: l1, l2, obd_fisher"):
        S.weight_scores(model, "fpgm", ["conv"])
    with pytest.raises(ValueError, match="'gap' .* is not a filter producer"):
        S.filter_scores(model, "l1", ["gap"])
    with pytest.raises(ValueError, match="criterion 'snip' does not score filters; filter criteria: activation, apoz, fpgm"):
        S.filter_scores(model, "snip", ["conv"])
    with pytest.raises(ValueError, match="fisher must be one of sample, batch"):
        S.SaliencyOptions(fisher="exact")
    with pytest.raises(ValueError, match="fisher_chunk must be >= 1"):
        S.SaliencyOptions(fisher_chunk=0)


def test_normalize_over_alive_weights_makes_layers_comparable():
    scores = {"a": np.array([1.0, 2.0, 3.0, 100.0]), "b": np.array([10.0, 20.0, 30.0, 40.0])}
    masks = {"a": np.array([1.0, 1.0, 1.0, 0.0]), "b": np.ones(4)}
    mean = S.normalize(scores, "mean", masks)
    np.testing.assert_allclose(mean["a"][:3], [0.5, 1.0, 1.5])  # 100 is dead: not in the mean
    np.testing.assert_allclose(mean["b"], [0.4, 0.8, 1.2, 1.6])
    l2 = S.normalize(scores, "l2", masks)
    np.testing.assert_allclose(l2["a"][:3], np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0))
    assert S.normalize(scores, "none")["b"].tolist() == [10.0, 20.0, 30.0, 40.0]
    glob = prune_by_score(mean, masks, 0.5, "global")  # of the 7 alive, round(3.5) = 4 lowest normalized go
    assert glob["a"].tolist() == [0, 0, 1, 0] and glob["b"].tolist() == [0, 0, 1, 1]
    raw = prune_by_score(scores, masks, 0.5, "global")  # unnormalized, the small-valued layer would be emptied
    assert raw["a"].tolist() == [0, 0, 0, 0]
