import numpy as np
import pytest

from edgeopt import models
from edgeopt.train import TrainConfig, evaluate

from conftest import TRAINING


def test_tiny_model_learns_digits_well_above_chance(trained_tiny, digits_splits):
    model = trained_tiny("mobilenet_v2_tiny")  # the suite's shared model: fit() for 15 epochs from its initial weights
    result = TRAINING["mobilenet_v2_tiny"]
    test = evaluate(model, digits_splits.test)
    assert test["samples"] == 359
    assert test["top1"] > 0.6, test  # chance is 0.1
    assert result.epochs == len(result.history["loss"]) == 15
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.val_top1 == result.history["val_accuracy"][-1] > 0.6


def test_train_config_validates():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")


def test_softmax_is_detected_through_a_qat_wrapper():
    from edgeopt.compress.quantize import QATConfig, quantize
    from edgeopt.train import ends_in_softmax, loss_for

    model = models.create("mobilenet_v1_tiny", input_shape=(16, 16, 3), classes=10)
    qat = quantize(model, QATConfig())
    assert ends_in_softmax(model) and ends_in_softmax(qat)
    assert loss_for(qat).get_config()["from_logits"] is False
    logits = models.create("mobilenet_v1_tiny", input_shape=(16, 16, 3), classes=10, classifier_activation=None)
    assert not ends_in_softmax(quantize(logits, QATConfig()))


def test_learning_rate_warms_up_linearly_then_decays_along_a_cosine():
    from edgeopt.train import learning_rate_schedule

    schedule = learning_rate_schedule(TrainConfig(learning_rate=0.01, warmup_fraction=0.1), steps=100)
    lr = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert lr[0] == 0.0 and abs(lr[1] - 0.005) < 1e-6 and abs(lr[2] - 0.01) < 1e-6  # 10 warm-up steps to the peak
    assert abs(lr[3] - 0.005) < 1e-6 and lr[4] < 1e-6  # half-way down the cosine at step 55, 0 at the end
    flat = learning_rate_schedule(TrainConfig(learning_rate=0.01, cosine=False, warmup_fraction=0.2), steps=50)
    assert abs(float(flat(5)) - 0.005) < 1e-6 and abs(float(flat(40)) - 0.01) < 1e-6
    assert learning_rate_schedule(TrainConfig(learning_rate=0.01, cosine=False), steps=50) == 0.01


def test_weight_decay_shrinks_kernels_but_not_batchnorm_or_biases():
    import numpy as np

    from edgeopt._keras import keras
    from edgeopt.train import make_optimizer

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, bias_initializer="ones")(keras.layers.BatchNormalization()(inputs))
    model = keras.Model(inputs, outputs)
    before = [w.copy() for w in model.get_weights()]
    optimizer = make_optimizer(TrainConfig(learning_rate=0.1, weight_decay=0.5, cosine=False), steps=10)
    variables = model.trainable_variables
    optimizer.apply_gradients(zip([np.zeros(v.shape, np.float32) for v in variables], variables))  # zero gradients: only the decay acts
    after = dict(zip([v.name for v in model.weights], model.get_weights()))
    names = [v.name for v in model.weights]
    kernel = names.index(next(n for n in names if n.endswith("kernel:0")))
    assert np.allclose(after[names[kernel]], before[kernel] * (1 - 0.1 * 0.5))  # decoupled decay: w * (1 - lr * wd)
    for n, w in zip(names, before):
        if n.endswith(("gamma:0", "beta:0", "bias:0")):
            assert np.array_equal(after[n], w), n


def test_train_config_names_bad_schedule_fields():


    with pytest.raises(ValueError, match="warmup_fraction"):
        TrainConfig(warmup_fraction=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        TrainConfig(weight_decay=-0.1)


def _numpy_adam(grads, lr, beta_1=0.9, beta_2=0.999, eps=1e-7, start=1.0):
    """PyTorch-style Adam on one scalar variable from ``start``: bias correction by the variable's own update count."""
    w, m, v = start, 0.0, 0.0
    for t, g in enumerate(grads, 1):
        m, v = beta_1 * m + (1 - beta_1) * g, beta_2 * v + (1 - beta_2) * g * g
        w -= lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (np.sqrt(v) + eps)
    return w


def test_per_variable_step_adam_corrects_each_variable_by_its_own_updates():
    """``a`` gets a gradient every step, ``b`` at steps 20 and 40 only: PerVariableStepAdam moves ``b`` as Adam moves a
    variable after 2 updates (Keras' Adam, bias-corrected by the global step, moves it about 0.7x as far here)."""
    from edgeopt._keras import tf
    from edgeopt.train import TrainConfig, make_optimizer

    config = TrainConfig(learning_rate=0.01, cosine=False, optimizer="adam")
    ends = {}
    for sparse in (True, False):
        a, b = tf.Variable(1.0), tf.Variable(1.0)
        opt = make_optimizer(config, 40, sparse_updates=sparse)
        opt.build([a, b])
        for step in range(1, 41):
            pairs = [(tf.constant(0.5), a)] + ([(tf.constant(2.0), b)] if step % 20 == 0 else [])
            opt.apply_gradients(pairs)
        ends[sparse] = (float(a.numpy()), float(b.numpy()))
    assert type(make_optimizer(config, 40, sparse_updates=True)).__name__ == "PerVariableStepAdam"
    assert ends[True][0] == pytest.approx(_numpy_adam([0.5] * 40, 0.01), abs=1e-5)  # every step: plain Adam (float32 sums)
    assert ends[True][1] == pytest.approx(_numpy_adam([2.0, 2.0], 0.01), abs=1e-5)  # 2 updates of lr each
    assert ends[False][0] == pytest.approx(ends[True][0], abs=1e-5)
    assert abs(ends[False][1] - ends[True][1]) > 0.005  # the global step's correction: half a learning rate off
