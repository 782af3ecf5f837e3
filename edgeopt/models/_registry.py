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
