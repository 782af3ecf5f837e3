"""Iterative magnitude pruning and lottery tickets, with fixed binary masks.

* :func:`iterative_prune` - the standard prune -> fine-tune loop (Han et al. 2015): each round removes
  ``fraction`` of the weights that remain (smallest magnitude) and fine-tunes the survivors.
* :func:`lottery_ticket` - Frankle & Carbin (arXiv 1803.03635): train, prune ``fraction`` of what remains,
  *rewind* the survivors to their initial values (``rewind="init"``) or to their values after ``rewind_step``
  optimizer steps (late rewinding, Frankle et al. arXiv 1903.01611), retrain, repeat; with the control of
  training the same masks from a fresh random initialisation. Accuracy is recorded every round.

Masks are kept exactly: they are applied before training and after every optimizer step, so pruned weights
stay zero (TF-MOT's wrappers would re-pick masks during training, which a ticket must not do).
The output layer is pruned at half the rate, as in the paper.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable


from edgeopt._keras import keras
from edgeopt.config import Config
from edgeopt.compress.masks import SCOPES, Masks, MaskCallback, apply_masks, dense_masks, magnitude_scores, prunable_layers, prune_by_score, remaining  # noqa: F401  (re-exported)
from edgeopt.compress.graph import clone_with_weights, require_functional
from edgeopt.train import TrainConfig, evaluate, fit

REWINDS = ("init", "step", "none")


@dataclass(frozen=True)
class LotteryConfig(Config):
    """``rounds`` of pruning ``fraction`` of the remaining weights; ``rewind``: ``init``, ``step``
    (to ``rewind_step`` optimizer steps) or ``none`` (keep the trained weights: iterative pruning);
    ``train``: the training of each round; ``random_control``: also train each mask from a fresh init."""

    rounds: int = 10
    fraction: float = 0.2
    rewind: str = "init"
    rewind_step: int = 0
    scope: str = "layer"
    random_control: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, learning_rate=1.2e-3, cosine=False))
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", TrainConfig(**self.train))
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
        if self.rewind not in REWINDS:
            raise ValueError(f"rewind must be one of {', '.join(REWINDS)}; got {self.rewind!r}")
        if self.rewind == "step" and self.rewind_step < 1:
            raise ValueError(f"rewind='step' needs rewind_step >= 1, got {self.rewind_step}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {self.scope!r}")


@dataclass(frozen=True)
class RoundResult:
    """One round: ``remaining`` fraction of prunable weights, test top-1 of the ticket (or the fine-tuned
    model) and of the random re-initialisation control (None when not run), seconds spent."""

    round: int
    remaining: float
    top1: float
    top1_random: float | None
    seconds: float


@dataclass(frozen=True)
class LotteryResult:
    config: dict
    rounds: tuple[RoundResult, ...]

    def to_dict(self) -> dict:
        return {"config": self.config, "rounds": [asdict(r) for r in self.rounds]}


class _SnapshotAt(keras.callbacks.Callback):
    """Keeps a copy of the weights after ``step`` optimizer steps (for late rewinding)."""

    def __init__(self, step: int):
        super().__init__()
        self.step, self.weights = step, None

    def on_train_batch_end(self, batch, logs=None):
        if self.weights is None and int(self.model.optimizer.iterations.numpy()) >= self.step:
            self.weights = [w.copy() for w in self.model.get_weights()]


def prune_masks(model: keras.Model, masks: Masks, fraction: float, scope: str = "layer", last_layer_rate: float = 0.5) -> Masks:
    """New masks removing ``fraction`` of the weights each mask still keeps (smallest magnitudes of
    ``model``'s kernels); the last layer loses ``last_layer_rate * fraction``. ``scope="global"`` ranks
    all layers but the last together."""
    names = list(masks)
    last = names[-1]
    scores = magnitude_scores(model, names)
    if scope == "global" and len(names) > 1:
        new = prune_by_score(scores, {n: masks[n] for n in names if n != last}, fraction, "global")
        new.update(prune_by_score(scores, {last: masks[last]}, fraction * last_layer_rate))
        return {n: new[n] for n in names}
    return prune_by_score(scores, masks, {n: fraction * (last_layer_rate if n == last else 1.0) for n in names})


def train_masked(model: keras.Model, masks: Masks, splits, config: TrainConfig, callbacks=()) -> float:
    """Train ``model`` in place with fixed ``masks``; returns its test top-1."""
    fit(model, splits, config, callbacks=[MaskCallback(masks), *callbacks])
    return evaluate(model, splits.test)["top1"]


def iterative_prune(model: keras.Model, splits, config: LotteryConfig) -> tuple[keras.Model, LotteryResult]:
    """Prune a *trained* ``model`` in ``config.rounds`` rounds of ``config.fraction`` of what remains, fine-tuning
    with ``config.train`` after each (``rewind`` is ignored: the survivors keep their trained values).
    Returns the final sparse model (a copy) and the accuracy per round (round 0 = the input model)."""
    require_functional(model, "edgeopt.compress.iterative_prune")
    work = clone_with_weights(model)
    masks = dense_masks(work)
    rows = [RoundResult(0, 1.0, evaluate(work, splits.test)["top1"], None, 0.0)]
    for r in range(1, config.rounds + 1):
        start = time.perf_counter()
        masks = prune_masks(work, masks, config.fraction, config.scope)
        top1 = train_masked(work, masks, splits, config.train)
        rows.append(RoundResult(r, remaining(masks), top1, None, time.perf_counter() - start))
        print(f"iterative pruning round {r}: {100 * rows[-1].remaining:.1f}% weights left, top-1 {top1:.4f}", flush=True)
    return work, LotteryResult({**config.to_dict(), "rewind": "none"}, tuple(rows))


def lottery_ticket(build: Callable[[], keras.Model], splits, config: LotteryConfig) -> LotteryResult:
    """Iterative magnitude pruning with rewinding, from a fresh model ``build()`` (called under a seed).

    Round 0 trains the dense network. Every later round prunes ``fraction`` of the remaining weights of the
    previous round's trained ticket, rewinds the survivors (to the init, to step ``rewind_step``, or not at
    all for ``rewind="none"``), retrains with the mask fixed and records test top-1; the control trains the
    same mask from a new random initialisation (another seed).
    """
    keras.utils.set_random_seed(config.seed)
    model = build()
    require_functional(model, "edgeopt.compress.lottery_ticket")
    masks = dense_masks(model)
    init = [w.copy() for w in model.get_weights()]
    snap = _SnapshotAt(config.rewind_step) if config.rewind == "step" else None
    start = time.perf_counter()
    top1 = train_masked(model, masks, splits, config.train, callbacks=[snap] if snap else ())
    rewind_to = {"init": init, "step": snap.weights if snap else None, "none": None}[config.rewind]
    if config.rewind == "step" and rewind_to is None:
        raise ValueError(f"rewind_step={config.rewind_step} is beyond the training of a round")
    rows = [RoundResult(0, 1.0, top1, top1 if config.random_control else None, time.perf_counter() - start)]
    print(f"lottery round 0: dense top-1 {top1:.4f}", flush=True)
    for r in range(1, config.rounds + 1):
        start = time.perf_counter()
        masks = prune_masks(model, masks, config.fraction, config.scope)
        if rewind_to is not None:
            model.set_weights(rewind_to)
        top1 = train_masked(model, masks, splits, config.train)
        top1_random = None
        if config.random_control:
            keras.utils.set_random_seed(config.seed + 1000 + r)
            control = build()
            top1_random = train_masked(control, masks, splits, replace(config.train, seed=config.train.seed + r))
        rows.append(RoundResult(r, remaining(masks), top1, top1_random, time.perf_counter() - start))
        print(
            f"lottery round {r}: {100 * rows[-1].remaining:.1f}% weights left, ticket top-1 {top1:.4f}"
            + (f", random re-init {top1_random:.4f}" if top1_random is not None else ""),
            flush=True,
        )
    return LotteryResult(config.to_dict(), tuple(rows))
