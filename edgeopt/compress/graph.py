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


def _consumers(config: dict) -> dict[str, int]:
    count: dict[str, int] = {}
    for entry in config["layers"]:
        for node in entry.get("inbound_nodes") or []:
            for inbound in node:
                count[inbound[0]] = count.get(inbound[0], 0) + 1
    for out in config.get("output_layers", []):
        count[out[0]] = count.get(out[0], 0) + 1
    return count


def _without_layers(config: dict, removed: dict[str, str]) -> keras.Model:
    """A new model from ``config`` without the layers named in ``removed``, each of whose consumers read
    from the layer it maps to instead (its single input)."""
    rename = lambda name: removed.get(name, name)  # noqa: E731
    layers = []
    for entry in config["layers"]:
        if entry["name"] in removed:
            continue
        entry["inbound_nodes"] = [[[rename(i[0]), *i[1:]] for i in node] for node in entry.get("inbound_nodes") or []]
        layers.append(entry)
    config["layers"] = layers
    config["output_layers"] = [[rename(o[0]), *o[1:]] for o in config["output_layers"]]
    return keras.Model.from_config(config)


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """Rebuild ``model`` with every BatchNormalization that directly follows a Conv2D/DepthwiseConv2D
    (its only consumer) folded into that convolution's kernel and bias, as the TFLite converter does.

    Same outputs in inference (to float rounding). Compress weights after folding when the compressed
    values must survive conversion unchanged: clustering a kernel and then letting the converter multiply
    each output channel by its own BN scale turns 16 shared values into 16 per channel.
    """
    require_functional(model, "fold_batch_norms")
    config = copy.deepcopy(model.get_config())
    by_name = {e["name"]: e for e in config["layers"]}
    consumers = _consumers(config)
    folded: dict[str, str] = {}  # bn name -> conv name
    for entry in config["layers"]:
        if entry["class_name"] != "BatchNormalization":
            continue
        src = single_inbound(entry)
        conv = by_name.get(src[0]) if len(src) == 1 else None
        if conv is None or conv["class_name"] not in ("Conv2D", "DepthwiseConv2D") or consumers.get(conv["name"], 0) != 1:
            continue
        if entry["config"].get("axis") not in (-1, 3, [3], [-1]):
            continue
        folded[entry["name"]] = conv["name"]
        conv["config"]["use_bias"] = True
    if not folded:
        return clone_with_weights(model)
    new = _without_layers(config, folded)
    conv_to_bn = {c: b for b, c in folded.items()}
    for layer in new.layers:
        if not layer.weights:
            continue
        old = model.get_layer(layer.name)
        if layer.name not in conv_to_bn:
            layer.set_weights(old.get_weights())
            continue
        bn = model.get_layer(conv_to_bn[layer.name])
        kernel, *rest = old.get_weights()
        bias = rest[0] if rest else 0.0
        gamma = bn.gamma.numpy() if bn.gamma is not None else 1.0
        beta = bn.beta.numpy() if bn.beta is not None else 0.0
        scale = gamma / (bn.moving_variance.numpy() + bn.epsilon) ** 0.5
        shape = kernel.shape[2:] if isinstance(old, L.DepthwiseConv2D) else kernel.shape[-1:]
        layer.set_weights([kernel * scale.reshape(shape), beta + (bias - bn.moving_mean.numpy()) * scale])
    return new
