"""The ``export`` stage: the current model (and the float32 baseline) to verified .tflite files.

An int8 file can keep layers float32: ``keep_float`` names them (glob patterns), ``auto_fallback`` chooses them
(:func:`edgeopt.bench.quant_report.auto_fallback`: the layers around the worst tensors of the quantization report,
one tensor at a time, until the file's top-1 on the validation split is within that many points of the Keras
model's; the test split is never read for it), and ships the step closest to the Keras model on validation (not
always the last: a loss spread over many layers can score lower with the worst ones float). The model's metrics
then say which layers stayed float and, for ``auto_fallback``, the chosen step, every step's validation top-1, gap,
size cost (and latency cost with
``fallback_latency_rounds``) and the worst tensors of the report.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeopt.bench.quant_report import auto_fallback
from edgeopt.config import RecipeError
from edgeopt.export import IO_TYPES, MODES, ModelInfo, PrecisionConfig, collect_data, to_tflite
from edgeopt.pipeline.stage import RunContext, StageConfig, StageOutcome, last_model_stage, stage

WORST_TENSORS = 5  # rows of the quantization report an auto_fallback export records in its metrics


@dataclass(frozen=True)
class ExportStageConfig:
    """``mode``: float32, float16, dynamic, int8 or int16x8; ``baseline`` also exports the float32 model
    of the last ``train`` stage so reports compare the shipped model against the uncompressed one;
    ``sparse_weights`` stores pruned kernels in TFLite's sparse format (smaller float files); ``io`` is the
    input/output type of an int8 file (uint8: raw camera bytes, what Android's APIs give; int8; float32);
    ``version``, ``author`` and ``license`` go into the standard metadata beside the recipe's name and
    description.

    Selective precision of an int8 file (:class:`edgeopt.export.PrecisionConfig`): ``keep_float`` (layer-name
    globs, e.g. ``["block5*"]``) stay float32; ``auto_fallback`` (top-1 points, e.g. 0.3) keeps float, on top of
    those, the layers around the worst tensors of the quantization report until the file is within that many
    points of the Keras model on the validation split (at most ``max_fallback_steps`` tensors; each step is a
    conversion and a pass over up to ``verify_samples`` validation images) and ships the step closest to the Keras
    model there; ``fallback_latency_rounds`` > 0 also
    times every step's file, all interleaved, that many rounds (1 thread)."""

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
    keep_float: tuple[str, ...] = ()
    auto_fallback: float | None = None
    max_fallback_steps: int = 4
    fallback_latency_rounds: int = 0

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
        self.precision()  # keep_float, auto_fallback, max_fallback_steps: PrecisionConfig's checks and messages
        for name in ("keep_float", "auto_fallback"):
            if getattr(self, name) not in ((), None) and self.mode != "int8":
                raise ValueError(f"{name} needs mode = \"int8\" (only an int8 export keeps chosen layers float); got mode = {self.mode!r}")
            if getattr(self, name) not in ((), None) and self.sparse_weights:
                raise ValueError(f"{name} cannot be combined with sparse_weights = true (the quantizer that keeps layers float writes "
                                 "no sparse tensors); drop one")
        if isinstance(self.fallback_latency_rounds, bool) or not isinstance(self.fallback_latency_rounds, int) or self.fallback_latency_rounds < 0:
            raise ValueError(f"fallback_latency_rounds must be an integer >= 0 (0: steps not timed), got {self.fallback_latency_rounds!r}")
        if self.fallback_latency_rounds and self.auto_fallback is None:
            raise ValueError("fallback_latency_rounds times auto_fallback's steps: set auto_fallback (top-1 points to win back) too, or drop it")

    def precision(self) -> PrecisionConfig:
        """The selective-precision part as :class:`edgeopt.export.PrecisionConfig`."""
        return PrecisionConfig(keep_float=self.keep_float, auto_fallback=self.auto_fallback, max_fallback_steps=self.max_fallback_steps)


@stage("export", ExportStageConfig, makes_model=False)
def export_stage(ctx: RunContext, model, config: StageConfig) -> StageOutcome:
    cfg: ExportStageConfig = config.technique
    if cfg.auto_fallback is not None and not ctx.splits.sizes.get("val"):
        raise RecipeError(f"{ctx.stage_label}: auto_fallback measures each step on the validation split (never the test split), "
                          "but data.val_fraction is 0; set it above 0 (default 0.1)")
    verify = ctx.splits.val if ctx.splits.sizes.get("val") else ctx.splits.test
    files, metrics = {}, {}
    jobs = [("model", model, cfg.mode, cfg.sparse_weights, cfg.io)]
    lowbit_bits = _lowbit_bits(ctx) if cfg.mode in ("int8", "int4") else None
    baseline = ctx.baseline_model() if cfg.baseline else None
    if baseline is not None:
        jobs.append(("baseline_float32", baseline, "float32", False, "float32"))
    info = ModelInfo(ctx.recipe.name, ctx.recipe.description, cfg.version, cfg.author, cfg.license)
    for stem, m, mode, sparse, io in jobs:
        source, representative, keep, fallback = {"recipe": ctx.recipe.name, "stage": ctx.stage_label}, ctx.splits.train, (), None
        if stem == "model":
            keep = cfg.keep_float
            if cfg.auto_fallback is not None:
                representative, fallback = _fallback(ctx, m, cfg, verify)
                keep = fallback.keep_float
                source["auto_fallback"] = {"target_points": fallback.target_points, "reached": fallback.reached, "chosen_step": fallback.chosen,
                                           "val_gap_points": [round(s.gap_points, 4) for s in fallback.steps]}
        ctx.progress(f"  converting {stem} to {mode}" + (f" (kept float: {', '.join(keep)})" if keep else ""))
        art = to_tflite(m, mode, representative, preprocessing=ctx.splits.preprocessing, path=ctx.stage_dir / f"{stem}.tflite",
                        verify_data=verify, num_calibration=cfg.num_calibration, num_verify=cfg.verify_samples,
                        min_agreement=cfg.min_agreement, overwrite=True, sparse_weights=sparse, io=io, info=info,
                        source=source, keep_float=keep, lowbit_bits=lowbit_bits if stem == "model" else None)
        files[stem] = f"{stem}.tflite"
        check = art.verification
        metrics[stem] = {"mode": mode, "size_bytes": len(art.model_bytes), "convert_seconds": round(art.convert_seconds, 1),
                         "agreement": check.top1_agreement if check else None, "mean_abs_diff": check.mean_abs_diff if check else None}
        if mode == "int8":
            metrics[stem]["float_layers"] = list((art.manifest.get("keep_float") or {}).get("layers", ()))
        if fallback is not None:
            metrics[stem]["fallback"] = fallback.metrics(WORST_TENSORS)
    return StageOutcome(None, metrics, files)


def _lowbit_bits(ctx: RunContext) -> dict[str, int] | None:
    """``{layer: bits}`` of the ``lowbit`` stage when it made the model being exported (so the int8 file stores its
    4-bit, 2-bit or binary kernels exactly and the manifest reports their packed size); None otherwise."""
    made = last_model_stage(ctx.results)
    if made is None or made.type != "lowbit":
        return None
    return {name: int(bits) for name, bits in made.metrics.get("bits", {}).items() if int(bits) < 8} or None


def _fallback(ctx: RunContext, model, cfg: ExportStageConfig, val):
    """Run auto_fallback on the first ``num_calibration`` training images (one array, so every step and the file
    written afterwards calibrate on the same images and the chosen step's quantization is the shipped one) and up to
    ``verify_samples`` validation images. Returns (the calibration images, the FallbackResult)."""
    calibration = collect_data(model, ctx.splits.train, None, ctx.splits.preprocessing, cfg.num_calibration, 0).calibration
    ctx.progress(f"  auto_fallback: quantization report and up to {cfg.max_fallback_steps + 1} int8 files, within {cfg.auto_fallback:g} "
                 "validation top-1 points of the Keras model")
    result = auto_fallback(model, calibration, cfg.precision(), val_data=val, preprocessing=ctx.splits.preprocessing,
                           num_calibration=len(calibration), num_val=cfg.verify_samples, io=cfg.io,
                           latency_rounds=cfg.fallback_latency_rounds)
    gaps = " -> ".join(f"{s.gap_points:.2f}" for s in result.steps)
    ctx.progress(f"  auto_fallback: gap {gaps} points ({'reached' if result.reached else 'NOT reached'}); chose step {result.chosen}, "
                 f"kept float: {', '.join(result.keep_float) or 'nothing'}")
    return calibration, result
