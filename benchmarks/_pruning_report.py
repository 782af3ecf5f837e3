"""Renders benchmarks/pruning.md, pruning.csv, pruning_lottery.csv, pruning_findings.md and the plots from the
committed data: pruning.json (the MobileNetV2 rows and the float32 sparse files, as the runs measured them),
pruning_lottery.json (every round of the lottery runs; pruning_lottery.csv until a run writes it), and the XNNPACK
probe, gzip-bound and structured-latency JSONs the findings quote.

pruning.json comes in two formats. Format 2 (``"format": 2``, written by benchmarks/pruning.py since issue #21's
seeds): the well-trained 28x28 baseline and every row's per-seed results; tables and findings show mean ± std over
seeds, the test-sampling interval and a verdict per row ("met", "missed", "within noise"). Format 1 (no "format"
key: one seed, the 32x32 model trained 3 epochs, and the "longer" 50% row) keeps its own rendering, so the
committed files stay reproducible until a format-2 run replaces them; that path can go then.

The findings are :func:`findings_markdown` of :func:`findings_data`, every number formatted from the data. Imports
no TensorFlow.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from benchmarks._common import md_table, mean_std, plural, pm, sampling_interval, seed_stats, signed_pm, span, verdict, wrap, write_csv, write_file

FINDINGS = "pruning_findings.md"
TEST_IMAGES = 10_000  # the Fashion-MNIST test set every accuracy here is measured on
TARGETS = {"drop_50": 0.5, "gzip_50": 0.7, "drop_structured": 1.5, "latency_structured": 0.65, "sparse_float_latency": 0.8,
           "drop_75": 1.0, "drop_2_4": 1.0}
SAME_LATENCY = 0.05  # latency ratios this close to the control's count as "no change"
# numbers in the findings that are not results: the targets, the variants' names (50%, 75%), the model width, the
# test-set size, the 95% of the sampling interval
FINDINGS_CONSTANTS = frozenset({*(f"{v:g}" for v in TARGETS.values()), "50", "75", "0.35", f"{TEST_IMAGES:,}", "95"})


def _pct(v):
    return f"{100 * v:.2f}"


def _read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


# ---- committed data ---------------------------------------------------------------------------------------


def _lottery_from_csv(path: Path) -> dict:
    """The committed lottery table as the raw JSON's structure (runs before pruning_lottery.json existed)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    init = [{"round": int(r["round"]), "remaining": float(r["remaining"]), "top1": float(r["ticket_rewind_init_top1"]),
             "top1_random": float(r["random_reinit_top1"])} for r in rows]
    step = [{"round": int(r["round"]), "remaining": float(r["remaining"]), "top1": float(r["ticket_rewind_step50_top1"])} for r in rows]
    return {"result": {"init": {"rounds": init, "config": {"fraction": 0.3}}, "step": {"rounds": step}}, "limit": 20000,
            "cmd": "benchmarks/pruning.py --part lottery (earlier run; table read back from pruning_lottery.csv)"}


def findings_data(folder: Path) -> dict:
    """What pruning.md and pruning_findings.md are rendered from, read from committed files in ``folder``."""
    lottery = _read(folder / "pruning_lottery.json") or _lottery_from_csv(folder / "pruning_lottery.csv")
    return {"pruning": json.loads((folder / "pruning.json").read_text()), "lottery": lottery,
            "probe": json.loads((folder / "pruning_xnnpack_probe.json").read_text()),
            "gzip_bounds": json.loads((folder / "gzip_bounds.json").read_text()),
            "structured_latency": json.loads((folder / "structured_latency.json").read_text())}


# ---- rendering --------------------------------------------------------------------------------------------


def render(out: Path, plots: bool = False) -> None:
    """pruning.md, pruning.csv, pruning_lottery.csv and pruning_findings.md (and with ``plots`` the PNGs) from the
    committed data in ``out``; measures nothing."""
    data = findings_data(out)
    mob = data["pruning"]["mobilenet"]
    if _seeded(data):
        rows = summary(mob)
        write_csv(out / "pruning.csv", rows, list(rows[-1]), "{:.6g}")
    else:
        write_csv(out / "pruning.csv", mob["rows"], [k for k in mob["rows"][0] if k != "seconds"])
    if (out / "pruning_lottery.json").exists():
        res = data["lottery"]["result"]
        write_csv(out / "pruning_lottery.csv", ({"round": a["round"], "remaining": f"{a['remaining']:.4f}", "ticket_rewind_init_top1": a["top1"],
                                                 "random_reinit_top1": a["top1_random"], "ticket_rewind_step50_top1": b["top1"]}
                                                for a, b in zip(res["init"]["rounds"], res["step"]["rounds"])))
    findings = findings_markdown(data)
    write_file(out / FINDINGS, findings)
    write_file(out / "pruning.md", tables_markdown(data) + "\n" + findings)
    if plots:
        _plots(data, out)


def _seeded(data: dict) -> bool:
    """Whether pruning.json is format 2 (rows over seeds, the well-trained baseline): its MobileNetV2 part has runs."""
    return "runs" in data["pruning"]["mobilenet"]


def tables_markdown(data: dict) -> str:
    """pruning.md without its findings: the MobileNetV2 table, float32 sparse files, (format 1) longer fine-tune,
    probe, lottery."""
    if _seeded(data):
        return "\n".join(_seeded_tables(data) + _probe_and_lottery(data)) + "\n"
    mob, longer = data["pruning"]["mobilenet"], data["pruning"].get("longer")
    rows = mob["rows"]
    md = ["# Pruning on Fashion-MNIST", "", f"Machine: {mob['machine']}.", ""]
    md += [
        "Model: `mobilenet_v2` alpha 0.35, input 32x32x3 (Fashion-MNIST resized, grey repeated to 3 channels; the zoo's",
        "small-input variant: stride-1 stem, head at 4x4), 10 classes, trained from scratch 3 epochs (Adam 3e-3, cosine,",
        f"batch 128, 54k training images). Every other row starts from those dense weights and is fine-tuned {mob['steps']} steps",
        f"of batch 128, Adam 5e-4 (structured: {2 * mob['steps']} steps, 1e-3); the control row fine-tunes the dense model the same way,",
        "so it shows what the extra training alone is worth. Pruning: TF-MOT polynomial schedule reaching the target at 70% of",
        "the fine-tune, default policy (every Conv2D and Dense kernel, the classifier included, except the first convolution).",
        "Accuracy: int8 .tflite on the 10,000 test images. Size: gzip -9 of the int8 file; 'sparse-fmt' = the same model",
        "converted with `Optimize.EXPERIMENTAL_SPARSITY` (`to_tflite(..., sparse_weights=True)`). Latency: int8, 1 thread, XNNPACK,",
        "batch 1, all variants interleaved in one run (edgeopt.bench.measure_latency), median of 7 rounds of per-round medians.",
        f"Command: `PYTHONPATH=. python {mob['cmd']}` (the dense baseline is cached in runs/bench_cache/pruning/).",
        "",
    ]
    md += md_table(["variant", "kind", "kernel sparsity %", "Keras top-1 %", "int8 top-1 %", "drop (points)", "gzip bytes", "gzip vs dense",
                    "sparse-fmt gzip vs dense", "MACs vs dense", "int8 ms", "latency vs dense"],
                   ([r["variant"], r["kind"], _pct(r["kernel_sparsity"]), _pct(r["keras_top1"]), _pct(r["int8_top1"]), f"{r['top1_drop_points']:.2f}",
                     f"{r['int8_gzip_bytes']:,}", f"{r['gzip_vs_dense']:.3f}", f"{r.get('sparse_format_gzip_vs_dense', float('nan')):.3f}",
                     f"{r['macs_vs_dense']:.3f}", f"{r['int8_latency_ms']:.3f}", f"{r['latency_vs_dense']:.3f}"] for r in rows), "ll" + "r" * 10)
    md += ["", "Float32 sparse inference (the layer-wise 75% model: every conv/dense kernel 75% zeros), interleaved:", ""]
    md += md_table(["file", "float32 ms", "bytes", "gzip bytes"],
                   ([f["variant"], f"{f['float32_latency_ms']:.3f}", f"{f['bytes']:,}", f"{f['gzip_bytes']:,}"] for f in mob["floats"]), "lrrr")
    if longer:
        md += ["", f"## The 50% row with a longer fine-tune ({longer['steps']} steps)", "",
               f"The layer-wise 50% row again, fine-tuned {longer['steps']} steps instead of {mob['steps']} (same optimizer; the schedule reaches",
               "50% at 70% of the fine-tune), against the same cached dense model; both int8 files converted and timed in this run.",
               f"Command: `PYTHONPATH=. python {longer['cmd']}`.", ""]
        md += md_table(["variant", "kernel sparsity %", "Keras top-1 %", "int8 top-1 %", "drop (points)", "gzip bytes", "gzip vs dense", "int8 ms", "latency vs dense"],
                       ([r["variant"], _pct(r["kernel_sparsity"]), _pct(r["keras_top1"]), _pct(r["int8_top1"]), f"{r['top1_drop_points']:.2f}",
                         f"{r['int8_gzip_bytes']:,}", f"{r['gzip_vs_dense']:.3f}", f"{r['int8_latency_ms']:.3f}", f"{r['latency_vs_dense']:.3f}"]
                        for r in longer["rows"]), "l" + "r" * 8)
    return "\n".join(md + _probe_and_lottery(data)) + "\n"


def _probe_and_lottery(data: dict) -> list[str]:
    """The XNNPACK probe and lottery-ticket sections of pruning.md (both formats)."""
    md = ["", "## XNNPACK sparse inference probe", "",
           "`benchmarks/xnnpack_sparse_probe.py` (random weights, 80% of every 1x1 kernel zeroed by magnitude, float32, 1 thread,",
           "interleaved medians; raw numbers in `pruning_xnnpack_probe.json`):", ""]
    md += md_table(["graph", "dense ms", "pruned, plain ms", "pruned, EXPERIMENTAL_SPARSITY ms", "bytes dense -> sparse format", "PAD ops"],
                   ([name, f"{p['ms']['dense']:.2f}", f"{p['ms']['pruned_plain']:.2f}", f"{p['ms']['pruned_sparsity_flag']:.2f}",
                     f"{p['bytes']['dense']:,} -> {p['bytes']['pruned_sparsity_flag']:,}", p["ops_dense"].get("PAD", 0)] for name, p in data["probe"].items()),
                   "lrrrlr")
    lot = data["lottery"]
    res = lot["result"]
    init, step = res["init"]["rounds"], res["step"]["rounds"]
    md += ["", "## Lottery tickets (MLP 784-300-100-10, Fashion-MNIST 28x28)", "",
           f"Iterative magnitude pruning, {res['init']['config']['fraction']:.0%} of the remaining weights per round (output layer at half rate),",
           f"each round trained 2 epochs (Adam 1.2e-3) on the first {lot['limit']:,} training images; test top-1 on 10,000 images.",
           "Ticket = survivors rewound to their initial values (Frankle & Carbin) or to step 50 (late rewinding); control = same mask,",
           f"fresh random init. Command: `PYTHONPATH=. python {lot['cmd']}`.", ""]
    md += md_table(["round", "weights left %", "ticket (rewind to init) %", "random re-init %", "ticket (rewind to step 50) %"],
                   ([a["round"], _pct(a["remaining"]), _pct(a["top1"]), _pct(a["top1_random"]), _pct(b["top1"])] for a, b in zip(init, step)), "rrrrr")
    return md


def _plots(data: dict, out: Path) -> None:
    import matplotlib  # lazy: only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    mob = data["pruning"]["mobilenet"]
    if _seeded(data):
        for r in summary(mob):
            ax.errorbar(r["gzip_vs_dense"], 100 * r["int8_top1"], yerr=100 * r["int8_top1_std"], fmt="o", capsize=3)
            ax.annotate(r["variant"], (r["gzip_vs_dense"], 100 * r["int8_top1"]), fontsize=7)
        ax.set_xlabel("gzipped int8 size vs dense")
        ax.set_ylabel("int8 test top-1 (%), mean ± std over seeds")
        ax.set_title("MobileNetV2 0.35, 28x28, Fashion-MNIST")
    else:
        for r in mob["rows"]:
            ax.scatter(r["int8_gzip_bytes"] / 1e3, 100 * r["int8_top1"])
            ax.annotate(r["variant"], (r["int8_gzip_bytes"] / 1e3, 100 * r["int8_top1"]), fontsize=7)
        ax.set_xlabel("gzipped int8 size (kB)")
        ax.set_ylabel("int8 test top-1 (%)")
        ax.set_title("MobileNetV2 0.35, 32x32, Fashion-MNIST")
    fig.tight_layout()
    fig.savefig(out / "pruning_size_accuracy.png", dpi=120)
    plt.close(fig)
    res = data["lottery"]["result"]
    init, step = res["init"]["rounds"], res["step"]["rounds"]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [100 * a["remaining"] for a in init]
    ax.plot(xs, [100 * a["top1"] for a in init], "o-", label="ticket, rewind to init")
    ax.plot(xs, [100 * b["top1"] for b in step], "s-", label="ticket, rewind to step 50")
    ax.plot(xs, [100 * a["top1_random"] for a in init], "x--", label="random re-init")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test top-1 (%)")
    ax.legend()
    ax.set_title("Lottery tickets, MLP on Fashion-MNIST")
    fig.tight_layout()
    fig.savefig(out / "pruning_lottery.png", dpi=120)
    plt.close(fig)


# ---- findings ---------------------------------------------------------------------------------------------


def _noise_pts(accuracy: float) -> float:
    """95% test-sampling interval (points) of an accuracy on the test set."""
    return 100 * sampling_interval(accuracy, TEST_IMAGES)


def _against(drop: float, target: float, noise: float) -> str:
    """A top-1 drop (points) against a "within ``target`` points" goal: met or missed, by how much, and whether
    that margin is inside the test-sampling ``noise`` (points)."""
    margin = target - drop
    text = f"target within {target:g}: {'met' if margin >= 0 else 'missed'} by {abs(margin):.2f} point"
    return text + (f", inside the ±{noise:.2f}-point test-sampling interval" if verdict(margin, noise) == "within noise" else "")


def _structured_cost_text(st: dict, sl: dict) -> str:
    """The structured-pruning row's MACs and int8 latency against dense and its target, and what
    ``structured_latency.md`` (``sl``) measures at other input sizes: one sentence both findings formats use."""
    ratios = [r["latency_vs_dense"] for r in sl["rows"]]
    sizes = [r["size"] for r in sl["rows"]]
    holds = ("so the gain holds at the sizes phones use" if max(ratios) <= TARGETS["latency_structured"]
             else f"not under {TARGETS['latency_structured']:g}x at every size")
    return (f"MACs {st['macs_vs_dense']:.3f}x, int8 latency **{st['latency_vs_dense']:.3f}x** of dense (target {TARGETS['latency_structured']:g}x: "
            f"**{'met' if st['latency_vs_dense'] <= TARGETS['latency_structured'] else 'missed'}**). `structured_latency.md` (untrained weights, "
            f"same planner) measures {span(ratios)}x on {sl['machine']} at {min(sizes)}-{max(sizes)} px, {holds}.")


def _mobilenet_bullets(data: dict) -> list[str]:
    mob, longer = data["pruning"]["mobilenet"], data["pruning"].get("longer")
    rows = {r["variant"]: r for r in mob["rows"]}
    dense, control = rows["dense"], rows["dense, fine-tuned as the others (control)"]
    l50, l75, g75, nm, st = (rows[k] for k in ("layer-wise 50%", "layer-wise 75%", "global 75%", "2:4", "structured 50% filters"))
    noise = _noise_pts(dense["int8_top1"])
    out = wrap(f"One run on {mob['machine']}: all rows, {mob['steps']:,}-step fine-tunes, {2 * mob['steps']:,} for structured; one seed; "
               f"int8 .tflite on the {TEST_IMAGES:,} test images, where one accuracy's 95% sampling interval is ±{noise:.2f} point. "
               f"Dense {_pct(dense['int8_top1'])}% int8; the control (same fine-tune, no pruning) {_pct(control['int8_top1'])}%.", "* ")
    text = (f"50% layer-wise: {_pct(l50['int8_top1'])}%, **{-l50['top1_drop_points']:+.2f} point** after the {mob['steps']}-step fine-tune "
            f"({_against(l50['top1_drop_points'], TARGETS['drop_50'], noise)}).")
    if longer:
        lr = longer["rows"][-1]
        gz = "the same gzip" if f"{lr['gzip_vs_dense']:.3f}" == f"{l50['gzip_vs_dense']:.3f}" else "gzip"
        text += (f" Fine-tuned {longer['steps']:,} steps instead (`--part longer`, table above, same dense model): {_pct(lr['int8_top1'])}%, "
                 f"**{-lr['top1_drop_points']:+.2f} point** ({_against(lr['top1_drop_points'], TARGETS['drop_50'], noise)}), at {gz} "
                 f"{lr['gzip_vs_dense']:.3f}x and int8 latency {lr['latency_vs_dense']:.3f}x of dense.")
    text += (f" The control row shows that {mob['steps']} fine-tune steps alone are worth {-control['top1_drop_points']:+.2f} point to the "
             f"dense model. gzip **{l50['gzip_vs_dense']:.3f}x** (target {TARGETS['gzip_50']:g}x: "
             f"{'met' if l50['gzip_vs_dense'] <= TARGETS['gzip_50'] else 'missed'}). ")
    text += _gzip_bound_text(data["gzip_bounds"])
    out += wrap(text, "* ")
    out += wrap(f"2:4: {_pct(nm['int8_top1'])}% ({-nm['top1_drop_points']:+.2f}), gzip {nm['gzip_vs_dense']:.3f}x. 75% layer-wise: "
                f"{_pct(l75['int8_top1'])}% ({-l75['top1_drop_points']:+.2f}), {l75['gzip_vs_dense']:.3f}x.", "* ")
    gap = 100 * (g75["int8_top1"] - l75["int8_top1"])
    keeps = {"met": "**more**", "missed": "**less**", "within noise": "the same (within noise)"}[verdict(gap, noise)]
    out += wrap(f"Global vs layer-wise at {100 * g75['kernel_sparsity']:.1f}% total kernel sparsity: global keeps {keeps} accuracy, "
                f"{_pct(g75['int8_top1'])}% vs {_pct(l75['int8_top1'])}% (and {g75['gzip_vs_dense']:.3f}x vs {l75['gzip_vs_dense']:.3f}x gzip).", "* ")
    out += wrap(f"Structured 50% filters: {_pct(st['int8_top1'])}% ({-st['top1_drop_points']:+.2f}, "
                f"{_against(st['top1_drop_points'], TARGETS['drop_structured'], noise).replace(': met', ': **met**')}), "
                + _structured_cost_text(st, data["structured_latency"]), "* ")
    sparse = [r["latency_vs_dense"] for r in mob["rows"] if r["kernel_sparsity"] > 0 and r["macs"] == dense["macs"]]
    same = max(abs(v - control["latency_vs_dense"]) for v in sparse) <= SAME_LATENCY
    out += wrap(f"Unstructured sparsity {'does not change' if same else 'changes'} int8 latency ({span(sparse)}x vs "
                f"{control['latency_vs_dense']:.2f}x for the control).", "* ")
    return out


# ---- format 2: every row over seeds ---------------------------------------------------------------------------

CONTROL = "dense, fine-tuned as the others (control)"
UNSTRUCTURED = ("unstructured", "2:4 (input channels)")  # the kinds that keep every layer's shape
# each row's reference and target: the least difference of its int8 test top-1 to the reference's, in points (None:
# no target, the control); the targets of the issue (50%, structured) and, for the other rows, ours
ROW_TARGETS = {CONTROL: ("dense", None), "layer-wise 50%": ("dense", -TARGETS["drop_50"]), "layer-wise 75%": ("dense", -TARGETS["drop_75"]),
               "global 75%": ("layer-wise 75%", 0.0), "2:4": ("dense", -TARGETS["drop_2_4"]),
               "structured 50% filters": ("dense", -TARGETS["drop_structured"])}


def _target_text(reference: str, at_least: float | None) -> str:
    if at_least is None:
        return "none (control)"
    if reference == "dense":
        return f"within {-at_least:g} point of dense"
    return f"at least as accurate as {reference}"


def _mean(runs: list[dict], key: str) -> float:
    return mean_std([r[key] for r in runs])[0]


def summary(mob: dict) -> list[dict]:
    """One dict per row of the format-2 table: the baseline (``dense``), then every variant in run order, with mean and
    std over seeds of the int8 test top-1, the test-sampling interval, the difference to the row's reference and the
    noise on it, the verdict against the row's target (:data:`ROW_TARGETS`), sizes, cost and latency (fractions)."""
    base, images, lat = mob["baseline"], mob["test_images"], mob["latency_ms"]
    by: dict[str, list[dict]] = {}
    for r in mob["runs"]:
        by.setdefault(r["variant"], []).append(r)
    rows = [{"variant": "dense", "kind": "-", "seeds": 0, "kernel_sparsity": base["kernel_sparsity"], "keras_top1": base["keras_top1"],
             "keras_top1_std": 0.0, "int8_top1": base["int8_top1"], "int8_top1_std": 0.0, "interval": sampling_interval(base["int8_top1"], images),
             "reference": "", "diff": 0.0, "diff_std": 0.0, "noise": 0.0, "target": "", "verdict": "", "gzip_vs_dense": 1.0,
             "sparse_format_gzip_vs_dense": base["int8_sparse_format_gzip_bytes"] / base["int8_gzip_bytes"], "macs_vs_dense": 1.0,
             "int8_latency_ms": lat["dense"], "latency_vs_dense": 1.0}]
    for name, runs in by.items():
        reference, at_least = ROW_TARGETS.get(name, ("dense", None))
        ref = [base["int8_top1"]] if reference == "dense" else [r["int8_top1"] for r in sorted(by[reference], key=lambda r: r["seed"])]
        runs = sorted(runs, key=lambda r: r["seed"])
        st = seed_stats([r["int8_top1"] for r in runs], ref, images, None if at_least is None else at_least / 100)
        rows.append({"variant": name, "kind": runs[0]["kind"], "seeds": st["n"], "kernel_sparsity": _mean(runs, "kernel_sparsity"),
                     "keras_top1": _mean(runs, "keras_top1"), "keras_top1_std": mean_std([r["keras_top1"] for r in runs])[1],
                     "int8_top1": st["mean"], "int8_top1_std": st["std"], "interval": st["interval"], "reference": reference,
                     "diff": st["diff_mean"], "diff_std": st["diff_std"], "noise": st["noise"], "target": _target_text(reference, at_least),
                     "verdict": st.get("verdict", ""), "gzip_vs_dense": _mean(runs, "int8_gzip_bytes") / base["int8_gzip_bytes"],
                     "sparse_format_gzip_vs_dense": _mean(runs, "int8_sparse_format_gzip_bytes") / base["int8_gzip_bytes"],
                     "macs_vs_dense": _mean(runs, "macs") / base["macs"], "int8_latency_ms": lat[name], "latency_vs_dense": lat[name] / lat["dense"]})
    return rows


def _seeded_tables(data: dict) -> list[str]:
    mob = data["pruning"]["mobilenet"]
    base, rows = mob["baseline"], summary(mob)
    seeds = len(mob["seeds"])
    md = ["# Pruning on Fashion-MNIST", "", f"Machine: {mob['machine']}.", "",
          *wrap(f"Baseline: `{base['file']}`, MobileNetV2 alpha 0.35 at 28x28x3 trained by `recipes/fmnist_mobilenet_v2.toml` "
                f"(test top-1 {_pct(base['keras_top1'])}% Keras, {_pct(base['int8_top1'])}% int8; validation {_pct(base['val_top1'])}%). "
                f"Every other row starts from its weights and is fine-tuned once per seed ({plural(seeds, 'seed')}: data order, "
                f"TF-MOT randomness, the {mob['calibration']} int8 calibration images): {mob['steps']:,} steps of batch 128, Adam "
                f"{mob['learning_rate']:g} with a cosine decay, label smoothing 0.1 (structured: {mob['structured']['steps_factor']} "
                f"x the steps at {mob['structured']['learning_rate']:g}); pruning schedules (TF-MOT, default policy: every Conv2D and "
                f"Dense kernel but the first convolution) reach their sparsity at half the fine-tune. The model is validated "
                f"{mob['checks']} times; the weights of the best validation check after the schedule's end are kept (early stopping on "
                f"the validation split), then the Keras model and its int8 .tflite are read once on the {mob['test_images']:,} test "
                "images. Columns: int8 top-1, mean ± sample std over seeds; its test-sampling 95% interval; the difference to the "
                "row's reference (mean ± std over seeds, points) and the noise on it (the seeds' 95% interval and the test "
                "sampling in quadrature); the verdict: the target met or missed beyond that noise, or within noise. Size: gzip -9 "
                "of the int8 file ('sparse-fmt': converted with `Optimize.EXPERIMENTAL_SPARSITY`). Latency: the first seed's int8 "
                "files, 1 thread, XNNPACK, batch 1, interleaved, median of the rounds' medians. Raw per-seed results: "
                f"`pruning.json`. Command: `PYTHONPATH=. python {mob['cmd']}`."), ""]
    md += md_table(["variant", "kind", "seeds", "kernel sparsity %", "int8 top-1 %", "± 95% test sampling", "vs reference (points)", "noise ±",
                    "target", "verdict", "gzip vs dense", "sparse-fmt gzip vs dense", "MACs vs dense", "int8 ms", "latency vs dense"],
                   ([r["variant"], r["kind"], r["seeds"] or "fixed", _pct(r["kernel_sparsity"]), pm(r["int8_top1"], r["int8_top1_std"]),
                     f"{100 * r['interval']:.2f}", f"{signed_pm(r['diff'], r['diff_std'])} vs {r['reference']}" if r["reference"] else "-",
                     f"{100 * r['noise']:.2f}" if r["reference"] else "-", r["target"] or "-", r["verdict"] or "-", f"{r['gzip_vs_dense']:.3f}",
                     f"{r['sparse_format_gzip_vs_dense']:.3f}", f"{r['macs_vs_dense']:.3f}", f"{r['int8_latency_ms']:.3f}",
                     f"{r['latency_vs_dense']:.3f}"] for r in rows), "llr" + "r" * 4 + "rllr" + "r" * 4)
    md += ["", "Every run (test top-1 read once per model; validation top-1 of the kept check):", ""]
    md += md_table(["variant", "seed", "kept step / steps", "validation top-1 %", "Keras test top-1 %", "int8 test top-1 %", "kernel sparsity %",
                    "int8 gzip bytes"],
                   ([r["variant"], r["seed"], f"{r['selected_step']:,} / {r['steps']:,}", _pct(r["val_top1"]), _pct(r["keras_top1"]),
                     _pct(r["int8_top1"]), _pct(r["kernel_sparsity"]), f"{r['int8_gzip_bytes']:,}"] for r in mob["runs"]), "lr" + "r" * 6)
    md += ["", "Float32 sparse inference (the first seed's layer-wise 75% model: every pruned kernel 75% zeros), interleaved:", ""]
    md += md_table(["file", "float32 ms", "bytes", "gzip bytes"],
                   ([f["variant"], f"{f['float32_latency_ms']:.3f}", f"{f['bytes']:,}", f"{f['gzip_bytes']:,}"] for f in mob["floats"]), "lrrr")
    return md


def _row_text(r: dict) -> str:
    """A row's result against its target: int8 top-1 over seeds, the difference to its reference, the verdict."""
    return (f"int8 {pm(r['int8_top1'], r['int8_top1_std'])}% over {plural(r['seeds'], 'seed')}, {signed_pm(r['diff'], r['diff_std'])} points vs "
            f"{r['reference']} (noise ±{100 * r['noise']:.2f}); target {r['target']}: **{r['verdict']}**")


def _seeded_bullets(data: dict) -> list[str]:
    mob = data["pruning"]["mobilenet"]
    rows = {r["variant"]: r for r in summary(mob)}
    dense, control = rows["dense"], rows[CONTROL]
    l50, l75, g75, nm, st = (rows[k] for k in ("layer-wise 50%", "layer-wise 75%", "global 75%", "2:4", "structured 50% filters"))
    out = wrap(f"{plural(len(mob['seeds']), 'seed')} per row (machine: see the table's header), every run fine-tuned {mob['steps']:,} steps from the "
               f"baseline ({_pct(dense['int8_top1'])}% int8 on the {mob['test_images']:,} test images, ±{100 * dense['interval']:.2f} "
               f"point test-sampling interval at 95%) and stopped early on the validation split. The control (the same fine-tune, "
               f"nothing pruned) is {_pct(control['int8_top1'])}%, {signed_pm(control['diff'], control['diff_std'])} points against the "
               f"baseline (noise ±{100 * control['noise']:.2f}): the extra training alone is "
               + {"met": "a gain", "missed": "a loss", "within noise": "worth nothing beyond noise"}[verdict(control["diff"], control["noise"])]
               + ".", "* ")
    gz_ok = l50["gzip_vs_dense"] <= TARGETS["gzip_50"]
    out += wrap(f"Layer-wise 50%: {_row_text(l50)}. gzip **{l50['gzip_vs_dense']:.3f}x** of dense (target {TARGETS['gzip_50']:g}x: "
                f"{'met' if gz_ok else 'missed'}). " + _gzip_bound_text(data["gzip_bounds"]), "* ")
    out += wrap(f"Layer-wise 75%: {_row_text(l75)}; gzip {l75['gzip_vs_dense']:.3f}x. 2:4: {_row_text(nm)}; gzip {nm['gzip_vs_dense']:.3f}x.", "* ")
    out += wrap(f"Global vs layer-wise at {100 * g75['kernel_sparsity']:.1f}% total kernel sparsity: global {_row_text(g75)}, at "
                f"{g75['gzip_vs_dense']:.3f}x vs {l75['gzip_vs_dense']:.3f}x gzip.", "* ")
    out += wrap(f"Structured 50% filters: {_row_text(st)}; " + _structured_cost_text(st, data["structured_latency"]), "* ")
    sparse = [r["latency_vs_dense"] for r in rows.values() if r["kind"] in UNSTRUCTURED]  # zeros in kernels of the dense shape
    same = max(abs(v - control["latency_vs_dense"]) for v in sparse) <= SAME_LATENCY
    out += wrap(f"Unstructured sparsity {'does not change' if same else 'changes'} int8 latency ({span(sparse)}x vs "
                f"{control['latency_vs_dense']:.2f}x for the control).", "* ")
    return out


def _gzip_bound_text(b: dict) -> str:
    first = b["pruned"][0]
    same = [r for r in b["pruned"] if r["sparsity"] == first["sparsity"]]
    widths = b["widths"]
    trained = next(w for w in widths if w["weights"] == "trained")
    twin = next(w for w in widths if w["weights"] == "synthetic" and w["alpha"] == trained["alpha"])
    widest = max((w for w in widths if w["weights"] == "synthetic"), key=lambda w: w["alpha"])
    corrected = widest["gzip_vs_dense_int8"] - (twin["gzip_vs_dense_int8"] - trained["gzip_vs_dense_int8"])
    above = first["gzip_vs_dense_int8"] > TARGETS["gzip_50"]
    return (f"`gzip_bounds.md` shows why: zeroing {100 * first['sparsity']:.0f}% of a trained MobileNetV2 {trained['alpha']}'s int8 kernels "
            f"(the quantization benchmark's model) by magnitude gives {first['gzip_vs_dense_int8']:.3f}x, "
            f"{min(r['gzip_vs_dense_int8'] for r in same[1:]):.3f}x even if depthwise kernels and the stem were pruned too (TF-MOT prunes "
            f"no depthwise kernel). The pruned kernels alone gzip to {first['kernels_alone_vs_dense']:.3f}x of the dense kernels; the dense "
            f"biases, depthwise kernels, scales and graph ({100 * trained['share_outside_kernels']:.1f}% of the dense file's gzip bytes at "
            f"alpha {trained['alpha']}) keep the whole file {'above' if above else 'under'} {TARGETS['gzip_50']:g}x. A wider model "
            f"{'does not rescue it' if corrected > TARGETS['gzip_50'] else 'brings it under'}: the same bound on synthetic weights, "
            f"corrected by the synthetic twin's offset at alpha {trained['alpha']}, falls only to about {corrected:.2f}x at alpha "
            f"{widest['alpha']} (`gzip_bounds.md`, last table).")


def _lottery_bullets(lot: dict) -> list[str]:
    init, step = lot["result"]["init"]["rounds"], lot["result"]["step"]["rounds"]
    dense, last = init[0], init[-1]
    noise = _noise_pts(dense["top1"])
    low = min(init, key=lambda a: a["top1"])
    keeps = 100 * (dense["top1"] - low["top1"]) <= noise
    text = (f"Rewound tickets {'stay at or above' if keeps else 'fall below'} the dense MLP's accuracy ({_pct(dense['top1'])}%) "
            f"{'within the' if keeps else 'by more than the'} ±{noise:.2f}-point test-sampling interval down to {_pct(last['remaining'])}% "
            f"of the weights ({_pct(last['top1'])}%; lowest {_pct(low['top1'])}% at {_pct(low['remaining'])}%)")
    gaps = [100 * (a["top1"] - a["top1_random"]) for a in init]
    start = next((i for i in range(1, len(init)) if all(g > noise for g in gaps[i:])), None)
    if start is None:
        text += ", and the same masks trained from a fresh random init stay within that interval of them: the lottery-ticket effect does not show."
    else:
        text += (f", while the same masks trained from a fresh random init are {span(gaps[start:])} points below the tickets from "
                 f"{_pct(init[start]['remaining'])}% of the weights downwards ({_pct(last['top1_random'])}% at {_pct(last['remaining'])}%): "
                 "the lottery-ticket effect reproduces.")
    diffs = [100 * (b["top1"] - a["top1"]) for a, b in zip(init, step)]
    worst = max(range(len(diffs)), key=lambda i: abs(diffs[i]))
    similar = abs(diffs[worst]) <= 2 * max(abs(diffs[0]), noise)
    text += (f" Late rewinding (step 50) is between {min(diffs):+.2f} and {max(diffs):+.2f} points from rewinding to init over the rounds (largest "
             f"{diffs[worst]:+.2f} at {_pct(init[worst]['remaining'])}% of the weights); round 0, where nothing is pruned yet and the same "
             f"dense MLP is trained twice, already differs by {diffs[0]:+.2f}. "
             + ("With one seed the data does not separate the two rewinding points (small, shallow network)." if similar
                else "That is more than twice the run-to-run difference, though still one seed."))
    return wrap(text, "* ")


def _xnnpack_bullets(data: dict) -> list[str]:
    floats = {f["variant"]: f for f in data["pruning"]["mobilenet"]["floats"]}
    dense, sparse = floats["dense float32"], floats["75% float32 sparse-format"]
    host = next(iter(data["probe"].values()))["host"]
    ran = host["xnnpack_chw_enabled"]
    rewritten = [name for name, p in data["probe"].items() if p.get("rewrite") and p["xnnpack_would_switch_on_arm"]["pruned_sparsity_flag"]]
    out = wrap(
        ("Sparse (NCHW) inference did not run in the probe (`pruning_xnnpack_probe.json`: "
         f"{host['cpu']}, {host['machine']}, AVX {'yes' if host['avx'] else 'no'}) for any graph, and cannot run on any x86 CPU with AVX: "
         "XNNPACK turns its CHW/sparse kernels off there (`xnn_is_chw_compatible_config`), whatever the model or flags. "
         if not ran else f"XNNPACK's CHW/sparse kernels are enabled on the probe's host ({host['cpu']}). ")
        + f"The 75% float32 sparse-format file runs at {sparse['float32_latency_ms'] / dense['float32_latency_ms']:.2f}x of the dense float32 "
        f"file ({sparse['float32_latency_ms']:.3f} vs {dense['float32_latency_ms']:.3f} ms, float32 table above), so the "
        f"\"<= {TARGETS['sparse_float_latency']:g}x\" latency target is **not measured here**; what the sparse format gives here is size: "
        f"{dense['bytes']:,} -> {sparse['bytes']:,} bytes ({sparse['bytes'] / dense['bytes']:.3f}x).", "* ")
    out += wrap(
        "The graph side is solved: `edgeopt.tflite.xnnpack.explicit_pad_for_xnnpack` rewrites the converter's SAME convolutions as "
        "PAD + VALID (exact), and `xnnpack_sparse_eligibility` replays XNNPACK's rules on the file: "
        + (f"{len(rewritten)} rewritten MobileNetV2 files of the probe ({', '.join(n.split(' ')[0] for n in rewritten)}) would switch to the "
           "sparse path on ARM phones. " if rewritten else "no rewritten file of the probe would switch to the sparse path. ")
        + "Evidence, sources and the probe: `xnnpack_sparse_findings.md`, `pruning_xnnpack_probe.json`.", "* ")
    return out


def findings_markdown(data: dict) -> str:
    """pruning_findings.md from :func:`findings_data`: the MobileNetV2 rows against the targets, the lottery tickets,
    and sparse float32 inference; every number formatted from the data."""
    rows = _seeded_bullets(data) if _seeded(data) else _mobilenet_bullets(data)
    lines = ["## Findings", "", "### MobileNetV2 rows (read this first)", "", *rows, "",
             "### Lottery tickets", "", *_lottery_bullets(data["lottery"]), "",
             "### XNNPACK sparse float32 inference", "", *_xnnpack_bullets(data)]
    return "\n".join(lines) + "\n"
