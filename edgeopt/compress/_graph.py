"""Functional-graph surgery shared by the pruning modules: rebuild a model from an edited config.

tf_keras Functional configs list layers with ``inbound_nodes`` such as ``[[["stem_conv", 0, 0, {}]]]``;
editing that list and calling ``keras.Model.from_config`` gives a new model with new weights, into which
the old weights are copied (sliced where a layer shrank).
"""
from __future__ import annotations

import copy

from edgeopt._keras import keras, require_keras2_model

L = keras.layers


def require_functional(model, where: str) -> None:
    """Raise a clear error unless ``model`` is a tf_keras Functional or Sequential model."""
    require_keras2_model(model, where)
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise TypeError(
            f"{where} got a subclassed model ({type(model).__name__}): TF-MOT and edgeopt can only rewrite "
            "Functional or Sequential models, whose layer graph is known. Rebuild it as "
            "keras.Model(inputs, outputs) (or use edgeopt.models.create(...)) and load its weights."
        )
    if not model.built:
        raise ValueError(f"{where} got an unbuilt model; call it on an input or build it first")


def clone_with_weights(model: keras.Model) -> keras.Model:
    """An independent copy (new layers, copied weights) so later training never touches ``model``."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def single_inbound(layer_cfg: dict) -> list[str]:
    """Names of the layers feeding ``layer_cfg`` (its only call); refuses layers called more than once."""
    nodes = layer_cfg.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise ValueError(f"layer {layer_cfg['name']!r} is called {len(nodes)} times (shared layer); it cannot be rewritten")
    if not nodes:
        return []
    return [entry[0] for entry in nodes[0]]


def explicit_padding(model: keras.Model, stem_stride: int | None = None) -> keras.Model:
    """Rebuild ``model`` with every ``padding='same'`` convolution larger than 1x1 written as
    ``ZeroPadding2D`` + ``padding='valid'`` (symmetric padding ``k // 2``), the layout XNNPACK's sparse
    (NCHW) path accepts. Stride-1 layers compute exactly what they did; stride-2 layers pad top/left too,
    which TF's 'same' does not, so a model changed there needs (re)training. ``stem_stride`` optionally
    sets the strides of the first convolution (XNNPACK's sparse path starts at a 3x3 stride-2 convolution
    on the 3-channel input). Weights are copied by layer name.
    """
    require_functional(model, "explicit_padding")
    config = copy.deepcopy(model.get_config())
    layers = []
    first_conv_seen = False
    for entry in config["layers"]:
        cfg = entry["config"]
        is_conv = entry["class_name"] in ("Conv2D", "DepthwiseConv2D")
        if is_conv and not first_conv_seen and entry["class_name"] == "Conv2D":
            first_conv_seen = True
            if stem_stride:
                cfg["strides"] = (stem_stride, stem_stride)
        kernel = tuple(cfg.get("kernel_size", (1, 1))) if is_conv else (1, 1)
        if is_conv and cfg.get("padding") == "same" and max(kernel) > 1:
            pad = [[k // 2, k // 2] for k in kernel]
            pad_name = f"{entry['name']}_pad"
            layers.append(
                {
                    "class_name": "ZeroPadding2D",
                    "name": pad_name,
                    "config": {"name": pad_name, "trainable": True, "dtype": cfg.get("dtype", "float32"), "padding": pad, "data_format": "channels_last"},
                    "inbound_nodes": entry["inbound_nodes"],
                }
            )
            cfg["padding"] = "valid"
            entry = {**entry, "inbound_nodes": [[[pad_name, 0, 0, {}]]]}
        layers.append(entry)
    config["layers"] = layers
    new = keras.Model.from_config(config)
    for layer in new.layers:
        if layer.weights and layer.name in {l.name for l in model.layers}:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new
