"""The one place that chooses the Keras module.

TF-MOT (tensorflow-model-optimization 0.8) only supports Keras 2, which TensorFlow >= 2.16 ships as the
separate ``tf_keras`` package. ``edgeopt._env`` sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported,
which makes ``tf.keras`` (and so TF-MOT) resolve to ``tf_keras`` too. Every other edgeopt module imports ``keras``
and ``tf`` from here, never ``keras`` or ``tensorflow.keras`` directly.
"""
from __future__ import annotations

import sys

from edgeopt import _env  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1 before TensorFlow is imported below)

if "tensorflow" in sys.modules and not getattr(sys.modules["tensorflow"].keras, "__name__", "").startswith(
    "tf_keras"
):  # pragma: no cover - depends on import order in the user's process
    import warnings

    warnings.warn(
        "TensorFlow was imported before edgeopt with TF_USE_LEGACY_KERAS unset, so tf.keras is Keras 3 in "
        "this process. Import edgeopt first (or set TF_USE_LEGACY_KERAS=1) so TF-MOT can work.",
        RuntimeWarning,
        stacklevel=2,
    )

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras.src.layers.convolutional.base_conv import Conv as _KerasConv  # noqa: E402

__all__ = ["ends_in_softmax", "grouped_convolution_path", "is_keras2_model", "is_softmax", "keras", "onednn_enabled", "output_layer", "require_keras2_model", "tf", "unwrap_layer"]


def is_keras2_model(obj) -> bool:
    """True when ``obj`` is a tf_keras (Keras 2) model."""
    return isinstance(obj, keras.Model)


def require_keras2_model(obj, where: str = "this function") -> None:
    """Raise a clear TypeError unless ``obj`` is a tf_keras (Keras 2) model.

    Keras 3 models look alike but TF-MOT and our builders cannot handle them; they are rejected
    here rather than failing half-way deep inside TF-MOT.
    """
    if is_keras2_model(obj):
        return
    module = type(obj).__module__
    if module.startswith("keras"):
        raise TypeError(
            f"{where} got a Keras 3 model ({type(obj).__module__}.{type(obj).__name__}). edgeopt and TF-MOT "
            "need Keras 2 (tf_keras): rebuild the model with `import tf_keras as keras` (or "
            "`from edgeopt._keras import keras`), or with edgeopt.models.create(...), then load its weights "
            "with model.load_weights(path)."
        )
    raise TypeError(f"{where} needs a tf_keras.Model, got {type(obj).__name__}.")


def unwrap_layer(layer):
    """The layer inside TF-MOT / Keras wrappers (PruneLowMagnitude, ClusterWeights, QuantizeWrapper, ...),
    else ``layer`` itself: the wrappers keep the original layer as ``.layer``."""
    while isinstance(getattr(layer, "layer", None), keras.layers.Layer):
        layer = layer.layer
    return layer


def output_layer(model) -> "keras.layers.Layer":
    """The layer that produces the model's (first) output; the last layer for models without a graph."""
    history = getattr(model.outputs[0], "_keras_history", None) if getattr(model, "outputs", None) else None
    return history.layer if history is not None else model.layers[-1]


def is_softmax(layer) -> bool:
    """True when ``layer`` (under any wrappers) is a Softmax layer or has a softmax activation."""
    layer = unwrap_layer(layer)
    if isinstance(layer, keras.layers.Softmax):
        return True
    act = getattr(layer, "activation", None)
    return act is not None and getattr(act, "__name__", "") == "softmax"


def ends_in_softmax(model) -> bool:
    """True when the model's output layer applies softmax (so its outputs are probabilities, not logits),
    also through TF-MOT wrappers (QAT wraps the classifier)."""
    return is_softmax(output_layer(model))


def keras3():
    """The Keras 3 package, imported on demand: only to read a Keras 3 file so that it can be rebuilt in tf_keras
    (``edgeopt.models.sources``). Nothing edgeopt builds or trains uses it."""
    import keras as keras3_package

    return keras3_package


# ---- grouped convolutions without XLA ----------------------------------------------------------------------------
# tf_keras runs every Conv with groups > 1 through a function compiled with XLA (`_jit_compiled_convolution_op`,
# "remove this when grouped convolutions are fully supported on the CPU", b/213173659). TensorFlow 2.21 (the version
# pyproject.toml pins) computes grouped convolutions and their gradients with its own CPU kernels, and the XLA path is
# slow to train on CPU: ShuffleNet v1 0.5x g=3 at 28x28, batch 128, took 2.6 s a training step through XLA, 0.46 s
# through TensorFlow's kernels and 0.32 s with g=1, on 2 cores of an AMD EPYC (tensorflow/tensorflow#49147). So the
# layer calls its own convolution_op, the path groups=1 already takes (tests/test_keras_choice.py checks values and
# both gradients against the XLA path). Same layer class, same weights and saved files; the converter sees the same
# Conv2D op. Only TensorFlow's oneDNN kernels have that gradient: without oneDNN (TF_ENABLE_ONEDNN_OPTS=0, or a
# TensorFlow imported before edgeopt on a CPU without VNNI, see edgeopt._env) Conv2DBackpropInput refuses groups on
# CPU, so grouped convolutions keep tf_keras' XLA path there. Nothing runs here: importing edgeopt executes no
# TensorFlow op (MultiWorkerMirroredStrategy must be made before the first one); asking whether oneDNN is on is not one.
_XLA_GROUPED_CONVOLUTION = _KerasConv._jit_compiled_convolution_op


def _grouped_convolution_op(self, inputs, kernel):
    """Conv.call's grouped branch: the layer's own convolution (TensorFlow's kernels)."""
    return self.convolution_op(inputs, kernel)


def grouped_convolution_path() -> str:
    """Which path tf_keras' grouped convolutions take in this process: "native" (TensorFlow's kernels) or "xla"."""
    return "native" if _KerasConv._jit_compiled_convolution_op is _grouped_convolution_op else "xla"


def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN CPU kernels are on in this process (the only CPU kernels with grouped-convolution
    gradients)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


if onednn_enabled():
    _KerasConv._jit_compiled_convolution_op = _grouped_convolution_op
