"""Mixed-precision weights under a packed-size budget: ``plan_mixed_precision(model, x, y, MixedPrecisionConfig, base)
-> MixedPrecisionPlan`` measures how much each layer suffers at each candidate bit-width on validation images and
chooses one width per layer that fits the budget with the least summed sensitivity; ``plan.apply(base)`` is the
:class:`~edgeopt.compress.lowbit.LowBitConfig` (its ``layer_bits``) that :func:`~edgeopt.compress.lowbit.quantize_lowbit`
trains. Sony MCT's resource-utilization target is the model (a weights-memory budget, bits per layer from measured
sensitivity), edgeopt's quantizers and packed-size count are the means.

**Sensitivity** of layer l at b bits (``metric``), each layer alone quantized (its kernel replaced by the one the
low-bit QAT computes with, :func:`~edgeopt.compress.lowbit_quantizers.quantize_kernel`) and every other layer float:

- ``"loss"`` (default): mean cross-entropy increase over the images, in nats;
- ``"accuracy"``: top-1 drop (a fraction); coarse on few images (ties at 0 leave the choice to the sizes);
- ``"hessian"``: HAWQ-v2's second-order proxy, 1/2 * Tr(H_l) / n_l * ||Q_b(W_l) - W_l||^2 (nats), the trace of the
  loss Hessian over layer l's n_l kernel weights estimated with Hutchinson's Rademacher vectors through
  :meth:`edgeopt.compress.derivatives.LossDerivatives.hvp` (one set of vectors covers all layers: the cross-layer terms
  have zero mean). It needs no pass per width, but assumes the quantization error is spread evenly over the layer's
  curvature: an error concentrated in a few channels or weights is not what it sees (the measured loss is).

Measuring costs one pass over the images per (layer, width); the Hessian proxy ``vectors`` Hessian-vector products.

**Choice.** The packed size (:func:`~edgeopt.compress.lowbit.packed_size_bytes`) is a sum of per-layer terms plus a
constant, so the per-layer cost of each width is read off it by differences, and the choice is a multiple-choice
knapsack: minimise sum_l s(l, b_l) subject to sum_l c(l, b_l) <= budget. :func:`choose_bits` solves it exactly by dynamic
programming over integer bytes (Bellman: the best widths for layers 1..l within capacity c extend the best for layers
1..l-1 within c - c(l, b_l), for one of the K widths), in O(L K C) time and O(L C) bytes for C bytes of slack above the
smallest plan. Beyond :data:`MAX_TABLE` cells the costs are rounded *up* to a coarser byte resolution: every plan it
returns still fits the true budget, and it is optimal among plans whose rounded costs fit (the plan reports the
resolution). A greedy on sensitivity saved per byte can miss the optimum (it never gives back an early cheap step to
afford a better pair); the dynamic program cannot, and tests/test_mixed_precision.py compares it with brute force.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from edgeopt._keras import keras, tf
from edgeopt.compress.derivatives import LossDerivatives, losses
from edgeopt.compress.graph import clone_with_weights
from edgeopt.compress.lowbit import WEIGHTED, LowBitConfig, packed_size_bytes, plan_bits
from edgeopt.compress.lowbit_quantizers import BITS, RANGES, quantize_kernel
from edgeopt.compress.masks import kernel_of
from edgeopt.compress.policy import model_facts
from edgeopt.config import Config

L = keras.layers
METRICS = ("loss", "accuracy", "hessian")
MAX_TABLE = 50_000_000  # cells (bytes) of the choice table before costs are rounded to a coarser resolution


@dataclass(frozen=True)
class MixedPrecisionConfig(Config):
    """How :func:`plan_mixed_precision` chooses bits per layer.

    - ``budget_fraction``: the packed-size budget as a fraction in (0, 1] of the model's packed size with every kernel
      at 8 bits (``packed_size_bytes(model, 8)``); ``budget_bytes`` > 0 gives it in bytes instead;
    - ``bits``: the candidate widths (each of 1, 2, 4, 8);
    - ``metric``: ``"loss"``, ``"accuracy"`` or ``"hessian"`` (module docstring);
    - ``samples``: validation images the sensitivity is measured on; ``vectors``: Hutchinson vectors (``"hessian"``);
    - ``choose_first_last``: also choose the first convolution's and the classifier's widths (default: they keep the
      base config's ``first_last_bits``).
    """

    budget_fraction: float = 0.6
    budget_bytes: int = 0
    bits: tuple[int, ...] = (8, 4, 2)
    metric: str = "loss"
    samples: int = 512
    vectors: int = 16
    choose_first_last: bool = False

    def __post_init__(self):
        if isinstance(self.budget_fraction, bool) or not isinstance(self.budget_fraction, (int, float)) or not 0 < self.budget_fraction <= 1:
            raise ValueError(f"MixedPrecisionConfig.budget_fraction must be in (0, 1] (of the 8-bit packed size), got {self.budget_fraction!r}")
        if isinstance(self.budget_bytes, bool) or not isinstance(self.budget_bytes, int) or self.budget_bytes < 0:
            raise ValueError(f"MixedPrecisionConfig.budget_bytes must be an integer >= 0 (0: use budget_fraction), got {self.budget_bytes!r}")
        bits = tuple(self.bits) if isinstance(self.bits, (list, tuple)) else None
        if not bits or any(isinstance(b, bool) or b not in BITS for b in bits) or len(set(bits)) != len(bits):
            raise ValueError(f"MixedPrecisionConfig.bits must be distinct widths among {', '.join(map(str, BITS))}, e.g. [8, 4, 2]; got {self.bits!r}")
        object.__setattr__(self, "bits", tuple(sorted(bits, reverse=True)))
        if self.metric not in METRICS:
            raise ValueError(f"MixedPrecisionConfig.metric must be one of {', '.join(METRICS)}; got {self.metric!r}")
        for name in ("samples", "vectors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MixedPrecisionConfig.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class MixedPrecisionPlan:
    """Bits per Conv2D / DepthwiseConv2D / Dense layer (model order) and what they cost: ``size_bytes`` is
    ``packed_size_bytes(model, layer_bits)``, at most ``budget_bytes``; ``int8_size_bytes`` the same count with every
    kernel at 8 bits; ``sensitivity`` the sum over layers of ``sensitivities[layer][bits]`` (the metric's unit) for
    the chosen widths (fixed layers count 0); ``resolution_bytes`` 1 when the choice is exact (module docstring)."""

    layer_bits: dict[str, int]
    size_bytes: int
    budget_bytes: int
    int8_size_bytes: int
    sensitivity: float
    metric: str
    sensitivities: dict[str, dict[int, float]] = field(default_factory=dict)
    fixed: tuple[str, ...] = ()
    resolution_bytes: int = 1

    def apply(self, base: LowBitConfig = LowBitConfig()) -> LowBitConfig:
        """``base`` with this plan as its ``layer_bits`` (every layer named, so ``bits`` and ``depthwise_bits`` no longer matter)."""
        return replace(base, layer_bits=tuple(self.layer_bits.items()))

    def to_dict(self) -> dict:
        """Plain data (JSON keys are strings: ``sensitivities[layer]["4"]``)."""
        return {"layer_bits": dict(self.layer_bits), "size_bytes": self.size_bytes, "budget_bytes": self.budget_bytes,
                "int8_size_bytes": self.int8_size_bytes, "sensitivity": self.sensitivity, "metric": self.metric,
                "sensitivities": {n: {str(b): v for b, v in s.items()} for n, s in self.sensitivities.items()},
                "fixed": list(self.fixed), "resolution_bytes": self.resolution_bytes}


# ---------------------------------------------------------------------------------------------- sensitivity


def _quantized(kernel: np.ndarray, bits: int, depthwise: bool, ranges: str) -> np.ndarray:
    return quantize_kernel(tf.constant(kernel), bits, ranges, depthwise).numpy()


def _mean_loss_and_top1(model, x: np.ndarray, y: np.ndarray, batch_size: int, step) -> tuple[float, float]:
    total_loss = correct = 0.0
    for start in range(0, len(x), batch_size):
        loss, hits = step(x[start:start + batch_size], y[start:start + batch_size])
        total_loss, correct = total_loss + float(loss), correct + float(hits)
    return total_loss / len(x), correct / len(x)


def hessian_traces(model: keras.Model, names: list[str], x: np.ndarray, y: np.ndarray, vectors: int = 16, batch_size: int = 128,
                   seed: int = 0) -> dict[str, float]:
    """Hutchinson estimates of Tr(H_l), the trace of the Hessian of the mean cross-entropy over ``x`` restricted to the
    kernel of each layer in ``names``: the mean over ``vectors`` Rademacher vectors v of v_l . (H v)_l (inference mode;
    batches of ``batch_size`` images weighted by their size)."""
    derivatives = LossDerivatives(model, names)
    rng = np.random.default_rng(seed)
    shapes = [tuple(k.shape) for k in derivatives.kernels]
    vs = [tf.constant(rng.choice(np.array([-1.0, 1.0], np.float32), size=(vectors, *s))) for s in shapes]
    totals = np.zeros(len(names))
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        hv = derivatives.hvp(tf.constant(xb), tf.constant(yb), vs)
        totals += len(xb) * np.array([float(tf.reduce_sum(v * h)) / vectors for v, h in zip(vs, hv)])
    return {n: float(t / len(x)) for n, t in zip(names, totals)}


def measure_sensitivity(model: keras.Model, x: np.ndarray, y: np.ndarray, layers: list[str], bits: tuple[int, ...] = (8, 4, 2),
                        metric: str = "loss", ranges: str = "mse", vectors: int = 16, batch_size: int = 128) -> dict[str, dict[int, float]]:
    """``{layer: {bits: sensitivity}}`` for each of ``layers`` (Conv2D / DepthwiseConv2D / Dense names) at each width of
    ``bits`` on images ``x`` with labels ``y``: see the module docstring for ``metric``; ``ranges`` is the low-bit
    quantizer's range rule (:class:`~edgeopt.compress.lowbit.LowBitConfig`). ``model`` is not modified (a copy is)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if ranges not in RANGES:
        raise ValueError(f"ranges must be one of {', '.join(RANGES)}; got {ranges!r}")
    copy = clone_with_weights(model)
    kinds = {n: copy.get_layer(n) for n in layers}
    bad = [n for n, layer in kinds.items() if not isinstance(layer, WEIGHTED)]
    if bad:
        raise ValueError(f"sensitivity is measured on Conv2D/DepthwiseConv2D/Dense layers; {', '.join(bad)} is not one")
    depthwise = {n: isinstance(layer, L.DepthwiseConv2D) for n, layer in kinds.items()}
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if metric == "hessian":
        traces = hessian_traces(copy, layers, x, y, vectors, batch_size)
        out = {}
        for n in layers:
            w = kernel_of(copy, n).numpy()
            out[n] = {b: 0.5 * traces[n] / w.size * float(np.sum((_quantized(w, b, depthwise[n], ranges) - w) ** 2)) for b in bits}
        return out

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        each = losses(copy, xb, yb)
        out = copy(xb, training=False)
        return tf.reduce_sum(each), tf.reduce_sum(tf.cast(tf.argmax(out, -1) == tf.cast(yb, tf.int64), tf.float32))

    ref_loss, ref_top1 = _mean_loss_and_top1(copy, x, y, batch_size, step)
    out = {}
    for n in layers:
        var = kernel_of(copy, n)
        original = var.numpy()
        out[n] = {}
        for b in bits:
            var.assign(_quantized(original, b, depthwise[n], ranges))
            loss, top1 = _mean_loss_and_top1(copy, x, y, batch_size, step)
            out[n][b] = loss - ref_loss if metric == "loss" else ref_top1 - top1
        var.assign(original)  # the next layer is measured with this one float again
    return out


# ---------------------------------------------------------------------------------------------- choice


def layer_costs(model: keras.Model, options: Mapping[str, tuple[int, ...]], fixed: Mapping[str, int] = {}) -> tuple[int, dict[str, dict[int, int]]]:
    """The packed size as ``base + sum_l cost[l][b_l]``: ``base`` (bytes) is ``packed_size_bytes`` with every free layer
    (``options``: layer -> candidate widths) at its first candidate and the ``fixed`` layers at theirs, ``cost[l][b]``
    the bytes layer l adds at b bits over that (read off :func:`~edgeopt.compress.lowbit.packed_size_bytes` by
    differences: one count of bytes, here and in the budget check)."""
    start = {**{n: opts[0] for n, opts in options.items()}, **dict(fixed)}
    base = packed_size_bytes(model, start)
    return base, {n: {b: packed_size_bytes(model, {**start, n: b}) - base for b in opts} for n, opts in options.items()}


def choose_bits(costs: Mapping[str, Mapping[int, int]], sensitivity: Mapping[str, Mapping[int, float]], capacity: int,
                max_table: int = MAX_TABLE) -> tuple[dict[str, int], int]:
    """The widths ``{layer: bits}`` minimising ``sum sensitivity[l][b_l]`` subject to ``sum costs[l][b_l] <= capacity``
    (integer bytes; costs may be negative), exactly, by dynamic programming (module docstring), and the byte
    resolution used (1 unless the table would exceed ``max_table`` cells; coarser resolutions round costs up, so the
    result still fits). Ties go to the wider width. Raises ValueError when even the cheapest widths do not fit."""
    names = list(costs)
    options = [sorted(costs[n], reverse=True) for n in names]  # wider widths first: they win ties
    floor = [min(costs[n][b] for b in opts) for n, opts in zip(names, options)]
    slack = capacity - sum(floor)
    if slack < 0:
        raise ValueError(f"the budget is {-slack} bytes below the smallest plan (every layer at its cheapest width); "
                         f"raise the budget or add narrower widths")
    resolution = max(1, math.ceil(len(names) * (slack + 1) / max_table))
    cap = slack // resolution
    extra = [[-(-(costs[n][b] - f) // resolution) for b in opts] for n, opts, f in zip(names, options, floor)]  # ceil
    best = np.zeros(cap + 1)  # best[c]: least summed sensitivity of the layers so far within c units of slack
    choice = np.zeros((len(names), cap + 1), np.uint8)
    for i, (n, opts) in enumerate(zip(names, options)):
        new = np.full(cap + 1, np.inf)
        for k, (b, d) in enumerate(zip(opts, extra[i])):
            if d > cap:
                continue
            candidate = np.full(cap + 1, np.inf)
            candidate[d:] = best[:cap + 1 - d] + float(sensitivity[n][b])
            better = candidate < new
            new[better], choice[i, better] = candidate[better], k
        best = new
    plan, c = {}, cap
    for i in reversed(range(len(names))):
        k = int(choice[i, c])
        plan[names[i]] = options[i][k]
        c -= extra[i][k]
    return {n: plan[n] for n in names}, resolution


def plan_mixed_precision(model: keras.Model, x: np.ndarray, y: np.ndarray, config: MixedPrecisionConfig = MixedPrecisionConfig(),
                         base: LowBitConfig = LowBitConfig()) -> MixedPrecisionPlan:
    """Bits per layer of the plain (float) ``model`` that meet ``config``'s packed-size budget with the least summed
    sensitivity measured on validation images ``x``, labels ``y``. The first convolution and the classifier keep
    ``base.first_last_bits`` (unless ``config.choose_first_last``) and the layers of ``base.layer_bits`` their widths;
    sensitivity uses ``base.ranges``. ``plan.apply(base)`` is the LowBitConfig to train."""
    every = plan_bits(model, base)  # validates base.layer_bits against the model
    facts = model_facts(model)
    fixed = dict(base.layer_bits)
    if not config.choose_first_last:
        fixed = {**{n: base.first_last_bits for n in (facts.first_conv, facts.classifier) if n in every}, **fixed}
    free = [n for n in every if n not in fixed]
    int8 = packed_size_bytes(model, 8)
    budget = config.budget_bytes or int(math.floor(config.budget_fraction * int8))
    base_bytes, costs = layer_costs(model, {n: config.bits for n in free}, fixed)
    smallest = base_bytes + sum(min(c.values()) for c in costs.values())
    if smallest > budget:  # before the measurement: it is the slow part
        raise ValueError(f"packed-size budget {budget:,} B cannot be met: the smallest plan with widths {list(config.bits)} takes "
                         f"{smallest:,} B ({smallest / int8:.3f} of the 8-bit {int8:,} B); raise the budget or add narrower widths")
    x, y = x[:config.samples], y[:config.samples]
    table = measure_sensitivity(model, x, y, free, config.bits, config.metric, base.ranges, config.vectors) if free else {}
    chosen, resolution = choose_bits(costs, table, budget - base_bytes)
    layer_bits = {n: chosen.get(n, fixed.get(n)) for n in every}
    size = packed_size_bytes(model, layer_bits)
    if size != base_bytes + sum(costs[n][b] for n, b in chosen.items()) or size > budget:  # the separable count is the packed size
        raise AssertionError(f"packed size {size} B does not match its per-layer sum or exceeds the budget {budget} B")
    return MixedPrecisionPlan(layer_bits, size, budget, int8, float(sum(table[n][b] for n, b in chosen.items())), config.metric,
                              table, tuple(fixed), resolution)
