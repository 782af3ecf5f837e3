"""Renders benchmarks/pruning.md, pruning.csv, pruning_lottery.csv and the plots from the cached results."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks._common import md_table, write_csv, write_file  # noqa: E402


def _pct(v):
    return f"{100 * v:.2f}"


def write(cache: Path, out: Path, machine: str) -> None:
    mob = json.loads((cache / "mobilenet.json").read_text()) if (cache / "mobilenet.json").exists() else None
    if mob is None and (cache / "rows.json").exists():  # partial run: rows so far, no latency pass yet
        rows = json.loads((cache / "rows.json").read_text())
        for r in rows:
            r.update(int8_latency_ms=float("nan"), latency_vs_dense=float("nan"), gzip_vs_dense=r["int8_gzip_bytes"] / rows[0]["int8_gzip_bytes"],
                     top1_drop_points=100 * (rows[0]["int8_top1"] - r["int8_top1"]))
        mob = {"rows": rows, "floats": [], "steps": 120, "cmd": "benchmarks/pruning.py --part mobilenet --finetune-steps 120 (PARTIAL: run did not finish)"}
    lot = json.loads((cache / "lottery.json").read_text()) if (cache / "lottery.json").exists() else _lottery_from_csv(out)
    probe = json.loads((out / "pruning_xnnpack_probe.json").read_text())
    md = ["# Pruning on Fashion-MNIST", "", f"Machine: {machine}.", ""]
    if mob:
        rows = mob["rows"]
        write_csv(out / "pruning.csv", rows, [k for k in rows[0] if k != "seconds"])
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
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            ax.scatter(r["int8_gzip_bytes"] / 1e3, 100 * r["int8_top1"])
            ax.annotate(r["variant"], (r["int8_gzip_bytes"] / 1e3, 100 * r["int8_top1"]), fontsize=7)
        ax.set_xlabel("gzipped int8 size (kB)")
        ax.set_ylabel("int8 test top-1 (%)")
        ax.set_title("MobileNetV2 0.35, 32x32, Fashion-MNIST")
        fig.tight_layout()
        fig.savefig(out / "pruning_size_accuracy.png", dpi=120)
        plt.close(fig)
    longer = json.loads((cache / "longer50.json").read_text()) if (cache / "longer50.json").exists() else None
    if longer:
        md += ["", f"## The 50% row with a longer fine-tune ({longer['steps']} steps)", "",
               f"The layer-wise 50% row again, fine-tuned {longer['steps']} steps instead of {mob['steps'] if mob else '?'} (same optimizer; the schedule reaches",
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
                     f"{p['bytes']['dense']:,} -> {p['bytes']['pruned_sparsity_flag']:,}", p["ops_dense"].get("PAD", 0)] for name, p in probe.items()), "lrrrlr")
    if lot:
        res = lot["result"]
        init, step = res["init"]["rounds"], res["step"]["rounds"]
        write_csv(out / "pruning_lottery.csv", ({"round": a["round"], "remaining": f"{a['remaining']:.4f}", "ticket_rewind_init_top1": a["top1"],
                                                 "random_reinit_top1": a["top1_random"], "ticket_rewind_step50_top1": b["top1"]} for a, b in zip(init, step)))
        md += ["", "## Lottery tickets (MLP 784-300-100-10, Fashion-MNIST 28x28)", "",
               f"Iterative magnitude pruning, {res['init']['config']['fraction']:.0%} of the remaining weights per round (output layer at half rate),",
               f"each round trained 2 epochs (Adam 1.2e-3) on the first {lot['limit']:,} training images; test top-1 on 10,000 images.",
               "Ticket = survivors rewound to their initial values (Frankle & Carbin) or to step 50 (late rewinding); control = same mask,",
               f"fresh random init. Command: `PYTHONPATH=. python {lot['cmd']}`.", ""]
        md += md_table(["round", "weights left %", "ticket (rewind to init) %", "random re-init %", "ticket (rewind to step 50) %"],
                       ([a["round"], _pct(a["remaining"]), _pct(a["top1"]), _pct(a["top1_random"]), _pct(b["top1"])] for a, b in zip(init, step)), "rrrrr")
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
    write_file(out / "pruning.md", "\n".join(md) + "\n" + _findings(cache))


def _lottery_from_csv(out: Path) -> dict | None:
    """The committed lottery table, when this run did not redo the lottery part (it has its own --part)."""
    path = out / "pruning_lottery.csv"
    if not path.exists():
        return None
    rows = list(csv.DictReader(open(path)))
    init = [{"round": int(r["round"]), "remaining": float(r["remaining"]), "top1": float(r["ticket_rewind_init_top1"]),
             "top1_random": float(r["random_reinit_top1"])} for r in rows]
    step = [{"round": int(r["round"]), "remaining": float(r["remaining"]), "top1": float(r["ticket_rewind_step50_top1"])} for r in rows]
    return {"result": {"init": {"rounds": init, "config": {"fraction": 0.3}}, "step": {"rounds": step}}, "limit": 20000,
            "cmd": "benchmarks/pruning.py --part lottery (earlier run; table read back from pruning_lottery.csv)"}


def _findings(cache: Path) -> str:
    f = Path(__file__).parent / "pruning_findings.md"  # hand-written reading of the numbers, committed
    return "\n" + f.read_text() if f.exists() else ""
