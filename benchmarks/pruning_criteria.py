"""Pruning beyond magnitude (issue #22) on the well-trained baseline (MobileNetV2 alpha 0.35 at 28x28x3, 93.84%,
recipes/fmnist_mobilenet_v2.toml; benchmarks/_common.py loads it and its data): saliency criteria for weights and
filters, sparse training from scratch, accuracy against measured int8 latency, the latency-budget mode, and L1
regularization before pruning. Every row runs with ``--seeds`` seeds (seed = data order, calibration images,
masks, initial weights of the from-scratch rows).

Parts (``--part``; each (variant, seed) is cached in benchmarks/raw/pruning_criteria/<part>/<settings>/runs.json as
it finishes, committed, so a killed run continues in this session or the next one on a fresh clone; the files runs
keep stay in runs/bench_cache/, and a job whose file a later job needs but a fresh clone lacks runs again):

* ``unstructured``: weight saliency ``l1`` (magnitude), ``taylor``, ``wanda`` (activation-based: |w| times the L2 norm
  of the input channel it multiplies, Sun et al. 2023) and ``obd_fisher`` (OBD, h_ii w_i^2 / 2 with the
  Hessian diagonal from the empirical Fisher: the mean over images of each image's squared loss gradient,
  ``fisher="sample"``, 4 images per vectorized Jacobian, 0.9 GB peak) at 50/75/90% of every conv/dense kernel,
  layer-wise: ``saliency_prune`` in 3 rounds of score -> remove -> fine-tune (400 steps each, 1,200 in all, Adam 5e-4
  cosine per round). The channel statistics (mean activation, APoZ, variance) describe a whole output channel: they
  are in the structured part.
* ``scratch``: SNIP and GraSP (masks at init, global ranking, fixed), SET and RigL (ERK, drop 0.3 with cosine decay
  every 100 steps until 75% of training) trained from scratch at 50/75/90%, plus a dense model trained the same
  way as their reference; and SNIP at 90% again with each layer capped at 98% zeros (``max_layer_sparsity``: SNIP's
  global ranking cut (nearly) every weight of MobileNetV2's ``head_conv`` there, layer collapse). The baseline trained 24 epochs (10,704
  steps) before its 1,200-step fine-tunes; 42 runs of 11,904 steps would take about 48 h here, so every from-scratch
  row trains a shorter dense-equivalent budget
  of 4 epochs (1,784 steps; the baseline recipe's Adam 0.004, 3% warm-up, cosine, weight decay 0.05, label
  smoothing 0.1; no augmentation) and is compared with the dense model trained those same steps.
* ``scratch_full``: the issue's budget for the from-scratch rows, at 90% only: GraSP, SET and RigL (settings as in
  ``scratch``) trained for the baseline's steps plus the fine-tune of a prune-after-training row (24 epochs of 446
  steps + 1,200 = 11,904 steps, as 24 epochs of 496 steps) by the baseline's recipe, its augmentation included
  (flips, shifts of up to 2 pixels: benchmarks/_common.py's BASELINE_AUGMENT). They compare with the 90% rows of
  ``unstructured``, which cost the same steps, and with the baseline itself as the dense reference. SNIP is left out
  here: uncapped it collapses at 90%, and each run costs about 76-78 min (two single-thread jobs at once, 2.8 steps/s
  each, on a 2-core AMD EPYC with AVX-512 VNNI, 2026-12-05).
* ``layout_control``: the control that separates *when* the zeros are chosen from *where* they go. ``scratch_full``
  spreads 90% over the masked layers unevenly (the first convolution dense; GraSP by its global ranking, SET and RigL
  by ERK), while ``unstructured`` removes 90% of every kernel, the first convolution included. This part prunes the
  baseline after training by magnitude to exactly those layer sparsities (``saliency_prune``'s ``layer_sparsity``;
  GraSP's from its ``scratch_full`` run of the same seed, ERK's computed), the first convolution left whole, in the
  same 3 rounds and 1,200 steps as ``unstructured``.
* ``structured``: filter saliency ``l1``, ``fpgm``, ``apoz``, ``taylor``, ``obd_fisher`` removing 50% and 75% of every
  internal channel group (MobileNetV2's expansion channels), 3 rounds, 1,200 steps at 1e-3.
* ``budget``: ``budget_prune`` at ``max_latency_ratio`` 0.5, 0.33 (the issue's 2x and 3x) and 0.75 (int8, LiteRT, 1 thread;
  0.75 because the floor models, every group at 8 channels, measured about 0.6x of the baseline on an Intel Xeon with
  AVX-512 VNNI, 2026-12-04: 2x and 3x are out of filter pruning's reach there, and the mode is shown at a speed-up it
  can reach; the cost table and every round time each model 3 times, each right before the baseline), after the feasibility
  check: the cost table (measured once) predicts the least latency reachable with the internal groups and with
  every group at their floor, and that floor model is measured too (the table's prediction sums per-group savings
  that share one base measurement, so its error grows with the number of groups: a --quick table predicted a
  negative latency); the smallest scope whose floor model reaches the budget is used, an infeasible budget is
  reported and not run. A cached table without a floor (measured before cost tables had one: it would load with
  floor 0, so no prediction would be clamped) is measured again, and the budget runs planned from it run again.
  The criterion is the structured part's best by mean validation top-1 at its largest ratio; rounds fine-tune 100
  steps, then the 1,200-step fine-tune keeps its best validation check.
* ``regularization``: 1,200 fine-tune steps from the baseline with an L1 penalty (strength chosen on seed 0's
  validation split among ``L1_STRENGTHS``) or without (control); the share of near-zero weights; then the same
  magnitude pruning as ``unstructured`` at 75% and 90% (test top-1 right after a one-shot cut, and after the
  fine-tune).
* ``latency``: int8 latency of the baseline, one seed of every structured (criterion, ratio) (the first whose file is
  here: a ratio's models have the same channel counts whatever the seed) and every budget model,
  interleaved, 1 thread, median of 7 rounds of per-round medians. The cost table and this run each record their
  machine (``machine_line``); the report names both and says when the budget mode planned on another machine than
  the one its verdicts were measured on (the session machines differ: with or without VNNI, int8 costs differ).

Validation decides every choice (strength, criterion, early-stopping check); the test split is read once per
reported model (Keras and its int8 .tflite). The run writes the raw per-seed results to
benchmarks/pruning_criteria.json and renders pruning_criteria.md, .csv, the plots and pruning_criteria_findings.md
(benchmarks/_pruning_criteria_report.py, no TensorFlow).

Full run, about 38 h on 2 idle cores (36 unstructured, 6 layout-control and 30 structured runs of 1,200 steps, 42 from-scratch runs
of 1,784 steps and 9 of 11,904, at about 0.42 s a step with TensorFlow's oneDNN kernels (filter-pruned 0.2; about
twice that without oneDNN), 50 s of measuring each, 80 s a round for OBD's per-image Fisher: unstructured 6.3 h,
scratch 9.5 h, scratch_full 12.7 h, layout_control 0.9 h, structured 3.0 h, budget 2.4 h, regularization 3.3 h; cost table
29 min: 66 int8 conversions and 390 timings, see TABLE_SECONDS; 9 budget runs; 20 L1 fine-tunes), about twice
that while another training shares the cores; it prints its own estimate first. Parts can run one at a time
(``--part``); the report needs all of them but ``scratch_full`` and ``layout_control``, which it may render unfinished
(their variants whose every seed is in, and the pending runs named):
      nice -n 19 env PYTHONPATH=. python benchmarks/pruning_criteria.py [--part unstructured|scratch|scratch_full|layout_control|structured|budget|regularization|latency|report]
Two training parts (unstructured, scratch, structured, regularization; never budget or latency, which time int8
models) can run at once with one thread each: on the 2-core Xeon (2026-12-04) each then trained at about 2.0 steps/s
against 2.44 for one job on both cores, 1.6x the throughput (each writes its own runs.json):
      nice -n 19 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/pruning_criteria.py --part scratch
The jobs of one part split between processes in the same checkout with ``--only`` (a variant, or one run as
'VARIANT | seed N'; repeatable); each save merges into the shared runs.json under a lock:
      ... pruning_criteria.py --part scratch_full --only 'grasp 90% | seed 2' &   ... --part scratch_full --only 'set 90% | seed 2' &
Smoke run (every part and code path on the zoo's mobilenet_v2_tiny stand-in, even when the baseline exists: one
sparsity and ratio, 6 steps, one round, one seed; about 17 min at nice 19 on 2 quiet cores, most of it int8
conversions, 4 min of them the stand-in's cost table; writes /tmp/edgeopt-bench-quick/pruning_criteria/ and
runs/bench_cache/quick/):
      nice -n 19 env PYTHONPATH=. python benchmarks/pruning_criteria.py --quick
      PYTHONPATH=. python benchmarks/pruning_criteria.py --findings-only [--quick]   (re-render from the data)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import cached_property, partial
from pathlib import Path

from benchmarks._common import (BASELINE_AUGMENT, CACHE_ROOT, QUICK_OUT, STANDIN, BaselineRun, baseline_args, baseline_splits, calibration_images,
                                SeedRuns, check_baseline, file_digest, finetune, interleaved_latency, machine_line, median_ms, plural, reseeded, seed_runs,
                                write_file)

OUT = Path("benchmarks")
PARTS = ("unstructured", "scratch", "scratch_full", "layout_control", "structured", "budget", "regularization", "latency")
# parts the report may render unfinished (runs of hours, finished over several sessions): it shows their variants whose
# every seed is in and names the pending runs
PARTIAL_PARTS = ("scratch_full", "layout_control")
STEPS, ROUNDS, CHECKS = 1200, 3, 4  # fine-tune steps of batch 128 (split over the rounds), saliency rounds, validation checks
LR, STRUCTURED_LR = 5e-4, 1e-3  # Adam peak rates: weights (pruning.py's), filters (pruning.py's structured row)
SPARSITIES = (0.5, 0.75, 0.9)
WEIGHT_CRITERIA = ("l1", "taylor", "obd_fisher", "wanda")
FILTER_CRITERIA = ("l1", "fpgm", "apoz", "taylor", "obd_fisher")
RATIOS = (0.5, 0.75)  # share of each internal group's channels removed
# data criteria read 16 training batches; OBD's empirical Fisher per image, 4 images per vectorized Jacobian: on the
# baseline, 32 images took 0.91 GB peak resident for the whole process (0.27 GB above the loaded model and data; VmHWM)
# and 1.0 s once traced (14 s to trace), where all 32 at once took 5.7 GB
SALIENCY = {"batches": 16, "fisher": "sample", "fisher_chunk": 4}
SCRATCH_METHODS = ("snip", "grasp", "set", "rigl")
# SNIP's global ranking collapsed layers at 90% (left them fewer weights than outputs); the same with each layer capped, at 90% only
SCRATCH_CAPPED = {"variant": "snip_capped", "method": "snip", "max_layer_sparsity": 0.98}
SCRATCH_EPOCHS = 4
SCRATCH_TRAIN = {"learning_rate": 0.004, "warmup_fraction": 0.03, "weight_decay": 0.05, "label_smoothing": 0.1}  # the baseline recipe's
DYNAMIC = {"drop_fraction": 0.3, "update_every": 100, "end_fraction": 0.75, "schedule": "cosine"}  # RigL's defaults
BASELINE_EPOCHS = 24  # recipes/fmnist_mobilenet_v2.toml
BASELINE_EPOCH_STEPS = 446  # its steps an epoch: ceil(57,000 training images / 128)
# the from-scratch budget (the baseline's steps plus a prune-after-training fine-tune), spread over the baseline's epochs
SCRATCH_FULL = {"methods": ("grasp", "set", "rigl"), "sparsity": 0.9}
# magnitude after training with the from-scratch rows' layouts: GraSP's layer sparsities (its scratch_full run of the
# same seed) and ERK's (SET's and RigL's), the first convolution left whole
LAYOUT_CONTROL = {"criterion": "l1", "sparsity": 0.9, "layouts": ("grasp", "erk")}
BUDGET_RATIOS = (0.5, 0.33, 0.75)  # max_latency_ratio: the 2x and 3x, and one reachable on every machine measured so far
BUDGET = {"step": 0.1, "max_rounds": 25, "round_steps": 100, "round_to": 8, "min_channels": 8, "table_points": 4, "runs": 50, "min_seconds": 1.0,
          "pairs": 3}  # pairs: each cut model of the table and each round timed 3 times, each right before the whole model
L1_STRENGTHS = (3e-6, 1e-5, 3e-5)
L1_SPARSITIES = (0.75, 0.9)
L1_DENSE_SLACK = 0.005  # a strength qualifies when its validation top-1 before pruning is within this of the control's
CALIBRATION = 500
# when a model's int8 test top-1 falls below its Keras test top-1 by more than the test-sampling 95% interval (conversion,
# not training, lost it): quantize_report on this many validation images, its worst rows kept, and auto_fallback to
# within ``points`` validation top-1 points of Keras in at most ``steps`` layer sets kept float
INT8_REPAIR = {"points": 0.5, "steps": 3, "debug_images": 200, "rows": 3}
LATENCY = {"threads": 1, "runs": 30, "min_seconds": 0.2}
LATENCY_ROUNDS = 7
QUICK = {"steps": 6, "rounds": 1, "checks": 2, "seeds": 1, "calibration": 32, "sparsities": (0.9,), "ratios": (0.5,), "saliency_batches": 2,
         "scratch_epochs": 2, "scratch_steps_per_epoch": 3, "update_every": 2, "l1_strengths": (1e-5, 1e-4), "latency_rounds": 1,
         "budget": {"max_rounds": 3, "round_steps": 2, "table_points": 2, "runs": 5, "min_seconds": 0.05}}
# seconds on 2 idle cores (estimates; progress lines rescale them by the measured speed)
# a step: dense from benchmarks/pruning.py's third seed on an AMD EPYC without VNNI, TensorFlow's oneDNN kernels on
# (2026-12-03: 0.36-0.5 s with its validation checks; 0.7-0.9 s without oneDNN), filters from its structured rows
# (0.17 s), the L1-penalized step scaled as before (x 1.15)
SECONDS_PER_STEP = {"dense": 0.42, "filters": 0.2, "penalized": 0.48}
SECONDS_PER_RUN = 50  # a conversion, Keras and int8 test passes, tracing (benchmarks/pruning.py's dense row: 48 s)
# per round; obd_fisher: 16 x 128 images at 1.0 s per 32 (measured above) and one trace of 14 s
SCORE_SECONDS = {"l1": 1, "fpgm": 5, "apoz": 10, "wanda": 10, "taylor": 15, "obd_fisher": 80}
BUDGET_ROUND_SECONDS, LATENCY_SECONDS = 40, 300
# The cost table of the baseline (groups="all", floor 8 channels, round_to 8, 4 points; counted on the model): 23 of its
# 24 groups are cut, at 64 points in all (3 a group, fewer for the narrow ones); each point and the all-at-floor model
# are timed 3 times, each right before the whole model, which is converted once (int8_latency keeps its bytes). Then
# the feasibility check converts the baseline and the two scopes' floor models and times them in 3 rounds.
# Measured on the baseline (nice 19, 2 cores): 19.6 s an int8 conversion (64 calibration images), 1.0 s a timing
# (50 runs, at least 1 s); cut models convert a little faster, so this is an upper bound.
TABLE_CONVERSIONS, TABLE_TIMINGS = 64 + 1 + 1, (64 + 1) * 2 * BUDGET["pairs"]
CONVERT_SECONDS, TIME_SECONDS = 20.0, 1.0
TABLE_SECONDS = (TABLE_CONVERSIONS * CONVERT_SECONDS + TABLE_TIMINGS * TIME_SECONDS
                 + 3 * CONVERT_SECONDS + 3 * 3 * LATENCY["min_seconds"])  # about 29 min


def pct(v: float) -> str:
    return f"{100 * v:g}%"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


# ---- what runs: the jobs of each part (no TensorFlow: the estimate is printed before anything loads) ----------


class Plan:
    """The settings of one run (full or ``--quick``) and the (variant, seed) jobs of every part with their estimated
    seconds; computed from the arguments alone."""

    def __init__(self, args):
        q = args.quick
        self.quick, self.steps, self.checks = q, QUICK["steps"] if q else args.finetune_steps, QUICK["checks"] if q else CHECKS
        self.rounds = QUICK["rounds"] if q else ROUNDS
        self.seeds = list(range(QUICK["seeds"] if q else args.seeds))
        self.calibration = QUICK["calibration"] if q else CALIBRATION
        self.sparsities, self.ratios = (QUICK["sparsities"], QUICK["ratios"]) if q else (SPARSITIES, RATIOS)
        self.l1_sparsities = QUICK["sparsities"] if q else L1_SPARSITIES
        self.saliency = {**SALIENCY, "batches": QUICK["saliency_batches"]} if q else dict(SALIENCY)
        self.scratch_epochs = QUICK["scratch_epochs"] if q else SCRATCH_EPOCHS
        self.scratch_per_epoch = QUICK["scratch_steps_per_epoch"] if q else None  # None: one pass of the training split
        self.dynamic = {**DYNAMIC, "update_every": QUICK["update_every"]} if q else dict(DYNAMIC)
        self.budget = {**BUDGET, **QUICK["budget"]} if q else dict(BUDGET)
        self.strengths = QUICK["l1_strengths"] if q else L1_STRENGTHS
        self.latency_rounds = QUICK["latency_rounds"] if q else LATENCY_ROUNDS
        self.latency = {**LATENCY, "runs": 5, "min_seconds": 0.05} if q else dict(LATENCY)
        self.scratch_steps_estimate = self.scratch_epochs * (self.scratch_per_epoch or BASELINE_EPOCH_STEPS)
        self.full_epochs = QUICK["scratch_epochs"] if q else BASELINE_EPOCHS
        self.full_per_epoch = QUICK["scratch_steps_per_epoch"] if q else math.ceil(
            (BASELINE_EPOCHS * BASELINE_EPOCH_STEPS + self.steps) / BASELINE_EPOCHS)  # 496: 24 x 496 = 11,904 steps
        # --quick: a tiny model, a few steps; what remains is tracing, conversion and test passes
        self.run_seconds, self.fixed_seconds = (25, {"dense": 25, "cost table": 240, "latency": 20}) if q else (
            SECONDS_PER_RUN, {"dense": SECONDS_PER_RUN, "cost table": TABLE_SECONDS, "latency": LATENCY_SECONDS})

    def settings(self, part: str) -> dict:
        """What a part's cached results depend on (besides the baseline's digest)."""
        common = {"steps": self.steps, "rounds": self.rounds, "checks": self.checks, "calibration": self.calibration, "quick": self.quick}
        return {"unstructured": {**common, "lr": LR, "saliency": self.saliency},
                "scratch": {"calibration": self.calibration, "epochs": self.scratch_epochs, "per_epoch": self.scratch_per_epoch,
                            "train": SCRATCH_TRAIN, "dynamic": self.dynamic, "quick": self.quick},
                "scratch_full": {"calibration": self.calibration, "epochs": self.full_epochs, "per_epoch": self.full_per_epoch,
                                 "train": SCRATCH_TRAIN, "augment": BASELINE_AUGMENT, "dynamic": self.dynamic, "quick": self.quick},
                "layout_control": {**common, "lr": LR, "saliency": self.saliency, "control": LAYOUT_CONTROL},
                "structured": {**common, "lr": STRUCTURED_LR, "saliency": self.saliency},
                "budget": {**common, "lr": STRUCTURED_LR, "budget": self.budget, "saliency": self.saliency, "ratios": list(self.ratios),
                           "feasibility": "table prediction and measured floor models"},
                "regularization": {**common, "lr": LR, "strengths": list(self.strengths), "slack": L1_DENSE_SLACK},
                "latency": {"latency": self.latency, "rounds": self.latency_rounds, "quick": self.quick}}[part]

    def jobs(self, part: str) -> list[tuple[str, object]]:
        seeds = self.seeds
        if part == "unstructured":
            return [("dense", None)] + [(f"{c} {pct(s)}", seed) for seed in seeds for s in self.sparsities for c in WEIGHT_CRITERIA]
        if part == "scratch":
            return ([(f"{m} {pct(s)}" if m != "dense" else "dense", seed) for seed in seeds for m in ("dense",) + SCRATCH_METHODS
                     for s in (self.sparsities if m != "dense" else (None,))]
                    + [(f"{SCRATCH_CAPPED['variant']} {pct(max(self.sparsities))}", seed) for seed in seeds])
        if part == "scratch_full":
            return [(f"{m} {pct(SCRATCH_FULL['sparsity'])}", seed) for seed in seeds for m in SCRATCH_FULL["methods"]]
        if part == "layout_control":
            c = LAYOUT_CONTROL
            return [(f"{c['criterion']} {pct(c['sparsity'])} {layout} layout", seed) for seed in seeds for layout in c["layouts"]]
        if part == "structured":
            return [(f"{c} {pct(r)}", seed) for seed in seeds for r in self.ratios for c in FILTER_CRITERIA]
        if part == "budget":
            return [("cost table", None)] + [(f"budget {r:g}x", seed) for seed in seeds for r in BUDGET_RATIOS]
        if part == "regularization":
            return ([("phase1 control", seed) for seed in seeds] + [(f"phase1 l1 {s:g}", seeds[0]) for s in self.strengths]
                    + [("phase1 penalized", seed) for seed in seeds[1:]]
                    + [(f"{arm} {pct(s)}", seed) for seed in seeds for s in self.l1_sparsities for arm in ("penalized", "control")])
        return [("latency", None)]

    def seconds(self, part: str, variant: str) -> float:
        """Estimated wall seconds of one job on 2 idle cores."""
        steps, rounds, run = self.steps, self.rounds, self.run_seconds
        criterion = variant.split(" ")[0]
        if variant in ("dense", "cost table", "latency") and part != "scratch":
            return self.fixed_seconds[variant]
        if part in ("unstructured", "layout_control"):
            return steps * SECONDS_PER_STEP["dense"] + run + rounds * SCORE_SECONDS[criterion]
        if part == "structured":
            return steps * SECONDS_PER_STEP["filters"] + run + rounds * SCORE_SECONDS[criterion]
        if part in ("scratch", "scratch_full"):
            steps = self.scratch_steps_estimate if part == "scratch" else self.full_epochs * self.full_per_epoch
            extra = {"rigl": 40, "grasp": 30, "snip": 10, SCRATCH_CAPPED["variant"]: 10}.get(criterion, 0)
            return steps * SECONDS_PER_STEP["dense"] + run + extra
        if part == "budget":
            ratio = float(variant.split(" ")[1].rstrip("x"))
            n = min(math.ceil(math.log(ratio) / math.log(1 - self.budget["step"])) + 1, self.budget["max_rounds"])
            return (n * (self.budget["round_steps"] * SECONDS_PER_STEP["filters"] + BUDGET_ROUND_SECONDS)
                    + steps * SECONDS_PER_STEP["filters"] + run)
        if variant.startswith("phase1"):
            return steps * SECONDS_PER_STEP["penalized"] + 2 * run / 3
        return steps * SECONDS_PER_STEP["dense"] + run + 20

    def estimate(self, parts=PARTS) -> float:
        return sum(self.seconds(p, v) for p in parts for v, _ in self.jobs(p))


# ---- the runs ---------------------------------------------------------------------------------------------------


class Run(BaselineRun):
    """Baseline, data, settings and one cache per part."""

    def __init__(self, args, plan: Plan):
        super().__init__(args, {"steps": plan.steps, "checks": plan.checks, "calibration": plan.calibration, "seeds": len(plan.seeds)},
                         plan.checks, plan.calibration)
        self.plan = plan
        self.caches = {p: seed_runs(f"pruning_criteria/{p}", {"baseline": self.digest, **plan.settings(p)}, plan.quick) for p in PARTS}
        drop_floorless_table(self.caches["budget"])

    # -- shared pieces

    def round_train(self, lr: float, seed: int, steps: int | None = None):
        """One round's fine-tune: ``steps`` (default the run's steps / rounds) steps at ``lr``, cosine, label smoothing 0.1."""
        from edgeopt import TrainConfig  # lazy: --findings-only loads no TensorFlow

        return TrainConfig(epochs=1, steps_per_epoch=steps or max(1, self.plan.steps // self.plan.rounds), learning_rate=lr, cosine=True,
                           label_smoothing=0.1, seed=seed)

    def saliency_options(self, seed: int):
        from edgeopt.compress.saliency import SaliencyOptions  # lazy: as above

        return SaliencyOptions(**self.plan.saliency, seed=seed)

    def measure(self, model, seed: int) -> tuple[dict, bytes]:
        """Test top-1 of ``model`` (Keras) and of its int8 .tflite (calibrated on ``seed``'s images), kernel sparsity and
        cost: the test split read once per model. Returns the numbers and the int8 file."""
        from edgeopt import evaluate, profile  # lazy: as above
        from edgeopt.bench import evaluate_tflite
        from edgeopt.costs import weight_sparsity
        from edgeopt.export import convert
        from edgeopt.stats import sampling_interval

        calibration = calibration_images(self.pool, seed, self.calibration)
        data = convert(model, "int8", calibration)
        prof = profile(model)
        row = {"keras_top1": evaluate(model, self.splits.test)["top1"]}
        try:
            row["int8_top1"] = evaluate_tflite(data, self.splits.test).top1
        except RuntimeError as err:  # XNNPACK refused to prepare the file (a from-scratch SNIP model did): kept, measured on the builtin kernels
            if "XNNPACK" not in str(err):
                raise
            row |= self.unloadable(model, data, err)
        row |= {"kernel_sparsity": weight_sparsity(model), "params": prof.params, "macs": prof.macs, "int8_bytes": len(data)}
        if row["keras_top1"] - row["int8_top1"] > sampling_interval(row["keras_top1"], self.splits.sizes["test"]):
            row["int8_repair"] = self.int8_repair(model, calibration)
            row["kept_model"] = str(self.keep(model, "int8_loss"))  # for later study (QAT, calibration) without retraining
        return row, data

    @staticmethod
    def keep(model, folder: str) -> Path:
        """Save ``model`` under runs/bench_cache/pruning_criteria/``folder``/ (not committed), named by its weights'
        digest; returns the path."""
        import hashlib

        import numpy as np

        digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())).hexdigest()[:12]
        path = CACHE_ROOT / "pruning_criteria" / folder / f"{digest}.keras"
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        return path

    def unloadable(self, model, data: bytes, err: Exception) -> dict:
        """An int8 file LiteRT's XNNPACK delegate refused to prepare: the Keras model and the file are kept under
        runs/bench_cache/pruning_criteria/unloadable/ (:meth:`keep`) for diagnosis, and the file's test top-1 is measured on LiteRT's
        builtin kernels. Returns the row's fields: that top-1, the error's first line, the kept file and the ops
        XNNPACK's requantization bound refuses (``edgeopt.tflite.xnnpack.requantization_problems``)."""
        from edgeopt.bench import evaluate_tflite  # lazy: as above
        from edgeopt.tflite.xnnpack import MAX_REQUANTIZATION_SCALE, requantization_problems

        stem = self.keep(model, "unloadable").with_suffix("")
        write_file(stem.with_suffix(".tflite"), data)
        message = str(err).strip().splitlines()[0]
        print(f"LiteRT's XNNPACK delegate cannot prepare this int8 file ({message}); kept as {stem}.tflite, measured on the builtin kernels",
              flush=True)
        return {"int8_top1": evaluate_tflite(data, self.splits.test, xnnpack=False).top1, "xnnpack_error": message,
                "unloadable_file": str(stem.with_suffix(".tflite")), "xnnpack_bound": MAX_REQUANTIZATION_SCALE,
                "xnnpack_requantization": [p.to_dict() for p in requantization_problems(data)]}

    def int8_repair(self, model, calibration) -> dict:
        """Where the int8 conversion of ``model`` (calibrated on ``calibration``) lost accuracy and what keeping layers float
        wins back: the worst tensors of ``quantize_report`` (debugged on validation images), ``auto_fallback``'s steps (the
        layers kept float, each file's validation top-1) and the int8 test top-1 of the file it chose on validation (the
        test split read once for that model)."""
        from edgeopt import PrecisionConfig, auto_fallback, quantize_report  # lazy: as above
        from edgeopt.bench import evaluate_tflite

        debug = self.splits.arrays("val", limit=INT8_REPAIR["debug_images"])[0]
        print(f"int8 conversion lost beyond noise: diagnosing {model.name} (quantize_report, auto_fallback)", flush=True)
        report = quantize_report(model, None, calibration, debug_data=debug, num_calibration=len(calibration))
        result = auto_fallback(model, calibration, PrecisionConfig(auto_fallback=INT8_REPAIR["points"], max_fallback_steps=INT8_REPAIR["steps"]),
                               val_data=self.splits.val, preprocessing=self.splits.preprocessing, num_calibration=len(calibration), report=report)
        return {**result.metrics(INT8_REPAIR["rows"]), "tensors": len(report.rows), "debug_images": len(debug),
                "test_top1": evaluate_tflite(result.files[result.chosen], self.splits.test).top1}

    def dense(self, *_) -> dict:
        """The baseline as it is: validation, Keras and int8 test top-1 (calibration seed 0), cost, near-zero weights."""
        from edgeopt import evaluate  # lazy: as above
        from edgeopt.compress.regularize import near_zero

        row, data = self.measure(self.model, 0)
        write_file(self.caches["unstructured"].file("dense", None, ".tflite"), data)
        nz = near_zero(self.model)
        return {"val_top1": evaluate(self.model, self.splits.val)["top1"], "near_zero_weights": nz.weights, "near_zero_eps": nz.eps, **row}

    def _saliency_prune(self, model, seed: int, criterion: str, granularity: str, target: float | None, lr: float,
                        layer_sparsity: dict[str, float] | None = None):
        """``saliency_prune`` in the run's rounds (:data:`ROUNDS`) to ``target`` (weights: layer-wise over every conv/dense kernel;
        filters: each internal group), or (weights, ``target`` None) each layer to its share in ``layer_sparsity``, never
        reading the test split. Returns the model and the run's fields."""
        from edgeopt.compress.saliency_prune import SaliencyPruneConfig, saliency_prune  # lazy: as above

        config = SaliencyPruneConfig(criterion=criterion, granularity=granularity, rounds=self.plan.rounds, target_sparsity=target,
                                     layer_sparsity=layer_sparsity, scope="layer", groups="internal", saliency=self.saliency_options(seed),
                                     train=self.round_train(lr, seed))
        pruned, result = saliency_prune(model, reseeded(self.splits, seed), config, evaluate_test=False)
        rounds = [asdict(r) for r in result.rounds]
        return pruned, {"val_top1": rounds[-1]["val_top1"], "steps": config.rounds * config.train.steps_per_epoch, "rounds": rounds}

    # -- parts

    def unstructured(self, variant: str, seed: int) -> dict:
        if variant == "dense":
            return self.dense()
        criterion, level = variant.split(" ")
        sparsity = float(level.rstrip("%")) / 100
        pruned, fields = self._saliency_prune(self.model, seed, criterion, "weight", sparsity, LR)
        row, _ = self.measure(pruned, seed)
        return {"criterion": criterion, "sparsity": sparsity, **fields, **row}

    def layout_control(self, variant: str, seed: int) -> dict:
        """Magnitude pruning of the baseline to the layer sparsities of a ``scratch_full`` layout (:data:`LAYOUT_CONTROL`:
        GraSP's, from its run of the same seed, or ERK's, which SET and RigL keep), in the ``unstructured`` rounds and
        steps; the first convolution, which sparse training leaves dense, is left whole."""
        from edgeopt.compress.masks import collapsed_layers, mask_sparsity, masks_of, remaining  # lazy: as above
        from edgeopt.compress.sparse_init import kernel_shapes, layer_sparsities, sparse_layers

        criterion, level, layout = variant.split(" ")[:3]
        sparsity = float(level.rstrip("%")) / 100
        masked = sparse_layers(self.model)
        if layout == "erk":
            profile = layer_sparsities(kernel_shapes(self.model, masked), sparsity, "erk")
        else:
            source = self.caches["scratch_full"].get(f"{layout} {level}", seed)
            if source is None:
                raise SystemExit(f"pruning criteria: layout_control '{variant}' seed {seed} takes its layer sparsities from scratch_full's "
                                 f"'{layout} {level}' seed {seed}, which has not run: run --part scratch_full --only '{layout} {level} | seed {seed}' first")
            profile = source["layer_sparsity"]
        pruned, fields = self._saliency_prune(self.model, seed, criterion, "weight", None, LR, layer_sparsity=profile)
        masks = masks_of(pruned, masked)
        row, _ = self.measure(pruned, seed)
        return {"criterion": criterion, "sparsity": sparsity, "layout": layout, **fields, "masked_sparsity": 1.0 - remaining(masks),
                "layer_sparsity": mask_sparsity(masks), "collapsed_layers": collapsed_layers(pruned, masks), **row}

    def structured(self, variant: str, seed: int) -> dict:
        criterion, level = variant.split(" ")
        ratio = float(level.rstrip("%")) / 100
        pruned, fields = self._saliency_prune(self.model, seed, criterion, "filter", ratio, STRUCTURED_LR)
        row, data = self.measure(pruned, seed)
        write_file(self.caches["structured"].file(variant, seed, ".tflite"), data)
        return {"criterion": criterion, "ratio": ratio, **fields, **row}

    def scratch(self, variant: str, seed: int, full: bool = False) -> dict:
        """A fresh model of the baseline's architecture (initial weights from ``seed``), trained from scratch: dense, or
        sparse by one of :data:`SCRATCH_METHODS` (``edgeopt.compress.sparse_training.sparse_train``), or SNIP with each layer capped
        (:data:`SCRATCH_CAPPED`). ``full``: the ``scratch_full`` part's budget, epochs and augmentation
        (:data:`SCRATCH_FULL`)."""
        from edgeopt import TrainConfig, fit, keras  # lazy: as above
        from edgeopt.compress.sparse_training import METHODS, sparse_train

        keras.utils.set_random_seed(seed)
        model = keras.models.clone_model(self.model)  # same layers, new initial weights
        if full:
            epochs, per_epoch, source = self.plan.full_epochs, self.plan.full_per_epoch, self.augmented_splits
        else:
            epochs, per_epoch, source = self.plan.scratch_epochs, self.plan.scratch_per_epoch or self.epoch_steps(), self.splits
        splits = reseeded(source, seed)
        train = TrainConfig(epochs=epochs, steps_per_epoch=per_epoch, seed=seed, **SCRATCH_TRAIN)
        fields = {"method": variant.split(" ")[0], "steps": train.epochs * per_epoch, **({"augmented": True} if full else {})}
        if variant == "dense":
            fields |= {"sparsity": 0.0, "val_top1": fit(model, splits, train).val_top1}
        else:
            method, level = variant.split(" ")
            sparsity = float(level.rstrip("%")) / 100
            extra = self.plan.dynamic if method in ("set", "rigl") else {}
            if method == SCRATCH_CAPPED["variant"]:
                method, extra = SCRATCH_CAPPED["method"], {"max_layer_sparsity": SCRATCH_CAPPED["max_layer_sparsity"]}
                fields["max_layer_sparsity"] = SCRATCH_CAPPED["max_layer_sparsity"]
            model, result = sparse_train(model, splits, method, METHODS.get(method).config_cls(sparsity=sparsity, train=train, seed=seed, **extra))
            fields |= {"sparsity": sparsity, "val_top1": result.val_top1, "masked_sparsity": result.sparsity, "distribution": result.config["distribution"],
                       "mask_updates": result.mask_updates, "changed_fraction": result.changed_fraction,
                       "layer_sparsity": result.layer_sparsity, "collapsed_layers": result.collapsed_layers}  # layer collapse
        row, _ = self.measure(model, seed)
        return {**fields, **row}

    def epoch_steps(self) -> int:
        """Steps of batch 128 in one pass of the training split; a full run checks it is the baseline's
        (:data:`BASELINE_EPOCH_STEPS`, which sets the ``scratch_full`` budget before the data is loaded)."""
        steps = math.ceil(self.splits.sizes["train"] / 128)
        if not self.plan.quick and steps != BASELINE_EPOCH_STEPS:
            raise SystemExit(f"pruning criteria: the training split has {steps} steps an epoch, the baseline's recipe {BASELINE_EPOCH_STEPS}: "
                             f"BASELINE_EPOCH_STEPS in {__file__} must match the data (benchmarks/_common.py's BASELINE_DATA)")
        return steps

    @cached_property
    def augmented_splits(self):
        """The baseline's splits with its training augmentation (loaded on first use)."""
        self.epoch_steps()
        return baseline_splits(self.plan.quick, augment=True)

    def cost_table(self, *_) -> dict:
        """The int8 latency cost table of the baseline (every group ``groups="all"`` may cut), and the feasibility check:
        per scope, the least latency the table predicts (every group of the scope at its floor, the table's separable
        sum of per-group savings) and the latency measured on that floor model itself, both as shares of the baseline's
        (floor models and baseline interleaved). The measured share decides; the prediction is reported beside it."""
        from edgeopt.compress.cost_table import floor_channels, int8_latency, measure_table, strongest_channels  # lazy: as above
        from edgeopt.compress.saliency_prune import eligible_groups
        from edgeopt.compress.structured import rebuild
        from edgeopt.export import convert

        b = self.plan.budget
        floor = floor_channels(b["min_channels"], b["round_to"])
        measure = int8_latency(self.pool[:64], threads=1, runs=b["runs"], min_seconds=b["min_seconds"])
        table = measure_table(self.model, eligible_groups(self.model, "all"), measure, "latency_ms", floor=floor, round_to=b["round_to"],
                              points=b["table_points"], pairs=b["pairs"])
        feasibility, files = {}, {"baseline": convert(self.model, "int8", self.pool[:64])}
        keep = strongest_channels(self.model, eligible_groups(self.model, "all"))  # the table's cuts keep the same channels
        for scope in ("internal", "all"):
            widths = eligible_groups(self.model, scope)
            predicted = table.predict(table.base, widths, {g: min(n, floor) for g, n in widths.items()})
            files[scope] = convert(rebuild(self.model, {g: keep(g, floor) for g, n in widths.items() if n > floor}), "int8", self.pool[:64])
            feasibility[scope] = {"groups": len(widths), "min_ratio": predicted / table.base}
        ms = {k: median_ms(v) for k, v in interleaved_latency(files, 3, progress="floor models", **self.plan.latency).items()}
        for scope in ("internal", "all"):
            feasibility[scope]["floor_ratio"] = ms[scope] / ms["baseline"]
        return {"table": table.to_dict(), "feasibility": feasibility, "floor_channels": floor, "machine": machine_line()}

    def budget_criterion(self) -> tuple[str, dict]:
        """The filter criterion with the best mean validation top-1 over seeds at the structured part's largest ratio."""
        runs = self.caches["structured"]
        ratio = max(self.plan.ratios)
        val = {}
        for c in FILTER_CRITERIA:
            got = [runs.get(f"{c} {pct(ratio)}", s) for s in self.plan.seeds]
            if any(g is None for g in got):
                raise SystemExit(f"the budget part picks its criterion from the structured part's validation results: run --part structured first ({c} missing)")
            val[c] = sum(g["val_top1"] for g in got) / len(got)
        return max(val, key=val.get), val

    def budget(self, variant: str, seed: int) -> dict:
        """``budget_prune`` to ``max_latency_ratio`` with the smallest feasible scope, then the fine-tune; or why not."""
        from edgeopt import TrainConfig  # lazy: as above
        from edgeopt.compress.budget import BudgetPruneConfig, LatencyOptions, budget_prune
        from edgeopt.compress.cost_table import CostTable

        ratio = float(variant.split(" ")[1].rstrip("x"))
        table = self.caches["budget"].get("cost table")
        scope = next((s for s in ("internal", "all") if table["feasibility"][s]["floor_ratio"] <= ratio), None)
        criterion, _ = self.budget_criterion()
        if scope is None:
            return {"budget_ratio": ratio, "feasible": False, "criterion": criterion}
        b = self.plan.budget
        config = BudgetPruneConfig(max_latency_ratio=ratio, step=b["step"], max_rounds=b["max_rounds"], criterion=criterion, groups=scope,
                                   round_to=b["round_to"], min_channels=b["min_channels"], saliency=self.saliency_options(seed),
                                   latency=LatencyOptions(threads=1, runs=b["runs"], min_seconds=b["min_seconds"], table_points=b["table_points"],
                                                          repeats=b["pairs"]),
                                   train=TrainConfig(epochs=1, steps_per_epoch=b["round_steps"], learning_rate=STRUCTURED_LR, cosine=False,
                                                     label_smoothing=0.1, seed=seed))
        splits = reseeded(self.splits, seed)
        pruned, result = budget_prune(self.model, splits, config, table=CostTable.from_dict(table["table"]), evaluate_test=False)
        tuned = finetune(pruned, splits, self.plan.steps, STRUCTURED_LR, seed, self.plan.checks)
        row, data = self.measure(pruned, seed)
        write_file(self.caches["budget"].file(variant, seed, ".tflite"), data)
        return {"budget_ratio": ratio, "feasible": True, "criterion": criterion, "groups": scope, "stop_reason": result.stop_reason,
                "budgets_met": list(result.budgets_met), "budget_ms": result.budgets.get("latency_ms"),
                "rounds": [asdict(r) for r in result.rounds], "round_steps": b["round_steps"], **tuned, **row}

    def phase1(self, variant: str, seed: int) -> dict:
        """1,200 fine-tune steps from the baseline with an L1 penalty (``phase1 l1 <strength>``, or ``phase1 penalized``:
        the chosen strength) or without (``phase1 control``); near-zero weights, and the validation top-1 before and
        after a one-shot layer-wise magnitude cut at each of the part's sparsities. The model is kept for phase 2."""
        from edgeopt import TrainConfig, evaluate  # lazy: as above
        from edgeopt.compress.graph import clone_with_weights
        from edgeopt.compress.regularize import RegularizationConfig, fit_with_penalty, near_zero
        from edgeopt.io import save_model_atomic

        strength = None if variant == "phase1 control" else self.l1_strength() if variant == "phase1 penalized" else float(variant.split(" ")[2])
        train = TrainConfig(epochs=self.plan.checks, steps_per_epoch=max(1, self.plan.steps // self.plan.checks), learning_rate=LR, cosine=True,
                            label_smoothing=0.1, seed=seed)
        regularization = None if strength is None else RegularizationConfig(kind="l1", strength=strength)
        model, result = fit_with_penalty(clone_with_weights(self.model), reseeded(self.splits, seed), train, regularization)
        save_model_atomic(model, self.caches["regularization"].file(variant, seed, ".keras"))
        nz = near_zero(model)
        oneshot = {pct(s): evaluate(_one_shot(model, s), self.splits.val)["top1"] for s in self.plan.l1_sparsities}
        return {"strength": strength, "steps": train.epochs * train.steps_per_epoch, "val_top1": result.val_top1, "near_zero_weights": nz.weights,
                "near_zero_filters": nz.filters, "near_zero_eps": nz.eps, "oneshot_val_top1": oneshot}

    def l1_strength(self) -> float:
        """Among the strengths whose phase-1 validation top-1 (seed 0) is within :data:`L1_DENSE_SLACK` of the control's,
        the one whose one-shot cut at the highest sparsity keeps the best validation top-1 (the smallest if none qualifies)."""
        cache, seed = self.caches["regularization"], self.plan.seeds[0]
        control = cache.get("phase1 control", seed)
        sweep = [cache.get(f"phase1 l1 {s:g}", seed) for s in self.plan.strengths]
        top = pct(max(self.plan.l1_sparsities))
        ok = [r for r in sweep if r["val_top1"] >= control["val_top1"] - L1_DENSE_SLACK]
        return max(ok, key=lambda r: r["oneshot_val_top1"][top])["strength"] if ok else min(self.plan.strengths)

    def regularization(self, variant: str, seed: int) -> dict:
        if variant.startswith("phase1"):
            return self.phase1(variant, seed)
        from edgeopt import evaluate, load_model  # lazy: as above

        arm, level = variant.split(" ")
        sparsity = float(level.rstrip("%")) / 100
        cache = self.caches["regularization"]
        source = self.phase1_source(variant, seed)
        start = load_model(cache.file(source, seed, ".keras"))
        oneshot = evaluate(_one_shot(start, sparsity), self.splits.test)["top1"]
        pruned, fields = self._saliency_prune(start, seed, "l1", "weight", sparsity, LR)
        row, _ = self.measure(pruned, seed)
        phase1 = cache.get(source, seed)
        return {"arm": arm, "sparsity": sparsity, "source": source, "strength": phase1["strength"], "source_near_zero_weights": phase1["near_zero_weights"],
                "oneshot_keras_top1": oneshot, **fields, **row}

    def phase1_source(self, variant: str, seed: int) -> str:
        """The phase-1 model a phase-2 row (``"<arm> <sparsity>"``) starts from (its .keras file)."""
        if variant.startswith("control"):
            return "phase1 control"
        return f"phase1 l1 {self.l1_strength():g}" if seed == self.plan.seeds[0] else "phase1 penalized"

    def ensure_phase1_files(self) -> None:
        """Before phase 2: the phase-1 jobs are done and the .keras file of every pending phase-2 row's source is here
        (a fresh clone has the committed results, not the files: such sources train again; their results may change
        the chosen strength, hence the loop)."""
        cache, jobs = self.caches["regularization"], self.plan.jobs("regularization")
        phase1 = [(v, s) for v, s in jobs if v.startswith("phase1")]
        pending = [(v, s) for v, s in jobs if not v.startswith("phase1") and cache.get(v, s) is None]
        estimate = partial(self.plan.seconds, "regularization")
        while pending:
            cache.run(phase1, self.regularization, estimate, "pruning criteria: regularization, phase 1")
            sources = sorted({(self.phase1_source(v, s), s) for v, s in pending})
            if not cache.ensure_files([(v, s, (".keras",)) for v, s in sources], "pruning criteria: regularization, phase 2"):
                return

    def timed_structured(self) -> list[str]:
        """The structured variants the latency part times, one file each: the structured jobs' variants, in order."""
        return list(dict.fromkeys(v for v, _ in self.plan.jobs("structured")))

    def latency_seed(self, variant: str) -> int:
        """The seed of the structured ``variant`` whose int8 file the latency part times: the first seed whose result and
        file are both here, else the first seed (its run is made again). At one ratio every seed and criterion keeps the
        same channel counts (each internal group loses the same share), so any seed's file is the same network to time."""
        cache = self.caches["structured"]
        here = (s for s in self.plan.seeds if cache.get(variant, s) is not None and cache.file(variant, s, ".tflite").exists())
        return next(here, self.plan.seeds[0])

    def ensure_latency_files(self) -> None:
        """Before the latency part: every file it times is here; the jobs whose files a fresh clone lacks run again."""
        needs = {"unstructured": [("dense", None)], "structured": [(v, self.latency_seed(v)) for v in self.timed_structured()],
                 "budget": [(v, s) for v, s in self.plan.jobs("budget")[1:] if (self.caches["budget"].get(v, s) or {}).get("feasible")]}
        for part, jobs in needs.items():
            if self.caches[part].ensure_files([(v, s, (".tflite",)) for v, s in jobs], "pruning criteria: latency"):
                self.run_part(part)

    def latency_files(self) -> dict[str, Path]:
        files = {"dense": self.caches["unstructured"].file("dense", None, ".tflite")}
        files |= {v: self.caches["structured"].file(v, self.latency_seed(v), ".tflite") for v in self.timed_structured()}
        for variant, seed in self.plan.jobs("budget")[1:]:
            if (self.caches["budget"].get(variant, seed) or {}).get("feasible"):
                files[f"{variant} seed {seed}"] = self.caches["budget"].file(variant, seed, ".tflite")
        return files

    def latency(self, *_) -> dict:
        """int8 latency of the files, interleaved; each file's median of per-round medians and the per-round medians."""
        files = self.latency_files()
        results = interleaved_latency(files, self.plan.latency_rounds, progress="latency", **self.plan.latency)
        return {"ms": {k: median_ms(v) for k, v in results.items()}, "rounds_ms": {k: [r.median_ms for r in v] for k, v in results.items()},
                "files": {k: file_digest(p) for k, p in files.items()}, "seeds": {v: self.latency_seed(v) for v in self.timed_structured()},
                "machine": machine_line()}

    def run_part(self, part: str, jobs: Sequence[tuple[str, object]] | None = None) -> None:
        """Run ``part``'s unfinished jobs (of ``jobs``, when given: those ``--only`` selected)."""
        cache = self.caches[part]
        work = {"unstructured": self.unstructured, "scratch": self.scratch, "scratch_full": partial(self.scratch, full=True),
                "layout_control": self.layout_control,
                "structured": self.structured, "regularization": self.regularization,
                "latency": self.latency, "budget": lambda v, s: self.cost_table() if v == "cost table" else self.budget(v, s)}[part]
        jobs = self.plan.jobs(part) if jobs is None else jobs
        if part == "regularization":
            self.ensure_phase1_files()
        if part == "latency":  # measured again when any timed file here changed (a fresh clone has none of them)
            stale = cache.get("latency")
            here = {k: file_digest(p) for k, p in self.latency_files().items() if p.exists()}
            if stale and any(stale["files"].get(k) != d for k, d in here.items()):
                cache.forget("latency")
            if cache.get("latency") is None:
                self.ensure_latency_files()
        cache.run(jobs, work, lambda v: self.plan.seconds(part, v), f"pruning criteria: {part}")

    def masked_layers(self) -> dict[str, dict[str, int]]:
        """The layers sparse training masks in the baseline's architecture, with their kernel's weights and output
        channels (what the report needs to tell a collapsed layer from a sparse one in runs that recorded only
        ``layer_sparsity``)."""
        from edgeopt.compress.masks import kernel_of, output_channels  # lazy: as above
        from edgeopt.compress.sparse_init import sparse_layers

        return {n: {"weights": int(kernel_of(self.model, n).shape.num_elements()), "outputs": output_channels(self.model, n)}
                for n in sparse_layers(self.model)}

    def missing(self) -> list[str]:
        return [p for p in PARTS if self.pending(p)]

    def pending(self, part: str) -> list[str]:
        """The part's jobs not run yet, as "variant seed N"."""
        return [f"{v} seed {s}" if s is not None else v for v, s in self.plan.jobs(part) if self.caches[part].get(v, s) is None]

    def collect(self) -> dict:
        """Every part's cached results, as pruning_criteria.json holds them."""
        get = {p: [self.caches[p].get(v, s) for v, s in self.plan.jobs(p)] for p in PARTS}
        table = self.caches["budget"].get("cost table")
        criterion, val = self.budget_criterion()
        plan = self.plan
        per_epoch = plan.scratch_per_epoch or self.epoch_steps()
        return {
            "format": 1, "cmd": "benchmarks/pruning_criteria.py " + " ".join(sys.argv[1:]), "quick": plan.quick, "test_images": self.splits.sizes["test"],
            "train_images": self.splits.sizes["train"], "seeds": plan.seeds,
            "settings": {"steps": plan.steps, "rounds": plan.rounds, "checks": plan.checks, "learning_rate": LR, "structured_learning_rate": STRUCTURED_LR,
                         "calibration": plan.calibration, "saliency": plan.saliency, "sparsities": list(plan.sparsities), "ratios": list(plan.ratios),
                         "weight_criteria": list(WEIGHT_CRITERIA), "filter_criteria": list(FILTER_CRITERIA),
                         "baseline_epochs": BASELINE_EPOCHS, "baseline_train_steps": BASELINE_EPOCHS * self.epoch_steps(),
                         "scratch": {"epochs": plan.scratch_epochs, "steps": plan.scratch_epochs * per_epoch, "train": SCRATCH_TRAIN, "dynamic": plan.dynamic,
                                     "capped": SCRATCH_CAPPED, "layers": self.masked_layers()},
                         "scratch_full": {**SCRATCH_FULL, "epochs": plan.full_epochs, "steps": plan.full_epochs * plan.full_per_epoch,
                                          "augment": BASELINE_AUGMENT},
                         "layout_control": LAYOUT_CONTROL,
                         "budget": {**plan.budget, "ratios": list(BUDGET_RATIOS)}, "l1": {"strengths": list(plan.strengths), "sparsities": list(plan.l1_sparsities),
                                                                                         "dense_slack": L1_DENSE_SLACK},
                         "latency": {**plan.latency, "rounds": plan.latency_rounds}},
            "baseline": {"file": str(self.baseline_file), **get["unstructured"][0]},
            "unstructured": get["unstructured"][1:], "scratch": get["scratch"], "structured": get["structured"],
            "scratch_full": [r for r in get["scratch_full"] if r is not None],
            "layout_control": [r for r in get["layout_control"] if r is not None], "pending": {p: left for p in PARTIAL_PARTS if (left := self.pending(p))},
            "budget": {"criterion": criterion, "criterion_val_top1": val, "feasibility": table["feasibility"], "floor_channels": table["floor_channels"],
                       "table_machine": table.get("machine"),
                       "table": table["table"], "runs": [{**r, "latency_key": f"{r['variant']} seed {r['seed']}"} for r in get["budget"][1:]]},
            "regularization": {"strength": self.l1_strength(), "phase1": [r for r in get["regularization"] if r["variant"].startswith("phase1")],
                               "runs": [r for r in get["regularization"] if not r["variant"].startswith("phase1")]},
            "latency": get["latency"][0],
        }


def drop_floorless_table(cache) -> int:
    """Forget the budget part's cached results (``cache``, a :class:`SeedRuns`) when its cost table has no measured floor
    (a table written before ``CostTable.floor`` existed reads with floor 0: predictions unclamped): the table and every
    budget run planned from it are measured again. Says so in one line; returns how many results were dropped."""
    table = cache.get("cost table")
    if table is None or table["table"].get("floor", 0.0) > 0.0:
        return 0
    dropped = cache.forget_all()
    print(f"pruning criteria: the cached cost table in {cache.path} has no floor (measured before cost tables had one, so no prediction "
          f"would be clamped): measuring it again, with the {plural(dropped - 1, 'budget run')} planned from it", flush=True)
    return dropped


def _one_shot(model, sparsity: float):
    """A copy of ``model`` with ``sparsity`` of each conv/dense kernel's weights of smallest magnitude set to zero."""
    from edgeopt.compress.graph import clone_with_weights  # lazy: as above
    from edgeopt.compress.masks import apply_masks, dense_masks, magnitude_scores, prunable_layers, prune_by_score

    cut = clone_with_weights(model)
    names = prunable_layers(cut)
    apply_masks(cut, prune_by_score(magnitude_scores(cut, names), dense_masks(cut, names), sparsity, "layer"))
    return cut


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    baseline_args(ap)
    ap.add_argument("--part", choices=[*PARTS, "report"], default=None, help="run one part (cached); report: write the JSON and render "
                    "from the caches, measuring nothing")
    ap.add_argument("--only", action="append", default=[], metavar="JOB", help="with --part: run only this variant (all its seeds) or "
                    "one run, 'VARIANT | seed N'; repeatable. Processes given different jobs can share one checkout: each save "
                    "merges into runs.json")
    ap.add_argument("--finetune-steps", type=int, default=STEPS, help=f"fine-tune steps of every prune-after-training row (default {STEPS})")
    ap.add_argument("--findings-only", action="store_true", help="re-render pruning_criteria.md, .csv and the findings from the JSON in --out")
    ap.add_argument("--out", type=Path, default=None, help=f"where the JSON and the rendered files go (default {OUT}/, with --quick "
                    f"{QUICK_OUT}/pruning_criteria/)")
    a = ap.parse_args(argv)
    out = a.out or (QUICK_OUT / "pruning_criteria" if a.quick else OUT)
    from benchmarks._pruning_criteria_report import DATA, render  # no TensorFlow

    if a.findings_only:
        render(out, plots=True)
        print(f"rendered {out}/pruning_criteria.md, pruning_criteria.csv, pruning_criteria_findings.md and the plots from {out / DATA}", flush=True)
        return
    plan = Plan(a)
    parts = PARTS if a.part in (None, "report") else (a.part,)
    if a.only and len(parts) != 1:
        ap.error("--only needs --part PART (one of the parts, not report): it names jobs of that part")
    try:
        jobs = {p: SeedRuns.selected(plan.jobs(p), a.only) for p in parts}
    except ValueError as e:
        ap.error(str(e))
    print(f"pruning criteria: the full run is about {_duration(plan.estimate())} on 2 idle cores with nothing cached "
          f"({'--quick settings' if a.quick else 'about twice that while another training shares the cores'}); "
          f"{'this call: ' + ', '.join(parts) if a.part != 'report' else 'report only'}", flush=True)
    if a.quick:
        a.baseline = STANDIN  # the tiny stand-in (trained on first use) even when the baseline exists: minutes, not hours
    check_baseline(a.baseline, a.quick)
    t0 = time.perf_counter()
    run = Run(a, plan)
    left = sum(plan.seconds(p, v) for p in parts for v, s in jobs[p] if run.caches[p].get(v, s) is None)
    print(f"pruning criteria: {_duration(left)} left to run for {', '.join(parts)} (the rest is cached)", flush=True)
    if a.part != "report":
        for part in parts:
            run.run_part(part, jobs[part])
    missing = run.missing()
    if [p for p in missing if p not in PARTIAL_PARTS]:
        print(f"not writing {out / DATA}: parts {', '.join(missing)} are not finished (run them with --part)", flush=True)
        return
    for part in missing:
        print(f"{part} is not finished ({plural(len(run.pending(part)), 'run')} to go): the report shows its variants whose every seed is in",
              flush=True)
    data = {**run.collect(), "machine": f"{machine_line()} (shared with other TensorFlow jobs while this ran)", "wall_s": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / DATA, json.dumps(data, indent=1) + "\n")
    render(out, plots=True)
    print(f"wrote {out}/{DATA}, pruning_criteria.md, pruning_criteria.csv, pruning_criteria_findings.md and the plots", flush=True)


if __name__ == "__main__":
    main()
