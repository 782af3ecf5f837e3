"""Early-bird tickets (You et al. arXiv 1909.11957): stop dense training once the pruning mask stops changing.

After every epoch of dense training the mask at the target sparsity is computed (``magnitude``: smallest |w| of the
convolution and dense kernels, per layer or ranked globally; ``bn``: channels of smallest batch-norm scale |gamma|,
ranked globally, the paper's channel criterion) and its normalized Hamming distance to the previous epoch's mask
(fraction of positions that differ) is queued; the ticket has emerged when the largest of the last ``window``
distances is below ``epsilon`` (the paper's Algorithm 1: FIFO queue of length 5, epsilon 0.1).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edgeopt._keras import keras
from edgeopt.compress.graph import clone_with_weights, require_functional
from edgeopt.compress.masks import SCOPES, Masks, MaskCallback, apply_masks, dense_masks, magnitude_scores, mask_sparsity, prunable_layers, prune_by_score
from edgeopt.config import Config
from edgeopt.train import TrainConfig, evaluate, fit

CRITERIA = ("magnitude", "bn")


def magnitude_mask(model: keras.Model, sparsity: float, scope: str = "global", names: list[str] | None = None) -> Masks:
    """Masks zeroing ``sparsity`` of the kernel weights of smallest magnitude (each layer, or ranked together)."""
    names = prunable_layers(model) if names is None else names
    return prune_by_score(magnitude_scores(model, names), dense_masks(model, names), sparsity, scope)


def bn_channel_mask(model: keras.Model, sparsity: float) -> Masks:
    """Per batch-norm layer, 1 for the channels kept: ``sparsity`` of all channels go, those of smallest |gamma|
    over the whole model (network slimming's global threshold, as the paper's code)."""
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.scale]
    if not bns:
        raise ValueError(f"criterion='bn' needs batch-norm layers with a scale (gamma); {model.name} has none: use criterion='magnitude'")
    scores = {b.name: np.abs(b.gamma.numpy()) for b in bns}
    return prune_by_score(scores, {n: np.ones_like(s, np.float32) for n, s in scores.items()}, sparsity, scope="global")


def mask_distance(a: Masks, b: Masks) -> float:
    """Normalized Hamming distance: the fraction of all mask positions where ``a`` and ``b`` differ."""
    return sum(int((a[n] != b[n]).sum()) for n in a) / sum(m.size for m in a.values())


class EarlyBird(keras.callbacks.Callback):
    """Computes the pruning mask after every epoch; when the last ``window`` distances between consecutive masks are
    all below ``epsilon`` it records ``epoch`` (epochs trained when the ticket emerged), keeps that ``mask`` and, if
    ``stop``, ends training. ``distances[i]`` is the distance between the masks after epochs i+1 and i+2."""

    def __init__(self, sparsity: float, criterion: str = "magnitude", scope: str = "global", window: int = 5, epsilon: float = 0.1, stop: bool = True):
        super().__init__()
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}; got {criterion!r}")
        self.sparsity, self.criterion, self.scope, self.window, self.epsilon, self.stop = sparsity, criterion, scope, window, epsilon, stop
        self.distances: list[float] = []
        self.epoch: int | None = None
        self.mask: Masks | None = None
        self._previous: Masks | None = None

    def current_mask(self) -> Masks:
        if self.criterion == "bn":
            return bn_channel_mask(self.model, self.sparsity)
        return magnitude_mask(self.model, self.sparsity, self.scope)

    def on_epoch_end(self, epoch, logs=None):
        mask = self.current_mask()
        if self._previous is not None:
            self.distances.append(mask_distance(mask, self._previous))
        self._previous = mask
        recent = self.distances[-self.window:]
        if self.epoch is None and len(recent) == self.window and max(recent) < self.epsilon:
            self.epoch, self.mask = epoch + 1, mask
            if self.stop:
                self.model.stop_training = True


@dataclass(frozen=True)
class EarlyBirdConfig(Config):
    """Search for an early-bird ticket at ``sparsity`` (fraction of weights, or of channels for ``bn``) while
    training dense for at most ``train.epochs``; ``window`` epochs of mask distance below ``epsilon`` end the search.
    ``magnitude`` tickets are then pruned and retrained with the mask fixed for ``retrain_epochs`` (the ``train``
    settings otherwise); ``bn`` tickets are channel masks to hand to structured pruning, so the model stays dense."""

    sparsity: float = 0.5
    criterion: str = "magnitude"
    scope: str = "global"
    window: int = 5
    epsilon: float = 0.1
    retrain_epochs: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))

    def __post_init__(self):
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", TrainConfig(**self.train))
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}; got {self.criterion!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {self.scope!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1 epochs of mask distances (the paper uses 5), got {self.window}")
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in (0, 1] (a fraction of mask positions; the paper uses 0.1), got {self.epsilon}")
        if self.retrain_epochs < 0:
            raise ValueError(f"retrain_epochs must be >= 0, got {self.retrain_epochs}")
        if self.retrain_epochs and self.criterion == "bn":
            raise ValueError("retrain_epochs needs criterion='magnitude'; a bn ticket is a channel mask: remove the channels with prune_structured, then fine-tune")


@dataclass(frozen=True)
class EarlyBirdResult:
    """``epoch``: dense epochs trained when the ticket emerged (None: it did not within ``train.epochs``);
    ``epochs_trained``; ``distances`` between consecutive epochs' masks; ``sparsity`` / ``layer_sparsity`` of the
    ticket's mask (weights, or channels per batch-norm layer for ``bn``); validation top-1 (fraction) of the model
    returned; seconds of dense search and of retraining."""

    epoch: int | None
    epochs_trained: int
    distances: tuple[float, ...]
    sparsity: float
    layer_sparsity: dict[str, float]
    val_top1: float | None
    search_seconds: float
    retrain_seconds: float
    config: dict

    def to_dict(self) -> dict:
        return asdict(self)


def early_bird(model: keras.Model, splits, config: EarlyBirdConfig = EarlyBirdConfig()) -> tuple[keras.Model, EarlyBirdResult]:
    """Train a copy of ``model`` dense until its early-bird ticket emerges (or ``config.train.epochs`` pass), then
    for ``magnitude`` prune it to the ticket's mask (the last mask if none emerged) and retrain ``retrain_epochs``
    with the mask fixed. Returns the model (plain Keras, exact zeros for magnitude tickets) and the result."""
    require_functional(model, "edgeopt.compress.early_bird")
    work = clone_with_weights(model)
    bird = EarlyBird(config.sparsity, config.criterion, config.scope, config.window, config.epsilon)
    start = time.perf_counter()
    trained = fit(work, splits, config.train, callbacks=[bird])
    search_seconds, retrain_seconds = time.perf_counter() - start, 0.0
    mask = bird.mask if bird.mask is not None else bird.current_mask()
    if config.criterion == "magnitude":
        apply_masks(work, mask)
        if config.retrain_epochs:
            start = time.perf_counter()
            fit(work, splits, replace(config.train, epochs=config.retrain_epochs), callbacks=[MaskCallback(mask)])
            retrain_seconds = time.perf_counter() - start
    val = evaluate(work, splits.val)["top1"] if splits.sizes.get("val") else None  # of the pruned model, not the dense one fit saw
    zeros = sum(int((m == 0).sum()) for m in mask.values()) / sum(m.size for m in mask.values())
    epochs_trained = len(trained.history.get("loss", ())) or config.train.epochs
    return work, EarlyBirdResult(bird.epoch, epochs_trained, tuple(bird.distances), zeros, mask_sparsity(mask), val, search_seconds, retrain_seconds,
                                 config.to_dict())
