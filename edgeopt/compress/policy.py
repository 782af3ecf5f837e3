"""Which layers pruning touches: a table of policies, each a predicate over (layer, model facts).

``default``: convolutions (not depthwise: TF-MOT prunes no depthwise weights) and dense layers; the first
convolution (3 input channels, few weights, sensitive) and the classifier (last Dense) only on request.
``xnnpack``: only 1x1, stride-1, ungrouped convolutions, the layers XNNPACK's sparse kernels run.
``explicit``: exactly the layers named in ``layer_sparsity``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeopt._keras import keras
from edgeopt.registry import Registry

L = keras.layers


@dataclass(frozen=True)
class ModelFacts:
    """What policies need to know about the model beyond a single layer."""

    first_conv: str | None
    classifier: str | None


def model_facts(model: keras.Model) -> ModelFacts:
    convs = [l.name for l in model.layers if is_conv(l)]
    denses = [l.name for l in model.layers if isinstance(l, L.Dense)]
    return ModelFacts(convs[0] if convs else None, denses[-1] if denses else None)


def is_conv(layer) -> bool:
    """A regular (not depthwise, not separable) 2-D convolution."""
    return isinstance(layer, L.Conv2D) and not isinstance(layer, (L.DepthwiseConv2D, L.SeparableConv2D, L.Conv2DTranspose))


def is_pointwise(layer) -> bool:
    """A 1x1, stride-1, ungrouped convolution (the sparse-kernel shape of XNNPACK)."""
    return is_conv(layer) and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1) and getattr(layer, "groups", 1) == 1


@dataclass(frozen=True)
class PolicyOptions:
    prune_first_conv: bool = False
    prune_classifier: bool = True


Policy = Callable[[object, ModelFacts, PolicyOptions], bool]
POLICIES: Registry[Policy] = Registry("pruning policy")


@POLICIES.register("default")
def _default(layer, facts: ModelFacts, opts: PolicyOptions) -> bool:
    if layer.name == facts.first_conv and not opts.prune_first_conv:
        return False
    if layer.name == facts.classifier and not opts.prune_classifier:
        return False
    return is_conv(layer) or isinstance(layer, L.Dense)


@POLICIES.register("xnnpack")
def _xnnpack(layer, facts: ModelFacts, opts: PolicyOptions) -> bool:
    return is_pointwise(layer)


@POLICIES.register("explicit")
def _explicit(layer, facts: ModelFacts, opts: PolicyOptions) -> bool:
    return False  # the names in layer_sparsity decide


def prunable_names(model: keras.Model) -> list[str]:
    """Names of the layers whose kernel TF-MOT can prune (convolutions and dense layers)."""
    return [l.name for l in model.layers if is_conv(l) or isinstance(l, L.Dense)]


def select_layers(model: keras.Model, policy: str, opts: PolicyOptions, named: dict[str, float]) -> list[str]:
    """Names of the layers ``policy`` prunes in ``model``, plus every layer named in ``named``."""
    rule = POLICIES.get(policy)
    known = set(prunable_names(model))
    unknown = sorted(set(named) - known)
    if unknown:
        raise ValueError(
            f"layer_sparsity names {', '.join(unknown)}, which are not prunable layers of {model.name}; "
            f"prunable layers: {', '.join(sorted(known))}"
        )
    facts = model_facts(model)
    return [l.name for l in model.layers if l.name in named or (l.name in known and rule(l, facts, opts))]
