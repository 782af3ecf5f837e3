"""Sparse training from scratch, one entry point: a registry of the methods, each ``fn(model, splits, config) ->
(trained copy, result)`` with its frozen config class.

- ``snip``, ``grasp``: fixed masks found at initialization (:mod:`edgeopt.compress.sparse_init`);
- ``set``, ``rigl``: masks rewired during training at constant sparsity (:mod:`edgeopt.compress.sparse_dynamic`);
- ``early_bird``: dense training stopped when the pruning mask stops changing (:mod:`edgeopt.compress.early_bird`).

Sparsity distributions over layers (uniform, Erdős–Rényi-kernel) live in ``sparse_init``; every method keeps its
masks with :class:`edgeopt.compress.masks.MaskCallback`, so each returns a plain Keras model with exact zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeopt.compress.early_bird import EarlyBird, EarlyBirdConfig, EarlyBirdResult, early_bird  # noqa: F401  (re-exported)
from edgeopt.compress.sparse_dynamic import DynamicSparsity, RigLConfig, SETConfig, drop_fraction_at, rigl, set_train  # noqa: F401
from edgeopt.compress.sparse_init import (GraSPConfig, SNIPConfig, SparseTrainResult, erk_densities, grasp, layer_sparsities,  # noqa: F401
                                          snip)
from edgeopt.registry import Registry


@dataclass(frozen=True)
class SparseMethod:
    """A sparse-training method: its config class and ``run(model, splits, config) -> (model, result)``."""

    name: str
    config_cls: type
    run: Callable


METHODS: Registry[SparseMethod] = Registry("sparse training method")
for _method in (SparseMethod("snip", SNIPConfig, snip), SparseMethod("grasp", GraSPConfig, grasp), SparseMethod("set", SETConfig, set_train),
                SparseMethod("rigl", RigLConfig, rigl), SparseMethod("early_bird", EarlyBirdConfig, early_bird)):
    METHODS.register(_method.name)(_method)


def sparse_train(model, splits, method: str, config=None):
    """Run sparse-training ``method`` (one of :data:`METHODS`) on a copy of ``model`` with ``config`` (its config
    class; default settings when None). Returns the trained model and the method's result."""
    entry = METHODS.get(method)
    config = entry.config_cls() if config is None else config
    if not isinstance(config, entry.config_cls):
        raise TypeError(f"method {method!r} takes a {entry.config_cls.__name__}, got {type(config).__name__}")
    return entry.run(model, splits, config)
