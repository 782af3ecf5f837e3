"""Low-bit weights benchmark on Fashion-MNIST, from the well-trained baseline (MobileNetV2 alpha 0.35 at 28x28x3,
recipes/fmnist_mobilenet_v2.toml; benchmarks/_common.py loads it and its data): float32, float16, int8 PTQ, int8 QAT,
mixed 8/4 at 60% of int8's packed size, 4-bit QAT, 2-bit QAT and binary weights. Each row: bits per kernel weight, the
.tflite's size (raw, gzipped), the packed size at the weights' bit-widths, test top-1 of the file itself, its agreement
with its Keras model, the int8 codes per output channel its low-bit kernels hold, median latency (1 thread). Each low-bit
run (mixed 8/4, 4-, 2-bit, binary) writes a second file from the same stripped model, with INT4 kernels
(``to_tflite(mode="int4", lowbit_bits=...)``, ai-edge-quantizer): its row "<variant> INT4" says what the runtime can
carry and execute at 4 bits, not only what packing would save.

Seeds: every variant that calibrates or trains runs with ``--seeds`` seeds (seed = calibration images, data order,
TF-MOT randomness); float32 and float16 are one run each. The mixed-precision plan (sensitivity of each layer at 4 bits
on validation images, bits chosen under the budget: edgeopt.compress.mixed_precision) depends on the baseline only and
is made once. Fine-tunes validate ``CHECKS`` times and keep the best validation check. Each (variant, seed) is cached
in benchmarks/raw/lowbit/<model>/<settings>/runs.json as it finishes (committed: a killed run continues, in this
session or the next one on a fresh clone; its files stay in runs/bench_cache/). The run writes the raw results
to benchmarks/lowbit_<model>.json and renders lowbit.md, lowbit.csv, lowbit.png and lowbit_findings.md
(benchmarks/_lowbit_report.py, no TensorFlow) from every lowbit_<model>.json there.

Full run, about 2.6 h on 2 idle cores (it prints its own estimate first; per seed 3 x 600 + 2 x 1,200 QAT steps at
about 0.5 s a step, five QAT builds, six conversions with verification and test passes), about twice that next to another
training:
      nice -n 19 env PYTHONPATH=. python benchmarks/lowbit.py
MobileNetV1 0.25 (trained by recipes/quickstart.toml, the same data settings; committed as
benchmarks/baselines/fmnist_mobilenet_v1_0.25.keras with its record beside it), as a second model:
      nice -n 19 env PYTHONPATH=. python benchmarks/lowbit.py --baseline benchmarks/baselines/fmnist_mobilenet_v1_0.25.keras --model mobilenet_v1_0.25
Smoke run (a stand-in model, a few steps; writes /tmp/edgeopt-bench-quick/lowbit/ and runs/bench_cache/quick/):
      nice -n 19 env PYTHONPATH=. python benchmarks/lowbit.py --quick
      PYTHONPATH=. python benchmarks/lowbit.py --findings-only   (re-render from the committed data)
      nice -n 19 env PYTHONPATH=. python benchmarks/lowbit.py --remeasure-latency   (one new latency table; runs made
      before INT4 files existed run again for the first seed and get them)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks._common import (QUICK_OUT, BaselineRun, baseline_args, calibration_images, check_baseline, finetune,
                                reseeded, seed_runs, write_file)
from benchmarks._lowbit_report import (FINDINGS, FINDINGS_CONSTANTS, PREFIX, VARIANTS, findings_data, findings_markdown,  # noqa: F401
                                       INT4_SUFFIX, int4_variant, write_all)  # (tests/test_findings.py reads the renderer here)

OUT = Path("benchmarks")
STEPS, CHECKS = 600, 4  # QAT fine-tune steps of batch 128 (x FACTORS), validation checks
CALIBRATION = 512  # int8 calibration and QAT activation-range images, drawn by seed from the training split
SENSITIVITY_SAMPLES = 512  # validation images the mixed-precision sensitivity is measured on
MIXED = {"budget_fraction": 0.6, "bits": (8, 4), "metric": "loss"}  # the issue's budget: 60% of int8's packed size
# each low-bit row: its LowBitConfig fields (first and last layers at 8 bits throughout). Binary keeps depthwise kernels at
# 8 bits: a 3x3 depthwise channel of +-alpha has nine signs to express a spatial filter, and these kernels are a few
# percent of the weights.
LOWBIT = {"4-bit QAT": {"bits": 4}, "2-bit QAT": {"bits": 2}, "binary": {"bits": 1, "depthwise_bits": 8}}
FACTORS = {"int8 QAT": 1, "mixed 8/4": 1, "4-bit QAT": 1, "2-bit QAT": 2, "binary": 2}  # fine-tune steps x STEPS
# peak learning rates (Adam, cosine decay). 2-bit and binary start further from the float model and their latent weights
# must cross level boundaries (signs, for binary: Larq's examples train binary layers at 1e-3); not tuned on this baseline
RATES = {"int8 QAT": 2e-4, "mixed 8/4": 2e-4, "4-bit QAT": 2e-4, "2-bit QAT": 5e-4, "binary": 1e-3}
# wall-time estimates on 2 idle cores: a fine-tune step, a file (conversion, verification, test pass), a QAT model's build
# and tracing (measured by --quick next to another job: 0.75 s a low-bit step, 4-5 min of overhead per QAT variant)
SECONDS_PER_STEP, SECONDS_PER_FILE, QAT_SECONDS, PLAN_SECONDS, LATENCY_SECONDS = 0.5, 80, 150, 120, 300
FIXED = ("float32", "float16")
SEEDED = ("int8 PTQ", "int8 QAT", "mixed 8/4", *LOWBIT)
# the variants whose stripped model is also exported with INT4 kernels (to_tflite mode int4, ai-edge-quantizer): a
# second row of the same run, "<variant> INT4". Not in the settings: results cached before these rows existed stay valid
INT4_FROM = ("mixed 8/4", *LOWBIT)
QUICK = {"steps": 8, "checks": 2, "seeds": 1, "calibration": 32, "latency_rounds": 1}
VERIFY_IMAGES = 500


class Run(BaselineRun):
    """One low-bit run: the baseline, its data, the settings and the (variant, seed) cache."""

    def __init__(self, args):
        super().__init__(args, QUICK, CHECKS, CALIBRATION)
        self.model_name = args.model
        self.sensitivity_samples = min(SENSITIVITY_SAMPLES, self.splits.sizes["val"])
        self.settings = {"baseline": self.digest, "steps": self.steps, "checks": self.checks, "calibration": self.calibration, "rates": RATES,
                         "factors": FACTORS, "lowbit": LOWBIT, "mixed": MIXED, "sensitivity_samples": self.sensitivity_samples, "quick": self.quick}
        self.cache = seed_runs(f"lowbit/{self.model_name}", self.settings, self.quick)

    def seconds(self, variant: str) -> float:
        training = QAT_SECONDS + FACTORS[variant] * self.steps * SECONDS_PER_STEP if variant in FACTORS else 0.0
        files = 2 if variant in INT4_FROM else 1  # the low-bit variants write an int8 and an INT4 file
        return {"plan": PLAN_SECONDS, "latency": LATENCY_SECONDS}.get(variant, files * SECONDS_PER_FILE + training)

    # ---- one file -------------------------------------------------------------------------------------------

    def file_row(self, variant: str, seed, model, mode: str, x_cal, widths: dict[str, int] | None, packed: int, **extra) -> dict:
        """Export ``model`` in ``mode`` (verified against it on validation images), read the file once on the test split,
        count the int8 codes per output channel of its kernels at each width of ``widths`` (None: a float file). Mode
        int4 passes ``widths`` as ``lowbit_bits`` (the layers below 8 bits get INT4 kernels where LiteRT has them) and
        counts the codes of the low-bit kernels as the file stores them (INT4 or int8), from the export's manifest."""
        from edgeopt.bench import evaluate_tflite, size_of  # lazy: rendering the findings needs no TensorFlow
        from edgeopt.export import to_tflite  # lazy: as above

        lowbit = {"lowbit_bits": widths} if mode == "int4" else {}
        art = to_tflite(model, mode, x_cal, verify_data=self.splits.val, num_calibration=len(x_cal), num_verify=VERIFY_IMAGES, min_agreement=0.0,
                        **lowbit)
        blob = art.model_bytes
        write_file(self.cache.file(variant.removesuffix(INT4_SUFFIX), seed, ".int4.tflite") if mode == "int4" else self.cache.file(variant, seed, ".tflite"), blob)
        size = size_of(blob)
        top1 = evaluate_tflite(blob, self.splits.test).top1
        if mode == "int4":
            entry = art.manifest["lowbit"]
            codes = _stored_codes(entry["kernels"], widths)
            extra = {**extra, "int4_ops": entry["int4_ops"], "int4_kernels": sum(k["storage"] == "int4" for k in entry["kernels"]),
                     "exact": entry["exact"]}
        else:
            codes = _codes_per_channel(blob, widths) if widths else None
        print(f"{variant} seed {seed}: test top-1 {top1:.4f}, {size.size_bytes:,} B, packed {packed:,} B, codes {codes}", flush=True)
        return {"variant": variant, "seed": seed, "top1": top1, "size_bytes": size.size_bytes, "gzip_bytes": size.gzip_bytes, "packed_bytes": packed,
                "weight_bits": self.weight_bits(widths), "agreement": art.verification.top1_agreement if art.verification else None, "codes_per_channel": codes, **extra}

    def weight_bits(self, widths: dict[str, int] | None, float_bits: int = 32) -> float:
        """Mean bits per Conv2D / DepthwiseConv2D / Dense kernel weight (``float_bits`` for a float file)."""
        from edgeopt.compress.masks import kernel_of  # lazy: as above

        if not widths:
            return float(float_bits)
        sizes = {n: int(kernel_of(self.model, n).shape.num_elements()) for n in widths}
        return sum(sizes[n] * b for n, b in widths.items()) / sum(sizes.values())

    # ---- jobs -----------------------------------------------------------------------------------------------

    def fixed(self, variant: str, _seed) -> dict:
        """float32 or float16 of the baseline (float32 also records the Keras test and validation top-1)."""
        from edgeopt import evaluate  # lazy: as above

        params = self.model.count_params()
        bits = 32 if variant == "float32" else 16
        row = self.file_row(variant, None, self.model, variant, self.pool[:self.calibration], None, params * bits // 8)
        row["weight_bits"] = float(bits)
        extra = {"keras_top1": evaluate(self.model, self.splits.test)["top1"], "val_top1": evaluate(self.model, self.splits.val)["top1"]} if bits == 32 else {}
        return {"rows": [row], **extra}

    def plan(self, *_) -> dict:
        """The mixed-precision plan of the baseline (bits per layer under the budget), measured on validation images."""
        from edgeopt.compress.mixed_precision import MixedPrecisionConfig, plan_mixed_precision  # lazy: as above

        x, y = self.splits.arrays("val", limit=self.sensitivity_samples)
        config = MixedPrecisionConfig(budget_fraction=MIXED["budget_fraction"], bits=MIXED["bits"], metric=MIXED["metric"], samples=len(x))
        return plan_mixed_precision(self.model, x, y, config).to_dict()

    def seeded(self, variant: str, seed: int) -> dict:
        from edgeopt.compress.lowbit import LowBitConfig, packed_size_bytes, plan_bits, quantize_lowbit, strip_lowbit  # lazy: as above
        from edgeopt.compress.quantize import calibrate_ranges, quantize  # lazy: as above

        x_cal = calibration_images(self.pool, seed, self.calibration)
        splits = reseeded(self.splits, seed)
        eight = {n: 8 for n in plan_bits(self.model)}
        if variant == "int8 PTQ":
            return {"rows": [self.file_row(variant, seed, self.model, "int8", x_cal, eight, packed_size_bytes(self.model, 8))]}
        if variant == "int8 QAT":
            qat = quantize(self.model)
            calibrate_ranges(qat, self.model, x_cal)
            tuned = finetune(qat, splits, self.steps * FACTORS[variant], RATES[variant], seed, self.checks)
            return {"rows": [self.file_row(variant, seed, qat, "int8", x_cal, eight, packed_size_bytes(self.model, 8), **tuned)]}
        if variant == "mixed 8/4":
            plan = self.cache.get("plan")
            config = LowBitConfig(layer_bits=plan["layer_bits"])
        else:
            config = LowBitConfig(**LOWBIT[variant])
        qat = quantize_lowbit(self.model, config)
        calibrate_ranges(qat, self.model, x_cal)
        tuned = finetune(qat, splits, self.steps * FACTORS[variant], RATES[variant], seed, self.checks)
        plain = strip_lowbit(qat)
        widths = plan_bits(self.model, config)
        packed = packed_size_bytes(plain, widths)
        return {"rows": [self.file_row(variant, seed, plain, "int8", x_cal, widths, packed, **tuned),
                         self.file_row(int4_variant(variant), seed, plain, "int4", x_cal, widths, packed, **tuned)]}

    def latency(self, *_) -> dict:
        """Median latency (ms, 1 thread) of every variant's first-seed file, interleaved."""
        from benchmarks._common import machine_line, median_latency_ms  # lazy: as above

        first = self.seeds[0]
        files = {v: self.cache.file(v, None, ".tflite") for v in FIXED} | {v: self.cache.file(v, first, ".tflite") for v in SEEDED}
        files |= {int4_variant(v): self.cache.file(v, first, ".int4.tflite") for v in INT4_FROM}
        rounds = QUICK["latency_rounds"] if self.quick else 3
        return {"ms": median_latency_ms(files, rounds, threads=1, runs=20, min_seconds=0.3, progress="latency"),
                "machine": machine_line()}  # the table's machine: other seeds may run in a later session, elsewhere

    def measure_all(self) -> dict:
        """The fixed rows, the plan, the first seed's variants, latency (it reads their files, so the cache committed in
        benchmarks/raw/ needs no file once it is measured), then the other seeds (cached, resumable)."""
        from edgeopt.compress.lowbit import packed_size_bytes  # lazy: as above
        from edgeopt.compress.masks import kernel_of  # lazy: as above

        jobs = [(v, s) for s in self.seeds for v in SEEDED]
        left = [self.seconds(v) for v, s in [*((f, None) for f in FIXED), ("plan", None), *jobs] if self.cache.get(v, s) is None]
        print(f"lowbit: {len(left)} runs to do, about {(sum(left) + LATENCY_SECONDS) / 3600:.1f} h on 2 idle cores", flush=True)
        first = self.seeds[0]
        if self.args.remeasure_latency and self.cache.forget("latency"):
            print("lowbit: the latency table is measured again (jobs whose files are missing run again first)", flush=True)
        if self.cache.get("latency") is None:  # latency reads these files: re-make any a fresh clone lacks
            self.cache.ensure_files([(v, None, (".tflite",)) for v in FIXED]
                                    + [(v, first, (".tflite", ".int4.tflite") if v in INT4_FROM else (".tflite",)) for v in SEEDED], "lowbit, latency table")
        fixed = self.cache.run([(f, None) for f in FIXED], self.fixed, self.seconds, "lowbit: float files")
        plan = self.cache.run([("plan", None)], self.plan, self.seconds, "lowbit: mixed-precision plan")[0]
        self.cache.run([(v, first) for v in SEEDED], self.seeded, self.seconds, "lowbit: variants, first seed")
        lat = self.cache.run([("latency", None)], self.latency, lambda _: LATENCY_SECONDS, "lowbit: latency")[0]
        seeded = self.cache.run(jobs, self.seeded, self.seconds, "lowbit: variants x other seeds")
        runs = [r for g in [*fixed, *seeded] for r in g["rows"]]
        runs.sort(key=lambda r: (VARIANTS.index(r["variant"]), -1 if r["seed"] is None else r["seed"]))
        kernels = sum(int(kernel_of(self.model, n).shape.num_elements()) for n in plan["layer_bits"])
        return {"format": 1, "cmd": "benchmarks/lowbit.py " + " ".join(sys.argv[1:]), "model": self.model_name,
                "test_images": self.splits.sizes["test"], "seeds": self.seeds, "settings": self.settings,
                "baseline": {"file": str(self.baseline_file), "keras_top1": fixed[0]["keras_top1"], "val_top1": fixed[0]["val_top1"],
                             "params": self.model.count_params(), "kernel_weights": kernels},
                "int8_packed_bytes": packed_size_bytes(self.model, 8),
                "plan": {k: v for k, v in plan.items() if k not in ("variant", "seed", "seconds")},
                "runs": runs, "latency_ms": {k: round(v, 4) for k, v in lat["ms"].items()}, "latency_machine": lat.get("machine")}


def _stored_codes(kernels: list[dict], widths: dict[str, int]) -> dict[str, int]:
    """The most distinct values an output channel of a low-bit kernel holds in the file (INT4 or int8 storage), per
    width of ``widths``, from the manifest's ``lowbit`` kernels (edgeopt.tflite.lowbit.LowBitKernel)."""
    out: dict[str, int] = {}
    for kernel in kernels:
        width = str(widths[kernel["layer"]])
        out[width] = max(out.get(width, 0), int(kernel["max_values"]))
    return dict(sorted(out.items(), key=lambda kv: -int(kv[0])))


def _codes_per_channel(blob: bytes, widths: dict[str, int]) -> dict[str, int]:
    """The most distinct int8 values an output channel holds in the file, per width of ``widths`` (layer -> bits),
    over the int8 kernels whose tensor name names exactly one of those layers (``.../<layer>/...``, or
    ``.../quant_<layer>/...`` in a file converted from a QAT model)."""
    from edgeopt.compress.cluster import kernel_stats  # lazy: as above
    from edgeopt.tflite.flatbuffer import constant_weights  # lazy: as above

    out = {}
    for tensor in constant_weights(blob, min_size=1):
        owners = [n for n in widths if f"/{n}/" in tensor.name or f"/quant_{n}/" in tensor.name]
        if tensor.dtype == "int8" and len(owners) == 1:
            width = str(widths[owners[0]])
            out[width] = max(out.get(width, 0), kernel_stats(owners[0], "", tensor.values).max_unique_per_channel)
    return dict(sorted(out.items(), key=lambda kv: -int(kv[0])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    baseline_args(ap)
    ap.add_argument("--model", default="mobilenet_v2_0.35", help="the baseline's name in the results (lowbit_<model>.json), e.g. mobilenet_v1_0.25")
    ap.add_argument("--finetune-steps", type=int, default=STEPS, help="QAT fine-tune steps (2-bit and binary: x2)")
    ap.add_argument("--remeasure-latency", action="store_true", help="forget the cached latency table and measure it again in one "
                    "interleaved run; the first seed's jobs whose files are missing (a fresh clone, or INT4 files a run made before "
                    "they existed) run again first")
    ap.add_argument("--findings-only", action="store_true", help="render lowbit.md, lowbit.csv, lowbit.png and lowbit_findings.md from the "
                    "committed data; measures nothing")
    args = ap.parse_args(argv)
    if args.findings_only:
        write_all(OUT)
        return
    check_baseline(args.baseline, args.quick)
    from benchmarks._common import machine_line

    out = QUICK_OUT / "lowbit" if args.quick else OUT
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run = Run(args)
    data = run.measure_all()
    table_machine = data.pop("latency_machine") or machine_line()
    data = {**data, "machine": f"{table_machine} (shared with other jobs: latency is noisy; medians, variants interleaved)",
            "wall_s": time.perf_counter() - t0}
    write_file(out / f"{PREFIX}{args.model}.json", json.dumps(data, indent=1) + "\n")
    write_all(out)
    print(f"wrote {out}/{PREFIX}{args.model}.json, lowbit.md, lowbit.csv, lowbit.png, {FINDINGS}", flush=True)


if __name__ == "__main__":
    main()
