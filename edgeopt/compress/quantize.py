"""Quantization-aware training (QAT) over ``tfmot.quantization.keras``: ``quantize(model, QATConfig) -> model``.

TF-MOT's default 8-bit scheme refuses some layers that the zoo (and common user models) contain. Rather than
asking the user to write ``QuantizeConfig`` classes, edgeopt decides per layer from one policy table,
:data:`QAT_POLICY`: each row says which layers it matches, which ``QuantizeConfig`` edgeopt supplies, and why.
Layers that neither TF-MOT nor the table can quantize are named in a :class:`QATUnsupportedError` with the
reason and the way around it.

``QATConfig.preserve`` selects TF-MOT's collaborative schemes: ``"sparsity"`` (PQAT: pruned weights stay zero),
``"clusters"`` (CQAT: clustered weights keep their centroids) and ``"sparsity_and_clusters"`` (PCQAT).

The result is a Keras model that fake-quantizes weights and activations; fine-tune it with a small learning
rate (1e-4..3e-4 for Adam), then export it with ``edgeopt.export.to_tflite(model, "int8", ...)``. Loading a
saved QAT model needs :func:`quantize_scope`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgeopt._keras import keras, require_keras2_model, tf  # noqa: F401  (tf_keras before TF-MOT)
from edgeopt.config import Config
import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _quantize_layer  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_configs as _configs,
    default_8bit_quantize_registry as _registry,
)
from edgeopt.compress.graph import clone_with_weights
from edgeopt.compress.qat_layout import CLUSTERED_SCALES, DEPTHWISE_SCALES, DepthwiseQuantizeConfig, Scheme, WeightsOnlyQuantizeConfig  # noqa: E402

L = keras.layers
_QK = tfmot.quantization.keras

PRESERVE_MODES = ("none", "sparsity", "clusters", "sparsity_and_clusters")
UNSUPPORTED_ACTIONS = ("error", "float")

# Activation functions TF-MOT's Default8BitActivationQuantizeConfig knows (it raises on any other name).
_TFMOT_ACTIVATIONS = frozenset({"relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh"})
# Layers whose batch norm TF-MOT's layout transforms fold (Conv -> BN [-> ReLU]); a BN after anything else
# is neither folded nor in the registry.
_FOLDS_BN = (L.Conv2D, L.DepthwiseConv2D)


class QATUnsupportedError(ValueError):
    """A layer neither TF-MOT nor edgeopt's :data:`QAT_POLICY` can quantize; the message says why and what to do."""


@dataclass(frozen=True)
class QATConfig(Config):
    """How to make a model quantization-aware.

    - ``preserve``: ``"none"`` (plain QAT), ``"sparsity"`` (PQAT), ``"clusters"`` (CQAT) or
      ``"sparsity_and_clusters"`` (PCQAT); the collaborative schemes keep zeros / centroids of the input's
      weights through fake quantization and fine-tuning.
    - ``float_layers``: names of layers left unquantized (they then need float kernels in the ``.tflite``,
      so a full-integer export fails on them; meant for experiments).
    - ``unsupported``: ``"error"`` raises :class:`QATUnsupportedError` naming every unquantizable layer;
      ``"float"`` leaves such layers in float instead.
    - ``calibration_samples``: training images whose float activations set the initial activation ranges
      before fine-tuning (:func:`calibrate_ranges`); 0 keeps TF-MOT's [-6, 6] start.
    - ``clustered_scales``: for CQAT/PCQAT, ``"per_tensor"`` (default) gives each clustered convolution kernel
      one int8 scale, so its clusters stay about as many int8 codes tensor-wide (smaller gzipped .tflite);
      ``"per_channel"`` is TF-MOT's choice (one scale per output channel).
    - ``depthwise_scales``: ``"per_channel"`` (default) fake-quantizes DepthwiseConv2D kernels with one range
      per output channel, as post-training quantization does; ``"per_tensor"`` is TF-MOT's layout, one range
      per depth-multiplier index, so per kernel at multiplier 1 (tensorflow/model-optimization#808), where
      channels with small weights round to few codes.
    """

    preserve: str = "none"
    float_layers: tuple[str, ...] = ()
    unsupported: str = "error"
    calibration_samples: int = 512
    clustered_scales: str = "per_tensor"
    depthwise_scales: str = "per_channel"

    def __post_init__(self):
        if self.preserve not in PRESERVE_MODES:
            raise ValueError(f"QATConfig.preserve must be one of {', '.join(PRESERVE_MODES)}; got {self.preserve!r}")
        if self.unsupported not in UNSUPPORTED_ACTIONS:
            raise ValueError(f"QATConfig.unsupported must be one of {', '.join(UNSUPPORTED_ACTIONS)}; got {self.unsupported!r}")
        if isinstance(self.float_layers, str) or not all(isinstance(n, str) for n in self.float_layers):
            raise ValueError(f"QATConfig.float_layers must be a tuple of layer names, got {self.float_layers!r}")
        object.__setattr__(self, "float_layers", tuple(self.float_layers))
        if self.clustered_scales not in CLUSTERED_SCALES:
            raise ValueError(f"QATConfig.clustered_scales must be one of {', '.join(CLUSTERED_SCALES)}; got {self.clustered_scales!r}")
        if self.depthwise_scales not in DEPTHWISE_SCALES:
            raise ValueError(f"QATConfig.depthwise_scales must be one of {', '.join(DEPTHWISE_SCALES)}; got {self.depthwise_scales!r}")
        if not isinstance(self.calibration_samples, int) or isinstance(self.calibration_samples, bool) or self.calibration_samples < 0:
            raise ValueError(f"QATConfig.calibration_samples must be an integer >= 0, got {self.calibration_samples!r}")


# ---------------------------------------------------------------------------------------------- policy table


@dataclass(frozen=True)
class QATRule:
    """One row of the policy: layers of ``layer_type`` for which ``applies(layer, model)`` holds get
    ``make_config()`` (a TF-MOT ``QuantizeConfig``), or are unsupported when ``make_config`` is None."""

    layer_type: type
    make_config: Callable[[], object] | None
    reason: str
    applies: Callable[[object, object], bool] = lambda layer, model: True


def _output_only():
    # TF-MOT's own class, so saved models load inside tfmot's quantize_scope without extra custom objects.
    return _configs.Default8BitOutputQuantizeConfig()


def _activation_unknown_to_tfmot(layer, model) -> bool:
    return getattr(layer.activation, "__name__", None) not in _TFMOT_ACTIVATIONS


def _not_after_conv(layer, model) -> bool:
    inbound = [n.inbound_layers for n in layer._inbound_nodes]  # noqa: SLF001 (keras has no public API for this)
    parents = [p for group in inbound for p in (group if isinstance(group, (list, tuple)) else [group])]
    return not parents or not all(isinstance(p, _FOLDS_BN) for p in parents)


QAT_POLICY: tuple[QATRule, ...] = (
    QATRule(L.Multiply, _output_only, "squeeze-excite gate x * sigmoid(s): TF-MOT's registry has no Multiply; edgeopt "
            "quantizes its output to int8 like Add (TFLite MUL takes int8 inputs with their own scales)"),
    QATRule(L.Subtract, _output_only, "not in TF-MOT's registry; quantize the output like Add"),
    QATRule(L.Maximum, _output_only, "not in TF-MOT's registry; quantize the output like Add"),
    QATRule(L.Minimum, _output_only, "not in TF-MOT's registry; quantize the output like Add"),
    QATRule(L.Average, _output_only, "not in TF-MOT's registry; quantize the output like Add"),
    QATRule(L.Rescaling, _output_only, "input scaling layer: not in TF-MOT's registry; quantize its output"),
    QATRule(L.Normalization, _output_only, "input normalization layer: not in TF-MOT's registry; quantize its output"),
    QATRule(L.BatchNormalization, _output_only, "batch norm not directly after a convolution is not folded by TF-MOT "
            "and not in its registry; edgeopt quantizes its output (TFLite runs it as int8 MUL+ADD)", _not_after_conv),
    QATRule(L.Activation, _output_only, "activation function unknown to TF-MOT's Activation config (it knows relu, "
            "relu6, swish, gelu, sigmoid, tanh, softmax, linear); edgeopt quantizes the output", _activation_unknown_to_tfmot),
    QATRule(L.Lambda, None, "a Lambda layer runs arbitrary Python that TF-MOT can neither inspect nor clone safely; "
            "rebuild the model with builtin layers (the edgeopt zoo never uses Lambda)"),
)


@dataclass(frozen=True)
class LayerDecision:
    """What :func:`quantize` does with one layer: ``action`` is ``"tfmot"`` (TF-MOT's default config),
    ``"edgeopt"`` (a config from :data:`QAT_POLICY`), ``"float"`` (left unquantized) or ``"unsupported"``."""

    name: str
    layer_type: str
    action: str
    reason: str = ""


def plan(model: keras.Model, config: QATConfig = QATConfig()) -> list[LayerDecision]:
    """The per-layer decisions :func:`quantize` would take on ``model`` (input layers excluded)."""
    require_keras2_model(model, "edgeopt.compress.quantize.plan")
    registry = _registry.Default8BitQuantizeRegistry()
    decisions = []
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        kind = type(layer).__name__
        if layer.name in config.float_layers:
            decisions.append(LayerDecision(layer.name, kind, "float", "listed in QATConfig.float_layers"))
            continue
        rule = next((r for r in QAT_POLICY if type(layer) is r.layer_type and r.applies(layer, model)), None)
        if rule is not None:
            action = "edgeopt" if rule.make_config is not None else "unsupported"
            decisions.append(LayerDecision(layer.name, kind, action, rule.reason))
        elif registry.supports(layer) or isinstance(layer, L.BatchNormalization):
            decisions.append(LayerDecision(layer.name, kind, "tfmot"))
        else:
            decisions.append(LayerDecision(layer.name, kind, "unsupported", f"{kind} is neither in TF-MOT's default 8-bit "
                                           "registry nor in edgeopt's QAT_POLICY; replace it by builtin layers, or list "
                                           "it in QATConfig.float_layers to keep it in float"))
    if config.unsupported == "float":
        decisions = [LayerDecision(d.name, d.layer_type, "float", d.reason) if d.action == "unsupported" else d for d in decisions]
    return decisions


def quantize(model: keras.Model, config: QATConfig = QATConfig(), *, scheme=None) -> keras.Model:
    """A new quantization-aware copy of ``model`` (the input is not modified).

    Layers are annotated per :func:`plan`: TF-MOT's defaults where it has them, edgeopt's ``QuantizeConfig``
    from :data:`QAT_POLICY` where it refuses, ``NoOpQuantizeConfig`` for float layers. Raises
    :class:`QATUnsupportedError` listing every layer that cannot be quantized. ``scheme`` replaces the
    :class:`~edgeopt.compress.qat_layout.Scheme` made from ``config`` (``edgeopt.compress.lowbit`` passes
    one whose weight quantizers have fewer bits).
    """
    require_keras2_model(model, "edgeopt.compress.quantize")
    if not getattr(model, "_is_graph_network", False) and not isinstance(model, keras.Sequential):
        raise TypeError("edgeopt.compress.quantize needs a Functional or Sequential tf_keras model; subclassed models "
                        "cannot be cloned layer by layer. Rebuild it functionally (edgeopt.models.create does).")
    decisions = {d.name: d for d in plan(model, config)}
    bad = [d for d in decisions.values() if d.action == "unsupported"]
    if bad:
        lines = "\n".join(f"  - {d.name} ({d.layer_type}): {d.reason}" for d in bad)
        raise QATUnsupportedError(f"{len(bad)} layer(s) cannot be quantized:\n{lines}")
    rules = {type(layer): r for layer in model.layers for r in QAT_POLICY if type(layer) is r.layer_type}

    def annotate(layer):
        decision = decisions.get(layer.name)
        if decision is None:  # input layer
            return layer
        if decision.action == "float":
            return _QK.quantize_annotate_layer(layer, _configs.NoOpQuantizeConfig())
        if decision.action == "edgeopt":
            return _QK.quantize_annotate_layer(layer, rules[type(layer)].make_config())
        return _QK.quantize_annotate_layer(layer)

    # The annotated clone shares the input's layers (as TF-MOT's quantize_annotate_model does);
    # quantize_apply then clones it again with copied weights, so the input model is never touched.
    annotated = keras.models.clone_model(model, clone_function=annotate)
    with quantize_scope():
        return _QK.quantize_apply(annotated, scheme or Scheme(config.preserve, config.clustered_scales, config.depthwise_scales))


_RANGE_PREFIXES = ("output", "post_activation")  # quantizers of a layer's own output


def _range_pair(layer, prefix: str):
    """The (min, max) variables named ``<prefix>_min`` / ``<prefix>_max`` of a QAT layer, or None."""
    by_name = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
    pair = (by_name.get(f"{prefix}_min"), by_name.get(f"{prefix}_max"))
    return pair if all(v is not None for v in pair) else None


def calibrate_ranges(qat: keras.Model, model: keras.Model, samples: np.ndarray, batch_size: int = 128) -> int:
    """Set the activation ranges of ``qat`` (made by :func:`quantize` from ``model``) to the min/max the float
    ``model`` produces on ``samples``, and return how many ranges were set.

    TF-MOT starts every moving-average range at [-6, 6] and moves it 0.1% per training step (EMA decay
    0.999): after 150 steps the ranges are still 86% the initial guess, so a short QAT fine-tune trains and
    exports with ranges that clip larger activations (MobileNetV2's linear bottlenecks) and waste half the
    int8 codes of ReLU outputs. Calibrating first, as post-training quantization does, fixes that; training
    then refines them. The input quantizer and each layer's output / post-activation quantizer are set; the
    pre-activation ranges (softmax/sigmoid inputs) keep TF-MOT's."""
    targets = {}  # float layer name (None: the model input) -> [(min variable, max variable)]
    float_names = {l.name for l in model.layers}
    for layer in qat.layers:
        inner = getattr(layer, "layer", None)
        if isinstance(layer, _quantize_layer.QuantizeLayer):
            found, key = [_range_pair(layer, layer.name)], None
        elif inner is not None and inner.name in float_names:
            found, key = [_range_pair(layer, prefix) for prefix in _RANGE_PREFIXES], inner.name
        else:
            continue
        for pair in found:
            if pair is not None:
                targets.setdefault(key, []).append(pair)
    names = [n for n in targets if n is not None]
    # a fresh copy: layers of a model made from another one (strip_clustering, clone_model) can have several
    # call nodes, and layer.output would then belong to the other graph

    own = clone_with_weights(model)
    probe = keras.Model(own.inputs, [own.get_layer(n).output for n in names]) if names else None
    lo, hi = {}, {}
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        outs = probe.predict_on_batch(batch) if probe is not None else []
        outs = outs if isinstance(outs, list) else [outs]
        for name, value in [(None, batch), *zip(names, outs)]:
            value = np.asarray(value)
            lo[name] = min(lo.get(name, 0.0), float(value.min()))  # 0 stays inside the range, as TFLite requires
            hi[name] = max(hi.get(name, 0.0), float(value.max()))
    count = 0
    for name, pairs in targets.items():
        for min_var, max_var in pairs:
            min_var.assign(np.full(min_var.shape, lo[name], np.float32))
            max_var.assign(np.full(max_var.shape, hi[name], np.float32))
            count += 1
    return count


def quantize_scope():
    """Context manager to load a saved QAT model (``keras.models.load_model``) with every custom object it uses."""
    return _QK.quantize_scope({"WeightsOnlyQuantizeConfig": WeightsOnlyQuantizeConfig, "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig})


def quantized_layer_names(model: keras.Model) -> list[str]:
    """Names of the layers of a QAT model that carry a quantize wrapper (weights and/or outputs fake-quantized)."""
    return [layer.layer.name for layer in model.layers
            # by class name: TF-MOT's scope deserializes NoOpQuantizeConfig as its n-bit twin class
            if isinstance(layer, _QK.QuantizeWrapper) and type(layer.quantize_config).__name__ != "NoOpQuantizeConfig"]
