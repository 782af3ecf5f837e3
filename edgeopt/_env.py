"""Process settings that must be in place before TensorFlow is first imported; importing this is cheap.

- ``TF_USE_LEGACY_KERAS=1``: the one Keras choice. TF-MOT only supports Keras 2, which TensorFlow >= 2.16 ships
  as ``tf_keras``; with this set, ``tf.keras`` (and so TF-MOT) resolves to ``tf_keras`` too. ``edgeopt._keras``
  imports this module first and is the only module that imports a Keras package.
- ``TF_CPP_MIN_LOG_LEVEL``: TensorFlow's C++ log threshold (2 = errors only; the CLI uses 3 unless ``--verbose``).

``import edgeopt`` imports only this module, so the choice is made even when the user imports TensorFlow next.
"""
from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
