"""Differentiable architecture search: the supernet's weights and architecture parameters trained in alternation.

Each step (after ``warmup_epochs`` of weights only, as FBNet and ProxylessNAS warm up) first updates the
architecture parameters on a validation batch, then the weights on a training batch (DARTS' order), each with its
own optimizer (:func:`edgeopt.train.make_optimizer`):

* weights: cross-entropy of the mixed supernet on ``splits.train`` (gradient clipped to ``clip_norm``);
* architecture: ``data_loss_weight * cross-entropy on splits.val + cost_weight * E[cost] / cost_reference``, where
  ``E[cost] = sum_i softmax(alpha_i / tau) . cost_i`` over the blocks of a :class:`~edgeopt.search.nas_cost.OpCostTable`
  (multiply-adds, or measured latency: the ``latency`` cost model) and ``cost_reference`` defaults to the expected cost
  with every candidate equally likely, so the term starts at ``cost_weight``. With ``cost_target`` (the whole
  network's cost, the table's fixed part included) the term is the hinge ``cost_weight * max(0, fixed + E[cost] -
  cost_target) / cost_reference``: no pressure below the target, the linear term's above it (MnasNet aims at a target
  latency the same way, with a soft power law).

This is the **first-order** DARTS approximation: the architecture gradient is taken at the current weights, not
through one unrolled weight step (second order), which the DARTS paper found about as good and 2-3x cheaper. The
architecture step runs batch norm on batch statistics as DARTS does, then restores the moving statistics, so it
changes nothing but the architecture parameters. With ``mixing = "gumbel"`` the mixing is sampled (FBNet) and
``tau`` decays exponentially from ``tau`` to ``tau_final`` over the epochs; the cost term is then still the
expectation under ``softmax(alpha / tau)`` (exact, no sampling noise), where FBNet weights costs by the sample.

:func:`search` saves the supernet, both optimizers and the history atomically after every epoch
(``<checkpoint_dir>/nas_checkpoint.npz``); called again with the same space and config it continues after the last
saved epoch, from ``initial_weights`` when given (e.g. a single-path-trained supernet's: FBNet and ProxylessNAS
train the weights alone before the architecture). The derived architecture is each block's argmax;
:func:`derive_within` derives one under a cost limit.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt._keras import keras, tf
from edgeopt.config import Config
from edgeopt.data import Splits
from edgeopt.io import write_atomic
from edgeopt.progress import bar
from edgeopt.search.nas_cost import COST_MODELS, OpCostTable, cost_model
from edgeopt.search.nas_space import Architecture, NasSpace
from edgeopt.search.supernet import MIXINGS, Supernet
from edgeopt.train import TrainConfig, epoch_steps, make_optimizer

__all__ = ["CHECKPOINT_FILE", "DartsConfig", "DartsTrainer", "EpochRecord", "NasResult", "derive_within", "read_checkpoint", "search",
           "write_checkpoint"]

CHECKPOINT_FILE = "nas_checkpoint.npz"
_CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class DartsConfig(Config):
    """How the supernet is searched. Weights: ``optimizer``, ``learning_rate`` (cosine to 0 when ``cosine``),
    decoupled ``weight_decay``, global-norm ``clip_norm``. Architecture: ``arch_optimizer``, ``arch_learning_rate``
    (constant), ``arch_weight_decay``. ``epochs`` (the first ``warmup_epochs`` train weights only), ``steps_per_epoch``
    (None: the whole training split), ``mixing`` (softmax / gumbel), ``hard`` (gumbel only: one-hot forward),
    temperature ``tau`` decaying to ``tau_final`` (None: constant), the cost term (``cost_model``, ``cost_weight``,
    ``cost_reference`` and ``cost_target``, in the cost's unit; with a target the term is a hinge that is 0 below
    it) and ``data_loss_weight``, ``seed``."""

    epochs: int = 20
    warmup_epochs: int = 0
    steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    cosine: bool = True
    weight_decay: float = 0.0
    clip_norm: float | None = 5.0
    arch_optimizer: str = "adam"
    arch_learning_rate: float = 3e-3
    arch_weight_decay: float = 0.0
    mixing: str = "softmax"
    hard: bool = False
    tau: float = 1.0
    tau_final: float | None = None
    cost_model: str = "macs"
    cost_weight: float = 0.1
    cost_reference: float | None = None
    cost_target: float | None = None
    data_loss_weight: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs) (weights-only epochs before the architecture is trained), got {self.warmup_epochs}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or none (the whole training split), got {self.steps_per_epoch}")
        for name in ("optimizer", "arch_optimizer"):
            if getattr(self, name) not in ("adam", "sgd", "rmsprop"):
                raise ValueError(f"{name} must be one of adam, sgd, rmsprop; got {getattr(self, name)!r}")
        for name in ("learning_rate", "arch_learning_rate", "tau"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "arch_weight_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1) (decoupled decay), got {getattr(self, name)}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or none (no clipping), got {self.clip_norm}")
        if self.mixing not in MIXINGS:
            raise ValueError(f"mixing must be one of {', '.join(MIXINGS)}; got {self.mixing!r}")
        if self.hard and self.mixing != "gumbel":
            raise ValueError("hard needs mixing = \"gumbel\" (a one-hot sample); softmax mixing is never one-hot")
        if self.tau_final is not None and not self.tau_final > 0:
            raise ValueError(f"tau_final must be > 0 or none (constant tau), got {self.tau_final}")
        if self.cost_model not in COST_MODELS:
            raise ValueError(f"cost_model must be one of {', '.join(COST_MODELS.names())}; got {self.cost_model!r}")
        if self.cost_weight < 0 or self.data_loss_weight < 0:
            raise ValueError(f"cost_weight and data_loss_weight must be >= 0, got {self.cost_weight} and {self.data_loss_weight}")
        if self.cost_reference is not None and not self.cost_reference > 0:
            raise ValueError(f"cost_reference must be > 0 or none (the expected cost at uniform probabilities), got {self.cost_reference}")
        if self.cost_target is not None and not self.cost_target > 0:
            raise ValueError(f"cost_target must be > 0 (in the cost's unit, e.g. ms) or none (the cost term pushes at every cost), got {self.cost_target}")

    def tau_at(self, epoch: int) -> float:
        """Temperature of epoch ``epoch`` (0-based): exponential from ``tau`` to ``tau_final`` at the last epoch."""
        if self.tau_final is None or self.epochs == 1:
            return self.tau
        return self.tau * (self.tau_final / self.tau) ** (epoch / (self.epochs - 1))

    def weight_train(self, steps_per_epoch: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, learning_rate=self.learning_rate, optimizer=self.optimizer, cosine=self.cosine,
                           weight_decay=self.weight_decay, seed=self.seed, steps_per_epoch=steps_per_epoch)

    def arch_train(self, steps_per_epoch: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, learning_rate=self.arch_learning_rate, optimizer=self.arch_optimizer, cosine=False,
                           weight_decay=self.arch_weight_decay, seed=self.seed, steps_per_epoch=steps_per_epoch)


@dataclass
class EpochRecord:
    """One epoch: mean training loss and top-1 of the mixed supernet, its validation loss and top-1 (softmax mixing,
    inference), the expected cost and the argmax architecture's cost (the table's unit), tau, seconds."""

    epoch: int
    seconds: float
    tau: float
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    expected_cost: float
    derived_cost: float
    architecture: list[str]


@dataclass
class NasResult:
    """A search's outcome: the derived (argmax) architecture, every block's final probabilities (softmax(alpha / tau)),
    its cost in ``cost_unit``, the per-epoch history, seconds spent in this call, and where it resumed (None: fresh)."""

    architecture: Architecture
    probabilities: list[list[float]]
    cost: float
    cost_unit: str
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    resumed_at_epoch: int | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["architecture"] = list(self.architecture.choices)
        return out


class DartsTrainer:
    """The alternating steps on one supernet: ``weight_step`` (weights only) and ``arch_step`` (architecture only),
    each a traced function with its own optimizer; ``costs`` holds each block's candidate costs divided by the reference."""

    def __init__(self, supernet: Supernet, table: OpCostTable, config: DartsConfig, steps_per_epoch: int):
        self.supernet, self.table, self.config = supernet, table, config
        matrix = table.matrix(supernet.space)
        uniform = sum(float(c.mean()) for c in matrix)
        self.cost_reference = config.cost_reference or uniform or 1.0
        self.costs = [tf.constant(c / self.cost_reference, tf.float32) for c in matrix]
        # the hinge's threshold on E[cost] / reference (its fixed part included, as the target counts the whole network)
        self.cost_target = None if config.cost_target is None else (config.cost_target - table.fixed) / self.cost_reference
        arch_steps = (config.epochs - config.warmup_epochs) * steps_per_epoch
        self.weight_optimizer = make_optimizer(config.weight_train(steps_per_epoch), config.epochs * steps_per_epoch)
        self.arch_optimizer = make_optimizer(config.arch_train(steps_per_epoch), arch_steps)
        self.weight_optimizer.build(supernet.weight_variables)
        self.arch_optimizer.build(supernet.arch_variables)
        self.weight_step = tf.function(self._weight_step, reduce_retracing=True)
        self.arch_step = tf.function(self._arch_step, reduce_retracing=True)
        self._forward = tf.function(lambda x, w: supernet(x, w, training=False), reduce_retracing=True)

    def _mixing(self, tau):
        return self.supernet.mixing_weights(self.config.mixing, tau, self.config.hard)

    def _weight_step(self, images, labels, tau):
        """One optimizer step of the weights on a training batch; returns (loss, correct predictions)."""
        weights = [tf.stop_gradient(w) for w in self._mixing(tau)]
        variables = self.supernet.weight_variables
        with tf.GradientTape() as tape:
            logits = self.supernet(images, weights, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        grads = tape.gradient(loss, variables)
        if self.config.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.config.clip_norm)
        self.weight_optimizer.apply_gradients(zip(grads, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(tf.reshape(labels, [-1]), tf.int32)), tf.float32))
        return loss, correct

    def _arch_step(self, images, labels, tau):
        """One optimizer step of the architecture parameters on a validation batch; returns (data loss, expected cost
        divided by the reference). Batch-norm moving statistics are put back as they were."""
        statistics = self.supernet.batch_norm_statistics
        saved = [tf.identity(v) for v in statistics]
        variables = self.supernet.arch_variables
        with tf.GradientTape() as tape:
            logits = self.supernet(images, self._mixing(tau), training=True)
            data = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            cost = self.supernet.expected_cost(self.costs, tau)
            term = cost if self.cost_target is None else tf.nn.relu(cost - self.cost_target)
            loss = self.config.data_loss_weight * data + self.config.cost_weight * term
        grads = tape.gradient(loss, variables)
        self.arch_optimizer.apply_gradients(zip(grads, variables))
        for v, s in zip(statistics, saved):
            v.assign(s)
        return data, cost

    def evaluate(self, dataset, tau: float) -> tuple[float, float]:
        """(mean loss, top-1) of the softmax-mixed supernet in inference mode on a batched dataset."""
        weights = self.supernet.probabilities(tau)
        loss = correct = total = 0.0
        for x, y in dataset:
            logits = self._forward(x, weights)
            y = tf.reshape(tf.cast(y, tf.int32), [-1])
            loss += float(tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)))
            correct += float(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)))
            total += int(y.shape[0])
        return loss / max(total, 1), correct / max(total, 1)

    # ---- checkpoint -----------------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        out = self.supernet.state()
        out.update({f"opt_w/{i}": v.numpy() for i, v in enumerate(self.weight_optimizer.variables)})
        out.update({f"opt_a/{i}": v.numpy() for i, v in enumerate(self.arch_optimizer.variables)})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.supernet.load_state(state)
        for prefix, optimizer in (("opt_w", self.weight_optimizer), ("opt_a", self.arch_optimizer)):
            for i, v in enumerate(optimizer.variables):
                v.assign(state[f"{prefix}/{i}"])

    def save(self, path: Path, meta: dict) -> None:
        """Everything needed to continue, in one file written atomically (``meta``: JSON-able facts such as the epoch)."""
        write_checkpoint(path, self.state(), meta)


def write_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """``arrays`` and ``meta`` (JSON-able) in one .npz file written atomically (what :func:`read_checkpoint` reads)."""
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    write_atomic(path, buffer.getvalue(), overwrite=True)


def read_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a checkpoint file (plain arrays only: nothing is unpickled)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("meta")[()])), arrays


def _fingerprint(space: NasSpace, config: DartsConfig, input_shape, classes: int, table: OpCostTable, initial: str | None = None) -> dict:
    out = {"version": _CHECKPOINT_VERSION, "space": space.to_dict(), "config": config.to_dict(), "input_shape": list(input_shape),
           "classes": classes, "cost_table": table.to_dict()}
    if initial is not None:  # only when given: checkpoints of searches from fresh weights stay valid
        out["initial_weights"] = initial
    return out


def _weights_digest(weights: dict[str, np.ndarray]) -> str:
    """sha256 (16 hex digits) of the ``w/`` entries of a supernet state, in key order."""
    digest = hashlib.sha256()
    for key in sorted(k for k in weights if k.startswith("w/")):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(weights[key]).tobytes())
    return digest.hexdigest()[:16]


def check_resumable(saved: dict, expected: dict, path: Path, kind: str = "search") -> None:
    """Raise ValueError naming the first setting (and for a table, its differing fields) in which the checkpoint
    ``path``'s metadata ``saved`` differs from the fingerprint ``expected`` of this ``kind`` of training."""
    for key, value in expected.items():
        if saved.get(key) != value:
            differs = [k for k in value if saved.get(key, {}).get(k) != value[k]] if isinstance(value, dict) else []
            what = f"{key} ({', '.join(map(str, differs))})" if differs else key
            raise ValueError(f"{path} was saved by a {kind} with another {what}; continue it with the same settings, or use a new checkpoint directory")


def search(space: NasSpace, splits: Splits, config: DartsConfig = DartsConfig(), *, checkpoint_dir: str | Path | None = None,
           cost_table: OpCostTable | None = None, initial_weights: dict[str, np.ndarray] | None = None,
           log: Callable[[str], None] | None = None) -> tuple[NasResult, Supernet]:
    """Train a supernet of ``space`` on ``splits`` (weights on train, architecture on val) and derive its argmax
    architecture. ``cost_table``: costs of the cost term (None: ``config.cost_model`` on the splits' input shape).
    ``initial_weights``: the weights to start from, the ``w/`` entries of a :meth:`Supernet.state` of the same space
    (e.g. after :func:`edgeopt.search.single_path.train_single_path`); their digest is part of the checkpoint's
    fingerprint. With ``checkpoint_dir`` every epoch is saved there and a saved search continues. ``log`` gets one
    line per epoch (default: printed). Returns the result and the trained supernet (for one-shot scoring)."""
    input_shape, classes = splits.preprocessing.input_shape, len(splits.preprocessing.class_names)
    if classes < 2:
        raise ValueError("the splits name fewer than 2 classes (splits.preprocessing.class_names); a search needs a classifier's labels")
    if not splits.sizes.get("val"):
        raise ValueError("the splits have no validation images: the architecture is trained on them (set data.val_fraction > 0)")
    table = (cost_table or cost_model(config.cost_model, space, input_shape, classes)).check(space)
    expected = _fingerprint(space, config, input_shape, classes, table, None if initial_weights is None else _weights_digest(initial_weights))
    path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    saved = read_checkpoint(path) if path is not None and path.exists() else None
    if saved is not None:  # before anything is built: a checkpoint of other settings fails at once
        check_resumable(saved[0], expected, path)
    keras.utils.set_random_seed(config.seed)
    supernet = Supernet(space, input_shape, classes, seed=config.seed)
    if initial_weights is not None:  # architecture parameters and the noise generator stay the new supernet's
        missing = [k for k in supernet.state() if k.startswith("w/") and k not in initial_weights]
        if missing:
            raise ValueError(f"initial_weights has no {missing[0]}: they come from another search space (pass Supernet.state() of this one)")
        supernet.load_state({**supernet.state(), **{k: v for k, v in initial_weights.items() if k.startswith("w/")}})
    steps = epoch_steps(splits, config.steps_per_epoch)
    trainer = DartsTrainer(supernet, table, config, steps)
    history: list[EpochRecord] = []
    resumed = None
    if saved is not None:
        trainer.load_state(saved[1])
        history = [EpochRecord(**r) for r in saved[0]["history"]]
        resumed = len(history)
    log = log or (lambda line: print(line, file=sys.stdout, flush=True))
    start = time.perf_counter()
    # an epoch of ceil(size / batch) steps is one pass: each pass of the repeated split ends with its partial batch
    batches = iter(splits.train.repeat()), iter(splits.val.repeat())
    progress = bar(total=(config.epochs - len(history)) * steps, desc="nas", unit="step")
    try:
        for epoch in range(len(history), config.epochs):
            t0, tau = time.perf_counter(), config.tau_at(epoch)
            train_loss, train_top1 = _epoch(trainer, batches, steps, epoch, tau, progress)
            val_loss, val_top1 = trainer.evaluate(splits.val, tau)
            arch = supernet.derive()
            record = EpochRecord(epoch + 1, round(time.perf_counter() - t0, 3), round(tau, 6), train_loss, train_top1, val_loss, val_top1,
                                 table.expected(space, [p.numpy() for p in supernet.probabilities(tau)]), table.predict(space, arch), list(arch.choices))
            history.append(record)
            if path is not None:
                trainer.save(path, {**expected, "history": [asdict(r) for r in history]})
            left = (config.epochs - record.epoch) * (time.perf_counter() - start) / (record.epoch - (resumed or 0))
            log(f"nas epoch {record.epoch}/{config.epochs} - loss {train_loss:.4f} - top1 {train_top1:.4f} - val_loss {val_loss:.4f}"
                f" - val_top1 {val_top1:.4f} - E[{table.unit}] {_number(record.expected_cost)} - argmax {table.unit} {_number(record.derived_cost)}"
                f" - {record.seconds:.0f} s, about {left:.0f} s left")
    finally:
        progress.close()
    arch = supernet.derive()
    probabilities = [[round(float(v), 6) for v in p.numpy()] for p in supernet.probabilities(config.tau_at(config.epochs - 1))]
    result = NasResult(arch, probabilities, table.predict(space, arch), table.unit, history, round(time.perf_counter() - start, 3), resumed)
    return result, supernet


def derive_within(space: NasSpace, probabilities: list, table: OpCostTable, limit: float) -> Architecture:
    """The argmax architecture of ``probabilities`` (one vector per block, e.g. :attr:`NasResult.probabilities`),
    made to cost at most ``limit`` (``table``'s unit) when it costs more: greedily, switch the block to the cheaper
    candidate that loses the least log-probability per unit of cost saved, until the architecture is within the
    limit. Raises ValueError when even each block's cheapest candidate is over it."""
    costs = table.matrix(space)
    logp = [np.log(np.clip(np.asarray(p, np.float64), 1e-30, None)) for p in probabilities]
    if len(logp) != len(costs) or any(len(lp) != len(c) for lp, c in zip(logp, costs)):
        raise ValueError(f"probabilities must hold one vector per block of the space, each as long as its candidates ({[len(c) for c in costs]})")
    cheapest = table.fixed + sum(float(c.min()) for c in costs)
    if cheapest > limit:
        raise ValueError(f"no architecture of the space costs at most {limit:g} {table.unit}: the cheapest costs {cheapest:g}")
    choice = [int(np.argmax(lp)) for lp in logp]
    while table.fixed + sum(float(c[j]) for c, j in zip(costs, choice)) > limit:
        moves = [((logp[i][choice[i]] - logp[i][j]) / (costs[i][choice[i]] - costs[i][j]), i, j)
                 for i in range(len(costs)) for j in range(len(costs[i])) if costs[i][j] < costs[i][choice[i]]]
        _, i, j = min(moves)  # never empty: the cheapest architecture is within the limit
        choice[i] = j
    return Architecture(tuple(b.ops[j] for b, j in zip(space.blocks(), choice)))


def _epoch(trainer: DartsTrainer, batches, steps: int, epoch: int, tau: float, progress) -> tuple[float, float]:
    """``steps`` alternating steps (architecture on a validation batch, then weights on a training batch; weights only
    during warm-up); returns the training batches' mean loss and top-1."""
    train, val = batches
    tau_t = tf.constant(tau, tf.float32)
    loss_sum = correct = seen = 0.0
    for _ in range(steps):
        x, y = next(train)
        if epoch >= trainer.config.warmup_epochs:
            trainer.arch_step(*next(val), tau_t)
        loss, right = trainer.weight_step(x, y, tau_t)
        n = int(x.shape[0])
        loss_sum, correct, seen = loss_sum + float(loss) * n, correct + float(right), seen + n
        progress.update(1)
        progress.set_postfix(epoch=f"{epoch + 1}/{trainer.config.epochs}", loss=f"{loss_sum / seen:.4f}", refresh=False)
    return loss_sum / seen, correct / seen


def _number(value: float) -> str:
    """A cost for the log: multiply-adds as 1,234,567, milliseconds as 0.2412."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
