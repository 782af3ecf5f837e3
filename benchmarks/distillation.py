"""Benchmark: student alone vs distilled (Distiller) vs deep mutual learning on Fashion-MNIST, Keras and int8 .tflite.

Same student architecture, data subset, epochs, batch and optimizer for every variant; the teacher is trained
once on the same subset and cached in runs/bench_cache/. Writes benchmarks/distillation.md and .csv.
int8: ``edgeopt.export.convert`` (full integer), accuracy and size with ``edgeopt.bench``.
The findings (distillation_findings.md, also appended to distillation.md) are ``findings_markdown`` of the rows,
every number formatted from them; ``--findings-only`` re-renders both from the committed distillation.csv.
TensorFlow is imported only by the functions that train and measure.

    PYTHONPATH=. python benchmarks/distillation.py
    PYTHONPATH=. python benchmarks/distillation.py --findings-only
"""
from __future__ import annotations

import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import difference_noise, md_table, mean_std, sampling_interval, verdict, wrap, write_csv, write_file

OUT = Path(__file__).parent
CACHE = Path("runs/bench_cache")
TRAIN, TEST, SIZE, BATCH, LR = 8000, 2000, 32, 128, 2e-3
EPOCHS, TEACHER_EPOCHS = 3, 5
TEACHER = ("mobilenet_v2", {"alpha": 1.0})
STUDENT = ("mobilenet_v1", {"alpha": 0.25})
SEEDS = (0, 1)
MAIN_KD = (4.0, 0.1)  # (temperature, alpha) run on every seed
SWEEP = ((2.0, 0.1), (4.0, 0.5))  # extra settings, seed 0 only
CALIBRATION = 200  # int8 calibration images
GOAL = 0.5  # points the distilled student should gain over the student alone
FINDINGS = "distillation_findings.md"
# numbers in the findings that are not results: the goal, the run's settings, the architectures' widths, the
# schedule of the paper the mutual-learning bullet cites, the 95% of the intervals
FINDINGS_CONSTANTS = frozenset({f"{GOAL:g}", f"{TRAIN:,}", f"{TEST:,}", str(CALIBRATION), f"{TEACHER[1]['alpha']}",
                                f"{STUDENT[1]['alpha']}", "200", "95"})


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def optimizer(steps):
    from edgeopt import keras  # lazy: rendering the findings needs no TensorFlow

    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps))


def create(spec, seed):
    import edgeopt
    from edgeopt import keras  # lazy: as above

    keras.utils.set_random_seed(seed)
    return edgeopt.create(spec[0], input_shape=(SIZE, SIZE, 3), classes=10, **spec[1])


def batches(x, y, seed, extra=None):
    from edgeopt import tf  # lazy: as above

    targets = y if extra is None else {"labels": y, "teacher_logits": extra}
    return tf.data.Dataset.from_tensor_slices((x, targets)).shuffle(len(x), seed=seed).batch(BATCH).prefetch(2)


def keras_top1(model, x, y):
    return float((model.predict(x, batch_size=512, verbose=0).argmax(-1) == y).mean())


def int8_top1(model, x_cal, x, y):
    """Top-1 of the full-int8 .tflite of ``model`` (calibrated on ``x_cal``) on (``x``, ``y``), and its size in bytes."""
    from edgeopt.bench import evaluate_tflite, size_of  # lazy: as above
    from edgeopt.export import convert

    data = convert(model, "int8", x_cal)
    return evaluate_tflite(data, [(x, y)]).top1, size_of(data).size_bytes


def main(seeds=SEEDS, sweep=SWEEP, tag=""):
    import edgeopt  # lazy: as above
    from benchmarks._common import machine_line
    from edgeopt import keras
    from edgeopt.compress.distill import Distiller
    from edgeopt.compress.mutual import MutualLearner
    from edgeopt.train import loss_for

    machine = machine_line()
    t_start = time.perf_counter()
    splits = edgeopt.load_dataset("fashion_mnist", image_size=SIZE, channels=3, batch_size=BATCH, seed=0, limit_train=TRAIN, limit_test=TEST)
    x_tr, y_tr = splits.arrays("train")
    x_te, y_te = splits.arrays("test")
    x_cal = x_tr[:CALIBRATION]
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
        write(rows, teacher_top1, machine, tag)

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


def write(rows, teacher_top1, machine, tag=""):
    rows = [{**r, "teacher_top1": round(teacher_top1, 4)} for r in rows]
    write_csv(OUT / f"distillation{tag}.csv", rows)
    if not tag:
        write_markdown(rows, teacher_top1, machine)


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
    write(rows, teacher_top1, _machine(OUT))


def _num(v):
    if v == "":
        return ""
    try:
        return int(v)
    except ValueError:
        return float(v)


def _stats(rows, key) -> str:
    if not rows:
        return "-"
    mean, std = mean_std([r[key] for r in rows])
    return f"{100 * mean:.2f} ± {100 * std:.2f} (n={len(rows)})"


def _select(rows, variant, setting=None, first_mutual_only=False):
    """The rows of ``variant`` (with ``setting`` = (temperature, alpha) when given; mutual: optionally student 0 only)."""
    return [r for r in rows if r["variant"] == variant and (setting is None or (r["temperature"], r["alpha"]) == setting)
            and not (first_mutual_only and "student 1" in r["note"])]


def _settings(rows) -> tuple[tuple, list[tuple]]:
    """The distillation settings (temperature, alpha): the one run on every seed, and the others (the sweep), in run order."""
    seeds = {r["seed"] for r in rows}
    settings = list(dict.fromkeys((r["temperature"], r["alpha"]) for r in rows if r["variant"] == "distilled"))
    main = next((s for s in settings if {r["seed"] for r in _select(rows, "distilled", s)} == seeds), None)
    return main, [s for s in settings if s != main]


def _machine(folder: Path) -> str:
    """The machine line of the committed distillation.md (the run that measured the committed rows)."""
    return re.search(r"Machine: (.*?), shared with other jobs", (folder / "distillation.md").read_text())[1]


def findings_data(folder: Path) -> dict:
    """The committed rows (distillation.csv, numbers typed) and the machine that measured them."""
    with open(folder / "distillation.csv") as f:
        rows = [{k: (_num(v) if k not in ("variant", "note") else v) for k, v in r.items()} for r in csv.DictReader(f)]
    return {"rows": rows, "machine": _machine(folder)}


def findings_markdown(data: dict) -> str:
    """distillation_findings.md from the rows: distillation and mutual learning against the student alone (gain and
    its noise over seeds and test sampling), the (T, alpha) sweep, int8 against Keras, the scale of the runs."""
    rows = data["rows"]
    main, sweep = _settings(rows)
    alone, kd = _select(rows, "alone"), _select(rows, "distilled", main)
    mutual = _select(rows, "mutual")
    if not (main and alone and mutual and {r["seed"] for r in alone} == {r["seed"] for r in rows}):
        return "## Findings\n\n* Not rendered: the run has not finished every variant on every seed yet.\n"
    pct = lambda v: f"{100 * v:.2f}"
    mean = lambda rs, k: mean_std([r[k] for r in rs])[0]

    def ms(rs, k):
        m, sd = mean_std([r[k] for r in rs])
        return f"{100 * m:.2f} ± {100 * sd:.2f}"

    gain = mean(kd, "keras_top1") - mean(alone, "keras_top1")
    noise = difference_noise([r["keras_top1"] for r in kd], [r["keras_top1"] for r in alone], TEST)
    per_seed = [r["keras_top1"] - next(a for a in alone if a["seed"] == r["seed"])["keras_top1"] for r in kd]
    gain_int8 = mean(kd, "int8_top1") - mean(alone, "int8_top1")
    goal = verdict(gain - GOAL / 100, noise)
    goal_text = {"met": "met beyond that noise", "missed": "missed beyond that noise",
                 "within noise": f"the mean gain is {'above' if gain >= GOAL / 100 else 'below'} it, but within that noise"}[goal]
    seeds = len({r["seed"] for r in rows})
    t, a = main
    head = {"met": f"Distillation beats the student alone by {100 * gain:+.2f} points",
            "missed": f"Distillation loses {100 * -gain:.2f} points against the student alone",
            "within noise": f"Distillation is {100 * abs(gain):.2f} points {'above' if gain >= 0 else 'below'} the student alone, "
                            "within noise"}[verdict(gain, noise)]
    out = wrap(f"**{head}** (Keras "
               f"{ms(kd, 'keras_top1')} vs {ms(alone, 'keras_top1')}, mean ± sample std over {seeds} seeds; int8 {pct(mean(kd, 'int8_top1'))} vs "
               f"{pct(mean(alone, 'int8_top1'))}, {100 * gain_int8:+.2f} points) with T = {t:g}, alpha = {a:g} (alpha weights the hard-label "
               f"cross-entropy); per seed {' and '.join(f'{100 * g:+.2f}' for g in per_seed)} points Keras. With {seeds} seeds and {TEST:,} test "
               f"images the noise on that difference is ±{100 * noise:.2f} points (the seeds' 95% interval and the test-sampling interval "
               f"in quadrature, as transfer.md computes it). The goal was at least +{GOAL:g} point: {goal_text}"
               + (f"; {'each seed is' if all(g >= GOAL / 100 for g in per_seed) else 'not every seed is'} above it." if goal == "within noise" else "."),
               "* ")
    seed0 = rows[0]["seed"]
    alone0 = next(r for r in alone if r["seed"] == seed0)
    tried = [(s, next(r for r in _select(rows, "distilled", s) if r["seed"] == seed0)) for s in (main, *sweep)]
    spread = max(r["keras_top1"] for _, r in tried) - min(r["keras_top1"] for _, r in tried)
    interval = sampling_interval(alone0["keras_top1"], TEST)
    above = all(r["keras_top1"] > alone0["keras_top1"] and r["int8_top1"] > alone0["int8_top1"] for _, r in tried)
    out += wrap(f"Temperatures and alphas tried (seed {seed0} only, Keras / int8): "
                + "; ".join(f"T={s[0]:g} a={s[1]:g} {pct(r['keras_top1'])} / {pct(r['int8_top1'])}" for s, r in tried)
                + f"; {'all above' if above else 'not all above'} that seed's student alone ({pct(alone0['keras_top1'])} / {pct(alone0['int8_top1'])}). "
                f"The settings differ by {100 * spread:.2f} point at most (Keras), "
                + (f"inside one accuracy's ±{100 * interval:.2f}-point test-sampling interval: with one seed that is noise."
                   if spread <= interval else "more than one accuracy's test-sampling interval, though with one seed."), "* ")
    m_gain = mean(mutual, "keras_top1") - mean(alone, "keras_top1")
    m_noise = difference_noise([r["keras_top1"] for r in mutual], [r["keras_top1"] for r in alone], TEST)
    m_verdict = verdict(m_gain, m_noise)
    head = {"met": "Deep mutual learning helped here", "missed": "Deep mutual learning hurt here",
            "within noise": "Deep mutual learning did not help here"}[m_verdict]
    out += wrap(f"**{head}**: two {STUDENT[0].replace('mobilenet_v', 'MobileNetV')} {STUDENT[1]['alpha']} students trained together "
                f"(T = {mutual[0]['temperature']:g}, KL weight 1) reached {ms(mutual, 'keras_top1')} ({len(mutual)} students over {seeds} seeds) "
                f"against {ms(alone, 'keras_top1')} alone, a {100 * m_gain:+.2f} point difference against ±{100 * m_noise:.2f} points of "
                f"noise ({m_verdict}). Zhang et al. report gains with longer schedules (200 epochs on CIFAR); with {EPOCHS} epochs on "
                f"{TRAIN:,} images, matching a peer that is as untrained as oneself mostly acts as label smoothing toward a weak target. "
                "A stronger peer (a larger second model) or more epochs would be the next things to try.", "* ")
    gaps = [abs(r["int8_top1"] - r["keras_top1"]) for r in rows]
    worst = rows[int(np.argmax(gaps))]
    w_interval = sampling_interval(worst["keras_top1"], TEST)
    out += wrap(f"int8 follows Keras within {100 * max(gaps):.2f} point for every run (full-integer PTQ, {CALIBRATION} calibration images; "
                f"median gap {100 * float(np.median(gaps)):.2f}); the largest ({worst['variant']}, seed {worst['seed']}: "
                f"{pct(worst['keras_top1'])} Keras, {pct(worst['int8_top1'])} int8) is "
                f"{'inside' if max(gaps) <= w_interval else 'outside'} one accuracy's ±{100 * w_interval:.2f}-point test-sampling interval.", "* ")
    trainings = [r for r in rows if "student 1" not in r["note"]]  # a mutual pair trains once
    out += wrap(f"Scale: {TRAIN:,} training images, {EPOCHS} epochs, {TEST:,} test images: the {len(trainings)} student trainings took "
                f"{sum(r['train_s'] for r in trainings) / 60:.0f} minutes in all (train_s) on {data['machine']}, shared with other jobs. The "
                f"absolute accuracies are therefore well below what full training reaches; the teacher, {TEACHER[0].replace('mobilenet_v', 'MobileNetV')} "
                f"{TEACHER[1]['alpha']} trained {TEACHER_EPOCHS} epochs on the same subset, reaches {pct(rows[0]['teacher_top1'])}%.", "* ")
    return "\n".join(["## Findings", "", *out]) + "\n"


def write_markdown(rows, teacher_top1, machine):
    """Write distillation.md and distillation_findings.md (see :func:`markdown`)."""
    md, findings = markdown(rows, teacher_top1, machine)
    write_file(OUT / FINDINGS, findings)
    write_file(OUT / "distillation.md", md)


def markdown(rows, teacher_top1, machine) -> tuple[str, str]:
    """distillation.md (setup, summary over seeds, every run, findings) and distillation_findings.md from ``rows``."""
    main, sweep = _settings(rows)
    lines = [
        "# Knowledge distillation and deep mutual learning on Fashion-MNIST",
        "",
        "Command: `PYTHONPATH=. python benchmarks/distillation.py` (one process, all seeds and settings; train_s is per-run wall time). "
        f"Machine: {machine}, shared with other jobs (load average 2-6 during the run, so train_s is only indicative).",
        "",
        f"Data: Fashion-MNIST, first {TRAIN} training images (after the seed-0 validation split), {TEST} test images, "
        f"resized to {SIZE}x{SIZE}x3, pixels to [-1, 1], no augmentation. Every student variant: {EPOCHS} epochs, batch {BATCH}, "
        f"Adam {LR} with cosine decay. Teacher: {TEACHER[0]} {TEACHER[1]} trained {TEACHER_EPOCHS} epochs on the same subset "
        f"(test top-1 {100 * teacher_top1:.2f} %). Student: {STUDENT[0]} {STUDENT[1]}. The Distiller uses the teacher's "
        "logits precomputed once per training image (exact: the frozen teacher runs in inference mode, no augmentation). "
        "Mutual learning: two students of the same architecture (different initialisations) trained together, T = 1, weight 1. "
        f"int8: full-integer .tflite (int8 input/output, {CALIBRATION} calibration images) run on the LiteRT interpreter over the same test images.",
        "",
        "## Summary (top-1 %, mean ± sample std over seeds)",
        "",
    ]
    summary = [["student alone", "-", "-", _stats(_select(rows, "alone"), "keras_top1"), _stats(_select(rows, "alone"), "int8_top1")]]
    summary += [["distilled", t, a, _stats(_select(rows, "distilled", (t, a)), "keras_top1"), _stats(_select(rows, "distilled", (t, a)), "int8_top1")]
                for t, a in ([main] if main else []) + sweep]
    first, both = _select(rows, "mutual", first_mutual_only=True), _select(rows, "mutual")
    summary += [["mutual, student 0", 1, "-", _stats(first, "keras_top1"), _stats(first, "int8_top1")],
                ["mutual, both students", 1, "-", _stats(both, "keras_top1"), _stats(both, "int8_top1")]]
    lines += md_table(["variant", "T", "alpha", "Keras top-1", "int8 top-1"], summary)
    lines += ["", "## All runs", "", *md_table(list(rows[0]), (r.values() for r in rows))]
    findings = findings_markdown({"rows": rows, "machine": machine})
    return "\n".join(lines) + "\n\n" + findings, findings


def findings_only() -> None:
    """distillation.md and distillation_findings.md again from the committed distillation.csv; measures nothing."""
    data = findings_data(OUT)
    write_markdown(data["rows"], _teacher_top1(data["rows"]), data["machine"])


def _teacher_top1(rows) -> float:
    return max(float(r["teacher_top1"] or 0) for r in rows)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    ap.add_argument("--no-sweep", action="store_true", help="skip the extra (T, alpha) settings")
    ap.add_argument("--tag", default="", help="write distillation{TAG}.csv only (for a run split over processes)")
    ap.add_argument("--merge", action="store_true", help="merge distillation*.csv into distillation.md/.csv")
    ap.add_argument("--findings-only", action="store_true", help="re-render distillation.md and the findings from distillation.csv")
    args = ap.parse_args()
    sys.exit(findings_only() if args.findings_only else merge() if args.merge else main(tuple(args.seeds), () if args.no_sweep else SWEEP, args.tag))
