"""The architecture search space as data, its architectures, and the builder of a chosen network.

A :class:`NasSpace` is a MobileNetV2-like macro-architecture: a stem (a zoo ``cn`` block string), stages of
blocks with fixed output channels, first-block stride and repeats, and a 1x1 head conv. Every block chooses one
*operation* among its candidates: a zoo block string without channels, stride or repeats (``ir_k5_e6``: inverted
residual, 5x5 depthwise, expansion 6; ``ir_k3_e3_se0.25``: with squeeze-excite), or ``skip`` (the identity, only
where a block keeps its stride at 1 and its channels; the first block of a stage that changes either has no skip).
A stage with one candidate is fixed (MobileNetV2's first, expansion-1 block).

An :class:`Architecture` is one operation per block, in block order (``block2a``, ``block2b``, ``block3a``...), and
round-trips through JSON. :func:`build_network` turns it into a plain tf_keras Functional model with the zoo's
blocks and layer names (:func:`edgeopt.models.apply_block`): the network the supernet's weights map onto by name,
exported like any zoo model. Channels are ``make_divisible(channels * width)`` as in the zoo; the head is not scaled.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from edgeopt._keras import keras
from edgeopt.config import Config
from edgeopt.models import BlockSpec, apply_block, block_name, classifier_head, decode_block, make_divisible
from edgeopt.models.mobilenet import MOBILENET_V2
from edgeopt.registry import Registry

__all__ = ["Architecture", "BlockPosition", "DEFAULT_OPS", "NasSpace", "SKIP", "StageSpec", "build_network", "mobilenet_v2_architecture",
           "mobilenet_v2_space", "parse_op", "SPACES", "random_architecture", "tiny_space"]

SKIP = "skip"
# kernel 3/5/7 x expansion 3/6, without and with squeeze-excite (ratio 0.25 of the block's input channels), and skip
DEFAULT_OPS = tuple(f"ir_k{k}_e{e}{se}" for se in ("", "_se0.25") for k in (3, 5, 7) for e in (3, 6)) + (SKIP,)
OP_KINDS = ("ir", "ds", "cn")
ACTIVATIONS = ("relu6", "relu", "swish", "elu")  # what the zoo's blocks take (relu6/relu as ReLU layers, others by name)
_OP_TOKEN = re.compile(r"^(k|e|se)[0-9.]+$")


def parse_op(op: str) -> BlockSpec | None:
    """The zoo block of operation ``op`` (channels and stride left to the block's position), or None for ``skip``.
    Raises ValueError saying what an operation looks like."""
    if op == SKIP:
        return None
    kind, *tokens = op.split("_")
    if kind not in OP_KINDS:
        raise ValueError(f"operation {op!r} is not {SKIP!r} or a block of kind {', '.join(OP_KINDS)} (e.g. ir_k5_e6, ir_k3_e3_se0.25)")
    for tok in tokens:
        if not _OP_TOKEN.match(tok):
            raise ValueError(f"operation {op!r}: token {tok!r} cannot be chosen per block; an operation sets k (kernel), e (expansion) and "
                             "se (squeeze-excite ratio) only, channels/stride/repeats come from its stage")
    return decode_block(f"{op}_c1")


@dataclass(frozen=True)
class StageSpec(Config):
    """A stage: ``repeats`` blocks of ``channels`` outputs, the first with ``stride``; ``ops``: its blocks' candidates
    (None: the space's ``ops``; one operation: a fixed stage)."""

    channels: int
    stride: int = 1
    repeats: int = 1
    ops: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.ops is not None:
            object.__setattr__(self, "ops", tuple(self.ops))
            _check_ops(self.ops)


def _check_ops(ops: tuple[str, ...]) -> None:
    if not ops:
        raise ValueError("ops must list at least one operation, e.g. [\"ir_k3_e6\", \"skip\"]")
    if len(set(ops)) != len(ops):
        raise ValueError(f"ops lists an operation twice: {list(ops)}")
    for i, op in enumerate(ops):
        try:
            parse_op(op)
        except ValueError as err:
            raise ValueError(f"ops[{i}]: {err}") from None


@dataclass(frozen=True)
class BlockPosition:
    """One block of the space: its name prefix (``block2a``), stage (1-based), index in the stage, input and output
    channels, stride and candidate operations (skip only where it can be the identity)."""

    name: str
    stage: int
    index: int
    in_channels: int
    channels: int
    stride: int
    ops: tuple[str, ...]

    @property
    def searchable(self) -> bool:
        return len(self.ops) > 1


@dataclass(frozen=True)
class NasSpace(Config):
    """Stem block string, stages (:class:`StageSpec`), head 1x1 conv channels (None: no head conv), candidate
    operations of every block (:data:`DEFAULT_OPS`), width multiplier of stem and stage channels, activation."""

    stages: tuple[StageSpec, ...]
    stem: str = "cn_k3_s1_c32"
    head_channels: int | None = 1280
    ops: tuple[str, ...] = DEFAULT_OPS
    width: float = 1.0
    activation: str = "relu6"
    _blocks: tuple[BlockPosition, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(StageSpec(**s) if isinstance(s, dict) else s for s in self.stages))
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.stages:
            raise ValueError("stages must list at least one stage, e.g. [{channels = 16, stride = 1, repeats = 1}]")
        try:
            stem = decode_block(self.stem)
        except ValueError as err:
            raise ValueError(f"stem must be a zoo block string such as \"cn_k3_s2_c32\": {err}") from None
        if stem.kind != "cn":
            raise ValueError(f"stem must be a plain convolution block (kind cn, e.g. \"cn_k3_s2_c32\"), got {self.stem!r}")
        if self.head_channels is not None and self.head_channels < 1:
            raise ValueError(f"head_channels must be >= 1 or none (no head conv), got {self.head_channels}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0 (a channel multiplier such as 0.35 or 1.0), got {self.width}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        _check_ops(self.ops)
        object.__setattr__(self, "_blocks", self._positions())

    def _positions(self) -> tuple[BlockPosition, ...]:
        out, in_channels = [], self.stem_channels
        for s, stage in enumerate(self.stages, start=1):
            channels = make_divisible(stage.channels * self.width)
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                keeps_shape = stride == 1 and in_channels == channels
                ops = tuple(op for op in (stage.ops or self.ops) if op != SKIP or keeps_shape)
                if not ops:
                    raise ValueError(f"stages[{s - 1}]: block {block_name(s, i)} changes stride or channels, so it cannot skip; "
                                     "give it an operation besides skip")
                out.append(BlockPosition(block_name(s, i), s, i, in_channels, channels, stride, ops))
                in_channels = channels
        return tuple(out)

    @property
    def stem_channels(self) -> int:
        return make_divisible(decode_block(self.stem).channels * self.width)

    def blocks(self) -> tuple[BlockPosition, ...]:
        """Every block in network order."""
        return self._blocks

    def input_shapes(self, input_shape: tuple[int, int, int]) -> tuple[tuple[int, int, int], ...]:
        """(height, width, channels) entering each block for images of ``input_shape``, then the head's input last
        ("same" padding: a stride-2 layer gives ceil(size / 2))."""
        h, w = input_shape[0], input_shape[1]
        stride = decode_block(self.stem).stride
        h, w = -(-h // stride), -(-w // stride)
        out = []
        for b in self._blocks:
            out.append((h, w, b.in_channels))
            h, w = -(-h // b.stride), -(-w // b.stride)
        return tuple(out) + ((h, w, self._blocks[-1].channels),)

    @property
    def size(self) -> int:
        """How many architectures the space holds (the product of the blocks' numbers of candidates)."""
        return math.prod(len(b.ops) for b in self._blocks)


@dataclass(frozen=True)
class Architecture(Config):
    """One operation per block of a space, in block order; ``to_json``/``from_json`` round-trip it."""

    choices: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))

    def check(self, space: NasSpace) -> "Architecture":
        """Raise ValueError naming the first block whose choice is not one of its candidates; returns self."""
        blocks = space.blocks()
        if len(self.choices) != len(blocks):
            raise ValueError(f"choices has {len(self.choices)} operations but the space has {len(blocks)} blocks")
        for i, (op, b) in enumerate(zip(self.choices, blocks)):
            if op not in b.ops:
                raise ValueError(f"choices[{i}] ({b.name}) is {op!r}, not one of its candidates: {', '.join(b.ops)}")
        return self

    def indices(self, space: NasSpace) -> tuple[int, ...]:
        """Each choice's index among its block's candidates."""
        self.check(space)
        return tuple(b.ops.index(op) for op, b in zip(self.choices, space.blocks()))

    def to_params(self, space: NasSpace) -> dict[str, str]:
        """``{block name: operation}`` of the searchable blocks (what an Optuna trial suggests, one categorical each)."""
        self.check(space)
        return {b.name: op for op, b in zip(self.choices, space.blocks()) if b.searchable}

    @classmethod
    def from_params(cls, space: NasSpace, params: dict[str, str]) -> "Architecture":
        """The architecture of ``{block name: operation}`` (fixed blocks take their one operation)."""
        return cls(tuple(b.ops[0] if not b.searchable else params[b.name] for b in space.blocks())).check(space)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        return cls.from_dict(json.loads(text), "architecture")


def random_architecture(space: NasSpace, rng: np.random.Generator) -> Architecture:
    """An architecture with each block's operation drawn uniformly from its candidates."""
    return Architecture(tuple(b.ops[int(rng.integers(len(b.ops)))] for b in space.blocks()))


# ---- layers ----------------------------------------------------------------------------------------------------


def stem_layers(space: NasSpace, x, bn_momentum: float = 0.9):
    """The stem (``stem_conv``, ``stem_bn``, ``stem_act``) on tensor ``x``."""
    return apply_block(x, space.stem, "stem", channels=space.stem_channels, activation=space.activation, bn_momentum=bn_momentum)


def block_layers(space: NasSpace, position: BlockPosition, op: str, x, bn_momentum: float = 0.9):
    """Operation ``op`` at ``position`` on tensor ``x`` (``skip``: ``x`` itself), named like the zoo (``block2a_...``)."""
    row = parse_op(op)
    if row is None:
        return x
    return apply_block(x, row, position.name, channels=position.channels, stride=position.stride, activation=space.activation, bn_momentum=bn_momentum)


def head_layers(space: NasSpace, x, classes: int, dropout: float = 0.0, classifier_activation: str | None = "softmax", bn_momentum: float = 0.9):
    """The head conv (``head_conv``..., when ``head_channels``) and the zoo's classifier (``avg_pool``, ``classifier``)."""
    if space.head_channels:
        x = apply_block(x, BlockSpec("cn", kernel=1, channels=space.head_channels), "head", activation=space.activation, bn_momentum=bn_momentum)
    return classifier_head(x, classes, dropout, classifier_activation)


def build_network(space: NasSpace, arch: Architecture, input_shape: tuple[int, int, int], classes: int, *, dropout: float = 0.0,
                  classifier_activation: str | None = "softmax", bn_momentum: float = 0.9, name: str = "nas") -> keras.Model:
    """``arch`` as a plain tf_keras Functional model (zoo blocks and layer names; a skipped block has no layers)."""
    arch.check(space)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = stem_layers(space, inputs, bn_momentum)
    for position, op in zip(space.blocks(), arch.choices):
        x = block_layers(space, position, op, x, bn_momentum)
    return keras.Model(inputs, head_layers(space, x, classes, dropout, classifier_activation, bn_momentum), name=name)


# ---- MobileNetV2 -----------------------------------------------------------------------------------------------

MOBILENET_V2_OP = "ir_k3_e6"  # every MobileNetV2 block after the first: 3x3 depthwise, expansion 6, no squeeze-excite


def mobilenet_v2_space(width: float = 1.0, ops: tuple[str, ...] = DEFAULT_OPS, small_input: bool = True) -> NasSpace:
    """MobileNetV2's macro-architecture (the zoo's table: channels, strides, repeats, head 1280) with every block
    after the first (fixed: ``ir_k3_e1``) choosing among ``ops``. ``small_input``: stem stride 1 and the first
    stride-2 stage at stride 1, as the zoo builds MobileNetV2 for inputs under 96 pixels (28x28 reaches the head at 4x4)."""
    stem = decode_block(MOBILENET_V2.stem)
    rows = [decode_block(s) for s in MOBILENET_V2.stages]
    first_s2 = next(i for i, r in enumerate(rows) if r.stride == 2)
    stages = []
    for i, r in enumerate(rows):
        stride = 1 if small_input and i == first_s2 else r.stride
        fixed = (f"ir_k{r.kernel}_e{r.expand:g}",) if i == 0 else None
        stages.append(StageSpec(r.channels, stride, r.repeats, fixed))
    stem_text = f"cn_k{stem.kernel}_s{1 if small_input else stem.stride}_c{stem.channels}"
    return NasSpace(tuple(stages), stem_text, MOBILENET_V2.head_channels, tuple(ops), width, MOBILENET_V2.activation)


SPACES: Registry = Registry("search space")  # name -> fn(width) -> NasSpace: the presets a recipe names


@SPACES.register("mobilenet_v2")
def _mobilenet_v2_preset(width: float = 1.0) -> NasSpace:
    return mobilenet_v2_space(width)


@SPACES.register("tiny")
def _tiny_preset(width: float = 1.0) -> NasSpace:
    space = tiny_space()
    return space if width == 1.0 else NasSpace(space.stages, space.stem, space.head_channels, space.ops, width, space.activation)


def tiny_space(ops: tuple[str, ...] = DEFAULT_OPS) -> NasSpace:
    """The space's tiny variant for tests: stem 8 channels stride 2, block1a 8 -> 8 (may skip), block2a 8 -> 16 at
    stride 2 (no skip), head 32."""
    return NasSpace((StageSpec(8, 1, 1), StageSpec(16, 2, 1)), "cn_k3_s2_c8", 32, tuple(ops))


def mobilenet_v2_architecture(space: NasSpace) -> Architecture:
    """The hand-designed MobileNetV2 in ``space``: ``ir_k3_e6`` in every searchable block (fixed blocks keep theirs)."""
    return Architecture(tuple(b.ops[0] if not b.searchable else MOBILENET_V2_OP for b in space.blocks())).check(space)
