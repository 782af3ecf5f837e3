"""edgeopt: Keras image classifiers -> small, fast, verified int8 TFLite models for Android, with numbers."""
from edgeopt._keras import keras, tf  # noqa: F401  (picks tf_keras before anything else imports TensorFlow)
from edgeopt import bench  # noqa: F401
from edgeopt.data import Preprocessing, Splits, list_datasets, load_dataset
from edgeopt.models import create, list_models
from edgeopt.export import read_manifest, to_tflite
from edgeopt.pipeline import run_recipe
from edgeopt.profile import Profile, profile
from edgeopt.train import TrainConfig, evaluate, fit

__version__ = "0.1.0"
__all__ = ["Preprocessing", "Profile", "Splits", "TrainConfig", "create", "evaluate", "fit", "list_datasets", "list_models", "load_dataset", "profile", "read_manifest", "run_recipe", "to_tflite"]
