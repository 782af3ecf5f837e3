"""The model zoo: ``create(name, input_shape=..., classes=..., **knobs)`` and ``list_models()``."""
from edgeopt.models import efficientnet, mobilenet, shufflenet  # noqa: F401  (registers the families)
from edgeopt.models._builder import ArchSpec, BlockSpec, build, decode_block, make_divisible
from edgeopt.models._registry import KNOB_RULES, MODELS, check_knobs, create, knobs_of, list_models, load_weights

__all__ = ["ArchSpec", "BlockSpec", "KNOB_RULES", "MODELS", "check_knobs", "build", "create", "decode_block", "knobs_of", "list_models", "load_weights", "make_divisible"]
