"""The ``export`` stage: the current model (and the float32 baseline) to verified .tflite files."""
from __future__ import annotations

from dataclasses import dataclass

from edgeopt.export import IO_TYPES, MODES, ModelInfo, to_tflite
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, stage


@dataclass(frozen=True)
class ExportStageConfig:
    """``mode``: float32, float16, dynamic, int8 or int16x8; ``baseline`` also exports the float32 model
    of the last ``train`` stage so reports compare the shipped model against the uncompressed one;
    ``sparse_weights`` stores pruned kernels in TFLite's sparse format (smaller float files); ``io`` is the
    input/output type of an int8 file (uint8: raw camera bytes, what Android's APIs give; int8; float32);
    ``version``, ``author`` and ``license`` go into the standard metadata beside the recipe's name and
    description."""

    mode: str = "int8"
    num_calibration: int = 300
    min_agreement: float = 0.98
    verify_samples: int = 500
    baseline: bool = True
    sparse_weights: bool = False
    io: str | None = None  # None: uint8 for int8, float32 for the other modes
    version: str = ""
    author: str = ""
    license: str = ""

    def __post_init__(self):
        if self.io is not None and self.io not in IO_TYPES:
            raise ValueError(f"io must be one of {', '.join(IO_TYPES)}; got {self.io!r}")
        if self.io not in (None, "float32") and self.mode != "int8":
            raise ValueError(f"io {self.io!r} needs mode = \"int8\" (a {self.mode} file has float32 input and output); set io = \"float32\" or mode = \"int8\"")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.num_calibration < 1:
            raise ValueError(f"num_calibration must be >= 1, got {self.num_calibration}")
        if not 0 <= self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement}")
        if self.verify_samples < 1:
            raise ValueError(f"verify_samples must be >= 1, got {self.verify_samples}")


@stage("export", ExportStageConfig, makes_model=False)
def export_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    cfg: ExportStageConfig = config.technique
    verify = ctx.splits.val if ctx.splits.sizes.get("val") else ctx.splits.test
    files, metrics = {}, {}
    jobs = [("model", model, cfg.mode, cfg.sparse_weights, cfg.io)]
    baseline = ctx.baseline_model() if cfg.baseline else None
    if baseline is not None:
        jobs.append(("baseline_float32", baseline, "float32", False, "float32"))
    info = ModelInfo(ctx.recipe.name, ctx.recipe.description, cfg.version, cfg.author, cfg.license)
    for stem, m, mode, sparse, io in jobs:
        ctx.progress(f"  converting {stem} to {mode}")
        art = to_tflite(m, mode, ctx.splits.train, preprocessing=ctx.splits.preprocessing, path=ctx.stage_dir / f"{stem}.tflite",
                        verify_data=verify, num_calibration=cfg.num_calibration, num_verify=cfg.verify_samples,
                        min_agreement=cfg.min_agreement, overwrite=True, sparse_weights=sparse, io=io, info=info,
                        source={"recipe": ctx.recipe.name, "stage": ctx.stage_label})
        files[stem] = f"{stem}.tflite"
        check = art.verification
        metrics[stem] = {"mode": mode, "size_bytes": len(art.model_bytes), "convert_seconds": round(art.convert_seconds, 1),
                         "agreement": check.top1_agreement if check else None, "mean_abs_diff": check.mean_abs_diff if check else None}
    return StageOutcome(None, metrics, files)
