"""Is edgeopt's conversion slower than calling TFLiteConverter.from_keras_model yourself?

For each model and mode it times, interleaved (edgeopt, baseline, baseline, edgeopt, ...):
  - edgeopt: ``edgeopt.export.to_tflite(model, mode, rep, num_calibration=N, num_verify=0)`` — trace at
    batch 1, convert, op report, manifest built and embedded (no file written, no verification);
  - baseline: ``tf.lite.TFLiteConverter.from_keras_model(model)`` with the same optimizations,
    representative dataset (same N images) and int8 input/output settings, ``convert()``.
Reports the median wall time of each and their ratio (target: edgeopt <= 1.15x baseline). Verification
(running Keras and LiteRT on held-out images) is an extra step the baseline does not do; its cost is
reported separately.

Since 2026-12-05 edgeopt hands the converter only the model's variables to save beside the traced function
(``export._variables_of``); ``from_keras_model`` saves the Keras model, and that SavedModel save traces every layer
for Keras metadata the .tflite never uses, most of a small model's conversion time. The files are the same byte for
byte (tests/test_export.py, slow). Tables made before that date show edgeopt at about 1.0-1.1x the baseline.

    PYTHONPATH=. python benchmarks/conversion_speed.py --sides 32,224 --rounds 3
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks._common import interleave, machine_line, md_table, write_csv, write_file
from edgeopt import export, models, tf

HERE = Path(__file__).resolve().parent
CASES = (  # (label, zoo name, input side)
    ("mobilenet_v2_tiny 32x32", "mobilenet_v2_tiny", 32),
    ("MobileNetV2 1.0 224x224", "mobilenet_v2", 224),
)


def baseline(model, mode: str, rep: np.ndarray) -> bytes:
    """What a user would write by hand with the stock converter."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in rep)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def ours(model, mode: str, rep: np.ndarray) -> bytes:
    return export.to_tflite(model, mode, rep if mode == "int8" else None, num_calibration=len(rep), num_verify=0).model_bytes


def timed(label: str, who: str, fn, *args) -> tuple[float, bytes]:
    """(wall seconds, result) of ``fn(*args)``."""
    start = time.perf_counter()
    data = fn(*args)
    seconds = time.perf_counter() - start
    print(f"  {label} {who}: {seconds:.1f} s", flush=True)
    return seconds, data


def one_case(label: str, model, mode: str, rep: np.ndarray, rounds: int) -> dict:
    """Both conversions of ``model`` timed interleaved (edgeopt, baseline, baseline, edgeopt, ...), then the
    verification of edgeopt's file; the row of the tables."""
    runs = interleave({who: partial(timed, f"{label} {mode}", who, fn, model, mode, rep) for who, fn in (("edgeopt", ours), ("baseline", baseline))},
                      rounds, alternate=True)
    times = {who: [t for t, _ in r] for who, r in runs.items()}
    sizes = {who: len(r[-1][1]) for who, r in runs.items()}
    start = time.perf_counter()
    export.verify(model, runs["edgeopt"][-1][1], rep[:50])
    verify_s = time.perf_counter() - start
    ratio = float(np.median(times["edgeopt"]) / np.median(times["baseline"]))
    return {"model": label, "mode": mode, "edgeopt_s": float(np.median(times["edgeopt"])), "baseline_s": float(np.median(times["baseline"])),
            "ratio": ratio, "edgeopt_runs_s": times["edgeopt"], "baseline_runs_s": times["baseline"],
            "edgeopt_bytes": sizes["edgeopt"], "baseline_bytes": sizes["baseline"], "verify_50_s": verify_s}


def write_outputs(rows: list[dict], out: Path, command: str, calibration: int, rounds: int) -> None:
    """conversion_speed.csv and .md (``out`` without suffix)."""
    write_csv(out.with_suffix(".csv"), rows, float_format="{:.4g}")
    lines = [
        "# Conversion speed: edgeopt.export.to_tflite vs TFLiteConverter.from_keras_model",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`.",
        f"Machine: {machine_line()} (edgeopt and baseline runs interleaved, so load on the machine hits both alike).",
        f"Untrained models; int8 calibrated on the same {calibration} random images in both. Median of {rounds} runs each. "
        "Target: ratio <= 1.15.",
        "",
    ]
    lines += md_table(["model", "mode", "edgeopt s", "from_keras_model s", "ratio", "all runs edgeopt / baseline (s)", "bytes edgeopt / baseline",
                       "verify 50 images s"], (_table_row(r) for r in rows), "llrrrllr")
    worst = max(r["ratio"] for r in rows)
    sizes = "; ".join(f"{r['model']} {r['mode']} {r['edgeopt_bytes'] - r['baseline_bytes']:+,} B" for r in rows)
    lines += ["", f"Worst ratio: {worst:.2f}x ({'meets' if worst <= 1.15 else 'MISSES'} the 1.15x target). File size, edgeopt minus baseline: "
              f"{sizes} (edgeopt adds its embedded manifest; its int8 files come out smaller, probably from tracing at batch 1 and its repack that stores repeated vectors once: not broken down). "
              "Verification (Keras and LiteRT on held-out images, column 'verify') is extra work the baseline does not do; "
              "to_tflite runs it only when it has held-out data."]
    write_file(out.with_suffix(".md"), "\n".join(lines) + "\n")


def _table_row(r: dict) -> list[str]:
    runs = f"{', '.join(f'{t:.1f}' for t in r['edgeopt_runs_s'])} / {', '.join(f'{t:.1f}' for t in r['baseline_runs_s'])}"
    return [r["model"], r["mode"], f"{r['edgeopt_s']:.1f}", f"{r['baseline_s']:.1f}", f"{r['ratio']:.2f}x", runs,
            f"{r['edgeopt_bytes']:,} / {r['baseline_bytes']:,}", f"{r['verify_50_s']:.1f}"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each times both once)")
    p.add_argument("--calibration", type=int, default=100)
    p.add_argument("--out", default=str(HERE / "conversion_speed"))
    p.add_argument("--modes", default="float32,int8", help="comma-separated modes (default float32,int8)")
    p.add_argument("--sides", default="32,224", help="comma-separated input sides of CASES to run (default 32,224)")
    args = p.parse_args(argv)
    command = "PYTHONPATH=. python benchmarks/conversion_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = []
    for label, name, side in (c for c in CASES if str(c[2]) in args.sides.split(",")):
        model = models.create(name, input_shape=(side, side, 3), classes=1000 if side == 224 else 10)
        rep = np.random.default_rng(0).uniform(-1, 1, (args.calibration, side, side, 3)).astype(np.float32)
        for mode in args.modes.split(","):
            rows.append(one_case(label, model, mode, rep, args.rounds))
            r = rows[-1]
            print(f"{label} {mode}: edgeopt {r['edgeopt_s']:.1f} s vs from_keras_model {r['baseline_s']:.1f} s -> {r['ratio']:.2f}x", flush=True)
    out = Path(args.out)
    write_outputs(rows, out, command, args.calibration, args.rounds)
    print(f"wrote {out.with_suffix('.md')} and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
