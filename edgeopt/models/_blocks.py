"""Building blocks shared by the zoo families. Each takes the block's row of the table and a name prefix.

Only standard tf_keras layers are used (no Lambda, no custom layers), so every model serializes safely,
TF-MOT can wrap every layer, and the TFLite converter maps each op to a builtin kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeopt._keras import keras

L = keras.layers


@dataclass(frozen=True)
class Context:
    activation: str
    bn_momentum: float
    bn_epsilon: float
    depth_multiplier: int = 1


def activation(ctx: Context, x, name: str, kind: str | None = None):
    kind = kind or ctx.activation
    if kind == "relu6":
        return L.ReLU(6.0, name=name)(x)
    if kind == "relu":
        return L.ReLU(name=name)(x)
    return L.Activation(kind, name=name)(x)


def bn(ctx: Context, x, name: str):
    return L.BatchNormalization(momentum=ctx.bn_momentum, epsilon=ctx.bn_epsilon, name=name)(x)


def conv_bn_act(ctx: Context, x, channels: int, kernel: int, stride: int, prefix: str, act: bool = True, groups: int = 1):
    x = L.Conv2D(channels, kernel, stride, padding="same", use_bias=False, groups=groups, name=f"{prefix}_conv")(x)
    x = bn(ctx, x, f"{prefix}_bn")
    return activation(ctx, x, f"{prefix}_act") if act else x


def conv_block(ctx, x, row, channels, stride, prefix, **_):
    """``cn``: a plain convolution, batch norm and activation."""
    return conv_bn_act(ctx, x, channels, row.kernel, stride, prefix)


def depthwise_separable(ctx, x, row, channels, stride, prefix, **_):
    """``ds``: MobileNetV1's depthwise 3x3 + BN + act, then pointwise 1x1 + BN + act."""
    x = L.DepthwiseConv2D(row.kernel, stride, padding="same", depth_multiplier=ctx.depth_multiplier, use_bias=False, name=f"{prefix}_dwconv")(x)
    x = bn(ctx, x, f"{prefix}_dwconv_bn")
    x = activation(ctx, x, f"{prefix}_dwconv_act")
    return conv_bn_act(ctx, x, channels, 1, 1, f"{prefix}_project")


def inverted_residual(ctx, x, row, channels, stride, prefix, drop_rate=0.0, **_):
    """``ir``: MobileNetV2 inverted residual / EfficientNet MBConv (optional squeeze-excite)."""
    in_channels = x.shape[-1]
    shortcut = x
    expanded = int(round(in_channels * row.expand))
    if row.expand != 1:
        x = conv_bn_act(ctx, x, expanded, 1, 1, f"{prefix}_expand")
    x = L.DepthwiseConv2D(row.kernel, stride, padding="same", use_bias=False, name=f"{prefix}_dwconv")(x)
    x = bn(ctx, x, f"{prefix}_dwconv_bn")
    x = activation(ctx, x, f"{prefix}_dwconv_act")
    if row.se > 0:
        x = squeeze_excite(ctx, x, max(1, int(in_channels * row.se)), prefix)
    x = conv_bn_act(ctx, x, channels, 1, 1, f"{prefix}_project", act=False)
    if stride == 1 and in_channels == channels:
        if drop_rate > 0:  # stochastic depth: drop the whole residual branch per sample
            x = L.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = L.Add(name=f"{prefix}_add")([shortcut, x])
    return x


def squeeze_excite(ctx, x, reduced: int, prefix: str):
    channels = x.shape[-1]
    s = L.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_squeeze")(x)
    s = L.Conv2D(reduced, 1, name=f"{prefix}_se_reduce")(s)
    s = activation(ctx, s, f"{prefix}_se_reduce_act")
    s = L.Conv2D(channels, 1, name=f"{prefix}_se_expand")(s)
    s = L.Activation("sigmoid", name=f"{prefix}_se_gate")(s)
    return L.Multiply(name=f"{prefix}_se_excite")([x, s])


def channel_shuffle(x, groups: int, name: str):
    """ShuffleNet's channel shuffle as reshape -> transpose -> reshape (builtin TFLite ops, no Lambda)."""
    h, w, c = x.shape[1:]
    x = L.Reshape((h, w, groups, c // groups), name=f"{name}_split")(x)
    x = L.Permute((1, 2, 4, 3), name=f"{name}_transpose")(x)
    return L.Reshape((h, w, c), name=f"{name}_merge")(x)


def shuffle_unit(ctx, x, row, channels, stride, prefix, first_in_net=False, **_):
    """``sh``: ShuffleNet v1 unit. Grouped 1x1 -> shuffle -> depthwise 3x3 -> grouped 1x1, then add
    (stride 1) or concatenate with a 3x3 average-pooled shortcut (stride 2). The first unit of the network
    uses a plain 1x1 conv first, as the paper does, because its input has few channels.
    """
    g = row.groups
    in_channels = x.shape[-1]
    mid = channels // 4
    branch_out = channels - in_channels if stride == 2 else channels
    if stride == 1 and in_channels != channels:
        raise ValueError(f"{prefix}: a stride-1 ShuffleNet unit needs equal in/out channels, got {in_channels} -> {channels}")
    for what, n in (("bottleneck", mid), ("branch output", branch_out)):
        if n % g:
            raise ValueError(f"{prefix}: {what} channels {n} are not divisible by groups={g}; pick another scale or groups")
    y = conv_bn_act(ctx, x, mid, 1, 1, f"{prefix}_gconv1", groups=1 if first_in_net else g)
    if g > 1:
        y = channel_shuffle(y, g, f"{prefix}_shuffle")
    y = L.DepthwiseConv2D(3, stride, padding="same", use_bias=False, name=f"{prefix}_dwconv")(y)
    y = bn(ctx, y, f"{prefix}_dwconv_bn")
    y = conv_bn_act(ctx, y, branch_out, 1, 1, f"{prefix}_gconv2", act=False, groups=g)
    if stride == 2:
        shortcut = L.AveragePooling2D(3, 2, padding="same", name=f"{prefix}_pool")(x)
        y = L.Concatenate(name=f"{prefix}_concat")([shortcut, y])
    else:
        y = L.Add(name=f"{prefix}_add")([x, y])
    return activation(ctx, y, f"{prefix}_out_act", "relu")


BUILDERS = {"cn": conv_block, "ds": depthwise_separable, "ir": inverted_residual, "sh": shuffle_unit}
