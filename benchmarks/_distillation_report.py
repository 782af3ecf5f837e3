"""Renders benchmarks/distillation.md, distillation.csv and distillation_findings.md from the committed data;
imports no TensorFlow.

Two formats. Format 2 (distillation.json, ``"format": 2``, written by benchmarks/distillation.py since issue #21's
seeds): the well-trained MobileNetV2 0.35 baseline as teacher, MobileNetV1 0.25 students trained as the quickstart
recipe on all training images, every variant's per-seed results and the (T, alpha) sweep on the validation split.
Format 1 (distillation.csv alone: 8,000 training images, a MobileNetV2 1.0 teacher trained 5 epochs on them, two
seeds) keeps its own rendering while no distillation.json exists, so the committed files stay reproducible until a
format-2 run replaces them; that path can go then.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from benchmarks._common import difference_noise, md_table, mean_std, plural, pm, sampling_interval, seed_stats, signed_pm, verdict, wrap, write_file

FINDINGS = "distillation_findings.md"
DATA = "distillation.json"  # format 2's raw per-seed results
GOAL = 0.5  # points the distilled student should gain over the student alone

# ---- format 1: the committed run of 8,000 images and two seeds -------------------------------------------------

TRAIN, TEST, SIZE, BATCH, LR = 8000, 2000, 32, 128, 2e-3
EPOCHS, TEACHER_EPOCHS = 3, 5
TEACHER = ("mobilenet_v2", {"alpha": 1.0})
STUDENT = ("mobilenet_v1", {"alpha": 0.25})
CALIBRATION = 200  # int8 calibration images
# numbers in the findings that are not results: the goal, the runs' settings, the architectures' widths, the
# schedule of the paper the mutual-learning bullet cites, the 95% of the intervals
FINDINGS_CONSTANTS = frozenset({f"{GOAL:g}", f"{TRAIN:,}", f"{TEST:,}", str(CALIBRATION), f"{TEACHER[1]['alpha']}",
                                f"{STUDENT[1]['alpha']}", "0.35", "200", "95"})


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
    """Format 2: distillation.json as it is. Format 1: the committed rows (distillation.csv, numbers typed) and the
    machine that measured them."""
    if (folder / DATA).exists():
        return json.loads((folder / DATA).read_text())
    with open(folder / "distillation.csv") as f:
        rows = [{k: (_num(v) if k not in ("variant", "note") else v) for k, v in r.items()} for r in csv.DictReader(f)]
    return {"rows": rows, "machine": _machine(folder)}


def findings_markdown(data: dict) -> str:
    """distillation_findings.md from :func:`findings_data`: distillation and mutual learning against the student alone
    (gain and its noise over seeds and test sampling), the (T, alpha) settings, int8 against Keras, the scale of the
    runs; format 2 also the teacher against the students."""
    if "runs" in data:  # format 2
        return _seeded_findings(data)
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


def _teacher_top1(rows) -> float:
    return max(float(r["teacher_top1"] or 0) for r in rows)




def report_markdown(data: dict) -> tuple[str, str]:
    """distillation.md and distillation_findings.md from :func:`findings_data` (either format)."""
    if "runs" in data:  # format 2
        return _seeded_markdown(data)
    return markdown(data["rows"], _teacher_top1(data["rows"]), data["machine"])


def render(out: Path) -> None:
    """distillation.md and distillation_findings.md (format 2: also distillation.csv, the summary) from the data in
    ``out``; measures nothing."""
    data = findings_data(out)
    md, findings = report_markdown(data)
    if "runs" in data:  # format 2
        from benchmarks._common import write_csv

        rows = summary(data)
        write_csv(out / "distillation.csv", rows, list(rows[1]), "{:.6g}")
    write_file(out / FINDINGS, findings)
    write_file(out / "distillation.md", md)


# ---- format 2: the well-trained teacher, quickstart students, seeds ------------------------------------------------


def _of(data: dict, variant: str, student: int | None = None) -> list[dict]:
    """The runs of ``variant`` by seed (mutual: ``student`` 0 or 1 only, when given)."""
    runs = [r for r in data["runs"] if r["variant"] == variant and (student is None or r.get("student", 0) == student)]
    return sorted(runs, key=lambda r: (r["seed"], r.get("student", 0)))


def summary(data: dict) -> list[dict]:
    """The summary rows: the student alone (the reference), distilled with the setting chosen on validation, mutual
    learning (student 0, and both students); Keras and int8 test top-1 over seeds, the difference to the student alone
    and its noise, and the verdict against each row's target (distilled: a gain of at least ``GOAL`` point; mutual: any
    gain) (fractions)."""
    images = data["test_images"]
    alone = _of(data, "alone")
    ref = [r["keras_top1"] for r in alone]
    chosen = data["chosen"]
    rows = []
    for name, runs, at_least, t, a in (("student alone", alone, None, "-", "-"),
                                       ("distilled", _of(data, "distilled"), GOAL / 100, chosen["temperature"], chosen["alpha"]),
                                       ("mutual, student 0", _of(data, "mutual", 0), 0.0, data["settings"]["mutual_temperature"], "-"),
                                       ("mutual, both students", _of(data, "mutual"), 0.0, data["settings"]["mutual_temperature"], "-")):
        st = seed_stats([r["keras_top1"] for r in runs], ref, images, at_least)
        int8 = mean_std([r["int8_top1"] for r in runs])
        rows.append({"variant": name, "temperature": t, "alpha": a, "runs": st["n"], "keras_top1": st["mean"], "keras_top1_std": st["std"],
                     "interval": st["interval"], "diff": st["diff_mean"], "diff_std": st["diff_std"], "noise": st["noise"],
                     "target": "" if at_least is None else f"a gain of at least {100 * at_least:g} point" if at_least else "a gain",
                     "verdict": st.get("verdict", ""),
                     "int8_top1": int8[0], "int8_top1_std": int8[1]})
    return rows


def _g(v) -> str:
    """A setting as the tables write it: 4.0 -> "4", "-" as it is."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def _seeded_markdown(data: dict) -> tuple[str, str]:
    s, t = data["settings"], data["teacher"]
    rows = summary(data)
    lines = ["# Knowledge distillation and deep mutual learning on Fashion-MNIST", "",
             f"**Teacher: `{t['file']}`, MobileNetV2 0.35, test top-1 {100 * t['keras_top1']:.2f}% (validation {100 * t['val_top1']:.2f}%).** "
             f"Student: {data['student']}.", "", f"Machine: {data['machine']}. Command: `PYTHONPATH=. python {data['cmd']}`.", "",
             *wrap(f"Data: Fashion-MNIST at 28x28x3 as the baseline saw it: all {s['train_images']:,} training images, its validation "
                   f"split, the {data['test_images']:,} test images, no augmentation. Every student trains as `recipes/quickstart.toml`: "
                   f"{plural(s['epochs'], 'epoch')} of batch {s['batch']}, Adam {s['learning_rate']:g} with a {s['warmup_fraction']:g} linear "
                   f"warm-up and a cosine decay, weight decay {s['weight_decay']:g}, label smoothing {s['label_smoothing']:g} on the "
                   f"hard labels; seed = initial weights and data order. Distillation: the teacher's logits precomputed once per "
                   "training image (exact: the frozen teacher runs in inference mode, no augmentation), loss alpha x hard + (1 - alpha) "
                   "x T^2 KL; (T, alpha) chosen by the seed-0 students' validation top-1 (table below; the test split is read only for "
                   f"the chosen one). Mutual learning: two students trained together (seeds s and s + 100), T = {s['mutual_temperature']:g}, "
                   "weight 1, plain cross-entropy (edgeopt's MutualLearner has no label smoothing). Each model is read once on the test "
                   f"images, Keras and its full-integer int8 .tflite ({s['calibration']} calibration images). Columns: Keras top-1, mean ± "
                   "sample std over the runs; its test-sampling 95% interval; the difference to the student alone (points, paired by "
                   "seed where each seed has one run) and the noise on it (the seeds' 95% interval and test sampling in quadrature); "
                   "the verdict against the target: met or missed beyond that noise, or within noise. Raw per-seed results: "
                   f"`{DATA}`."), "", "## Summary (top-1 %)", ""]
    lines += md_table(["variant", "T", "alpha", "runs", "Keras top-1 %", "± 95% test sampling", "vs alone (points)", "noise ±", "target", "verdict",
                       "int8 top-1 %"],
                      ([r["variant"], _g(r["temperature"]), _g(r["alpha"]), r["runs"], pm(r["keras_top1"], r["keras_top1_std"]),
                        f"{100 * r['interval']:.2f}",
                        signed_pm(r["diff"], r["diff_std"]) if r["target"] else "-", f"{100 * r['noise']:.2f}" if r["target"] else "-",
                        r["target"] or "-", r["verdict"] or "-", pm(r["int8_top1"], r["int8_top1_std"])] for r in rows), "lllrrrrrllr")
    lines += ["", "## (T, alpha) on the validation split (seed 0)", ""]
    lines += md_table(["T", "alpha", "validation top-1 %", "chosen"],
                      ([f"{w['temperature']:g}", f"{w['alpha']:g}", f"{100 * w['val_top1']:.2f}",
                        "yes" if (w["temperature"], w["alpha"]) == (data["chosen"]["temperature"], data["chosen"]["alpha"]) else ""]
                       for w in data["sweep"]), "rrrl")
    lines += ["", "## All runs", ""]
    lines += md_table(["variant", "seed", "student", "T", "alpha", "validation top-1 %", "Keras test top-1 %", "int8 test top-1 %", "int8 bytes",
                       "train s"],
                      ([r["variant"], r["seed"], r.get("student", "-"), _g(r.get("temperature", "-")), _g(r.get("alpha", "-")),
                        f"{100 * r['val_top1']:.2f}",
                        f"{100 * r['keras_top1']:.2f}", f"{100 * r['int8_top1']:.2f}", f"{r['int8_bytes']:,}", f"{r['train_s']:.0f}"]
                       for r in data["runs"]), "lrrrrrrrrr")
    findings = _seeded_findings(data)
    return "\n".join(lines) + "\n\n" + findings, findings


def _seeded_findings(data: dict) -> str:
    rows = {r["variant"]: r for r in summary(data)}
    alone, kd, m0, both = (rows[k] for k in ("student alone", "distilled", "mutual, student 0", "mutual, both students"))
    t, s = data["teacher"], data["settings"]
    best = max(rows.values(), key=lambda r: r["keras_top1"])
    stronger = t["keras_top1"] > best["keras_top1"]
    out = wrap(f"**The teacher is {'stronger than' if stronger else 'not stronger than'} every student**: {100 * t['keras_top1']:.2f}% "
               f"test top-1 against {100 * best['keras_top1']:.2f}% for the best student variant ({best['variant']}, mean), "
               f"{100 * (t['keras_top1'] - best['keras_top1']):+.2f} points"
               + ("." if stronger else "; distillation from it cannot be expected to help."), "* ")
    head = {"met": f"Distillation beats the student alone by {100 * kd['diff']:+.2f} points",
            "missed": f"Distillation loses {100 * -kd['diff']:.2f} points against the student alone",
            "within noise": f"Distillation is {100 * abs(kd['diff']):.2f} points {'above' if kd['diff'] >= 0 else 'below'} the student "
                            "alone, within noise"}[verdict(kd["diff"], kd["noise"])]
    alone_runs, kd_runs = _of(data, "alone"), _of(data, "distilled")
    per_seed = [k["keras_top1"] - a["keras_top1"] for k, a in zip(kd_runs, alone_runs)]
    out += wrap(f"**{head}** (Keras {pm(kd['keras_top1'], kd['keras_top1_std'])} vs {pm(alone['keras_top1'], alone['keras_top1_std'])}, "
                f"mean ± sample std over {plural(kd['runs'], 'seed')}; int8 {100 * kd['int8_top1']:.2f} vs {100 * alone['int8_top1']:.2f}) with "
                f"T = {data['chosen']['temperature']:g}, alpha = {data['chosen']['alpha']:g}; per seed "
                f"{', '.join(f'{100 * g:+.2f}' for g in per_seed)} points. The noise on the difference is ±{100 * kd['noise']:.2f} points. "
                f"The goal, a gain of at least {GOAL:g} point: **{kd['verdict']}**.", "* ")
    tried = "; ".join(f"T={w['temperature']:g} a={w['alpha']:g} {100 * w['val_top1']:.2f}%" for w in data["sweep"])
    spread = max(w["val_top1"] for w in data["sweep"]) - min(w["val_top1"] for w in data["sweep"])
    val_images = s["val_images"]
    interval = sampling_interval(max(w["val_top1"] for w in data["sweep"]), val_images)
    out += wrap(f"(T, alpha) was chosen on the validation split ({val_images:,} images, seed 0): {tried}. The settings differ by "
                f"{100 * spread:.2f} point at most, "
                + (f"inside one validation accuracy's ±{100 * interval:.2f}-point sampling interval: any of them would have done "
                   "as well, as far as this split can tell." if spread <= interval
                   else f"more than one validation accuracy's ±{100 * interval:.2f}-point sampling interval."), "* ")
    head = {"met": "Deep mutual learning helped here", "missed": "Deep mutual learning hurt here",
            "within noise": "Deep mutual learning did not help here beyond noise"}[m0["verdict"]]
    out += wrap(f"**{head}**: student 0 of each pair {pm(m0['keras_top1'], m0['keras_top1_std'])}, both students "
                f"{pm(both['keras_top1'], both['keras_top1_std'])} ({both['runs']} students), against "
                f"{pm(alone['keras_top1'], alone['keras_top1_std'])} alone: {signed_pm(m0['diff'], m0['diff_std'])} points for student 0 "
                f"(noise ±{100 * m0['noise']:.2f}; {m0['verdict']}). Its cross-entropy has no label smoothing while the student alone "
                f"has {s['label_smoothing']:g}, so the comparison mixes the two.", "* ")
    gaps = [abs(r["int8_top1"] - r["keras_top1"]) for r in data["runs"]]
    worst = data["runs"][int(np.argmax(gaps))]
    w_interval = sampling_interval(worst["keras_top1"], data["test_images"])
    out += wrap(f"int8 follows Keras within {100 * max(gaps):.2f} point for every run (median gap {100 * float(np.median(gaps)):.2f}); the "
                f"largest ({worst['variant']}, seed {worst['seed']}: {100 * worst['keras_top1']:.2f} Keras, {100 * worst['int8_top1']:.2f} "
                f"int8) is {'inside' if max(gaps) <= w_interval else 'outside'} one accuracy's ±{100 * w_interval:.2f}-point "
                "test-sampling interval.", "* ")
    trainings = [r for r in data["runs"] if r.get("student", 0) == 0 and not r.get("from_sweep")] + data["sweep"]  # a pair trains once
    out += wrap(f"Scale: the trainings (each student alone or distilled, each mutual pair once, the validation sweep) took "
                f"{sum(r['train_s'] for r in trainings) / 60:.0f} minutes in all on the machine named above.", "* ")
    return "\n".join(["## Findings", "", *out]) + "\n"
