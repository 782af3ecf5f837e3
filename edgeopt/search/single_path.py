"""Single-path training of a supernet (Single Path One-Shot, Guo et al. 2019): at every step one architecture is drawn
uniformly (each block's operation independently among its candidates) and only its operations run and learn.

A supernet trained this way is what one-shot scoring assumes (:mod:`edgeopt.search.oneshot`, the evolution of
:mod:`edgeopt.search.evolution`): every candidate was trained as part of whole sub-networks, never as a term of a
mixture, so a sub-network with the supernet's weights (and recalibrated batch norm) behaves like a network. A step
costs about what one network's step costs, where the mixed supernet of :mod:`edgeopt.search.darts` runs every
candidate of every block; its weights are also a warm start for a differentiable search (FBNet and ProxylessNAS
train the weights alone first): ``darts.search(..., initial_weights=supernet.state())``.

Each step's architecture comes from ``numpy.random.default_rng([seed, step])``, so a resumed run draws what the
uninterrupted run would have. Only the drawn path's weights get gradients and optimizer updates (the others, their
optimizer moments included, stay as they are: as a PyTorch optimizer skips parameters without a gradient), and Adam
corrects each variable's moments by its own number of updates, as PyTorch's Adam does
(:class:`edgeopt.train.PerVariableStepAdam`; Keras' Adam corrects by the global step, which scales a candidate's
steps by about 2x-3x after the first 100 steps). Steps run
eagerly: a traced step per drawn architecture would trace thousands of graphs.

:func:`train_single_path` saves the supernet, the optimizer and the history atomically after every epoch
(``<checkpoint_dir>/single_path_checkpoint.npz``); called again with the same space, data shape and config it continues
after the last saved epoch (the training data order restarts with the pass, as in :func:`edgeopt.search.darts.search`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt._keras import keras, tf
from edgeopt.config import Config
from edgeopt.data import Splits
from edgeopt.progress import bar
from edgeopt.search.darts import check_resumable, read_checkpoint, write_checkpoint
from edgeopt.search.nas_space import Architecture, NasSpace
from edgeopt.search.supernet import Supernet
from edgeopt.train import TrainConfig, epoch_steps, make_optimizer

__all__ = ["CHECKPOINT_FILE", "SinglePathConfig", "SinglePathEpoch", "SinglePathResult", "sample_path", "train_single_path"]

CHECKPOINT_FILE = "single_path_checkpoint.npz"
_CHECKPOINT_VERSION = 2  # 2: Adam with per-variable steps (a version-1 checkpoint has no step counters)


@dataclass(frozen=True)
class SinglePathConfig(Config):
    """How the supernet's weights are trained: ``epochs`` of ``steps_per_epoch`` steps (None: one pass of the
    training split), ``optimizer`` at peak ``learning_rate`` after a linear warm-up over ``warmup_fraction`` of the
    steps, then a cosine decay to 0 when ``cosine``; decoupled ``weight_decay``; ``label_smoothing``; global-norm
    ``clip_norm`` (None: none); ``seed`` (initial weights and the drawn paths). ``share_weights``: a block's candidates
    share their weights, OFA / FBNetV2-style (a smaller kernel is the centre of a larger one, a smaller expansion the
    first channels of a larger one): tied at the start and after every step the drawn candidate is copied into the
    part each other candidate shares with it (:meth:`Supernet.share_weights_from`); each keeps its own optimizer
    moments; a DARTS search started from these weights does not share (its candidates start tied and move apart).
    Without it every candidate has weights of its own, and a block's candidates start unrelated, so the next
    block sees other features in the same channels at every draw (benchmarks/single_path_coupling.md)."""

    epochs: int = 10
    steps_per_epoch: int | None = None
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    cosine: bool = True
    warmup_fraction: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    clip_norm: float | None = 5.0
    seed: int = 0
    share_weights: bool = False

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or none (one pass of the training split), got {self.steps_per_epoch}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or none (no clipping), got {self.clip_norm}")
        self.train_config(1)  # the optimizer fields, checked by TrainConfig with its messages

    def train_config(self, steps_per_epoch: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, learning_rate=self.learning_rate, optimizer=self.optimizer, cosine=self.cosine,
                           warmup_fraction=self.warmup_fraction, weight_decay=self.weight_decay, label_smoothing=self.label_smoothing,
                           seed=self.seed, steps_per_epoch=steps_per_epoch)


@dataclass
class SinglePathEpoch:
    """One epoch: mean training loss and top-1 of the drawn paths (fractions), seconds."""

    epoch: int
    seconds: float
    train_loss: float
    train_top1: float


@dataclass
class SinglePathResult:
    """The training's per-epoch history, its steps per epoch, seconds spent in this call and where it resumed (None: fresh)."""

    history: list[SinglePathEpoch] = field(default_factory=list)
    steps_per_epoch: int = 0
    seconds: float = 0.0
    resumed_at_epoch: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def sample_path(space: NasSpace, seed: int, step: int) -> Architecture:
    """The architecture of global step ``step`` (0-based): each block's operation drawn uniformly from its candidates
    by ``numpy.random.default_rng([seed, step])``."""
    rng = np.random.default_rng([seed, step])
    return Architecture(tuple(b.ops[int(rng.integers(len(b.ops)))] for b in space.blocks()))


class _Trainer:
    """The optimizer (built over every weight of the supernet, updated per step on the drawn path's only) and the step."""

    def __init__(self, supernet: Supernet, config: SinglePathConfig, steps_per_epoch: int):
        self.supernet, self.config = supernet, config
        self.optimizer = make_optimizer(config.train_config(steps_per_epoch), config.epochs * steps_per_epoch, sparse_updates=True)
        self.optimizer.build(supernet.weight_variables)

    def step(self, images, labels, arch: Architecture) -> tuple[float, float]:
        """One optimizer step of ``arch``'s weights on a batch; returns (mean loss, correct predictions)."""
        variables = self.supernet.path_variables(arch)
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        with tf.GradientTape() as tape:
            logits = self.supernet.path(images, arch, training=True)
            onehot = tf.one_hot(labels, self.supernet.classes)
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(onehot, logits, from_logits=True,
                                                                        label_smoothing=self.config.label_smoothing))
        grads = tape.gradient(loss, variables)
        if self.config.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.config.clip_norm)
        self.optimizer.apply_gradients(zip(grads, variables))
        if self.config.share_weights:
            for i, op in enumerate(arch.choices):
                self.supernet.share_weights_from(i, op)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return float(loss), float(correct)

    def state(self) -> dict[str, np.ndarray]:
        out = self.supernet.state()
        out.update({f"opt_w/{i}": v.numpy() for i, v in enumerate(self.optimizer.variables)})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.supernet.load_state(state)
        for i, v in enumerate(self.optimizer.variables):
            v.assign(state[f"opt_w/{i}"])


def _fingerprint(space: NasSpace, config: SinglePathConfig, input_shape, classes: int) -> dict:
    return {"version": _CHECKPOINT_VERSION, "space": space.to_dict(), "config": config.to_dict(), "input_shape": list(input_shape), "classes": classes}


def train_single_path(space: NasSpace, splits: Splits, config: SinglePathConfig = SinglePathConfig(), *, checkpoint_dir: str | Path | None = None,
                      log: Callable[[str], None] | None = None) -> tuple[SinglePathResult, Supernet]:
    """Train a new supernet of ``space`` on ``splits.train`` one uniformly drawn path per step (see the module
    docstring). With ``checkpoint_dir`` every epoch is saved there and a saved training continues (a finished one
    is loaded and returned at once). ``log`` gets one line per epoch (default: printed). Returns the result and the
    supernet (its architecture parameters untouched: zeros)."""
    input_shape, classes = splits.preprocessing.input_shape, len(splits.preprocessing.class_names)
    if classes < 2:
        raise ValueError("the splits name fewer than 2 classes (splits.preprocessing.class_names); a supernet needs a classifier's labels")
    expected = _fingerprint(space, config, input_shape, classes)
    path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    saved = read_checkpoint(path) if path is not None and path.exists() else None
    if saved is not None:
        check_resumable(saved[0], expected, path, "single-path training")
    keras.utils.set_random_seed(config.seed)
    supernet = Supernet(space, input_shape, classes, seed=config.seed)
    if config.share_weights:
        supernet.tie_candidates()
    steps = epoch_steps(splits, config.steps_per_epoch)
    trainer = _Trainer(supernet, config, steps)
    history: list[SinglePathEpoch] = []
    resumed = None
    if saved is not None:
        trainer.load_state(saved[1])
        history = [SinglePathEpoch(**r) for r in saved[0]["history"]]
        resumed = len(history)
    log = log or (lambda line: print(line, file=sys.stdout, flush=True))
    start = time.perf_counter()
    batches = iter(splits.train.repeat())
    with bar(total=(config.epochs - len(history)) * steps, desc="single-path supernet", unit="step") as progress:
        for epoch in range(len(history), config.epochs):
            t0 = time.perf_counter()
            loss_sum = correct = seen = 0.0
            for k in range(steps):
                x, y = next(batches)
                loss, right = trainer.step(x, y, sample_path(space, config.seed, epoch * steps + k))
                n = int(x.shape[0])
                loss_sum, correct, seen = loss_sum + loss * n, correct + right, seen + n
                progress.update(1)
                progress.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{loss_sum / seen:.4f}", refresh=False)
            record = SinglePathEpoch(epoch + 1, round(time.perf_counter() - t0, 3), loss_sum / seen, correct / seen)
            history.append(record)
            if path is not None:
                write_checkpoint(path, trainer.state(), {**expected, "history": [asdict(r) for r in history]})
            left = (config.epochs - record.epoch) * (time.perf_counter() - start) / (record.epoch - (resumed or 0))
            log(f"single-path epoch {record.epoch}/{config.epochs} - loss {record.train_loss:.4f} - top1 {record.train_top1:.4f} - "
                f"{record.seconds:.0f} s, about {left:.0f} s left")
    return SinglePathResult(history, steps, round(time.perf_counter() - start, 3), resumed), supernet
