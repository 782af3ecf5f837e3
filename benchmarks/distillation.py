"""Benchmark: student alone vs distilled (Distiller) vs deep mutual learning on Fashion-MNIST, Keras and int8 .tflite.

Same student architecture, data subset, epochs, batch and optimizer for every variant; the teacher is trained
once on the same subset and cached in runs/bench_cache/. Writes benchmarks/distillation.md and .csv.
int8: ``edgeopt.export.convert`` (full integer), accuracy and size with ``edgeopt.bench``.

    PYTHONPATH=. python benchmarks/distillation.py
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

import edgeopt
from benchmarks._common import machine_line, md_table, write_csv, write_file
from edgeopt import keras, tf
from edgeopt.bench import evaluate_tflite, size_of
from edgeopt.compress.distill import Distiller
from edgeopt.compress.mutual import MutualLearner
from edgeopt.export import convert
from edgeopt.train import loss_for

OUT = Path(__file__).parent
CACHE = Path("runs/bench_cache")
TRAIN, TEST, SIZE, BATCH, LR = 8000, 2000, 32, 128, 2e-3
EPOCHS, TEACHER_EPOCHS = 3, 5
TEACHER = ("mobilenet_v2", {"alpha": 1.0})
STUDENT = ("mobilenet_v1", {"alpha": 0.25})
SEEDS = (0, 1)
MAIN_KD = (4.0, 0.1)  # (temperature, alpha) run on every seed
SWEEP = ((2.0, 0.1), (4.0, 0.5))  # extra settings, seed 0 only


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def optimizer(steps):
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps))


def create(spec, seed):
    keras.utils.set_random_seed(seed)
    return edgeopt.create(spec[0], input_shape=(SIZE, SIZE, 3), classes=10, **spec[1])


def batches(x, y, seed, extra=None):
    targets = y if extra is None else {"labels": y, "teacher_logits": extra}
    return tf.data.Dataset.from_tensor_slices((x, targets)).shuffle(len(x), seed=seed).batch(BATCH).prefetch(2)


def keras_top1(model, x, y):
    return float((model.predict(x, batch_size=512, verbose=0).argmax(-1) == y).mean())


def int8_top1(model, x_cal, x, y):
    """Top-1 of the full-int8 .tflite of ``model`` (calibrated on ``x_cal``) on (``x``, ``y``), and its size in bytes."""
    data = convert(model, "int8", x_cal)
    return evaluate_tflite(data, [(x, y)]).top1, size_of(data).size_bytes


def main(seeds=SEEDS, sweep=SWEEP, tag=""):
    t_start = time.perf_counter()
    splits = edgeopt.load_dataset("fashion_mnist", image_size=SIZE, channels=3, batch_size=BATCH, seed=0, limit_train=TRAIN, limit_test=TEST)
    x_tr, y_tr = splits.arrays("train")
    x_te, y_te = splits.arrays("test")
    x_cal = x_tr[:200]
    steps = EPOCHS * int(np.ceil(len(x_tr) / BATCH))

    CACHE.mkdir(parents=True, exist_ok=True)
    t_path = CACHE / f"teacher_{TEACHER[0]}_{TEACHER[1]['alpha']}_{TRAIN}_{TEACHER_EPOCHS}.keras"
    if t_path.exists():
        teacher = keras.models.load_model(t_path)
        log(f"teacher loaded from {t_path}")
    else:
        teacher = create(TEACHER, 123)
        teacher.compile(optimizer(TEACHER_EPOCHS * int(np.ceil(len(x_tr) / BATCH))), loss_for(teacher), metrics=["accuracy"])
        teacher.fit(batches(x_tr, y_tr, 123), epochs=TEACHER_EPOCHS, verbose=2)
        teacher.save(t_path)
    teacher_top1 = keras_top1(teacher, x_te, y_te)
    log(f"teacher top1 {teacher_top1:.4f}")
    d = Distiller(create(STUDENT, 0), teacher)
    t_logits = np.concatenate([d.teacher_logits(x_tr[i : i + 512]).numpy() for i in range(0, len(x_tr), 512)])

    rows = []

    def record(variant, seed, temperature, alpha, model, seconds, note=""):
        top1 = keras_top1(model, x_te, y_te)
        i8, size = int8_top1(model, x_cal, x_te, y_te)
        rows.append(dict(variant=variant, seed=seed, temperature=temperature, alpha=alpha, keras_top1=round(top1, 4), int8_top1=round(i8, 4), int8_bytes=size, train_s=round(seconds, 1), note=note))
        log(f"{variant} seed={seed} T={temperature} alpha={alpha}: keras {top1:.4f} int8 {i8:.4f} ({seconds:.0f} s) {note}")
        write(rows, teacher_top1, time.perf_counter() - t_start, tag)

    def run_kd(seed, temperature, alpha):
        student = create(STUDENT, seed)
        dist = Distiller(student, teacher)
        dist.compile(optimizer(steps), metrics=["accuracy"], alpha=alpha, temperature=temperature)
        t0 = time.perf_counter()
        dist.fit(batches(x_tr, y_tr, seed, t_logits), epochs=EPOCHS, verbose=2)
        record("distilled", seed, temperature, alpha, student, time.perf_counter() - t0)

    for seed in seeds:
        student = create(STUDENT, seed)
        student.compile(optimizer(steps), loss_for(student), metrics=["accuracy"])
        t0 = time.perf_counter()
        student.fit(batches(x_tr, y_tr, seed), epochs=EPOCHS, verbose=2)
        record("alone", seed, "", "", student, time.perf_counter() - t0)
        run_kd(seed, *MAIN_KD)
        pair = [create(STUDENT, seed), create(STUDENT, seed + 100)]
        learner = MutualLearner(pair)
        learner.compile(optimizer(steps), temperature=1.0)
        t0 = time.perf_counter()
        learner.fit(batches(x_tr, y_tr, seed), epochs=EPOCHS, verbose=2)
        seconds = time.perf_counter() - t0
        record("mutual", seed, 1.0, "", pair[0], seconds, "student 0 of 2 (seeds %d, %d)" % (seed, seed + 100))
        record("mutual", seed, 1.0, "", pair[1], seconds, "student 1 of 2")
    for temperature, alpha in sweep:
        run_kd(seeds[0], temperature, alpha)
    log(f"done in {time.perf_counter() - t_start:.0f} s")


def write(rows, teacher_top1, seconds, tag=""):
    rows = [{**r, "teacher_top1": round(teacher_top1, 4)} for r in rows]
    write_csv(OUT / f"distillation{tag}.csv", rows)
    if not tag:
        write_markdown(rows, teacher_top1, seconds)


def merge():
    """Rebuild distillation.md/.csv from the per-process CSVs (a run split over processes, e.g. --seeds 1 --tag _seed1)."""
    rows = []
    for path in sorted(OUT.glob("distillation*.csv")):
        with open(path) as f:
            for r in csv.DictReader(f):
                r = {k: (_num(v) if k not in ("variant", "note") else v) for k, v in r.items()}
                rows.append(r)
    rows = list({(r["variant"], r["seed"], r["temperature"], r["alpha"], r["note"]): r for r in rows}.values())
    rows.sort(key=lambda r: (r["seed"], ["alone", "distilled", "mutual"].index(r["variant"])))
    teacher_top1 = max(float(r.get("teacher_top1") or 0) for r in rows)
    seconds = max(float(r["train_s"]) for r in rows)
    write(rows, teacher_top1, seconds)


def _num(v):
    if v == "":
        return ""
    try:
        return int(v)
    except ValueError:
        return float(v)


def write_markdown(rows, teacher_top1, seconds):

    def stats(variant, key, temperature=None, alpha=None, first_mutual_only=False):
        vals = [r[key] for r in rows if r["variant"] == variant and (temperature is None or (r["temperature"], r["alpha"]) == (temperature, alpha)) and not (first_mutual_only and "student 1" in r["note"])]
        vals = [r for r in vals]
        return (f"{100 * np.mean(vals):.2f} ± {100 * np.std(vals):.2f} (n={len(vals)})") if vals else "-"

    lines = [
        "# Knowledge distillation and deep mutual learning on Fashion-MNIST",
        "",
        "Command: `PYTHONPATH=. python benchmarks/distillation.py` (one process, all seeds and settings; train_s is per-run wall time). "
        f"Machine: {machine_line()}, shared with other jobs (load average 2-6 during the run, so train_s is only indicative).",
        "",
        f"Data: Fashion-MNIST, first {TRAIN} training images (after the seed-0 validation split), {TEST} test images, "
        f"resized to {SIZE}x{SIZE}x3, pixels to [-1, 1], no augmentation. Every student variant: {EPOCHS} epochs, batch {BATCH}, "
        f"Adam {LR} with cosine decay. Teacher: {TEACHER[0]} {TEACHER[1]} trained {TEACHER_EPOCHS} epochs on the same subset "
        f"(test top-1 {100 * teacher_top1:.2f} %). Student: {STUDENT[0]} {STUDENT[1]}. The Distiller uses the teacher's "
        "logits precomputed once per training image (exact: the frozen teacher runs in inference mode, no augmentation). "
        "Mutual learning: two students of the same architecture (different initialisations) trained together, T = 1, weight 1. "
        "int8: full-integer .tflite (int8 input/output, 200 calibration images) run on the LiteRT interpreter over the same test images.",
        "",
        "## Summary (top-1 %, mean ± std over seeds)",
        "",
    ]
    summary = [["student alone", "-", "-", stats("alone", "keras_top1"), stats("alone", "int8_top1")]]
    summary += [["distilled", t, a, stats("distilled", "keras_top1", t, a), stats("distilled", "int8_top1", t, a)] for t, a in (MAIN_KD, *SWEEP)]
    summary += [["mutual, student 0", 1, "-", stats("mutual", "keras_top1", first_mutual_only=True), stats("mutual", "int8_top1", first_mutual_only=True)],
                ["mutual, both students", 1, "-", stats("mutual", "keras_top1"), stats("mutual", "int8_top1")]]
    lines += md_table(["variant", "T", "alpha", "Keras top-1", "int8 top-1"], summary)
    lines += ["", "## All runs", "", *md_table(list(rows[0]), (r.values() for r in rows))]
    notes = OUT / "distillation_findings.md"  # hand-written reading of the numbers
    write_file(OUT / "distillation.md", "\n".join(lines) + "\n" + ("\n" + notes.read_text() if notes.exists() else ""))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    ap.add_argument("--no-sweep", action="store_true", help="skip the extra (T, alpha) settings")
    ap.add_argument("--tag", default="", help="write distillation{TAG}.csv only (for a run split over processes)")
    ap.add_argument("--merge", action="store_true", help="merge distillation*.csv into distillation.md/.csv")
    args = ap.parse_args()
    sys.exit(merge() if args.merge else main(tuple(args.seeds), () if args.no_sweep else SWEEP, args.tag))
