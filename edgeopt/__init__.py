"""edgeopt: Keras image classifiers -> small, fast, verified int8 TFLite models for Android, with numbers.

Layers, bottom to top (imports only point down; ``tests/test_layout.py`` checks it):
``_keras`` (the one Keras choice), ``registry``, ``config``, ``io``; ``data``, ``models``, ``profile``,
``train``, ``tflite/``; ``compress/``, ``export``, ``bench/``; ``pipeline/``, ``search/``; ``report``, ``cli``.
"""
from edgeopt._keras import keras, tf  # noqa: F401,I001  (first: picks tf_keras before anything else imports TensorFlow)
from edgeopt import bench  # noqa: F401
from edgeopt.data import Preprocessing, Splits, list_datasets, load_dataset
from edgeopt.export import read_manifest, to_tflite
from edgeopt.models import create, list_models
from edgeopt.pipeline import run_recipe
from edgeopt.profile import Profile, profile
from edgeopt.train import TrainConfig, evaluate, fit
from edgeopt.version import __version__

__all__ = ["Preprocessing", "Profile", "Splits", "TrainConfig", "__version__", "keras", "tf", "create", "evaluate", "fit", "list_datasets", "list_models",
           "load_dataset", "profile", "read_manifest", "run_recipe", "to_tflite"]
