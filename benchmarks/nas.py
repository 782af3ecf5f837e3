"""Architecture search (issue #24) on Fashion-MNIST 28x28x3: networks found by differentiable search (DARTS-style,
with an expected-latency term from a measured latency table) and by one-shot evolutionary search (NSGA-II over a
single-path-trained supernet), each retrained from scratch, against the hand-designed MobileNetV2 0.35 (a point of
the space) and against random search at the same search budget, at equal measured int8 latency.

Space: ``mobilenet_v2_space(0.35)``: MobileNetV2's macro-architecture (stem, 17 blocks, head 1280), every block after
the first choosing among inverted residuals with kernel 3/5/7, expansion 3/6, with or without squeeze-excite, and
skip where the block keeps its shape. MobileNetV2 0.35 itself is ``ir_k3_e6`` in every searchable block. Data as
recipes/fmnist_mobilenet_v2.toml: all 57,000 training images with shifts of up to 2 pixels and left-right flips,
its validation split (5%, seed 0), the 10,000 test images; every training uses its Adam 0.004, 3% linear warm-up and
cosine decay, weight decay 0.05, label smoothing 0.1 (the supernet's and DARTS' steps too, DARTS without smoothing).

Phases, in order (each cached in benchmarks/raw/nas/<settings>/runs.json as it finishes, committed with the latency
table: a killed run continues, in this session or the next one on a fresh clone; checkpoints and .tflite files stay
in runs/bench_cache/nas/, and a phase that needs a gone file makes it again):

1. ``table``: the int8, 1-thread latency of every candidate at every block (LiteRT interpreter, XNNPACK, minimum of
   each measurement's runs, interleaved rounds; :mod:`edgeopt.search.latency_table`), its per-inference overhead
   from a probe. The latency limit of every search is the table's prediction for MobileNetV2 0.35.
2. ``supernet``: single-path training (Single Path One-Shot: one uniformly drawn architecture per step) of a supernet,
   ``SUPERNET_EPOCHS`` epochs, a block's candidates sharing their weights (``SHARE_WEIGHTS``: a smaller kernel is the
   centre of a larger one, a smaller expansion the first channels of a larger one). It is the one-shot search's
   supernet and the differentiable search's warm start (FBNet and ProxylessNAS train the weights alone first); its
   wall time counts in both searches' cost.
3. ``darts``: first-order DARTS from those weights: ``DARTS_STEPS`` alternating steps (architecture on a validation
   batch, weights on a training batch, every candidate of every block run), softmax mixing, cost term = the expected
   latency as a hinge above the limit. The derived network is each block's argmax, made to fit the limit if it does
   not (:func:`edgeopt.search.darts.derive_within`).
4. ``evolution``: NSGA-II (``EVOLUTION`` trials) over architectures, one-shot score (validation top-1 with the
   supernet's weights after batch-norm recalibration) against predicted latency, under the limit.
5. ``random``: architectures drawn uniformly under the limit, each trained alone for ``CANDIDATE_EPOCHS`` epoch(s)
   and read on the validation split, until their training time reaches the larger of the two searches' cost (at
   least ``MIN_CANDIDATES``: the Kendall tau of their one-shot scores against these stand-alone accuracies).
6. ``retrain``: MobileNetV2 0.35 and the three found networks, each from scratch with ``--seeds`` seeds,
   ``RETRAIN_EPOCHS`` epochs (every model the same budget; the baseline recipe trains 24), then validation, and the
   test split once: Keras and its int8 .tflite (int8 input and output, 500 calibration images).
7. ``latency``: the four int8 networks (seed 0) timed interleaved with the table's runner, 1 thread, 7 rounds; it
   runs as soon as the seed-0 retrainings are done, before the other seeds.

Selection (architecture weights, evolution, random search's pick) reads the validation split only. The run writes
benchmarks/nas.json and renders nas.md, nas.csv, nas_pareto.png and nas_findings.md (benchmarks/_nas_report.py,
no TensorFlow).

Full run: about 3.7 h on 2 idle cores (table 15 min, supernet 25 min, DARTS 30 min, evolution 17 min, random search
about 55 min, 12 retrainings 85 min), about twice that while another training shares the cores; it prints its
estimate first and the time left as it goes:
    nice -n 19 env PYTHONPATH=. python benchmarks/nas.py
Smoke run (the 2-block tiny space with 4 candidates, a few steps, 2 seeds; 80 s at nice 19 beside another training;
writes /tmp/edgeopt-bench-quick/nas/ and runs/bench_cache/quick/nas/):
    nice -n 19 env PYTHONPATH=. python benchmarks/nas.py --quick
    PYTHONPATH=. python benchmarks/nas.py --findings-only [--quick]   (re-render from the data)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

from benchmarks._common import (BASELINE_DATA, BASELINE_RECIPE, BATCH, QUICK_OUT, QUICK_TEST, QUICK_TRAIN, QUICK_VAL, calibration_images,
                                interleave, machine_line, reseeded, seed_runs, training_arrays, write_file)
from benchmarks._nas_report import (DATA, FINDINGS, FINDINGS_CONSTANTS, MODELS, findings_data,  # noqa: F401  (the renderer, for
                                    findings_markdown, render)  # tests/test_findings.py)

OUT = Path(__file__).parent
INPUT, CLASSES, WIDTH = (28, 28, 3), 10, 0.35
DATA_SETTINGS = {**BASELINE_DATA, "augment": True, "crop_padding": 2}  # recipes/fmnist_mobilenet_v2.toml's [data]
RECIPE = {"learning_rate": 0.004, "warmup_fraction": 0.03, "weight_decay": 0.05, "label_smoothing": 0.1}  # its [train]
BASELINE_EPOCHS = 24
RETRAIN_EPOCHS, CANDIDATE_EPOCHS = 2, 1
SUPERNET_EPOCHS = 4
SHARE_WEIGHTS = True  # a block's candidates share weights in the single-path supernet (benchmarks/single_path_coupling.md)
DARTS = {"epochs": 6, "steps_per_epoch": 60, "optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 0.05, "arch_optimizer": "adam",
         "arch_learning_rate": 0.01, "cost_model": "latency", "cost_weight": 1.0}
EVOLUTION = {"trials": 80, "population": 16}
MIN_CANDIDATES = 10
RANDOM_SEED = 1234  # the random search's draws (the retraining seeds are 0, 1, 2)
TABLE = {"precisions": ("int8",), "threads": (1,), "rounds": 3}
RUNNER = {"statistic": "min"}  # of each measurement's runs: steadier on a shared machine (benchmarks/nas_latency.py)
LATENCY_ROUNDS = 7
CALIBRATION = 500
QUICK_OPS = ("ir_k3_e3", "ir_k3_e6", "ir_k5_e6_se0.25", "skip")
QUICK = {"seeds": 2, "epochs": 1, "steps": 3, "supernet_epochs": 2, "darts": {"epochs": 2, "steps_per_epoch": 2}, "evolution": {"trials": 8, "population": 4},
         "min_candidates": 4, "table_rounds": 2, "latency_rounds": 2, "calibration": 32}
# seconds on 2 idle cores (estimates: a MobileNetV2 0.35 step of batch 128 at 28x28 with augmentation is about 0.39 s,
# 4,139 s for the baseline's 10,704; a single-path step runs eagerly, about 2x; a DARTS step (architecture +
# weights) runs all 12 candidates of 16 blocks, about 11x, measured beside another training)
SECONDS = {"step": 0.39, "single_path_step": 0.8, "darts_step": 4.3, "darts_trace": 150, "supernet_build": 15, "part_export": 3.5,
           "part_timing": 0.3, "oneshot_score": 14, "candidate_overhead": 25, "retrain_overhead": 75, "network_timing": 0.5}
QUICK_SECONDS = {"step": 0.05, "single_path_step": 0.1, "darts_step": 0.3, "darts_trace": 20, "supernet_build": 1, "part_export": 2,
                 "part_timing": 0.2, "oneshot_score": 3, "candidate_overhead": 8, "retrain_overhead": 12, "network_timing": 0.3}
TRAIN_IMAGES = 57_000


class Plan:
    """The settings of one run (full or ``--quick``) and each phase's estimated seconds, from the arguments alone (no
    TensorFlow: the estimate is printed before anything loads)."""

    def __init__(self, args):
        q = self.quick = args.quick
        self.seeds = list(range(QUICK["seeds"] if q else args.seeds))
        self.retrain_epochs = QUICK["epochs"] if q else RETRAIN_EPOCHS
        self.candidate_epochs = QUICK["epochs"] if q else CANDIDATE_EPOCHS
        self.steps_per_epoch = QUICK["steps"] if q else None  # None: a pass of the training split
        self.supernet_epochs = QUICK["supernet_epochs"] if q else SUPERNET_EPOCHS
        self.darts = {**DARTS, **QUICK["darts"]} if q else dict(DARTS)
        self.evolution = QUICK["evolution"] if q else dict(EVOLUTION)
        self.min_candidates = QUICK["min_candidates"] if q else MIN_CANDIDATES
        self.table = {**TABLE, "rounds": QUICK["table_rounds"]} if q else dict(TABLE)
        self.latency_rounds = QUICK["latency_rounds"] if q else LATENCY_ROUNDS
        self.calibration = QUICK["calibration"] if q else CALIBRATION
        self.s = QUICK_SECONDS if q else SECONDS
        self.train_steps = self.steps_per_epoch or math.ceil(TRAIN_IMAGES / BATCH)

    def space(self):
        from edgeopt.search.nas_space import mobilenet_v2_space, tiny_space  # lazy: TensorFlow

        return tiny_space(QUICK_OPS) if self.quick else mobilenet_v2_space(WIDTH)

    def settings(self) -> dict:
        """What every cached result depends on (a change starts a new cache folder)."""
        return {"format": 1, "quick": self.quick, "data": DATA_SETTINGS, "recipe": RECIPE, "retrain_epochs": self.retrain_epochs,
                "candidate_epochs": self.candidate_epochs, "steps_per_epoch": self.steps_per_epoch, "supernet_epochs": self.supernet_epochs,
                "darts": self.darts, "evolution": self.evolution, "table": self.table, "runner": RUNNER, "calibration": self.calibration,
                "random_seed": RANDOM_SEED, "space": "tiny" + "/".join(QUICK_OPS) if self.quick else f"mobilenet_v2@{WIDTH}",
                # the committed results (cache c22c53b387) trained the single-path supernet with Keras' Adam, bias-corrected by the
                # global step; edgeopt.train.PerVariableStepAdam since, so a run of this code starts a new cache folder
                "single_path_adam": "per-variable steps",
                # the committed results gave every candidate its own weights; shared since (benchmarks/single_path_coupling.md)
                "share_weights": SHARE_WEIGHTS}

    def parts(self) -> int:
        """Parts of the latency table: stem, head, 2 probes and every candidate but skip (12 at each of 16 searchable blocks, 1 at block1a)."""
        return 4 + (5 if self.quick else 1 + 16 * 12)

    def candidate_seconds(self) -> float:
        """One random-search candidate: its training, validation and one-shot score."""
        return self.candidate_epochs * self.train_steps * self.s["step"] + self.s["candidate_overhead"] + self.s["oneshot_score"]

    def seconds(self) -> dict[str, float]:
        s = self.s
        supernet = s["supernet_build"] + self.supernet_epochs * self.train_steps * s["single_path_step"]
        darts = s["supernet_build"] + s["darts_trace"] + self.darts["epochs"] * self.darts["steps_per_epoch"] * s["darts_step"]
        candidate = self.candidate_seconds()
        evolution = self.evolution["trials"] * 0.9 * s["oneshot_score"]  # about 10% of NSGA-II's suggestions repeat one
        count = max(self.min_candidates, math.ceil((supernet + max(darts, evolution)) / candidate))
        return {"table": self.parts() * (s["part_export"] + self.table["rounds"] * s["part_timing"]), "supernet": supernet, "darts": darts,
                "evolution": evolution, "random": count * candidate,
                "retrain": len(MODELS) * len(self.seeds) * (self.retrain_epochs * self.train_steps * s["step"] + s["retrain_overhead"]),
                "latency": len(MODELS) * (self.latency_rounds * s["network_timing"] + 10)}


# ---- the run ----------------------------------------------------------------------------------------------------


def nas_splits(quick: bool):
    """Fashion-MNIST as the baseline recipe trains on it (augmentation on the training split); ``quick``: the first
    images of each split, as benchmarks/_common.py's quick runs."""
    from dataclasses import replace

    from edgeopt import load_dataset  # lazy: TensorFlow

    if not quick:
        return load_dataset(**DATA_SETTINGS, batch_size=BATCH)
    splits = load_dataset(**DATA_SETTINGS, batch_size=BATCH, limit_train=QUICK_TRAIN, limit_test=QUICK_TEST)
    return replace(splits, val=splits.val.unbatch().take(QUICK_VAL).batch(BATCH), sizes={**splits.sizes, "val": QUICK_VAL})


class Run:
    """One run: the plan, data, space, the cache (``runs.json`` and the latency table in its committed folder, the
    phases' checkpoints, journal and .tflite files in ``files``), and the phases' results as they come."""

    def __init__(self, args, plan: Plan):
        self.args, self.plan = args, plan
        self.cache = seed_runs("nas", plan.settings(), plan.quick)
        self.folder, self.files = self.cache.folder, self.cache.files
        self.splits = nas_splits(plan.quick)
        self.space = plan.space()
        self.pool = training_arrays(self.splits, 4000)[0]  # calibration images are drawn from it by seed
        self._supernet = None

    # -- helpers --

    def phase(self, name: str, work, seconds: float) -> dict:
        """``work()``'s result, cached as job (``name``, None)."""
        return self.cache.run([(name, None)], lambda *_: work(), lambda _: seconds, f"nas: {name}")[0]

    def train_config(self, epochs: int, seed: int):
        from edgeopt import TrainConfig  # lazy: TensorFlow

        return TrainConfig(epochs=epochs, seed=seed, steps_per_epoch=self.plan.steps_per_epoch, **RECIPE)

    def architecture(self, choices):
        from edgeopt.search.nas_space import Architecture  # lazy: TensorFlow

        return Architecture(tuple(choices)).check(self.space)

    def network(self, arch, seed: int):
        from edgeopt import keras  # lazy: TensorFlow
        from edgeopt.search.nas_space import build_network

        keras.utils.set_random_seed(seed)  # initial weights
        return build_network(self.space, arch, INPUT, CLASSES)

    @property
    def supernet(self):
        """The single-path-trained supernet (phase 2; loaded from its checkpoint when it is finished)."""
        if self._supernet is None:
            self.phase("supernet", self._train_supernet, self.plan.seconds()["supernet"])  # trains it, or finds it cached
        if self._supernet is None:
            from edgeopt.search.single_path import train_single_path  # lazy: TensorFlow

            self._supernet = train_single_path(self.space, self.splits, self.supernet_config(), checkpoint_dir=self.files / "single_path")[1]
        return self._supernet

    def supernet_config(self):
        from edgeopt.search.single_path import SinglePathConfig  # lazy: TensorFlow

        return SinglePathConfig(epochs=self.plan.supernet_epochs, steps_per_epoch=self.plan.steps_per_epoch, optimizer="adam", seed=0,
                               share_weights=SHARE_WEIGHTS, **RECIPE)

    def scorer(self):
        from edgeopt.search.evolution import oneshot_scorer  # lazy: TensorFlow

        if not hasattr(self, "_scorer"):
            self._scorer = oneshot_scorer(self.supernet, self.splits)  # the same calibration images for every candidate
        return self._scorer

    # -- phases --

    def table(self) -> dict:
        from edgeopt.search.latency_table import LatencyTableConfig, LiteRTRunner, measure_table  # lazy: TensorFlow
        from edgeopt.search.nas_space import mobilenet_v2_architecture

        path = self.folder / "latency_table.json"
        table = measure_table(self.space, INPUT, CLASSES, path, LatencyTableConfig(**self.plan.table), runner=LiteRTRunner(**RUNNER),
                              models_dir=self.files / "latency_table_parts")  # the table (committed) here, its .tflite parts not
        self.latency_table, self.ms = table, table.cost_table("int8", 1)
        mnv2 = mobilenet_v2_architecture(self.space)
        header = {k: v for k, v in table.to_dict().items() if k not in ("measurements", "space")}
        return {"path": str(path), "header": header, "parts": len(table.parts()), "overhead_ms": table.overhead_ms("int8", 1),
                "limit_ms": table.predict(mnv2, "int8", 1), "fixed_ms": self.ms.fixed, "export_s": table.export_seconds, "timing_s": table.timing_seconds,
                "ops_ms": {b.name: self.ms.blocks[b.name] for b in self.space.blocks()}}

    def _train_supernet(self) -> dict:
        from edgeopt.search.single_path import train_single_path  # lazy: TensorFlow

        t0 = time.perf_counter()
        result, self._supernet = train_single_path(self.space, self.splits, self.supernet_config(), checkpoint_dir=self.files / "single_path")
        return {**result.to_dict(), "seconds": sum(r.seconds for r in result.history), "call_s": time.perf_counter() - t0,
                "config": self.supernet_config().to_dict()}

    def darts(self, limit: float) -> dict:
        from edgeopt.search.darts import DartsConfig, derive_within, search  # lazy: TensorFlow

        config = DartsConfig(**self.plan.darts, cost_target=limit, seed=0)
        result, _ = search(self.space, self.splits, config, checkpoint_dir=self.files / "darts", cost_table=self.ms,
                           initial_weights=self.supernet.state())
        derived = derive_within(self.space, result.probabilities, self.ms, limit)
        return {"config": config.to_dict(), "argmax": list(result.architecture.choices), "argmax_ms": result.cost, "architecture": list(derived.choices),
                "predicted_ms": self.ms.predict(self.space, derived), "probabilities": result.probabilities,
                "history": [vars(r) for r in result.history], "seconds": sum(r.seconds for r in result.history),
                "oneshot_val": self.scorer()(derived)}

    def evolution(self, limit: float) -> dict:
        from edgeopt.search.evolution import EvolutionConfig, evolve  # lazy: TensorFlow

        config = EvolutionConfig(**self.plan.evolution, cost_limit=limit, seed=0)
        result = evolve(self.space, self.scorer(), self.ms, config, storage=self.files / "evolution.journal")
        best = result.best
        return {**result.to_dict(), "config": config.to_dict(), "architecture": list(best.architecture.choices), "predicted_ms": best.cost,
                "oneshot_val": best.score, "distinct": len({c.architecture.choices for c in result.candidates})}

    def candidates(self, count: int, limit: float) -> list:
        """The first ``count`` architectures drawn uniformly (seed :data:`RANDOM_SEED`) whose predicted latency is within ``limit``."""
        import numpy as np

        from edgeopt.search.nas_space import random_architecture  # lazy: TensorFlow

        rng, out = np.random.default_rng(RANDOM_SEED), []
        for _ in range(200_000):
            arch = random_architecture(self.space, rng)
            if self.ms.predict(self.space, arch) <= limit:
                out.append(arch)
                if len(out) == count:
                    return out
        raise SystemExit(f"random search: fewer than {count} of 200,000 random architectures are within {limit:.4f} ms")

    def candidate(self, arch, limit: float) -> dict:
        """One random-search candidate: trained alone (seed 0) for the candidate epochs, validation top-1; then its one-shot score."""
        from edgeopt import evaluate, fit  # lazy: TensorFlow

        t0 = time.perf_counter()
        model = self.network(arch, 0)
        fit(model, reseeded(self.splits, 0), self.train_config(self.plan.candidate_epochs, 0))
        val = evaluate(model, self.splits.val)["top1"]
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        score = self.scorer()(arch)
        return {"architecture": list(arch.choices), "predicted_ms": self.ms.predict(self.space, arch), "val_top1": val, "train_s": train_s,
                "oneshot_val": score, "score_s": time.perf_counter() - t1}

    def random_search(self, budget: float, limit: float) -> list[dict]:
        """Candidates until their training time reaches ``budget`` seconds and there are at least the minimum; each cached."""
        estimate = self.plan.candidate_seconds()
        done, count = [], 0
        while count < self.plan.min_candidates or sum(r["train_s"] for r in done) < budget:
            count += 1
            archs = self.candidates(count, limit)
            done = self.cache.run([(f"random {k}", None) for k in range(count)], lambda v, _: self.candidate(archs[int(v.split()[1])], limit),
                                  lambda _: estimate, f"nas: random search (budget {budget / 60:.0f} min of training)")
        return done

    def retrain(self, key: str, arch, seed: int) -> dict:
        """``arch`` from scratch with ``seed``: validation, then the test split once (Keras, int8)."""
        from edgeopt import evaluate, fit  # lazy: TensorFlow
        from edgeopt.bench import evaluate_tflite, size_of
        from edgeopt.costs import profile
        from edgeopt.export import convert

        t0 = time.perf_counter()
        model = self.network(arch, seed)
        fit(model, reseeded(self.splits, seed), self.train_config(self.plan.retrain_epochs, seed))
        train_s = time.perf_counter() - t0
        data = convert(model, "int8", calibration_images(self.pool, seed, self.plan.calibration), io="int8")
        write_file(self.cache.file(key, seed, ".int8.tflite"), data)
        p = profile(model)
        return {"val_top1": evaluate(model, self.splits.val)["top1"], "keras_top1": evaluate(model, self.splits.test)["top1"],
                "int8_top1": evaluate_tflite(data, self.splits.test).top1, "int8_bytes": size_of(data).size_bytes, "params": p.params, "macs": p.macs,
                "train_s": train_s}

    def latency(self) -> dict:
        """The seed-0 int8 file of every model, timed interleaved with the table's runner (1 thread)."""
        import numpy as np

        from edgeopt.search.latency_table import LiteRTRunner  # lazy: TensorFlow

        runner = LiteRTRunner(**RUNNER)
        files = {key: self.cache.file(key, 0, ".int8.tflite").read_bytes() for key in MODELS}
        rounds = interleave({key: partial(runner, data, 1) for key, data in files.items()}, self.plan.latency_rounds, alternate=True,
                            progress="nas: int8 latency")
        return {"rounds_ms": rounds, "ms": {k: float(np.median(v)) for k, v in rounds.items()}, "timing": runner.describe()["timing"],
                "device": runner.describe()["device"],  # may differ from the table's: the phases can run in different sessions
                "rounds": self.plan.latency_rounds, "threads": 1}

    def measure_all(self) -> dict:
        from edgeopt.search.nas_space import mobilenet_v2_architecture  # lazy: TensorFlow
        from edgeopt.stats import kendall_tau

        est = self.plan.seconds()
        table = self.phase("table", self.table, est["table"])
        if not hasattr(self, "ms"):  # cached: load the table file again
            from edgeopt.search.latency_table import LatencyTable

            self.latency_table = LatencyTable.load(table["path"])
            self.ms = self.latency_table.cost_table("int8", 1)
        limit = table["limit_ms"]
        supernet = self.phase("supernet", self._train_supernet, est["supernet"])
        darts = self.phase("darts", lambda: self.darts(limit), est["darts"])
        evolution = self.phase("evolution", lambda: self.evolution(limit), est["evolution"])
        mnv2 = mobilenet_v2_architecture(self.space)
        reference = self.phase("mobilenet_v2 one-shot", lambda: {"oneshot_val": self.scorer()(mnv2)}, self.plan.s["oneshot_score"])
        budget = supernet["seconds"] + max(darts["seconds"], evolution["seconds"])
        candidates = self.random_search(budget, limit)
        within = _within_budget([c["train_s"] for c in candidates], budget)
        best = max(range(within), key=lambda k: candidates[k]["val_top1"])
        tau, p = _kendall(kendall_tau, [c["oneshot_val"] for c in candidates], [c["val_top1"] for c in candidates])
        archs = {"mobilenet_v2": mnv2, "darts": self.architecture(darts["architecture"]), "evolution": self.architecture(evolution["architecture"]),
                 "random": self.architecture(candidates[best]["architecture"])}
        per_run = self.retrain_seconds()
        def retrain(key: str, seed: int) -> dict:
            return self.retrain(key, archs[key], seed)

        if self.cache.get("latency") is None:  # latency reads the seed-0 files: re-make any a fresh clone lacks
            self.cache.ensure_files([(key, 0, (".int8.tflite",)) for key in MODELS], "nas, latency")
        self.cache.run([(key, 0) for key in MODELS], retrain, lambda _: per_run, "nas: retraining from scratch, seed 0")
        latency = self.phase("latency", self.latency, est["latency"])
        runs = self.cache.run([(key, seed) for seed in self.plan.seeds for key in MODELS], retrain, lambda _: per_run, "nas: retraining, other seeds")
        oneshot = {"mobilenet_v2": reference["oneshot_val"], "darts": darts["oneshot_val"], "evolution": evolution["oneshot_val"],
                   "random": candidates[best]["oneshot_val"]}
        models = [{"key": key, "architecture": list(archs[key].choices), "predicted_ms": self.ms.predict(self.space, archs[key]),
                   "measured_ms": latency["ms"][key], "oneshot_val": oneshot[key]} for key in MODELS]
        return self.collect(table, supernet, darts, evolution, candidates, within, best, tau, p, budget, runs, latency, models)

    def retrain_seconds(self) -> float:
        p = self.plan
        return p.retrain_epochs * p.train_steps * p.s["step"] + p.s["retrain_overhead"]

    def collect(self, table, supernet, darts, evolution, candidates, within, best, tau, p, budget, runs, latency, models) -> dict:
        """What nas.json holds."""
        space, plan = self.space, self.plan
        return {"format": 1, "cmd": "benchmarks/nas.py " + " ".join(sys.argv[1:]), "quick": plan.quick, "cores": os.cpu_count() or 1,
                "test_images": self.splits.sizes["test"], "val_images": self.splits.sizes["val"], "train_images": self.splits.sizes["train"],
                "seeds": plan.seeds,
                "space": {"name": "tiny" if plan.quick else "mobilenet_v2", "width": space.width, "ops": list(space.ops), "blocks": len(space.blocks()),
                          "searchable": sum(b.searchable for b in space.blocks()), "log10_size": math.log10(space.size)},
                "settings": {"recipe": RECIPE, "data": {k: v for k, v in DATA_SETTINGS.items() if k != "name"}, "baseline_epochs": BASELINE_EPOCHS,
                             "retrain_epochs": plan.retrain_epochs, "candidate_epochs": plan.candidate_epochs, "train_steps": plan.train_steps,
                             "supernet_epochs": plan.supernet_epochs, "calibration": plan.calibration, "min_candidates": plan.min_candidates,
                             "latency_rounds": plan.latency_rounds},
                "table": table, "supernet": supernet, "darts": darts, "evolution": evolution,
                "random": {"budget_s": budget, "candidates": candidates, "within_budget": within, "best": best},
                "kendall": {"tau": tau, "p": p, "pairs": len(candidates)},
                "models": models, "runs": [{k: v for k, v in r.items() if k != "variant"} | {"model": r["variant"]} for r in runs],
                "latency": {k: v for k, v in latency.items() if k != "variant"}}


def _within_budget(seconds: list[float], budget: float) -> int:
    """How many of the first candidates fit in ``budget`` seconds of training together (at least 1)."""
    total, n = 0.0, 0
    for s in seconds:
        if total + s > budget and n:
            break
        total, n = total + s, n + 1
    return n


def _kendall(kendall_tau, x, y) -> tuple[float | None, float | None]:
    try:
        return kendall_tau(x, y)
    except ValueError as err:  # a smoke run's untrained candidates can all tie
        print(f"nas: Kendall tau undefined ({err})", flush=True)
        return None, None


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="retraining seeds per model (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke run: the tiny space, a few steps, 2 seeds (minutes); writes "
                    f"{QUICK_OUT}/nas/ and runs/bench_cache/quick/nas/, never the committed files")
    ap.add_argument("--findings-only", action="store_true", help="re-render nas.md, nas.csv, the plot and the findings from the JSON in --out")
    ap.add_argument("--out", type=Path, default=None, help=f"where the JSON and the rendered files go (default {OUT}/, with --quick {QUICK_OUT}/nas/)")
    a = ap.parse_args(argv)
    out = a.out or (QUICK_OUT / "nas" if a.quick else OUT)
    if a.findings_only:
        render(out, plots=True)
        print(f"rendered {out}/nas.md, nas.csv, nas_pareto.png and {FINDINGS} from {out / DATA}", flush=True)
        return
    plan = Plan(a)
    est = plan.seconds()
    print(f"nas: about {_duration(sum(est.values()))} on 2 idle cores with nothing cached ({', '.join(f'{k} {_duration(v)}' for k, v in est.items())}"
          f"{'; --quick settings' if a.quick else '; about twice that while another training shares the cores'})", flush=True)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    run = Run(a, plan)
    data = run.measure_all()
    machine = f"{machine_line()}; 1-minute load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    data = {**data, "machine": machine, "wall_s": time.perf_counter() - t0, "baseline_recipe": BASELINE_RECIPE}
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / DATA, json.dumps(data, indent=1) + "\n")
    render(out, plots=True)
    print(f"wrote {out}/{DATA}, nas.md, nas.csv, nas_pareto.png and {FINDINGS} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
