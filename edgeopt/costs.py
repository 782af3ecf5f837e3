"""Cost profile of a Keras model: parameters and multiply-adds per layer, in total and by layer type.

Multiply-adds follow the papers' convention: convolutions and fully connected layers only (batch norm,
activations, pooling and element-wise ops are not counted). A table maps layer classes to handlers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeopt._keras import keras, require_keras2_model, unwrap_layer

L = keras.layers
LAYER_TYPES = ("conv", "1x1 conv", "grouped conv", "depthwise", "dense", "batch norm", "other")


@dataclass(frozen=True)
class LayerCost:
    name: str
    layer_type: str
    params: int
    macs: int


@dataclass(frozen=True)
class Profile:
    """Parameters and multiply-adds of a model; ``by_type`` maps a layer type to (params, macs)."""

    model: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerCost, ...]
    params: int = field(init=False)
    macs: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "params", sum(c.params for c in self.layers))
        object.__setattr__(self, "macs", sum(c.macs for c in self.layers))

    @property
    def by_type(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for c in self.layers:
            p, m = out.get(c.layer_type, (0, 0))
            out[c.layer_type] = (p + c.params, m + c.macs)
        return {t: out[t] for t in LAYER_TYPES if t in out and out[t] != (0, 0)}

    def share(self, layer_type: str) -> tuple[float, float]:
        """(fraction of parameters, fraction of multiply-adds) of ``layer_type``."""
        p, m = self.by_type.get(layer_type, (0, 0))
        return p / self.params if self.params else 0.0, m / self.macs if self.macs else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["by_type"] = {t: {"params": p, "macs": m} for t, (p, m) in self.by_type.items()}
        return d

    def to_markdown(self, per_layer: bool = False) -> str:
        lines = [
            f"**{self.model}** input {'x'.join(map(str, self.input_shape))}: "
            f"{self.params:,} parameters, {self.macs / 1e6:,.1f} M multiply-adds",
            "",
            "| layer type | parameters | % params | multiply-adds (M) | % mult-adds |",
            "|---|---:|---:|---:|---:|",
        ]
        for t, (p, m) in self.by_type.items():
            sp, sm = self.share(t)
            lines.append(f"| {t} | {p:,} | {100 * sp:.2f} | {m / 1e6:,.2f} | {100 * sm:.2f} |")
        if per_layer:
            lines += ["", "| layer | type | parameters | multiply-adds |", "|---|---|---:|---:|"]
            lines += [f"| {c.name} | {c.layer_type} | {c.params:,} | {c.macs:,} |" for c in self.layers if c.params or c.macs]
        return "\n".join(lines)


def _spatial(shape) -> int:
    return int(shape[1]) * int(shape[2])


def _conv(layer) -> tuple[str, int]:
    kh, kw = layer.kernel_size
    cin = int(layer.input.shape[-1])
    cout = int(layer.output.shape[-1])
    groups = getattr(layer, "groups", 1)
    kind = "grouped conv" if groups > 1 else ("1x1 conv" if (kh, kw) == (1, 1) else "conv")
    return kind, _spatial(layer.output.shape) * cout * kh * kw * cin // groups


def _depthwise(layer) -> tuple[str, int]:
    kh, kw = layer.kernel_size
    return "depthwise", _spatial(layer.output.shape) * int(layer.output.shape[-1]) * kh * kw


def _dense(layer) -> tuple[str, int]:
    return "dense", int(layer.input.shape[-1]) * layer.units


# Ordered: subclasses before their bases (DepthwiseConv2D is a Conv2D).
_HANDLERS = (
    (L.DepthwiseConv2D, _depthwise),
    (L.Conv2D, _conv),
    (L.Dense, _dense),
    (L.BatchNormalization, lambda layer: ("batch norm", 0)),
)


def _own_weights(layer) -> list:
    """The weights of the model layer itself, also under TF-MOT wrappers (a QAT wrapper owns the inner kernel;
    wrapper bookkeeping such as masks, min/max and step counters is not counted)."""
    inner = unwrap_layer(layer)
    if inner is layer:
        return list(layer.weights)
    own = [w for w in layer.weights if w.name.startswith(f"{inner.name}/")]
    return own or list(inner.weights)


def layer_cost(layer) -> LayerCost:
    inner = unwrap_layer(layer)
    for cls, handler in _HANDLERS:
        if isinstance(inner, cls):
            kind, macs = handler(inner)
            break
    else:
        kind, macs = "other", 0
    params = sum(int(w.shape.num_elements()) for w in _own_weights(layer))
    return LayerCost(layer.name, kind, params, int(macs))


def profile(model: keras.Model) -> Profile:
    """Count parameters (trainable and not, like ``model.count_params()``) and multiply-adds per layer."""
    require_keras2_model(model, "edgeopt.profile")
    costs = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # nested model: flatten its layers
            costs.extend(profile(layer).layers)
        elif not isinstance(layer, L.InputLayer):
            costs.append(layer_cost(layer))
    return Profile(model.name, tuple(int(v) for v in model.input_shape[1:]), tuple(costs))


def weight_sparsity(model: keras.Model) -> float:
    """Fraction of exactly-zero values over the kernels of conv and dense layers (biases and BN excluded)."""
    zeros = total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            z = weight_sparsity(layer)
            n = sum(int(w.shape.num_elements()) for w in layer.weights if "kernel" in w.name)
            zeros, total = zeros + z * n, total + n
            continue
        inner = unwrap_layer(layer)
        for w in _own_weights(layer):
            if "kernel" in w.name.split("/")[-1] and isinstance(inner, (L.Conv2D, L.Dense)):
                v = w.numpy()
                zeros += int((v == 0).sum())
                total += v.size
    return zeros / total if total else 0.0
