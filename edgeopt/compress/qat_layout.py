"""TF-MOT's 8-bit QAT schemes with one layout transform corrected: weighted layer -> ReLU keeps its weight quantizer.

TF-MOT 0.8's ``LayerReLUQuantize`` / ``LayerReluActivationQuantize`` match ``Add|Conv2D|DepthwiseConv2D|Dense``
followed by a ReLU and give the first layer a ``NoOpQuantizeConfig`` so that no fake-quant sits between it and
the ReLU (TFLite fuses the two). For ``Add`` that is right; for a convolution it also drops the *weight*
quantizer, so its kernel trains in float, and the collaborative schemes (PQAT, CQAT, PCQAT) neither keep its
zeros nor its centroids. The pattern appears whenever a convolution feeds a ReLU directly: after
:func:`edgeopt.compress.graph.fold_batch_norms` (which clustering does by default), or in models built
without batch norm. Measured on MobileNetV1 0.25 with BN folded: after PCQAT the .tflite kept 0.24 sparsity
and 49 int8 codes per channel instead of 0.5 and 16.

Here such a weighted layer gets :class:`WeightsOnlyQuantizeConfig`: the scheme's own weight quantization for
that layer (cluster- or prune-preserving where the scheme is) and no output quantization, which is what the
transform meant.

Two more changes for the cluster-preserving schemes (CQAT, PCQAT), in :func:`_own_weight_quantizer`:

- **Tensor-wide scales for clustered convolutions** (``clustered_scales="per_tensor"``, the default). TF-MOT
  quantizes Conv2D kernels per output channel, so the 16 shared centroids of a clustered kernel land on
  different int8 codes in every channel: 68-80 distinct codes per tensor in the compressed MobileNetV2
  recipe's .tflite, and one float scale per channel that does not compress. One scale per tensor keeps
  about as many codes as clusters, which is what gzip (and any entropy coder) exploits.
- **One weight quantizer per layer.** TF-MOT's cluster-preserving registry shares one quantizer object among
  all layers of a kind, and that object switches sparsity preservation off for good
  (``self.preserve_sparsity = False``) at the first layer without zeros (an unpruned first convolution,
  say), so PCQAT silently became CQAT for every layer built after it.

And one for every scheme: **one int8 scale per depthwise output channel** (``depthwise_scales="per_channel"``,
the default). TF-MOT's per-axis weight quantizer takes the kernel's last axis, which for a DepthwiseConv2D
kernel ``(kh, kw, channels, multiplier)`` is the depth multiplier of size 1, so QAT fake-quantizes every
depthwise kernel with one range per tensor (tensorflow/model-optimization#808): a channel whose weights are
small next to the tensor's largest gets few int8 codes, or rounds to zero. The converter keeps exactly the
values QAT trained (measured: the folded int8 depthwise weights of a MobileNetV2 .tflite equal the QAT
kernel times the batch-norm factor to 1e-7), so that loss ships. :class:`DepthwiseWeightsQuantizer` gives one
range per output channel, the layout post-training quantization uses; ``"per_tensor"`` keeps TF-MOT's
behaviour (and loads QAT weights saved by edgeopt before this existed).
"""
from __future__ import annotations

from edgeopt._keras import keras  # tf_keras before TF-MOT

import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quantizers as _quantizers  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_layout_transform as _layout,
    default_8bit_quantize_registry as _default_registry,
    default_8bit_quantizers as _default_quantizers,
    default_8bit_transforms as _transforms,
)
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import model_transformer  # noqa: E402

_QK = tfmot.quantization.keras
_WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
CLUSTERED_SCALES = ("per_tensor", "per_channel")
DEPTHWISE_SCALES = ("per_channel", "per_tensor")


class DepthwiseWeightsQuantizer(_quantizers.LastValueQuantizer):
    """Symmetric int8 fake quantization of a DepthwiseConv2D kernel ``(kh, kw, channels, multiplier)`` with one
    range per output channel (``channels * multiplier`` of them, in TFLite's order), as post-training quantization has."""

    def __init__(self):
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape, name, layer):
        outputs = int(tensor_shape[2]) * int(tensor_shape[3])
        return {f"{end}_var": layer.add_weight(f"{name}_{end}", shape=(outputs,), trainable=False,
                                               initializer=keras.initializers.Constant(6.0 if end == "max" else -6.0))
                for end in ("min", "max")}

    def __call__(self, inputs, training, weights, **kwargs):
        kh, kw, channels, multiplier = inputs.shape
        flat = keras.backend.reshape(inputs, (kh, kw, 1, channels * multiplier))  # per-axis takes the last axis
        return keras.backend.reshape(super().__call__(flat, training, weights, **kwargs), (kh, kw, channels, multiplier))

    def get_config(self):
        return {}


class DepthwiseQuantizeConfig(_default_registry.Default8BitConvQuantizeConfig):
    """TF-MOT's DepthwiseConv2D config with :class:`DepthwiseWeightsQuantizer` (saved models keep it)."""

    def __init__(self, weight_attrs=("depthwise_kernel",), activation_attrs=("activation",), quantize_output=False):
        super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
        self.weight_quantizer = DepthwiseWeightsQuantizer()


def _per_channel_depthwise(config, layer, depthwise_scales: str):
    """``config`` for ``layer``, with one depthwise range per channel where TF-MOT gives one per tensor."""
    if (depthwise_scales == "per_channel" and isinstance(layer, keras.layers.DepthwiseConv2D)
            and type(getattr(config, "weight_quantizer", None)) is _default_quantizers.Default8BitConvWeightsQuantizer):
        return DepthwiseQuantizeConfig(config.weight_attrs, config.activation_attrs, config.quantize_output)
    return config


def base_scheme(preserve: str):
    """TF-MOT's scheme for ``preserve`` ("none", "sparsity", "clusters", "sparsity_and_clusters")."""
    if preserve == "none":
        return _QK.default_8bit.Default8BitQuantizeScheme()
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        default_8bit_cluster_preserve_quantize_scheme as cqat,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        default_8bit_prune_preserve_quantize_scheme as pqat,
    )

    if preserve == "sparsity":
        return pqat.Default8BitPrunePreserveQuantizeScheme()
    return cqat.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=preserve == "sparsity_and_clusters")


def _own_weight_quantizer(config, preserve: str, clustered_scales: str):
    """``config`` with a cluster-preserving weight quantizer of its own (see the module docstring)."""
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as cpr,
    )

    shared = getattr(config, "weight_quantizer", None)
    if not isinstance(shared, cpr.ClusterPreserveDefaultWeightsQuantizer):
        return config
    keep_zeros = preserve == "sparsity_and_clusters"
    per_channel = isinstance(shared, cpr.ClusterPreserveDefault8BitConvWeightsQuantizer) and clustered_scales == "per_channel"
    config.weight_quantizer = (cpr.ClusterPreserveDefault8BitConvWeightsQuantizer(keep_zeros) if per_channel
                               else cpr.ClusterPreserveDefault8BitWeightsQuantizer(keep_zeros))
    return config


class _Registry:
    """TF-MOT's registry for ``preserve``; cluster-preserving configs get :func:`_own_weight_quantizer`."""

    def __init__(self, preserve: str, clustered_scales: str, depthwise_scales: str):
        self._base = base_scheme(preserve).get_quantize_registry()
        self.preserve, self.clustered_scales, self.depthwise_scales = preserve, clustered_scales, depthwise_scales

    def supports(self, layer):
        return self._base.supports(layer)

    def get_quantize_config(self, layer):
        config = _own_weight_quantizer(self._base.get_quantize_config(layer), self.preserve, self.clustered_scales)
        return _per_channel_depthwise(config, layer, self.depthwise_scales)


class WeightsOnlyQuantizeConfig(_QK.QuantizeConfig):
    """Quantize a layer's weights as scheme ``preserve`` does, but not its activation or output (a ReLU
    follows and carries the output quantizer). The scheme's config is looked up on first use, when the
    layer holds its trained weights (the cluster-preserving quantizer reads its centroids from them)."""

    def __init__(self, preserve: str = "none", clustered_scales: str = "per_tensor", depthwise_scales: str = "per_tensor"):
        # depthwise_scales defaults to what configs saved before it existed had
        self.preserve, self.clustered_scales, self.depthwise_scales = preserve, clustered_scales, depthwise_scales
        self._inner = None

    def _config(self, layer):
        if self._inner is None:
            self._inner = _Registry(self.preserve, self.clustered_scales, self.depthwise_scales).get_quantize_config(layer)
        return self._inner

    def get_weights_and_quantizers(self, layer):
        return self._config(layer).get_weights_and_quantizers(layer)

    def set_quantize_weights(self, layer, quantize_weights):
        self._config(layer).set_quantize_weights(layer, quantize_weights)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"preserve": self.preserve, "clustered_scales": self.clustered_scales, "depthwise_scales": self.depthwise_scales}


def _make_relu_transform(base, scheme: "Scheme"):
    class WeightedLayerReLU(base):
        """``base`` for Add -> ReLU; weighted layers keep their weight quantizer (see the module docstring)."""

        def replacement(self, match_layer):
            producer = match_layer.input_layers[0]
            if producer.layer["class_name"] not in _WEIGHTED:
                return super().replacement(match_layer)
            producer.metadata["quantize_config"] = WeightsOnlyQuantizeConfig(scheme.preserve, scheme.clustered_scales, scheme.depthwise_scales)
            return match_layer

        def custom_objects(self):
            return {**super().custom_objects(), "WeightsOnlyQuantizeConfig": WeightsOnlyQuantizeConfig}

    return WeightedLayerReLU()


class _LayoutTransform(_layout.Default8BitQuantizeLayoutTransform):
    def __init__(self, scheme: "Scheme"):
        self.scheme = scheme

    def apply(self, model, layer_quantize_map):
        # TF-MOT 0.8.1's list (default_8bit_quantize_layout_transform.py), with the two ReLU transforms replaced.
        transforms = [
            _transforms.InputLayerQuantize(),
            _transforms.SeparableConv1DQuantize(),
            _transforms.SeparableConvQuantize(),
            _transforms.Conv2DReshapeBatchNormReLUQuantize(),
            _transforms.Conv2DReshapeBatchNormActivationQuantize(),
            _transforms.Conv2DBatchNormReLUQuantize(),
            _transforms.Conv2DBatchNormActivationQuantize(),
            _transforms.Conv2DReshapeBatchNormQuantize(),
            _transforms.Conv2DBatchNormQuantize(),
            _transforms.ConcatTransform6Inputs(),
            _transforms.ConcatTransform5Inputs(),
            _transforms.ConcatTransform4Inputs(),
            _transforms.ConcatTransform3Inputs(),
            _transforms.ConcatTransform(),
            _transforms.DenseBatchNormQuantize(),
            _transforms.DenseBatchNormReLUQuantize(),
            _transforms.DenseBatchNormActivationQuantize(),
            _make_relu_transform(_transforms.LayerReLUQuantize, self.scheme),
            _make_relu_transform(_transforms.LayerReluActivationQuantize, self.scheme),
        ]
        return model_transformer.ModelTransformer(model, transforms, set(layer_quantize_map.keys()), layer_quantize_map).transform()


class Scheme(_QK.QuantizeScheme):
    """TF-MOT's 8-bit scheme for ``preserve`` with the corrections of the module docstring."""

    def __init__(self, preserve: str = "none", clustered_scales: str = "per_tensor", depthwise_scales: str = "per_channel"):
        self.preserve, self.clustered_scales, self.depthwise_scales = preserve, clustered_scales, depthwise_scales

    def get_layout_transformer(self):
        return _LayoutTransform(self)

    def get_quantize_registry(self):
        return _Registry(self.preserve, self.clustered_scales, self.depthwise_scales)
