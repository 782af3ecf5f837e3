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


class WeightsOnlyQuantizeConfig(_QK.QuantizeConfig):
    """Quantize a layer's weights as scheme ``preserve`` does, but not its activation or output (a ReLU
    follows and carries the output quantizer). The scheme's config is looked up on first use, when the
    layer holds its trained weights (the cluster-preserving quantizer reads its centroids from them)."""

    def __init__(self, preserve: str = "none"):
        self.preserve = preserve
        self._inner = None

    def _config(self, layer):
        if self._inner is None:
            self._inner = base_scheme(self.preserve).get_quantize_registry().get_quantize_config(layer)
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
        return {"preserve": self.preserve}


def _make_relu_transform(base, preserve: str):
    class WeightedLayerReLU(base):
        """``base`` for Add -> ReLU; weighted layers keep their weight quantizer (see the module docstring)."""

        def replacement(self, match_layer):
            producer = match_layer.input_layers[0]
            if producer.layer["class_name"] not in _WEIGHTED:
                return super().replacement(match_layer)
            producer.metadata["quantize_config"] = WeightsOnlyQuantizeConfig(preserve)
            return match_layer

        def custom_objects(self):
            return {**super().custom_objects(), "WeightsOnlyQuantizeConfig": WeightsOnlyQuantizeConfig}

    return WeightedLayerReLU()


class _LayoutTransform(_layout.Default8BitQuantizeLayoutTransform):
    def __init__(self, preserve: str):
        self.preserve = preserve

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
            _make_relu_transform(_transforms.LayerReLUQuantize, self.preserve),
            _make_relu_transform(_transforms.LayerReluActivationQuantize, self.preserve),
        ]
        return model_transformer.ModelTransformer(model, transforms, set(layer_quantize_map.keys()), layer_quantize_map).transform()


class Scheme(_QK.QuantizeScheme):
    """TF-MOT's 8-bit scheme for ``preserve`` with the corrected layout transform."""

    def __init__(self, preserve: str = "none"):
        self.preserve = preserve
        self._base = base_scheme(preserve)

    def get_layout_transformer(self):
        return _LayoutTransform(self.preserve)

    def get_quantize_registry(self):
        return self._base.get_quantize_registry()
