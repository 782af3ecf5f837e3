"""Per-layer quantization diagnostics benchmark (issue #23): on a model whose int8 PTQ loses accuracy, does the
quantization report rank the culprit first, and how much of the loss does the automatic float fallback win back, at
what size and latency cost?

The model: the well-trained baseline (MobileNetV2 alpha 0.35 at 28x28x3, recipes/fmnist_mobilenet_v2.toml;
benchmarks/_common.py loads it and its data) with an outlier channel put in, the float function unchanged: channel c
of ``block7a_project_bn`` (the folded batch normalization of the last projection convolution: a linear output,
scaled by K through its gamma and beta) and ``head_conv``'s kernel rows for input channel c divided by K. c is the
channel with the widest range on the first training images. MobileNetV2 puts ReLU6 between every expansion
convolution and its depthwise convolution, and a scale does not pass through ReLU6 (it clips at 6), so the outlier
goes into a linear bottleneck output instead; ``block7a``'s feeds only ``head_conv`` (no residual Add, which the scale
would break). Its int8 activation scale is set by channel c and the other channels get about 1/K of the levels;
``head_conv``'s int8 kernel loses the divided rows too (per output channel scales). K is chosen on the validation
split: the smallest of ``K_CANDIDATES`` whose int8 file (calibration seed 0) loses at least ``MIN_VAL_LOSS`` points
(a --quick run on the baseline lost nothing at K = 32 and 22 points at K = 64: the other channels' levels run out).
Keeping the culprit tensor float means keeping its producer and its consumer float, and the consumer here is
``head_conv`` (112 x 1280 weights, a third of the model): the fallback's size cost is large by construction.

Per calibration seed (``--seeds``, default 3; seed = the calibration images drawn from the training split): the
quantization report (``edgeopt.quantize_report``, debug images from the validation split) and where the culprit
ranks; ``edgeopt.auto_fallback`` (target ``TARGET_POINTS`` validation points, at most ``MAX_STEPS`` tensors;
validation split only); every step's file read once on the 10,000 test images. The first seed's steps are timed,
all interleaved in one run (1 thread). Verdicts against the issue's targets: int8 PTQ loses at least 1 point, the
report ranks the culprit first, the fallback wins back at least half of the loss ("met", "missed", "within noise":
the seeds' spread and the test-sampling 95% interval, edgeopt.stats).

Each job is cached in runs/bench_cache/quant_diagnostics/<settings>/runs.json as it finishes (a killed run
continues); the run writes benchmarks/quant_diagnostics.json (raw), quant_diagnostics.csv (every step of every
seed), quant_diagnostics.md (tables, then the findings) and quant_diagnostics_findings.md (rendered from the JSON by
``findings_markdown``; no TensorFlow).

Full run, about 30 min on 2 idle cores, about twice that next to another job (the K sweep: about 6 int8 conversions
and validation passes; per seed a report on 300 images, up to 5 conversions through the quantization debugger and
5 passes over the 3,000 validation and 10,000 test images; latency); it prints its own estimate first:
    nice -n 19 env PYTHONPATH=. python benchmarks/quant_diagnostics.py
Smoke run (about 6 min at nice 19 next to other jobs; the baseline when present, else _common's stand-in; 1 seed, 64 calibration and debug
images, at most 2 fallback steps, the first 256 validation and 500 test images; writes
/tmp/edgeopt-bench-quick/quant_diagnostics/ and runs/bench_cache/quick/):
    nice -n 19 env PYTHONPATH=. python benchmarks/quant_diagnostics.py --quick
    PYTHONPATH=. python benchmarks/quant_diagnostics.py --findings-only   (re-render from the committed data)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (CACHE_ROOT, QUICK_OUT, STANDIN, BaselineRun, SeedRuns, baseline_args, calibration_images, check_baseline,
                                md_table, mean_std, plural, sampling_interval, seed_stats, span, wrap, write_csv, write_file)

OUT = Path(__file__).parent
DATA, FINDINGS, TABLES = "quant_diagnostics.json", "quant_diagnostics_findings.md", "quant_diagnostics.md"
MODEL = "MobileNetV2 0.35 (fmnist_mobilenet_v2_0.35.keras)"
PRODUCER, CONSUMER = "block7a_project_bn", "head_conv"  # the outlier's linear output and the one layer that reads it
K_CANDIDATES = (16, 24, 32, 40, 48, 56, 64, 96, 128, 256)  # --quick on the baseline: 0 points lost at 32, 22 at 64
MIN_VAL_LOSS = 2.0  # validation points the chosen K's int8 file loses at least (the issue asks for >= 1 test point)
CALIBRATION, DEBUG = 500, 300  # calibration images (drawn by seed), debug images (the first validation images)
TARGET_POINTS, MAX_STEPS = 0.3, 4  # auto_fallback: within 0.3 validation points of the float model, at most 4 tensors
LATENCY_ROUNDS = 5
TOP_ROWS = 8  # report rows kept per seed
# the targets: int8 PTQ loses at least 1 point; the fallback wins back at least half of it; culprit first
TARGETS = {"loss_points": 1.0, "win_back": 0.5}
QUICK = {"steps": 0, "checks": 0, "seeds": 1, "calibration": 64, "debug": 64, "latency_rounds": 1, "max_steps": 2}
SECONDS = {"outlier": 6 * 40, "seed": 5 * 75 + 60, "quick_outlier": 6 * 20, "quick_seed": 3 * 30}  # estimates on 2 idle cores
FINDINGS_CONSTANTS = frozenset({"1", "0.5", "95", f"{TARGET_POINTS:g}", f"{MIN_VAL_LOSS:g}"})


# ---- the model with an outlier channel -------------------------------------------------------------------


def widest_channel(model, images: np.ndarray) -> int:
    """The channel of ``PRODUCER``'s output with the largest max |value| over ``images``."""
    from edgeopt import keras  # lazy: rendering the findings needs no TensorFlow

    out = keras.Model(model.input, model.get_layer(PRODUCER).output)(images, training=False).numpy()
    return int(np.abs(out).reshape(-1, out.shape[-1]).max(0).argmax())


def outlier_model(model, channel: int, k: float):
    """A copy of ``model`` computing the same function: ``PRODUCER``'s channel ``channel`` times ``k`` (gamma and beta of
    the batch normalization) and ``CONSUMER``'s kernel rows for that input channel divided by ``k``."""
    from edgeopt.compress.graph import clone_with_weights  # lazy: as above

    bad = clone_with_weights(model)
    bn = bad.get_layer(PRODUCER)
    weights = bn.get_weights()  # gamma, beta, moving mean, moving variance
    weights[0][channel] *= k
    weights[1][channel] *= k
    bn.set_weights(weights)
    conv = bad.get_layer(CONSUMER)
    kernel, *rest = conv.get_weights()
    kernel[:, :, channel, :] /= k
    conv.set_weights([kernel, *rest])
    return bad


# ---- the run ---------------------------------------------------------------------------------------------


class Run(BaselineRun):
    """One diagnostics run: the baseline (``--quick``: the stand-in), its data, the settings and the job cache."""

    def __init__(self, args):
        args.finetune_steps = 0  # nothing is fine-tuned
        super().__init__(args, QUICK, 0, CALIBRATION)
        self.debug = QUICK["debug"] if self.quick else DEBUG
        self.max_steps = QUICK["max_steps"] if self.quick else MAX_STEPS
        self.latency_rounds = QUICK["latency_rounds"] if self.quick else LATENCY_ROUNDS
        self.val_x, self.val_y = self.splits.arrays("val")
        self.settings = {"baseline": self.digest, "calibration": self.calibration, "debug": self.debug, "target_points": TARGET_POINTS,
                         "max_steps": self.max_steps, "k_candidates": list(K_CANDIDATES), "min_val_loss": MIN_VAL_LOSS,
                         "latency_rounds": self.latency_rounds, "val_images": len(self.val_x), "quick": self.quick}
        self.cache = SeedRuns(CACHE_ROOT / ("quick/quant_diagnostics" if self.quick else "quant_diagnostics"), self.settings)

    def seconds(self, job: str) -> float:
        return SECONDS[("quick_" if self.quick else "") + job]

    def outlier(self, *_) -> dict:
        """Choose K on the validation split (calibration seed 0); the float models' validation and test top-1."""
        from edgeopt import evaluate  # lazy: as above
        from edgeopt.export import convert, verify

        channel = widest_channel(self.model, self.pool[:256])
        x_cal = calibration_images(self.pool, 0, self.calibration)
        sweep = []
        for k in K_CANDIDATES:
            bad = outlier_model(self.model, channel, float(k))
            check = verify(bad, convert(bad, "int8", x_cal), self.val_x, self.val_y)
            sweep.append({"k": k, "float_val_top1": check.keras_top1, "int8_val_top1": check.tflite_top1,
                          "val_loss_points": (check.keras_top1 - check.tflite_top1) * 100})
            print(f"K = {k}: int8 validation top-1 {check.tflite_top1:.4f} (float {check.keras_top1:.4f})", flush=True)
            if sweep[-1]["val_loss_points"] >= MIN_VAL_LOSS:
                break
        k = sweep[-1]["k"]
        bad = outlier_model(self.model, channel, float(k))
        x = self.val_x[:256]
        diff = float(np.abs(bad(x, training=False).numpy() - self.model(x, training=False).numpy()).max())
        return {"channel": channel, "k": k, "sweep": sweep, "reached_min_loss": sweep[-1]["val_loss_points"] >= MIN_VAL_LOSS,
                "max_abs_output_diff": diff, "float_test_top1": evaluate(bad, self.splits.test)["top1"],
                "baseline_test_top1": evaluate(self.model, self.splits.test)["top1"], "float_val_top1": sweep[-1]["float_val_top1"]}

    def seed(self, outlier: dict, seed: int) -> dict:
        """One calibration seed: the report, where the culprit ranks, auto_fallback and every step's test top-1."""
        from edgeopt import PrecisionConfig, auto_fallback, quantize_report  # lazy: as above
        from edgeopt.bench import evaluate_tflite

        bad = outlier_model(self.model, outlier["channel"], float(outlier["k"]))
        x_cal = calibration_images(self.pool, seed, self.calibration)
        report = quantize_report(bad, None, x_cal, debug_data=self.val_x[:self.debug], num_calibration=len(x_cal))
        rank = next((i for i, r in enumerate(report.rows, 1) if PRODUCER in r.layers), None)
        timed = self.latency_rounds if seed == self.seeds[0] else 0
        result = auto_fallback(bad, x_cal, PrecisionConfig(auto_fallback=TARGET_POINTS, max_fallback_steps=self.max_steps),
                               val_data=self.splits.val, preprocessing=self.splits.preprocessing, num_calibration=len(x_cal),
                               report=report, latency_rounds=timed)
        steps = []
        for i, (step, blob) in enumerate(zip(result.metrics()["steps"], result.files)):  # each step's top-1 as val_top1
            write_file(self.cache.file("step", f"{seed}-{i}", ".tflite"), blob)
            steps.append({**step, "test_top1": evaluate_tflite(blob, self.splits.test).top1})
            print(f"seed {seed} step {i}: kept float {', '.join(step['float_layers']) or '-'}; test top-1 {steps[-1]['test_top1']:.4f}", flush=True)
        return {"seed": seed, "culprit_rank": rank, "tensors": len(report.rows), "rows": report.to_dict()["rows"][:TOP_ROWS], "steps": steps, "reached": result.reached,
                "float_val_top1": result.float_top1, "val_images": result.val_images, "latency": result.latency,
                "report_seconds": report.seconds}

    def measure_all(self) -> dict:
        left = [self.seconds(j) for j, s in [("outlier", None), *(("seed", s) for s in self.seeds)] if self.cache.get(j, s) is None]
        print(f"quant_diagnostics: {len(left)} jobs to do, about {sum(left) / 60:.0f} min on 2 idle cores", flush=True)
        outlier = self.cache.run([("outlier", None)], self.outlier, self.seconds, "quant_diagnostics: choose K")[0]
        runs = self.cache.run([("seed", s) for s in self.seeds], lambda _, s: self.seed(outlier, s), self.seconds, "quant_diagnostics: seeds")
        model = f"{self.model.name} (--quick stand-in)" if self.quick and self.baseline_file == STANDIN else MODEL
        return {"format": 1, "cmd": "benchmarks/quant_diagnostics.py " + " ".join(sys.argv[1:]), "model": model,
                "baseline_file": str(self.baseline_file), "quick": self.quick, "test_images": self.splits.sizes["test"], "seeds": self.seeds,
                "settings": self.settings, "producer": PRODUCER, "consumer": CONSUMER, "outlier": outlier, "runs": runs}


# ---- rendering (no TensorFlow) ------------------------------------------------------------------------------


def findings_data(folder: Path) -> dict:
    """The committed raw results (``folder``/quant_diagnostics.json)."""
    return json.loads((Path(folder) / DATA).read_text())


def summary(data: dict) -> dict:
    """Per-seed accuracies (fractions) and the verdicts against the issue's targets."""
    runs, n = data["runs"], data["test_images"]
    float_top1 = data["outlier"]["float_test_top1"]
    int8 = [r["steps"][0]["test_top1"] for r in runs]
    last = [r["steps"][-1]["test_top1"] for r in runs]
    loss = seed_stats([float_top1] * len(runs), int8, n, at_least=TARGETS["loss_points"] / 100)
    mid = [(float_top1 + q) / 2 for q in int8]  # winning back half the loss = reaching the midpoint of float and int8
    win = seed_stats(last, mid, n, at_least=0.0)
    won = [(f - q) / (float_top1 - q) if float_top1 > q else float("nan") for f, q in zip(last, int8)]
    first = sum(r["culprit_rank"] == 1 for r in runs)
    return {"float": float_top1, "int8": mean_std(int8), "fallback": mean_std(last), "loss": loss, "win": win, "won_fraction": mean_std(won),
            "culprit_first": first, "culprit_verdict": "met" if first == len(runs) else "missed",
            "size_cost": mean_std([r["steps"][-1]["size_cost_bytes"] for r in runs]),
            "size_cost_rel": mean_std([r["steps"][-1]["size_cost_bytes"] / r["steps"][0]["size_bytes"] for r in runs]),
            "float_layers": sorted({tuple(r["steps"][-1]["float_layers"]) for r in runs}), "steps": mean_std([len(r["steps"]) - 1 for r in runs])}


def _pm_points(value: float, n: int) -> str:
    """An accuracy as "93.12% ± 0.49" (the test-sampling 95% interval in points)."""
    return f"{100 * value:.2f}% ± {100 * sampling_interval(value, n):.2f}"


def tables_markdown(data: dict) -> str:
    """The report table of the first seed, the fallback steps of every seed, and the K sweep."""
    n, out, first = data["test_images"], data["outlier"], data["runs"][0]
    lines = [f"# Quantization diagnostics: {data['model']} with an outlier channel (issue #23)", "",
             f"Command: `{data['cmd']}`. Machine: {data.get('machine', '?')}. Test accuracies ± the test-sampling 95% interval "
             f"({n:,} test images); validation figures on {first['val_images']:,} validation images.", "",
             f"## Quantization report, calibration seed {first['seed']} (worst {len(first['rows'])} of {first['tensors']} tensors)", ""]
    lines += md_table(["#", "layers", "op", "channel SNR dB", "SNR dB", "kernel SNR dB", "step share", "clipped", "likely cause"],
                      ([i, ", ".join(r["layers"]), r["op"], _num(r["channel_snr_db"]), _num(r["snr_db"]), _num(r["weight_channel_snr_db"]),
                        _num(r["step_error_share"], "{:.2f}"), f"{r['clipped_fraction']:.2%}", r["why"]] for i, r in enumerate(first["rows"], 1)),
                      "rllrrrrrl")
    lines += ["", "## Automatic float fallback, every seed", ""]
    rows = []
    for r in data["runs"]:
        for i, s in enumerate(r["steps"]):
            lat = "-" if s.get("median_ms") is None else f"{s['median_ms']:.3f} ({s['latency_cost_ms']:+.3f})"
            rows.append([r["seed"], i, ", ".join(s["float_layers"]) or "- (plain int8)", f"{100 * s['val_top1']:.2f}%", f"{s['gap_points']:.2f}",
                         _pm_points(s["test_top1"], n), f"{s['size_bytes']:,}", f"{s['size_cost_bytes']:+,}", lat])
    lines += md_table(["seed", "step", "layers kept float", "val top-1", "val gap (points)", "test top-1", "size B", "size cost B",
                       "median ms (cost)"], rows, "rrlrrrrrr")
    lines += ["", f"Float model (Keras): test top-1 {_pm_points(out['float_test_top1'], n)}. Latency: the first seed's steps, "
              f"{first['latency']['rounds'] if first.get('latency') else 0} interleaved rounds, 1 thread.", "",
              f"## K on the validation split (calibration seed 0, channel {out['channel']})", ""]
    lines += md_table(["K", "float val top-1", "int8 val top-1", "loss (points)"],
                      ([s["k"], f"{100 * s['float_val_top1']:.2f}%", f"{100 * s['int8_val_top1']:.2f}%", f"{s['val_loss_points']:.2f}"]
                       for s in out["sweep"]), "rrrr")
    return "\n".join(lines) + "\n"


def _num(v, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def findings_markdown(data: dict) -> str:
    """The findings, every number formatted from ``data``."""
    s, n, out = summary(data), data["test_images"], data["outlier"]
    runs = data["runs"]
    seeds = plural(len(runs), "calibration seed")
    loss, win = s["loss"], s["win"]
    worst_causes = sorted({r["rows"][0]["cause"] for r in runs})
    lines = ["# Quantization diagnostics: findings", ""]
    lines += wrap(f"Outlier: channel {out['channel']} of `{data['producer']}` times K = {out['k']} and `{data['consumer']}`'s rows for it "
                  f"divided by K; the float model's outputs move by at most {out['max_abs_output_diff']:.1e} (test top-1 "
                  f"{100 * out['float_test_top1']:.2f}%, the baseline's {100 * out['baseline_test_top1']:.2f}%). K is the smallest "
                  f"tried whose int8 file loses at least {MIN_VAL_LOSS:g} validation points"
                  + ("" if out["reached_min_loss"] else " (none did: the largest was used)") + ".", "* ")
    lines += wrap(f"int8 PTQ loses {100 * loss['diff_mean']:.2f} ± {100 * loss['diff_std']:.2f} test points "
                  f"over {seeds} ({100 * s['int8'][0]:.2f}% against the float model's {100 * s['float']:.2f}%; noise "
                  f"{100 * loss['noise']:.2f}): target at least 1 point: **{loss['verdict']}**.", "* ")
    lines += wrap(f"The report ranks the culprit (`{data['producer']}`'s tensor) first in {s['culprit_first']} of {len(runs)} seeds: "
                  f"**{s['culprit_verdict']}**; the worst tensor's likely cause: {', '.join(worst_causes)}.", "* ")
    lines += wrap(f"auto_fallback (target within {TARGET_POINTS:g} validation points) keeps float "
                  + "; ".join(", ".join(f"`{x}`" for x in layers) or "nothing" for layers in s["float_layers"])
                  + f" after {span([len(r['steps']) - 1 for r in runs], '{:.0f}')} step(s): test top-1 {100 * s['fallback'][0]:.2f}% "
                  f"± {100 * s['fallback'][1]:.2f}, winning back {100 * s['won_fraction'][0]:.0f}% of the loss (target at least half: "
                  f"{100 * win['diff_mean']:+.2f} points past the midpoint, noise {100 * win['noise']:.2f}: **{win['verdict']}**), for "
                  f"{s['size_cost'][0]:+,.0f} bytes ({100 * s['size_cost_rel'][0]:+.1f}% of the int8 file).", "* ")
    timed = [r for r in runs if r.get("latency")]
    if timed:
        steps = timed[0]["steps"]
        lines += wrap(f"Latency (seed {timed[0]['seed']}, interleaved, 1 thread): {steps[0]['median_ms']:.3f} ms int8, "
                      f"{steps[-1]['median_ms']:.3f} ms with the fallback ({steps[-1]['latency_cost_ms']:+.3f} ms).", "* ")
    lines += wrap(f"Accuracies are on {n:,} test images; ± is the test-sampling 95% interval or the spread over seeds.", "* ")
    return "\n".join(lines) + "\n"


def write_results(out: Path, data: dict) -> None:
    """quant_diagnostics.json, then the CSV, the tables with the findings and the findings file, into ``out``."""
    write_file(out / DATA, json.dumps(data, indent=1) + "\n")
    rows = [{"seed": r["seed"], "step": i, "float_layers": ";".join(s["float_layers"]), "val_top1": s["val_top1"], "val_gap_points": s["gap_points"],
             "test_top1": s["test_top1"], "test_interval": sampling_interval(s["test_top1"], data["test_images"]), "size_bytes": s["size_bytes"],
             "size_cost_bytes": s["size_cost_bytes"], "median_ms": s.get("median_ms"), "latency_cost_ms": s.get("latency_cost_ms"),
             "culprit_rank": r["culprit_rank"]} for r in data["runs"] for i, s in enumerate(r["steps"])]
    write_csv(out / "quant_diagnostics.csv", rows, float_format="{:.6g}")
    findings = findings_markdown(data)
    write_file(out / FINDINGS, findings)
    write_file(out / TABLES, tables_markdown(data) + "\n" + findings)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    baseline_args(ap)
    ap.add_argument("--findings-only", action="store_true", help=f"render {TABLES} and {FINDINGS} from the committed {DATA}; measures nothing")
    args = ap.parse_args(argv)
    if args.findings_only:
        write_results(OUT, findings_data(OUT))
        return
    check_baseline(args.baseline, args.quick)
    from benchmarks._common import machine_line

    out = QUICK_OUT / "quant_diagnostics" if args.quick else OUT
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = Run(args).measure_all()
    data = {**data, "machine": f"{machine_line()} (shared with other jobs: latency is noisy; medians, steps interleaved)",
            "wall_s": time.perf_counter() - t0}
    write_results(out, data)
    print(f"wrote {out}/{DATA}, quant_diagnostics.csv, {TABLES}, {FINDINGS}", flush=True)


if __name__ == "__main__":
    main()
