"""The ``sparse_train`` stage: sparse training from scratch (SNIP, GraSP, SET, RigL) or an early-bird search, on the
model the stage receives (put it first, or after a stage that leaves an untrained model, to train from scratch).

```toml
[[stages]]
type = "sparse_train"
method = "rigl"              # snip | grasp | set | rigl | early_bird
sparsity = 0.9
options = { distribution = "erk", drop_fraction = 0.3, update_every = 100 }
epochs = 30                  # training settings as any training stage (defaults: the recipe's [train])
```
``options`` holds the method's own settings (the fields of its config in ``edgeopt.compress``); the result is a plain
Keras model with exact zeros, so the following stages (qat with ``preserve = "sparsity"``, export) keep them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgeopt.compress.sparse_training import METHODS, sparse_train
from edgeopt.config import Config
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, model_metrics, stage
from edgeopt.train import TrainConfig


@dataclass(frozen=True)
class SparseTrainStageConfig(Config):
    """``method`` (a name in ``edgeopt.compress.sparse_training.METHODS``), target ``sparsity`` (fraction of zeros
    over the masked layers; of the pruned weights or channels for early_bird) and the method's other settings in
    ``options``."""

    method: str = "rigl"
    sparsity: float = 0.9
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS.names())}; got {self.method!r}")
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1) (the fraction of the masked weights that are zero), got {self.sparsity}")
        for key in ("sparsity", "train"):
            if key in self.options:
                raise ValueError(f"options.{key} is set on the stage itself ({'sparsity' if key == 'sparsity' else 'epochs, learning_rate, ...'}), not in options")
        self.method_config(TrainConfig())  # invalid options fail when the recipe is read, not after earlier stages ran

    def method_config(self, train: TrainConfig):
        """The method's config: ``options`` and ``sparsity``, trained with ``train``."""
        config = METHODS.get(self.method).config_cls.from_dict({**self.options, "sparsity": self.sparsity}, "options")
        return replace(config, train=train)


@stage("sparse_train", SparseTrainStageConfig, trains=True)
def sparse_train_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    cfg: SparseTrainStageConfig = config.technique
    with ctx.strategy.scope():
        trained, result = sparse_train(model, ctx.splits, cfg.method, cfg.method_config(config.train))
    if cfg.method == "early_bird":
        own = {"early_bird_epoch": result.epoch, "epochs_trained": result.epochs_trained, "mask_distances": [round(d, 5) for d in result.distances]}
    else:
        own = {"mask_updates": result.mask_updates, "mask_changed_fraction": round(result.changed_fraction, 4),
               "collapsed_layers": result.collapsed_layers}  # layers left with fewer weights than outputs
    ctx.progress(f"  {cfg.method}: {100 * result.sparsity:.1f}% of the masked weights are zero")
    val = round(result.val_top1, 4) if result.val_top1 is not None else None
    zeros = {"zero_fraction": round(result.zero_fraction, 4)} if cfg.method != "early_bird" else {}
    return StageOutcome(trained, {"val_top1": val, "masked_sparsity": round(result.sparsity, 4), **zeros,
                                  "layer_sparsity": {n: round(s, 4) for n, s in result.layer_sparsity.items()}, **own, **model_metrics(trained, ctx)})
