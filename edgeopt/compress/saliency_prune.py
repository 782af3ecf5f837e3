"""Iterative saliency pruning, the standard algorithm: ``rounds`` times, score what remains with a criterion of
:mod:`edgeopt.compress.saliency`, remove ``fraction`` of it (weights or whole filters), fine-tune.

* ``granularity="weight"``: fixed masks (:mod:`edgeopt.compress.masks`): each round removes ``fraction`` of the
  weights each pruned layer still has (``scope="layer"``), or of all their weights ranked together
  (``"global"``); fine-tuning keeps the pruned weights exactly zero (:class:`~edgeopt.compress.masks.MaskCallback`).
  The result is a plain Keras model whose zeros survive export, like :func:`edgeopt.compress.lottery.iterative_prune`.
* ``granularity="filter"``: channel groups of :mod:`edgeopt.compress.structured`: each round removes
  ``fraction`` of the channels of each prunable group (``"layer"``), or of all their channels ranked together
  (``"global"``, never below ``min_channels`` per group), rebuilds a smaller dense model and fine-tunes it.

Global ranking needs scores on one scale: each layer's (or group's) scores are divided by their L2 norm over
what is still alive (``normalize="l2"``, Molchanov et al. 2016), by their mean absolute value (``"mean"``), or
left raw (``"none"``: OBD and Taylor estimate loss changes, which are on one scale already). L2 normalization
weighs a layer's size: n similar scores become about 1/sqrt(n) each, so wide layers lose more than narrow ones;
``mean`` keeps every layer's typical score at 1. Group scores of filters are already sums of per-producer scores
divided by their mean (:func:`edgeopt.compress.saliency.combine`), so for filters ``none`` ranks like ``mean``.
Data criteria read ``saliency.batches`` batches of ``splits.train`` each round.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeopt._keras import keras
from edgeopt.config import Config
from edgeopt.compress import saliency as _saliency
from edgeopt.compress import structured as _structured
from edgeopt.compress.graph import clone_with_weights, require_functional
from edgeopt.compress.masks import MaskCallback, apply_masks, dense_masks, prunable_layers, prune_by_score, remaining
from edgeopt.compress.regularize import RegularizationConfig, fit_with_penalty
from edgeopt.compress.saliency import SaliencyOptions
from edgeopt.costs import profile, weight_sparsity
from edgeopt.train import TrainConfig, evaluate

GRANULARITIES = ("weight", "filter")
SCOPES = ("layer", "global")
DEFAULT_FRACTION = 0.2


@dataclass(frozen=True)
class SaliencyPruneConfig(Config):
    """``rounds`` of: score with ``criterion``, remove ``fraction`` of what remains, fine-tune with ``train``.

    ``fraction``: share of the remaining weights (or channels) removed per round; or ``target_sparsity``: the
    share removed after all rounds, from which each round removes ``1 - (1 - target) ** (1 / rounds)``
    (neither: 0.2 per round); weights only, ``layer_sparsity``: the share of each named layer's weights removed
    after all rounds, each round removing ``1 - (1 - s) ** (1 / rounds)`` of what that layer keeps, the layers it
    does not name left whole (a sparsity profile: another run's layout, ERK). ``granularity``: ``weight`` or
    ``filter``. ``scope``: ``layer`` or ``global``; ``normalize``: ``l2``, ``mean`` or ``none`` (global ranking,
    see the module docstring). ``exclude``: layers (weights) or producers of groups (filters) left whole. Filters
    only: ``groups`` (``internal`` or ``all``, as :class:`~edgeopt.compress.structured.StructuredConfig`'s scope),
    ``min_channels``, ``round_to``.
    ``regularization``: a penalty added to every fine-tuning (:mod:`edgeopt.compress.regularize`).
    """

    criterion: str = "l1"
    granularity: str = "weight"
    rounds: int = 3
    fraction: float | None = None
    target_sparsity: float | None = None
    layer_sparsity: dict[str, float] | None = None
    scope: str = "layer"
    normalize: str = "l2"
    exclude: tuple[str, ...] = ()
    groups: str = "internal"
    min_channels: int = 4
    round_to: int = 1
    saliency: SaliencyOptions = field(default_factory=SaliencyOptions)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, learning_rate=1e-3, cosine=False))
    regularization: RegularizationConfig | None = None

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(self.exclude))
        for name, cls in (("saliency", SaliencyOptions), ("train", TrainConfig), ("regularization", RegularizationConfig)):
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, cls(**getattr(self, name)))
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}; got {self.granularity!r}")
        known = _saliency.weight_criteria() if self.granularity == "weight" else _saliency.filter_criteria()
        if self.criterion not in known:
            raise ValueError(f"criterion must be one of {', '.join(known)} for granularity={self.granularity!r}; got {self.criterion!r}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.fraction is not None and self.target_sparsity is not None:
            raise ValueError("fraction and target_sparsity are both set; give fraction (removed per round) or target_sparsity (after all rounds)")
        if self.fraction is not None and not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1) (share of what remains removed per round), got {self.fraction}")
        if self.target_sparsity is not None and not 0.0 < self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {self.target_sparsity}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {self.scope!r}")
        if self.layer_sparsity is not None:
            try:
                object.__setattr__(self, "layer_sparsity", {str(k): float(v) for k, v in dict(self.layer_sparsity).items()})
            except (TypeError, ValueError):
                raise ValueError(f"layer_sparsity must map layer names to shares in [0, 1), e.g. {{'fc1': 0.9}}; got {self.layer_sparsity!r}") from None
            if self.fraction is not None or self.target_sparsity is not None:
                raise ValueError("layer_sparsity is set with fraction or target_sparsity; give one of them (layer_sparsity: each named layer's share)")
            if self.granularity != "weight" or self.scope != "layer":
                raise ValueError(f"layer_sparsity needs granularity='weight' and scope='layer' (each layer to its own share); got "
                                 f"granularity={self.granularity!r}, scope={self.scope!r}")
            bad = {n: v for n, v in self.layer_sparsity.items() if not 0.0 <= v < 1.0}
            if not self.layer_sparsity or bad:
                raise ValueError("layer_sparsity must map layer names to shares in [0, 1), e.g. {'fc1': 0.9}; got "
                                 + (", ".join(f"{n}: {v}" for n, v in bad.items()) if bad else "no layer"))
        if self.normalize not in _saliency.NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(_saliency.NORMALIZATIONS)}; got {self.normalize!r}")
        if self.groups not in _structured.SCOPES:
            raise ValueError(f"groups must be one of {', '.join(_structured.SCOPES)}; got {self.groups!r}")
        if self.min_channels < 1 or self.round_to < 1:
            raise ValueError(f"min_channels and round_to must be >= 1, got {self.min_channels} and {self.round_to}")

    @property
    def per_round(self) -> float:
        """Share of what remains that each round removes."""
        if self.target_sparsity is not None:
            return 1.0 - (1.0 - self.target_sparsity) ** (1.0 / self.rounds)
        return DEFAULT_FRACTION if self.fraction is None else self.fraction

    def per_round_of(self, layers) -> float | dict[str, float]:
        """What each round removes of what remains: :attr:`per_round`, or with ``layer_sparsity`` one share for each of
        ``layers`` (0 for those it does not name)."""
        if self.layer_sparsity is None:
            return self.per_round
        return {n: 1.0 - (1.0 - self.layer_sparsity.get(n, 0.0)) ** (1.0 / self.rounds) for n in layers}


@dataclass(frozen=True)
class SaliencyRound:
    """After round ``round`` (0 = the input model): ``remaining`` share of the prunable weights (or channels)
    still alive, the model's ``params`` and multiply-adds (``macs``), ``weight_sparsity`` (share of zeros over
    conv and dense kernels), validation top-1 of the fine-tuning (None in round 0), test top-1 (None when the
    test split is not read), ``seconds`` spent in the round (scoring, pruning, fine-tuning)."""

    round: int
    remaining: float
    params: int
    macs: int
    weight_sparsity: float
    val_top1: float | None
    top1: float | None
    seconds: float


@dataclass(frozen=True)
class SaliencyPruneResult:
    config: dict
    rounds: tuple[SaliencyRound, ...]

    def to_dict(self) -> dict:
        return {"config": self.config, "rounds": [asdict(r) for r in self.rounds]}


def _row(model, r: int, alive: float, val_top1, splits, start: float, test: bool) -> SaliencyRound:
    seconds = time.perf_counter() - start
    cost = profile(model)
    top1 = evaluate(model, splits.test)["top1"] if test else None
    return SaliencyRound(r, alive, cost.params, cost.macs, weight_sparsity(model), val_top1, top1, seconds)


def saliency_prune(model: keras.Model, splits, config: SaliencyPruneConfig, evaluate_test: bool = True) -> tuple[keras.Model, SaliencyPruneResult]:
    """Prune a trained ``model`` in ``config.rounds`` rounds (see the module docstring) and fine-tune after each.
    Returns the pruned model (a new one; ``model`` is not changed) and one :class:`SaliencyRound` per round
    (round 0: ``model`` itself). ``evaluate_test=False`` never reads the test split (a search trial)."""
    require_functional(model, "edgeopt.compress.saliency_prune")
    step = _weight_rounds if config.granularity == "weight" else _filter_rounds
    work, rows = step(clone_with_weights(model), splits, config, evaluate_test)
    return work, SaliencyPruneResult(config.to_dict(), tuple(rows))


def _weight_rounds(work, splits, config: SaliencyPruneConfig, test: bool):
    unknown = sorted(set(config.exclude) - {layer.name for layer in work.layers})
    if unknown:
        raise ValueError(f"exclude names {', '.join(unknown)}, which are not layers of {work.name}")
    names = [n for n in prunable_layers(work) if n not in config.exclude]
    unnamed = sorted(set(config.layer_sparsity or ()) - set(names))
    if unnamed:
        raise ValueError(f"layer_sparsity names {', '.join(unnamed)}, which are not convolution or dense layers of {work.name} left to prune "
                         f"(those are: {', '.join(names)})")
    if not names:
        raise ValueError(f"{work.name} has no convolution or dense layer left to prune after exclude")
    masks = dense_masks(work, names)
    rows = [_row(work, 0, 1.0, None, splits, time.perf_counter(), test)]
    for r in range(1, config.rounds + 1):
        start = time.perf_counter()
        scores = _saliency.weight_scores(work, config.criterion, names, splits, config.saliency)
        if config.scope == "global":
            masks = prune_by_score(_saliency.normalize(scores, config.normalize, masks), masks, config.per_round, "global")
        else:
            masks = prune_by_score(scores, masks, config.per_round_of(names), "layer")
        work, result = fit_with_penalty(work, splits, config.train, config.regularization, callbacks=[MaskCallback(masks)])
        apply_masks(work, masks)
        rows.append(_row(work, r, remaining(masks), result.val_top1, splits, start, test))
        _report(config, rows[-1])
    return work, rows


def eligible_groups(model, groups: str = "internal", exclude: tuple[str, ...] = ()) -> dict[str, int]:
    """Channels of each channel group that filter pruning may shrink, by group name: prunable groups, residual-tied
    ones only with ``groups="all"``, none whose producers are in ``exclude``. Raises ValueError when there is none."""
    unknown = sorted(set(exclude) - {layer.name for layer in model.layers})
    if unknown:
        raise ValueError(f"exclude names {', '.join(unknown)}, which are not layers of {model.name}")
    out = {g.name: g.channels for g in _structured.channel_groups(model)
           if g.prunable and not (g.residual and groups == "internal") and not set(g.producers) & set(exclude)}
    if not out:
        raise ValueError(f"no channel group of {model.name} can be pruned with groups={groups!r} (see structured.channel_groups for why)")
    return out


def _eligible(model, config: SaliencyPruneConfig) -> dict[str, int]:
    """Channels of each group the config prunes, by group name."""
    return eligible_groups(model, config.groups, config.exclude)


def _filter_rounds(work, splits, config: SaliencyPruneConfig, test: bool):
    eligible = _eligible(work, config)
    total = sum(eligible.values())
    rows = [_row(work, 0, 1.0, None, splits, time.perf_counter(), test)]
    for r in range(1, config.rounds + 1):
        start = time.perf_counter()
        groups = [g for g in _structured.channel_groups(work) if g.name in eligible]
        keep = _global_keep(work, groups, splits, config) if config.scope == "global" else _layer_keep(work, splits, config)
        if keep:
            work = _structured.rebuild(work, keep)
        work, result = fit_with_penalty(work, splits, config.train, config.regularization)
        alive = sum(g.channels for g in _structured.channel_groups(work) if g.name in eligible) / total
        rows.append(_row(work, r, alive, result.val_top1, splits, start, test))
        _report(config, rows[-1])
    return work, rows


def _layer_keep(work, splits, config: SaliencyPruneConfig) -> dict[str, np.ndarray]:
    structured = _structured.StructuredConfig(
        ratio=config.per_round, scope=config.groups, criterion=config.criterion, round_to=config.round_to,
        min_channels=config.min_channels, exclude=config.exclude, saliency=config.saliency,
    )
    return _structured.plan(work, structured, splits)


def _global_keep(work, groups, splits, config: SaliencyPruneConfig) -> dict[str, np.ndarray]:
    """Kept channels per group when ``per_round`` of all the groups' channels go, lowest normalized score first,
    no group below ``min_channels``; each group's kept count is then rounded up to a multiple of ``round_to``."""
    scores = _saliency.normalize(_structured.group_scores(work, groups, config.criterion, splits, config.saliency), config.normalize)
    channels = {g.name: g.channels for g in groups}
    budget = int(round(config.per_round * sum(channels.values())))
    removed = dict.fromkeys(channels, 0)
    ranked = sorted(((float(s), name, c) for name, arr in scores.items() for c, s in enumerate(arr)), key=lambda t: t[0])
    for _, name, _ in ranked:
        if budget == 0:
            break
        if channels[name] - removed[name] > config.min_channels:
            removed[name] += 1
            budget -= 1
    keep = {}
    for name, n in channels.items():
        n_keep = min(n, config.round_to * math.ceil((n - removed[name]) / config.round_to))
        if n_keep < n:
            keep[name] = _structured.top_channels(scores[name], n_keep)
    return keep


def _report(config: SaliencyPruneConfig, row: SaliencyRound) -> None:
    if config.train.verbose:
        accuracy = ", ".join(f"{what} top-1 {value:.4f}" for what, value in (("validation", row.val_top1), ("test", row.top1)) if value is not None)
        print(f"saliency pruning ({config.criterion}, {config.granularity}) round {row.round}: {100 * row.remaining:.1f}% left, {accuracy}", flush=True)
