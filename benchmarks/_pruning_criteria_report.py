"""Renders benchmarks/pruning_criteria.md, pruning_criteria.csv, the plots and pruning_criteria_findings.md from
pruning_criteria.json, the raw per-seed results benchmarks/pruning_criteria.py writes. Imports no TensorFlow.

Every row is summarized over seeds (int8 test top-1 mean ± sample std, its test-sampling 95% interval) against a
reference (the baseline, or a row of the same section paired by seed) with the noise on the difference and a verdict
against the row's target (:data:`TARGETS`): "met", "missed" or "within noise" (:func:`edgeopt.stats.seed_stats`).
Latency verdicts compare a measured ratio to dense with the target ratio, against the seeds' (or the interleaved
rounds') 95% interval. The findings are :func:`findings_markdown` of :func:`findings_data`, every number formatted
from the data.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from benchmarks._common import (difference_noise, md_table, mean_std, plural, pm, sampling_interval, seed_stats, signed_pm, span, verdict, wrap,
                                write_csv, write_file)

DATA = "pruning_criteria.json"
FINDINGS = "pruning_criteria_findings.md"
PLOTS = ("pruning_criteria_structured.png", "pruning_criteria_unstructured.png")
# the issue's targets: 2x faster int8 (latency at most 0.5 of dense) at most 0.5 point below dense; pruning.md's
# magnitude targets at 50% (0.5 point) and 75% (1 point)
TARGETS = {"latency_2x": 0.5, "drop_2x": 0.5, "drop_50": 0.5, "drop_75": 1.0}
NAMES = {"l1": "magnitude (L1)", "l2": "L2", "fpgm": "FPGM", "apoz": "APoZ", "taylor": "Taylor", "obd_fisher": "OBD (Fisher)", "wanda": "Wanda", "activation": "activation",
         "snip": "SNIP", "grasp": "GraSP", "set": "SET", "rigl": "RigL", "dense": "dense", "snip_capped": "SNIP capped"}
FILTER_NAMES = {**NAMES, "l1": "L1 norm"}
# numbers in the findings that are not results: the targets, the variants' names (50%, 75%, 90%; budgets 0.5x,
# 0.33x and 0.75x), the model width, the 95% of the sampling interval
FINDINGS_CONSTANTS = frozenset({*(f"{v:g}" for v in TARGETS.values()), "50", "75", "90", "0.33", "0.75", "0.35", "95"})


def findings_data(folder: Path) -> dict:
    """pruning_criteria.json from ``folder``."""
    return json.loads((Path(folder) / DATA).read_text())


# ---- summary rows -----------------------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _level(v: float) -> str:
    return f"{100 * v:g}%"


def _by_variant(runs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        out[r["variant"]].append(r)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in out.items()}


def _complete(data: dict, part: str) -> dict[str, list[dict]]:
    """The variants of a part the report may show unfinished (``data["pending"]``) whose every seed is in, with their runs."""
    return {k: v for k, v in _by_variant(data.get(part, [])).items() if len(v) == len(data["seeds"])}


def _pending_text(data: dict, part: str) -> str:
    """The runs of ``part`` not run yet, or "" when none is pending."""
    pending = data.get("pending", {}).get(part, [])
    return (f"Not run yet: {', '.join(pending)} ({plural(len(pending), 'run')}); a variant's row appears when every seed of it is in."
            if pending else "")


def _target_text(reference: str, at_least: float | None) -> str:
    if at_least is None:
        return "none (reported)"
    if at_least < 0:
        return f"within {-100 * at_least:g} point of {reference}"
    return f"at least as accurate as {reference}"


def _stats(section: str, variant: str, runs: list[dict], reference: str, ref_values: list[float], at_least: float | None, base: dict,
           images: int) -> dict:
    st = seed_stats([r["int8_top1"] for r in runs], ref_values, images, at_least)
    mean = lambda k: mean_std([r[k] for r in runs])[0]  # noqa: E731
    return {"section": section, "variant": variant, "seeds": st["n"], "steps": runs[0]["steps"], "kernel_sparsity": mean("kernel_sparsity"),
            "val_top1": mean("val_top1"), "keras_top1": mean("keras_top1"), "int8_top1": st["mean"], "int8_top1_std": st["std"],
            "interval": st["interval"], "reference": reference, "diff": st["diff_mean"], "diff_std": st["diff_std"], "noise": st["noise"],
            "target": _target_text(reference, at_least), "verdict": st.get("verdict", ""), "macs_vs_dense": mean("macs") / base["macs"],
            "params_vs_dense": mean("params") / base["params"]}


def _latency(values: list[float], target: float | None, rounds: list[float] | None = None) -> dict:
    """A latency ratio to dense: the mean of the seeds' ratios (or one file's), the 95% interval of the seeds' ratios
    (one file: of its per-round ratios), and the verdict against ``target`` (the ratio must be at most that)."""
    spread = values if len(values) > 1 else (rounds or values)
    m, s = mean_std(values)
    noise = 1.96 * mean_std(spread)[1] / len(spread) ** 0.5
    return {"latency_vs_dense": m, "latency_noise": noise, "latency_target": "" if target is None else f"at most {target:g}x",
            "latency_verdict": "" if target is None else verdict(target - m, noise)}


def summary(data: dict) -> list[dict]:
    """One dict per row of every table: the baseline, then the unstructured, from-scratch, structured, budget and
    regularization rows (fractions; latency as a ratio to the baseline's int8 file in the same interleaved run)."""
    base, images, lat = data["baseline"], data["test_images"], data["latency"]
    ms, rounds_ms = lat["ms"], lat["rounds_ms"]
    ref_base = [base["int8_top1"]]
    rows = [{"section": "baseline", "variant": "baseline", "seeds": 0, "kernel_sparsity": base["kernel_sparsity"], "val_top1": base["val_top1"],
             "keras_top1": base["keras_top1"], "int8_top1": base["int8_top1"], "int8_top1_std": 0.0, "interval": sampling_interval(base["int8_top1"], images),
             "macs_vs_dense": 1.0, "params_vs_dense": 1.0, "latency_ms": ms["dense"], "latency_vs_dense": 1.0}]
    un = _by_variant(data["unstructured"])
    for name, runs in un.items():
        c, lvl = name.split(" ")
        if c == "l1":
            target = {"50%": TARGETS["drop_50"], "75%": TARGETS["drop_75"]}.get(lvl)
            rows.append(_stats("unstructured", name, runs, "baseline", ref_base, None if target is None else -target / 100, base, images))
        else:
            ref = f"l1 {lvl}"
            rows.append(_stats("unstructured", name, runs, ref, [r["int8_top1"] for r in un[ref]], 0.0, base, images))
    sc = _by_variant(data["scratch"])
    for name, runs in sc.items():
        row = (_stats("scratch", name, runs, "baseline", ref_base, None, base, images) if name == "dense"
               else _stats("scratch", name, runs, "dense", [r["int8_top1"] for r in sc["dense"]], 0.0, base, images))
        row["masked_sparsity"] = mean_std([r.get("masked_sparsity", 0.0) for r in runs])[0]
        row["changed_fraction"] = mean_std([r.get("changed_fraction", 0.0) for r in runs])[0]
        rows.append(row)
    for name, runs in _complete(data, "scratch_full").items():  # the issue's budget; data written before it has none
        ref = f"l1 {name.split(' ')[1]}"
        row = _stats("scratch_full", name, runs, f"{ref} after training", [r["int8_top1"] for r in un[ref]], 0.0, base, images)
        row["masked_sparsity"] = mean_std([r["masked_sparsity"] for r in runs])[0]
        row["changed_fraction"] = mean_std([r["changed_fraction"] for r in runs])[0]
        rows.append(row)
    for name, runs in _complete(data, "layout_control").items():  # data written before the control has none
        ref = f"l1 {name.split(' ')[1]}"
        row = _stats("layout_control", name, runs, f"{ref} (layer-wise)", [r["int8_top1"] for r in un[ref]], 0.0, base, images)
        rows.append({**row, "masked_sparsity": mean_std([r["masked_sparsity"] for r in runs])[0]})
    for name, runs in _by_variant(data["structured"]).items():
        row = _stats("structured", name, runs, "baseline", ref_base, -TARGETS["drop_2x"] / 100, base, images)
        per_round = [a / d for a, d in zip(rounds_ms[name], rounds_ms["dense"])]
        rows.append({**row, "latency_ms": ms[name], **_latency([ms[name] / ms["dense"]], TARGETS["latency_2x"], per_round)})
    for name, runs in _by_variant(data["budget"]["runs"]).items():
        ratio = runs[0]["budget_ratio"]
        if not runs[0]["feasible"]:
            rows.append({"section": "budget", "variant": name, "seeds": 0, "target": "infeasible (floor models slower): not run", "verdict": "",
                         "latency_target": f"at most {ratio:g}x"})
            continue
        at_least = -TARGETS["drop_2x"] / 100 if name == f"budget {TARGETS['latency_2x']:g}x" else None
        row = _stats("budget", name, runs, "baseline", ref_base, at_least, base, images)
        files = [r["latency_key"] for r in runs]
        row |= {"latency_ms": mean_std([ms[f] for f in files])[0], **_latency([ms[f] / ms["dense"] for f in files], ratio),
                "groups": runs[0]["groups"], "criterion": runs[0]["criterion"], "budget_rounds": mean_std([len(r["rounds"]) - 1 for r in runs])[0],
                "stop_reasons": ", ".join(sorted({r["stop_reason"] for r in runs}))}
        rows.append(row)
    rg = _by_variant(data["regularization"]["runs"])
    for name, runs in rg.items():
        arm, lvl = name.split(" ")
        row = (_stats("regularization", name, runs, "baseline", ref_base, None, base, images) if arm == "control"
               else _stats("regularization", name, runs, f"control {lvl}", [r["int8_top1"] for r in rg[f"control {lvl}"]], 0.0, base, images))
        one = mean_std([r["oneshot_keras_top1"] for r in runs])
        rows.append({**row, "near_zero_weights": mean_std([r["source_near_zero_weights"] for r in runs])[0], "oneshot_keras_top1": one[0],
                     "oneshot_keras_top1_std": one[1], "strength": runs[0]["strength"] or 0.0})
    return rows


def _levels(runs: list[dict], skip: str = "") -> list[str]:
    """The sparsities or ratios of a part's variants as their names write them ("50%"), in run order."""
    return list(dict.fromkeys(r["variant"].split(" ")[1] for r in runs if r["variant"] != skip))


CSV_FIELDS = ("section", "variant", "seeds", "steps", "kernel_sparsity", "masked_sparsity", "val_top1", "keras_top1", "int8_top1", "int8_top1_std",
              "interval", "reference", "diff", "diff_std", "noise", "target", "verdict", "macs_vs_dense", "params_vs_dense", "latency_ms",
              "latency_vs_dense", "latency_noise", "latency_target", "latency_verdict", "groups", "criterion", "budget_rounds", "stop_reasons",
              "near_zero_weights", "oneshot_keras_top1", "oneshot_keras_top1_std", "strength", "changed_fraction")


# ---- tables -----------------------------------------------------------------------------------------------


def _acc_cells(r: dict) -> list[str]:
    if not r.get("seeds"):
        return ["-"] * 5
    return [pm(r["int8_top1"], r["int8_top1_std"]), f"{100 * r['interval']:.2f}", signed_pm(r["diff"], r["diff_std"]) + f" vs {r['reference']}",
            f"{100 * r['noise']:.2f}", r["verdict"] or "-"]


def _timed_seed(latency: dict) -> str:
    """Which seed's structured files the latency run timed (results cached before it recorded them timed the first seed's)."""
    seeds = sorted(set(latency.get("seeds", {}).values()))
    if not seeds:
        return "first seed's file"
    return f"seed {seeds[0]}'s file" if len(seeds) == 1 else f"one seed's file each, seeds {', '.join(map(str, seeds))}"


def _machine(line: str | None) -> str:
    return line or "a machine not recorded (results cached before runs recorded it)"


def _table_machine_text(data: dict) -> str:
    """Where the budget mode's cost table was measured, and whether that is the machine of the latency run."""
    table, latency = data["budget"].get("table_machine"), data["latency"].get("machine")
    text = f"Cost table measured on {_machine(table)}"
    if table and latency and table != latency:
        return (text + ": not the machine of the latency run, so the budget rounds planned on another machine's latencies "
                "(int8 costs differ with and without VNNI); the latency verdicts are the latency run's.")
    if table and latency:
        return text + ", the machine of the latency run."
    return text + "."


def _lat_cells(r: dict) -> list[str]:
    if "latency_vs_dense" not in r:
        return ["-"] * 3
    return [f"{r['latency_ms']:.3f}", f"{r['latency_vs_dense']:.3f} ± {r.get('latency_noise', 0.0):.3f}", r.get("latency_verdict") or "-"]


def tables_markdown(data: dict) -> str:
    """pruning_criteria.md without its findings."""
    s, base, rows = data["settings"], data["baseline"], summary(data)
    sec = lambda name: [r for r in rows if r["section"] == name]  # noqa: E731
    sc, b = s["scratch"], s["budget"]
    md = ["# Pruning beyond magnitude: saliency criteria, sparse training, latency budgets, L1 (Fashion-MNIST)", "", *_QUICK_NOTE[: 2 * data["quick"]],
          f"Machine: {data['machine']}.", "",
          *wrap(f"Baseline: `{base['file']}`, MobileNetV2 alpha 0.35 at 28x28x3 (recipes/fmnist_mobilenet_v2.toml, {s['baseline_epochs']} epochs = "
                f"{s['baseline_train_steps']:,} steps): test top-1 {_pct(base['keras_top1'])}% Keras, {_pct(base['int8_top1'])}% int8; validation "
                f"{_pct(base['val_top1'])}%. {plural(len(data['seeds']), 'seed')} per row (data order, masks, the {s['calibration']} int8 calibration "
                "images, initial weights from scratch). Int8 top-1 is mean ± sample std over seeds on the "
                f"{data['test_images']:,} test images, read once per reported model; ± 95%: the test-sampling interval; \"vs\": the "
                "difference to the reference (paired by seed where the reference is a row), noise: the seeds' 95% interval and the test "
                "sampling in quadrature; verdict: the target met or missed beyond that noise, or within noise. Validation decides every choice. "
                f"Raw per-seed results: `{DATA}`. Command: `PYTHONPATH=. python {data['cmd']}`."), ""]
    md += ["## Unstructured: saliency of single weights", "",
           *wrap(f"`saliency_prune` from the baseline, layer-wise over every conv/dense kernel (first convolution and classifier included), "
                 f"{s['rounds']} rounds of score -> remove -> fine-tune, {s['steps']:,} steps of batch 128 in all (Adam {s['learning_rate']:g}, "
                 f"cosine per round, label smoothing 0.1). Data criteria read {s['saliency']['batches']} training batches; {_fisher_text(s['saliency'])} "
                 "Activation-based for single weights: Wanda, |w| times the L2 norm of the input channel the weight multiplies over those "
                 "images (Sun et al. 2023); the channel statistics (mean activation, APoZ, variance) score output channels: structured part. "
                 "Magnitude is checked against the baseline, the other criteria against magnitude at the same sparsity."), ""]
    head = ["variant", "seeds", "steps", "kernel sparsity %", "int8 top-1 %", "± 95% test", "vs reference (points)", "noise ±", "verdict", "target",
            "validation %"]
    md += md_table(head, ([r["variant"], r["seeds"], f"{r['steps']:,}", _pct(r["kernel_sparsity"]), *_acc_cells(r), r["target"], _pct(r["val_top1"])]
                          for r in sec("unstructured")), "lrr" + "r" * 4 + "lllr")
    md += ["", "## From scratch: SNIP, GraSP, SET, RigL", "",
           *wrap(f"Every row trains a fresh model of the baseline's architecture for {sc['steps']:,} steps ({sc['epochs']} epochs; Adam "
                 f"{sc['train']['learning_rate']:g}, {100 * sc['train']['warmup_fraction']:g}% warm-up, cosine, weight decay "
                 f"{sc['train']['weight_decay']:g}, label smoothing {sc['train']['label_smoothing']:g}, no augmentation): a shorter "
                 f"dense-equivalent budget than the baseline's {s['baseline_train_steps']:,} training + {s['steps']:,} fine-tune steps, the same "
                 "for every from-scratch row, and the dense model trained the same way is their reference. SNIP and GraSP: masks at "
                 f"initialization from one training batch, ranked globally, fixed{_capped_note(sc)}; SET and RigL: ERK masks, drop "
                 f"{sc['dynamic']['drop_fraction']:g} of each layer's live weights every {sc['dynamic']['update_every']} steps until "
                 f"{100 * sc['dynamic']['end_fraction']:g}% of training ({sc['dynamic']['schedule']} decay). The first convolution stays "
                 "dense: 'masked sparsity' is over the masked layers, 'kernel sparsity' over every conv/dense kernel."), ""]
    head = ["variant", "seeds", "steps", "masked sparsity %", "kernel sparsity %", "int8 top-1 %", "± 95% test", "vs reference (points)", "noise ±",
            "verdict", "target", "mask changed %"]
    scratch_table = lambda section: md_table(head, ([r["variant"], r["seeds"], f"{r['steps']:,}", _pct(r["masked_sparsity"]), _pct(r["kernel_sparsity"]),  # noqa: E731
                                                     *_acc_cells(r), r["target"], _pct(r["changed_fraction"])] for r in sec(section)), "lrr" + "r" * 6 + "llr")
    md += scratch_table("scratch")
    if data.get("scratch_full") or data.get("pending", {}).get("scratch_full"):
        full = s["scratch_full"]
        md += ["", f"## From scratch at the issue's budget: {', '.join(NAMES[m] for m in full['methods'])} at "
               f"{', '.join(_levels(data['scratch_full']))}", "",
               *wrap(f"As above, but each run trains {full['steps']:,} steps ({full['epochs']} epochs of {full['steps'] // full['epochs']:,}), the "
                     f"baseline's {s['baseline_train_steps']:,} training steps plus the {s['steps']:,} fine-tune steps of a prune-after-training row, "
                     f"with the baseline's training augmentation ({_augment_text(full['augment'])}), as the issue asks. The reference is "
                     f"magnitude pruning of the baseline at the same sparsity, the same steps in all, paired by seed. The two place their zeros "
                     "differently: the prune-after-training rows remove that share of every conv/dense kernel (layer-wise, the first convolution "
                     "and the classifier included), these rows spread it over the masked layers (GraSP by its global ranking, SET and RigL by "
                     "ERK) and keep the first convolution dense; 'kernel sparsity' counts both over every conv/dense kernel. "
                     + ("The layout control below prunes after training to these rows' layer sparsities. " if "layout_control" in s else "")
                     + _pending_text(data, "scratch_full"))]
        if sec("scratch_full"):  # unfinished, it may have no variant with every seed yet
            md += ["", *scratch_table("scratch_full")]
    if "layout_control" in s and (data.get("layout_control") or data.get("pending", {}).get("layout_control")):
        md += ["", "## Layout control: magnitude after training with the from-scratch layouts", "",
               *wrap("The control that separates when the zeros are chosen from where they go: `saliency_prune` from the baseline by "
                     "magnitude to exactly the layer sparsities of a from-scratch row (`layer_sparsity`): GraSP's (from its run of the same "
                     "seed) or ERK's (SET's and RigL's), the first convolution left whole, in the "
                     f"{s['rounds']} rounds and {s['steps']:,} steps of the unstructured rows, the same steps in all as the rows above. "
                     "Reference: layer-wise magnitude at the same sparsity, paired by seed. " + _pending_text(data, "layout_control"))]
        if sec("layout_control"):
            head = ["variant", "seeds", "steps", "masked sparsity %", "kernel sparsity %", "int8 top-1 %", "± 95% test", "vs reference (points)",
                    "noise ±", "verdict", "target", "validation %"]
            md += ["", *md_table(head, ([r["variant"], r["seeds"], f"{r['steps']:,}", _pct(r["masked_sparsity"]), _pct(r["kernel_sparsity"]),
                                         *_acc_cells(r), r["target"], _pct(r["val_top1"])] for r in sec("layout_control")), "lrr" + "r" * 6 + "llr")]
    md += ["", "## Structured: filter saliency against measured int8 latency", "",
           *wrap(f"`saliency_prune` with filters: the given share of every internal channel group (MobileNetV2's expansion channels) removed in "
                 f"{s['rounds']} rounds, {s['steps']:,} steps at {s['structured_learning_rate']:g}. Every criterion keeps the same number of "
                 f"channels per group, so the architecture (and latency) differ only by which channels go. Latency: int8, 1 thread, XNNPACK, batch "
                 f"1, every file interleaved in one run, median of {s['latency']['rounds']} rounds of per-round medians ({_timed_seed(data['latency'])}; "
                 f"± the rounds' 95% interval), measured on {_machine(data['latency'].get('machine'))}. Targets: within 0.5 point of the "
                 "baseline, latency at most 0.5x."), ""]
    head = ["variant", "seeds", "MACs vs dense", "params vs dense", "int8 top-1 %", "± 95% test", "vs reference (points)", "noise ±", "accuracy verdict",
            "int8 ms", "latency vs dense", "latency verdict"]
    lat_rows = [rows[0]] + sec("structured")
    md += md_table(head, ([r["variant"], r["seeds"] or "fixed", f"{r['macs_vs_dense']:.3f}", f"{r['params_vs_dense']:.3f}",
                           *(_acc_cells(r) if r["seeds"] else [_pct(r["int8_top1"]), f"{100 * r['interval']:.2f}", "-", "-", "-"]), *_lat_cells(r)]
                          for r in lat_rows), "lrrr" + "r" * 4 + "lrrl")
    bud = data["budget"]
    feas = bud["feasibility"]
    md += ["", "## Latency budget (NetAdapt-like `budget_prune`)", "",
           *wrap(f"Feasibility first: the cost table (whole-model int8 latency with one group cut to {b['table_points']} channel counts, "
                 + (f"each timed {b['pairs']} times right before the baseline, the median ratio counting; rounds are timed the same way; "
                    if b.get("pairs") else "")
                 + f"{len(bud['table']['curves'])} groups, measured once in {bud['table']['seconds']:.0f} s; baseline {bud['table']['base']:.3f} ms, the "
                 f"median of {len(bud['table']['base_samples'])} measurements ({span(bud['table']['base_samples'], '{:.3f}')} ms); every group at "
                 f"the floor {bud['table']['floor']:.3f} ms, where its predictions are clamped) "
                 f"predicts the least latency, every group at its floor ({bud['floor_channels']} channels), as the sum of the groups' savings: "
                 f"{feas['internal']['min_ratio']:.3f}x of the baseline cutting the {feas['internal']['groups']} internal groups, "
                 f"{feas['all']['min_ratio']:.3f}x cutting all {feas['all']['groups']}; those floor models measure "
                 f"{feas['internal']['floor_ratio']:.3f}x and {feas['all']['floor_ratio']:.3f}x (3 interleaved rounds). {_table_machine_text(data)} "
                 "Each budget uses the smallest scope whose floor model reaches it. "
                 f"Criterion: {FILTER_NAMES[bud['criterion']]}, the best mean validation top-1 of the structured part at its largest ratio "
                 f"({', '.join(f'{FILTER_NAMES[c]} {_pct(v)}%' for c, v in bud['criterion_val_top1'].items())}). Rounds cut {100 * b['step']:g}% of the "
                 f"last measured latency by the table's prediction, in chunks of {b['round_to']} channels, each followed by {b['round_steps']} "
                 f"fine-tune steps at {s['structured_learning_rate']:g}; then {s['steps']:,} steps keeping the best of {s['checks']} validation "
                 "checks. Latency verdicts: the seeds' ratios (interleaved run) against the budget."), ""]
    head = ["budget", "seeds", "groups", "rounds (mean)", "stopped by", "MACs vs dense", "int8 top-1 %", "± 95% test", "vs reference (points)", "noise ±",
            "accuracy verdict", "target", "int8 ms (mean)", "latency vs dense", "latency verdict"]
    md += md_table(head, ([r["variant"], r["seeds"], r.get("groups", "-"), f"{r['budget_rounds']:.1f}" if r["seeds"] else "-", r.get("stop_reasons", "-"),
                           f"{r['macs_vs_dense']:.3f}" if r["seeds"] else "-", *_acc_cells(r), r["target"], *_lat_cells(r)]
                          for r in sec("budget")), "lrlrlr" + "r" * 4 + "llrrl")
    reg = data["regularization"]
    l1 = s["l1"]
    md += ["", "## L1 regularization before pruning", "",
           *wrap(f"Phase 1: {s['steps']:,} fine-tune steps from the baseline (Adam {s['learning_rate']:g}, cosine) with an L1 penalty on every "
                 f"conv/dense kernel, or without (control). The strength is chosen on seed 0's validation split: among "
                 f"{', '.join(f'{v:g}' for v in l1['strengths'])}, those within {100 * l1['dense_slack']:g} point of the control before pruning, the "
                 f"one whose one-shot magnitude cut to {_level(max(l1['sparsities']))} keeps the best validation top-1: **{reg['strength']:g}**. "
                 "Near-zero: |w| below a share of its layer's largest |w| (before pruning). Phase 2: the unstructured part's magnitude pruning "
                 "(no penalty); 'one-shot' is the test top-1 (Keras) of the phase-1 model cut to the sparsity at once, before any fine-tune."), ""]
    md += md_table(["phase 1 (seed 0)", "strength", "validation %", "near-zero weights %", "near-zero filters %",
                    *(f"one-shot {k} validation %" for k in reg["phase1"][0]["oneshot_val_top1"])],
                   ([r["variant"], f"{r['strength']:g}" if r["strength"] else "-", _pct(r["val_top1"]), _pct(r["near_zero_weights"]),
                     _pct(r["near_zero_filters"]), *(_pct(v) for v in r["oneshot_val_top1"].values())]
                    for r in reg["phase1"] if r["seed"] == data["seeds"][0]), "lrrrr" + "r" * len(l1["sparsities"]))
    md += [""]
    head = ["variant", "seeds", "near-zero weights % (phase 1)", "one-shot Keras top-1 %", "int8 top-1 %", "± 95% test", "vs reference (points)", "noise ±",
            "verdict", "target"]
    md += md_table(head, ([r["variant"], r["seeds"], _pct(r["near_zero_weights"]), pm(r["oneshot_keras_top1"], r["oneshot_keras_top1_std"]), *_acc_cells(r),
                           r["target"]] for r in sec("regularization")), "lrrr" + "r" * 4 + "ll")
    md += ["", "## Every run", "", "Test top-1 read once per model; validation top-1 of the kept model.", ""]
    runs = every_run(data)
    md += md_table(["part", "variant", "seed", "steps", "validation %", "Keras test %", "int8 test %", "kernel sparsity %", "MACs", "seconds"],
                   ([p, r["variant"], r["seed"], f"{r['steps']:,}", _pct(r["val_top1"]), _pct(r["keras_top1"]), _pct(r["int8_top1"]),
                     _pct(r["kernel_sparsity"]), f"{r['macs']:,}", f"{r['seconds']:.0f}"] for p, r in runs), "llrr" + "r" * 6)
    return "\n".join(md) + "\n"


# ---- findings ---------------------------------------------------------------------------------------------


def every_run(data: dict) -> list[tuple[str, dict]]:
    """(part, run) for every trained and measured model: unstructured, from scratch, structured, feasible budget runs,
    regularization (phase 2)."""
    return ([("unstructured", r) for r in data["unstructured"]] + [("scratch", r) for r in data["scratch"]]
            + [("scratch_full", r) for r in data.get("scratch_full", [])] + [("layout_control", r) for r in data.get("layout_control", [])]
            + [("structured", r) for r in data["structured"]]
            + [("budget", r) for r in data["budget"]["runs"] if r["feasible"]] + [("regularization", r) for r in data["regularization"]["runs"]])


def _int8_drop(r: dict) -> float:
    """How much a run's int8 test top-1 is below its Keras test top-1 (fraction; negative when int8 scored higher)."""
    return r["keras_top1"] - r["int8_top1"]


def int8_losses(data: dict) -> list[tuple[str, dict]]:
    """The runs whose int8 model scored below their Keras model by more than the test-sampling 95% interval of the Keras
    accuracy (both read on the same test images): conversion, not training, cost them accuracy."""
    images = data["test_images"]
    return [(p, r) for p, r in every_run(data) if _int8_drop(r) > sampling_interval(r["keras_top1"], images)]


def _refused_bullets(data: dict) -> list[str]:
    """The runs whose int8 file LiteRT's XNNPACK delegate refused to prepare (measured on the builtin kernels)."""
    refused = [(p, r) for p, r in every_run(data) if r.get("xnnpack_error")]
    if not refused:
        return []

    def why(r: dict) -> str:
        ops = r.get("xnnpack_requantization")
        return (f" (requantization scale up to {max(o['max_scale'] for o in ops):,.0f} in {', '.join(sorted({o['op'] for o in ops}))}, output scale "
                f"{min(o['output_scale'] for o in ops):.2g}: XNNPACK needs it below {r['xnnpack_bound']:g}; a nearly constant output)") if ops else ""

    return wrap("LiteRT's XNNPACK delegate refused to prepare the int8 file of "
                + "; ".join(f"{p} {r['variant']} seed {r['seed']}{why(r)}" for p, r in refused)
                + ": its int8 top-1 is LiteRT's builtin kernels' (the error is `xnnpack_error` in the raw results; the file and the Keras "
                "model are kept for diagnosis, `unloadable_file`).", "* ")


def _int8_bullets(data: dict) -> list[str]:
    losses = int8_losses(data)
    if not losses:
        worst = max((r for _, r in every_run(data)), key=_int8_drop)
        return wrap(f"Every model's int8 test top-1 is within the test-sampling interval of its Keras model's (largest drop "
                    f"{100 * _int8_drop(worst):.2f} points, {worst['variant']} seed {worst['seed']}).", "* ") + _refused_bullets(data)
    text = ("Int8 conversion cost more than the test-sampling interval of the Keras accuracy in: "
            + "; ".join(f"{p} {r['variant']} seed {r['seed']} (Keras {_pct(r['keras_top1'])}% -> int8 {_pct(r['int8_top1'])}%, "
                        f"{-100 * _int8_drop(r):+.2f} points)" for p, r in losses)
            + ". Rows' int8 means include these runs; the Keras test column of \"Every run\" in pruning_criteria.md shows the model before conversion.")
    lines = wrap(text, "* ")
    for p, r in losses:
        if "int8_repair" in r:
            lines += wrap(_repair_text(p, r), "* ")
    lines += _refused_bullets(data)
    undiagnosed = [f"{p} {r['variant']} seed {r['seed']}" for p, r in losses if "int8_repair" not in r]
    if undiagnosed:
        lines += wrap(f"Not diagnosed (cached before the benchmark diagnosed conversion losses): {', '.join(undiagnosed)}.", "* ")
    return lines


# what quant_report's likely causes (edgeopt.bench.quant_report.CAUSES) say, with the tensor's number behind each
_CAUSES = {"fixed_range": lambda t: "an int8 kernel with a fixed output range",
           "too_few_calibration_images": lambda t: f"{100 * t['clipped_fraction']:.2f}% of its values clipped, too few calibration images",
           "clipping": lambda t: f"{100 * t['clipped_fraction']:.2f}% of its values clipped by the calibrated int8 range",
           "weights": lambda t: f"its int8 weights (error {1 / t['step_error_share']:.0f}x what rounding its output gives)",
           "outlier_channels": lambda t: f"outlier channels (the widest spans {t['channel_range_ratio']:.0f}x the median channel)",
           "outliers": lambda t: f"outlier values (max |x| {t['abs_max_over_p999']:.0f}x the 99.9th percentile)",
           "residual_add": lambda t: "a residual Add's wide range", "rounding": lambda t: "no rule matched (int8 rounding)"}


def _repair_text(part: str, r: dict) -> str:
    """One run's diagnosis (quantize_report's worst tensor) and repair (auto_fallback's layers kept float)."""
    fix = r["int8_repair"]
    worst, steps = fix["worst_tensors"][0], fix["steps"]
    layers = ", ".join(f"`{n}`" for n in worst["layers"]) or f"`{worst['tensor']}`"
    text = (f"{part} {r['variant']} seed {r['seed']}: the worst of {fix['tensors']} int8 tensors (on {fix['debug_images']} validation images) is {layers}'s "
            f"{worst['op']} output, channel SNR {worst['channel_snr_db']:.1f} dB; likely cause: {_CAUSES[worst['cause']](worst)}. ")
    if len(steps) == 1:
        return text + "auto_fallback found no layer to keep float."
    chosen = fix.get("chosen", len(steps) - 1)  # results cached before auto_fallback chose its best step measured its last
    pick, gaps = steps[chosen], " -> ".join(f"{s['gap_points']:.2f}" for s in steps)
    kept = ", ".join(f"`{n}`" for n in pick["float_layers"]) or "no layer"
    text += (f"auto_fallback kept float, one more worst tensor's layers a step, up to {', '.join(f'`{n}`' for n in steps[-1]['float_layers'])}: "
             f"the gap to Keras on {fix['val_images']:,} validation images went {gaps} points. The file it "
             f"{'chose there' if 'chosen' in fix else 'returned (its last step: cached before it chose the best one)'} keeps {kept} float "
             f"({'within' if fix['reached'] else 'not within'} its {fix['target_points']:g}-point target) and scores {_pct(fix['test_top1'])}% int8 "
             f"test top-1 ({100 * (fix['test_top1'] - r['int8_top1']):+.2f} points over the all-int8 file), {pick['size_cost_bytes']:,} bytes larger.")
    if min(s["gap_points"] for s in steps[1:]) >= steps[0]["gap_points"]:
        text += " Keeping the worst tensors' layers float won nothing back: the loss is spread over many layers, not one layer's."
    return text

_QUICK_NOTE = ["**A `--quick` smoke run**: the untrained stand-in model, a few steps, one seed; the numbers test the code, not the methods.", ""]
_VS_MAGNITUDE = {"met": "better than magnitude", "missed": "worse than magnitude", "within noise": "no different from magnitude beyond noise"}
_VS_DENSE = {"met": "above dense", "missed": "below dense", "within noise": "level with dense within noise"}


def _acc(r: dict) -> str:
    return f"{pm(r['int8_top1'], r['int8_top1_std'])}%"


def _vs(r: dict) -> str:
    return f"{signed_pm(r['diff'], r['diff_std'])} vs {r['reference']}, noise ±{100 * r['noise']:.2f}"


def _method(r: dict, names: dict = NAMES) -> str:
    """The display name of a run's or row's method (its variant's first word: "taylor 75%" -> "Taylor")."""
    return names[r["variant"].split(" ")[0]]


def _run_name(r: dict) -> str:
    """One run by method, level and seed: "SNIP 90% seed 0"."""
    return f"{_method(r)} {r['variant'].split(' ', 1)[1]} seed {r['seed']}"


def _noise_between(a: list[dict], b: list[dict], images: int) -> tuple[float, float]:
    """Mean difference of two rows' int8 top-1 (points) and its 95% noise."""
    va, vb = [r["int8_top1"] for r in a], [r["int8_top1"] for r in b]
    return 100 * (mean_std(va)[0] - mean_std(vb)[0]), 100 * difference_noise(va, vb, images)


def _unstructured_bullets(data: dict, rows: dict) -> list[str]:
    s = data["settings"]
    out = []
    for lvl in _levels(data["unstructured"]):
        mag = rows[f"l1 {lvl}"]
        text = (f"{lvl} of the weights: magnitude {_acc(mag)} ({_vs(mag)}; target {mag['target']}"
                + (f": **{mag['verdict']}**)" if mag["verdict"] else ")"))
        others = [rows[f"{c} {lvl}"] for c in s["weight_criteria"] if c != "l1"]
        text += "".join(f"; {_method(r)} {_acc(r)} ({signed_pm(r['diff'], r['diff_std'])} vs magnitude, noise "
                        f"±{100 * r['noise']:.2f}: **{_VS_MAGNITUDE[r['verdict']]}**)" for r in others)
        best = max([mag, *others], key=lambda r: r["int8_top1"])
        out += wrap(text + f". Highest mean: {_method(best)}.", "* ")
    out += wrap("Wanda is the activation-based criterion for single weights (a weight's magnitude times the L2 norm of the input channel "
                "it multiplies); the channel statistics (mean activation, APoZ, variance) describe whole output channels and are in the "
                "structured part.", "* ")
    return out


def _scratch_bullets(data: dict, rows: dict) -> list[str]:
    s, images = data["settings"], data["test_images"]
    sc, dense = s["scratch"], rows["dense"]
    by = _by_variant(data["scratch"])
    full = s["baseline_train_steps"] + s["steps"]
    out = wrap(f"Every from-scratch row trained {sc['steps']:,} steps ({sc['epochs']} epochs), {100 * sc['steps'] / full:.0f}% of the baseline's "
               f"{s['baseline_train_steps']:,} training + {s['steps']:,} fine-tune steps (the stated shorter budget). The dense model trained the "
               f"same way reaches {_acc(dense)} ({_vs(dense)}): that is what the shorter budget alone costs.", "* ")
    for lvl in _levels(data["scratch"], skip="dense"):
        methods = [rows[f"{m} {lvl}"] for m in ("snip", "grasp", "set", "rigl")]
        best = max(methods, key=lambda r: r["int8_top1"])
        mag = _by_variant(data["unstructured"])[f"l1 {lvl}"]
        gap, gap_noise = _noise_between(by[best["variant"]], mag, images)
        rs, rs_noise = _noise_between(by[f"rigl {lvl}"], by[f"set {lvl}"], images)
        text = (f"{lvl} from scratch: " + ", ".join(f"{_method(r)} {_acc(r)} ({signed_pm(r['diff'], r['diff_std'])}: "
                                                       f"**{_VS_DENSE[r['verdict']]}**)" for r in methods)
                + f" against the dense reference (noise ±{100 * max(r['noise'] for r in methods):.2f} at most). RigL vs SET: {rs:+.2f} points "
                f"(noise ±{rs_noise:.2f}, {verdict(rs / 100, rs_noise / 100).replace('met', 'RigL ahead').replace('missed', 'SET ahead')}). The best, "
                f"{_method(best)}, is {gap:+.2f} points (noise ±{gap_noise:.2f}) from magnitude-pruning the well-trained "
                f"baseline with {s['steps']:,} fine-tune steps.")
        out += wrap(text, "* ")
    return out + _collapse_bullets(data) + _capped_bullets(data, rows)


def _augment_text(augment: dict) -> str:
    return "left-right flips, shifts of up to " + plural(augment["crop_padding"], "pixel") if augment.get("augment") else "none"


_VS_AFTER = {"met": "ahead of", "missed": "behind", "within noise": "level within noise with"}


def _scratch_full_bullets(data: dict, rows: dict, controls: dict) -> list[str]:
    """The issue's budget: each method against magnitude pruning of the baseline at the same sparsity (the same steps in
    all), the best criterion after training, the baseline itself and the same method at the shorter budget."""
    pending = _pending_text(data, "scratch_full")
    if not rows:
        return wrap(f"At the issue's budget: no variant has every seed yet. {pending}", "* ") if pending else []
    s, images = data["settings"], data["test_images"]
    full, methods = s["scratch_full"], list(rows.values())
    level = methods[0]["variant"].split(" ")[1]  # "90%"
    un, short, by = _by_variant(data["unstructured"]), _by_variant(data["scratch"]), _complete(data, "scratch_full")
    best_after = max((un[f"{c} {level}"] for c in s["weight_criteria"]), key=lambda rs: mean_std([r["int8_top1"] for r in rs])[0])
    out = wrap(f"At the issue's budget ({full['steps']:,} steps, the baseline's {s['baseline_train_steps']:,} training steps plus the "
               f"{s['steps']:,}-step fine-tune, training augmentation: {_augment_text(full['augment'])}), {level}: "
               + ", ".join(f"{_method(r)} {_acc(r)} ({signed_pm(r['diff'], r['diff_std'])}, noise ±{100 * r['noise']:.2f}: **{_VS_AFTER[r['verdict']]}** "
                           "magnitude pruning after training)" for r in methods)
               + f". Magnitude after training: {pm(*mean_std([r['int8_top1'] for r in un['l1 ' + level]]))}%.", "* ")
    top = max(methods, key=lambda r: r["int8_top1"])
    gap, noise = _noise_between(by[top["variant"]], best_after, images)
    out += wrap(f"The best of them, {_method(top)}, against the best criterion after training at {level} ({_method(best_after[0])}, "
                f"{pm(*mean_std([r['int8_top1'] for r in best_after]))}%): {gap:+.2f} points (noise ±{noise:.2f}, "
                f"{verdict(gap / 100, noise / 100).replace('met', 'from scratch ahead').replace('missed', 'after training ahead')}). Against the "
                f"dense baseline ({_pct(data['baseline']['int8_top1'])}%): "
                + ", ".join(f"{_method(r)} {100 * (r['int8_top1'] - data['baseline']['int8_top1']):+.2f}" for r in methods) + " points.", "* ")
    longer = []
    for r in methods:
        if r["variant"] in short:
            g, n = _noise_between(by[r["variant"]], short[r["variant"]], images)
            longer.append(f"{_method(r)} {g:+.2f} (noise ±{n:.2f})")
    if longer:
        augmented = "; the longer runs also train with augmentation" if full["augment"].get("augment") else ""
        out += wrap(f"What the longer budget buys ({full['steps']:,} against {s['scratch']['steps']:,} steps, the same method and sparsity"
                    f"{augmented}): " + ", ".join(longer) + " points.", "* ")
    if f"rigl {level}" in by and f"set {level}" in by:
        rs, rs_noise = _noise_between(by[f"rigl {level}"], by[f"set {level}"], images)
        out += wrap(f"RigL vs SET at this budget: {rs:+.2f} points (noise ±{rs_noise:.2f}, "
                    f"{verdict(rs / 100, rs_noise / 100).replace('met', 'RigL ahead').replace('missed', 'SET ahead')}).", "* ")
    return out + _layout_control_bullets(data, methods, by, controls) + (wrap(pending, "* ") if pending else [])


def _layout_control_bullets(data: dict, methods: list[dict], full: dict[str, list[dict]], rows: dict) -> list[str]:
    """The layout controls (magnitude after training to a from-scratch row's layer sparsities; ``rows``, their summary
    rows by variant): what the layout alone changes after training, and each from-scratch row (``methods``, summary
    rows; ``full``, their runs by variant) against the control of its layout."""
    controls = _complete(data, "layout_control")
    pending = _pending_text(data, "layout_control")
    if not controls:
        return wrap(f"Layout control: no variant has every seed yet. {pending}", "* ") if pending else []
    s, images, out = data["settings"], data["test_images"], []
    for name, runs in controls.items():
        level, layout = name.split(" ")[1:3]
        row = rows[name]
        collapsed = sorted({n for r in runs for n in r.get("collapsed_layers", {})})
        against, parts = [], []
        for m in methods:
            method, m_level = m["variant"].split(" ")
            if m_level == level and LAYOUT_OF.get(method) == layout:
                g, n = _noise_between(full[m["variant"]], runs, images)
                against.append(f"{_method(m)} {g:+.2f} (noise ±{n:.2f}, "
                               f"{verdict(g / 100, n / 100).replace('met', 'from scratch ahead').replace('missed', 'after training ahead')})")
                parts.append(f"{_method(m)}'s {100 * m['diff']:+.2f} points: {100 * row['diff']:+.2f} where, {g:+.2f} when")
        out += wrap(f"Layout control, {LAYOUT_NAMES[layout]} at {level}: magnitude after training (the baseline's {s['baseline_train_steps']:,} "
                    f"steps plus {row['steps']:,} fine-tune steps) {_acc(row)} ({signed_pm(row['diff'], row['diff_std'])} vs layer-wise magnitude, noise "
                    f"±{100 * row['noise']:.2f}: the layout alone **{_LAYOUT[row['verdict']]}**; "
                    + (f"layers collapsed in some seed: {', '.join(collapsed)}" if collapsed else "no layer collapsed") + "). "
                    + ("From scratch against it (the same layout): " + ", ".join(against) + " points. The lead over layer-wise magnitude "
                       "split into where the zeros go and when they are chosen: " + "; ".join(parts) + "." if against else ""), "* ")
    return out + (wrap(pending, "* ") if pending else [])


# the layout of each from-scratch method's layer sparsities, and its name
LAYOUT_OF = {"grasp": "grasp", "set": "erk", "rigl": "erk"}
LAYOUT_NAMES = {"grasp": "GraSP's layer sparsities (paired by seed)", "erk": "ERK's layer sparsities (SET's and RigL's)"}
_LAYOUT = {"met": "helps", "missed": "hurts", "within noise": "changes nothing beyond noise"}


def _capped_note(sc: dict) -> str:
    """How the capped SNIP row differs (for the table's description); empty for data without it."""
    cap = sc.get("capped")
    return (f" (`{cap['variant']}`: SNIP's ranking with no layer above {100 * cap['max_layer_sparsity']:g}% zeros, `max_layer_sparsity`: the "
            "rest of the count goes to the other layers in the same ranking)") if cap else ""


def _capped_bullets(data: dict, rows: dict) -> list[str]:
    """The capped SNIP row against uncapped SNIP at the same sparsity and the dense reference."""
    cap = data["settings"]["scratch"].get("capped")
    capped = [r for name, r in rows.items() if cap and name.split(" ")[0] == cap["variant"]]
    if not capped:
        return []
    r = capped[0]
    level = r["variant"].split(" ", 1)[1]
    by = _by_variant(data["scratch"])
    plain = rows.get(f"{cap['method']} {level}")
    gap, gap_noise = _noise_between(by[r["variant"]], by[plain["variant"]], data["test_images"]) if plain else (None, None)
    leftover = sorted({n for run in by[r["variant"]] for n in collapsed_layers(run, data["settings"]["scratch"].get("layers"))})
    text = (f"Capping each layer at {100 * cap['max_layer_sparsity']:g}% zeros (`max_layer_sparsity`), SNIP {level} reaches {_acc(r)} "
            f"({signed_pm(r['diff'], r['diff_std'])}: **{_VS_DENSE[r['verdict']]}**)"
            + (f", {gap:+.2f} points from uncapped SNIP {level} (noise ±{gap_noise:.2f}, {verdict(gap / 100, gap_noise / 100)})" if plain else "")
            + ("; no layer of those runs collapsed." if not leftover else f"; still collapsed: {', '.join(f'`{n}`' for n in leftover)}."))
    return wrap(text, "* ")


def collapsed_layers(run: dict, layers: dict | None = None) -> dict[str, int]:
    """The masked layers of a from-scratch run left with fewer weights than output channels (layer collapse: at least
    the difference of its outputs no longer depends on its input), with the weights each kept: the run's own
    ``collapsed_layers`` when it recorded them, else from its ``layer_sparsity`` and the baseline's ``layers``
    (weights and outputs per masked layer), else the layers it cut whole; empty for a run that recorded neither."""
    if "collapsed_layers" in run:
        return dict(run["collapsed_layers"])
    sparsity = run.get("layer_sparsity") or {}
    if not layers:
        return {n: 0 for n, v in sparsity.items() if v >= 1.0}
    kept = {n: round((1.0 - v) * layers[n]["weights"]) for n, v in sparsity.items()}
    return {n: k for n, k in kept.items() if k < layers[n]["outputs"]}


def _collapse_bullets(data: dict) -> list[str]:
    runs, layers = data["scratch"], data["settings"]["scratch"].get("layers")
    masked = [r for r in runs if r["variant"] != "dense"]
    unrecorded = [r for r in masked if "layer_sparsity" not in r and "collapsed_layers" not in r]
    collapsed = [(r, names) for r in masked if (names := collapsed_layers(r, layers))]

    def kept(name: str, k: int) -> str:
        return (f"`{name}` {k:,} of {layers[name]['weights']:,} weights ({layers[name]['outputs']:,} outputs)" if layers
                else f"`{name}` {k:,} weights")

    text = ("Layer collapse (a masked layer left with fewer weights than output channels, so at least the difference of its outputs no longer "
            "depends on its input): "
            + ("; ".join(f"{_run_name(r)} left {', '.join(kept(n, k) for n, k in names.items())} and ended at {_pct(r['int8_top1'])}% int8"
                         for r, names in collapsed) if collapsed else "no from-scratch run collapsed a layer")
            + ". Each run records its layers' mask sparsity (`layer_sparsity` in the raw results)")
    if unrecorded:
        text += ("; runs cached before that field do not: " + ", ".join(_run_name(r) for r in unrecorded))
    return wrap(text + ".", "* ")


def _structured_bullets(data: dict, rows: dict) -> list[str]:
    s = data["settings"]
    out = []
    for lvl in _levels(data["structured"]):
        crit = [rows[f"{c} {lvl}"] for c in s["filter_criteria"]]
        best = max(crit, key=lambda r: r["int8_top1"])
        lats = [r["latency_vs_dense"] for r in crit]
        first = crit[0]
        text = (f"{lvl} of every expansion group's channels: MACs {first['macs_vs_dense']:.3f}x, int8 latency {span(lats, '{:.3f}')}x of the "
                f"baseline over the criteria (one architecture; rounds' noise ±{max(r['latency_noise'] for r in crit):.3f}). Accuracy: "
                + ", ".join(f"{_method(r, FILTER_NAMES)} {_acc(r)}" for r in crit)
                + f". Best mean: {_method(best, FILTER_NAMES)}, {_vs(best)}; within 0.5 point: **{best['verdict']}**; latency at most "
                f"0.5x: **{best['latency_verdict']}**.")
        out += wrap(text, "* ")
    return out


def _fisher_text(saliency: dict) -> str:
    """How OBD's Hessian diagonal was estimated: the empirical Fisher per image (``fisher="sample"``, OBD with the
    empirical Fisher proper) or per batch (what earlier runs used when the per-image Jacobian did not fit in memory)."""
    if saliency["fisher"] == "sample":
        return ("OBD's Hessian diagonal is the empirical Fisher, the mean over those images of each image's squared loss gradient "
                f"(`fisher=\"sample\"`, {saliency['fisher_chunk']} images per vectorized Jacobian).")
    return (f"OBD's Fisher diagonal is taken per batch (`fisher=\"{saliency['fisher']}\"`: the squared batch-mean gradient, about the batch "
            "size smaller than the per-image Fisher, which did not fit in memory before it was computed in chunks).")


def _error_text(feas: dict) -> str:
    """How far the table's predicted floor latency is from the measured one, in points of the baseline's latency."""
    errors = [100 * (feas[s]["min_ratio"] - feas[s]["floor_ratio"]) for s in ("internal", "all")]
    return f"is off by {errors[0]:+.1f} and {errors[1]:+.1f} points of the baseline's latency"


def _budget_bullets(data: dict, rows: dict) -> list[str]:
    bud, s = data["budget"], data["settings"]
    feas = bud["feasibility"]
    out = wrap(f"Feasibility: the cost table predicts at best {feas['internal']['min_ratio']:.3f}x of the baseline's int8 latency with only the "
               f"internal groups cut to {bud['floor_channels']} channels, {feas['all']['min_ratio']:.3f}x with every group; the floor models "
               f"themselves measure {feas['internal']['floor_ratio']:.3f}x and {feas['all']['floor_ratio']:.3f}x (the table's separable sum "
               f"{_error_text(feas)}). Criterion: "
               f"{FILTER_NAMES[bud['criterion']]} (best validation top-1 in the structured part at {_level(max(s['ratios']))}).", "* ")
    by = _by_variant(bud["runs"])
    for name, runs in by.items():
        r, ratio = rows[name], runs[0]["budget_ratio"]
        speed = f"{1 / ratio:.1f}x faster"
        if not runs[0]["feasible"]:
            out += wrap(f"{speed} (max_latency_ratio {ratio:g}): infeasible, not run: the faster floor model measures "
                        f"{min(f['floor_ratio'] for f in feas.values()):.3f}x of the baseline's int8 latency.", "* ")
            continue
        lat = [data["latency"]["ms"][x["latency_key"]] / data["latency"]["ms"]["dense"] for x in runs]
        text = (f"{speed} (max_latency_ratio {ratio:g}, groups={runs[0]['groups']}): {span([len(x['rounds']) - 1 for x in runs], '{:.0f}')} rounds, "
                f"stopped by {r['stop_reasons']}; measured int8 latency {span(lat, '{:.3f}')}x of the baseline over the seeds (mean "
                f"{r['latency_vs_dense']:.3f} ± {r['latency_noise']:.3f}; at most {ratio:g}x: **{r['latency_verdict']}**), MACs "
                f"{r['macs_vs_dense']:.3f}x; int8 {_acc(r)}, {_vs(r)}")
        if r["verdict"]:
            text += f"; within 0.5 point: **{r['verdict']}**."
        else:
            text += ": that is what this speed-up costs."
        out += wrap(text, "* ")
    return out


def _regularization_bullets(data: dict, rows: dict) -> list[str]:
    reg, s, base = data["regularization"], data["settings"], data["baseline"]
    eps = reg["phase1"][0]["near_zero_eps"]
    ctrl_rows = [r for r in rows.values() if r["reference"] == "baseline"]
    pen_rows = [r for r in rows.values() if r["reference"] != "baseline"]
    out = wrap(f"L1 penalty {reg['strength']:g} (chosen on validation): near-zero weights (|w| < {100 * eps:g}% of the layer's largest) "
               f"{_pct(pen_rows[0]['near_zero_weights'])}% after the penalized fine-tune vs {_pct(ctrl_rows[0]['near_zero_weights'])}% without "
               f"it ({_pct(base['near_zero_weights'])}% in the baseline).", "* ")
    for pen in pen_rows:
        ctrl = rows[pen["reference"]]
        lvl = pen["variant"].split(" ")[1]
        effect = {"met": "helps", "missed": "hurts", "within noise": "makes no difference beyond noise"}[pen["verdict"]]
        out += wrap(f"{lvl}: one-shot cut, no fine-tune: {pm(pen['oneshot_keras_top1'], pen['oneshot_keras_top1_std'])}% with the penalty vs "
                    f"{pm(ctrl['oneshot_keras_top1'], ctrl['oneshot_keras_top1_std'])}% without (Keras). After {s['steps']:,} pruning fine-tune steps: "
                    f"{_acc(pen)} vs {_acc(ctrl)} ({signed_pm(pen['diff'], pen['diff_std'])}, noise ±{100 * pen['noise']:.2f}): the penalty "
                    f"**{effect}**; control {_vs(ctrl)}.", "* ")
    return out


def findings_markdown(data: dict) -> str:
    """pruning_criteria_findings.md: each part against its targets, every number formatted from ``data``."""
    rows: dict[str, dict[str, dict]] = defaultdict(dict)  # by section, then variant: "l1 50%" is a row of two sections
    for r in summary(data):
        rows[r["section"]][r["variant"]] = r
    base, s = data["baseline"], data["settings"]
    intro = wrap(f"{plural(len(data['seeds']), 'seed')} per row (machine: see the table's header). Baseline {_pct(base['int8_top1'])}% int8 on the "
                 f"{data['test_images']:,} test images (±{100 * sampling_interval(base['int8_top1'], data['test_images']):.2f} point test-sampling "
                 f"interval at 95%). Prune-after-training rows: {s['rounds']} rounds of score -> remove -> fine-tune, {s['steps']:,} steps in all.", "* ")
    lines = ["## Findings", "", *_QUICK_NOTE[: 2 * data["quick"]], *intro, "", "### Latency budget: the 2x target (read this first)", "", *_budget_bullets(data, rows["budget"]), "",
             "### Structured: filter criteria against int8 latency", "", *_structured_bullets(data, rows["structured"]), "",
             "### Unstructured: weight criteria after the same fine-tune", "", *_unstructured_bullets(data, rows["unstructured"]), "",
             "### Sparse training from scratch", "", *_scratch_bullets(data, rows["scratch"]), *_scratch_full_bullets(data, rows["scratch_full"], rows["layout_control"]), "",
             "### L1 regularization before pruning", "", *_regularization_bullets(data, rows["regularization"]), "",
             "### Int8 conversion against Keras", "", *_int8_bullets(data)]
    return "\n".join(lines) + "\n"


# ---- rendering --------------------------------------------------------------------------------------------


def render(out: Path, plots: bool = False) -> None:
    """pruning_criteria.md, .csv and the findings (and with ``plots`` the PNGs) from the JSON in ``out``."""
    out = Path(out)
    data = findings_data(out)
    write_csv(out / "pruning_criteria.csv", summary(data), CSV_FIELDS, "{:.6g}")
    findings = findings_markdown(data)
    write_file(out / FINDINGS, findings)
    write_file(out / "pruning_criteria.md", tables_markdown(data) + "\n" + findings)
    if plots:
        _plots(data, out)


def _plots(data: dict, out: Path) -> None:
    import matplotlib  # lazy: only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary(data)
    base = rows[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axhline(100 * base["int8_top1"] - TARGETS["drop_2x"], color="grey", ls=":", lw=1, label="baseline - 0.5 point")
    ax.axvline(TARGETS["latency_2x"], color="grey", ls="--", lw=1, label="2x faster")
    floors = [f["floor_ratio"] for f in data["budget"]["feasibility"].values() if f.get("floor_ratio")]
    if floors:  # the fastest model filter pruning can make: every group at its floor, measured
        ax.axvline(min(floors), color="tab:red", ls="-.", lw=1, label=f"floor model (every group at {data['budget']['floor_channels']} channels)")
    ax.plot([1.0], [100 * base["int8_top1"]], "k*", ms=10, label="baseline")
    markers = dict(zip(data["settings"]["filter_criteria"], "osD^v"))
    for r in rows:
        if r["section"] == "structured":
            c = r["variant"].split(" ")[0]
            ax.errorbar(r["latency_vs_dense"], 100 * r["int8_top1"], yerr=100 * r["int8_top1_std"], fmt=markers.get(c, "o"), capsize=3,
                        label=f"{FILTER_NAMES[c]} {r['variant'].split(' ')[1]}")
        elif r["section"] == "budget" and r["seeds"]:
            ax.errorbar(r["latency_vs_dense"], 100 * r["int8_top1"], xerr=r["latency_noise"], yerr=100 * r["int8_top1_std"], fmt="P", ms=9, capsize=3,
                        label=r["variant"])
    ax.set_xlabel("int8 latency vs baseline (1 thread, interleaved)")
    ax.set_ylabel("int8 test top-1 (%), mean ± std over seeds")
    ax.set_title("Structured pruning, MobileNetV2 0.35 28x28, Fashion-MNIST")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axhline(100 * base["int8_top1"], color="k", lw=1, label="baseline")
    curves: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    full = [r for runs in _complete(data, "scratch_full").values() for r in runs]
    short = f"from scratch, {data['settings']['scratch']['steps']:,} steps"
    styles = {"after training": {"fmt": "o-"}, "from scratch": {"fmt": "s--"}}  # the scratch_full points: stars, the layout controls: diamonds
    controls = [(f"after training, {NAMES.get(name.split(' ')[2], name.split(' ')[2].upper())} layout", runs, "criterion") for name, runs in _complete(data, "layout_control").items()]
    styles |= {part: {"fmt": "D", "ms": 7} for part, _, _ in controls}
    for part, runs, key in (("after training", data["unstructured"], "criterion"), ("from scratch", data["scratch"], "method"),
                            (f"from scratch, {full[0]['steps']:,} steps" if full else "", full, "method"), *controls):
        for name, rs in _by_variant(runs).items():
            m, sd = mean_std([r["int8_top1"] for r in rs])
            curves[(part, rs[0][key])].append((100 * rs[0]["sparsity"], 100 * m, 100 * sd))
    # a collapsed row (at chance, 10%) would squash every other curve into a line: the axis spans the rows above half
    # the baseline, and a point below it is drawn at the axis' foot with its value written beside it
    above = [p[1] - p[2] for pts in curves.values() for p in pts if p[1] >= 50 * base["int8_top1"]]
    low, high = (min(above) - 1 if above else 0.0), 100 * base["int8_top1"] + 1
    for (part, name), pts in curves.items():
        if name == "dense":
            ax.axhline(pts[0][1], color="grey", ls=":", lw=1, label=f"dense {short}")
            continue
        pts.sort()
        shown = ax.errorbar([p[0] for p in pts], [max(p[1], low) for p in pts], yerr=[p[2] if p[1] >= low else 0 for p in pts],
                            **styles.get(part, {"fmt": "*", "ms": 10}), capsize=3, label=f"{NAMES[name]} ({short if part == 'from scratch' else part})")
        for x, y, _ in (p for p in pts if p[1] < low):
            ax.annotate(f"{NAMES[name]} {x:g}%: {y:.1f}%\n(off scale)", xy=(x, low), xytext=(x - 4, low + 0.1 * (high - low)), ha="right",
                        fontsize=7, color=shown.lines[0].get_color(), arrowprops={"arrowstyle": "->", "color": shown.lines[0].get_color()})
    ax.set_ylim(low, high)
    ax.set_xlabel("target sparsity (%)")
    ax.set_ylabel("int8 test top-1 (%), mean ± std over seeds")
    ax.set_title("Unstructured: saliency after training vs sparse training from scratch")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=120)
    plt.close(fig)
