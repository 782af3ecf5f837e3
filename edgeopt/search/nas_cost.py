"""Cost tables of a search space: the cost of each candidate operation at each block, and of the fixed rest.

A :class:`OpCostTable` is data (JSON): ``{block name: {operation: cost}}`` (fixed blocks too, with their one
operation), ``fixed`` (stem, head and classifier) and the ``unit``. The cost of an architecture is ``fixed`` plus its
operations' costs (:meth:`OpCostTable.predict`, a lookup-table predictor); the supernet's differentiable cost term is the same
sum with each block's costs weighted by its architecture probabilities. Whatever fills the table (multiply-adds
counted here, parameters, or latency measured per operator on a device: ``latency``, filled by
:mod:`edgeopt.search.latency_table`) plugs into the search the same way: a cost model is a function
``(space, input_shape, classes) -> OpCostTable`` registered in :data:`COST_MODELS`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt._keras import keras
from edgeopt.config import Config
from edgeopt.costs import profile
from edgeopt.io import write_atomic
from edgeopt.registry import Registry
from edgeopt.search.nas_space import SKIP, Architecture, NasSpace, block_layers, head_layers, stem_layers

__all__ = ["COST_MODELS", "OpCostTable", "cost_model", "latency_cost_table", "load_cost_table", "macs_table", "params_table", "part_layers",
           "part_model"]


@dataclass(frozen=True)
class OpCostTable(Config):
    """Cost in ``unit`` of each candidate operation at each block (``blocks[name][op]``) and of the fixed rest of the
    network (``fixed``); ``source``: how it was obtained (e.g. ``profile``, a device and runtime)."""

    unit: str
    blocks: dict = field(default_factory=dict)
    fixed: float = 0.0
    source: str = ""

    def __post_init__(self):
        if not self.unit:
            raise ValueError("unit must name what the costs count, e.g. \"macs\" or \"ms\"")
        for name, ops in self.blocks.items():
            if not isinstance(ops, dict) or not ops:
                raise ValueError(f"blocks.{name} must be a table of operation -> cost")
            for op, cost in ops.items():
                if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not np.isfinite(cost) or cost < 0:
                    raise ValueError(f"blocks.{name}.{op} must be a finite cost >= 0, got {cost!r}")
        if not np.isfinite(self.fixed) or self.fixed < 0:
            raise ValueError(f"fixed must be a finite cost >= 0, got {self.fixed!r}")

    def check(self, space: NasSpace) -> "OpCostTable":
        """Raise ValueError naming the first block or candidate of ``space`` the table has no cost for; returns self."""
        for b in space.blocks():
            if b.name not in self.blocks:
                raise ValueError(f"the {self.unit} table has no block {b.name}; it has: {', '.join(self.blocks) or 'none'}")
            missing = [op for op in b.ops if op not in self.blocks[b.name]]
            if missing:
                raise ValueError(f"the {self.unit} table has no cost for {missing[0]!r} at {b.name}; it has: {', '.join(self.blocks[b.name])}")
        return self

    def matrix(self, space: NasSpace) -> list[np.ndarray]:
        """Per block, the costs of its candidates in candidate order (float64)."""
        self.check(space)
        return [np.array([self.blocks[b.name][op] for op in b.ops], dtype=np.float64) for b in space.blocks()]

    def predict(self, space: NasSpace, arch: Architecture) -> float:
        """Cost of ``arch``: ``fixed`` plus each block's chosen operation."""
        arch.check(space)
        return float(self.fixed + sum(self.blocks[b.name][op] for b, op in zip(space.blocks(), arch.choices)))

    def expected(self, space: NasSpace, probabilities: list[np.ndarray]) -> float:
        """Expected cost when block ``i`` takes each candidate with ``probabilities[i]``: ``fixed + sum_i p_i . c_i``."""
        return float(self.fixed + sum(float(np.dot(p, c)) for p, c in zip(probabilities, self.matrix(space))))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON, atomically (replacing an older one)."""
        return write_atomic(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n", overwrite=True)


def load_cost_table(path: str | os.PathLike) -> OpCostTable:
    """A table written by :meth:`OpCostTable.save` (or measured elsewhere in the same JSON form)."""
    return OpCostTable.from_dict(json.loads(Path(path).read_text()), str(path))


COST_MODELS: Registry[Callable[..., OpCostTable]] = Registry("cost model")


def cost_model(name: str, space: NasSpace, input_shape: tuple[int, int, int], classes: int) -> OpCostTable:
    """The table of registered cost model ``name`` for ``space`` on ``input_shape`` images and ``classes`` classes."""
    return COST_MODELS.get(name)(space, tuple(input_shape), int(classes)).check(space)


def part_layers(space: NasSpace, input_shape, classes: int) -> dict[str, tuple[tuple[int, int, int], Callable]]:
    """Every part a per-operator table costs on its own, in network order: ``"stem"``, ``"<block>/<op>"`` for each
    candidate that has layers (``skip`` has none and costs 0) and ``"head"`` (head conv and classifier), each as
    (its input shape, a function that applies its layers to a tensor)."""
    shapes = space.input_shapes(tuple(input_shape))
    parts = {"stem": (tuple(input_shape), lambda x: stem_layers(space, x))}
    for b, shape in zip(space.blocks(), shapes):
        for op in b.ops:
            if op != SKIP:
                parts[f"{b.name}/{op}"] = (tuple(shape), lambda x, b=b, op=op: block_layers(space, b, op, x))
    parts["head"] = (tuple(shapes[-1]), lambda x: head_layers(space, x, classes))
    return parts


def part_model(shape: tuple[int, int, int], layers: Callable, name: str = "part") -> keras.Model:
    """A Functional model of ``layers`` alone on ``shape`` inputs (a part of :func:`part_layers`)."""
    inputs = keras.Input(shape=tuple(shape))
    return keras.Model(inputs, layers(inputs), name=name)


def _counted(space: NasSpace, input_shape, classes: int, what: str, unit: str) -> OpCostTable:
    """A table of ``profile(...).<what>`` of the stem + head and of each candidate built alone at its block's input shape."""
    counts = {key: int(getattr(profile(part_model(shape, layers)), what)) for key, (shape, layers) in part_layers(space, input_shape, classes).items()}
    blocks = {b.name: {op: 0 if op == SKIP else counts[f"{b.name}/{op}"] for op in b.ops} for b in space.blocks()}
    return OpCostTable(unit, blocks, float(counts["stem"] + counts["head"]), "edgeopt.costs.profile")


@COST_MODELS.register("macs")
def macs_table(space: NasSpace, input_shape, classes: int) -> OpCostTable:
    """Multiply-adds (edgeopt.costs' convention: convolutions and dense layers) of every candidate at its block."""
    return _counted(space, input_shape, classes, "macs", "macs")


@COST_MODELS.register("params")
def params_table(space: NasSpace, input_shape, classes: int) -> OpCostTable:
    """Parameters (batch norm included, as ``model.count_params()``) of every candidate at its block."""
    return _counted(space, input_shape, classes, "params", "params")


@COST_MODELS.register("latency")
def latency_cost_table(space: NasSpace, input_shape, classes: int) -> OpCostTable:
    """Measured int8 latency (ms, 1 thread) of every candidate at its block, from the latency table file named by
    the ``EDGEOPT_LATENCY_TABLE`` environment variable (:mod:`edgeopt.search.latency_table`: measure one with
    ``measure_table``, on this machine's LiteRT interpreter or on a phone over adb). Its per-inference overhead is
    taken out of every part (see ``LatencyTable.cost_table``)."""
    from edgeopt.search.latency_table import table_from_environment  # lazy: the table module imports this one

    return table_from_environment(space, input_shape, classes)
