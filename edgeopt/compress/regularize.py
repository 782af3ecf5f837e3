"""Weight penalties added to the training loss, so that weights (L1) or whole filters (group lasso) shrink
before they are cut; and the share of near-zero weights and filters that shows whether they did.

    reg = regularize(model, RegularizationConfig(kind="group_lasso", strength=1e-4))
    fit(reg, splits, TrainConfig(...))   # minimizes cross-entropy + penalty
    plain = strip_regularization(reg)    # the same weights, no penalty
    near_zero(plain).filters             # share of filters whose norm is < eps x the layer's largest

Penalties, with ``s`` = ``strength`` and the sums over the kernels of the layers :mod:`~edgeopt.compress.policy` selects:

* ``l1``: ``s * sum |w|``; ``l2``: ``s * sum w^2`` (Keras' ``regularizers.L2`` convention: no 1/2);
* ``group_lasso`` (Yuan & Lin 2006; Wen et al. 2016 for filters): ``s * sum_c g_c ||W_c||_2``, ``W_c`` every
  kernel weight producing output channel ``c`` (``kernel[..., c]``), ``g_c = sqrt(|W_c|)`` with
  ``sqrt_group_size`` (so that layers with larger filters are not favoured), else 1. The norm's gradient at a
  filter that is exactly zero is taken as 0 (a pruned filter stays put rather than turning into NaN).

The penalty is one callable loss per layer on a copy of the model (``model.add_loss(fn)``): Keras adds
``model.losses`` to the compiled loss in training and validation, but callable losses are not layers, so the
model's config, its saved files and the converted .tflite do not contain them, and ``clone_model`` drops them.
Depthwise kernels are not regularized (the policies select convolutions and dense layers only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np

from edgeopt._keras import keras, tf, unwrap_layer
from edgeopt.compress import policy as _policy
from edgeopt.compress.graph import clone_with_weights
from edgeopt.compress.masks import kernel_of, prunable_layers
from edgeopt.config import Config
from edgeopt.registry import Registry
from edgeopt.train import TrainConfig, TrainResult, fit

NEAR_ZERO_EPS = 0.01  # |w| < 1% of the layer's largest |w| counts as near zero
_TINY = 1e-30  # squared filter norms below this have a zero gradient instead of NaN

Penalty = Callable[[tf.Variable, "RegularizationConfig"], tf.Tensor]
PENALTIES: Registry[Penalty] = Registry("regularization kind")


@PENALTIES.register("l1")
def _l1(kernel, config: "RegularizationConfig"):
    return config.strength * tf.reduce_sum(tf.abs(kernel))


@PENALTIES.register("l2")
def _l2(kernel, config: "RegularizationConfig"):
    return config.strength * tf.reduce_sum(tf.square(kernel))


@PENALTIES.register("group_lasso")
def _group_lasso(kernel, config: "RegularizationConfig"):
    per_filter = tf.reshape(kernel, [-1, kernel.shape[-1]])  # (weights per filter, output channels)
    squares = tf.reduce_sum(tf.square(per_filter), axis=0)
    norms = tf.where(squares > 0, tf.sqrt(tf.maximum(squares, _TINY)), tf.zeros_like(squares))
    scale = math.sqrt(per_filter.shape[0]) if config.sqrt_group_size else 1.0
    return config.strength * scale * tf.reduce_sum(norms)


@dataclass(frozen=True)
class RegularizationConfig(Config):
    """A penalty on kernels: ``kind`` (``l1``, ``l2``, ``group_lasso``) times ``strength`` (> 0, e.g. 1e-5 for L1
    per weight, 1e-4 for group lasso per filter). Which layers: ``policy`` (``default``: convolutions and dense
    layers, the first convolution only with ``first_conv``, the classifier unless ``classifier=False``;
    ``xnnpack``: 1x1 convolutions; ``explicit``: only ``layers``), plus the layers named in ``layers``, minus
    ``exclude``. ``sqrt_group_size``: group lasso weighs each filter by the square root of its size."""

    kind: str = "l1"
    strength: float = 1e-5
    policy: str = "default"
    layers: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    first_conv: bool = False
    classifier: bool = True
    sqrt_group_size: bool = False

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.kind not in PENALTIES:
            raise ValueError(f"kind must be one of {', '.join(PENALTIES.names())}; got {self.kind!r}")
        if not (self.strength > 0 and math.isfinite(self.strength)):
            raise ValueError(f"strength must be a finite number > 0 (e.g. 1e-5 for l1, 1e-4 for group_lasso), got {self.strength}")
        if self.policy not in _policy.POLICIES:
            raise ValueError(f"policy must be one of {', '.join(_policy.POLICIES.names())}; got {self.policy!r}")
        if self.policy == "explicit" and not self.layers:
            raise ValueError('layers must name the layers to regularize when policy = "explicit"')
        if self.sqrt_group_size and self.kind != "group_lasso":
            raise ValueError(f'sqrt_group_size applies to kind = "group_lasso" only; got kind = {self.kind!r}')


def regularized_layers(model: keras.Model, config: RegularizationConfig) -> list[str]:
    """Names of the layers whose kernels ``config`` penalizes (the layers inside TF-MOT wrappers count as themselves)."""
    inner = [unwrap_layer(layer) for layer in model.layers]
    view = SimpleNamespace(name=model.name, layers=inner)  # the policies read .layers and .name: give them the unwrapped layers
    opts = _policy.PolicyOptions(prune_first_conv=config.first_conv, prune_classifier=config.classifier)
    try:
        names = _policy.select_layers(view, config.policy, opts, dict.fromkeys(config.layers, 0.0))
    except ValueError as err:
        raise ValueError(str(err).replace("layer_sparsity names", "regularization layers names")) from None
    unknown = sorted(set(config.exclude) - {layer.name for layer in inner})
    if unknown:
        raise ValueError(f"regularization exclude names {', '.join(unknown)}, which are not layers of {model.name}")
    names = [n for n in names if n not in config.exclude]
    if not names:
        raise ValueError(f"regularization (policy {config.policy!r}) selects no layer of {model.name}")
    return names


def _kernels(model: keras.Model, names: list[str]) -> list[tf.Variable]:
    by_name = {unwrap_layer(layer).name: unwrap_layer(layer) for layer in model.layers}
    return [by_name[n].kernel for n in names]


def regularize(model: keras.Model, config: RegularizationConfig) -> keras.Model:
    """A copy of ``model`` (TF-MOT wrappers kept) whose training loss adds ``config``'s penalty, one callable loss
    per regularized layer (``model.losses``, in the order of :func:`regularized_layers`). ``model`` is not changed."""
    names = regularized_layers(model, config)
    new = clone_with_weights(model)
    penalty = PENALTIES.get(config.kind)
    for kernel in _kernels(new, names):
        new.add_loss(lambda kernel=kernel: penalty(kernel, config))
    return new


def strip_regularization(model: keras.Model) -> keras.Model:
    """An independent copy of ``model`` with its weights and without the penalty (callable losses are not cloned)."""
    return clone_with_weights(model)


def fit_with_penalty(model: keras.Model, splits, train: TrainConfig, regularization: RegularizationConfig | None,
                     callbacks=()) -> tuple[keras.Model, TrainResult]:
    """Train ``model`` on ``splits`` with ``train``, adding ``regularization``'s penalty when it is given.

    Without a penalty this is :func:`edgeopt.train.fit`: ``model`` itself is trained and returned. With one, a
    penalized copy is trained and a plain copy of it (no penalty) is returned; ``model`` is not changed."""
    if regularization is None:
        return model, fit(model, splits, train, callbacks=callbacks)
    penalized = regularize(model, regularization)
    result = fit(penalized, splits, train, callbacks=callbacks)
    return strip_regularization(penalized), result


# ---- near-zero weights -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NearZeroLayer:
    """One kernel: its ``size`` (weights) and ``filters`` (output channels), and the shares of them near zero."""

    name: str
    size: int
    filters: int
    near_zero_weights: float
    near_zero_filters: float


@dataclass(frozen=True)
class NearZero:
    """Shares of near-zero kernel weights (``|w| < eps * max|w|`` of the layer, or exactly 0) and of near-zero
    filters (``||W_c||_2 < eps * max_c ||W_c||_2`` of the layer, or exactly 0), over all ``layers`` weighted by size."""

    eps: float
    weights: float
    filters: float
    layers: tuple[NearZeroLayer, ...]

    def metrics(self) -> dict:
        """The stage metrics: ``near_zero_weights``, ``near_zero_filters`` (fractions, 4 decimals) and ``near_zero_eps``."""
        return {"near_zero_weights": round(self.weights, 4), "near_zero_filters": round(self.filters, 4), "near_zero_eps": self.eps}


def _near(values: np.ndarray, eps: float) -> np.ndarray:
    top = float(values.max()) if values.size else 0.0
    return (values < eps * top) | (values == 0)


def near_zero(model: keras.Model, eps: float = NEAR_ZERO_EPS, names: list[str] | None = None) -> NearZero:
    """Near-zero weights and filters of the kernels of ``names`` (default: every convolution and dense layer,
    the first convolution and the classifier included; depthwise kernels are not counted)."""
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1) (a share of the layer's largest weight), got {eps}")
    rows = []
    for name in prunable_layers(model) if names is None else names:
        kernel = kernel_of(model, name).numpy()
        per_filter = kernel.reshape(-1, kernel.shape[-1])
        rows.append(NearZeroLayer(name, kernel.size, kernel.shape[-1], float(_near(np.abs(kernel), eps).mean()),
                                  float(_near(np.sqrt((per_filter.astype(np.float64) ** 2).sum(axis=0)), eps).mean())))
    size, filters = sum(r.size for r in rows), sum(r.filters for r in rows)
    return NearZero(eps, sum(r.near_zero_weights * r.size for r in rows) / size if size else 0.0,
                    sum(r.near_zero_filters * r.filters for r in rows) / filters if filters else 0.0, tuple(rows))
