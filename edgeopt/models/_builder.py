"""One builder for every zoo family: decodes block strings and assembles a tf_keras Functional model.

A family is an :class:`ArchSpec` (data). Block strings follow timm's notation, e.g.
``ir_r2_k3_s2_e6_c24_se0.25`` = inverted residual, 2 repeats, 3x3 kernel, stride 2, expansion 6,
24 output channels, squeeze-excite ratio 0.25. Kinds: ``cn`` conv-bn-act, ``ds`` depthwise separable
(MobileNetV1), ``ir`` inverted residual / MBConv (MobileNetV2, EfficientNet), ``sh`` ShuffleNet unit.
The builder owns channel rounding, repeat scaling and deterministic hierarchical layer names
(``block2b_expand_conv``, ``block3a_dwconv_bn``, ``head_conv``, ``classifier``).
"""
from __future__ import annotations

import itertools
import math
import re
import string
from dataclasses import dataclass, field, replace
from typing import Callable

from edgeopt._keras import keras
from edgeopt.models import _blocks

_TOKEN = re.compile(r"^(se|[rkscegd])([0-9.]+)$")
_FIELDS = {"r": "repeats", "k": "kernel", "s": "stride", "c": "channels", "e": "expand", "se": "se", "g": "groups", "d": "depth_multiplier"}
KINDS = ("cn", "ds", "ir", "sh")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90% of ``value`` (TF's rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class BlockSpec:
    """One row of an architecture table (a decoded block string)."""

    kind: str
    repeats: int = 1
    kernel: int = 3
    stride: int = 1
    channels: int = 0
    expand: float = 1.0
    se: float = 0.0
    groups: int = 1
    depth_multiplier: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"block kind {self.kind!r} is unknown; known kinds: {', '.join(KINDS)}")
        if self.repeats < 1 or self.kernel < 1 or self.stride not in (1, 2) or self.channels < 1:
            raise ValueError(f"bad block {self}: repeats/kernel/channels must be >= 1 and stride 1 or 2")


def decode_block(text: str) -> BlockSpec:
    """Decode a block string such as ``ir_r2_k3_s2_e6_c24_se0.25`` into a :class:`BlockSpec`."""
    kind, *tokens = text.split("_")
    values: dict[str, float] = {}
    for tok in tokens:
        m = _TOKEN.match(tok)
        if not m:
            raise ValueError(f"cannot read token {tok!r} of block string {text!r} (expected e.g. r2, k3, s2, e6, c24, se0.25, g3)")
        key = _FIELDS[m.group(1)]
        values[key] = float(m.group(2)) if key in ("expand", "se") else int(m.group(2))
    return BlockSpec(kind=kind, **values)


@dataclass(frozen=True)
class ArchSpec:
    """A family's architecture as data: stem, stage table, head, and its scaling rules."""

    name: str
    stem: str
    stages: tuple[str, ...]
    head_channels: int | None
    activation: str
    round_channels: Callable[[float], int] = field(default=make_divisible, compare=False)
    round_stem: Callable[[float], int] | None = field(default=None, compare=False)  # defaults to round_channels
    scale_stem: bool = True
    scale_head: Callable[[float], bool] = field(default=lambda width: True, compare=False)
    scale_end_repeats: bool = True  # EfficientNet-Lite keeps the first and last stage's repeats fixed
    stem_pool: bool = False  # ShuffleNet: 3x3 stride-2 max pool after the stem


def _block_names():
    """Block suffix letters a, b, ..., z, aa, ab, ... (stochastic-depth-free, deterministic)."""
    letters = string.ascii_lowercase
    for n in range(1, 3):
        for idx in range(len(letters) ** n):
            out, i = "", idx
            for _ in range(n):
                out = letters[i % 26] + out
                i //= 26
            yield out


def block_name(stage: int, index: int) -> str:
    """The name prefix of block ``index`` (0-based) of stage ``stage`` (1-based): ``block2a``, ``block2b``, ..."""
    return f"block{stage}{next(itertools.islice(_block_names(), index, None))}"


def build(
    spec: ArchSpec,
    *,
    input_shape: tuple[int, int, int],
    classes: int,
    width: float = 1.0,
    depth: float = 1.0,
    depth_multiplier: int = 1,
    dropout: float = 0.0,
    drop_connect_rate: float = 0.0,
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-3,
    small_input: bool | None = None,
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """Build ``spec`` as a tf_keras Functional model.

    ``width`` multiplies channels (rounded by the family's rule), ``depth`` multiplies repeats (ceil),
    ``small_input`` divides the total stride by 4 (stem stride 1, and ShuffleNet's stem pool or else the
    first stride-2 stage removed, as CIFAR ports do) so a 32x32 input reaches the head at 4x4 instead of
    1x1; ``None`` turns it on for inputs smaller than 96 pixels.
    ``bn_momentum`` defaults to 0.9, which trains from scratch in a few epochs (Keras' 0.999 does not).
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if width <= 0 or depth <= 0:
        raise ValueError(f"width and depth multipliers must be > 0, got width={width}, depth={depth}")
    if classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")
    if small_input is None:
        small_input = min(input_shape[:2]) < 96
    ctx = _blocks.Context(
        activation=spec.activation,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        depth_multiplier=depth_multiplier,
    )
    inputs = keras.Input(shape=input_shape, name="input")

    stem = decode_block(spec.stem)
    round_stem = spec.round_stem or spec.round_channels
    stem_channels = round_stem(stem.channels * width) if spec.scale_stem else stem.channels
    stem_stride = 1 if small_input else stem.stride
    x = _blocks.conv_bn_act(ctx, inputs, stem_channels, stem.kernel, stem_stride, "stem")
    if spec.stem_pool and not small_input:
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)

    rows = [decode_block(s) for s in spec.stages]
    if small_input and not spec.stem_pool:  # reduce the total stride by 4, not 2, as CIFAR ports do
        first = next(i for i, r in enumerate(rows) if r.stride == 2)
        rows[first] = replace(rows[first], stride=1)
    total_blocks = sum(_scaled_repeats(spec, rows, i, depth) for i in range(len(rows)))
    block_index = 0
    for stage, row in enumerate(rows, start=1):
        repeats = _scaled_repeats(spec, rows, stage - 1, depth)
        channels = spec.round_channels(row.channels * width)
        for rep in range(repeats):
            prefix = block_name(stage, rep)
            stride = row.stride if rep == 0 else 1
            rate = drop_connect_rate * block_index / max(total_blocks, 1)
            x = _blocks.BUILDERS[row.kind](ctx, x, row, channels, stride, prefix, first_in_net=(stage == 1 and rep == 0), drop_rate=rate)
            block_index += 1

    if spec.head_channels:
        head = spec.round_channels(spec.head_channels * width) if spec.scale_head(width) else spec.head_channels
        x = _blocks.conv_bn_act(ctx, x, head, 1, 1, "head")
    if not include_top:
        return keras.Model(inputs, x, name=name or spec.name)
    return keras.Model(inputs, classifier_head(x, classes, dropout, classifier_activation), name=name or spec.name)


def apply_block(
    x,
    block: BlockSpec | str,
    prefix: str,
    *,
    channels: int | None = None,
    stride: int | None = None,
    activation: str = "relu6",
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-3,
):
    """Apply one zoo block to tensor ``x`` with the layers and names :func:`build` gives it (``cn`` with prefix
    ``stem`` or ``head`` makes ``stem_conv``/``head_conv``...; ``ir`` with ``block2a`` makes ``block2a_expand_conv``...).
    ``channels`` and ``stride`` default to the block's own; ``repeats`` is ignored (one block). The hook for code
    that assembles networks block by block (architecture search) with the zoo's blocks instead of a copy of them."""
    row = decode_block(block) if isinstance(block, str) else block
    ctx = _blocks.Context(activation=activation, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, depth_multiplier=row.depth_multiplier)
    return _blocks.BUILDERS[row.kind](ctx, x, row, channels or row.channels, stride or row.stride, prefix)


def classifier_head(features, classes: int, dropout: float = 0.0, activation: str | None = "softmax"):
    """The zoo's classifier on a feature map: avg_pool (global average), top_dropout (when ``dropout`` > 0),
    classifier (Dense, logits) and predictions (``activation``, none when None). Also the head edgeopt puts on an
    application backbone or a user's backbone (``edgeopt.new_head``), so every model ends with the same layer names."""
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
    x = keras.layers.Dense(classes, name="classifier")(x)
    if activation:
        x = keras.layers.Activation(activation, name="predictions")(x)
    return x


def _scaled_repeats(spec: ArchSpec, rows: list[BlockSpec], index: int, depth: float) -> int:
    if not spec.scale_end_repeats and index in (0, len(rows) - 1):
        return rows[index].repeats
    return int(math.ceil(depth * rows[index].repeats))


def with_stages(spec: ArchSpec, stages: tuple[str, ...]) -> ArchSpec:
    """A copy of ``spec`` with another stage table (used for per-variant tables such as ShuffleNet groups)."""
    return replace(spec, stages=stages)
