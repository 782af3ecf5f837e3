"""Process settings that must be in place before TensorFlow is first imported; importing this is cheap.

- ``TF_USE_LEGACY_KERAS=1``: the one Keras choice. TF-MOT only supports Keras 2, which TensorFlow >= 2.16 ships
  as ``tf_keras``; with this set, ``tf.keras`` (and so TF-MOT) resolves to ``tf_keras`` too. ``edgeopt._keras``
  imports this module first and is the only module that imports a Keras package.
- ``TF_ENABLE_ONEDNN_OPTS=1`` (unless the user set it): TensorFlow's oneDNN CPU kernels. TensorFlow turns them on
  by itself only on CPUs with AVX512_VNNI / AVX512_BF16 / AVX_VNNI / AMX, so training speed, float round-off and even
  which ops have gradients changed with the machine a session drew: without oneDNN, TensorFlow has no CPU gradient
  for grouped convolutions (ShuffleNet). On an AMD EPYC with AVX2 and no VNNI (2 cores), a MobileNetV2 0.35 training
  step at 28x28, batch 128, took 0.63 s without oneDNN and 0.43 s with it. ``edgeopt._keras`` still checks
  whether oneDNN is on before it routes grouped convolutions past XLA (a user can set it to 0).
- ``TF_CPP_MIN_LOG_LEVEL``: TensorFlow's C++ log threshold (2 = errors only; the CLI uses 3 unless ``--verbose``).

``import edgeopt`` imports only this module, so the choice is made even when the user imports TensorFlow next.
"""
from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
