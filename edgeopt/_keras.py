"""The one place that chooses the Keras module.

TF-MOT (tensorflow-model-optimization 0.8) only supports Keras 2, which TensorFlow >= 2.16 ships as the
separate ``tf_keras`` package. Setting ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported makes
``tf.keras`` (and so TF-MOT) resolve to ``tf_keras`` too. Every other edgeopt module imports ``keras``
and ``tf`` from here, never ``keras`` or ``tensorflow.keras`` directly.
"""
from __future__ import annotations

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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

__all__ = ["tf", "keras", "require_keras2_model", "is_keras2_model"]


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
