"""The ``lowbit`` stage: weight QAT at 8, 4, 2 or 1 bits (8-bit activations), fixed or mixed under a size budget,
fine-tuned, and handed on *stripped*: the next stage (an int8 export) gets a plain model whose kernels hold at most
2^bits - 1 values per output channel (two when binary).

```toml
[[stages]]
type = "lowbit"
bits = 4                     # LowBitConfig: bits, first_last_bits, depthwise_bits, layer_bits, ranges, binary_clip
calibration_samples = 512    # training images that set the activation ranges before fine-tuning (0: TF-MOT's [-6, 6])
mixed_precision = { budget_fraction = 0.6, bits = [8, 4] }   # optional: bits per layer under a packed-size budget
epochs = 3                   # training settings as any training stage (defaults: the recipe's [train])
learning_rate = 0.0003
```
With ``mixed_precision`` (:class:`~edgeopt.compress.mixed_precision.MixedPrecisionConfig`) every layer's width is
chosen from sensitivity measured on the validation split, except the first convolution and the classifier
(``first_last_bits``) and the layers of ``layer_bits``; ``bits`` and ``depthwise_bits`` then play no part.

Saved as the QAT stage saves: the model it was made from, its :class:`~edgeopt.compress.lowbit.LowBitConfig` (the
chosen ``layer_bits`` when mixed) and the QAT weights; loading rebuilds the QAT model, loads the weights and strips it,
which gives the model the stage handed on, value for value (the quantizers have no state of their own).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from edgeopt.compress import lowbit as _lowbit
from edgeopt.compress.cluster import weight_report
from edgeopt.compress.mixed_precision import MixedPrecisionConfig, plan_mixed_precision
from edgeopt.compress.quantize import calibrate_ranges
from edgeopt.config import RecipeError
from edgeopt.io import load_model_safe, save_model_atomic, save_weights_atomic, write_atomic
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, model_metrics, stage
from edgeopt.train import fit

_INPUT, _CONFIG, _WEIGHTS = "lowbit_input.keras", "lowbit_config.json", "model.weights.h5"
_LOWBIT_FIELDS = tuple(f.name for f in fields(_lowbit.LowBitConfig))


@dataclass(frozen=True)
class LowBitStageConfig(_lowbit.LowBitConfig):
    """:class:`~edgeopt.compress.lowbit.LowBitConfig` plus ``calibration_samples`` (training images whose float
    activations set the QAT activation ranges first; 0 keeps TF-MOT's [-6, 6]) and ``mixed_precision`` (None: the
    widths of the LowBitConfig fields)."""

    calibration_samples: int = 512
    mixed_precision: dict | None = None  # a MixedPrecisionConfig after __post_init__ (a table in a recipe)

    def __post_init__(self):
        try:
            super().__post_init__()
        except ValueError as err:  # "LowBitConfig.bits must ..." -> "bits must ...", so a recipe error names stages[i].bits
            raise ValueError(str(err).removeprefix("LowBitConfig.")) from None
        if isinstance(self.calibration_samples, bool) or not isinstance(self.calibration_samples, int) or self.calibration_samples < 0:
            raise ValueError(f"calibration_samples must be an integer >= 0, got {self.calibration_samples!r}")
        if isinstance(self.mixed_precision, dict):  # parsed here, so its errors name mixed_precision.<field>
            object.__setattr__(self, "mixed_precision", MixedPrecisionConfig.from_dict(self.mixed_precision, "mixed_precision"))
        elif self.mixed_precision is not None and not isinstance(self.mixed_precision, MixedPrecisionConfig):
            raise ValueError(f"mixed_precision must be a table of MixedPrecisionConfig fields, got {self.mixed_precision!r}")
        if self.mixed_precision is not None and self.depthwise_bits is not None:
            raise ValueError("depthwise_bits has no effect with mixed_precision (it chooses every layer's width); "
                             "name fixed layers in layer_bits instead")

    def lowbit_config(self) -> _lowbit.LowBitConfig:
        """The LowBitConfig fields alone."""
        return _lowbit.LowBitConfig(**{k: getattr(self, k) for k in _LOWBIT_FIELDS})


def _load_lowbit(path: Path):
    """The stripped model a lowbit stage handed on, rebuilt from what it saved beside ``path`` (the QAT weights)."""
    plain = load_model_safe(path.parent / _INPUT)
    config = _lowbit.LowBitConfig.from_dict(json.loads((path.parent / _CONFIG).read_text()))
    qat = _lowbit.quantize_lowbit(plain, config)
    qat.load_weights(path)
    return _lowbit.strip_lowbit(qat)


def _written_by_the_stage(model, path: Path) -> None:
    """The runner's save step. The stage wrote the QAT weights itself (the runner holds only the stripped model, a
    function of them); a missing file is a bug in the stage, not something to paper over by saving another model."""
    if not Path(path).exists():
        raise RuntimeError(f"the lowbit stage did not write its QAT weights to {path}")


@stage("lowbit", LowBitStageConfig, trains=True, load=_load_lowbit, model_file=_WEIGHTS, save=_written_by_the_stage)
def lowbit_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    cfg: LowBitStageConfig = config.technique
    base, chosen = cfg.lowbit_config(), {}
    if cfg.mixed_precision is not None:
        if not ctx.splits.sizes.get("val"):
            raise RecipeError(f"{ctx.stage_label}: mixed_precision measures sensitivity on the validation split, but data.val_fraction is 0")
        x, y = ctx.splits.arrays("val", limit=cfg.mixed_precision.samples)
        ctx.progress(f"  mixed precision: sensitivity of each layer at {list(cfg.mixed_precision.bits)} bits on {len(x)} validation images")
        plan = plan_mixed_precision(model, x, y, cfg.mixed_precision, base)
        base = plan.apply(base)
        chosen = {"budget_bytes": plan.budget_bytes, "planned_bytes": plan.size_bytes, "summed_sensitivity": round(plan.sensitivity, 6),
                  "sensitivity_metric": plan.metric, "sensitivities": plan.to_dict()["sensitivities"]}
    save_model_atomic(model, ctx.stage_dir / _INPUT)
    write_atomic(ctx.stage_dir / _CONFIG, json.dumps(base.to_dict()), overwrite=True)
    with ctx.strategy.scope():
        qat = _lowbit.quantize_lowbit(model, base)
        if cfg.calibration_samples:
            samples, _ = ctx.splits.arrays("train", limit=cfg.calibration_samples)
            calibrate_ranges(qat, model, samples)
        result = fit(qat, ctx.splits, config.train)
    save_weights_atomic(qat, ctx.stage_dir / _WEIGHTS)
    plain = _lowbit.strip_lowbit(qat)
    bits = _lowbit.plan_bits(model, base)
    values = {}  # the most distinct values an output channel holds, per width (at most 2^bits - 1; 2 when binary)
    for layer in weight_report(plain):
        values[str(bits[layer.name])] = max(values.get(str(bits[layer.name]), 0), layer.max_unique_per_channel)
    val = round(result.val_top1, 4) if result.val_top1 is not None else None
    return StageOutcome(plain, {"val_top1": val, "bits": bits, "packed_bytes": _lowbit.packed_size_bytes(plain, bits),
                                "int8_packed_bytes": _lowbit.packed_size_bytes(plain, 8), "max_values_per_channel": dict(sorted(values.items())),
                                **chosen, **model_metrics(plain, ctx)})
