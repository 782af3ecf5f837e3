"""TF-MOT's 8-bit QAT schemes with one layout transform corrected: weighted layer -> ReLU keeps its weight quantizer.

TF-MOT 0.8's ``LayerReLUQuantize`` / ``LayerReluActivationQuantize`` match ``Add|Conv2D|DepthwiseConv2D|Dense``
followed by a ReLU and give the first layer a ``NoOpQuantizeConfig`` so that no fake-quant sits between it and
the ReLU (TFLite fuses the two). For ``Add`` that is right; for a convolution it also drops the *weight*
quantizer, so its kernel trains in float, and the collaborative schemes (PQAT, CQAT, PCQAT) neither keep its
zeros nor its centroids. The pattern appears whenever a convolution feeds a ReLU directly: after
:func:`edgeopt.compress._graph.fold_batch_norms` (which clustering does by default), or in models built
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
"""
from __future__ import annotations

from edgeopt._keras import keras  # noqa: F401  (tf_keras before TF-MOT)

import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_layout_transform as _layout,
    default_8bit_transforms as _transforms,
)
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import model_transformer  # noqa: E402

_QK = tfmot.quantization.keras
_WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
CLUSTERED_SCALES = ("per_tensor", "per_channel")


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

    def __init__(self, preserve: str, clustered_scales: str):
        self._base = base_scheme(preserve).get_quantize_registry()
        self.preserve, self.clustered_scales = preserve, clustered_scales

    def supports(self, layer):
        return self._base.supports(layer)

    def get_quantize_config(self, layer):
        return _own_weight_quantizer(self._base.get_quantize_config(layer), self.preserve, self.clustered_scales)


class WeightsOnlyQuantizeConfig(_QK.QuantizeConfig):
    """Quantize a layer's weights as scheme ``preserve`` does, but not its activation or output (a ReLU
    follows and carries the output quantizer). The scheme's config is looked up on first use, when the
    layer holds its trained weights (the cluster-preserving quantizer reads its centroids from them)."""

    def __init__(self, preserve: str = "none", clustered_scales: str = "per_tensor"):
        self.preserve = preserve
        self.clustered_scales = clustered_scales
        self._inner = None

    def _config(self, layer):
        if self._inner is None:
            self._inner = _Registry(self.preserve, self.clustered_scales).get_quantize_config(layer)
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
        return {"preserve": self.preserve, "clustered_scales": self.clustered_scales}


def _make_relu_transform(base, preserve: str, clustered_scales: str):
    class WeightedLayerReLU(base):
        """``base`` for Add -> ReLU; weighted layers keep their weight quantizer (see the module docstring)."""

        def replacement(self, match_layer):
            producer = match_layer.input_layers[0]
            if producer.layer["class_name"] not in _WEIGHTED:
                return super().replacement(match_layer)
            producer.metadata["quantize_config"] = WeightsOnlyQuantizeConfig(preserve, clustered_scales)
            return match_layer

        def custom_objects(self):
            return {**super().custom_objects(), "WeightsOnlyQuantizeConfig": WeightsOnlyQuantizeConfig}

    return WeightedLayerReLU()


class _LayoutTransform(_layout.Default8BitQuantizeLayoutTransform):
    def __init__(self, preserve: str, clustered_scales: str):
        self.preserve, self.clustered_scales = preserve, clustered_scales

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
            _make_relu_transform(_transforms.LayerReLUQuantize, self.preserve, self.clustered_scales),
            _make_relu_transform(_transforms.LayerReluActivationQuantize, self.preserve, self.clustered_scales),
        ]
        return model_transformer.ModelTransformer(model, transforms, set(layer_quantize_map.keys()), layer_quantize_map).transform()


class Scheme(_QK.QuantizeScheme):
    """TF-MOT's 8-bit scheme for ``preserve`` with the corrections of the module docstring."""

    def __init__(self, preserve: str = "none", clustered_scales: str = "per_tensor"):
        self.preserve, self.clustered_scales = preserve, clustered_scales

    def get_layout_transformer(self):
        return _LayoutTransform(self.preserve, self.clustered_scales)

    def get_quantize_registry(self):
        return _Registry(self.preserve, self.clustered_scales)
