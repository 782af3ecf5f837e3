"""Weight QAT below 8 bits (4-bit, 2-bit, binary) with 8-bit activations: ``quantize_lowbit(model, LowBitConfig)
-> QAT model``, ``strip_lowbit(qat) -> plain model`` whose kernels hold the quantized values, and
``packed_size_bytes(model, bits)``.

The QAT model is edgeopt's int8 QAT (:func:`edgeopt.compress.quantize.quantize`: TF-MOT's 8-bit activation and
output quantizers, its batch-norm patterns, edgeopt's policy table and layout fixes) whose Conv2D,
DepthwiseConv2D and Dense weight quantizers are :class:`~edgeopt.compress.lowbit_quantizers.LowBitWeightsQuantizer`
at each layer's bit-width (:func:`plan_bits`): per output channel, MSE-optimal ranges, straight-through
gradients, binary weights at 1 bit (see :mod:`edgeopt.compress.lowbit_quantizers`). The first convolution and
the classifier stay at 8 bits by default.

Why not TF-MOT's experimental ``default_n_bit`` scheme (checked on mobilenet_v1_tiny and mobilenet_v2_tiny,
where it builds and trains): one bit-width for the whole model (no 8-bit first and last layers, no mixed
precision; annotating layers one by one disables its batch-norm patterns), min/max ranges (ternary at 2 bits
with most weights at zero), one range per DepthwiseConv2D kernel (tensorflow/model-optimization#808: its
per-axis quantizer takes the depth multiplier axis) and one per Dense kernel, and its Conv -> ReLU transform
drops the convolution's weight quantizer as the 8-bit one does (see :mod:`edgeopt.compress.qat_layout`).
Batch norms are handled as in 8-bit QAT: the unfolded kernel is quantized per channel, and the converter's
folding scales each channel's grid by that channel's factor, keeping its number of levels.

Export: ``edgeopt.export.to_tflite(strip_lowbit(qat), "int8", ..., lowbit_bits=plan_bits(...))`` (the recipe's
``export`` stage passes the ``lowbit`` stage's widths itself). Left alone, the converter quantizes each output channel
with scale max|w_c| / 127, so level k of Q lands on int8 code round(127 k / Q): exact for binary and 2-bit, up to 3/7
of an int8 step off at 4 bits. With ``lowbit_bits`` (:mod:`edgeopt.tflite.lowbit`) every low-bit kernel is rewritten
to the codes k * floor(127 / Q) with the matching scale, so the file holds the trained levels exactly; ``mode="int4"``
instead writes INT4 tensors through the optional ai-edge-quantizer (:mod:`edgeopt.tflite.int4`). The QAT model
itself does not convert at 2 or 4 bits: the MSE range search leaves FakeQuant ops on non-constant tensors.
:func:`packed_size_bytes` is what the weights would take packed at their bit-width.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Mapping

from edgeopt._keras import keras, require_keras2_model, tf  # noqa: F401  (tf_keras before TF-MOT)
from edgeopt.compress import lowbit_quantizers as _lq
from edgeopt.compress.graph import require_functional
from edgeopt.compress.policy import model_facts
from edgeopt.compress.qat_layout import DepthwiseQuantizeConfig, Scheme, WeightsOnlyQuantizeConfig, _LayoutTransform
from edgeopt.compress.quantize import QATConfig, quantize
from edgeopt.config import Config

import tensorflow_model_optimization as tfmot  # noqa: E402  (after tf_keras is chosen)

L = keras.layers
_QK = tfmot.quantization.keras
WEIGHTED = (L.Conv2D, L.DepthwiseConv2D, L.Dense)  # layers whose kernel is quantized (and counted when packed)


@dataclass(frozen=True)
class LowBitConfig(Config):
    """Weight bit-widths for :func:`quantize_lowbit` (activations stay 8-bit).

    - ``bits``: 1 (binary), 2 (ternary levels), 4 or 8 for every Conv2D / DepthwiseConv2D / Dense kernel not
      named below;
    - ``first_last_bits``: for the first convolution and the classifier (last Dense), 8 by default: they hold few
      weights and lose the most accuracy at low bit-widths;
    - ``depthwise_bits``: for DepthwiseConv2D kernels (None: ``bits``);
    - ``layer_bits``: ``{layer name: bits}`` overriding all of the above (mixed precision);
    - ``ranges``: ``"mse"`` (MSE-optimal per channel, default) or ``"minmax"`` (max |w| per channel, TF-MOT's rule),
      see :mod:`edgeopt.compress.lowbit_quantizers`;
    - ``binary_clip``: binary weights pass gradients where |w| <= binary_clip (straight-through estimator).
    """

    bits: int = 4
    first_last_bits: int = 8
    depthwise_bits: int | None = None
    layer_bits: tuple[tuple[str, int], ...] = ()
    ranges: str = "mse"
    binary_clip: float = 1.0

    def __post_init__(self):
        _lq.check_bits(self.bits, "LowBitConfig.bits")
        _lq.check_bits(self.first_last_bits, "LowBitConfig.first_last_bits")
        if self.depthwise_bits is not None:
            _lq.check_bits(self.depthwise_bits, "LowBitConfig.depthwise_bits")
        items = self.layer_bits.items() if isinstance(self.layer_bits, Mapping) else self.layer_bits
        try:
            pairs = tuple((name, bits) for name, bits in items)
        except (TypeError, ValueError):
            raise ValueError(f"LowBitConfig.layer_bits must map layer names to bits, e.g. {{'block2a_expand_conv': 2}}; got {self.layer_bits!r}") from None
        for name, bits in pairs:
            if not isinstance(name, str):
                raise ValueError(f"LowBitConfig.layer_bits keys must be layer names, got {name!r}")
            _lq.check_bits(bits, f"LowBitConfig.layer_bits[{name!r}]")
        object.__setattr__(self, "layer_bits", pairs)
        if self.ranges not in _lq.RANGES:
            raise ValueError(f"LowBitConfig.ranges must be one of {', '.join(_lq.RANGES)}; got {self.ranges!r}")
        if isinstance(self.binary_clip, bool) or not isinstance(self.binary_clip, (int, float)) or not self.binary_clip > 0:
            raise ValueError(f"LowBitConfig.binary_clip must be a number > 0 (1.0 as in BinaryConnect and Larq), got {self.binary_clip!r}")


def plan_bits(model: keras.Model, config: LowBitConfig = LowBitConfig()) -> dict[str, int]:
    """``{layer name: weight bits}`` for every Conv2D / DepthwiseConv2D / Dense layer of ``model``, in model order."""
    require_keras2_model(model, "edgeopt.compress.lowbit.plan_bits")
    weighted = [l for l in model.layers if isinstance(l, WEIGHTED)]
    unknown = sorted(set(dict(config.layer_bits)) - {l.name for l in weighted})
    if unknown:
        raise ValueError(f"layer_bits names {', '.join(unknown)}, which are not Conv2D/DepthwiseConv2D/Dense layers of "
                         f"{model.name}; those are: {', '.join(l.name for l in weighted)}")
    facts = model_facts(model)
    plan = {}
    for layer in weighted:
        if layer.name in (facts.first_conv, facts.classifier):
            plan[layer.name] = config.first_last_bits
        elif isinstance(layer, L.DepthwiseConv2D) and config.depthwise_bits is not None:
            plan[layer.name] = config.depthwise_bits
        else:
            plan[layer.name] = config.bits
    return {**plan, **dict(config.layer_bits)}


class LowBitScheme(Scheme):
    """edgeopt's 8-bit QAT scheme with :class:`~edgeopt.compress.lowbit_quantizers.LowBitQuantizeConfig` on the
    layers of ``layer_bits`` (name -> bits)."""

    def __init__(self, layer_bits: Mapping[str, int], ranges: str = "mse", clip: float = 1.0):
        super().__init__("none", "per_tensor", "per_channel")
        self.layer_bits, self.ranges, self.clip = dict(layer_bits), ranges, clip

    def config_for(self, layer_name: str, weight_attrs, activation_attrs=("activation",), quantize_output=False, weights_only=False):
        return _lq.LowBitQuantizeConfig(weight_attrs, activation_attrs, quantize_output, self.layer_bits[layer_name],
                                        self.ranges, self.clip, weights_only)

    def get_quantize_registry(self):
        return _LowBitRegistry(self, super().get_quantize_registry())

    def get_layout_transformer(self):
        return _LowBitLayout(self)


class _LowBitRegistry:
    def __init__(self, scheme: LowBitScheme, base):
        self.scheme, self._base = scheme, base

    def supports(self, layer):
        return self._base.supports(layer)

    def get_quantize_config(self, layer):
        config = self._base.get_quantize_config(layer)
        if layer.name not in self.scheme.layer_bits or not getattr(config, "weight_attrs", None):
            return config
        return self.scheme.config_for(layer.name, config.weight_attrs, config.activation_attrs, config.quantize_output)


class _LowBitLayout(_LayoutTransform):
    def apply(self, model, layer_quantize_map):
        model, layer_quantize_map = super().apply(model, layer_quantize_map)
        for name, entry in layer_quantize_map.items():
            # a weighted layer feeding a ReLU keeps only its weight quantizer (qat_layout); give it the low-bit one
            if isinstance(entry.get("quantize_config"), WeightsOnlyQuantizeConfig) and name in self.scheme.layer_bits:
                attr = "depthwise_kernel" if isinstance(model.get_layer(name), L.DepthwiseConv2D) else "kernel"
                entry["quantize_config"] = self.scheme.config_for(name, [attr], weights_only=True)
        return model, layer_quantize_map


def quantize_lowbit(model: keras.Model, config: LowBitConfig = LowBitConfig()) -> keras.Model:
    """A new QAT copy of ``model`` (the input is not modified) whose weights are fake-quantized at the bit-widths of
    :func:`plan_bits` and whose activations at 8 bits. Fine-tune it (Adam 1e-4..1e-3), then :func:`strip_lowbit`.
    Activation ranges start at TF-MOT's [-6, 6]: ``edgeopt.compress.quantize.calibrate_ranges(qat, model, x)`` sets them first."""
    require_functional(model, "edgeopt.compress.lowbit.quantize_lowbit")
    return quantize(model, QATConfig(), scheme=LowBitScheme(plan_bits(model, config), config.ranges, config.binary_clip))


def lowbit_scope():
    """Context manager to load a saved low-bit QAT model with every custom object it uses."""
    return _QK.quantize_scope({**_lq.CUSTOM_OBJECTS, "WeightsOnlyQuantizeConfig": WeightsOnlyQuantizeConfig,
                               "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig})


# ---------------------------------------------------------------------------------------------- strip


def _plain_activation(activation):
    """The activation a QAT wrapper's inner layer had before TF-MOT wrapped it (NoOpActivation: linear)."""
    if isinstance(activation, dict) and activation.get("class_name") == "QuantizeAwareActivation":
        activation = activation["config"]["activation"]
    if isinstance(activation, dict) and activation.get("class_name") == "NoOpActivation":
        return "linear"
    return activation


def strip_lowbit(qat: keras.Model) -> keras.Model:
    """A plain Keras model with the architecture ``qat`` was made from (no wrappers, no fake-quant layers) whose
    Conv2D / DepthwiseConv2D / Dense kernels hold the values the QAT model computes with: at most 2^bits - 1
    distinct values per output channel (exactly +-alpha_c when binary). Activation quantization is dropped;
    the int8 export calibrates activations again."""
    require_functional(qat, "edgeopt.compress.lowbit.strip_lowbit")
    config = copy.deepcopy(qat.get_config())
    rename, layers = {}, []
    for entry in config["layers"]:
        if entry["class_name"] == "QuantizeLayer":  # the input fake-quant: its consumers read its input
            rename[entry["name"]] = entry["inbound_nodes"][0][0][0]
            continue
        if entry["class_name"].startswith("QuantizeWrapper"):
            inner = entry["config"]["layer"]
            inner["config"]["activation"] = _plain_activation(inner["config"].get("activation"))
            if inner["config"]["activation"] is None:
                del inner["config"]["activation"]
            rename[entry["name"]] = inner["config"]["name"]
            entry = {"class_name": inner["class_name"], "config": inner["config"], "name": inner["config"]["name"],
                     "inbound_nodes": entry["inbound_nodes"]}
        layers.append(entry)
    resolve = lambda name: resolve(rename[name]) if name in rename else name  # noqa: E731  (QuantizeLayer -> wrapper -> inner)
    for entry in layers:
        entry["inbound_nodes"] = [[[resolve(i[0]), *i[1:]] for i in node] for node in entry.get("inbound_nodes") or []]
    config["layers"] = layers
    for key in ("input_layers", "output_layers"):
        config[key] = [[resolve(o[0]), *o[1:]] for o in config[key]]
    plain = keras.Model.from_config(config)
    for layer in qat.layers:
        inner = getattr(layer, "layer", None)
        target = plain.get_layer(inner.name) if inner is not None else None
        if target is None or not target.weights:
            continue
        # the wrapper holds the inner layer's variables (the inner layer's kernel attribute is the quantized tensor
        # after a call) and its own (``quant_<name>/...``); match the inner ones to the plain layer's by short name
        quantized = {id(var): quantizer(var, False, qvars) for var, quantizer, qvars in getattr(layer, "_weight_vars", [])}
        own = {_short(v): quantized.get(id(v), v) for v in layer.weights if not v.name.startswith(f"{layer.name}/")}
        target.set_weights([own[_short(w)].numpy() for w in target.weights])
    return plain


def _short(variable) -> str:
    """``kernel`` for ``block1_conv/kernel:0``."""
    return variable.name.split("/")[-1].split(":")[0]


# ---------------------------------------------------------------------------------------------- size


def packed_size_bytes(model: keras.Model, bits: int | Mapping[str, int]) -> int:
    """Bytes the weights of a plain (stripped or float) ``model`` would take packed at their bit-width: for every
    Conv2D / DepthwiseConv2D / Dense layer l with N_l kernel weights, C_l output channels and b_l bits (``bits``:
    one width for all, or ``{layer name: bits}`` covering every such layer, e.g. :func:`plan_bits`),

        ceil(N_l * b_l / 8)  +  4 * C_l (a float32 scale per channel)  +  4 * C_l (an int32 bias per channel),

    the bias counted whether or not the layer has one (a batch norm after it folds into it), plus 4 bytes per
    parameter of every other layer except batch norms directly after a convolution (they fold)."""
    require_keras2_model(model, "edgeopt.compress.lowbit.packed_size_bytes")
    if any(isinstance(l, _QK.QuantizeWrapper) for l in model.layers):
        raise TypeError("packed_size_bytes needs a plain model; strip a QAT model first (strip_lowbit)")
    weighted = [l for l in model.layers if isinstance(l, WEIGHTED)]
    per_layer = {l.name: bits for l in weighted} if isinstance(bits, int) else dict(bits)
    missing = [l.name for l in weighted if l.name not in per_layer]
    if missing:
        raise ValueError(f"bits has no width for {', '.join(missing)}; give one for every Conv2D/DepthwiseConv2D/Dense layer (plan_bits does)")
    total = 0
    for layer in weighted:
        _lq.check_bits(per_layer[layer.name], f"bits[{layer.name!r}]")
        depthwise = isinstance(layer, L.DepthwiseConv2D)
        kernel = layer.depthwise_kernel if depthwise else layer.kernel
        channels = int(_lq.as_channels(kernel, depthwise).shape[-1])
        total += math.ceil(int(kernel.shape.num_elements()) * per_layer[layer.name] / 8) + 8 * channels
    others = [l for l in model.layers if not isinstance(l, WEIGHTED) and not (isinstance(l, L.BatchNormalization) and _after_conv(l))]
    return total + 4 * sum(int(w.shape.num_elements()) for l in others for w in l.weights)


def _after_conv(layer) -> bool:
    inbound = [n.inbound_layers for n in layer._inbound_nodes]  # noqa: SLF001 (keras has no public API for this)
    parents = [p for group in inbound for p in (group if isinstance(group, (list, tuple)) else [group])]
    return len(parents) == 1 and isinstance(parents[0], (L.Conv2D, L.DepthwiseConv2D))
