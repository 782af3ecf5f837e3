"""Quantization and clustering benchmark on Fashion-MNIST, one run from one trained float model:
PTQ export modes (float32, dynamic-range, float16, int8, int16x8), QAT int8, clustering (16 clusters, all Conv2D
and Dense layers; float32 and int8), and prune 50% + cluster 16 + PCQAT -> int8 with the weights read back out of
the .tflite. Each row: accuracy of the .tflite on the test set, size raw / gzipped, median latency (1 thread).

Model: MobileNetV2 alpha 0.35 (zoo small-input variant) at 32x32x3, 10 classes. The float model is cached in
runs/bench_cache/quantization/ so reruns resume. Rows are written to benchmarks/quantization.{md,csv} as they finish.

Run:  PYTHONPATH=. python benchmarks/quantization.py [--model mobilenet_v2 --alpha 0.35] [--train-steps N]
      [--finetune-steps N] [--test-limit N]
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from benchmarks._common import machine_line, md_table, median_latency_ms, write_csv, write_file
from edgeopt import TrainConfig, create, evaluate, fit, load_dataset
from edgeopt.bench import evaluate_tflite, size_of
from edgeopt.compress.cluster import ClusterConfig, cluster, strip_clustering, weight_report
from edgeopt.compress.collaborative import pcqat, prune_to_sparsity, tflite_weight_report
from edgeopt.compress.quantize import CLUSTERED_SCALES, QATConfig, calibrate_ranges, quantize
from edgeopt.export import to_tflite

OUT = Path("benchmarks")
CACHE = Path("runs/bench_cache/quantization")
CLUSTER_ROWS = ("float32", "cluster16 float32", "cluster16 int8", "prune50+cluster16+PCQAT int8",
                "prune50+cluster16+PCQAT int8 (per-channel)")


def combine(out: Path) -> None:
    """Concatenate every per-model table into quantization.md, and the clustering rows into clustering.md."""
    parts = sorted(p for p in out.glob("quantization_*.md") if p.name != "quantization_findings.md")
    write_file(out / "quantization.md",
        "# Quantization: PTQ modes, QAT and collaborative optimization on Fashion-MNIST\n\n"
        "One section per model, each from one trained float model in one run (per-model files: "
        + ", ".join(f"`{p.name}`" for p in parts) + ").\n\n"
        + "\n".join(p.read_text().replace("# Quantization and clustering:", "## ") for p in parts)
        + (("\n" + (out / "quantization_findings.md").read_text()) if (out / "quantization_findings.md").exists() else ""))
    lines = ["# Weight clustering on Fashion-MNIST", "",
             "Rows taken from the quantization runs (same float model, same run; see quantization.md for the machine "
             "and commands). Clustering: 16 clusters, k-means++ init, every Conv2D and Dense layer, fine-tuned, stripped.", ""]
    for p in sorted(out.glob("quantization_*.csv")):
        rows = [r for r in csv.DictReader(open(p)) if r["variant"] in CLUSTER_ROWS]
        if not rows:
            continue
        lines += [f"## {p.stem.removeprefix('quantization_')}", "", *md_table(list(rows[0]), (r.values() for r in rows)), ""]
    notes = out / "clustering_findings.md"
    write_file(out / "clustering.md", "\n".join(lines) + "\n" + (notes.read_text() if notes.exists() else ""))


def _finetune(model, splits, steps, lr):
    return fit(model, splits, TrainConfig(epochs=1, steps_per_epoch=steps, learning_rate=lr, cosine=False), compile=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--train-steps", type=int, default=2532, help="float training steps of batch 64 (2532 = 3 epochs)")
    ap.add_argument("--finetune-steps", type=int, default=844, help="QAT / clustering / PCQAT fine-tuning steps")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    name = f"{args.model}_{args.alpha}"
    out = args.out
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
    print(open(out / f"quantization_{name}.md").read())


if __name__ == "__main__":
    main()
