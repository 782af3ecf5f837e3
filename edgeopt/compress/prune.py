"""Magnitude pruning on TF-MOT: schedules, layer policies, block and m-by-n sparsity, global thresholds,
and a sparsity report read from the weights themselves.

    pruned = prune(model, PruneConfig(final_sparsity=0.5), total_steps=steps)
    fit(pruned, splits, TrainConfig(...), callbacks=pruning_callbacks(config))
    final = strip_pruning(pruned)
    print(sparsity_report(final).to_markdown())

``scope="layer"`` gives every selected layer the target sparsity (TF-MOT's way). ``scope="global"`` ranks
all selected weights by magnitude together (one threshold across layers, computed on the input model's
weights) and gives each layer the sparsity that threshold implies, capped at ``max_layer_sparsity``;
TF-MOT then ramps each layer to its own target.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from edgeopt._keras import keras
from edgeopt.config import Config
import tensorflow_model_optimization as tfmot  # noqa: E402  (after edgeopt._keras chose tf_keras)
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude  # noqa: E402
from edgeopt.compress import policy as _policy
from edgeopt.compress.graph import clone_with_weights, require_functional
from edgeopt.compress.masks import capped_global_counts

sparsity = tfmot.sparsity.keras
L = keras.layers

SCOPES = ("layer", "global")


def _constant(cfg: "PruneConfig", target: float, end_step: int | None):
    return sparsity.ConstantSparsity(target, cfg.begin_step, end_step if end_step is not None else -1, cfg.frequency)


def _polynomial(cfg: "PruneConfig", target: float, end_step: int | None):
    if end_step is None:
        raise ValueError("the polynomial schedule needs end_step: set PruneConfig.end_step or pass total_steps to prune()")
    return sparsity.PolynomialDecay(min(cfg.initial_sparsity, target), target, cfg.begin_step, end_step, cfg.power, cfg.frequency)


SCHEDULES: dict[str, Callable] = {"constant": _constant, "polynomial": _polynomial}


@dataclass(frozen=True)
class PruneConfig(Config):
    """How to prune.

    ``schedule``: ``constant`` (``final_sparsity`` from ``begin_step`` on, every ``frequency`` steps) or
    ``polynomial`` (Zhu & Gupta: ``initial_sparsity`` -> ``final_sparsity`` between ``begin_step`` and
    ``end_step`` with exponent ``power``); steps are optimizer steps (batches). ``policy``: which layers
    (see :mod:`edgeopt.compress.policy`); ``layer_sparsity`` maps layer names to their own target
    (with ``policy="explicit"`` only those layers are pruned). ``block_size`` (rows, cols) prunes blocks of
    Dense kernels; ``m_by_n`` such as (2, 4) keeps at most n-m non-zeros in every n consecutive input
    channels (the schedule is then ignored: TF-MOT applies the pattern once, at step 1).
    """

    schedule: str = "polynomial"
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.5
    begin_step: int = 0
    end_step: int | None = None
    frequency: int = 100
    power: float = 3.0
    policy: str = "default"
    scope: str = "layer"
    block_size: tuple[int, int] = (1, 1)
    m_by_n: tuple[int, int] | None = None
    layer_sparsity: tuple[tuple[str, float], ...] = ()
    prune_first_conv: bool = False
    prune_classifier: bool = True
    max_layer_sparsity: float = 0.98

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (normalise lists/dicts from to_dict/TOML)
        set_("block_size", tuple(int(v) for v in self.block_size))
        if self.m_by_n is not None:
            set_("m_by_n", tuple(int(v) for v in self.m_by_n))
        items = self.layer_sparsity.items() if isinstance(self.layer_sparsity, dict) else self.layer_sparsity
        set_("layer_sparsity", tuple((str(k), float(v)) for k, v in items))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if not 0.0 <= self.final_sparsity < 1.0:
            raise ValueError(f"final_sparsity must be in [0, 1), got {self.final_sparsity}")
        if not 0.0 <= self.initial_sparsity <= self.final_sparsity:
            raise ValueError(f"initial_sparsity must be in [0, final_sparsity={self.final_sparsity}], got {self.initial_sparsity}")
        if self.begin_step < 0:
            raise ValueError(f"begin_step must be >= 0, got {self.begin_step}")
        if self.frequency < 1:
            raise ValueError(f"frequency must be >= 1, got {self.frequency}")
        if self.end_step is not None:
            if self.end_step <= self.begin_step:
                raise ValueError(f"end_step must be > begin_step={self.begin_step}, got {self.end_step}")
            if self.schedule == "polynomial" and (self.end_step - self.begin_step) % self.frequency:
                raise ValueError(
                    f"end_step - begin_step ({self.end_step - self.begin_step}) must be a multiple of frequency={self.frequency}: "
                    "TF-MOT only updates masks on those steps, so final_sparsity would never be reached"
                )
        if self.power <= 0:
            raise ValueError(f"power must be > 0, got {self.power}")
        if self.policy not in _policy.POLICIES:
            raise ValueError(f"policy must be one of {', '.join(_policy.POLICIES.names())}; got {self.policy!r}")
        if self.policy == "explicit" and not self.layer_sparsity:
            raise ValueError("policy='explicit' needs layer_sparsity, e.g. {'block2a_expand_conv': 0.5}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {self.scope!r}")
        if len(self.block_size) != 2 or min(self.block_size) < 1:
            raise ValueError(f"block_size must be two integers >= 1, got {self.block_size}")
        if self.m_by_n is not None:
            if len(self.m_by_n) != 2 or not 0 < self.m_by_n[0] < self.m_by_n[1]:
                raise ValueError(f"m_by_n must be (m, n) with 0 < m < n, e.g. (2, 4); got {self.m_by_n}")
            if self.block_size != (1, 1) or self.scope != "layer":
                raise ValueError("m_by_n cannot be combined with block_size other than (1, 1) or scope 'global'")
        for name, s in self.layer_sparsity:
            if not 0.0 <= s < 1.0:
                raise ValueError(f"layer_sparsity[{name!r}] must be in [0, 1), got {s}")
        if not 0.0 < self.max_layer_sparsity < 1.0:
            raise ValueError(f"max_layer_sparsity must be in (0, 1), got {self.max_layer_sparsity}")
        if self.scope == "global" and self.final_sparsity > self.max_layer_sparsity:
            raise ValueError(f"final_sparsity {self.final_sparsity:g} is above max_layer_sparsity {self.max_layer_sparsity:g}: global pruning "
                             "cannot reach it with every layer at most that sparse; raise max_layer_sparsity or lower final_sparsity")


    def resolved_end_step(self, total_steps: int | None) -> int | None:
        """``end_step``, or when unset and ``total_steps`` is known: 70% of the way from ``begin_step`` to
        ``total_steps``, rounded down to a pruning step, which leaves the last 30% to recover."""
        if self.end_step is not None or total_steps is None or self.schedule != "polynomial" or self.m_by_n:
            return self.end_step
        span = max(self.frequency, int(0.7 * (total_steps - self.begin_step)) // self.frequency * self.frequency)
        return self.begin_step + span


def planned_sparsity(model: keras.Model, config: PruneConfig) -> dict[str, float]:
    """The target sparsity of every layer ``prune(model, config)`` wraps (name -> fraction of zeros)."""
    require_functional(model, "edgeopt.compress.prune")
    opts = _policy.PolicyOptions(config.prune_first_conv, config.prune_classifier)
    named = dict(config.layer_sparsity)
    names = _policy.select_layers(model, config.policy, opts, named)
    if config.m_by_n:
        n = config.m_by_n[1]
        names = [nm for nm in names if _input_channels(model.get_layer(nm)) % n == 0]
        return {nm: 1.0 - (n - config.m_by_n[0]) / n for nm in names}
    if config.scope == "global":
        free = [nm for nm in names if nm not in named]
        targets = global_layer_sparsity(model, free, config.final_sparsity, config.max_layer_sparsity)
    else:
        targets = {nm: config.final_sparsity for nm in names}
    targets.update(named)
    return {nm: s for nm, s in targets.items() if s > 0}


def _input_channels(layer) -> int:
    return int(layer.kernel.shape[-2])


def global_layer_sparsity(model: keras.Model, names: list[str], total: float, cap: float = 0.98) -> dict[str, float]:
    """Per-layer sparsities from one magnitude ranking over the kernels of ``names`` such that the zeros make up
    ``total`` of all their weights; no layer above ``cap`` (the excess goes to the others: ``capped_global_counts``)."""
    if total <= 0:
        return {nm: 0.0 for nm in names}
    mags = {nm: np.abs(model.get_layer(nm).kernel.numpy()) for nm in names}
    return {nm: count / mags[nm].size for nm, count in capped_global_counts(mags, total, cap).items()}


def prune(model: keras.Model, config: PruneConfig = PruneConfig(), *, total_steps: int | None = None) -> keras.Model:
    """A copy of ``model`` whose selected layers are wrapped for magnitude pruning (TF-MOT).

    ``total_steps`` (batches you will train for) sets ``end_step`` when the config leaves it unset.
    Train the result with :func:`pruning_callbacks` and finish with :func:`strip_pruning`. The input model
    is not changed. Raises TypeError for Keras 3 or subclassed models, ValueError for unknown layer names.
    """
    targets = planned_sparsity(model, config)
    if not targets:
        raise ValueError(f"policy {config.policy!r} selects no prunable layer in {model.name}")
    end_step = config.resolved_end_step(total_steps)
    if config.schedule == "polynomial" and not config.m_by_n and end_step is not None and total_steps is not None and end_step >= total_steps:
        raise ValueError(f"end_step={end_step} is not before total_steps={total_steps}: the final sparsity would not be reached")
    make = SCHEDULES[config.schedule]
    base = clone_with_weights(model)

    def wrap(layer):
        if isinstance(layer, keras.Model):
            raise TypeError(f"layer {layer.name!r} is a nested model; flatten it into one Functional model before pruning")
        if layer.name not in targets:
            return layer
        return sparsity.prune_low_magnitude(
            layer,
            pruning_schedule=make(config, targets[layer.name], end_step),
            block_size=config.block_size,
            sparsity_m_by_n=config.m_by_n,
        )

    try:
        return keras.models.clone_model(base, clone_function=wrap)
    except ValueError as err:
        raise ValueError(f"TF-MOT could not wrap {model.name} for pruning: {err}") from err


class PruningProgress(keras.callbacks.Callback):
    """Prints the current sparsity of the wrapped kernels (from their masks) after each epoch."""

    def on_epoch_end(self, epoch, logs=None):
        zeros = size = 0
        for layer in self.model.layers:
            for _, mask, _ in getattr(layer, "pruning_vars", ()):
                m = mask.numpy()
                zeros += int(m.size - np.count_nonzero(m))
                size += m.size
        if size:
            step = int(keras.backend.get_value(self.model.optimizer.iterations))
            print(f"pruning: epoch {epoch + 1}, step {step}, sparsity of pruned kernels {100 * zeros / size:.1f}%", flush=True)


def pruning_callbacks(config: PruneConfig | None = None, log_dir: str | None = None) -> list:
    """Callbacks a pruned model must train with: TF-MOT's step counter, progress, and optional summaries."""
    cbs = [sparsity.UpdatePruningStep(), PruningProgress()]
    if log_dir:
        cbs.append(sparsity.PruningSummaries(log_dir=log_dir))
    return cbs


def strip_pruning(model: keras.Model) -> keras.Model:
    """The plain Keras model under the pruning wrappers (zeros kept), as an independent copy."""
    return clone_with_weights(sparsity.strip_pruning(model))


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    kind: str
    zeros: int
    size: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Zeros in the kernels of convolution, depthwise and dense layers, per layer and in total."""

    layers: tuple[LayerSparsity, ...]
    zeros: int = field(init=False)
    size: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "zeros", sum(l.zeros for l in self.layers))
        object.__setattr__(self, "size", sum(l.size for l in self.layers))

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all reported kernels."""
        return self.zeros / self.size if self.size else 0.0

    def by_name(self) -> dict[str, float]:
        return {l.name: l.sparsity for l in self.layers}

    def to_dict(self) -> dict:
        return {"sparsity": self.sparsity, "zeros": self.zeros, "size": self.size, "layers": [{**asdict(l), "sparsity": l.sparsity} for l in self.layers]}

    def to_markdown(self) -> str:
        lines = ["| layer | kind | weights | zeros | sparsity % |", "|---|---|---:|---:|---:|"]
        lines += [f"| {l.name} | {l.kind} | {l.size:,} | {l.zeros:,} | {100 * l.sparsity:.1f} |" for l in self.layers]
        lines.append(f"| **total** | | {self.size:,} | {self.zeros:,} | {100 * self.sparsity:.1f} |")
        return "\n".join(lines)


def _kind(layer) -> str | None:
    if isinstance(layer, L.DepthwiseConv2D):
        return "depthwise"
    if _policy.is_pointwise(layer):
        return "1x1 conv"
    if _policy.is_conv(layer):
        return "conv"
    if isinstance(layer, L.Dense):
        return "dense"
    return None


def sparsity_report(model: keras.Model) -> SparsityReport:
    """Count exact zeros in every convolution/depthwise/dense kernel of ``model`` (wrapped or stripped)."""
    rows = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        kind = _kind(inner)
        if kind is None:
            continue
        kernel = (inner.depthwise_kernel if kind == "depthwise" else inner.kernel).numpy()
        rows.append(LayerSparsity(inner.name, kind, int(kernel.size - np.count_nonzero(kernel)), int(kernel.size)))
    return SparsityReport(tuple(rows))
