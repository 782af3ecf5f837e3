"""Quantization and clustering benchmark on Fashion-MNIST, one run from one trained float model:
PTQ export modes (float32, dynamic-range, float16, int8, int16x8), QAT int8, clustering (16 clusters, all Conv2D
and Dense layers; float32 and int8), and prune 50% + cluster 16 + PCQAT -> int8 with the weights read back out of
the .tflite. Each row: accuracy of the .tflite on the test set, size raw / gzipped, median latency (1 thread).

Model: MobileNetV2 alpha 0.35 (zoo small-input variant) at 32x32x3, 10 classes. The float model is cached in
runs/bench_cache/quantization/ so reruns resume. Rows are written to benchmarks/quantization.{md,csv} as they finish.

The run also keeps its float32 and PCQAT files in the cache and breaks the PCQAT files down by part
(benchmarks/pcqat_breakdown.py) into benchmarks/quantization_<model>_pcqat_breakdown.json.

Findings: ``findings_markdown`` renders benchmarks/quantization_findings.md from the committed CSVs, the per-model
tables' headers and the PCQAT breakdown JSON; ``--findings-only`` rewrites it (and quantization.md, clustering.md)
without measuring anything.

Run:  PYTHONPATH=. python benchmarks/quantization.py [--model mobilenet_v2 --alpha 0.35] [--train-steps N]
      [--finetune-steps N] [--test-limit N]
      PYTHONPATH=. python benchmarks/quantization.py --findings-only
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from pathlib import Path

from benchmarks._common import md_table, sampling_interval, span, wrap, write_file

OUT = Path("benchmarks")
CACHE = Path("runs/bench_cache/quantization")
CLUSTER_ROWS = ("float32", "cluster16 float32", "cluster16 int8", "prune50+cluster16+PCQAT int8",
                "prune50+cluster16+PCQAT int8 (per-channel)")


def combine(out: Path) -> None:
    """Concatenate every per-model table into quantization.md, and the clustering rows into clustering.md."""
    quantization, clustering = combined_markdown(out)
    write_file(out / "quantization.md", quantization)
    write_file(out / "clustering.md", clustering)


def combined_markdown(out: Path) -> tuple[str, str]:
    """quantization.md (every per-model table, then the findings) and clustering.md (the clustering rows) from the
    per-model files in ``out``."""
    parts = sorted(p for p in out.glob("quantization_*.md") if p.name != FINDINGS)
    quantization = ("# Quantization: PTQ modes, QAT and collaborative optimization on Fashion-MNIST\n\n"
                    "One section per model, each from one trained float model in one run (per-model files: "
                    + ", ".join(f"`{p.name}`" for p in parts) + ").\n\n"
                    + "\n".join(p.read_text().replace("# Quantization and clustering:", "## ") for p in parts)
                    + (("\n" + (out / FINDINGS).read_text()) if (out / FINDINGS).exists() else ""))
    lines = ["# Weight clustering on Fashion-MNIST", "",
             "Rows taken from the quantization runs (same float model, same run; see quantization.md for the machine "
             "and commands). Clustering: 16 clusters, k-means++ init, every Conv2D and Dense layer, fine-tuned, stripped.", ""]
    for p in sorted(out.glob("quantization_*.csv")):
        with open(p) as f:
            rows = [r for r in csv.DictReader(f) if r["variant"] in CLUSTER_ROWS]
        if not rows:
            continue
        lines += [f"## {p.stem.removeprefix('quantization_')}", "", *md_table(list(rows[0]), (r.values() for r in rows)), ""]
    notes = out / "clustering_findings.md"
    return quantization, "\n".join(lines) + "\n" + (notes.read_text() if notes.exists() else "")


# ---- findings -------------------------------------------------------------------------------------------

FINDINGS = "quantization_findings.md"
FINDINGS_MODEL = "mobilenet_v2_0.35"  # the model the PCQAT section breaks down
GZIP_TARGET = 1 / 8  # PCQAT int8 gzip at most 1/8 of the float32 file's
TARGETS = {  # the targets: points of top-1 against float (at least), gzip against float32 (at most)
    "ptq": 1.0, "qat": 0.3, "cluster_points": 1.0, "cluster_gzip": 0.4, "pcqat_points": 1.5, "codes": 16, "sparsity": 0.5}
HIGH_SPARSITY, CLUSTERS = 0.75, 16  # the "what would reach 1/8" bound
# numbers in the findings that are not results: the targets (50% sparsity, 16 clusters), the model widths, the
# high-sparsity bound (75%, 15 non-zero codes: 0.81 + 0.25 x log2(15) = 1.79 bits), the 95% of the sampling interval
FINDINGS_CONSTANTS = frozenset({*(f"{v:g}" for v in TARGETS.values()), f"{GZIP_TARGET:g}", "50", "0.35", "0.25", "75", "15", "0.81", "1.79", "95"})
_NOTE = re.compile(r"(?P<scales>[\w-]+) scales; (?P<kernels>\d+) conv/dense kernels in the \.tflite: min sparsity (?P<sparsity>[\d.]+), "
                   r"max unique int8 codes per output channel (?P<per_channel>\d+), per tensor (?P<per_tensor>\d+)")
_PCQAT, _PCQAT_PC = "prune50+cluster16+PCQAT int8", "prune50+cluster16+PCQAT int8 (per-channel)"


def _row(r: dict) -> dict:
    out = {"variant": r["variant"], "top1": float(r["top1"]), "delta_pts_vs_float": float(r["delta_pts_vs_float"]),
           "size_bytes": int(r["size_bytes"]), "gzip_bytes": int(r["gzip_bytes"]), "gzip_vs_float32": float(r["gzip_vs_float32"]),
           "median_ms": float(r["median_ms"]) if r["median_ms"] else None, "notes": r["notes"]}
    m = _NOTE.match(r["notes"])
    if m:
        out["kernels"] = {"scales": m["scales"], "count": int(m["kernels"]), "min_sparsity": float(m["sparsity"]),
                          "codes_per_channel": int(m["per_channel"]), "codes_per_tensor": int(m["per_tensor"])}
    return out


def _meta(md: str) -> dict:
    """Machine, command and training steps from a per-model table's header (written by the run that measured it)."""
    steps = re.search(r"Float model: (\d+) training steps of batch (\d+); fine-tunes (\d+) steps\..*Test samples: (\d+)\.", md)
    return {"machine": re.search(r"^Machine: (.*?)(?: \(shared.*)?$", md, re.MULTILINE)[1], "command": re.search(r"^Command: `(.*)`$", md, re.MULTILINE)[1],
            "train_steps": int(steps[1]), "batch": int(steps[2]), "finetune_steps": int(steps[3]), "test_images": int(steps[4])}


def findings_data(folder: Path) -> dict:
    """Everything quantization_findings.md states, read from committed files in ``folder``: each model's CSV rows
    (PCQAT notes parsed) and table header, the PCQAT breakdown (the benchmark's own when a run wrote it, else
    pcqat_breakdown.json), and gzip_bounds.json's clustered kernels."""
    models = {}
    for path in sorted(folder.glob("quantization_*.csv"), key=lambda p: (p.stem != f"quantization_{FINDINGS_MODEL}", p.stem)):
        name = path.stem.removeprefix("quantization_")
        with open(path) as f:
            rows = [_row(r) for r in csv.DictReader(f)]
        models[name] = {"rows": rows, **_meta((folder / f"quantization_{name}.md").read_text())}
    own = folder / f"quantization_{FINDINGS_MODEL}_pcqat_breakdown.json"
    breakdown_file = own if own.exists() else folder / "pcqat_breakdown.json"
    bounds = json.loads((folder / "gzip_bounds.json").read_text())
    return {"models": models, "breakdown_file": breakdown_file.name, "breakdown": json.loads(breakdown_file.read_text()),
            "gzip_bounds_clustered": bounds["pruned_clustered"][0]}


def _title(name: str) -> str:
    family, version, alpha = name.split("_")
    return f"MobileNet{version.upper()} {alpha}"


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _by_variant(model: dict) -> dict:
    return {r["variant"]: r for r in model["rows"]}


def _interval_pts(model: dict, variant: str = "float32") -> float:
    """The 95% test-sampling interval (points) of the model's ``variant`` top-1 on its test images."""
    return 100 * sampling_interval(_by_variant(model)[variant]["top1"], model["test_images"])


def _targets_table(models: dict) -> list[str]:
    def pts(v):
        return f"{v:+.2f}"

    cells = {k: [] for k in ("ptq", "qat", "cluster", "survive", "pcqat", "gzip")}
    for m in models.values():
        by = _by_variant(m)
        ptq, qat, cl, pc = by["int8 PTQ"], by["int8 QAT"], by["cluster16 float32"], by[_PCQAT]
        cells["ptq"].append(f"{pts(ptq['delta_pts_vs_float'])} ({_met(ptq['delta_pts_vs_float'] >= -TARGETS['ptq'])})")
        d, noise = qat["delta_pts_vs_float"], _interval_pts(m)
        above = ("" if d <= 0 else f"; above float by less than the ±{noise:.2f}-point test-sampling interval" if d <= noise
                 else f"; above float: the {m['finetune_steps']} QAT steps also train the float model further")
        cells["qat"].append(f"{pts(d)} ({_met(d >= -TARGETS['qat'])}{above})")
        cells["cluster"].append(f"{pts(cl['delta_pts_vs_float'])}, {cl['gzip_vs_float32']:.3f}x "
                                f"({_met(cl['delta_pts_vs_float'] >= -TARGETS['cluster_points'] and cl['gzip_vs_float32'] <= TARGETS['cluster_gzip'])})")
        k = pc["kernels"]
        codes = (f"{k['codes_per_channel']} codes per channel and per tensor" if k["codes_per_channel"] == k["codes_per_tensor"]
                 else f"{k['codes_per_channel']} codes per channel, {k['codes_per_tensor']} per tensor")
        ok = k["min_sparsity"] >= TARGETS["sparsity"] and max(k["codes_per_channel"], k["codes_per_tensor"]) <= TARGETS["codes"]
        cells["survive"].append(f"at least {k['min_sparsity']:.3f} zeros in each of the {k['count']} kernels, {codes} ({_met(ok)})")
        cells["pcqat"].append(f"{pts(pc['delta_pts_vs_float'])} ({_met(pc['delta_pts_vs_float'] >= -TARGETS['pcqat_points'])})")
        cells["gzip"].append(f"{pc['gzip_vs_float32']:.3f}x ({_met(pc['gzip_vs_float32'] <= GZIP_TARGET)}, see below)")
    names = {"ptq": f"PTQ int8 within {TARGETS['ptq']:g} point of float", "qat": f"QAT int8 within {TARGETS['qat']:g} point of float",
             "cluster": f"cluster16 float32: accuracy within {TARGETS['cluster_points']:g} point, gzip at most {TARGETS['cluster_gzip']:g}x",
             "survive": f"PCQAT int8: sparsity and at most {TARGETS['codes']} codes survive in the .tflite",
             "pcqat": f"PCQAT int8 within {TARGETS['pcqat_points']:g} points of float",
             "gzip": f"PCQAT int8 gzip at most 1/8 ({GZIP_TARGET:g}x) of float32"}
    return md_table(["target", *(_title(n) for n in models)], ([names[k], *v] for k, v in cells.items()))


def _high_sparsity_bits() -> tuple[float, float]:
    """Bits per weight at most for codes with HIGH_SPARSITY zeros and CLUSTERS - 1 non-zero codes: the zero/non-zero
    entropy, and that plus log2(CLUSTERS - 1) for the non-zeros."""
    h = -(HIGH_SPARSITY * math.log2(HIGH_SPARSITY) + (1 - HIGH_SPARSITY) * math.log2(1 - HIGH_SPARSITY))
    return h, h + (1 - HIGH_SPARSITY) * math.log2(CLUSTERS - 1)


_PART_NAMES = {"kernels": "pruned + clustered int8 kernels (conv and classifier)",
               "depthwise": "depthwise int8 kernels (TF-MOT neither prunes nor clusters them)", "biases": "int32 biases",
               "rest": "graph, scales, zero points, metadata"}


def _breakdown_section(data: dict) -> list[str]:
    models = data["models"]
    by = _by_variant(models[FINDINGS_MODEL])
    pt, pc = by[_PCQAT], by[_PCQAT_PC]
    doc = data["breakdown"]
    b = doc["files"][0]
    parts = {p["part"]: p for p in b["parts"]}
    k, dw, bias, rest = parts["kernels"], parts["depthwise"], parts["biases"], parts["rest"]
    f32 = b["float32_gzip_bytes"]
    target_bytes = f32 * GZIP_TARGET
    bits = 8 * k["gzip_bytes"] / k["values"]
    perfect = b["file_gzip_bytes"] - k["gzip_bytes"] + b["kernel_entropy_floor_bytes"]
    budget_bits = 8 * (target_bytes - dw["gzip_bytes"] - bias["gzip_bytes"] - rest["gzip_bytes"]) / k["values"]
    no_rest_bits = 8 * (target_bytes - dw["gzip_bytes"] - bias["gzip_bytes"]) / k["values"]
    bounds = data["gzip_bounds_clustered"]
    dw_saving = dw["gzip_bytes"] - dw["values"] * bits / 8
    h, high = _high_sparsity_bits()
    table = md_table(["part", "raw bytes", "gzipped bytes", "bits per weight"],
                     ([_PART_NAMES[p["part"]], f"{p['raw_bytes']:,}", f"{p['gzip_bytes']:,}",
                       f"{8 * p['gzip_bytes'] / p['values']:.2f}" if p["part"] in ("kernels", "depthwise") else ""] for p in b["parts"]),
                     "lrrr")
    others = {n: _by_variant(m)[_PCQAT_PC]["kernels"]["codes_per_tensor"] for n, m in models.items() if n != FINDINGS_MODEL}
    smaller = {n: 1 - _by_variant(m)[_PCQAT]["gzip_bytes"] / _by_variant(m)[_PCQAT_PC]["gzip_bytes"] for n, m in models.items()}
    gaps = [abs(_by_variant(m)[_PCQAT]["top1"] - _by_variant(m)[_PCQAT_PC]["top1"]) for m in models.values()]
    interval = min(_interval_pts(m, _PCQAT) for m in models.values())
    gzip_reaches = min(bits, bounds["kernel_bits"]["gzip9"]) <= no_rest_bits
    return [
        "### PCQAT int8 and the 1/8 gzip target", "",
        *wrap("The target was a prune 50% + cluster 16 + PCQAT int8 file whose gzipped size is at most 1/8 of the float32 model's "
              f"gzipped size. For {_title(FINDINGS_MODEL)} that means at most {by['float32']['gzip_bytes'] * GZIP_TARGET:,.0f} B; the PCQAT "
              f"file above is {pt['gzip_bytes']:,} B. We measure {pt['gzip_vs_float32']:.3f}x with one int8 scale per clustered kernel "
              f"(edgeopt's default) and {pc['gzip_vs_float32']:.3f}x with TF-MOT's per-channel scales. Both keep sparsity "
              f"{min(pt['kernels']['min_sparsity'], pc['kernels']['min_sparsity']):.3f} and at most "
              f"{max(pt['kernels']['codes_per_channel'], pc['kernels']['codes_per_channel'])} codes per output channel. "
              "Here is where the bytes go."), "",
        *wrap(f"Breakdown of `{b['file']}` ({b['kernel_scales'].replace('_', '-')} kernel scales, up to {b['kernel_max_codes_per_tensor']} "
              f"codes per tensor): {b['file_gzip_bytes']:,} B gzipped, {b['file_gzip_bytes'] / f32:.3f}x of its float32 file's {f32:,} B. "
              f"Raw numbers: `{data['breakdown_file']}`, made by `{doc['command']}`."
              + ("" if data["breakdown_file"] != "pcqat_breakdown.json" else
                 " That file is the one the `fmnist_mobilenet_v2_compressed` recipe ships (same architecture and compression steps, far "
                 "shorter training), not the benchmark's own: a quantization.py run keeps its two PCQAT files and writes their "
                 f"breakdown to `quantization_{FINDINGS_MODEL}_pcqat_breakdown.json`, which this section then uses.")), "",
        *table, "",
        *wrap(f"**The clustered kernels take {bits - b['kernel_entropy_bits_per_weight']:.2f} bits per weight more than their floor.** "
              f"Their int8 codes have an entropy of {b['kernel_entropy_bits_per_weight']:.2f} bits per weight (computed per tensor from the "
              "code frequencies), so no lossless coder that keeps one code table per tensor stores them in less than "
              f"{b['kernel_entropy_floor_bytes']:,} B. Gzip takes {bits:.2f} bits.", "- "),
        *wrap(f"**A perfect coder of the kernels** would make this file {perfect:,} B with every other part unchanged: "
              f"{perfect / f32:.3f}x, {'still above' if perfect > target_bytes else 'under'} 1/8.", "- "),
        *wrap(f"**The budget.** With the other parts as they are, 1/8 ({target_bytes:,.0f} B) leaves the kernels {budget_bits:.2f} bits per "
              f"weight; with no graph, scales or metadata at all, {no_rest_bits:.2f}. Gzip takes {bits:.2f} bits on this file's kernels and "
              f"{bounds['kernel_bits']['gzip9']:.2f} on the benchmark model's kernels pruned to {100 * bounds['sparsity']:.0f}% and clustered "
              f"to {bounds['clusters']} values with one scale per kernel (`gzip_bounds.md`; entropy {bounds['kernel_bits']['entropy']:.2f}), "
              f"so gzip {'could reach' if gzip_reaches else 'does not reach'} 1/8 at {100 * TARGETS['sparsity']:.0f}% sparsity and "
              f"{CLUSTERS} clusters.", "- "),
        "- **What would reach 1/8:**",
        *wrap(f"Higher sparsity. At {100 * HIGH_SPARSITY:.0f}% zeros and {CLUSTERS - 1} non-zero codes the codes carry at most "
              f"{h:.2f} + {1 - HIGH_SPARSITY:.2f} x log2({CLUSTERS - 1}), which is {high:.2f} bits.", "  - "),
        "  - Fewer clusters.",
        *wrap(f"Clustering the depthwise kernels. At the clustered kernels' gzip rate that would save about {dw_saving / 1000:.1f} KB "
              f"(this file would be {(b['file_gzip_bytes'] - dw_saving) / f32:.3f}x), so it helps only together with the above or a "
              "better coder than gzip.", "  - "), "",
        *wrap("Where per-tensor scales help: with per-channel scales, the 16 shared centroids of a kernel land on different int8 codes "
              f"in each channel. That gives up to {pc['kernels']['codes_per_tensor']} codes per tensor in {_title(FINDINGS_MODEL)} "
              + "".join(f"({_title(n)}: {v}) " for n, v in others.items())
              + f"instead of {pt['kernels']['codes_per_tensor']}, plus one float scale per output channel instead of one per kernel "
              f"({b['scales_with_per_channel_kernels']:,} scales in the broken-down file with per-channel kernel scales, "
              f"{b['scales_with_per_tensor_kernels']:,} with per-tensor ones). Per-tensor scales make the whole PCQAT file "
              + ", ".join(f"{100 * v:.1f}% ({_title(n)})" for n, v in smaller.items())
              + f" smaller after gzip, and top-1 differs by {span(100 * g for g in gaps)} point between the two, inside the "
              f"±{interval:.2f}-point test-sampling interval (95%): the same accuracy in these runs (see the two PCQAT rows)."),
    ]


def findings_markdown(data: dict) -> str:
    """quantization_findings.md from ``findings_data``: the targets table, int8 vs float32 latency on the machine
    that measured, and the PCQAT 1/8 gzip section; every number formatted from the data."""
    models = data["models"]
    metas = {(m["machine"], m["train_steps"], m["finetune_steps"]) for m in models.values()}
    if len(metas) == 1:
        machine, train, ft = metas.pop()
        head = f"runs on {machine}, {'both models' if len(models) == 2 else 'every model'} trained {train} steps, fine-tunes {ft}"
    else:
        head = "; ".join(f"{_title(n)}: {m['machine']}, trained {m['train_steps']} steps, fine-tunes {m['finetune_steps']}" for n, m in models.items())
    lat = {n: _by_variant(m) for n, m in models.items()}
    slower = all(v["int8 PTQ"]["median_ms"] > v["float32"]["median_ms"] for v in lat.values())
    latency = "; ".join(f"{_title(n)}: {v['int8 PTQ']['median_ms']:.2f} vs {v['float32']['median_ms']:.2f} ms" for n, v in lat.items())
    lines = [
        "## Findings", "",
        f"### Against the targets ({head})", "",
        *_targets_table(models), "",
        *wrap(f"On this machine int8 PTQ is {'slower' if slower else 'not always faster'} than float32 under XNNPACK at 1 thread "
              f"({latency}). Int8's speed-up is expected on ARM; it is not measured here."), "",
        *wrap("These QAT, CQAT and PCQAT rows were measured before `QATConfig.depthwise_scales` existed: their depthwise kernels were "
              "fake-quantized with TF-MOT's single range per kernel (tensorflow/model-optimization#808). edgeopt now defaults to one "
              "range per output channel, as post-training quantization has; a re-run of this benchmark measures that. The converter "
              "keeps whatever QAT trained: in a MobileNetV2 .tflite made the old way, the int8 depthwise weights equal the QAT kernels "
              "times the folded batch-norm factors, per-tensor grid included (checked by hand once; not part of this benchmark's data)."), "",
        *_breakdown_section(data),
    ]
    return "\n".join(lines) + "\n"


def _finetune(model, splits, steps, lr):
    from edgeopt import TrainConfig, fit  # lazy: rendering the findings needs no TensorFlow

    return fit(model, splits, TrainConfig(epochs=1, steps_per_epoch=steps, learning_rate=lr, cosine=False), compile=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--train-steps", type=int, default=2532, help="float training steps of batch 64 (2532 = 3 epochs)")
    ap.add_argument("--finetune-steps", type=int, default=844, help="QAT / clustering / PCQAT fine-tuning steps")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--findings-only", action="store_true", help="render quantization_findings.md (and quantization.md, "
                    "clustering.md) from the committed CSVs and JSON; measures nothing")
    args = ap.parse_args(argv)
    out = args.out
    if args.findings_only:
        write_file(out / FINDINGS, findings_markdown(findings_data(out)))
        combine(out)
        return
    # lazy: measuring needs TensorFlow, rendering the findings does not
    from benchmarks._common import machine_line, median_latency_ms, write_csv
    from benchmarks.pcqat_breakdown import main as pcqat_breakdown
    from edgeopt import TrainConfig, create, evaluate, fit, load_dataset
    from edgeopt.bench import evaluate_tflite, size_of
    from edgeopt.compress.cluster import ClusterConfig, cluster, strip_clustering, weight_report
    from edgeopt.compress.collaborative import pcqat, prune_to_sparsity, tflite_weight_report
    from edgeopt.compress.quantize import CLUSTERED_SCALES, QATConfig, calibrate_ranges, quantize
    from edgeopt.export import to_tflite

    name = f"{args.model}_{args.alpha}"
    out.mkdir(parents=True, exist_ok=True)
    splits = load_dataset("fashion_mnist", image_size=32, channels=3, batch_size=64, limit_test=args.test_limit)
    calib = splits.train
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / f"{name}_{args.train_steps}.keras"
    model = create(args.model, input_shape=(32, 32, 3), classes=10, alpha=args.alpha)
    if cached.exists():
        model.load_weights(cached)
        print(f"loaded {cached}")
    else:
        fit(model, splits, TrainConfig(epochs=1, steps_per_epoch=args.train_steps, learning_rate=2e-3))
        model.save_weights(cached)
    keras_top1 = evaluate(model, splits.test)["top1"]
    print(f"float Keras top1 {keras_top1:.4f}", flush=True)

    rows, blobs = [], {}
    header = ["variant", "top1", "delta_pts_vs_float", "size_bytes", "gzip_bytes", "gzip_vs_float32", "median_ms", "notes"]

    def add(variant, blob, notes=""):
        t0 = time.perf_counter()
        acc = evaluate_tflite(blob, splits.test).top1
        size = size_of(blob)
        blobs[variant] = blob
        rows.append({"variant": variant, "top1": acc, "size_bytes": size.size_bytes, "gzip_bytes": size.gzip_bytes, "notes": notes})
        print(f"{variant}: top1 {acc:.4f} size {size.size_bytes} gz {size.gzip_bytes} ({time.perf_counter() - t0:.0f}s)", flush=True)
        write(rows, latency={})

    def write(rows, latency):
        base = next((r for r in rows if r["variant"] == "float32"), rows[0])
        for r in rows:
            r["delta_pts_vs_float"] = round(100 * (r["top1"] - base["top1"]), 2)
            r["gzip_vs_float32"] = round(r["gzip_bytes"] / base["gzip_bytes"], 3)
            r["median_ms"] = latency.get(r["variant"], "")
        write_csv(out / f"quantization_{name}.csv", rows, header)
        lines = [f"# Quantization and clustering: {name} on Fashion-MNIST 32x32x3", "",
                 f"Machine: {machine_line()} (shared with other jobs: latency is noisy; medians, variants interleaved).",
                 f"Command: `PYTHONPATH=. python benchmarks/quantization.py {' '.join(sys.argv[1:])}`", "",
                 f"Float model: {args.train_steps} training steps of batch 64; fine-tunes {args.finetune_steps} steps. "
                 f"Keras float top-1 {keras_top1:.4f}. Test samples: {splits.sizes['test']}.", ""]
        lines += md_table(header, ([round(r[h], 4) if isinstance(r[h], float) else r[h] for h in header] for r in rows))
        write_file(out / f"quantization_{name}.md", "\n".join(lines) + "\n" + EXTRA.get("text", ""))
        combine(out)

    EXTRA = {}
    add("float32", to_tflite(model, "float32", calib, num_verify=0).model_bytes)
    add("int8 PTQ", to_tflite(model, "int8", calib, num_verify=0).model_bytes)
    calib_x, _ = splits.arrays("train", limit=512)  # activation ranges start from the float model's, as the qat stage does
    qat = quantize(model)
    calibrate_ranges(qat, model, calib_x)
    _finetune(qat, splits, args.finetune_steps, 1e-4)
    add("int8 QAT", to_tflite(qat, "int8", calib, num_verify=0).model_bytes, "QAT fine-tune lr 1e-4, ranges calibrated on 512 images")
    for mode in ("dynamic", "float16", "int16x8"):
        add(mode, to_tflite(model, mode, calib, num_verify=0).model_bytes)

    clustered = cluster(model, ClusterConfig(number_of_clusters=16))
    _finetune(clustered, splits, args.finetune_steps, 1e-4)
    clustered = strip_clustering(clustered)
    uniq = max(r.unique_values for r in weight_report(clustered) if r.layer_type in ("Conv2D", "Dense"))
    add("cluster16 float32", to_tflite(clustered, "float32", calib, num_verify=0).model_bytes, f"max unique/layer {uniq}")
    add("cluster16 int8", to_tflite(clustered, "int8", calib, num_verify=0).model_bytes, "PTQ of the stripped clustered model")

    # one-shot 50% of every Conv2D/Dense kernel, then recovery at lr 5e-4 (at 1e-4 for half the steps MobileNetV2
    # 0.35 was still 4 points down after PCQAT)
    pruned = prune_to_sparsity(model, 0.5, splits.train, steps=args.finetune_steps, learning_rate=5e-4)
    pc = cluster(pruned, ClusterConfig(number_of_clusters=16, preserve_sparsity=True))
    _finetune(pc, splits, args.finetune_steps // 2, 1e-4)
    pc = strip_clustering(pc)
    for scales in CLUSTERED_SCALES:  # one scale per clustered kernel (edgeopt's default) or per output channel (TF-MOT's)
        q = pcqat(pc, QATConfig(clustered_scales=scales))
        calibrate_ranges(q, pc, calib_x)
        _finetune(q, splits, args.finetune_steps // 2, 1e-4)
        blob = to_tflite(q, "int8", calib, num_verify=0).model_bytes
        kernels = [r for r in tflite_weight_report(blob, min_size=16) if r.layer_type == "int8" and ("_conv/" in r.name or "classifier/" in r.name) and "dwconv" not in r.name]
        note = (f"{scales.replace('_', '-')} scales; {len(kernels)} conv/dense kernels in the .tflite: min sparsity "
                f"{min(r.sparsity for r in kernels):.3f}, max unique int8 codes per output channel "
                f"{max(r.max_unique_per_channel for r in kernels)}, per tensor {max(r.unique_values for r in kernels)}") if kernels else "no kernels found"
        add("prune50+cluster16+PCQAT int8" + ("" if scales == "per_tensor" else " (per-channel)"), blob, note)

    latency = median_latency_ms(blobs, 3, threads=1, runs=20, min_seconds=0.3)  # variants interleaved, median of per-round medians
    write(rows, {k: round(v, 3) for k, v in latency.items()})
    # the PCQAT files, kept, and where their gzipped bytes go (the findings' breakdown table)
    kept = {v: CACHE / f"{name}_{v.replace(' ', '_').replace('(', '').replace(')', '')}.tflite" for v in blobs if v == "float32" or "PCQAT" in v}
    for variant, path in kept.items():
        write_file(path, blobs[variant])
    pcqat_breakdown(["--tflite", *(str(p) for v, p in kept.items() if v != "float32"), "--float32", str(kept["float32"]),
                     "--out", str(out / f"quantization_{name}_pcqat_breakdown.json")])
    if out.resolve() == OUT.resolve():  # the findings read the other models' committed tables too
        write_file(out / FINDINGS, findings_markdown(findings_data(out)))
        combine(out)
    print(open(out / f"quantization_{name}.md").read())


if __name__ == "__main__":
    main()
