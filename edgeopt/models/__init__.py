"""The model zoo: ``create(name, input_shape=..., classes=..., **knobs)`` and ``list_models()``; other sources
(the user's file, tf_keras.applications backbones, Keras 3 files) in :mod:`edgeopt.models.sources`."""
from edgeopt.models import efficientnet, mobilenet, shufflenet  # noqa: F401  (registers the families)
from edgeopt.models._builder import ArchSpec, BlockSpec, apply_block, block_name, build, classifier_head, decode_block, make_divisible
from edgeopt.models._registry import KNOB_RULES, MODELS, check_knobs, create, knobs_of, list_models, load_weights
from edgeopt.models.sources import (APPLICATIONS, MODEL_FILE_SUFFIXES, ModelSourceError, application_model, application_normalization, bridge_keras3,
                                    check_model_fits, check_model_path,
                                    flatten_model, list_applications, load_model, with_input_shape)

__all__ = ["APPLICATIONS", "ArchSpec", "BlockSpec", "apply_block", "block_name", "KNOB_RULES", "MODELS", "MODEL_FILE_SUFFIXES", "ModelSourceError", "application_model", "application_normalization",
           "bridge_keras3", "build", "check_knobs", "classifier_head", "check_model_fits", "check_model_path", "create", "decode_block", "flatten_model", "knobs_of", "list_applications",
           "list_models", "load_model", "load_weights", "make_divisible", "with_input_shape"]
