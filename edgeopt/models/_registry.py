"""The model registry: ``create(name, ...)`` and ``list_models()``."""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Callable

from edgeopt._keras import keras
from edgeopt.models import _builder
from edgeopt.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., keras.Model]
    default_size: int

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.fn) or "").splitlines()[0] if self.fn.__doc__ else ""


MODELS: Registry[ModelEntry] = Registry("model")

# knobs every family accepts, passed through to the builder
_COMMON_KNOBS = {
    p for p in inspect.signature(_builder.build).parameters if p not in ("spec", "input_shape", "classes", "width", "depth", "depth_multiplier", "dropout", "name")
}


def register_model(name: str, default_size: int):
    def deco(fn):
        MODELS.register(name)(ModelEntry(name, fn, default_size))
        return fn

    return deco


# What each knob accepts, as data: (test, what would work). Checked before a model is built, so a recipe's
# ``knobs = { alpha = -1 }`` fails at parse time naming ``model.knobs.alpha`` instead of deep in the builder.
# A family adds the rules of its own knobs from its tables (ShuffleNet: groups and scale).
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fraction(v) -> bool:
    return _number(v) and 0 <= v < 1


KNOB_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "alpha": (lambda v: _number(v) and v > 0, "a width multiplier > 0 (e.g. 0.35, 0.5, 1.0)"),
    "width": (lambda v: _number(v) and v > 0, "a width multiplier > 0"),
    "depth": (lambda v: _number(v) and v > 0, "a depth multiplier > 0"),
    "phi": (lambda v: _number(v) and v >= 0, "a compound coefficient >= 0"),
    "depth_multiplier": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "dropout": (_fraction, "a rate in [0, 1)"),
    "drop_connect_rate": (_fraction, "a rate in [0, 1)"),
    "bn_momentum": (_fraction, "a momentum in [0, 1)"),
    "bn_epsilon": (lambda v: _number(v) and v > 0, "a number > 0"),
    "small_input": (lambda v: v is None or isinstance(v, bool), "true or false"),
    "include_top": (lambda v: isinstance(v, bool), "true or false"),
    "classifier_activation": (lambda v: v is None or v in ("softmax", "linear", ""), "\"softmax\" or \"linear\""),
}


def check_knobs(name: str, knobs: dict) -> None:
    """Raise ValueError ``knobs.<knob> ...`` for a knob model ``name`` does not have or a value it cannot take."""
    accepted = knobs_of(name)
    for knob, value in knobs.items():
        if knob not in accepted:
            raise ValueError(f"knobs has no {knob!r} for {name}; its knobs are: {', '.join(accepted)}")
        test, expected = KNOB_RULES.get(knob, (lambda v: True, ""))
        if not test(value):
            raise ValueError(f"knobs.{knob} must be {expected}, got {value!r}")


def list_models() -> list[str]:
    """Names of every registered model."""
    return MODELS.names()


def knobs_of(name: str) -> list[str]:
    """The keyword arguments ``create(name, ...)`` accepts besides input_shape, classes and weights."""
    fn = MODELS.get(name).fn
    own = [p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY]
    return sorted(set(own) | _COMMON_KNOBS)


def create(
    name: str,
    input_shape: tuple[int, int, int] | int | None = None,
    classes: int = 1000,
    weights: str | os.PathLike | None = None,
    **knobs,
) -> keras.Model:
    """Build a registered model as a tf_keras Functional model.

    ``input_shape`` is (height, width, channels) or one side length (3 channels); it defaults to the
    model's paper resolution. ``weights`` is a path to a weights file (``.h5``/``.weights.h5`` or a TF
    checkpoint prefix) saved from the same architecture; nothing is ever downloaded.
    """
    entry = MODELS.get(name)
    accepted = knobs_of(name)
    unknown = sorted(set(knobs) - set(accepted))
    if unknown:
        raise TypeError(f"model {name!r} has no knob(s) {', '.join(unknown)}; its knobs are: {', '.join(accepted)}")
    check_knobs(name, knobs)
    if input_shape is None:
        input_shape = entry.default_size
    if isinstance(input_shape, int):
        input_shape = (input_shape, input_shape, 3)
    model = entry.fn(input_shape=tuple(int(v) for v in input_shape), classes=int(classes), name=name, **knobs)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Load a weights file into ``model``; errors name the file and what would work."""
    path = os.fspath(path)
    exists = os.path.exists(path) or os.path.exists(path + ".index")
    if not exists:
        raise FileNotFoundError(
            f"weights file {path!r} does not exist. Pass a file saved with model.save_weights(...) from the "
            "same architecture and knobs (.h5 / .weights.h5 or a TF checkpoint prefix); edgeopt downloads nothing."
        )
    try:
        model.load_weights(path)
    except (ValueError, OSError) as err:
        raise ValueError(f"could not load weights from {path!r} into {model.name}: {err}. Were they saved from the same model and knobs?") from err
    return model
