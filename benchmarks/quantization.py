"""Quantization and clustering benchmark on Fashion-MNIST, from the well-trained baseline (MobileNetV2 alpha 0.35 at
28x28x3, >= 93%, recipes/fmnist_mobilenet_v2.toml; benchmarks/_common.py loads it and its data): PTQ export modes
(float32, dynamic-range, float16, int8, int16x8), QAT int8, clustering (16 clusters, all Conv2D and Dense layers;
float32 and int8), and prune 50% + cluster 16 + PCQAT -> int8 (one scale per clustered kernel, and TF-MOT's
per-channel scales) with the weights read back out of the .tflite. Each row: test top-1 of the .tflite, size raw /
gzipped, median latency (1 thread).

Seeds: every variant that calibrates or trains runs with ``--seeds`` seeds (seed = the calibration images, and for
fine-tunes the data order and TF-MOT randomness); float32, dynamic and float16 are deterministic, one run each.
Fine-tunes validate ``CHECKS`` times and keep the best validation check (early stopping on the validation split);
each .tflite is read once on the 10,000 test images. Each (group, seed) is cached in
runs/bench_cache/quantization/<settings>/runs.json as it finishes (a killed run continues). The run writes the raw
per-seed results to the committed benchmarks/quantization.json, breaks the first seed's PCQAT files down
(benchmarks/pcqat_breakdown.py) into quantization_mobilenet_v2_0.35_pcqat_breakdown.json, and renders
quantization.md, quantization.csv, clustering.md and quantization_findings.md (benchmarks/_quantization_report.py,
no TensorFlow); the format-1 per-model files it supersedes are removed.

Full run, about 1.5 h on 2 idle cores (per seed 600 QAT, 600 clustering, 600 pruning and 3 x 300 clustering/PCQAT
steps at 0.35-0.55 s a step, eight conversions and test passes; then latency), about twice that while another
training shares the cores; it prints its own estimate first:
      nice -n 19 env PYTHONPATH=. python benchmarks/quantization.py
Smoke run (14 min at nice 19 next to a training, most of it TensorFlow tracing and conversion; writes
/tmp/edgeopt-bench-quick/quantization/ and runs/bench_cache/quick/):
      nice -n 19 env PYTHONPATH=. python benchmarks/quantization.py --quick
      PYTHONPATH=. python benchmarks/quantization.py --findings-only   (re-render from the committed data)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from benchmarks._common import (CACHE_ROOT, QUICK_OUT, BaselineRun, SeedRuns, baseline_args, calibration_images, check_baseline,
                                finetune, reseeded, write_file)
from benchmarks._quantization_report import (DATA, FINDINGS, FINDINGS_CONSTANTS, FINDINGS_MODEL, combine,  # noqa: F401  (tests/test_findings.py
                                             combined_markdown, findings_data, findings_markdown, summary)  # reads the renderer here)

OUT = Path("benchmarks")
STEPS, CHECKS = 600, 4  # fine-tune steps of batch 128 (PCQAT's clustering and QAT: half each), validation checks
QAT_LR = CLUSTER_LR = 1e-4  # constant learning rates (cosine off), as format 1 ran them
PRUNE_LR = 5e-4  # one-shot 50% pruning's recovery (at 1e-4 for half the steps MobileNetV2 0.35 was still 4 points down)
CALIBRATION = 512  # int8 / int16x8 calibration and QAT range images, drawn by seed from the training split
GROUPS = {  # a job: the variants it makes from one seed, and its fine-tune steps (x STEPS) at seconds per step on 2 idle cores
    "ptq": (("int8 PTQ", "int16x8"), 0, 0.0),
    "qat": (("int8 QAT",), 1, 0.45),
    "cluster": (("cluster16 float32", "cluster16 int8"), 1, 0.45),
    "pcqat": (("prune50+cluster16+PCQAT int8", "prune50+cluster16+PCQAT int8 (per-channel)"), 2, 0.45),
}
FIXED = ("float32", "dynamic", "float16")  # deterministic: no calibration, no training
SECONDS_PER_FILE = 45  # a conversion and a test pass of 10,000 images
LATENCY_SECONDS = 300
QUICK = {"steps": 8, "checks": 2, "seeds": 1, "calibration": 32, "latency_rounds": 1}
FINDINGS_INPUTS = ("gzip_bounds.json",)  # committed input of the findings; --quick copies it next to its own results


class Run(BaselineRun):
    """One quantization run: the baseline, its data, the settings and the (group, seed) cache."""

    def __init__(self, args):
        super().__init__(args, QUICK, CHECKS, CALIBRATION)
        self.settings = {"baseline": self.digest, "steps": self.steps, "checks": self.checks, "calibration": self.calibration, "qat_lr": QAT_LR,
                         "cluster_lr": CLUSTER_LR, "prune_lr": PRUNE_LR, "quick": self.quick}
        self.cache = SeedRuns(CACHE_ROOT / ("quick/quantization" if self.quick else "quantization"), self.settings)

    def seconds(self, group: str) -> float:
        variants, factor, per_step = GROUPS.get(group, (FIXED, 0, 0.0))
        return len(variants) * SECONDS_PER_FILE + factor * self.steps * per_step * (1.5 if group == "pcqat" else 1)

    def file_row(self, variant: str, seed, blob: bytes, **extra) -> dict:
        """A .tflite read once on the test split: top-1 and sizes; the file is kept for latency and the breakdown."""
        from edgeopt.bench import evaluate_tflite, size_of  # lazy: rendering the findings needs no TensorFlow

        write_file(self.cache.file(variant, seed, ".tflite"), blob)
        size = size_of(blob)
        top1 = evaluate_tflite(blob, self.splits.test).top1
        print(f"{variant} seed {seed}: test top-1 {top1:.4f}, gzip {size.gzip_bytes:,} B", flush=True)
        return {"variant": variant, "seed": seed, "top1": top1, "size_bytes": size.size_bytes, "gzip_bytes": size.gzip_bytes, **extra}

    def fixed(self, *_) -> dict:
        """float32 (the reference), dynamic-range and float16 files of the baseline; its Keras test and validation top-1."""
        from edgeopt import evaluate  # lazy: as above
        from edgeopt.export import convert

        rows = [self.file_row(mode, None, convert(self.model, mode)) for mode in FIXED]
        return {"rows": rows, "keras_top1": evaluate(self.model, self.splits.test)["top1"], "val_top1": evaluate(self.model, self.splits.val)["top1"]}

    def group(self, name: str, seed: int) -> dict:
        """The variants of one group with one seed: calibration images drawn by the seed, fine-tunes reseeded."""
        x_cal = calibration_images(self.pool, seed, self.calibration)
        splits = reseeded(self.splits, seed)
        return {"rows": getattr(self, f"_{name}")(seed, splits, x_cal)}

    def _ptq(self, seed, splits, x_cal):
        from edgeopt.export import convert  # lazy: as above

        return [self.file_row(v, seed, convert(self.model, mode, x_cal)) for v, mode in (("int8 PTQ", "int8"), ("int16x8", "int16x8"))]

    def _qat(self, seed, splits, x_cal):
        from edgeopt.compress.quantize import calibrate_ranges, quantize  # lazy: as above
        from edgeopt.export import convert

        qat = quantize(self.model)
        calibrate_ranges(qat, self.model, x_cal)  # activation ranges start from the float model's, as the qat stage does
        tuned = finetune(qat, splits, self.steps, QAT_LR, seed, self.checks, cosine=False)
        return [self.file_row("int8 QAT", seed, convert(qat, "int8", x_cal), **tuned)]

    def _cluster(self, seed, splits, x_cal):
        from edgeopt.compress.cluster import ClusterConfig, cluster, strip_clustering, weight_report  # lazy: as above
        from edgeopt.export import convert

        clustered = cluster(self.model, ClusterConfig(number_of_clusters=16))
        tuned = finetune(clustered, splits, self.steps, CLUSTER_LR, seed, self.checks, cosine=False)
        clustered = strip_clustering(clustered)
        uniq = max(r.unique_values for r in weight_report(clustered) if r.layer_type in ("Conv2D", "Dense"))
        return [self.file_row("cluster16 float32", seed, convert(clustered, "float32"), notes=f"max unique/layer {uniq}", **tuned),
                self.file_row("cluster16 int8", seed, convert(clustered, "int8", x_cal), notes="PTQ of the stripped clustered model", **tuned)]

    def _pcqat(self, seed, splits, x_cal):
        from edgeopt.compress.cluster import ClusterConfig, cluster, strip_clustering  # lazy: as above
        from edgeopt.compress.collaborative import pcqat, prune_to_sparsity, tflite_weight_report
        from edgeopt.compress.quantize import CLUSTERED_SCALES, QATConfig, calibrate_ranges
        from edgeopt.export import convert

        pruned = prune_to_sparsity(self.model, 0.5, splits.train, steps=self.steps, learning_rate=PRUNE_LR)
        pc = cluster(pruned, ClusterConfig(number_of_clusters=16, preserve_sparsity=True))
        finetune(pc, splits, self.steps // 2, CLUSTER_LR, seed, self.checks, cosine=False)
        pc = strip_clustering(pc)
        rows = []
        for scales in CLUSTERED_SCALES:  # one scale per clustered kernel (edgeopt's default) or per output channel (TF-MOT's)
            q = pcqat(pc, QATConfig(clustered_scales=scales))
            calibrate_ranges(q, pc, x_cal)
            tuned = finetune(q, splits, self.steps // 2, QAT_LR, seed, self.checks, cosine=False)
            blob = convert(q, "int8", x_cal)
            kernels = [r for r in tflite_weight_report(blob, min_size=16)
                       if r.layer_type == "int8" and ("_conv/" in r.name or "classifier/" in r.name) and "dwconv" not in r.name]
            found = {"scales": scales.replace("_", "-"), "count": len(kernels), "min_sparsity": min(r.sparsity for r in kernels),
                     "codes_per_channel": max(r.max_unique_per_channel for r in kernels),
                     "codes_per_tensor": max(r.unique_values for r in kernels)} if kernels else None
            note = (f"{found['scales']} scales; {found['count']} conv/dense kernels in the .tflite: min sparsity {found['min_sparsity']:.3f}, "
                    f"max unique int8 codes per output channel {found['codes_per_channel']}, per tensor {found['codes_per_tensor']}"
                    if found else "no kernels found")
            variant = "prune50+cluster16+PCQAT int8" + ("" if scales == "per_tensor" else " (per-channel)")
            rows.append(self.file_row(variant, seed, blob, notes=note, kernels=found, **tuned))
        return rows

    def latency(self, *_) -> dict:
        """Median latency (ms, 1 thread) of the fixed files and of every variant's first-seed file, interleaved."""
        from benchmarks._common import median_latency_ms  # lazy: as above

        first = self.seeds[0]
        files = {v: self.cache.file(v, None, ".tflite") for v in FIXED}
        files |= {v: self.cache.file(v, first, ".tflite") for variants, _, _ in GROUPS.values() for v in variants}
        rounds = QUICK["latency_rounds"] if self.quick else 3
        return {"ms": median_latency_ms(files, rounds, threads=1, runs=20, min_seconds=0.3, progress="latency")}

    def measure_all(self) -> dict:
        """Every group on every seed (cached, resumable), then latency: what quantization.json holds."""
        jobs = [(g, s) for s in self.seeds for g in GROUPS]
        left = [self.seconds(g) for g, s in [("fixed", None), *jobs] if self.cache.get(g, s) is None]
        print(f"quantization: {len(left)} runs to do, about {(sum(left) + LATENCY_SECONDS) / 3600:.1f} h on 2 idle cores", flush=True)
        fixed = self.cache.run([("fixed", None)], self.fixed, self.seconds, "quantization: fixed modes")[0]
        groups = self.cache.run(jobs, self.group, self.seconds, "quantization: variants x seeds")
        lat = self.cache.run([("latency", None)], self.latency, lambda _: LATENCY_SECONDS, "quantization: latency")[0]
        runs = [r for g in groups for r in g["rows"]]
        order = [v for variants, _, _ in GROUPS.values() for v in variants]
        runs.sort(key=lambda r: (order.index(r["variant"]), r["seed"]))
        reference, *others = fixed["rows"]
        return {"format": 2, "cmd": "benchmarks/quantization.py " + " ".join(sys.argv[1:]), "model": FINDINGS_MODEL,
                "test_images": self.splits.sizes["test"], "seeds": self.seeds, "settings": self.settings,
                "baseline": {"file": str(self.baseline_file), "keras_top1": fixed["keras_top1"], "val_top1": fixed["val_top1"]},
                "reference": reference, "runs": others + runs, "latency_ms": {k: round(v, 4) for k, v in lat["ms"].items()}}


def _retire_format1(out: Path) -> None:
    """Remove the per-model tables (format 1) a format-2 run supersedes."""
    for path in sorted(out.glob("quantization_*")):
        if path.suffix in (".csv", ".md") and path.name != FINDINGS:
            print(f"removing {path} (format 1, superseded by {DATA})", flush=True)
            path.unlink()


def write_results(out: Path, data: dict, cache: SeedRuns) -> None:
    """quantization.json, the first seed's PCQAT breakdown, then every rendered file, into ``out``."""
    from benchmarks._common import write_csv
    from benchmarks.pcqat_breakdown import main as pcqat_breakdown

    write_file(out / DATA, json.dumps(data, indent=1) + "\n")
    first = data["seeds"][0]
    pcqat = [str(cache.file(v, first, ".tflite")) for v in GROUPS["pcqat"][0]]
    pcqat_breakdown(["--tflite", *pcqat, "--float32", str(cache.file("float32", None, ".tflite")),
                     "--out", str(out / f"quantization_{FINDINGS_MODEL}_pcqat_breakdown.json")])
    _retire_format1(out)
    write_csv(out / "quantization.csv", ({k: v for k, v in r.items() if k != "kernels"} for r in summary(data)),
              [k for k in summary(data)[-1] if k != "kernels"], "{:.6g}")
    write_file(out / FINDINGS, findings_markdown(findings_data(out)))
    combine(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    baseline_args(ap)
    ap.add_argument("--finetune-steps", type=int, default=STEPS, help="QAT / clustering / pruning fine-tune steps (PCQAT: half each)")
    ap.add_argument("--findings-only", action="store_true", help="render quantization_findings.md (and quantization.md, "
                    "clustering.md) from the committed data; measures nothing")
    args = ap.parse_args(argv)
    if args.findings_only:
        write_file(OUT / FINDINGS, findings_markdown(findings_data(OUT)))
        combine(OUT)
        return
    check_baseline(args.baseline, args.quick)
    from benchmarks._common import machine_line

    out = QUICK_OUT / "quantization" if args.quick else OUT
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        for name in FINDINGS_INPUTS:
            shutil.copy(OUT / name, out / name)
    t0 = time.perf_counter()
    run = Run(args)
    data = run.measure_all()
    data = {**data, "machine": f"{machine_line()} (shared with other jobs: latency is noisy; medians, variants interleaved)",
            "wall_s": time.perf_counter() - t0}
    write_results(out, data, run.cache)
    print(f"wrote {out}/{DATA}, quantization.md, quantization.csv, clustering.md, {FINDINGS}", flush=True)


if __name__ == "__main__":
    main()
