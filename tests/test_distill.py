"""Distiller and deep mutual learning: loss formulas against NumPy, frozen teacher, wrappers, saving."""
from __future__ import annotations

import numpy as np
import pytest

import edgeopt  # noqa: F401  (selects tf_keras before TF-MOT is imported)
from edgeopt._keras import keras, tf
from edgeopt.compress.distill import DistillConfig, Distiller, LogitsView, output_kind

TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
ALPHAS = (0.0, 0.1, 0.5, 1.0)


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_distill_loss(y, s_logits, t_logits, alpha, t):
    """Hinton et al.: alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean."""
    ce = -_np_log_softmax(s_logits.astype(np.float64))[np.arange(len(y)), y].mean()
    lp_t = _np_log_softmax(t_logits.astype(np.float64) / t)
    lp_s = _np_log_softmax(s_logits.astype(np.float64) / t)
    kl = (np.exp(lp_t) * (lp_t - lp_s)).sum(axis=-1).mean()
    return alpha * ce + (1 - alpha) * t * t * kl, ce, t * t * kl


def _mlp(seed: int, classes: int = 10, softmax: bool = False, shape=(8, 8, 3), hidden: int = 16, name=None):
    init = keras.initializers.GlorotUniform(seed=seed)
    inp = keras.Input(shape)
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init, name="hidden")(x)
    x = keras.layers.Dense(classes, kernel_initializer=init, name="classifier")(x)
    if softmax:
        x = keras.layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inp, x, name=name or f"mlp{seed}")


def _convnet(seed: int, softmax: bool = True, shape=(16, 16, 3), name=None):
    """A small conv net with BatchNorm, ending like the zoo models (Dense "classifier" + softmax "predictions")."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inp = keras.Input(shape)
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False, kernel_initializer=init, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    x = keras.layers.Conv2D(16, 3, use_bias=False, kernel_initializer=init, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="conv2_bn")(x)
    x = keras.layers.ReLU(name="conv2_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(10, kernel_initializer=init, name="classifier")(x)
    if softmax:
        x = keras.layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inp, x, name=name or f"convnet{seed}")


def _twin_with_softmax(model):
    """The same network and weights, ending in a separate softmax Activation."""
    twin = keras.Model(model.inputs, keras.layers.Activation("softmax", name="predictions")(model.outputs[0]))
    return twin


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    return rng.normal(size=(32, 8, 8, 3)).astype(np.float32), rng.integers(0, 10, 32)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_compute_losses_matches_numpy(alpha, temperature):
    rng = np.random.default_rng(int(alpha * 10 + temperature))
    y = rng.integers(0, 10, 16)
    s, t = (rng.normal(scale=3.0, size=(16, 10)).astype(np.float32) for _ in range(2))
    d = Distiller(_mlp(0), _mlp(1))
    d.compile(alpha=alpha, temperature=temperature)
    total, ce, kl = (float(v) for v in d.compute_losses(tf.constant(y), tf.constant(s), tf.constant(t)))
    want_total, want_ce, want_kl = np_distill_loss(y, s, t, alpha, temperature)
    np.testing.assert_allclose([total, ce, kl], [want_total, want_ce, want_kl], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("alpha,temperature", [(0.1, 2.0), (0.5, 4.0), (0.9, 1.0)])
def test_evaluate_reports_numpy_loss_parts(batch, alpha, temperature):
    x, y = batch
    student, teacher = _mlp(0), _mlp(1)
    d = Distiller(student, _twin_with_softmax(teacher))
    d.compile(alpha=alpha, temperature=temperature, metrics=["accuracy"])
    logs = d.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    want_total, want_ce, want_kl = np_distill_loss(y, student(x).numpy(), teacher(x).numpy(), alpha, temperature)
    np.testing.assert_allclose([logs["loss"], logs["student_loss"], logs["distillation_loss"]], [want_total, want_ce, want_kl], rtol=1e-4)
    want_acc = float((student(x).numpy().argmax(-1) == y).mean())
    assert logs["accuracy"] == pytest.approx(want_acc)


def test_softmax_and_logits_models_give_the_same_loss(batch):
    """A softmax-ending model and its logits twin (same weights) must give identical losses: no double softmax."""
    x, y = batch
    s, t = _mlp(0), _mlp(1)
    s_soft, t_soft = _twin_with_softmax(s), _twin_with_softmax(t)
    assert (output_kind(s), output_kind(s_soft)) == ("logits", "probabilities")
    losses = []
    for student, teacher in [(s, t), (s_soft, t_soft), (s, t_soft), (s_soft, t)]:
        d = Distiller(student, teacher)
        d.compile(alpha=0.3, temperature=3.0)
        losses.append(d.evaluate(x, y, verbose=0, return_dict=True))
    for logs in losses[1:]:
        for key in ("loss", "student_loss", "distillation_loss"):
            assert logs[key] == pytest.approx(losses[0][key], rel=1e-5)
    assert Distiller(s_soft, t_soft).student_logits_from == "softmax_input"


def test_fused_softmax_falls_back_to_log_probabilities(batch):
    x, _ = batch
    inp = keras.Input((8, 8, 3))
    fused = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inp)))
    view = LogitsView(fused)
    assert (view.kind, view.logits_from) == ("probabilities", "log_probabilities")
    logits, probs = view(x)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probs.numpy(), atol=1e-6)
    forced = LogitsView(fused, kind="logits")
    assert forced.kind == "logits"
    with pytest.raises(ValueError, match="student_output must be one of"):
        Distiller(fused, fused, student_output="softmax")


def test_zoo_models_are_detected():
    soft = edgeopt.create("mobilenet_v1_tiny", input_shape=(16, 16, 3), classes=10)
    logits = edgeopt.create("mobilenet_v1_tiny", input_shape=(16, 16, 3), classes=10, classifier_activation=None)
    d = Distiller(logits, soft)
    assert (d.student_logits_from, d.teacher_logits_from) == ("outputs", "softmax_input")


def test_mismatched_pair_raises_clear_error():
    with pytest.raises(ValueError, match=r"outputs shape \(5,\).*student .* outputs \(10,\)"):
        Distiller(_mlp(0, classes=10), _mlp(1, classes=5))
    with pytest.raises(ValueError, match="takes inputs"):
        Distiller(_mlp(0, shape=(8, 8, 3)), _mlp(1, shape=(4, 4, 3)))


def test_student_loss_fn_must_take_logits():
    d = Distiller(_mlp(0), _mlp(1))
    with pytest.raises(ValueError, match="from_logits=True"):
        d.compile(student_loss_fn=keras.losses.SparseCategoricalCrossentropy())


def test_config_validates_and_round_trips():
    cfg = DistillConfig(alpha=0.5, temperature=2.0)
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="alpha must be in"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DistillConfig(temperature=0)


def test_get_config_round_trip(batch):
    x, _ = batch
    d = Distiller(_mlp(0), _twin_with_softmax(_mlp(1)), student_output="logits")
    d.compile(alpha=0.2, temperature=3.0)
    clone = Distiller.from_config(d.get_config())
    assert clone.student_output == "logits" and clone.teacher_logits_from == "softmax_input"
    assert clone.distill_config == DistillConfig(alpha=0.2, temperature=3.0)
    assert clone.student.output_shape == d.student.output_shape


def _digits(arrays: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digits training images (16x16x3) and labels from the session's ``digits_arrays``."""
    x, y = arrays["train"]
    return x[:n], y[:n]


def test_teacher_frozen_and_student_learns_real_data(tmp_path, digits_arrays):
    x, y = _digits(digits_arrays, 512)
    teacher = _convnet(1)  # has BatchNorm, whose moving statistics must not move either
    student = _mlp(0, shape=(16, 16, 3), hidden=64)  # no BatchNorm, so inference accuracy follows training quickly
    t_before = [w.copy() for w in teacher.get_weights()]
    s_before = [w.copy() for w in student.get_weights()]
    d = Distiller(student, teacher)
    d.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"], alpha=0.9, temperature=2.0)
    hist = d.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(hist.history)
    for a, b in zip(t_before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(s_before, student.get_weights()))
    assert hist.history["student_loss"][-1] < hist.history["student_loss"][0]
    train_acc = float((student(x, training=False).numpy().argmax(-1) == y).mean())
    assert train_acc > 0.3  # chance is 0.1

    path = tmp_path / "student.keras"
    d.save_student(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(x[:16]).numpy(), student(x[:16], training=False).numpy(), rtol=1e-6, atol=1e-6)


def test_precomputed_teacher_logits_equal_live_teacher(batch):
    x, y = batch
    teacher = _twin_with_softmax(_mlp(1))
    d = Distiller(_mlp(0), teacher)
    d.compile(alpha=0.5, temperature=2.0)
    live = d.evaluate(x, y, verbose=0, return_dict=True)
    t_logits = d.teacher_logits(x).numpy()
    cached = d.evaluate(x, {"labels": y, "teacher_logits": t_logits}, verbose=0, return_dict=True)
    assert cached["loss"] == pytest.approx(live["loss"], rel=1e-6)


def test_distillation_guides_pruning_to_target_sparsity(digits_arrays):
    import tensorflow_model_optimization as tfmot

    x, y = _digits(digits_arrays, 256)
    teacher, base = _convnet(1), _convnet(2)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=12, frequency=2)
    student = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    d = Distiller(student, teacher)
    assert d.student_logits_from == "softmax_input"  # found through the PruneLowMagnitude wrapper
    d.compile(optimizer="adam", metrics=["accuracy"], alpha=0.5, temperature=2.0)
    d.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(student)
    kernels = [stripped.get_layer(name).kernel.numpy() for name in ("conv1", "conv2", "classifier")]
    sparsity = [float((k == 0).mean()) for k in kernels]
    assert min(sparsity) == pytest.approx(0.6, abs=0.02), sparsity


def test_qat_student_trains(digits_arrays):
    import tensorflow_model_optimization as tfmot

    x, y = _digits(digits_arrays, 64)
    teacher = _convnet(1)
    student = tfmot.quantization.keras.quantize_model(_convnet(2))
    before = student.get_layer("quant_classifier").get_weights()[0].copy()
    d = Distiller(student, teacher)
    assert d.student_logits_from == "softmax_input"
    d.compile(optimizer="adam", alpha=0.5, temperature=2.0)
    hist = d.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert not np.array_equal(before, student.get_layer("quant_classifier").get_weights()[0])
