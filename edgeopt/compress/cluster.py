"""Weight clustering over ``tfmot.clustering.keras``: ``cluster(model, ClusterConfig) -> model``, ``strip_clustering``.

Clustering replaces the kernel of each selected layer by a table of ``number_of_clusters`` centroids plus an
index per weight; after fine-tuning and :func:`strip_clustering`, each kernel holds at most that many distinct
values (per output channel with ``per_channel``), so the float file compresses well with gzip and an int8
export keeps at most that many codes per channel. Which layers are clustered is a table,
:data:`CLUSTER_POLICIES`, optionally narrowed by names. :func:`weight_report` counts the distinct values.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeopt._keras import keras, require_keras2_model, tf  # noqa: F401  (tf_keras before TF-MOT)
from edgeopt.config import Config
import tensorflow_model_optimization as tfmot  # noqa: E402
from edgeopt.compress.graph import fold_batch_norms  # noqa: E402

L = keras.layers
_CK = tfmot.clustering.keras

CENTROID_INITS = {
    "kmeans++": _CK.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": _CK.CentroidInitialization.LINEAR,
    "density": _CK.CentroidInitialization.DENSITY_BASED,
    "random": _CK.CentroidInitialization.RANDOM,
}

# Which layer types each policy clusters (exact types: a DepthwiseConv2D is not a "Conv2D" row).
# DepthwiseConv2D is in no policy: TF-MOT 0.8 wraps it but leaves its kernel unclustered (its clustering registry
# lists no clusterable weight for it) and its cluster-preserving QAT disables it too. Depthwise kernels are
# tiny (k*k per channel) anyway: under 2% of the weights of the zoo's models.
CLUSTER_POLICIES: dict[str, tuple[type, ...]] = {
    "conv_dense": (L.Conv2D, L.Dense),  # every regular/pointwise/grouped convolution and the classifier
    "conv": (L.Conv2D,),
    "dense": (L.Dense,),
}
_KERNEL_ATTR = {L.Conv2D: "kernel", L.DepthwiseConv2D: "depthwise_kernel", L.Dense: "kernel"}


@dataclass(frozen=True)
class ClusterConfig(Config):
    """How to cluster.

    - ``number_of_clusters``: centroids per kernel (per output channel with ``per_channel``), >= 2.
    - ``centroid_init``: ``"kmeans++"``, ``"linear"``, ``"density"`` or ``"random"``.
    - ``per_channel``: one centroid table per output channel of each Conv2D with a bias (Dense and bias-free
      Conv2D, which TF-MOT 0.8 cannot cluster per channel, stay per layer).
    - ``preserve_sparsity``: zero weights stay zero (for pruned models).
    - ``policy``: a key of :data:`CLUSTER_POLICIES`; ``layers``: if given, only these names (of the policy's
      types) are clustered; ``exclude``: names never clustered.
    - ``fold_batch_norms``: fold each BatchNormalization into the convolution before it first (the model
      returned has no such BN layers). The TFLite converter folds them anyway, multiplying every output
      channel by its own scale, which turns 16 shared values into 16 per channel and costs most of the
      gzip gain (MobileNetV2 0.35: gzipped float32 0.44x of the original without folding, 0.27x with it).
    Layers with at most ``number_of_clusters`` weights (per channel with ``per_channel``) are skipped.
    """

    number_of_clusters: int = 16
    centroid_init: str = "kmeans++"
    per_channel: bool = False
    preserve_sparsity: bool = False
    policy: str = "conv_dense"
    layers: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    fold_batch_norms: bool = True

    def __post_init__(self):
        if not isinstance(self.fold_batch_norms, bool):
            raise ValueError(f"ClusterConfig.fold_batch_norms must be true or false, got {self.fold_batch_norms!r}")
        if not isinstance(self.number_of_clusters, int) or self.number_of_clusters < 2:
            raise ValueError(f"ClusterConfig.number_of_clusters must be an integer >= 2, got {self.number_of_clusters!r}")
        if self.centroid_init not in CENTROID_INITS:
            raise ValueError(f"ClusterConfig.centroid_init must be one of {', '.join(CENTROID_INITS)}; got {self.centroid_init!r}")
        if self.policy not in CLUSTER_POLICIES:
            raise ValueError(f"ClusterConfig.policy must be one of {', '.join(CLUSTER_POLICIES)}; got {self.policy!r}")
        for name in ("layers", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(n, str) for n in value):
                raise ValueError(f"ClusterConfig.{name} must be a tuple of layer names, got {value!r}")
            object.__setattr__(self, name, tuple(value))


def _kernel(layer) -> np.ndarray | None:
    attr = _KERNEL_ATTR.get(type(layer))
    if attr is None:
        return None
    kernel = getattr(layer, attr).numpy()
    # depthwise kernels are (kh, kw, in, multiplier); output channel = in * multiplier, as TFLite stores them
    return kernel.reshape(*kernel.shape[:2], -1) if type(layer) is L.DepthwiseConv2D else kernel


def _per_channel(layer, config: ClusterConfig) -> bool:
    # TF-MOT 0.8 counts channels from trainable_weights[-1], which is the kernel itself when a Conv2D has no bias,
    # and then silently leaves the layer unclustered; such convolutions (the zoo's conv+BN unless folded) are
    # clustered per layer instead, which still bounds the values per channel by number_of_clusters. So are
    # layers with a channel too small for its own k-means++ (TF-MOT fails on fewer points than centroids; with
    # preserve_sparsity the positive and negative weights of a channel are clustered apart).
    if not (config.per_channel and type(layer) is L.Conv2D and layer.use_bias):
        return False
    kernel = _kernel(layer).reshape(-1, layer.filters)
    if config.preserve_sparsity:
        smallest = min(int((kernel > 0).sum(0).min()), int((kernel < 0).sum(0).min()))
    else:
        smallest = kernel.shape[0]
    return smallest >= 2 * config.number_of_clusters


def _weights_per_table(kernel: np.ndarray, per_channel: bool) -> int:
    return kernel.size // kernel.shape[-1] if per_channel else kernel.size


def selected_layers(model: keras.Model, config: ClusterConfig = ClusterConfig()) -> list[str]:
    """Names of the layers :func:`cluster` would cluster under ``config``."""
    require_keras2_model(model, "edgeopt.compress.cluster.selected_layers")
    types = CLUSTER_POLICIES[config.policy]
    missing = set(config.layers) - {layer.name for layer in model.layers}
    if missing:
        raise ValueError(f"ClusterConfig.layers names layers the model does not have: {sorted(missing)}")
    names = []
    for layer in model.layers:
        if type(layer) not in types or layer.name in config.exclude or (config.layers and layer.name not in config.layers):
            continue
        if _weights_per_table(_kernel(layer), _per_channel(layer, config)) <= config.number_of_clusters:
            continue  # fewer weights than centroids: nothing to share
        names.append(layer.name)
    return names


def _copy_with_weights(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def cluster(model: keras.Model, config: ClusterConfig = ClusterConfig()) -> keras.Model:
    """A new model whose selected layers are wrapped for clustering (centroids initialised from the current
    weights). Fine-tune it like any model, then call :func:`strip_clustering`. The input is not modified."""
    require_keras2_model(model, "edgeopt.compress.cluster")
    if not getattr(model, "_is_graph_network", False) and not isinstance(model, keras.Sequential):
        raise TypeError("edgeopt.compress.cluster needs a Functional or Sequential tf_keras model; rebuild subclassed "
                        "models functionally (edgeopt.models.create does).")
    if config.fold_batch_norms:
        model = fold_batch_norms(model)
    chosen = set(selected_layers(model, config))
    if not chosen:
        raise ValueError(f"ClusterConfig selects no layer of {model.name} (policy={config.policy!r}, layers={config.layers}, "
                         f"exclude={config.exclude}); available: {[l.name for l in model.layers if type(l) in _KERNEL_ATTR]}")
    init = CENTROID_INITS[config.centroid_init]

    def wrap(layer):
        if layer.name not in chosen:
            return layer
        return _CK.cluster_weights(layer, number_of_clusters=config.number_of_clusters, cluster_centroids_init=init,
                                   preserve_sparsity=config.preserve_sparsity,
                                   cluster_per_channel=_per_channel(layer, config))

    # TF-MOT's wrappers take over the wrapped layer's variables, so wrap a private copy, never the input.
    return keras.models.clone_model(_copy_with_weights(model), clone_function=wrap)


def strip_clustering(model: keras.Model) -> keras.Model:
    """A plain Keras model (no clustering wrappers) whose clustered kernels hold only centroid values."""
    require_keras2_model(model, "edgeopt.compress.strip_clustering")
    return _CK.strip_clustering(model)


def cluster_scope():
    """Context manager to load a saved, not yet stripped, clustered model."""
    return _CK.cluster_scope()


@dataclass(frozen=True)
class LayerWeights:
    """Distinct values in one layer's kernel: over the whole kernel and the most in any output channel
    (last axis), plus the fraction of exact zeros."""

    name: str
    layer_type: str
    weights: int
    unique_values: int
    max_unique_per_channel: int
    sparsity: float

    def to_dict(self) -> dict:
        return asdict(self)


def kernel_stats(name: str, layer_type: str, kernel: np.ndarray) -> LayerWeights:
    """:class:`LayerWeights` of one kernel array whose last axis is the output channel."""
    kernel = np.asarray(kernel)
    channels = kernel.reshape(-1, kernel.shape[-1])
    per_channel = max(len(np.unique(channels[:, c])) for c in range(channels.shape[1]))
    return LayerWeights(name, layer_type, int(kernel.size), int(len(np.unique(kernel))), int(per_channel),
                        float(np.mean(kernel == 0)))


def weight_report(model: keras.Model) -> list[LayerWeights]:
    """Distinct kernel values per Conv2D / DepthwiseConv2D / Dense layer of a (stripped) model."""
    require_keras2_model(model, "edgeopt.compress.cluster.weight_report")
    return [kernel_stats(layer.name, type(layer).__name__, _kernel(layer)) for layer in model.layers if type(layer) in _KERNEL_ATTR]
