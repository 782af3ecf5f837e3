"""Renders benchmarks/pruning.md, pruning.csv, pruning_lottery.csv, pruning_findings.md and the plots from the
committed data: pruning.json (the MobileNetV2 rows, the float32 sparse files and the longer fine-tune, as the runs
measured them), pruning_lottery.json (every round of the lottery runs; pruning_lottery.csv until a run writes it),
and the XNNPACK probe, gzip-bound and structured-latency JSONs the findings quote.

:func:`write` first folds a run's cache (runs/bench_cache/pruning/) into those files, then renders; the findings
are :func:`findings_markdown` of :func:`findings_data`, every number formatted from the data. Imports no TensorFlow.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from benchmarks._common import md_table, sampling_interval, span, verdict, wrap, write_csv, write_file

FINDINGS = "pruning_findings.md"
TEST_IMAGES = 10_000  # the Fashion-MNIST test set every accuracy here is measured on
TARGETS = {"drop_50": 0.5, "gzip_50": 0.7, "drop_structured": 1.5, "latency_structured": 0.65, "sparse_float_latency": 0.8}
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


def _fold_cache(cache: Path, out: Path, machine: str) -> None:
    """A run's results (runs/bench_cache/pruning/*.json) into the committed pruning.json / pruning_lottery.json."""
    path = out / "pruning.json"
    data = _read(path) or {}
    mob = _read(cache / "mobilenet.json")
    if mob is None and (cache / "rows.json").exists():  # partial run: rows so far, no latency pass yet
        rows = json.loads((cache / "rows.json").read_text())
        for r in rows:
            r.update(int8_latency_ms=float("nan"), latency_vs_dense=float("nan"), gzip_vs_dense=r["int8_gzip_bytes"] / rows[0]["int8_gzip_bytes"],
                     top1_drop_points=100 * (rows[0]["int8_top1"] - r["int8_top1"]))
        mob = {"rows": rows, "floats": [], "steps": 120, "cmd": "benchmarks/pruning.py --part mobilenet --finetune-steps 120 (PARTIAL: run did not finish)"}
    for key, part in (("mobilenet", mob), ("longer", _read(cache / "longer50.json"))):
        if part is not None:
            data[key] = {"machine": machine, **part}  # replaces the committed part (and its "source" note)
    if data:
        write_file(path, json.dumps(data, indent=1) + "\n")
    lottery = _read(cache / "lottery.json")
    if lottery is not None:
        write_file(out / "pruning_lottery.json", json.dumps(lottery, indent=1) + "\n")


# ---- rendering --------------------------------------------------------------------------------------------


def write(cache: Path, out: Path, machine: str, plots: bool = True) -> None:
    """Fold a run's cache into the committed data (``machine``: the line for parts the cache has), then render
    pruning.md, the CSVs, pruning_findings.md and (``plots``) the PNGs from the committed data in ``out``."""
    _fold_cache(cache, out, machine)
    render(out, plots)


def render(out: Path, plots: bool = False) -> None:
    """pruning.md, pruning.csv, pruning_lottery.csv and pruning_findings.md (and with ``plots`` the PNGs) from the
    committed data in ``out``; measures nothing."""
    data = findings_data(out)
    mob = data["pruning"]["mobilenet"]
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


def tables_markdown(data: dict) -> str:
    """pruning.md without its findings: the MobileNetV2 table, float32 sparse files, longer fine-tune, probe, lottery."""
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
    md += ["", "## XNNPACK sparse inference probe", "",
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
    return "\n".join(md) + "\n"


def _plots(data: dict, out: Path) -> None:
    import matplotlib  # lazy: only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in data["pruning"]["mobilenet"]["rows"]:
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
    sl = data["structured_latency"]
    ratios = [r["latency_vs_dense"] for r in sl["rows"]]
    sizes = [r["size"] for r in sl["rows"]]
    holds = ("so the gain holds at the sizes phones use" if max(ratios) <= TARGETS["latency_structured"]
             else f"not under {TARGETS['latency_structured']:g}x at every size")
    out += wrap(f"Structured 50% filters: {_pct(st['int8_top1'])}% ({-st['top1_drop_points']:+.2f}, "
                f"{_against(st['top1_drop_points'], TARGETS['drop_structured'], noise).replace(': met', ': **met**')}), MACs {st['macs_vs_dense']:.3f}x, "
                f"int8 latency **{st['latency_vs_dense']:.3f}x** of dense (target {TARGETS['latency_structured']:g}x: "
                f"**{'met' if st['latency_vs_dense'] <= TARGETS['latency_structured'] else 'missed'}**). `structured_latency.md` (untrained weights, "
                f"same planner) measures {span(ratios)}x on {sl['machine']} at {min(sizes)}-{max(sizes)} px, {holds}.", "* ")
    sparse = [r["latency_vs_dense"] for r in mob["rows"] if r["kernel_sparsity"] > 0 and r["macs"] == dense["macs"]]
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
    lines = ["## Findings", "", "### MobileNetV2 rows (read this first)", "", *_mobilenet_bullets(data), "",
             "### Lottery tickets", "", *_lottery_bullets(data["lottery"]), "",
             "### XNNPACK sparse float32 inference", "", *_xnnpack_bullets(data)]
    return "\n".join(lines) + "\n"
