"""Fixed binary masks over kernels, kept exact through training: the one implementation every unstructured
pruning without TF-MOT's wrappers uses (lottery tickets, saliency criteria, SNIP/GraSP, SET/RigL).

A mask set is ``{layer name: float32 array of 0/1 shaped like the layer's kernel}`` (1 = kept). Masked models
are plain Keras models (nothing to strip): the pruned weights hold exact zeros, applied before training and
after every optimizer step by :class:`MaskCallback`, and those zeros survive into the int8 .tflite like the
zeros of TF-MOT's stripped models. Which weights to drop comes from a *score* per weight (higher = keep):
:func:`prune_by_score` removes a fraction of what each mask still keeps, per layer or ranked globally.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from edgeopt._keras import keras
from edgeopt.compress import policy as _policy

Masks = dict[str, np.ndarray]
SCOPES = ("layer", "global")


def prunable_layers(model: keras.Model) -> list[str]:
    """Every convolution and dense layer (the first convolution and the classifier included)."""
    return _policy.select_layers(model, "default", _policy.PolicyOptions(prune_first_conv=True, prune_classifier=True), {})


def kernel_of(model: keras.Model, name: str):
    """The kernel variable of layer ``name`` (``depthwise_kernel`` for depthwise convolutions)."""
    layer = model.get_layer(name)
    kernel = getattr(layer, "depthwise_kernel", None) if isinstance(layer, keras.layers.DepthwiseConv2D) else getattr(layer, "kernel", None)
    if kernel is None:
        raise ValueError(f"layer {name!r} ({type(layer).__name__}) has no kernel to mask; mask convolution, depthwise or dense layers")
    return kernel


def output_channels(model: keras.Model, name: str) -> int:
    """How many output channels layer ``name``'s kernel feeds: the last axis, times the input channels for a
    depthwise convolution (each input channel has its own ``depth_multiplier`` filters)."""
    shape = tuple(kernel_of(model, name).shape)
    return int(shape[-1] * (shape[-2] if isinstance(model.get_layer(name), keras.layers.DepthwiseConv2D) else 1))


def collapsed_layers(model: keras.Model, masks: Masks) -> dict[str, int]:
    """Layers whose mask keeps fewer weights than the layer has output channels (layer collapse: at least that
    difference of its outputs no longer depends on the input; all of them when it keeps none), with the weights
    each keeps."""
    kept = {n: int(np.count_nonzero(m)) for n, m in masks.items()}
    return {n: k for n, k in kept.items() if k < output_channels(model, n)}


def dense_masks(model: keras.Model, names: list[str] | None = None) -> Masks:
    """All-ones masks for ``names`` (default: :func:`prunable_layers`)."""
    names = prunable_layers(model) if names is None else names
    return {n: np.ones(kernel_of(model, n).shape, np.float32) for n in names}


def masks_of(model: keras.Model, names: list[str] | None = None) -> Masks:
    """The masks a model's zeros describe (1 where the kernel is non-zero)."""
    names = prunable_layers(model) if names is None else names
    return {n: (kernel_of(model, n).numpy() != 0).astype(np.float32) for n in names}


def apply_masks(model: keras.Model, masks: Masks) -> None:
    """Multiply each masked kernel of ``model`` by its mask, in place."""
    for name, mask in masks.items():
        kernel = kernel_of(model, name)
        kernel.assign(kernel.numpy() * mask)


def remaining(masks: Masks) -> float:
    """Fraction of the masked weights still alive."""
    return sum(float(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values())


def mask_sparsity(masks: Masks) -> dict[str, float]:
    """Fraction of zeros in each mask."""
    return {n: 1.0 - float(m.sum()) / m.size for n, m in masks.items()}


def prune_by_score(scores: Mapping[str, np.ndarray], masks: Masks, fraction: float | Mapping[str, float], scope: str = "layer") -> Masks:
    """New masks removing ``fraction`` of the weights each mask still keeps, those of lowest score.

    ``fraction``: one number for every layer, or a number per layer (layers absent keep their mask).
    ``scope="layer"`` removes that fraction from each layer (ties broken by position, stably);
    ``"global"`` ranks the alive weights of all layers together and removes ``fraction`` of them (one float
    only; scores must then be comparable across layers). ``scores`` and ``masks`` have the same keys and shapes.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}")
    missing = [n for n in masks if n not in scores or np.shape(scores[n]) != masks[n].shape]
    if missing:
        raise ValueError(f"scores missing or shaped unlike the mask for layers {', '.join(missing)}; give one score per kernel weight")
    if scope == "global":
        if not isinstance(fraction, (int, float)):
            raise ValueError("scope='global' takes one fraction for all layers, not one per layer")
        _check_fraction(float(fraction), "fraction")
        alive = np.concatenate([np.asarray(scores[n], np.float64)[masks[n] > 0] for n in masks])
        k = int(round(fraction * alive.size))
        if k == 0:
            return {n: m.astype(np.float32) for n, m in masks.items()}
        order = np.argsort(alive, kind="stable")
        drop_global = np.zeros(alive.size, bool)
        drop_global[order[:k]] = True
        new, start = {}, 0
        for n, m in masks.items():
            flat = m.ravel().astype(np.float32).copy()
            idx = np.flatnonzero(flat > 0)
            flat[idx[drop_global[start:start + idx.size]]] = 0
            start += idx.size
            new[n] = flat.reshape(m.shape)
        return new
    fractions = dict.fromkeys(masks, float(fraction)) if isinstance(fraction, (int, float)) else {n: float(f) for n, f in fraction.items()}
    unknown = [n for n in fractions if n not in masks]
    if unknown:
        raise ValueError(f"fraction given for layers without a mask: {', '.join(unknown)}")
    new = {}
    for n, m in masks.items():
        rate = fractions.get(n, 0.0)
        _check_fraction(rate, f"fraction for layer {n!r}")
        flat = m.ravel().astype(np.float32).copy()
        alive_idx = np.flatnonzero(flat > 0)
        k = int(round(rate * alive_idx.size))
        flat[alive_idx[np.argsort(np.asarray(scores[n]).ravel()[alive_idx], kind="stable")[:k]]] = 0
        new[n] = flat.reshape(m.shape)
    return new


def capped_global_counts(scores: Mapping[str, np.ndarray], fraction: float, cap: float) -> dict[str, int]:
    """How many weights of each layer one global ranking of ``scores`` (lowest first) removes when it removes
    ``round(fraction * all)`` of them, no layer losing more than ``floor(cap * size)`` (so none is cut whole for
    ``cap`` < 1 - 1 / size): a layer the ranking would cut beyond its cap is held at the cap and the rest of the
    count goes to the other layers in the same ranking, until no layer is over (ties by position, stably)."""
    _check_fraction(float(fraction), "fraction")
    if not 0.0 < cap <= 1.0:
        raise ValueError(f"the per-layer cap must be in (0, 1], got {cap}")
    sizes = {n: int(np.size(s)) for n, s in scores.items()}
    limit = {n: int(np.floor(cap * size)) for n, size in sizes.items()}
    k = int(round(fraction * sum(sizes.values())))
    if k > sum(limit.values()):
        raise ValueError(f"cannot remove {fraction:.4g} of the weights with no layer above {cap:.4g}: at most "
                         f"{sum(limit.values()) / max(sum(sizes.values()), 1):.4g} fits; raise the per-layer cap or lower the sparsity")
    capped: dict[str, int] = {}
    while True:
        rest = [n for n in scores if n not in capped]
        budget = k - sum(capped.values())
        flat = np.concatenate([np.asarray(scores[n], np.float64).ravel() for n in rest]) if rest else np.zeros(0)
        starts = np.cumsum([0] + [sizes[n] for n in rest[:-1]])  # where each layer begins in ``flat``
        owner = np.searchsorted(starts, np.argsort(flat, kind="stable")[:budget], side="right") - 1
        counts = np.bincount(owner, minlength=len(rest))
        over = {n: limit[n] for i, n in enumerate(rest) if counts[i] > limit[n]}
        if not over:
            return {n: capped[n] if n in capped else int(counts[rest.index(n)]) for n in scores}
        capped |= over


def _check_fraction(value: float, what: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {value}")


def magnitude_scores(model: keras.Model, names) -> dict[str, np.ndarray]:
    """|w| of each kernel: magnitude pruning's score."""
    return {n: np.abs(kernel_of(model, n).numpy()) for n in names}


class MaskCallback(keras.callbacks.Callback):
    """Multiplies masked kernels by their masks after every training batch (and once at the start).
    ``masks`` may be replaced between batches (dynamic sparse training sets a new dict)."""

    def __init__(self, masks: Masks):
        super().__init__()
        self.masks = masks

    def on_train_begin(self, logs=None):
        apply_masks(self.model, self.masks)

    def on_train_batch_end(self, batch, logs=None):
        apply_masks(self.model, self.masks)
