"""Sparse training from scratch, part 2: masks that change while training, at constant sparsity.

SET (Mocanu et al. 2018, Nature Communications 9:2383) and RigL (Evci et al. arXiv 1911.11134): training starts
from random masks (:func:`edgeopt.compress.sparse_init.random_masks`, uniform or ERK over layers). Every
``update_every`` optimizer steps until ``end_fraction`` of training, each masked layer drops ``floor(f * alive)``
of its live weights, those of smallest magnitude, and regrows as many among the dead positions (those just
dropped included, as in RigL's code): at random (SET) or where the dense gradient of the loss on a training batch
is largest in magnitude (RigL). New connections start at zero with their optimizer state (momentum, Adam moments)
cleared, as RigL's ``reset_momentum`` does, so each layer's count of zeros never changes. The drop fraction ``f``
is constant or decays along RigL's cosine, ``alpha / 2 * (1 + cos(pi * t / T_end))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeopt._keras import keras
from edgeopt.compress.masks import Masks, MaskCallback, apply_masks, kernel_of, prune_by_score
from edgeopt.compress.derivatives import LossDerivatives
from edgeopt.compress.sparse_init import SparseConfig, SparseTrainResult, sparse_copy, loss_gradients, random_masks, train_with_masks

SCHEDULES = ("cosine", "constant")
GROWTHS = ("random", "gradient")


def drop_fraction_at(step: int, initial: float, end_step: int, schedule: str = "cosine") -> float:
    """The fraction of live weights a layer drops at optimizer step ``step``: ``initial`` (constant) or
    ``initial / 2 * (1 + cos(pi * step / end_step))`` (cosine); 0 after ``end_step``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if step > end_step or end_step <= 0:
        return 0.0
    return initial if schedule == "constant" else initial * 0.5 * (1.0 + math.cos(math.pi * step / end_step))


def update_masks(masks: Masks, weights: dict[str, np.ndarray], grow_scores: dict[str, np.ndarray], drop_fraction: float) -> tuple[Masks, Masks]:
    """One drop-and-grow step per layer: drop ``floor(drop_fraction * alive)`` live weights of smallest |w|, then
    revive as many dead positions of highest ``grow_scores``. Returns the new masks and the *grown* masks (1 where a
    connection was dead before and is alive now: its weight must start at zero)."""
    alive = {n: int(m.sum()) for n, m in masks.items()}
    drop = {n: int(alive[n] * drop_fraction) for n in masks}
    kept = prune_by_score({n: np.abs(weights[n]) for n in masks}, masks, {n: drop[n] / alive[n] if alive[n] else 0.0 for n in masks})
    dead = {n: 1.0 - kept[n] for n in masks}
    # reviving the `drop` dead positions of highest grow score = removing them from the dead set, ranked by -score
    still_dead = prune_by_score({n: -np.asarray(grow_scores[n], np.float64) for n in masks}, dead,
                                {n: drop[n] / dead[n].sum() if dead[n].sum() else 0.0 for n in masks})
    new = {n: (1.0 - still_dead[n]).astype(np.float32) for n in masks}
    return new, {n: new[n] * (1.0 - masks[n]) for n in masks}


def reset_optimizer_slots(optimizer, variable, where: np.ndarray) -> int:
    """Zero the optimizer state kept per weight of ``variable`` (momentum, Adam's moments) where ``where`` is true;
    returns how many state variables were found."""
    if hasattr(optimizer, "get_slot_names"):  # legacy optimizers
        slots = [optimizer.get_slot(variable, s) for s in optimizer.get_slot_names()]
    else:
        slots = [v for v in optimizer.variables if _slot_of(v.name, optimizer.name) == variable.name.split(":")[0] and tuple(v.shape) == tuple(variable.shape)]
    keep = (~where).astype(np.float32)
    for slot in slots:
        slot.assign(slot.numpy() * keep)
    return len(slots)


def _slot_of(name: str, optimizer_name: str) -> str | None:
    """The model variable an optimizer variable belongs to: tf_keras names Adam's first moment of ``conv/kernel``
    ``Adam/m/conv/kernel:0`` (``<optimizer>/<slot>/<variable>``)."""
    parts = name.split(":")[0].split("/")
    if parts[0] == optimizer_name:
        parts = parts[1:]
    return "/".join(parts[1:]) if len(parts) > 1 else None


@dataclass(frozen=True)
class MaskUpdate:
    """One mask update: optimizer ``step``, the drop ``fraction`` used, positions whose mask flipped (dropped + grown)."""

    step: int
    fraction: float
    changed: int


class DynamicSparsity(MaskCallback):
    """A :class:`MaskCallback` that also rewires the masks: after the optimizer step of every ``update_every``-th
    step up to ``end_fraction`` of all steps (``total_steps``, default: Keras' steps x epochs of the ``fit`` call),
    drop-and-grow (:func:`update_masks`) with the scheduled drop fraction, zero and clear the grown weights, re-apply.
    ``grow``: ``random`` (SET) or ``gradient`` (RigL, |dL/dw| on the next batch of ``data``, a batched
    (images, labels) dataset). ``updates`` lists what each update did."""

    def __init__(self, masks: Masks, grow: str = "gradient", drop_fraction: float = 0.3, update_every: int = 100, end_fraction: float = 0.75,
                 schedule: str = "cosine", data=None, total_steps: int | None = None, seed: int = 0):
        super().__init__(masks)
        if grow not in GROWTHS:
            raise ValueError(f"grow must be one of {', '.join(GROWTHS)}; got {grow!r}")
        if grow == "gradient" and data is None:
            raise ValueError("grow='gradient' (RigL) needs data: a batched (images, labels) dataset for the gradient")
        self.grow, self.drop_fraction, self.update_every, self.end_fraction = grow, drop_fraction, update_every, end_fraction
        self.schedule, self.data, self.total_steps = schedule, data, total_steps
        # a stream of its own: default_rng(seed) drew the scores random_masks kept the highest of, so SET would
        # regrow exactly what it dropped on its first update
        self.rng = np.random.default_rng((seed, 1))
        self.updates: list[MaskUpdate] = []
        self.end_step = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        total = self.total_steps or (self.params.get("steps") or 0) * (self.params.get("epochs") or 0)
        if not total:
            raise ValueError("DynamicSparsity needs the number of training steps: give total_steps or train on data of known length")
        self.end_step = int(self.end_fraction * total)
        self._batches = iter(self.data.repeat()) if self.data is not None else None

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)  # the optimizer step may have moved masked weights: zero them first
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.update_every == 0:
            fraction = drop_fraction_at(step, self.drop_fraction, self.end_step, self.schedule)
            if fraction > 0:
                self.update(fraction, step)

    def update(self, fraction: float, step: int = 0) -> MaskUpdate:
        """Drop and grow ``fraction`` of each layer's live weights now."""
        names = list(self.masks)
        weights = {n: kernel_of(self.model, n).numpy() for n in names}
        if self.grow == "gradient":
            if getattr(self, "_derivatives", None) is None:  # traced once, reused by every update
                self._derivatives = LossDerivatives(self.model, names, training=True)
            scores = {n: np.abs(g) for n, g in loss_gradients(self.model, [next(self._batches)], names, self._derivatives).items()}
        else:
            scores = {n: self.rng.random(w.shape) for n, w in weights.items()}
        new, grown = update_masks(self.masks, weights, scores, fraction)
        for n in names:
            where = grown[n] > 0
            if where.any():
                kernel = kernel_of(self.model, n)
                kernel.assign(np.where(where, 0.0, weights[n]).astype(weights[n].dtype))
                reset_optimizer_slots(self.model.optimizer, kernel, where)
        changed = sum(int((new[n] != self.masks[n]).sum()) for n in names)
        self.masks = new
        apply_masks(self.model, new)
        self.updates.append(MaskUpdate(step, fraction, changed))
        return self.updates[-1]


@dataclass(frozen=True)
class DynamicConfig(SparseConfig):
    """Dynamic sparse training: ``drop_fraction`` (alpha, of each layer's live weights) every ``update_every``
    optimizer steps (delta T) until ``end_fraction`` of training, decayed by ``schedule`` (cosine or constant);
    RigL's ImageNet defaults are 0.3, 100, 0.75, cosine."""

    drop_fraction: float = 0.3
    update_every: int = 100
    end_fraction: float = 0.75
    schedule: str = "cosine"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.drop_fraction < 1.0:
            raise ValueError(f"drop_fraction must be in (0, 1) (the share of a layer's live weights rewired per update), got {self.drop_fraction}")
        if self.update_every < 1:
            raise ValueError(f"update_every must be >= 1 optimizer steps, got {self.update_every}")
        if not 0.0 < self.end_fraction <= 1.0:
            raise ValueError(f"end_fraction must be in (0, 1] (the share of training during which masks change), got {self.end_fraction}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")


@dataclass(frozen=True)
class SETConfig(DynamicConfig):
    """SET: regrow at random."""


@dataclass(frozen=True)
class RigLConfig(DynamicConfig):
    """RigL: regrow where the gradient magnitude is largest."""


def _dynamic(model: keras.Model, splits, config: DynamicConfig, grow: str, method: str) -> tuple[keras.Model, SparseTrainResult]:
    work, names = sparse_copy(model, config, f"edgeopt.compress.sparse_dynamic.{method}")
    masks = random_masks(work, names, config.sparsity, config.distribution, config.seed)
    callback = DynamicSparsity(masks, grow, config.drop_fraction, config.update_every, config.end_fraction, config.schedule,
                               data=splits.train if grow == "gradient" else None, seed=config.seed)
    return work, train_with_masks(work, splits, masks, config, method, callback)


def set_train(model: keras.Model, splits, config: SETConfig = SETConfig()) -> tuple[keras.Model, SparseTrainResult]:
    """SET from the random masks of ``config``: a trained copy of ``model`` (plain Keras, exact zeros) and its result."""
    return _dynamic(model, splits, config, "random", "set")


def rigl(model: keras.Model, splits, config: RigLConfig = RigLConfig()) -> tuple[keras.Model, SparseTrainResult]:
    """RigL from the random masks of ``config``: a trained copy of ``model`` (plain Keras, exact zeros) and its result."""
    return _dynamic(model, splits, config, "gradient", "rigl")
