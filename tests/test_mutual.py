"""Deep mutual learning: loss against NumPy, stop-gradient on peers, training on real data, saving."""
from __future__ import annotations

import numpy as np
import pytest

import edgeopt  # noqa: F401  (selects tf_keras)
from edgeopt._keras import keras, tf
from edgeopt.compress.mutual import MutualLearner
from test_distill import _digits, _mlp, _np_log_softmax, _twin_with_softmax


def np_mutual_losses(y, logits, t, w):
    """Per student: CE(y, z_k) + w * T^2 / (K-1) * sum_{j!=k} KL(softmax(z_j/T) || softmax(z_k/T))."""
    out = []
    for k, z in enumerate(logits):
        ce = -_np_log_softmax(z.astype(np.float64))[np.arange(len(y)), y].mean()
        lp_k = _np_log_softmax(z.astype(np.float64) / t)
        kls = []
        for j, zj in enumerate(logits):
            if j != k:
                lp_j = _np_log_softmax(zj.astype(np.float64) / t)
                kls.append((np.exp(lp_j) * (lp_j - lp_k)).sum(-1).mean())
        kl = w * t * t * np.mean(kls)
        out.append((ce + kl, ce, kl))
    return out


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("temperature,weight", [(1.0, 1.0), (3.0, 0.5)])
def test_losses_match_numpy(count, temperature, weight):
    rng = np.random.default_rng(count)
    y = rng.integers(0, 10, 16)
    logits = [rng.normal(scale=2.0, size=(16, 10)).astype(np.float32) for _ in range(count)]
    learner = MutualLearner([_mlp(i) for i in range(count)])
    learner.compile(temperature=temperature, mimicry_weight=weight)
    total, parts = learner.compute_losses(tf.constant(y), [tf.constant(z) for z in logits])
    want = np_mutual_losses(y, logits, temperature, weight)
    np.testing.assert_allclose([[float(v) for v in p] for p in parts], want, rtol=2e-5, atol=1e-6)
    assert float(total) == pytest.approx(sum(w[0] for w in want), rel=2e-5)


def test_peers_are_fixed_targets():
    """d total / d z_k must equal d L_k / d z_k: the peers' KL terms do not push student k's logits."""
    rng = np.random.default_rng(0)
    y = tf.constant(rng.integers(0, 10, 8))
    logits = [tf.Variable(rng.normal(size=(8, 10)).astype(np.float32)) for _ in range(3)]
    learner = MutualLearner([_mlp(i) for i in range(3)])
    learner.compile(temperature=2.0)
    with tf.GradientTape(persistent=True) as tape:
        total, parts = learner.compute_losses(y, list(logits))
    for k, z in enumerate(logits):
        np.testing.assert_allclose(tape.gradient(total, z).numpy(), tape.gradient(parts[k][0], z).numpy(), atol=1e-7)


def test_rejects_bad_students():
    with pytest.raises(ValueError, match="at least 2"):
        MutualLearner([_mlp(0)])
    s = _mlp(0)
    with pytest.raises(ValueError, match="same model object"):
        MutualLearner([s, s])
    with pytest.raises(ValueError, match="outputs shape"):
        MutualLearner([_mlp(0), _mlp(1, classes=5)])
    with pytest.raises(ValueError, match="temperature"):
        MutualLearner([_mlp(0), _mlp(1)]).compile(temperature=0)


def test_students_learn_real_data_and_save(tmp_path, digits_arrays):
    x, y = _digits(digits_arrays, 512)
    a = _mlp(0, shape=(16, 16, 3), hidden=64, name="a")
    b = _twin_with_softmax(_mlp(1, shape=(16, 16, 3), hidden=32, name="b"))  # mixed logits / softmax students
    learner = MutualLearner([a, b])
    learner.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = learner.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert {"loss", "s0_ce", "s1_kl", "s1_accuracy", "ensemble_accuracy"} <= set(hist.history)
    for k, model in enumerate((a, b)):
        acc = float((model(x, training=False).numpy().argmax(-1) == y).mean())
        assert acc > 0.3, (k, acc)  # chance is 0.1
        assert hist.history[f"s{k}_ce"][-1] < hist.history[f"s{k}_ce"][0]
    logs = learner.evaluate(x, y, verbose=0, return_dict=True)
    want = np_mutual_losses(y, [a(x).numpy(), np.log(b(x).numpy())], 1.0, 1.0)
    assert logs["s1_kl"] == pytest.approx(want[1][2], rel=1e-3)
    learner.save_student(1, tmp_path / "b.keras")
    reloaded = keras.models.load_model(tmp_path / "b.keras")
    np.testing.assert_allclose(reloaded(x[:8]).numpy(), b(x[:8]).numpy(), rtol=1e-6, atol=1e-7)
    clone = MutualLearner.from_config(learner.get_config())
    assert len(clone.students) == 2 and clone.temperature == 1.0
