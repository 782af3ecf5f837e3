"""Renders benchmarks/nas.md, nas.csv, nas_pareto.png and nas_findings.md from nas.json, the raw results
benchmarks/nas.py writes. Imports no TensorFlow.

Every model (MobileNetV2 0.35 and the networks found by DARTS, by one-shot evolution and by random search) is
summarized over its retraining seeds: Keras and int8 test top-1, mean ± sample std, the test-sampling 95% interval,
the difference to MobileNetV2 paired by seed with its noise, and the verdict against "at least as accurate as
MobileNetV2" (:func:`edgeopt.stats.seed_stats`: "met", "missed" or "within noise"). Latency: each int8 file's
median over interleaved rounds, its ratio to MobileNetV2's and the 95% interval of the per-round ratios; "met" is
faster beyond that noise, "within noise" the same latency, "missed" slower. Search costs are wall times of the phases
(CPU-hours: wall hours x the machine's cores). The Kendall tau is the run's (scipy's tau-b), stored in the data.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from benchmarks._common import md_table, mean_std, plural, pm, sampling_interval, seed_stats, signed_pm, span, verdict, wrap, write_csv, write_file

DATA = "nas.json"
FINDINGS = "nas_findings.md"
PLOT = "nas_pareto.png"
MODELS = ("mobilenet_v2", "darts", "evolution", "random")
NAMES = {"mobilenet_v2": "MobileNetV2 0.35 (hand-designed)", "darts": "DARTS, latency term", "evolution": "One-shot evolution (NSGA-II)",
         "random": "Random search"}
LECTURE_RATIO = 100  # the search-cost ratio the lectures quote for DARTS against searches that train every candidate
# numbers in the findings that are not results: the lectures' ratio, the 95% of the intervals
FINDINGS_CONSTANTS = frozenset({str(LECTURE_RATIO), "95"})
CSV_FIELDS = ("model", "name", "seeds", "predicted_ms", "measured_ms", "latency_vs_mobilenet_v2", "latency_noise", "latency_verdict", "params", "macs",
              "int8_bytes", "oneshot_val", "val_top1", "keras_top1", "keras_top1_std", "interval", "keras_diff", "keras_noise", "keras_verdict", "int8_top1",
              "int8_top1_std", "int8_diff", "int8_diff_std", "int8_noise", "int8_verdict", "operations")


def findings_data(folder: Path) -> dict:
    """nas.json from ``folder``."""
    return json.loads((Path(folder) / DATA).read_text())


def short_op(op: str) -> str:
    """A compact operation name: ``ir_k5_e6_se0.25`` -> ``k5e6se``, ``skip`` -> ``skip`` (as edgeopt.search.latency_predictor's
    tables, which load TensorFlow)."""
    return op.replace("ir_", "").replace("_se0.25", "se").replace("_", "")


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


# ---- summary ----------------------------------------------------------------------------------------------


def runs_of(data: dict, key: str) -> list[dict]:
    return sorted((r for r in data["runs"] if r["model"] == key), key=lambda r: r["seed"])


def _latency(data: dict, key: str) -> dict:
    lat = data["latency"]
    ms, rounds = lat["ms"], lat["rounds_ms"]
    ratios = [a / b for a, b in zip(rounds[key], rounds["mobilenet_v2"])]
    noise = 1.96 * mean_std(ratios)[1] / len(ratios) ** 0.5
    ratio = ms[key] / ms["mobilenet_v2"]
    return {"measured_ms": ms[key], "latency_vs_mobilenet_v2": ratio, "latency_noise": noise,
            "latency_verdict": "" if key == "mobilenet_v2" else verdict(1 - ratio, noise)}


def summary(data: dict) -> list[dict]:
    """One row per model: latency (predicted by the table, measured, ratio to MobileNetV2 with its noise and verdict),
    size, one-shot score, validation, Keras and int8 test top-1 over seeds with the difference to MobileNetV2 and the
    verdict of "at least as accurate" (fractions)."""
    images = data["test_images"]
    ref = runs_of(data, "mobilenet_v2")
    models = {m["key"]: m for m in data["models"]}
    rows = []
    for key in MODELS:
        runs, m = runs_of(data, key), models[key]
        target = None if key == "mobilenet_v2" else 0.0
        k = seed_stats([r["keras_top1"] for r in runs], [r["keras_top1"] for r in ref], images, target)
        q = seed_stats([r["int8_top1"] for r in runs], [r["int8_top1"] for r in ref], images, target)
        mean = lambda name: mean_std([r[name] for r in runs])[0]  # noqa: E731
        rows.append({"model": key, "name": NAMES[key], "seeds": k["n"], "predicted_ms": m["predicted_ms"], **_latency(data, key),
                     "params": runs[0]["params"], "macs": runs[0]["macs"], "int8_bytes": runs[0]["int8_bytes"], "oneshot_val": m["oneshot_val"],
                     "val_top1": mean("val_top1"), "keras_top1": k["mean"], "keras_top1_std": k["std"], "interval": q["interval"],
                     "keras_diff": k["diff_mean"], "keras_noise": k["noise"], "keras_verdict": k.get("verdict", ""),
                     "int8_top1": q["mean"], "int8_top1_std": q["std"], "int8_diff": q["diff_mean"], "int8_diff_std": q["diff_std"],
                     "int8_noise": q["noise"], "int8_verdict": q.get("verdict", ""), "operations": " ".join(short_op(o) for o in m["architecture"])})
    return rows


def search_cost(data: dict) -> dict:
    """Wall seconds of each search and what training candidates alone would cost (see the module docstring)."""
    supernet, darts, evo = data["supernet"]["seconds"], data["darts"]["seconds"], data["evolution"]["seconds"]
    cands = data["random"]["candidates"]
    candidate = mean_std([c["train_s"] for c in cands])[0]
    retrain = mean_std([r["train_s"] for r in data["runs"]])[0]
    differentiable, oneshot = supernet + darts, supernet + evo
    evaluated = data["evolution"]["distinct"]  # stored by the run: a count of distinct lists does not move when the data is perturbed
    return {"supernet_s": supernet, "darts_s": darts, "evolution_s": evo, "differentiable_s": differentiable, "oneshot_s": oneshot,
            "random_budget_s": data["random"]["budget_s"], "random_s": sum(c["train_s"] for c in cands[:data["random"]["within_budget"]]),
            "candidate_s": candidate, "retrain_s": retrain, "evaluated": evaluated,
            "breakeven": differentiable / candidate, "ratio_evaluated": evaluated * candidate / differentiable,
            "ratio_evaluated_retrain": evaluated * retrain / differentiable, "oneshot_ratio": evaluated * candidate / oneshot,
            "log10_ratio_space": data["space"]["log10_size"] + math.log10(candidate / differentiable)}


def _cpu_h(data: dict, seconds: float) -> str:
    return f"{seconds / 3600 * data['cores']:.2f}"


# ---- tables -----------------------------------------------------------------------------------------------


_QUICK_NOTE = ["**A `--quick` smoke run**: the 2-block tiny space, a few steps per training; the numbers test the code, not the methods.", ""]


def _devices_note(data: dict) -> str:
    """A sentence when the latency table and the timed networks were measured on different machines (the phases of a
    run can fall in different sessions), else nothing."""
    table, timed = data["table"]["header"]["runner"].get("device"), data["latency"].get("device")
    if not table or not timed or table == timed:
        return ""
    return (f" The latency table was measured on {table}, the four networks were timed on {timed}: predicted and measured "
            "milliseconds come from different machines.")


def tables_markdown(data: dict) -> str:
    """nas.md without its findings: setup, the comparison, the architectures, search costs, each search's details, every run."""
    s, sp, t = data["settings"], data["space"], data["table"]
    rows = summary(data)
    cost = search_cost(data)
    hdr = t["header"]
    md = ["# Architecture search: DARTS and one-shot evolution against MobileNetV2 0.35 and random search (Fashion-MNIST)", "",
          *_QUICK_NOTE[: 2 * data["quick"]], f"Machine: {data['machine']}. Command: `PYTHONPATH=. python {data['cmd'].strip()}`.", "",
          *wrap(f"Space: {sp['name']} at width {sp['width']:g}, {sp['blocks']} blocks ({sp['searchable']} searchable), candidates "
                f"{', '.join(sp['ops'])} (skip only where a block keeps its shape): 10^{sp['log10_size']:.1f} architectures. Data: Fashion-MNIST "
                f"28x28x3 as `{data['baseline_recipe']}` trains: {data['train_images']:,} training images with shifts of up to "
                f"{s['data']['crop_padding']} pixels and left-right flips, its {data['val_images']:,}-image validation split, the "
                f"{data['test_images']:,} test images; every training uses its Adam {s['recipe']['learning_rate']:g} with a "
                f"{s['recipe']['warmup_fraction']:g} warm-up and cosine decay, weight decay {s['recipe']['weight_decay']:g}, label smoothing "
                f"{s['recipe']['label_smoothing']:g}. Reported models are retrained from scratch for {plural(s['retrain_epochs'], 'epoch')} "
                f"({plural(len(data['seeds']), 'seed')}; the recipe trains {s['baseline_epochs']}), random-search candidates for "
                f"{plural(s['candidate_epochs'], 'epoch')} (seed 0). Selection reads the validation split only; each reported model reads the "
                f"test split once, Keras and its int8 .tflite (int8 input and output, {s['calibration']} calibration images). Latency: int8, 1 "
                f"thread, {hdr['runner']['runtime']}; {data['latency']['timing']}; median of {data['latency']['rounds']} interleaved rounds."
                f"{_devices_note(data)} Raw results: `{DATA}`."), "",
          "## Found networks against MobileNetV2 0.35 at equal int8 latency", ""]
    md += md_table(["model", "predicted ms", "measured ms", "vs MobileNetV2", "latency verdict", "params", "MACs", "one-shot val %", "val %",
                    "Keras top-1 %", "vs MobileNetV2", "verdict", "int8 top-1 %", "± 95% test", "vs MobileNetV2", "noise ±", "verdict"],
                   ([r["name"], f"{r['predicted_ms']:.4f}", f"{r['measured_ms']:.4f}", f"{r['latency_vs_mobilenet_v2']:.3f}x ± {r['latency_noise']:.3f}",
                     r["latency_verdict"] or "-", f"{r['params']:,}", f"{r['macs']:,}", _pct(r["oneshot_val"]), _pct(r["val_top1"]),
                     pm(r["keras_top1"], r["keras_top1_std"]), "-" if r["model"] == "mobilenet_v2" else f"{100 * r['keras_diff']:+.2f}",
                     r["keras_verdict"] or "-", pm(r["int8_top1"], r["int8_top1_std"]), f"{100 * r['interval']:.2f}",
                     "-" if r["model"] == "mobilenet_v2" else signed_pm(r["int8_diff"], r["int8_diff_std"]),
                     "-" if r["model"] == "mobilenet_v2" else f"{100 * r['int8_noise']:.2f}", r["int8_verdict"] or "-"] for r in rows),
                   "lrrrlrrrrrrlrrrrl")
    md += ["", *wrap("Latency verdict: met = faster than MobileNetV2 beyond the rounds' 95% interval, within noise = the same latency, missed = "
                     "slower. Accuracy verdict (target: at least as accurate as MobileNetV2): the difference paired by seed against the seeds' 95% "
                     "interval and test sampling in quadrature."), "", "## Architectures (operation per block)", ""]
    md += md_table(["model", "operations"], ([r["name"], f"`{r['operations']}`"] for r in rows))
    md += ["", "## Search cost (wall time on this machine)", ""]
    md += md_table(["what", "wall", "CPU-hours"],
                   [["single-path supernet (shared warm-up)", _minutes(cost["supernet_s"]), _cpu_h(data, cost["supernet_s"])],
                    ["DARTS steps", _minutes(cost["darts_s"]), _cpu_h(data, cost["darts_s"])],
                    ["differentiable search (supernet + DARTS)", _minutes(cost["differentiable_s"]), _cpu_h(data, cost["differentiable_s"])],
                    ["evolution (one-shot scores)", _minutes(cost["evolution_s"]), _cpu_h(data, cost["evolution_s"])],
                    ["one-shot search (supernet + evolution)", _minutes(cost["oneshot_s"]), _cpu_h(data, cost["oneshot_s"])],
                    ["random search budget (the larger search)", _minutes(cost["random_budget_s"]), _cpu_h(data, cost["random_budget_s"])],
                    [f"random search: {data['random']['within_budget']} candidates trained", _minutes(cost["random_s"]), _cpu_h(data, cost["random_s"])],
                    ["one candidate trained alone (mean)", _minutes(cost["candidate_s"]), _cpu_h(data, cost["candidate_s"])],
                    ["one retraining (mean)", _minutes(cost["retrain_s"]), _cpu_h(data, cost["retrain_s"])],
                    ["latency table (export + timing)", _minutes(t["export_s"] + t["timing_s"]), _cpu_h(data, t["export_s"] + t["timing_s"])]], "lrr")
    md += ["", "## Latency table", "",
           *wrap(f"{t['parts']} parts, {hdr['config']['rounds']} interleaved rounds; {hdr['runner']['device']}; {hdr['runner']['timing']}. Per-inference "
                 f"overhead (probe) {t['overhead_ms']:.4f} ms. The searches' limit is its prediction for MobileNetV2 0.35: {t['limit_ms']:.4f} ms."), ""]
    md += ["## DARTS", "", *wrap(_darts_text(data)), ""]
    md += md_table(["epoch", "mixed supernet val %", "E[latency] ms", "argmax ms", "seconds"],
                   ([h["epoch"], _pct(h["val_top1"]), f"{h['expected_cost']:.4f}", f"{h['derived_cost']:.4f}", f"{h['seconds']:.0f}"]
                    for h in data["darts"]["history"]), "rrrrr")
    evo = data["evolution"]
    md += ["", "## One-shot evolution: Pareto set (feasible trials)", "",
           *wrap(f"{len(evo['candidates'])} trials, {cost['evaluated']} distinct architectures scored, population {evo['config']['population']}, "
                 f"limit {evo['cost_limit']:.4f} ms; one-shot score: validation top-1 with the supernet's weights after batch-norm "
                 "recalibration on training batches."), ""]
    md += md_table(["trial", "operations", "one-shot val %", "predicted ms"],
                   ([c["trial"], f"`{' '.join(short_op(o) for o in c['architecture'])}`", _pct(c["score"]), f"{c['cost']:.4f}"] for c in evo["pareto"]), "rlrr")
    rnd = data["random"]
    md += ["", "## Random search candidates", "",
           *wrap(f"Drawn uniformly under the limit; each trained alone for {plural(s['candidate_epochs'], 'epoch')} (seed 0). The first "
                 f"{rnd['within_budget']} fit the budget of {_minutes(rnd['budget_s'])}; the pick is the best of those by validation top-1; the rest "
                 "only add pairs to the Kendall tau."), ""]
    md += md_table(["#", "operations", "predicted ms", "stand-alone val %", "one-shot val %", "train s", "in budget"],
                   ([i, f"`{' '.join(short_op(o) for o in c['architecture'])}`", f"{c['predicted_ms']:.4f}", _pct(c["val_top1"]), _pct(c["oneshot_val"]),
                     f"{c['train_s']:.0f}", ("yes, picked" if i == rnd["best"] else "yes") if i < rnd["within_budget"] else "no"]
                    for i, c in enumerate(rnd["candidates"])), "rlrrrrl")
    md += ["", "## All runs", ""]
    md += md_table(["model", "seed", "val %", "Keras test %", "int8 test %", "int8 bytes", "train s"],
                   ([NAMES[r["model"]], r["seed"], _pct(r["val_top1"]), _pct(r["keras_top1"]), _pct(r["int8_top1"]), f"{r['int8_bytes']:,}",
                     f"{r['train_s']:.0f}"] for r in sorted(data["runs"], key=lambda r: (MODELS.index(r["model"]), r["seed"]))), "lrrrrrr")
    return "\n".join(md) + "\n"


def _darts_text(data: dict) -> str:
    d, t = data["darts"], data["table"]
    c = d["config"]
    steps = c["epochs"] * c["steps_per_epoch"]
    forced = d["architecture"] != d["argmax"]
    return (f"{steps:,} alternating steps ({c['epochs']} epochs of {c['steps_per_epoch']}) from the single-path supernet's weights: architecture "
            f"({c['arch_optimizer']} {c['arch_learning_rate']:g}) on validation batches, weights ({c['optimizer']} {c['learning_rate']:g}) on "
            f"training batches; cost term {c['cost_weight']:g} x max(0, E[latency] - {t['limit_ms']:.4f} ms) / reference. The argmax network "
            f"predicts {d['argmax_ms']:.4f} ms; "
            + (f"over the limit, so blocks were switched to cheaper candidates (least probability lost per ms saved): {d['predicted_ms']:.4f} ms."
               if forced else "within the limit, it is the derived network."))


# ---- findings -----------------------------------------------------------------------------------------------


_HEAD = {"met": "more accurate than MobileNetV2", "missed": "less accurate than MobileNetV2", "within noise": "level with MobileNetV2 within noise"}
_LATENCY = {"met": "faster than", "missed": "slower than", "within noise": "as fast as"}


def _model_bullet(data: dict, r: dict, ref: dict) -> list[str]:
    lat = (f"measured int8 latency {r['measured_ms']:.4f} ms against {ref['measured_ms']:.4f} ms ({r['latency_vs_mobilenet_v2']:.3f}x ± "
           f"{r['latency_noise']:.3f}: {_LATENCY[r['latency_verdict']]} MobileNetV2; predicted {r['predicted_ms']:.4f} ms)")
    return wrap(f"**{r['name']}: {_HEAD[r['int8_verdict']]}** (int8 {pm(r['int8_top1'], r['int8_top1_std'])} vs "
                f"{pm(ref['int8_top1'], ref['int8_top1_std'])}, {signed_pm(r['int8_diff'], r['int8_diff_std'])} points paired by seed, noise "
                f"±{100 * r['int8_noise']:.2f}: **{r['int8_verdict']}**; Keras {pm(r['keras_top1'], r['keras_top1_std'])} vs "
                f"{pm(ref['keras_top1'], ref['keras_top1_std'])}: {r['keras_verdict']}); {lat}.", "* ")


def _vs_random(data: dict) -> list[str]:
    images, rnd = data["test_images"], [r["int8_top1"] for r in runs_of(data, "random")]
    parts = []
    for key in ("darts", "evolution"):
        st = seed_stats([r["int8_top1"] for r in runs_of(data, key)], rnd, images, 0.0)
        parts.append(f"{NAMES[key]} {signed_pm(st['diff_mean'], st['diff_std'])} points (noise ±{100 * st['noise']:.2f}: {st['verdict']})")
    rnd_data, cost = data["random"], search_cost(data)
    return wrap(f"Against random search at the same budget ({_minutes(rnd_data['budget_s'])} wall, {_cpu_h(data, rnd_data['budget_s'])} CPU-hours of "
                f"training: {plural(rnd_data['within_budget'], 'candidate')} of {plural(data['settings']['candidate_epochs'], 'epoch')}, "
                f"{_minutes(cost['random_s'])} in all; int8, paired by seed; target: at least as accurate): {'; '.join(parts)}.", "* ")


def _resumed(data: dict) -> str:
    """A note when the evolution was continued from its journal: its time counts the last call's trials only."""
    evo = data["evolution"]
    return f", the time of its last {len(evo['candidates']) - evo['resumed_trials']} trials only: it was resumed" if evo["resumed_trials"] else ""


def _cost_bullets(data: dict) -> list[str]:
    c, s = search_cost(data), data["settings"]
    out = wrap(f"**Search cost**: the differentiable search took {_minutes(c['differentiable_s'])} wall, {_cpu_h(data, c['differentiable_s'])} "
               f"CPU-hours on {data['cores']} cores ({_minutes(c['supernet_s'])} single-path warm-up + {_minutes(c['darts_s'])} of DARTS steps); "
               f"the one-shot search {_minutes(c['oneshot_s'])} ({_cpu_h(data, c['oneshot_s'])} CPU-hours, the same supernet + "
               f"{_minutes(c['evolution_s'])} of evolution{_resumed(data)}). One candidate trained alone for {plural(s['candidate_epochs'], 'epoch')} took "
               f"{_minutes(c['candidate_s'])}, so the differentiable search cost as much as {c['breakeven']:.1f} such trainings.", "* ")
    out += wrap(f"**Against training every candidate**: training each of the {c['evaluated']} architectures the evolution evaluated alone for "
                f"{plural(s['candidate_epochs'], 'epoch')} would take {c['ratio_evaluated']:.1f}x the differentiable search "
                f"({c['ratio_evaluated_retrain']:.1f}x at the {s['retrain_epochs']}-epoch retraining budget) and {c['oneshot_ratio']:.1f}x "
                f"the one-shot search; every architecture of the space, {c['log10_ratio_space']:.0f} orders of magnitude more. The lectures quote about "
                f"{LECTURE_RATIO}x for DARTS against searches that train each candidate they try: the ratio here is "
                f"{'above' if c['ratio_evaluated'] > LECTURE_RATIO else 'below'} that at this number of candidates.", "* ")
    return out


def _kendall_bullet(data: dict) -> list[str]:
    k, cands = data["kendall"], data["random"]["candidates"]
    vals = [c["val_top1"] for c in cands]
    noise = sampling_interval(float(np.mean(vals)), data["val_images"])
    spread = (f"the stand-alone accuracies span {span([100 * v for v in vals])}% against a ±{100 * noise:.2f}-point sampling interval of one "
              "validation accuracy" + (", so much of their order is sampling noise" if max(vals) - min(vals) < 2 * noise else ""))
    if k["tau"] is None:
        return wrap(f"**One-shot ranking**: Kendall tau is undefined over the {k['pairs']} candidates (all scores tied); {spread}.", "* ")
    agree = "agrees with stand-alone training beyond chance" if k["p"] < 0.05 else "does not agree with stand-alone training beyond chance"
    return wrap(f"**One-shot ranking {agree}**: Kendall tau {k['tau']:.2f} (p {k['p']:.2g}) between one-shot scores (validation, "
                f"recalibrated batch norm) and stand-alone validation accuracy after {plural(data['settings']['candidate_epochs'], 'epoch')} over "
                f"{k['pairs']} random sub-networks; {spread}.", "* ")


def _supernet_bullet(data: dict) -> list[str]:
    """How far the shared weights were trained: the drawn paths' training top-1 at the end against what a candidate
    trained alone reaches, and how often each candidate was drawn."""
    sn, cands = data["supernet"], data["random"]["candidates"]
    last, ops = sn["history"][-1], len(data["space"]["ops"])
    steps = len(sn["history"]) * sn["steps_per_epoch"]
    alone = float(np.mean([c["val_top1"] for c in cands]))
    scores = [100 * c["oneshot_val"] for c in cands] + [100 * m["oneshot_val"] for m in data["models"]]
    under = last["train_top1"] < alone - 0.2
    return wrap(f"The single-path supernet ended at {_pct(last['train_top1'])}% training top-1 of its drawn paths after "
                f"{plural(len(sn['history']), 'epoch')} ({steps:,} steps, each block's operation drawn uniformly among up to {ops} candidates: "
                f"about {steps // ops:,} updates each), against {_pct(alone)}% mean validation top-1 of a candidate trained alone for "
                f"{plural(data['settings']['candidate_epochs'], 'epoch')}; the one-shot scores of the random candidates and the reported models span {span(scores)}%"
                + (": the shared weights are under-trained at this budget, which bounds what one-shot scores can rank (SPOS trains its "
                   "supernet for many epochs over fewer candidates; benchmarks/single_path_coupling.md measures why it trains slowly: each "
                   "block drawing its candidate independently of the others costs more than the share of updates)." if under else ".")
                + ("" if data["settings"].get("single_path_adam") else
                   " This run trained the supernet with Keras' Adam, whose bias correction counts global steps: a candidate's steps were "
                   "about 2x-3x Adam's after the first 100 steps; benchmarks/nas.py now uses per-variable steps (edgeopt.train.PerVariableStepAdam).")
                + ("" if data["settings"].get("share_weights") else
                   " Its candidates had weights of their own; benchmarks/nas.py now shares them between a block's candidates "
                   "(SinglePathConfig(share_weights=True)), which benchmarks/single_path_coupling.md measured to train the supernet faster; "
                   "benchmarks/oneshot_ranking.md scores these random sub-networks again with such a supernet."),
                "* ")


def _darts_bullet(data: dict) -> list[str]:
    d, t = data["darts"], data["table"]
    h = d["history"][-1]
    skips = sum(o == "skip" for o in d["architecture"])
    top = [max(p) for p in d["probabilities"] if len(p) > 1]
    forced = d["architecture"] != d["argmax"]
    return wrap(f"DARTS ended with an expected latency of {h['expected_cost']:.4f} ms against the {t['limit_ms']:.4f} ms limit; "
                f"its blocks' largest probabilities span {span(top, '{:.2f}')}; the argmax predicts {d['argmax_ms']:.4f} ms"
                + (f", over the limit: the derived network switches blocks to {d['predicted_ms']:.4f} ms" if forced else ", within the limit")
                + f"; it skips {plural(skips, 'block')}.", "* ")


def _latency_bullet(data: dict, rows: list[dict]) -> list[str]:
    errors = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
    return wrap(f"The latency table predicts the {len(rows)} networks within {100 * max(errors):.1f}% of their measured int8 latency (median "
                f"{100 * float(np.median(errors)):.1f}%; measured {span([r['measured_ms'] for r in rows], '{:.4f}')} ms).", "* ")


def _int8_bullet(data: dict) -> list[str]:
    gaps = [abs(r["int8_top1"] - r["keras_top1"]) for r in data["runs"]]
    return wrap(f"int8 follows Keras within {100 * max(gaps):.2f} point in every run (median gap {100 * float(np.median(gaps)):.2f}).", "* ")


def findings_markdown(data: dict) -> str:
    """nas_findings.md: each found network against MobileNetV2 and random search, search cost, one-shot ranking."""
    rows = summary(data)
    ref, s = rows[0], data["settings"]
    intro = wrap(f"Every model retrained from scratch for {plural(s['retrain_epochs'], 'epoch')} with {plural(len(data['seeds']), 'seed')} "
                 f"(the baseline recipe trains {s['baseline_epochs']}: absolute accuracies are below its, the comparison is at one budget); "
                 f"{data['test_images']:,} test images (±{100 * ref['interval']:.2f}-point test-sampling interval at 95%).", "* ")
    lines = ["## Findings", "", *_QUICK_NOTE[: 2 * data["quick"]], *intro]
    for r in rows[1:]:
        lines += _model_bullet(data, r, ref)
    lines += _vs_random(data) + _cost_bullets(data) + _kendall_bullet(data) + _supernet_bullet(data) + _darts_bullet(data) + _latency_bullet(data, rows) + _int8_bullet(data)
    return "\n".join(lines) + "\n"


# ---- rendering --------------------------------------------------------------------------------------------


def render(out: Path, plots: bool = False) -> None:
    """nas.md, nas.csv and the findings (and with ``plots`` the Pareto plot) from the JSON in ``out``."""
    out = Path(out)
    data = findings_data(out)
    write_csv(out / "nas.csv", summary(data), CSV_FIELDS, "{:.6g}")
    findings = findings_markdown(data)
    write_file(out / FINDINGS, findings)
    write_file(out / "nas.md", tables_markdown(data) + "\n" + findings)
    if plots:
        _plot(data, out)


def _plot(data: dict, out: Path) -> None:
    import matplotlib  # lazy: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary(data)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    ref = rows[0]
    a.axvline(ref["measured_ms"], color="grey", ls=":", lw=1, label="MobileNetV2 0.35 latency")
    for r, marker in zip(rows, "*osD"):
        a.errorbar(r["measured_ms"], 100 * r["int8_top1"], yerr=100 * r["int8_top1_std"], fmt=marker, ms=9, capsize=3, label=r["name"])
    a.set_xlabel("measured int8 latency (ms, 1 thread, interleaved)")
    a.set_ylabel(f"int8 test top-1 (%), mean ± std over {len(data['seeds'])} seeds")
    a.set_title(f"Retrained from scratch, {plural(data['settings']['retrain_epochs'], 'epoch')}")
    a.legend(fontsize=7)
    evo = data["evolution"]
    b.scatter([c["cost"] for c in evo["candidates"]], [100 * c["score"] for c in evo["candidates"]], s=10, c="lightgrey", label="evolution trials")
    front = sorted(evo["pareto"], key=lambda c: c["cost"])
    b.plot([c["cost"] for c in front], [100 * c["score"] for c in front], "k.-", lw=1, label="evolution Pareto set")
    cands = data["random"]["candidates"]
    b.scatter([c["predicted_ms"] for c in cands], [100 * c["oneshot_val"] for c in cands], marker="x", c="tab:red", label="random candidates")
    for r, marker in zip(rows, "*osD"):
        b.plot(r["predicted_ms"], 100 * r["oneshot_val"], marker, ms=9, label=r["name"])
    b.axvline(data["table"]["limit_ms"], color="grey", ls="--", lw=1, label="latency limit")
    b.set_xlabel("predicted int8 latency (ms, latency table)")
    b.set_ylabel("one-shot validation top-1 (%)")
    b.set_title("The search: one-shot scores of the single-path supernet")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / PLOT, dpi=120)
    plt.close(fig)
