"""Per-channel-group cost tables for budget-driven filter pruning: what the whole model costs (int8 latency on
the LiteRT interpreter, multiply-adds or parameters) when one channel group is cut to a given channel count.

**What is measured.** For each prunable channel group ``g`` (of :mod:`edgeopt.compress.structured`) and a few
channel counts ``n`` between its floor and its width ``N``, the whole model with only ``g`` cut to ``n`` channels
(:func:`~edgeopt.compress.structured.rebuild`, weights sliced; their values do not matter for cost, but the kept
channels are each group's strongest by L1 filter norm, :func:`strongest_channels`, so that no cut keeps only dead
channels, whose constant output int8 calibration gives scales XNNPACK refuses) is measured once. Between those
counts the cost is interpolated linearly; the table predicts a model with several groups cut as the sum of each
group's change (``predict``): separable, which misses the interaction of two adjacent groups (a 1x1 convolution
between them costs ``n_in * n_out``). Budget pruning therefore measures the real model after
every round and records prediction against measurement.

**One base, measured robustly, and a measured floor.** Every group's saving is measured against the same base (the
whole model), so an error ``e`` in the base enters each group's first cut and the separable sum over ``k`` groups
carries ``k * e``: measured once, a noisy base made a benchmark's prediction negative. Two guards:

* the base is measured again before each group's points and once after the last (``base_samples``; latency only:
  multiply-adds and parameters are exact) and ``base`` is their median, so a single outlier (a first, cold
  measurement, a burst of background load) drops out and random error shrinks with the number of groups; the
  samples are kept in the table so their spread can be read;
* the model with every group of the table at the floor is measured too (``floor``): no model the table describes
  costs less (fewer channels never cost more), so predictions are clamped at it (:meth:`CostTable.clamp`). This
  also bounds the separable model's own error, which over-counts savings when adjacent groups are cut together.

Per-group bases paired with each group's points (NetAdapt-like relative deltas) would cancel slow drift as well, but
each group would then carry the full error of one base measurement, an outlier included; the median keeps one base
counted once. ``pairs`` (:func:`measure_table`; budget pruning's default) does both: every point is timed several
times, each right before the whole model, and costs the median base times the median of its ratios, so drift
cancels within each pair and one outlier pair drops out. A table read from JSON written before floors were measured
has ``floor`` 0: predictions are then only kept non-negative.

**Why whole-model points rather than a table of single layers (NetAdapt's).** A group is not one layer: it
changes its producers' outputs, the depthwise convolutions and batch norms it flows through and its consumers'
inputs, and XNNPACK fuses some of these. Timing the whole model with one group cut captures all of that
(fusions, packing of channels into SIMD tiles, the quantize ops at the ends) with code edgeopt already has
(rebuild -> int8 export -> LiteRT), where per-layer sub-models would need graph extraction and would miss what
happens at their borders. The price is one timing per point and one conversion per distinct model (the repeated
base is converted once: :func:`int8_latency` keeps the bytes of the models it converted last): ``points`` per group
(4 by default: 3 cuts and the whole model again; fewer cuts for narrow groups), the last base and the floor model;
for benchmarks/baselines' MobileNetV2 0.35 with all 24 groups, 64 cuts: 89 timings and 66 conversions. It is
measured once before pruning starts; the table is JSON-serializable so a benchmark measures it once per model and
machine. Latency per channel count is a staircase (XNNPACK packs channels in tiles of 8 or 16 on x86 and ARM; prune
with ``round_to = 8``) that linear interpolation smooths;
measured points are made monotone (fewer channels never cost more) so that noise cannot make a cut look like a
slow-down. Multiply-adds and parameters are exactly linear in one group's width with the other groups fixed, so
two points (``N`` and the floor) give them exactly.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgeopt._keras import keras
from edgeopt.bench.latency import measure_latency
from edgeopt.compress.structured import channel_groups, group_scores, rebuild, top_channels
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
    """``resource`` (``latency_ms``, ``macs`` or ``params``) of the whole model (``base``: the median of
    ``base_samples``, its measurements), with one group cut (``curves``, by group name) and with every group at the
    floor (``floor``: the least any model of the table costs; 0 when not measured); ``seconds`` spent measuring it."""

    resource: str
    base: float
    curves: dict[str, GroupCurve] = field(default_factory=dict)
    seconds: float = 0.0
    floor: float = 0.0
    base_samples: tuple[float, ...] = ()

    def saving(self, group: str, n_from: int, n_to: int) -> float:
        """Predicted fall of the resource when ``group`` goes from ``n_from`` to ``n_to`` channels (>= 0 for a cut)."""
        curve = self.curves[group]
        return curve.at(n_from) - curve.at(n_to)

    def clamp(self, current: float, value: float) -> float:
        """``value`` (a prediction made from the measured ``current``) raised to the floor: never below ``floor``, nor
        below ``current`` where ``current`` is already under the floor (a measurement of another moment), nor below 0."""
        return max(value, min(self.floor, current), 0.0)

    def predict(self, current: float, widths_from: dict[str, int], widths_to: dict[str, int]) -> float:
        """The resource after moving from ``widths_from`` (measured at ``current``) to ``widths_to``: ``current`` less
        each changed group's saving, clamped at the floor (:meth:`clamp`)."""
        return self.clamp(current, current - sum(self.saving(g, widths_from[g], n) for g, n in widths_to.items() if n != widths_from[g]))

    def check(self, groups: dict[str, int], resource: str) -> None:
        """Raise ValueError unless the table measures ``resource`` and has a curve for each of ``groups`` up to its width."""
        if self.resource != resource:
            raise ValueError(f"the cost table measures {self.resource}, not {resource}: measure a table of {resource}")
        missing = sorted(g for g, n in groups.items() if g not in self.curves or self.curves[g].channels[-1] < n)
        if missing:
            raise ValueError(f"the cost table has no curve up to the width of groups {', '.join(missing)}: measure it on this model")

    def to_dict(self) -> dict:
        return {"resource": self.resource, "base": self.base, "seconds": self.seconds, "floor": self.floor, "base_samples": list(self.base_samples),
                "curves": {g: {"channels": list(c.channels), "values": list(c.values)} for g, c in self.curves.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "CostTable":
        """The table of :meth:`to_dict`; one written before floors were measured gets ``floor`` 0 and its one base."""
        curves = {g: GroupCurve(g, tuple(int(n) for n in c["channels"]), tuple(float(v) for v in c["values"])) for g, c in data["curves"].items()}
        samples = tuple(float(v) for v in data.get("base_samples", [data["base"]]))
        return cls(data["resource"], float(data["base"]), curves, float(data.get("seconds", 0.0)), float(data.get("floor", 0.0)), samples)


def floor_channels(min_channels: int, round_to: int) -> int:
    """The fewest channels a group keeps: the smallest multiple of ``round_to`` that is >= ``min_channels``."""
    return round_to * math.ceil(min_channels / round_to)


def strongest_channels(model: keras.Model, groups) -> Callable[[str, int], np.ndarray]:
    """``keep(g, n)``: the sorted indices of group ``g``'s ``n`` channels with the largest L1 filter norms in ``model``
    (:func:`~edgeopt.compress.structured.group_scores`, computed once here for every group named in ``groups``), the
    channels a model cut only to be measured keeps. Which channels are kept does not change its cost, but the first
    ``n`` can all be dead: on benchmarks/baselines' MobileNetV2 with every internal group cut to its first 8 channels,
    the head's 8 outputs were constant 0 after ReLU6, calibration gave them an int8 scale of 8e-9 and XNNPACK failed
    to prepare the model (the strongest 8 prepared and timed)."""
    wanted = set(groups)
    scores = group_scores(model, [g for g in channel_groups(model) if g.name in wanted], "l1") if wanted else {}
    missing = sorted(wanted - set(scores))
    if missing:
        raise ValueError(f"no channel group named {', '.join(missing)} in {model.name}: name groups of edgeopt.compress.structured.channel_groups")

    def keep(g: str, n: int) -> np.ndarray:
        return top_channels(scores[g], n)

    return keep


def table_counts(width: int, floor: int, points: int, round_to: int) -> list[int]:
    """Channel counts at which a group of ``width`` channels is measured, ascending: ``points`` counts evenly spread
    from ``floor`` to ``width`` (``width`` itself and otherwise multiples of ``round_to``)."""
    if width <= floor:
        return [width]
    spread = np.linspace(floor, width, max(points, 2))[:-1]
    return sorted({min(width, round_to * math.ceil(v / round_to)) for v in spread} | {width})


def measure_table(model: keras.Model, groups: dict[str, int], measure: Measure, resource: str, *, floor: int, round_to: int = 1,
                  points: int = 4, pairs: int = 0) -> CostTable:
    """Measure ``resource`` with ``measure(model)`` on ``model`` and, for each group of ``groups`` (name -> width), on
    ``model`` with that group cut to each of :func:`table_counts` (2 counts for ``macs`` and ``params``, which are
    linear), then on ``model`` with every group cut to ``floor`` channels. Latency re-measures the whole model before
    each group's points and after the last; the median is the base (see the module docstring).

    ``pairs`` > 0 (latency only): each cut model is instead measured ``pairs`` times, each right before the whole
    model, and costs the base times the median ratio of its pairs; every whole-model timing is a base sample. A
    shared machine's speed drifts by more than a single group's saving (benchmarks/baselines' MobileNetV2, whose
    groups save 1-5% each: its 195 timings during one 25-minute table spread 0.327-0.394 ms on a 2-core cloud Xeon),
    and drift moves both of a pair alike. Returns the :class:`CostTable`."""
    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}; got {resource!r}")
    if pairs < 0:
        raise ValueError(f"pairs must be >= 0 (0: single timings), got {pairs}")
    start = time.perf_counter()
    counts = {g: table_counts(n, floor, 2 if resource in LINEAR else points, round_to) for g, n in groups.items()}
    cut = [g for g, ns in counts.items() if len(ns) > 1]
    paired = pairs > 0 and resource not in LINEAR and bool(cut)
    repeat = resource not in LINEAR and bool(cut) and not paired  # exact counts need one base; pairs give many
    cut_models = sum(len(counts[g]) - 1 for g in cut) + bool(cut)  # the points and the floor model
    total = cut_models * 2 * pairs if paired else cut_models + (len(cut) + 1 if repeat else 1)
    samples, points_of = [], {}
    keep = strongest_channels(model, cut)
    with bar(total=total, desc=f"cost table ({resource})", unit="model") as shown:

        def timed(m: keras.Model) -> float:
            value = float(measure(m))
            shown.update(1)
            return value

        def value(m: keras.Model) -> float:
            """A cut model's measurement; paired: the median of its ratios to the whole model timed right after it."""
            if not paired:
                return timed(m)
            ratio, bases = paired_ratio(timed, m, model, pairs)
            samples.extend(bases)
            return ratio

        for i, g in enumerate(cut):
            if repeat or (i == 0 and not paired):
                samples.append(timed(model))
            points_of[g] = [value(rebuild(model, {g: keep(g, n)})) for n in counts[g][:-1]]
        if repeat or not cut:
            samples.append(timed(model))  # after the last group's points; the one base when nothing is cut
        lowest = value(rebuild(model, {g: keep(g, counts[g][0]) for g in cut})) if cut else samples[0]
    base = float(np.median(samples))
    if paired:  # ratios to the base
        points_of = {g: [base * v for v in values] for g, values in points_of.items()}
        lowest *= base
    curves = {}
    for g, ns in counts.items():
        values = np.minimum.accumulate(np.array(points_of.get(g, []) + [base])[::-1])[::-1]  # fewer channels never cost more
        curves[g] = GroupCurve(g, tuple(ns), tuple(float(v) for v in values))
    return CostTable(resource, base, curves, time.perf_counter() - start, min(lowest, base), tuple(samples))


def paired_ratio(measure: Measure, model: keras.Model, reference: keras.Model, pairs: int) -> tuple[float, list[float]]:
    """``pairs`` times, ``measure(model)`` and right after it ``measure(reference)``: the median of the pairs' ratios
    (drift of the machine's speed moves both of a pair alike) and the reference's measurements, in order."""
    ratios, references = [], []
    for _ in range(pairs):
        cost = measure(model)
        references.append(measure(reference))
        ratios.append(cost / references[-1])
    return float(np.median(ratios)), references


def count_macs(model: keras.Model) -> float:
    """Multiply-adds of ``model`` (:func:`edgeopt.costs.profile`)."""
    return float(profile(model).macs)


def count_params(model: keras.Model) -> float:
    """Parameters of ``model`` (:func:`edgeopt.costs.profile`)."""
    return float(profile(model).params)


def model_digest(model: keras.Model) -> str:
    """sha256 (16 hex digits) of ``model``'s architecture (its JSON config) and weight values: equal for the same model
    measured again, different after any change of a layer, a shape or a weight."""
    digest = hashlib.sha256(model.to_json().encode())
    for w in model.weights:
        digest.update(np.ascontiguousarray(w.numpy()).tobytes())
    return digest.hexdigest()[:16]


def int8_latency(calibration: np.ndarray, threads: int = 1, runs: int = 50, min_seconds: float = 1.0, keep: int = 4) -> Measure:
    """A measure: the median latency (ms) of a model converted to full-integer int8 (calibrated on ``calibration``,
    float model inputs; not verified, since the table's cut models are not trained) and timed on the LiteRT
    interpreter with ``threads`` threads (:func:`edgeopt.bench.latency.measure_latency`, random inputs).

    The int8 bytes of the last ``keep`` models converted are kept by :func:`model_digest`, so a model measured again
    (:func:`measure_table`'s repeated base, budget pruning's input model) is only timed again, not converted: the
    int8 file depends only on the model and the calibration images, which the measure fixes, and converting costs far
    more than timing (about 20 s against 1 s for that MobileNetV2)."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0 (converted models kept for re-timing; 0 converts every time), got {keep}")
    calibration = np.asarray(calibration)
    converted: OrderedDict[str, bytes] = OrderedDict()  # digest -> int8 bytes, least recently used first

    def measure(model: keras.Model) -> float:
        key = model_digest(model)
        data = converted.pop(key, None)
        if data is None:
            data = to_tflite(model, "int8", calibration, num_calibration=len(calibration), num_verify=0, min_agreement=0.0,
                             android_metadata=False).model_bytes
        if keep:
            converted[key] = data
            while len(converted) > keep:
                converted.popitem(last=False)
        return measure_latency(data, threads=threads, runs=runs, min_seconds=min_seconds).median_ms

    return measure
