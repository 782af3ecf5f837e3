"""Per-channel-group cost tables for budget-driven filter pruning: what the whole model costs (int8 latency on
the LiteRT interpreter, multiply-adds or parameters) when one channel group is cut to a given channel count.

**What is measured.** For each prunable channel group ``g`` (of :mod:`edgeopt.compress.structured`) and a few
channel counts ``n`` between its floor and its width ``N``, the whole model with only ``g`` cut to ``n`` channels
(:func:`~edgeopt.compress.structured.rebuild`, weights sliced; their values do not matter for cost) is measured
once. Between those counts the cost is interpolated linearly; the table predicts a model with several groups cut
as the sum of each group's change (``predict``): separable, which misses the interaction of two adjacent groups
(a 1x1 convolution between them costs ``n_in * n_out``). Budget pruning therefore measures the real model after
every round and records prediction against measurement.

**Why whole-model points rather than a table of single layers (NetAdapt's).** A group is not one layer: it
changes its producers' outputs, the depthwise convolutions and batch norms it flows through and its consumers'
inputs, and XNNPACK fuses some of these. Timing the whole model with one group cut captures all of that
(fusions, packing of channels into SIMD tiles, the quantize ops at the ends) with code edgeopt already has
(rebuild -> int8 export -> LiteRT), where per-layer sub-models would need graph extraction and would miss what
happens at their borders. The price is one conversion and one timing per point: ``points`` per group (4 by
default: 4 x 17 groups = 68 for MobileNetV2), measured once before pruning starts; the table is JSON-serializable
so a benchmark measures it once per model and machine. Latency per channel count is a staircase (XNNPACK packs
channels in tiles of 8 or 16 on x86 and ARM; prune with ``round_to = 8``) that linear interpolation smooths;
measured points are made monotone (fewer channels never cost more) so that noise cannot make a cut look like a
slow-down. Multiply-adds and parameters are exactly linear in one group's width with the other groups fixed, so
two points (``N`` and the floor) give them exactly.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgeopt._keras import keras
from edgeopt.bench.latency import measure_latency
from edgeopt.compress.structured import rebuild
from edgeopt.costs import profile
from edgeopt.export import to_tflite
from edgeopt.progress import bar

Measure = Callable[[keras.Model], float]
RESOURCES = ("latency_ms", "macs", "params")
LINEAR = ("macs", "params")  # exactly linear in one group's channel count


@dataclass(frozen=True)
class GroupCurve:
    """The whole model's cost (``values``) with group ``group`` cut to each of ``channels`` (ascending; the last is
    the group's full width) and every other group whole; ``values`` as measured, made non-decreasing in channels."""

    group: str
    channels: tuple[int, ...]
    values: tuple[float, ...]

    def at(self, n: float) -> float:
        """Cost at ``n`` channels, linear between measured counts and flat outside them."""
        return float(np.interp(n, self.channels, self.values))


@dataclass(frozen=True)
class CostTable:
    """``resource`` (``latency_ms``, ``macs`` or ``params``) of the whole model as measured (``base``) and with one
    group cut (``curves``, by group name); ``seconds`` spent measuring it."""

    resource: str
    base: float
    curves: dict[str, GroupCurve] = field(default_factory=dict)
    seconds: float = 0.0

    def saving(self, group: str, n_from: int, n_to: int) -> float:
        """Predicted fall of the resource when ``group`` goes from ``n_from`` to ``n_to`` channels (>= 0 for a cut)."""
        curve = self.curves[group]
        return curve.at(n_from) - curve.at(n_to)

    def predict(self, current: float, widths_from: dict[str, int], widths_to: dict[str, int]) -> float:
        """The resource after moving from ``widths_from`` (measured at ``current``) to ``widths_to``, group by group."""
        return current - sum(self.saving(g, widths_from[g], n) for g, n in widths_to.items() if n != widths_from[g])

    def check(self, groups: dict[str, int], resource: str) -> None:
        """Raise ValueError unless the table measures ``resource`` and has a curve for each of ``groups`` up to its width."""
        if self.resource != resource:
            raise ValueError(f"the cost table measures {self.resource}, not {resource}: measure a table of {resource}")
        missing = sorted(g for g, n in groups.items() if g not in self.curves or self.curves[g].channels[-1] < n)
        if missing:
            raise ValueError(f"the cost table has no curve up to the width of groups {', '.join(missing)}: measure it on this model")

    def to_dict(self) -> dict:
        return {"resource": self.resource, "base": self.base, "seconds": self.seconds,
                "curves": {g: {"channels": list(c.channels), "values": list(c.values)} for g, c in self.curves.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "CostTable":
        curves = {g: GroupCurve(g, tuple(int(n) for n in c["channels"]), tuple(float(v) for v in c["values"])) for g, c in data["curves"].items()}
        return cls(data["resource"], float(data["base"]), curves, float(data.get("seconds", 0.0)))


def floor_channels(min_channels: int, round_to: int) -> int:
    """The fewest channels a group keeps: the smallest multiple of ``round_to`` that is >= ``min_channels``."""
    return round_to * math.ceil(min_channels / round_to)


def table_counts(width: int, floor: int, points: int, round_to: int) -> list[int]:
    """Channel counts at which a group of ``width`` channels is measured, ascending: ``points`` counts evenly spread
    from ``floor`` to ``width`` (``width`` itself and otherwise multiples of ``round_to``)."""
    if width <= floor:
        return [width]
    spread = np.linspace(floor, width, max(points, 2))[:-1]
    return sorted({min(width, round_to * math.ceil(v / round_to)) for v in spread} | {width})


def measure_table(model: keras.Model, groups: dict[str, int], measure: Measure, resource: str, *, floor: int, round_to: int = 1,
                  points: int = 4) -> CostTable:
    """Measure ``resource`` with ``measure(model)`` on ``model`` and, for each group of ``groups`` (name -> width), on
    ``model`` with that group cut to each of :func:`table_counts` (2 counts for ``macs`` and ``params``, which are
    linear). Returns the :class:`CostTable`."""
    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}; got {resource!r}")
    start = time.perf_counter()
    base = float(measure(model))
    counts = {g: table_counts(n, floor, 2 if resource in LINEAR else points, round_to) for g, n in groups.items()}
    curves = {}
    with bar(total=sum(len(c) - 1 for c in counts.values()), desc=f"cost table ({resource})", unit="model") as shown:
        for g, ns in counts.items():
            values = []
            for n in ns[:-1]:
                values.append(float(measure(rebuild(model, {g: np.arange(n)}))))
                shown.update(1)
            values = np.minimum.accumulate(np.array(values + [base])[::-1])[::-1]  # fewer channels never cost more
            curves[g] = GroupCurve(g, tuple(ns), tuple(float(v) for v in values))
    return CostTable(resource, base, curves, time.perf_counter() - start)


def count_macs(model: keras.Model) -> float:
    """Multiply-adds of ``model`` (:func:`edgeopt.costs.profile`)."""
    return float(profile(model).macs)


def count_params(model: keras.Model) -> float:
    """Parameters of ``model`` (:func:`edgeopt.costs.profile`)."""
    return float(profile(model).params)


def int8_latency(calibration: np.ndarray, threads: int = 1, runs: int = 50, min_seconds: float = 1.0) -> Measure:
    """A measure: the median latency (ms) of a model converted to full-integer int8 (calibrated on ``calibration``,
    float model inputs; not verified, since the table's cut models are not trained) and timed on the LiteRT
    interpreter with ``threads`` threads (:func:`edgeopt.bench.latency.measure_latency`, random inputs)."""
    calibration = np.asarray(calibration)

    def measure(model: keras.Model) -> float:
        artifact = to_tflite(model, "int8", calibration, num_calibration=len(calibration), num_verify=0, min_agreement=0.0,
                             android_metadata=False)
        return measure_latency(artifact.model_bytes, threads=threads, runs=runs, min_seconds=min_seconds).median_ms

    return measure
