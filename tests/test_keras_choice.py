import os

import pytest

from edgeopt._keras import keras, require_keras2_model, tf


def test_tf_keras_is_the_keras_of_tensorflow():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert keras.__name__.startswith("tf_keras")
    assert tf.keras.Model is keras.Model  # TF-MOT reaches Keras through tf.keras: same classes


def test_keras3_model_is_rejected_with_a_way_out():
    import keras as keras3

    inp = keras3.Input((4,))
    k3 = keras3.Model(inp, keras3.layers.Dense(2)(inp))
    with pytest.raises(TypeError, match="Keras 3.*tf_keras"):
        require_keras2_model(k3, "edgeopt.profile")
    from edgeopt.costs import profile

    with pytest.raises(TypeError, match="rebuild the model"):
        profile(k3)


def test_non_model_is_rejected():
    with pytest.raises(TypeError, match="needs a tf_keras.Model"):
        require_keras2_model(object())


def test_only_keras_module_imports_keras_directly():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1] / "edgeopt"
    pattern = re.compile(r"^\s*(import keras\b|from keras\b|import tf_keras|from tf_keras|from tensorflow import keras|import tensorflow\.keras)", re.M)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "_keras.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_grouped_convolutions_take_tensorflows_kernels_not_xla():
    """tf_keras compiles grouped convolutions with XLA (slow to train on CPU); on TF 2.21 with oneDNN (which edgeopt
    turns on) edgeopt routes them through TensorFlow's own kernels, with the same values and gradients as the XLA
    path."""
    import os

    import numpy as np

    from edgeopt import _keras

    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1" and _keras.onednn_enabled()
    assert _keras.grouped_convolution_path() == "native"
    layer = keras.layers.Conv2D(6, 3, strides=2, padding="same", groups=3, use_bias=False)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 9, 9, 6)), tf.float32)
    layer(x)

    def value_and_grads(conv):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = conv(x, tf.convert_to_tensor(layer.kernel))
            loss = tf.reduce_sum(tf.sin(y))
        return [y, *tape.gradient(loss, [x, layer.kernel])]

    ours = value_and_grads(lambda a, k: layer(a))
    xla = value_and_grads(lambda a, k: _keras._XLA_GROUPED_CONVOLUTION(layer, a, k))
    for a, b in zip(ours, xla):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    assert float(tf.reduce_max(tf.abs(ours[0]))) > 0.1  # a real convolution, not zeros


def test_without_onednn_grouped_convolutions_keep_xla_and_still_train():
    """A process whose TensorFlow runs without oneDNN has no CPU gradient for grouped convolutions: edgeopt leaves
    them on tf_keras' XLA path there, and a ShuffleNet still trains a step."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, edgeopt; from edgeopt import _keras, models; "
        "assert not _keras.onednn_enabled(); print(_keras.grouped_convolution_path()); "
        "m = models.create('shufflenet_v1_tiny', input_shape=(16, 16, 3), classes=4); "
        "m.compile(optimizer='sgd', loss='sparse_categorical_crossentropy'); "
        "print(np.isfinite(m.train_on_batch(np.ones((2, 16, 16, 3), 'float32'), np.array([0, 1]))))"
    )
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["xla", "True"]
