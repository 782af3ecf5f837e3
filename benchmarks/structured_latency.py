"""Int8 latency of structured (filter) pruning against input size: is the speed-up a property of the model or of
the machine? MobileNetV2 0.35, 10 classes, dense vs 50% of the expansion filters removed
(``StructuredConfig(ratio=0.5, scope="internal")``, the pruning benchmark's structured row), at several input sizes.

Latency does not depend on the weight values of a dense int8 kernel, so the models are untrained (the planner's
L1 ranking picks which filters go; how many go per layer is set by the ratio, as in a trained model). Both
files are timed interleaved, 1 thread, XNNPACK, batch 1, median of 5 rounds of per-round medians.

Run:  PYTHONPATH=. python benchmarks/structured_latency.py [--sizes 32 64 96 128 224]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks._common import machine_line, md_table, median_latency_ms, write_file
from benchmarks.pruning import LATENCY
from edgeopt import create, profile
from edgeopt.compress.structured import StructuredConfig, prune_filters
from edgeopt.export import convert

OUT = Path("benchmarks")


def one_size(size: int, rounds: int = 5) -> dict:
    dense = create("mobilenet_v2", input_shape=(size, size, 3), classes=10, alpha=0.35)
    pruned = prune_filters(dense, StructuredConfig(ratio=0.5, scope="internal"))
    rep = np.random.default_rng(0).random((32, size, size, 3)).astype("float32")
    lat = median_latency_ms({"dense": convert(dense, "int8", rep), "structured": convert(pruned, "int8", rep)}, rounds, progress="latency", **LATENCY)
    d, s = lat["dense"], lat["structured"]
    dense_macs = profile(dense).macs
    return {"size": size, "small_input_stem": size < 96, "dense_macs": dense_macs,
            "macs_vs_dense": profile(pruned).macs / dense_macs, "dense_int8_ms": d, "structured_int8_ms": s,
            "latency_vs_dense": s / d}


def markdown(rows: list[dict], where: str) -> str:
    md = ["# Structured pruning: int8 latency against input size", "", f"Machine: {where}.", "",
          "Command: `PYTHONPATH=. python benchmarks/structured_latency.py`. MobileNetV2 0.35, 10 classes, untrained weights;",
          "structured = 50% of the expansion filters removed (the pruning benchmark's structured row). Under 96 px the zoo",
          "uses its small-input stem (stride 1), so 32 and 64 px run larger feature maps than 96 px does.", ""]
    md += md_table(["input", "stem stride 1", "dense MACs", "MACs vs dense", "dense int8 ms", "structured int8 ms", "latency vs dense"],
                   ([r["size"], "yes" if r["small_input_stem"] else "no", f"{r['dense_macs']:,}", f"{r['macs_vs_dense']:.3f}",
                     f"{r['dense_int8_ms']:.3f}", f"{r['structured_int8_ms']:.3f}", f"{r['latency_vs_dense']:.3f}"] for r in rows), "rlrrrrr")
    return "\n".join(md) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128, 224])
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    rows = []
    for size in a.sizes:
        print(f"== {size}x{size}", flush=True)
        rows.append(one_size(size))
        print(rows[-1], flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    where = machine_line()
    write_file(a.out / "structured_latency.json", json.dumps({"machine": where, "rows": rows}, indent=1))
    write_file(a.out / "structured_latency.md", markdown(rows, where))
    print(markdown(rows, where))


if __name__ == "__main__":
    main()
