"""Structured (filter) pruning: remove whole channels by the L1 norm of the filters that produce them
(Li et al., "Pruning Filters for Efficient ConvNets", arXiv 1608.08710), or by any filter criterion of
:mod:`edgeopt.compress.saliency` (FPGM, activation statistics, Taylor, OBD; some need data), and rebuild a
smaller dense model.

Channels are analysed as *channel groups*: the set of tensors that must keep the same channels. A group
starts at the convolutions (or dense layers) that produce it and flows through layers that keep channels
one-to-one (batch norm, activations, depthwise convolutions, pooling, dropout, padding); element-wise
``Add``/``Multiply`` tie the groups of their inputs together (residual connections, squeeze-excite), so
channels tied that way are pruned together. Consumers (the next convolution or dense layer) lose the
matching input rows. A group cannot be pruned when it reaches the model input or output, a grouped
convolution, a reshape/permute (ShuffleNet's channel shuffle), a concatenation, or a layer this module
does not know; :func:`channel_groups` says why for each. In ShuffleNet v1 every group meets a grouped 1x1
convolution or the shuffle, so nothing is pruned there: :func:`prune_filters` refuses with that reason.

The new model comes from the edited Functional config (``filters``/``units`` of the producers) and gets
the old weights sliced to the kept channels; fine-tune it afterwards.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from edgeopt._keras import keras
from edgeopt.config import Config
from edgeopt.compress import saliency as _saliency
from edgeopt.compress.graph import require_functional, single_inbound
from edgeopt.compress.saliency import SaliencyOptions

L = keras.layers

SCOPES = ("internal", "all")
# Layers whose output channels are their input channels, one to one.
_PASS_THROUGH = (
    "BatchNormalization", "ReLU", "Activation", "Dropout", "SpatialDropout2D", "ZeroPadding2D", "MaxPooling2D",
    "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "LeakyReLU", "ELU", "Cropping2D",
)
_ELEMENTWISE = ("Add", "Multiply", "Average", "Maximum", "Minimum", "Subtract")


@dataclass(frozen=True)
class StructuredConfig(Config):
    """How to prune filters.

    ``ratio``: fraction of the channels removed from each pruned group. ``scope``: ``internal`` prunes only
    groups no residual ``Add`` ties (e.g. MobileNetV2's expanded channels, MobileNetV1's pointwise outputs),
    ``all`` also the residual-tied groups. ``round_to``: kept channels are a multiple of this;
    ``min_channels``: never keep fewer. ``exclude``: producer layer names whose groups stay whole.
    ``criterion``: a filter criterion of :mod:`edgeopt.compress.saliency` (``l1``, ``fpgm``, ``apoz``,
    ``taylor``, ...; those that need data get it from :func:`prune_filters`'s ``data``), read with ``saliency``.
    """

    ratio: float = 0.5
    scope: str = "internal"
    criterion: str = "l1"
    round_to: int = 1
    min_channels: int = 4
    exclude: tuple[str, ...] = ()
    saliency: SaliencyOptions = field(default_factory=SaliencyOptions)

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if isinstance(self.saliency, dict):
            object.__setattr__(self, "saliency", SaliencyOptions(**self.saliency))
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {self.scope!r}")
        if self.criterion not in _saliency.filter_criteria():
            raise ValueError(f"criterion must be one of {', '.join(_saliency.filter_criteria())}; got {self.criterion!r}")
        if self.round_to < 1 or self.min_channels < 1:
            raise ValueError(f"round_to and min_channels must be >= 1, got {self.round_to} and {self.min_channels}")


@dataclass
class ChannelGroup:
    """Tensors that share one set of channels. ``producers`` make them, ``members`` carry them,
    ``consumers`` read them as input channels; ``blocked`` says why the group cannot be pruned."""

    channels: int = 0
    producers: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    residual: bool = False
    blocked: list[str] = field(default_factory=list)

    @property
    def prunable(self) -> bool:
        return not self.blocked and bool(self.producers)

    @property
    def name(self) -> str:
        return self.producers[0] if self.producers else (self.members[0] if self.members else "?")


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _analyse(model: keras.Model) -> tuple[dict[str, ChannelGroup], dict[str, str], dict[str, list[str]]]:
    """(groups by root, root of each layer's output, inbound layer names of each layer)."""
    config = model.get_config()
    uf = _UnionFind()
    inbound: dict[str, list[str]] = {}
    role: dict[str, str] = {}
    notes: list[tuple[str, str]] = []  # (layer whose space is blocked, why)
    for entry in config["layers"]:
        name, cls, cfg = entry["name"], entry["class_name"], entry["config"]
        ins = single_inbound(entry)
        inbound[name] = ins
        uf.find(name)
        if cls == "InputLayer":
            notes.append((name, "model input"))
        elif cls == "Conv2D" and cfg.get("groups", 1) == 1 or cls == "Dense":
            role[name] = "producer"
        elif cls == "Conv2D":
            notes += [(name, f"grouped convolution {name} (groups={cfg['groups']})"), (ins[0], f"grouped convolution {name} (groups={cfg['groups']})")]
        elif cls == "DepthwiseConv2D" and cfg.get("depth_multiplier", 1) == 1:
            uf.union(ins[0], name)
            role[name] = "member"
        elif cls in _PASS_THROUGH:
            uf.union(ins[0], name)
            role[name] = "member"
        elif cls in _ELEMENTWISE:
            for i in ins:
                uf.union(i, name)
            role[name] = "residual" if cls == "Add" else "member"
        else:
            why = f"{cls} layer {name}"
            notes += [(name, why)] + [(i, why) for i in ins]
    for out in config["output_layers"]:
        notes.append((out[0], "model output"))

    groups: dict[str, ChannelGroup] = {}
    root_of = {name: uf.find(name) for name in inbound}
    for layer in model.layers:
        name = layer.name
        g = groups.setdefault(root_of[name], ChannelGroup())
        r = role.get(name)
        if r == "producer":
            g.producers.append(name)
            g.channels = int(layer.output.shape[-1])
            for i in inbound[name]:
                groups.setdefault(root_of[i], ChannelGroup()).consumers.append(name)
        elif r in ("member", "residual"):
            g.members.append(name)
            g.residual |= r == "residual"
    for name, why in notes:
        groups.setdefault(root_of[name], ChannelGroup()).blocked.append(why)
    for g in groups.values():
        if not g.producers and not g.blocked:
            g.blocked.append("no producing convolution")
    return groups, root_of, inbound


def channel_groups(model: keras.Model) -> list[ChannelGroup]:
    """The channel groups of a Functional model, in layer order, with why each blocked one is blocked."""
    require_functional(model, "edgeopt.compress.structured")
    groups, _, _ = _analyse(model)
    return [g for g in groups.values() if g.producers or g.members]


def filter_importance(model: keras.Model, group: ChannelGroup) -> np.ndarray:
    """L1 norm of each channel's filters, each producer normalised by its mean, summed over producers."""
    return group_scores(model, [group], "l1")[group.name]


def group_scores(model: keras.Model, groups: list[ChannelGroup], criterion: str = "l1", data=None,
                 options: SaliencyOptions = SaliencyOptions()) -> dict[str, np.ndarray]:
    """One score per channel of each group (keyed by group name; higher = keep): ``criterion``'s score of
    each producer's output channels, each producer divided by its mean absolute score, summed over producers
    (:func:`edgeopt.compress.saliency.combine`). One pass over ``data`` serves all groups."""
    per = _saliency.filter_scores(model, criterion, [p for g in groups for p in g.producers], data, options)
    return {g.name: _saliency.combine(per, g.producers, g.channels) for g in groups}


def _check_data(config: StructuredConfig, data) -> None:
    needs_data, needs_labels = _saliency.criterion_needs(config.criterion)
    if needs_data and data is None:
        raise ValueError(
            f"criterion {config.criterion!r} needs data: call prune_filters(model, config, data=...) with real images"
            + (" and labels" if needs_labels else "") + " (a dataset of batches, arrays or Splits)"
        )


def plan(model: keras.Model, config: StructuredConfig = StructuredConfig(), data=None) -> dict[str, np.ndarray]:
    """Kept channel indices (sorted) for every group the config prunes, keyed by the group's first producer.
    ``data``: the images (and labels) a data criterion reads; ignored by ``l1``, ``l2`` and ``fpgm``."""
    _check_data(config, data)
    todo = []
    for g in channel_groups(model):
        if not g.prunable or (g.residual and config.scope == "internal") or set(g.producers) & set(config.exclude):
            continue
        n_keep = max(config.min_channels, config.round_to * math.ceil(g.channels * (1 - config.ratio) / config.round_to))
        if n_keep < g.channels:
            todo.append((g, n_keep))
    scores = group_scores(model, [g for g, _ in todo], config.criterion, data, config.saliency) if todo else {}
    return {g.name: top_channels(scores[g.name], n_keep) for g, n_keep in todo}


def top_channels(scores: np.ndarray, n: int) -> np.ndarray:
    """The sorted indices of the ``n`` highest ``scores`` (ties: the lower index first), the channels a cut keeps."""
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:n])


def prune_filters(model: keras.Model, config: StructuredConfig = StructuredConfig(), data=None) -> keras.Model:
    """A smaller dense copy of ``model`` without the lowest-scoring ``ratio`` of channels of each prunable group
    (by ``config.criterion``; ``data`` feeds the criteria that need images, see :mod:`edgeopt.compress.saliency`).

    Raises ValueError when nothing can be pruned (listing why each group is blocked) or when the criterion
    needs data and none is given, TypeError for Keras 3 or subclassed models.
    """
    _check_data(config, data)
    keep = plan(model, config, data)
    if not keep:
        reasons = sorted({why for g in channel_groups(model) for why in g.blocked if g.producers})
        raise ValueError(
            f"no channel group of {model.name} can be pruned with scope={config.scope!r}: "
            + ("; ".join(reasons[:8]) or "every group is excluded or too small")
            + (". Grouped convolutions and channel shuffles tie channels across groups; edgeopt does not prune them." if any("grouped" in r or "Reshape" in r for r in reasons) else "")
        )
    return rebuild(model, keep)


def rebuild(model: keras.Model, keep: dict[str, np.ndarray]) -> keras.Model:
    """Rebuild ``model`` keeping only ``keep[group]`` channels of the named groups; copies sliced weights."""
    groups, root_of, inbound = _analyse(model)
    by_root = {}
    for root, g in groups.items():
        if g.name in keep:
            if not g.prunable:
                raise ValueError(f"channel group {g.name} cannot be pruned: {'; '.join(g.blocked)}")
            by_root[root] = np.asarray(keep[g.name])
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        kept = by_root.get(root_of[entry["name"]])
        if kept is not None and entry["class_name"] in ("Conv2D", "Dense"):
            entry["config"]["filters" if entry["class_name"] == "Conv2D" else "units"] = int(len(kept))
    new = keras.Model.from_config(config)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        out_keep = by_root.get(root_of[layer.name])
        in_keep = by_root.get(root_of[inbound[layer.name][0]]) if inbound[layer.name] else None
        new.get_layer(layer.name).set_weights(_slice(layer, weights, in_keep, out_keep))
    return new


def _slice(layer, weights: list[np.ndarray], in_keep, out_keep) -> list[np.ndarray]:
    if isinstance(layer, L.DepthwiseConv2D):
        if in_keep is None:
            return weights
        return [weights[0][:, :, in_keep, :]] + [b[in_keep] for b in weights[1:]]
    if isinstance(layer, (L.Conv2D, L.Dense)):
        kernel = weights[0]
        if in_keep is not None:
            kernel = np.take(kernel, in_keep, axis=-2)
        if out_keep is not None:
            kernel = np.take(kernel, out_keep, axis=-1)
            return [kernel] + [b[out_keep] for b in weights[1:]]
        return [kernel] + weights[1:]
    if isinstance(layer, L.BatchNormalization) and out_keep is not None:
        return [w[out_keep] for w in weights]
    return weights
