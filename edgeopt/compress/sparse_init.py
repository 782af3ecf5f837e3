"""Sparse training from scratch, part 1: how sparsity is spread over layers and which weights a mask keeps at
initialization, then training with that mask held fixed.

* Distributions over layers (RigL, Evci et al. arXiv 1911.11134, sec. 3): ``uniform`` (every layer at the target
  sparsity) and ``erk`` (Erdős–Rényi-kernel: layer density proportional to (n_in + n_out + k_h + k_w) /
  (n_in n_out k_h k_w), solved so that the overall sparsity is the target; a layer whose density would exceed 1 is
  kept dense and the rest re-solved, as ``sparse_utils.get_sparsities_erdos_renyi`` does). ``dense_first`` leaves
  the first convolution out of the masks (RigL's default), so the target is over the layers that are masked.
* Masks at initialization: random (the start of SET and RigL), SNIP (Lee et al. arXiv 1810.02340: keep the largest
  connection sensitivities |g * w| on real data) and GraSP (Wang et al. arXiv 2002.07376: score -w * (H g), remove
  the highest, as the official code ``pruner/GraSP.py`` does, with its temperature on the logits).
  SNIP and GraSP rank globally (``distribution="global"``, the papers) or per layer with the counts of a distribution.
  A global ranking can cut a layer (nearly) whole (*layer collapse*, Tanaka et al. arXiv 2006.05467: here, a layer
  left with fewer weights than output channels; benchmarks/pruning_criteria.py records each run's layer sparsities:
  SNIP at 90% on its MobileNetV2 left ``head_conv`` with 0 or 4 of its 143,360 weights and trained to chance);
  ``max_layer_sparsity`` caps each layer's share of zeros (the rest of the count goes to the other layers in the
  same ranking), and training from masks that collapse a layer says so before it starts.

Masks are the dicts of :mod:`edgeopt.compress.masks`; training keeps them with its :class:`MaskCallback`, so the
result is a plain Keras model whose zeros survive export.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from edgeopt._keras import keras, tf
from edgeopt.compress import policy as _policy
from edgeopt.compress.derivatives import KeepState, LossDerivatives
from edgeopt.compress.graph import clone_with_weights, require_functional
from edgeopt.compress.masks import (Masks, MaskCallback, apply_masks, capped_global_counts, collapsed_layers, kernel_of, mask_sparsity, masks_of,
                                    output_channels, prunable_layers, prune_by_score)
from edgeopt.config import Config
from edgeopt.train import TrainConfig, fit

DISTRIBUTIONS = ("uniform", "erk")
RANKINGS = DISTRIBUTIONS + ("global",)  # SNIP / GraSP may also rank all layers together


# ---- which layers, how sparse each ---------------------------------------------------------------------------


def sparse_layers(model: keras.Model, dense_first: bool = True) -> list[str]:
    """The layers sparse training masks: every convolution and dense layer, less the first convolution when
    ``dense_first`` (few weights that see the raw pixels; RigL leaves it dense)."""
    names = prunable_layers(model)
    first = _policy.model_facts(model).first_conv
    return [n for n in names if not (dense_first and n == first)]


def kernel_shapes(model: keras.Model, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    return {n: tuple(int(d) for d in kernel_of(model, n).shape) for n in names}


def erk_densities(shapes: Mapping[str, Sequence[int]], sparsity: float, power: float = 1.0) -> dict[str, float]:
    """Fraction of weights each layer keeps under Erdős–Rényi-kernel: ``eps * (sum(shape) / prod(shape)) ** power``
    with one ``eps`` for all layers such that the kept weights are ``(1 - sparsity)`` of all of them. While the
    layer(s) of largest raw density would exceed density 1 they are made dense (their weights count in the budget)
    and ``eps`` is solved again over the rest. ``power`` < 1 softens ERK towards uniform (RigL's erk_power_scale).
    """
    _check_sparsity(sparsity)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: (sum(s) / sizes[n]) ** power for n, s in shapes.items()}
    total, dense = sum(sizes.values()), set()
    while True:
        rest = [n for n in shapes if n not in dense]
        if not rest:  # cannot happen for sparsity > 0: the budget is below the dense count
            raise ValueError(f"no layer left to make sparse at sparsity {sparsity}")
        eps = ((1.0 - sparsity) * total - sum(sizes[n] for n in dense)) / sum(raw[n] * sizes[n] for n in rest)
        top = max(raw[n] for n in rest)
        if eps * top <= 1.0:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= {n for n in rest if raw[n] == top}


def layer_sparsities(shapes: Mapping[str, Sequence[int]], sparsity: float, distribution: str = "erk") -> dict[str, float]:
    """Target fraction of zeros per layer: ``uniform`` (all at ``sparsity``) or ``erk`` (:func:`erk_densities`)."""
    _check_sparsity(sparsity)
    if distribution == "uniform":
        return dict.fromkeys(shapes, float(sparsity))
    if distribution == "erk":
        return {n: 1.0 - d for n, d in erk_densities(shapes, sparsity).items()}
    raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}; got {distribution!r}")


def zero_counts(shapes: Mapping[str, Sequence[int]], sparsities: Mapping[str, float]) -> dict[str, int]:
    """Whole numbers of zeros per layer, each the floor or ceiling of ``sparsity * size``, summing to the rounded
    total (largest remainders get the ceiling): the overall count is exact where RigL's per-layer floor loses up to
    one weight per layer."""
    real = {n: sparsities[n] * math.prod(s) for n, s in shapes.items()}
    counts = {n: int(math.floor(r)) for n, r in real.items()}
    short = int(round(sum(real.values()))) - sum(counts.values())
    for n in sorted(real, key=lambda n: real[n] - counts[n], reverse=True)[:max(short, 0)]:
        counts[n] += 1
    return counts


def masks_from_scores(scores: Mapping[str, np.ndarray], counts: Mapping[str, int]) -> Masks:
    """Masks zeroing exactly ``counts[name]`` weights of each layer, those of lowest score (ties by position)."""
    ones = {n: np.ones(np.shape(scores[n]), np.float32) for n in counts}
    return prune_by_score(scores, ones, {n: counts[n] / ones[n].size for n in counts})


def random_masks(model: keras.Model, names: Sequence[str], sparsity: float, distribution: str = "erk", seed: int = 0) -> Masks:
    """Uniformly random masks with each layer's count of zeros from ``distribution`` (SET's and RigL's start)."""
    shapes = kernel_shapes(model, names)
    rng = np.random.default_rng(seed)
    return masks_from_scores({n: rng.random(s) for n, s in shapes.items()}, zero_counts(shapes, layer_sparsities(shapes, sparsity, distribution)))


def masks_at_init(scores: Mapping[str, np.ndarray], sparsity: float, distribution: str, max_layer_sparsity: float | None = None) -> Masks:
    """Masks keeping the highest ``scores``: one global ranking (``global``, ``round(sparsity * all)`` zeros; with
    ``max_layer_sparsity``, no layer above it: :func:`~edgeopt.compress.masks.capped_global_counts`) or the per-layer
    counts of ``uniform`` / ``erk``."""
    if distribution == "global" and max_layer_sparsity is not None:
        return masks_from_scores(scores, capped_global_counts(scores, sparsity, max_layer_sparsity))
    if distribution == "global":
        return prune_by_score(scores, {n: np.ones(np.shape(s), np.float32) for n, s in scores.items()}, sparsity, scope="global")
    shapes = {n: np.shape(s) for n, s in scores.items()}
    return masks_from_scores(scores, zero_counts(shapes, layer_sparsities(shapes, sparsity, distribution)))


# ---- gradients on real data ------------------------------------------------------------------------------------


def training_batches(splits, count: int) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """The first ``count`` batches of the training split (images, labels)."""
    return list(splits.train.take(count))


def loss_gradients(model: keras.Model, batches, names: Sequence[str], derivatives: LossDerivatives | None = None) -> dict[str, np.ndarray]:
    """Gradient of the mean training loss over ``batches`` with respect to each named kernel, in training mode
    (batch statistics, the gradient a training step sees, as SNIP's, GraSP's and RigL's code take it) with the
    moving statistics left as they were. :mod:`edgeopt.compress.saliency` differentiates in inference mode instead,
    so for a model without batch norm SNIP's score equals its per-weight ``taylor`` on one batch. ``derivatives``:
    a ``LossDerivatives(model, names, training=True)`` to reuse (traced once) when called repeatedly, as RigL does."""
    d = derivatives or LossDerivatives(model, list(names), training=True)
    total = [np.zeros(k.shape, np.float64) for k in d.kernels]
    with KeepState(model):
        for x, y in batches:
            total = [acc + g.numpy() for acc, g in zip(total, d.gradient(x, y))]
    return {n: (g / len(batches)).astype(np.float32) for n, g in zip(names, total)}


def snip_scores(model: keras.Model, batches, names: Sequence[str]) -> dict[str, np.ndarray]:
    """SNIP's connection sensitivity |dL/dw * w| of each kernel weight (the normalization by the sum, which does
    not change the ranking, is left out)."""
    grads = loss_gradients(model, batches, names)
    return {n: np.abs(grads[n] * kernel_of(model, n).numpy()) for n in names}


def grasp_scores(model: keras.Model, batches, names: Sequence[str], temperature: float = 200.0) -> dict[str, np.ndarray]:
    """GraSP's score ``-w * (H g)`` of each kernel weight (the weights GraSP removes are the *highest*): ``g`` is the
    gradient of the cross-entropy of ``logits / temperature`` over ``batches``, ``H g`` the Hessian-gradient product,
    both taken over every convolution and dense kernel of the model as the official code does."""
    every = prunable_layers(model)
    d = LossDerivatives(model, every, training=True, temperature=temperature)
    with KeepState(model):
        g = [tf.zeros_like(k) for k in d.kernels]
        for x, y in batches:
            g = [a + b for a, b in zip(g, d.gradient(x, y))]
        g = [tf.stop_gradient(v / len(batches))[None] for v in g]  # one vector per kernel: (1, *kernel shape)
        hg = [tf.zeros_like(k) for k in d.kernels]
        for x, y in batches:
            hg = [a + b[0] for a, b in zip(hg, d.hvp(x, y, g))]
    kernels = d.kernels
    by_name = {n: (-k.numpy() * (h / len(batches)).numpy()) for n, k, h in zip(every, kernels, hg)}
    return {n: by_name[n] for n in names}


# ---- configs, results, training with fixed masks ---------------------------------------------------------------


@dataclass(frozen=True)
class SparseConfig(Config):
    """What every sparse-training method shares: the target ``sparsity`` (fraction of zeros over the masked
    layers), its ``distribution`` over layers, whether the first convolution stays dense, the training
    (``train``: epochs, learning rate, ... of :class:`edgeopt.train.TrainConfig`) and the seed of the mask."""

    sparsity: float = 0.9
    distribution: str = "erk"
    dense_first: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", TrainConfig(**self.train))
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1) (the fraction of masked weights that are zero), got {self.sparsity}")
        if self.distribution not in self._distributions():
            raise ValueError(f"distribution must be one of {', '.join(self._distributions())}; got {self.distribution!r}")

    @classmethod
    def _distributions(cls) -> tuple[str, ...]:
        return DISTRIBUTIONS


@dataclass(frozen=True)
class SNIPConfig(SparseConfig):
    """SNIP: ``batches`` training batches for the sensitivities; ``distribution="global"`` ranks all layers
    together as the paper does, ``uniform`` / ``erk`` keep each layer's count of that distribution.
    ``max_layer_sparsity`` (global ranking only; None = the paper's uncapped ranking): no layer loses more than this
    fraction of its weights, e.g. 0.98 as global magnitude pruning's default, so none is cut whole."""

    distribution: str = "global"
    batches: int = 1
    max_layer_sparsity: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.batches < 1:
            raise ValueError(f"batches must be >= 1 (training batches for the gradient), got {self.batches}")
        if self.max_layer_sparsity is not None:
            if self.distribution != "global":
                raise ValueError(f"max_layer_sparsity caps the global ranking; distribution {self.distribution!r} sets each layer's sparsity "
                                 "itself: leave max_layer_sparsity unset or use distribution 'global'")
            if not self.sparsity <= self.max_layer_sparsity < 1.0:
                raise ValueError(f"max_layer_sparsity must be in [sparsity, 1) = [{self.sparsity:g}, 1) (at or above the overall target, "
                                 f"below a whole layer), got {self.max_layer_sparsity}")

    @classmethod
    def _distributions(cls) -> tuple[str, ...]:
        return RANKINGS


@dataclass(frozen=True)
class GraSPConfig(SNIPConfig):
    """GraSP: as SNIP, plus ``temperature`` dividing the logits (200 in the official code)."""

    temperature: float = 200.0

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (it divides the logits; the official code uses 200), got {self.temperature}")


@dataclass(frozen=True)
class SparseTrainResult:
    """A sparse training run: ``sparsity`` = fraction of zeros the final masks enforce over the masked layers
    (``layer_sparsity`` per layer), ``zero_fraction`` = fraction of those kernels' weights that are zero after training
    (at least ``sparsity``: a live weight may be exactly 0 too, e.g. one regrown where its gradient stayed 0),
    validation top-1 (fraction) after training, training seconds; for dynamic methods the mask updates made and the
    fraction of masked weights whose mask differs between the start and the end; ``collapsed_layers``: the layers the
    final masks leave with fewer weights than output channels (layer collapse), with the weights each keeps."""

    method: str
    sparsity: float
    layer_sparsity: dict[str, float]
    zero_fraction: float
    val_top1: float | None
    seconds: float
    config: dict
    mask_updates: int = 0
    changed_fraction: float = 0.0
    collapsed_layers: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def train_with_masks(model: keras.Model, splits, masks: Masks, config: SparseConfig, method: str, callback: MaskCallback | None = None,
                     ) -> SparseTrainResult:
    """Train ``model`` in place from ``masks`` (kept by ``callback``, a fixed :class:`MaskCallback` by default) and
    measure what it became."""
    callback = callback or MaskCallback(masks)
    dead = collapsed_layers(model, masks)
    if dead:
        print(f"{method}: layer collapse: the masks leave " + ", ".join(f"{n} {k} weights for {output_channels(model, n)} output channels"
                                                                      for n, k in dead.items())
              + "; the model may train to chance. Cap each layer with max_layer_sparsity (e.g. 0.98) or use distribution 'erk'", flush=True)
    apply_masks(model, masks)
    start = time.perf_counter()
    result = fit(model, splits, config.train, callbacks=[callback])
    seconds = time.perf_counter() - start
    final, size = callback.masks, sum(m.size for m in masks.values())
    zeros = sum(int((m == 0).sum()) for m in masks_of(model, list(masks)).values())
    changed = sum(int((masks[n] != final[n]).sum()) for n in masks)
    return SparseTrainResult(method, sum(int((m == 0).sum()) for m in final.values()) / size, mask_sparsity(final), zeros / size, result.val_top1,
                             seconds, config.to_dict(), len(getattr(callback, "updates", ())), changed / size, collapsed_layers(model, final))


def sparse_copy(model: keras.Model, config: SparseConfig, where: str) -> tuple[keras.Model, list[str]]:
    """A copy of ``model`` to train (the input is never touched) and the names of its layers to mask."""
    require_functional(model, where)
    work = clone_with_weights(model)
    return work, sparse_layers(work, config.dense_first)


def snip(model: keras.Model, splits, config: SNIPConfig = SNIPConfig()) -> tuple[keras.Model, SparseTrainResult]:
    """SNIP: masks from the connection sensitivities of the (untrained) ``model`` on ``config.batches`` training
    batches, then training with the masks fixed. Returns a trained copy (plain Keras, exact zeros) and its result."""
    work, names = sparse_copy(model, config, "edgeopt.compress.sparse_init.snip")
    masks = masks_at_init(snip_scores(work, training_batches(splits, config.batches), names), config.sparsity, config.distribution,
                          config.max_layer_sparsity)
    return work, train_with_masks(work, splits, masks, config, "snip")


def grasp(model: keras.Model, splits, config: GraSPConfig = GraSPConfig()) -> tuple[keras.Model, SparseTrainResult]:
    """GraSP: remove the weights of highest ``-w * (H g)`` (those whose removal least reduces gradient flow), then
    train with the masks fixed. Returns a trained copy and its result."""
    work, names = sparse_copy(model, config, "edgeopt.compress.sparse_init.grasp")
    scores = grasp_scores(work, training_batches(splits, config.batches), names, config.temperature)
    masks = masks_at_init({n: -s for n, s in scores.items()}, config.sparsity, config.distribution,  # keep = lowest GraSP score
                          config.max_layer_sparsity)
    return work, train_with_masks(work, splits, masks, config, "grasp")


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
