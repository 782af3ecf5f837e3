"""The architecture table: every zoo family at its paper configuration, float32 vs int8 .tflite.

For each family (224x224x3, 1000 classes, untrained weights: latency and size do not depend on the
weight values) it records parameters, multiply-adds, .tflite size raw/gzipped, conversion time, the op
report of the int8 file, and median latency on the LiteRT interpreter (XNNPACK on) at 1 and 2 threads.
float32 and int8 are measured interleaved (f, i, f, i, ...) in the same run and the median of the
per-round medians is reported, so the two columns are comparable even on a busy machine.

Writes benchmarks/architectures.md, .csv and .png (latency against multiply-adds).

    PYTHONPATH=. python benchmarks/architectures.py            # ~15-30 min on 2 cores
    PYTHONPATH=. python benchmarks/architectures.py --reuse    # reuse converted files in runs/bench-cache
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import edgeopt  # noqa: F401  (picks tf_keras first)
from benchmarks._common import interleaved_latency, machine_line, md_table, median_ms, write_csv, write_file
from edgeopt import bench, export, models
from edgeopt.costs import profile

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / "runs" / "bench-cache"

# family -> (zoo name, knobs): each at its paper configuration
FAMILIES = {
    "MobileNetV1 1.0": ("mobilenet_v1", {}),
    "MobileNetV2 1.0": ("mobilenet_v2", {}),
    "ShuffleNetV1 g=3 1.0x": ("shufflenet_v1", {"groups": 3}),
    "EfficientNet-B0": ("efficientnet_b0", {}),
    "EfficientNet-Lite0": ("efficientnet_lite0", {}),
}
MODES = ("float32", "int8")


def convert_family(label: str, name: str, knobs: dict, num_calibration: int, reuse: bool) -> dict:
    """Profile and convert one family in both modes; returns the row without latency."""
    model = models.create(name, input_shape=(224, 224, 3), classes=1000, **knobs)
    prof = profile(model)
    row = {"family": label, "model": name, "knobs": json.dumps(knobs), "params": prof.params, "macs": prof.macs}
    rep = np.random.default_rng(0).uniform(-1, 1, (num_calibration, 224, 224, 3)).astype(np.float32)
    for mode in MODES:
        path = CACHE / f"{name}_{mode}.tflite"
        if reuse and path.exists():
            manifest = export.read_manifest(path)
            print(f"  {label} {mode}: reused {path}", flush=True)
        else:
            start = time.perf_counter()
            art = export.to_tflite(model, mode, rep if mode == "int8" else None, path=path, num_calibration=num_calibration,
                                   num_verify=0, overwrite=True, source={"benchmark": "architectures", "weights": "untrained"})
            manifest = art.manifest
            print(f"  {label} {mode}: converted in {time.perf_counter() - start:.1f} s -> {manifest['file']['size_bytes']:,} bytes", flush=True)
        size = bench.size_of(path)
        ops = manifest["ops"]
        row[f"{mode}_path"] = str(path)
        row[f"{mode}_bytes"] = size.size_bytes
        row[f"{mode}_gzip_bytes"] = size.gzip_bytes
        row[f"{mode}_convert_s"] = manifest["convert_seconds"]
        row[f"{mode}_io"] = f"{manifest['input']['dtype']}/{manifest['output']['dtype']}"
        row[f"{mode}_float_ops"] = ";".join(f"{o['op']} ({o['why']})" for o in ops["float_ops"]) if mode == "int8" else "all (float model)"
    row["int8_size_ratio"] = row["int8_bytes"] / row["float32_bytes"]
    return row


def measure_latencies(rows: list[dict], threads: tuple[int, ...], rounds: int, runs: int, min_seconds: float) -> str:
    """Median latency per (family, mode, threads): float32 and int8 interleaved (f, i, i, f, ...), median over
    ``rounds``; returns the runtime the results name."""
    runtime = ""
    for row in rows:
        for t in threads:
            results = interleaved_latency({m: row[f"{m}_path"] for m in MODES}, rounds, alternate=True, threads=t, runs=runs,
                                          min_seconds=min_seconds, warmup=1)
            for mode, res in results.items():  # peaks first: the CSV's columns follow the row's key order
                row[f"{mode}_peak_mb"] = max([row.get(f"{mode}_peak_mb") or 0] + [r.peak_mem_mb or 0 for r in res])
            for mode, res in results.items():
                row[f"{mode}_{t}t_ms"] = median_ms(res)
                runtime = res[-1].runtime
            ratio = row[f"float32_{t}t_ms"] / row[f"int8_{t}t_ms"]
            row[f"int8_speedup_{t}t"] = ratio
            medians = {m: [r.median_ms for r in res] for m, res in results.items()}
            print(f"  {row['family']} {t} thread(s): float32 {row[f'float32_{t}t_ms']:.2f} ms, int8 {row[f'int8_{t}t_ms']:.2f} ms "
                  f"(int8 {ratio:.2f}x faster); rounds {medians}", flush=True)
    return runtime


def write_table_csv(rows: list[dict], path: Path) -> None:
    write_csv(path, rows, [k for k in rows[0] if not k.endswith("_path")], float_format="{:.4g}")


def write_plot(rows: list[dict], threads: tuple[int, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4.5), squeeze=False)
    for ax, t in zip(axes[0], threads):
        for mode, marker in (("float32", "o"), ("int8", "s")):
            xs = [r["macs"] / 1e6 for r in rows]
            ys = [r[f"{mode}_{t}t_ms"] for r in rows]
            ax.scatter(xs, ys, marker=marker, label=mode)
        for r in rows:
            ax.annotate(r["family"], (r["macs"] / 1e6, r[f"float32_{t}t_ms"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("multiply-adds (millions)")
        ax.set_ylabel("median latency (ms)")
        ax.set_title(f"LiteRT + XNNPACK, {t} thread(s), 224x224x3")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_markdown(rows: list[dict], threads: tuple[int, ...], args, path: Path, seconds: float, runtime: str) -> None:
    lines = [
        "# Architecture table: float32 vs int8 .tflite at the paper configuration",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{args.command}` in {seconds / 60:.1f} min.",
        "",
        f"- Machine: {machine_line()}",
        f"- Runtime: {runtime}, XNNPACK on; timing as TFLite's benchmark_model: 1 warm-up run, then >= {args.runs} runs "
        f"and >= {args.min_seconds} s; random inputs.",
        f"- Each latency is the median over {args.rounds} rounds of per-round medians, float32 and int8 interleaved in the same run.",
        "  Other jobs shared the machine's cores during this run, so absolute numbers are noisy; compare columns within a row.",
        f"- Models: 224x224x3 input, 1000 classes, untrained weights (latency and size do not depend on weight values). "
        f"int8 = full integer ({' / '.join(sorted({r['int8_io'] for r in rows}))} input/output, to_tflite's default), calibrated on "
        f"{args.calibration} random images; conversion time is "
        "`TFLiteConverter.convert()` wall time including calibration.",
        "",
    ]
    header = ["family", "params", "MACs (M)", "float32 MB", "int8 MB", "int8/float32 size", "gzip float32 MB", "gzip int8 MB", "convert float32 s",
              "convert int8 s", *(h for t in threads for h in (f"float32 {t}T ms", f"int8 {t}T ms", f"int8 speed-up {t}T")), "int8 I/O", "float ops in int8"]
    lines += md_table(header, (_table_row(r, threads) for r in rows), "l" + "r" * (9 + 3 * len(threads)) + "ll")
    lines += ["", "![latency against multiply-adds](architectures.png)", "", _reading(rows, threads)]
    write_file(path, "\n".join(lines) + "\n")


def _table_row(r: dict, threads: tuple[int, ...]) -> list:
    lat = [v for t in threads for v in (f"{r[f'float32_{t}t_ms']:.2f}", f"{r[f'int8_{t}t_ms']:.2f}", f"{r[f'int8_speedup_{t}t']:.2f}x")]
    return [r["family"], f"{r['params']:,}", f"{r['macs'] / 1e6:.0f}", f"{r['float32_bytes'] / 1e6:.2f}", f"{r['int8_bytes'] / 1e6:.2f}",
            f"{r['int8_size_ratio']:.3f}", f"{r['float32_gzip_bytes'] / 1e6:.2f}", f"{r['int8_gzip_bytes'] / 1e6:.2f}", f"{r['float32_convert_s']:.1f}",
            f"{r['int8_convert_s']:.1f}", *lat, r["int8_io"], r["int8_float_ops"] or "none"]


def _reading(rows: list[dict], threads: tuple[int, ...]) -> str:
    t = threads[0]
    speedups = [r[f"int8_speedup_{t}t"] for r in rows]
    worst_size = max(r["int8_size_ratio"] for r in rows)
    return "\n".join([
        "## How to read it",
        "",
        f"- Size: every int8 file is at most {worst_size:.3f}x its float32 file (weights go from 4 bytes to 1).",
        f"- Speed on this machine: int8 runs {min(speedups):.2f}x to {max(speedups):.2f}x the speed of float32 at {t} thread "
        "(> 1 means int8 is faster). On x86 machines with AVX2 but no VNNI, XNNPACK's int8 kernels run MobileNetV2 1.0-224 "
        "about as fast as float32 (both near 12.5 ms at 1 thread): without a int8 dot-product instruction there is little to "
        "gain. CPUs with AVX512-VNNI / AVX-VNNI (see the flags above) can run int8 faster. On phones' ARM cores (NEON "
        "dot-product, i8mm) int8 is usually 1.5-2x faster than float32; measure on the target with "
        "`edgeopt bench MODEL.tflite --adb --benchmark-model PATH`.",
        "- Float ops: the int8 column lists any operator left in float and why; 'none' means the graph is fully integer "
        "with integer input and output, as an app's NNAPI/GPU/Edge delegates and integer-only accelerators need.",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per latency (default 3)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--calibration", type=int, default=100, help="random calibration images for int8 (default 100)")
    p.add_argument("--only", default=None, help="comma-separated family keys (zoo names) to run, for quick checks")
    p.add_argument("--reuse", action="store_true", help="reuse converted files in runs/bench-cache")
    p.add_argument("--out", default=str(HERE / "architectures"), help="output path without suffix")
    args = p.parse_args(argv)
    args.command = "PYTHONPATH=. python benchmarks/architectures.py " + " ".join(argv if argv is not None else sys.argv[1:])
    threads = tuple(int(t) for t in args.threads.split(","))
    start = time.perf_counter()
    rows = []
    for label, (name, knobs) in FAMILIES.items():
        if args.only and name not in args.only.split(","):
            continue
        print(f"[{label}] converting", flush=True)
        rows.append(convert_family(label, name, knobs, args.calibration, args.reuse))
    print("measuring latency", flush=True)
    runtime = measure_latencies(rows, threads, args.rounds, args.runs, args.min_seconds)
    out = Path(args.out)
    write_table_csv(rows, out.with_suffix(".csv"))
    write_plot(rows, threads, out.with_suffix(".png"))
    write_markdown(rows, threads, args, out.with_suffix(".md"), time.perf_counter() - start, runtime)
    print(f"wrote {out.with_suffix('.md')}, .csv, .png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
