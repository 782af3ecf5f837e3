"""Transfer learning: train a new head on a frozen backbone, then unfreeze its top blocks at a lower learning rate.

The model is one flat Functional graph (``edgeopt.models.load_model`` flattens nested backbones). Its **head** is
everything from the last global pooling (or Flatten) layer to the output; the rest is the **backbone**, split
into **blocks** by layer names (the naming of edgeopt's zoo and of ``tf_keras.applications``, table
``BLOCK_NAME_PATTERNS``; a model with other names counts each convolution as a block). Frozen layers run in
inference mode: a frozen BatchNormalization keeps its moving statistics, as the Keras transfer-learning guide
advises; batch-norm layers stay frozen in phase 2 too unless ``train_batchnorm``. When ``finetune`` returns,
every layer is trainable again so that later stages (pruning, QAT) train the whole model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from edgeopt._keras import keras
from edgeopt.config import Config
from edgeopt.models import classifier_head
from edgeopt.train import TrainConfig, TrainResult, fit

# layer-name prefixes that name a block: edgeopt's zoo and EfficientNet ("block3a_"), MobileNetV2 ("block_13_",
# "expanded_conv_"), MobileNetV3 ("expanded_conv_3/"), MobileNet ("conv_dw_5", "conv_pw_5"), ResNet/DenseNet ("conv4_block2_")
BLOCK_NAME_PATTERNS = (
    (re.compile(r"^(block\d+[a-z]*)_"), r"\1"),
    (re.compile(r"^(block_\d+)_"), r"\1"),
    (re.compile(r"^(expanded_conv(?:_\d+)?)[/_]"), r"\1"),
    (re.compile(r"^conv_(?:dw|pw|pad)_(\d+)"), r"conv_\1"),
    (re.compile(r"^(conv\d+_block\d+)_"), r"\1"),
)
POOLING_HEADS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten)
CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


@dataclass(frozen=True)
class FinetuneConfig(Config):
    """Phase 1: ``head_epochs`` of the head alone (backbone frozen) at the stage's learning rate. Phase 2: the top
    ``unfreeze`` blocks ("all", or a count; 0 skips phase 2) for the stage's ``epochs`` at ``learning_rate *
    learning_rate_factor``. ``train_batchnorm`` lets unfrozen batch-norm layers update their statistics."""

    head_epochs: int = 1
    unfreeze: int | str = "all"
    learning_rate_factor: float = 0.1
    train_batchnorm: bool = False

    def __post_init__(self):
        if self.head_epochs < 0:
            raise ValueError(f"head_epochs must be >= 0, got {self.head_epochs}")
        if isinstance(self.unfreeze, str) and self.unfreeze != "all" or isinstance(self.unfreeze, int) and self.unfreeze < 0:
            raise ValueError(f"unfreeze must be \"all\" or a number of top blocks >= 0, got {self.unfreeze!r}")
        if not 0 < self.learning_rate_factor <= 1:
            raise ValueError(f"learning_rate_factor must be in (0, 1], got {self.learning_rate_factor}")
        if self.head_epochs == 0 and self.unfreeze == 0:
            raise ValueError("head_epochs = 0 and unfreeze = 0 would train nothing; set head_epochs >= 1 or unfreeze > 0")


@dataclass(frozen=True)
class FinetuneResult:
    head: TrainResult | None
    backbone: TrainResult | None
    head_layers: tuple[str, ...]
    unfrozen_blocks: tuple[str, ...]

    @property
    def val_top1(self) -> float | None:
        last = self.backbone or self.head
        return last.val_top1 if last else None


def head_start(model: keras.Model) -> int:
    """Index in ``model.layers`` of the first head layer: the last global pooling / Flatten layer."""
    for i in range(len(model.layers) - 1, -1, -1):
        if isinstance(model.layers[i], POOLING_HEADS):
            return i
    raise ValueError(f"model {model.name} has no GlobalAveragePooling2D, GlobalMaxPooling2D or Flatten layer, so its head "
                     "(the classifier) cannot be told from its backbone; fine-tune it with a train stage instead")


def block_of(name: str) -> str | None:
    """The block a layer name belongs to by ``BLOCK_NAME_PATTERNS``, or None."""
    for pattern, group in BLOCK_NAME_PATTERNS:
        m = pattern.match(name)
        if m:
            return m.expand(group)
    return None


def backbone_blocks(model: keras.Model) -> list[tuple[str, list[keras.layers.Layer]]]:
    """The backbone's blocks in order as (name, layers). Layers with no block name (stem, top convolution) join the
    block before them (the stem its own "stem"); without any named block each convolution starts a block."""
    layers = model.layers[: head_start(model)]
    named = any(block_of(layer.name) for layer in layers)
    blocks: list[tuple[str, list]] = [("stem", [])]
    for layer in layers:
        block = block_of(layer.name) if named else (layer.name if isinstance(layer, CONVOLUTIONS) else None)
        if block is not None and block != blocks[-1][0]:
            blocks.append((block, []))
        blocks[-1][1].append(layer)
    return [b for b in blocks if b[1]]


def _set_trainable(layers, trainable: bool, train_batchnorm: bool = True) -> None:
    for layer in layers:
        layer.trainable = trainable and (train_batchnorm or not isinstance(layer, keras.layers.BatchNormalization))


def finetune(model: keras.Model, splits, config: FinetuneConfig = FinetuneConfig(), train: TrainConfig = TrainConfig(),
             callbacks=()) -> FinetuneResult:
    """Transfer-learn ``model`` in place on ``splits``: the head with the backbone frozen, then the top blocks."""
    start = head_start(model)
    head, blocks = model.layers[start:], backbone_blocks(model)
    top = blocks if config.unfreeze == "all" else blocks[len(blocks) - config.unfreeze:] if config.unfreeze else []
    try:
        head_result = None
        if config.head_epochs:
            _set_trainable(model.layers[:start], False)
            _set_trainable(head, True)
            head_result = fit(model, splits, replace(train, epochs=config.head_epochs), callbacks=callbacks)
        backbone_result = None
        if top:
            _set_trainable(model.layers[:start], False)
            _set_trainable([layer for _, layers in top for layer in layers], True, config.train_batchnorm)
            _set_trainable(head, True)
            backbone_result = fit(model, splits, replace(train, learning_rate=train.learning_rate * config.learning_rate_factor), callbacks=callbacks)
    finally:
        _set_trainable(model.layers, True)
    return FinetuneResult(head_result, backbone_result, tuple(layer.name for layer in head), tuple(name for name, _ in top))


def new_head(model: keras.Model, classes: int, dropout: float = 0.2) -> keras.Model:
    """``model``'s backbone (every layer before its head) with a new classifier for ``classes``: global average
    pooling, dropout, a Dense layer and softmax (the zoo's head). The backbone layers and their weights are shared."""
    if classes < 2:
        raise ValueError(f"classes must be >= 2 for a classifier head, got {classes}")
    features = model.layers[head_start(model)].input
    return keras.Model(model.inputs, classifier_head(features, classes, dropout), name=model.name)
