"""Renders benchmarks/quantization.md, quantization.csv, clustering.md and quantization_findings.md from the
committed data; imports no TensorFlow.

Two formats. Format 2 (quantization.json, ``"format": 2``, written by benchmarks/quantization.py since issue #21's
seeds): the well-trained 28x28 MobileNetV2 0.35 baseline and every variant's per-seed results; tables and findings
show mean ± std over seeds, the test-sampling interval and a verdict per target ("met", "missed", "within noise").
Format 1 (per-model quantization_<model>.csv and .md, one run each, 32x32 models trained 1-3 epochs) keeps its
own rendering while no quantization.json exists, so the committed files stay reproducible until a format-2 run
replaces them (the run removes the per-model files); that path can go then.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from benchmarks._common import md_table, mean_std, plural, pm, sampling_interval, seed_stats, signed_pm, span, wrap, write_file

CLUSTER_ROWS = ("float32", "cluster16 float32", "cluster16 int8", "prune50+cluster16+PCQAT int8",
                "prune50+cluster16+PCQAT int8 (per-channel)")
DATA = "quantization.json"  # format 2's raw per-seed results


def _format2(folder: Path) -> dict | None:
    """quantization.json when ``folder`` has one (format 2), else None."""
    path = folder / DATA
    return json.loads(path.read_text()) if path.exists() else None


def combine(out: Path) -> None:
    """Concatenate every per-model table into quantization.md, and the clustering rows into clustering.md."""
    quantization, clustering = combined_markdown(out)
    write_file(out / "quantization.md", quantization)
    write_file(out / "clustering.md", clustering)


def combined_markdown(out: Path) -> tuple[str, str]:
    """quantization.md (format 2: the seeded table; format 1: every per-model table; then the findings) and
    clustering.md (the clustering rows) from the committed files in ``out``."""
    if _format2(out) is not None:
        return _seeded_markdown(findings_data(out))
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
    pcqat_breakdown.json), and gzip_bounds.json's clustered kernels. Format 2: quantization.json instead of the
    CSVs and headers."""
    own = folder / f"quantization_{FINDINGS_MODEL}_pcqat_breakdown.json"
    breakdown_file = own if own.exists() else folder / "pcqat_breakdown.json"
    bounds = json.loads((folder / "gzip_bounds.json").read_text())
    common = {"breakdown_file": breakdown_file.name, "breakdown": json.loads(breakdown_file.read_text()),
              "gzip_bounds_clustered": bounds["pruned_clustered"][0]}
    seeded = _format2(folder)
    if seeded is not None:
        return {**seeded, **common}
    models = {}
    for path in sorted(folder.glob("quantization_*.csv"), key=lambda p: (p.stem != f"quantization_{FINDINGS_MODEL}", p.stem)):
        name = path.stem.removeprefix("quantization_")
        with open(path) as f:
            rows = [_row(r) for r in csv.DictReader(f)]
        models[name] = {"rows": rows, **_meta((folder / f"quantization_{name}.md").read_text())}
    return {"models": models, **common}


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
    if "runs" in data:  # format 2
        return _seeded_findings(data)
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




# ---- format 2: every variant over seeds -------------------------------------------------------------------------

# each variant's target: the least difference of its test top-1 to float32's, in fractions (None: no target)
ROW_TARGETS = {"int8 PTQ": -TARGETS["ptq"] / 100, "int8 QAT": -TARGETS["qat"] / 100, "cluster16 float32": -TARGETS["cluster_points"] / 100,
               _PCQAT: -TARGETS["pcqat_points"] / 100, _PCQAT_PC: -TARGETS["pcqat_points"] / 100}


def summary(data: dict) -> list[dict]:
    """One dict per variant (float32 first, then in run order): seeds (0: one deterministic run), test top-1 mean and
    std, its test-sampling interval, the difference to float32 and the noise on it, the accuracy target and verdict,
    sizes (means), gzip against float32, latency (the first seed's file) and, for PCQAT, the kernels that survive in
    the .tflite (the worst seed)."""
    ref, images = data["reference"], data["test_images"]
    by: dict[str, list[dict]] = {}
    for r in data["runs"]:
        by.setdefault(r["variant"], []).append(r)
    rows = []
    for name, runs in {"float32": [ref], **by}.items():
        seeded = [r for r in runs if r["seed"] is not None]
        at_least = ROW_TARGETS.get(name)
        st = seed_stats([r["top1"] for r in runs], [ref["top1"]], images, at_least)
        row = {"variant": name, "seeds": len(seeded), "top1": st["mean"], "top1_std": st["std"], "interval": st["interval"],
               "diff": st["diff_mean"], "diff_std": st["diff_std"], "noise": st["noise"] if name != "float32" else 0.0,
               "target": "" if at_least is None else f"within {-100 * at_least:g} point of float32", "verdict": st.get("verdict", ""),
               "size_bytes": round(mean_std([r["size_bytes"] for r in runs])[0]), "gzip_bytes": round(mean_std([r["gzip_bytes"] for r in runs])[0]),
               "median_ms": data["latency_ms"].get(name)}
        row["gzip_vs_float32"] = row["gzip_bytes"] / ref["gzip_bytes"]
        kernels = [r["kernels"] for r in runs if r.get("kernels")]
        if kernels:
            row["kernels"] = {"scales": kernels[0]["scales"], "count": min(k["count"] for k in kernels),
                              "min_sparsity": min(k["min_sparsity"] for k in kernels),
                              "codes_per_channel": max(k["codes_per_channel"] for k in kernels),
                              "codes_per_tensor": max(k["codes_per_tensor"] for k in kernels)}
        rows.append(row)
    return rows


def _as_models(data: dict) -> dict:
    """The summary in format 1's shape (one model), for the PCQAT breakdown section both formats share."""
    rows = [{**r, "delta_pts_vs_float": 100 * r["diff"]} for r in summary(data)]
    return {FINDINGS_MODEL: {"rows": rows, "test_images": data["test_images"], "machine": data["machine"]}}


def _seeded_header(data: dict) -> list[str]:
    s = data["settings"]
    return wrap(f"Baseline: `{data['baseline']['file']}`, MobileNetV2 alpha 0.35 at 28x28x3 trained by `recipes/fmnist_mobilenet_v2.toml` "
                f"(Keras test top-1 {100 * data['baseline']['keras_top1']:.2f}%, validation {100 * data['baseline']['val_top1']:.2f}%). "
                f"Every seeded variant runs once per seed ({plural(len(data['seeds']), 'seed')}; seed = the {s['calibration']} calibration images, "
                "and for fine-tunes also the data order and TF-MOT randomness); float32, dynamic and float16 need neither, one run each. "
                f"Fine-tunes: {s['steps']:,} steps of batch 128 (QAT at {s['qat_lr']:g}, clustering at {s['cluster_lr']:g}, constant; "
                f"PCQAT: one-shot 50% pruning recovered {s['steps']:,} steps at {s['prune_lr']:g}, clustering with sparsity kept and "
                f"PCQAT half the steps each), label smoothing 0.1, validated {s['checks']} times, the weights of the best validation "
                f"check kept (early stopping on the validation split); QAT ranges calibrated on {s['calibration']} images. Each "
                f".tflite is read once on the {data['test_images']:,} test images. Columns: top-1 mean ± sample std over seeds, its "
                "test-sampling 95% interval, the difference to float32 (points, mean ± std) and the noise on it (the seeds' 95% "
                "interval and the test sampling in quadrature), the verdict against the target: met or missed beyond that noise, "
                "or within noise. Latency: the first seed's files, 1 thread, interleaved, median of the rounds' medians. Raw "
                f"per-seed results: `{DATA}`. Command: `PYTHONPATH=. python {data['cmd']}`.")


def _summary_table(rows: list[dict]) -> list[str]:
    return md_table(["variant", "seeds", "top-1 %", "± 95% test sampling", "vs float32 (points)", "noise ±", "target", "verdict", "size bytes",
                     "gzip bytes", "gzip vs float32", "median ms"],
                    ([r["variant"], r["seeds"] or "one run", pm(r["top1"], r["top1_std"]), f"{100 * r['interval']:.2f}",
                      signed_pm(r["diff"], r["diff_std"]) if r["variant"] != "float32" else "-",
                      f"{100 * r['noise']:.2f}" if r["variant"] != "float32" else "-", r["target"] or "-", r["verdict"] or "-",
                      f"{r['size_bytes']:,}", f"{r['gzip_bytes']:,}", f"{r['gzip_vs_float32']:.3f}",
                      f"{r['median_ms']:.3f}" if r["median_ms"] is not None else "-"] for r in rows), "lrrrrrllrrrr")


def _seeded_markdown(data: dict) -> tuple[str, str]:
    rows = summary(data)
    lines = ["# Quantization: PTQ modes, QAT and collaborative optimization on Fashion-MNIST", "", f"Machine: {data['machine']}.", "",
             *_seeded_header(data), "", *_summary_table(rows), "", "Every run (test top-1 read once per file):", ""]
    lines += md_table(["variant", "seed", "kept step / steps", "validation top-1 %", "test top-1 %", "gzip bytes", "notes"],
                      ([r["variant"], "-" if r["seed"] is None else r["seed"],
                        f"{r['selected_step']:,} / {r['steps']:,}" if r.get("steps") else "-",
                        f"{100 * r['val_top1']:.2f}" if r.get("val_top1") is not None else "-", f"{100 * r['top1']:.2f}",
                        f"{r['gzip_bytes']:,}", r.get("notes", "")] for r in [data["reference"], *data["runs"]]), "lrrrrrl")
    quantization = "\n".join(lines) + "\n\n" + _seeded_findings(data)
    clustering = ["# Weight clustering on Fashion-MNIST", "",
                  *wrap("Rows taken from the quantization run (same baseline, same seeds; see quantization.md for the machine, the "
                        "settings and the command). Clustering: 16 clusters, k-means++ init, every Conv2D and Dense layer, fine-tuned, "
                        "stripped."), "", *_summary_table([r for r in rows if r["variant"] in CLUSTER_ROWS]), ""]
    return quantization, "\n".join(clustering) + "\n"


def _gzip_verdict(row: dict, limit: float, note: str = "") -> tuple[str, str]:
    """A gzip ratio against its limit (at most): the text and the verdict (sizes hardly move between seeds: no noise)."""
    return f"{row['gzip_vs_float32']:.3f}x of float32{note}", _met(row["gzip_vs_float32"] <= limit)


def _seeded_findings(data: dict) -> str:
    rows = {r["variant"]: r for r in summary(data)}
    f32, ptq = rows["float32"], rows["int8 PTQ"]

    def acc(name):
        r = rows[name]
        return (f"{signed_pm(r['diff'], r['diff_std'])} points over {plural(r['seeds'], 'seed')}, noise ±{100 * r['noise']:.2f}", r["verdict"])

    k = rows[_PCQAT].get("kernels")
    if k:
        codes = (f"{k['codes_per_channel']} codes per channel and per tensor" if k["codes_per_channel"] == k["codes_per_tensor"]
                 else f"{k['codes_per_channel']} codes per channel, {k['codes_per_tensor']} per tensor")
        found = f"at least {k['min_sparsity']:.3f} zeros in each of the {k['count']} kernels, {codes} (every seed)"
    survive = bool(k) and k["min_sparsity"] >= TARGETS["sparsity"] and max(k["codes_per_channel"], k["codes_per_tensor"]) <= TARGETS["codes"]
    table = [
        (f"PTQ int8 within {TARGETS['ptq']:g} point of float", *acc("int8 PTQ")),
        (f"QAT int8 within {TARGETS['qat']:g} point of float", *acc("int8 QAT")),
        (f"cluster16 float32 within {TARGETS['cluster_points']:g} point of float", *acc("cluster16 float32")),
        (f"cluster16 float32 gzip at most {TARGETS['cluster_gzip']:g}x", *_gzip_verdict(rows["cluster16 float32"], TARGETS["cluster_gzip"])),
        (f"PCQAT int8 within {TARGETS['pcqat_points']:g} points of float", *acc(_PCQAT)),
        (f"PCQAT int8: sparsity and at most {TARGETS['codes']} codes survive in the .tflite",
         found if k else "no pruned and clustered kernel found in the .tflite", _met(survive)),
        (f"PCQAT int8 gzip at most 1/8 ({GZIP_TARGET:g}x) of float32", *_gzip_verdict(rows[_PCQAT], GZIP_TARGET, ", see below")),
    ]
    slower = ptq["median_ms"] > f32["median_ms"]
    # the header is edgeopt.bench.machine's describe(): "...; AVX2, AVX-512, VNNI, no AMX)" or "..., no VNNI, ..." (flags in lower case)
    vnni = "VNNI" in data["machine"] and "no VNNI" not in data["machine"]
    lines = ["## Findings", "", f"### Against the targets ({plural(len(data['seeds']), 'seed')}; machine: see the table's header)", "",
             *md_table(["target", f"{_title(FINDINGS_MODEL)}: result", "verdict"], table), "",
             *wrap(f"Float32 reads {100 * f32['top1']:.2f}% on the {data['test_images']:,} test images (±{100 * f32['interval']:.2f} points "
                   "test-sampling interval at 95%); a verdict \"within noise\" means the mean difference is closer to the target than the "
                   "noise on it, so these seeds cannot tell."), "",
             *wrap(f"On this machine int8 PTQ is {'slower than' if slower else 'faster than'} float32 under XNNPACK at 1 thread "
                   f"({ptq['median_ms']:.3f} vs {f32['median_ms']:.3f} ms, {ptq['median_ms'] / f32['median_ms']:.2f}x); its CPU "
                   f"{'has' if vnni else 'lacks'} VNNI, the x86 instructions int8 needs to beat float "
                   "(without them XNNPACK's int8 is slower). Phones' ARM cores (dot-product instructions) differ; not measured here."), "",
             *_breakdown_section({**data, "models": _as_models(data)})]
    return "\n".join(lines) + "\n"
