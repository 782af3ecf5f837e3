"""Depthwise kernel size on this CPU: one inverted-residual depthwise layer at kernel 3, 5, 7 and 9, int8 and
float32, timed with XNNPACK and with LiteRT's built-in kernels, interleaved (one run, one machine).

Why: the full NAS latency table (benchmarks/nas_latency.md) measured kernel-7 blocks at about 40x the int8 latency
of kernel-5 blocks on a no-VNNI EPYC. This isolates the depthwise layer and shows whether the cost is XNNPACK's
(its kernel for that size) or the size's (the built-in kernels scale with k^2). The latency table is measured,
so the search follows whatever this machine does; a phone's table (adb) may differ.

Shapes: the depthwise layers of ``mobilenet_v2_space(0.35)`` at 28x28 inputs, expansion 3 (stage 3 and stage 6
sizes: 14x14x48 and 4x4x168, stride 1, 'same'). Untrained weights (a dense kernel's latency does not depend
on its values); int8 calibrated on 8 random inputs, int8 input and output.

Run:  PYTHONPATH=. python benchmarks/dwconv_kernel_size.py [--rounds 5]   (about 2 minutes)
Writes benchmarks/dwconv_kernel_size.{md,csv,json}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._common import interleave, machine_line, md_table, write_csv, write_file

OUT = Path(__file__).parent
KERNELS = (3, 5, 7, 9)
SHAPES = ((14, 14, 48), (4, 4, 168))
PRECISIONS = ("int8", "float32")


def depthwise_model(shape, kernel: int):
    from edgeopt import keras

    x = keras.Input(shape)
    y = keras.layers.DepthwiseConv2D(kernel, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    return keras.Model(x, keras.layers.ReLU(6.0)(y))


def export(shape, kernel: int, precision: str) -> bytes:
    import numpy as np

    from edgeopt.search.latency_table import export_part

    representative = np.random.default_rng(0).uniform(-1, 1, (8, *shape)).astype("float32")
    return export_part(depthwise_model(shape, kernel), precision, representative)


def measure(rounds: int) -> list[dict]:
    from functools import partial

    import numpy as np

    from edgeopt.search.latency_table import LiteRTRunner

    files = {(s, k, p): export(s, k, p) for s in SHAPES for k in KERNELS for p in PRECISIONS}
    runners = {x: LiteRTRunner(statistic="min", xnnpack=x) for x in (True, False)}  # >= 20 runs and 0.1 s after 2 warm-up runs
    calls = {(*key, x): partial(runners[x], data, 1) for key, data in files.items() for x in runners}
    timed = interleave(calls, rounds, alternate=True, progress="depthwise kernels")
    return [{"shape": "x".join(map(str, shape)), "kernel": kernel, "precision": precision, "kernels": "XNNPACK" if xnnpack else "built-in",
             "ms": float(np.median(minimums))}  # median over rounds of each round's minimum
            for (shape, kernel, precision, xnnpack), minimums in timed.items()]


def markdown(rows: list[dict], machine: str, rounds: int) -> str:
    ms = {(r["shape"], r["kernel"], r["precision"], r["kernels"]): r["ms"] for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    body = []
    for s in shapes:
        for p in PRECISIONS:
            for k in KERNELS:
                x, b = ms[(s, k, p, "XNNPACK")], ms[(s, k, p, "built-in")]
                body.append([s, p, k, f"{x * 1e3:.1f}", f"{b * 1e3:.1f}", f"{b / x:.2f}x", f"{x / ms[(s, 5, p, 'XNNPACK')]:.1f}x"])

    def ratios(kernels):  # XNNPACK's time over the built-in kernels' time, every shape and precision
        return [ms[(s, k, p, "XNNPACK")] / ms[(s, k, p, "built-in")] for s in shapes for p in PRECISIONS for k in kernels]

    fast, slow = ratios((3, 5)), ratios((7, 9))
    lines = ["# Depthwise kernel size: XNNPACK against LiteRT's built-in kernels", "",
             f"Machine: {machine}.", "",
             f"Command: `PYTHONPATH=. python benchmarks/dwconv_kernel_size.py --rounds {rounds}`. One run on one machine, every variant "
             f"interleaved (alternating order), 1 thread, {rounds} rounds; each cell is the median over rounds of the round's minimum "
             "invoke() time (>= 20 runs and 0.1 s after 2 warm-up runs).", "",
             "Layer: DepthwiseConv2D (stride 1, 'same') + batch norm + ReLU6, the depthwise part of an inverted residual of "
             "`mobilenet_v2_space(0.35)` at 28x28 inputs; int8 with int8 input and output.", "",
             "Findings (from the data below):", "",
             f"- Kernels 3 and 5: XNNPACK takes {min(fast):.2f}x-{max(fast):.2f}x the built-in kernels' time "
             f"({'faster in every setting' if max(fast) < 1 else 'not faster in every setting'}).",
             f"- Kernels 7 and 9: XNNPACK takes {min(slow):.1f}x-{max(slow):.1f}x the built-in kernels' time "
             f"({'slower in every setting' if min(slow) > 1 else 'not slower in every setting'}): on this CPU an XNNPACK model "
             "with a 7x7 depthwise layer is slow, and LiteRT gives no per-op choice of kernels.",
             "- The NAS latency table is measured, so the search on this machine avoids what is slow here; a table measured "
             "on a phone over adb (`LatencyTable` with the adb runner) gives that phone's costs, which may differ.", "",
             *md_table(["shape", "precision", "kernel", "XNNPACK us", "built-in us", "built-in / XNNPACK", "XNNPACK vs kernel 5"], body, "llrrrrr"), ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--findings-only", action="store_true", help="re-render the Markdown from the JSON in --out")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    raw = args.out / "dwconv_kernel_size.json"
    if args.findings_only:
        data = json.loads(raw.read_text())
    else:
        data = {"machine": machine_line(), "rounds": args.rounds, "rows": measure(args.rounds)}
        write_file(raw, json.dumps(data, indent=1))
        write_csv(args.out / "dwconv_kernel_size.csv", data["rows"])
    text = markdown(data["rows"], data["machine"], data["rounds"])
    write_file(args.out / "dwconv_kernel_size.md", text)
    print(text)


if __name__ == "__main__":
    main()
