"""Benchmark: student alone vs distilled (Distiller) vs deep mutual learning on Fashion-MNIST, Keras and int8 .tflite.

Teacher: the well-trained baseline (MobileNetV2 alpha 0.35 at 28x28x3, >= 93%, recipes/fmnist_mobilenet_v2.toml;
benchmarks/_common.py loads it and its data), frozen. Student: MobileNetV1 alpha 0.25 at 28x28x3 trained as
recipes/quickstart.toml (4 epochs of all 57,000 training images, Adam 0.005 with a 3% warm-up and a cosine decay,
weight decay 0.005, label smoothing 0.1): alone, distilled from the teacher, and two students by deep mutual
learning, each with ``--seeds`` seeds (seed = initial weights and data order). The distillation setting (T, alpha)
is chosen on the validation split from the seed-0 students of ``SWEEP``; the test split is read once per reported
model (Keras and its int8 .tflite). The full run refuses a teacher whose validation top-1 is under
``MIN_TEACHER_VAL``: the teacher must be the stronger model.

Each (variant, seed) is cached in runs/bench_cache/distillation/<settings>/runs.json as it finishes (a killed run
continues); the run writes the raw per-seed results to the committed benchmarks/distillation.json and renders
distillation.md, distillation.csv (summary) and distillation_findings.md (benchmarks/_distillation_report.py, no
TensorFlow).

Full run, about 2 h on 2 idle cores (3 settings + 3 x alone + 2 x distilled trainings of 1,784 steps at about
0.25 s a step, 3 mutual pairs at about 0.5 s, test passes), about twice that while another training shares the
cores; it prints its own estimate first:
    nice -n 19 env PYTHONPATH=. python benchmarks/distillation.py
Smoke run (6 min at nice 19 next to a training; writes /tmp/edgeopt-bench-quick/distillation/ and runs/bench_cache/quick/):
    nice -n 19 env PYTHONPATH=. python benchmarks/distillation.py --quick
    PYTHONPATH=. python benchmarks/distillation.py --findings-only   (re-render from the committed data)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (CACHE_ROOT, QUICK_OUT, SeedRuns, baseline_args, baseline_splits, baseline_used, check_baseline, file_digest,
                                load_baseline, training_arrays, write_file)
from benchmarks._distillation_report import (DATA, FINDINGS, FINDINGS_CONSTANTS, findings_data,  # noqa: F401  (tests/test_findings.py reads
                                             findings_markdown, render, report_markdown)  # the renderer here)

OUT = Path(__file__).parent
STUDENT = ("mobilenet_v1", {"alpha": 0.25})
TRAIN = {"epochs": 4, "learning_rate": 0.005, "warmup_fraction": 0.03, "weight_decay": 0.005, "label_smoothing": 0.1}  # quickstart's
BATCH = 128
SWEEP = ((4.0, 0.1), (2.0, 0.1), (4.0, 0.5))  # (temperature, alpha): alpha weights the hard-label loss
MUTUAL_TEMPERATURE = 1.0
CALIBRATION = 200  # int8 calibration images (the first training images)
MIN_TEACHER_VAL = 0.92  # the quickstart student alone reaches about 91.3% test: a teacher must be above it
SECONDS_PER_STEP = {"alone": 0.25, "distilled": 0.27, "mutual": 0.5}  # MobileNetV1 0.25, 28x28, batch 128, 2 idle cores
SECONDS_PER_RUN = 60  # validation, Keras and int8 test passes, conversion
QUICK = {"seeds": 1, "epochs": 1, "sweep": SWEEP[:2]}


def student_model(seed: int):
    """A fresh student with ``seed``'s initial weights, ending in logits (the Distiller and the losses take logits)."""
    import edgeopt  # lazy: rendering the findings needs no TensorFlow

    edgeopt.keras.utils.set_random_seed(seed)
    return edgeopt.create(STUDENT[0], input_shape=(28, 28, 3), classes=10, classifier_activation=None, **STUDENT[1])


class Run:
    """One distillation run: teacher, training arrays (and the teacher's logits for them), settings, the cache."""

    def __init__(self, args):
        from edgeopt.train import TrainConfig  # lazy: as above

        self.args, self.quick = args, args.quick
        self.seeds = list(range(QUICK["seeds"] if args.quick else args.seeds))
        self.sweep = QUICK["sweep"] if args.quick else SWEEP
        self.config = TrainConfig(**{**TRAIN, "epochs": QUICK["epochs"] if args.quick else TRAIN["epochs"]})
        self.splits = baseline_splits(args.quick, BATCH)
        self.teacher = load_baseline(args.baseline, args.quick, self.splits)
        self.x, self.y = training_arrays(self.splits)
        self.steps = self.config.epochs * int(np.ceil(len(self.x) / BATCH))
        self._logits = None
        self.baseline_file = baseline_used(args.baseline)
        digest = file_digest(self.baseline_file)
        self.settings = {"baseline": digest, "student": STUDENT, "train": self.config.to_dict(), "batch": BATCH, "calibration": CALIBRATION,
                         "mutual_temperature": MUTUAL_TEMPERATURE, "train_images": len(self.x), "quick": self.quick}
        self.cache = SeedRuns(CACHE_ROOT / ("quick/distillation" if self.quick else "distillation"), self.settings)

    def seconds(self, variant: str) -> float:
        kind = "distilled" if variant.startswith(("distilled", "sweep")) else variant
        return SECONDS_PER_RUN + self.steps * SECONDS_PER_STEP.get(kind, 0)

    def teacher_logits(self) -> np.ndarray:
        """The frozen teacher's logits for every training image, computed once (exact: inference mode, no augmentation)."""
        if self._logits is None:
            from edgeopt.compress.distill import Distiller  # lazy: as above

            harness = Distiller(student_model(0), self.teacher)
            self._logits = np.concatenate([harness.teacher_logits(self.x[i:i + 512]).numpy() for i in range(0, len(self.x), 512)])
        return self._logits

    def batches(self, seed: int, with_logits: bool = False):
        """The training images in ``seed``'s order, batched; with the teacher's logits as a second target."""
        from edgeopt import tf  # lazy: as above

        targets = {"labels": self.y, "teacher_logits": self.teacher_logits()} if with_logits else self.y
        return tf.data.Dataset.from_tensor_slices((self.x, targets)).shuffle(len(self.x), seed=seed).batch(BATCH).prefetch(2)

    def optimizer(self):
        from edgeopt.train import make_optimizer  # lazy: as above

        return make_optimizer(self.config, self.steps)

    def test(self, model, **extra) -> dict:
        """Validation top-1, then the model and its int8 .tflite read once on the test split."""
        from edgeopt import evaluate  # lazy: as above
        from edgeopt.bench import evaluate_tflite, size_of
        from edgeopt.export import convert

        data = convert(model, "int8", self.x[:CALIBRATION])
        return {"val_top1": evaluate(model, self.splits.val)["top1"], "keras_top1": evaluate(model, self.splits.test)["top1"],
                "int8_top1": evaluate_tflite(data, self.splits.test).top1, "int8_bytes": size_of(data).size_bytes, **extra}

    def _fit(self, harness, data, desc: str) -> float:
        from edgeopt.progress import TrainingProgress  # lazy: as above

        t0 = time.perf_counter()
        harness.fit(data, epochs=self.config.epochs, verbose=0, callbacks=[TrainingProgress(desc)])
        return time.perf_counter() - t0

    def alone(self, seed: int) -> dict:
        from edgeopt.train import loss_for  # lazy: as above

        student = student_model(seed)
        student.compile(self.optimizer(), loss_for(student, self.config.label_smoothing), metrics=["accuracy"])
        seconds = self._fit(student, self.batches(seed), f"alone, seed {seed}")
        return self.test(student, train_s=seconds)

    def distill(self, seed: int, temperature: float, alpha: float):
        """A student distilled from the teacher with ``seed``; returns it and its training seconds."""
        from edgeopt.compress.distill import Distiller  # lazy: as above
        from edgeopt.train import loss_for

        student = student_model(seed)
        harness = Distiller(student, self.teacher)
        harness.compile(self.optimizer(), metrics=["accuracy"], student_loss_fn=loss_for(student, self.config.label_smoothing), alpha=alpha,
                        temperature=temperature)
        return student, self._fit(harness, self.batches(seed, with_logits=True), f"distilled T={temperature:g} a={alpha:g}, seed {seed}")

    def setting(self, variant: str, seed: int) -> dict:
        """One sweep point on the seed-0 student: validation top-1 only (the test split is not read); weights kept."""
        from edgeopt import evaluate  # lazy: as above

        t, a = _setting(variant)
        student, seconds = self.distill(seed, t, a)
        student.save_weights(str(self.cache.file(variant, seed, ".weights.h5")))
        return {"temperature": t, "alpha": a, "val_top1": evaluate(student, self.splits.val)["top1"], "train_s": seconds}

    def distilled(self, seed: int, chosen: dict) -> dict:
        """The chosen setting with ``seed``; seed 0 reuses its sweep student."""
        t, a = chosen["temperature"], chosen["alpha"]
        name = _sweep_name(t, a)
        if seed == 0 and self.cache.get(name, 0):
            student = student_model(0)
            student.load_weights(str(self.cache.file(name, 0, ".weights.h5")))
            return self.test(student, temperature=t, alpha=a, train_s=self.cache.get(name, 0)["train_s"], from_sweep=True)
        student, seconds = self.distill(seed, t, a)
        return self.test(student, temperature=t, alpha=a, train_s=seconds)

    def mutual(self, seed: int) -> dict:
        from edgeopt.compress.mutual import MutualLearner  # lazy: as above

        pair = [student_model(seed), student_model(seed + 100)]
        learner = MutualLearner(pair)
        learner.compile(self.optimizer(), temperature=MUTUAL_TEMPERATURE)
        seconds = self._fit(learner, self.batches(seed), f"mutual, seed {seed}")
        return {"students": [self.test(s, student=k, temperature=MUTUAL_TEMPERATURE, train_s=seconds) for k, s in enumerate(pair)]}

    def teacher_check(self, *_) -> dict:
        from edgeopt import evaluate  # lazy: as above

        return {"val_top1": evaluate(self.teacher, self.splits.val)["top1"], "keras_top1": evaluate(self.teacher, self.splits.test)["top1"]}

    def measure_all(self) -> dict:
        """Teacher, sweep (seed 0, validation), then alone / distilled / mutual on every seed: what distillation.json holds."""
        sweep_jobs = [(_sweep_name(t, a), 0) for t, a in self.sweep]
        jobs = [(v, s) for s in self.seeds for v in ("alone", "distilled", "mutual")]
        left = [self.seconds(v) for v, s in sweep_jobs + jobs if self.cache.get(v, s) is None and not (v == "distilled" and s == 0)]
        print(f"distillation: {len(left)} trainings to do, about {sum(left) / 3600:.1f} h on 2 idle cores", flush=True)
        teacher = self.cache.run([("teacher", None)], self.teacher_check, lambda _: SECONDS_PER_RUN, "distillation: teacher")[0]
        if teacher["val_top1"] < MIN_TEACHER_VAL and not self.quick:
            raise SystemExit(f"teacher {self.args.baseline}: validation top-1 {teacher['val_top1']:.4f} is under {MIN_TEACHER_VAL}; the "
                             "teacher must be stronger than the student (the quickstart MobileNetV1 0.25 reaches about 0.913): use the "
                             "well-trained baseline")
        sweep = self.cache.run(sweep_jobs, self.setting, self.seconds, "distillation: (T, alpha) on validation")
        best = max(sweep, key=lambda r: r["val_top1"])
        chosen = {"temperature": best["temperature"], "alpha": best["alpha"]}
        work = {"alone": self.alone, "distilled": lambda s: self.distilled(s, chosen), "mutual": self.mutual}
        results = self.cache.run(jobs, lambda v, s: work[v](s), self.seconds, "distillation: variants x seeds")
        runs = []
        for r in results:
            for part in r.get("students", [r]):
                runs.append({"variant": r["variant"], "seed": r["seed"], **{k: v for k, v in part.items() if k != "students"}})
        return {"format": 2, "cmd": "benchmarks/distillation.py " + " ".join(sys.argv[1:]), "test_images": self.splits.sizes["test"],
                "seeds": self.seeds, "student": f"{STUDENT[0].replace('mobilenet_v', 'MobileNetV')} {STUDENT[1]['alpha']}",
                "settings": {**{k: v for k, v in self.config.to_dict().items() if k in TRAIN}, "batch": BATCH, "calibration": CALIBRATION,
                             "mutual_temperature": MUTUAL_TEMPERATURE, "train_images": len(self.x), "val_images": self.splits.sizes["val"]},
                "teacher": {"file": str(self.baseline_file), **{k: teacher[k] for k in ("val_top1", "keras_top1")}},
                "sweep": [{k: r[k] for k in ("temperature", "alpha", "val_top1", "train_s")} for r in sweep], "chosen": chosen, "runs": runs}


def _sweep_name(temperature: float, alpha: float) -> str:
    return f"sweep T={temperature:g} a={alpha:g}"


def _setting(name: str) -> tuple[float, float]:
    t, a = name.removeprefix("sweep ").split()
    return float(t.removeprefix("T=")), float(a.removeprefix("a="))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    baseline_args(ap)
    ap.add_argument("--findings-only", action="store_true", help="re-render distillation.md and the findings from the committed data")
    args = ap.parse_args(argv)
    if args.findings_only:
        render(OUT)
        return
    check_baseline(args.baseline, args.quick)
    from benchmarks._common import machine_line

    out = QUICK_OUT / "distillation" if args.quick else OUT
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = Run(args).measure_all()
    data = {**data, "machine": f"{machine_line()} (shared with other jobs)", "wall_s": time.perf_counter() - t0}
    write_file(out / DATA, json.dumps(data, indent=1) + "\n")
    render(out)
    print(f"wrote {out}/{DATA}, distillation.md, distillation.csv, {FINDINGS}", flush=True)


if __name__ == "__main__":
    main()
