"""How small can gzip make a sparse (and clustered) int8 MobileNetV2? Bounds for the size targets of #4 and #5.

No training: it takes the trained MobileNetV2 0.35 (32x32x3, 10 classes) that benchmarks/quantization.py caches,
converts it to float32 and full-int8 .tflite once, and then edits the int8 weights inside the file:

* ``pruned``: in each selected kernel the fraction ``s`` of weights with the smallest |code x scale| (the float
  magnitude TF-MOT's layer-wise pruning ranks) becomes int8 zero. The other bytes of the file stay as they are.
  Kernel sets: TF-MOT's (1x1 convolutions and the classifier; it prunes no depthwise kernel), plus depthwise
  kernels, plus the stem.
* ``pruned + clustered``: the survivors of each TF-MOT kernel are clustered to 16 values (1-D k-means, linear init)
  and written with one int8 scale per kernel, as prune 50% + cluster 16 + PCQAT does. Only the kernels alone are
  compared here (with the float32 kernels): the rest of a real PCQAT file (per-tensor bias scales, no per-channel
  parameters) differs from this edited PTQ file; whole-file PCQAT numbers are measured in quantization_findings.md.

Reported: gzip -9 sizes of the whole pruned file against the dense int8 (#4: at most 0.7x at 50%); for the
clustered kernels, their gzip size against the float32 kernels' (#5 asks at most 1/8 for the whole file); and for
the kernels alone, bits per weight under gzip -9, their order-0 entropy and what zlib's Huffman-only strategy
(still a valid gzip stream) reaches, to show where the bytes go.

A last section repeats the 50% whole-file bound at other widths on synthetic weights (see ``synthetic_int8``),
with the trained alpha 0.35 file beside its synthetic twin as a check.

Run:  PYTHONPATH=. python benchmarks/gzip_bounds.py [--widths 0.35 0.5 1.0]   (after benchmarks/quantization.py has
      cached its model)
"""
from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

from benchmarks._common import md_table, write_file
from edgeopt.io import gzip_size as gzip9
from edgeopt.tflite import flatbuffer

CACHED = Path("runs/bench_cache/quantization/mobilenet_v2_0.35_1266.keras")
WORK = Path("runs/bench_cache/gzip_bounds")
OUT = Path("benchmarks")
KERNEL_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def huffman_only(data: bytes) -> int:
    c = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_HUFFMAN_ONLY)
    return len(c.compress(data) + c.flush())


def entropy_bits(codes: np.ndarray) -> float:
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def tflite_files() -> tuple[bytes, bytes]:
    """(float32, int8) .tflite of the cached quantization-benchmark MobileNetV2, converted once and kept in WORK."""
    WORK.mkdir(parents=True, exist_ok=True)
    f32, i8 = WORK / "float32.tflite", WORK / "int8.tflite"
    if not (f32.exists() and i8.exists()):
        if not CACHED.exists():
            raise SystemExit(f"{CACHED} is missing: run `PYTHONPATH=. python benchmarks/quantization.py --train-steps 1266 "
                             "--finetune-steps 422` first (it trains and caches the model)")
        from edgeopt import create, load_dataset
        from edgeopt.export import convert

        model = create("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=0.35)
        model.load_weights(str(CACHED))
        rep, _ = load_dataset("fashion_mnist", image_size=32, channels=3, batch_size=64).arrays("train", limit=300)
        print("converting float32 and int8 (about a minute each on 2 cores)", flush=True)
        write_file(f32, convert(model, "float32"))
        write_file(i8, convert(model, "int8", rep))
    return f32.read_bytes(), i8.read_bytes()


class Kernels:
    """The weight tensors of conv/depthwise/FC ops in a .tflite, editable in place (flatbuffer object API)."""

    def __init__(self, data: bytes):
        self.model = flatbuffer.read_model(data)
        self._size = len(data)
        graph = self.model.subgraphs[0]
        self.items = []  # (kind, tensor), in execution order
        for op in graph.operators:
            code = flatbuffer.OP_NAMES.get(flatbuffer.builtin_code(self.model.operatorCodes[op.opcodeIndex]))
            if code in KERNEL_OPS:
                t = graph.tensors[op.inputs[1]]
                kind = "depthwise" if code == "DEPTHWISE_CONV_2D" else "fc" if code == "FULLY_CONNECTED" else "conv"
                self.items.append((kind, t))
        self.items[0] = ("stem", self.items[0][1])

    def codes(self, t) -> np.ndarray:
        return np.frombuffer(bytes(self.model.buffers[t.buffer].data), np.int8).reshape(t.shape).copy()

    def floats(self, t) -> np.ndarray:
        q = t.quantization
        scale = np.asarray(q.scale, np.float64)
        shape = [1] * len(t.shape)
        shape[q.quantizedDimension] = -1
        return self.codes(t) * (scale.reshape(shape) if scale.size > 1 else scale)

    def set_codes(self, t, codes: np.ndarray) -> None:
        self.model.buffers[t.buffer].data = np.asarray(codes, np.int8).ravel()

    def bytes(self) -> bytes:
        return flatbuffer.write_model(self.model, self._size)


def prune_codes(k: Kernels, t, sparsity: float) -> np.ndarray:
    w, c = k.floats(t), k.codes(t)
    c[np.abs(w) <= np.quantile(np.abs(w), sparsity)] = 0
    return c


def prune_file(i8: bytes, sparsity: float, kinds) -> tuple[bytes, list[bytes]]:
    """``i8`` with its ``kinds`` kernels pruned to ``sparsity`` by magnitude, and the pruned codes of the kernels
    TF-MOT can prune (conv, fc) among them."""
    k = Kernels(i8)
    blobs = []
    for kind, t in k.items:
        if kind in kinds:
            c = prune_codes(k, t, sparsity)
            k.set_codes(t, c)
            if kind in ("conv", "fc"):
                blobs.append(c.tobytes())
    return k.bytes(), blobs


def kmeans_1d(values: np.ndarray, clusters: int, iters: int = 30) -> np.ndarray:
    centroids = np.linspace(values.min(), values.max(), clusters)
    for _ in range(iters):
        idx = np.abs(values[:, None] - centroids[None, :]).argmin(1)
        for j in range(clusters):
            if np.any(idx == j):
                centroids[j] = values[idx == j].mean()
    return centroids[np.abs(values[:, None] - centroids[None, :]).argmin(1)]


def prune_cluster_codes(k: Kernels, t, sparsity: float, clusters: int) -> np.ndarray:
    """int8 codes of kernel ``t`` pruned to ``sparsity``, survivors clustered, one scale for the whole kernel."""
    w = k.floats(t)
    keep = np.abs(w) > np.quantile(np.abs(w), sparsity)
    out = np.zeros_like(w)
    out[keep] = kmeans_1d(w[keep], clusters)
    return np.round(out / (np.abs(out).max() / 127)).astype(np.int8)


def kernel_bits(blobs: list[bytes], n: int) -> dict:
    """Bits per weight of the kernels alone, concatenated: gzip -9, Huffman-only, and the order-0 entropy of each
    tensor's codes (weighted by size: the floor for any coder that keeps one code table per tensor)."""
    data = b"".join(blobs)
    entropy = sum(len(b) * entropy_bits(np.frombuffer(b, np.int8)) for b in blobs) / n
    return {"gzip9": 8 * gzip9(data) / n, "huffman_only": 8 * huffman_only(data) / n, "entropy": entropy}


def run(sparsities=(0.5, 0.75), clusters: int = 16) -> dict:
    f32, i8 = tflite_files()
    dense_gz, f32_gz = gzip9(i8), gzip9(f32)
    res = {"dense_int8_bytes": len(i8), "dense_int8_gzip": dense_gz, "float32_bytes": len(f32), "float32_gzip": f32_gz,
           "pruned": [], "pruned_clustered": []}
    base = Kernels(i8)
    tfmot = [t for kind, t in base.items if kind in ("conv", "fc")]
    n = sum(int(np.prod(t.shape)) for t in tfmot)
    res["tfmot_kernel_weights"] = n
    res["dense_kernels"] = kernel_bits([base.codes(t).tobytes() for t in tfmot], n)
    f32_kernels = Kernels(f32)
    fl = [f32_kernels.model.buffers[t.buffer].data for kind, t in f32_kernels.items if kind in ("conv", "fc")]
    res["float32_kernels_gzip_bits"] = 8 * gzip9(b"".join(bytes(b) for b in fl)) / n
    for s in sparsities:
        for kinds in (("conv", "fc"), ("conv", "fc", "depthwise"), ("conv", "fc", "depthwise", "stem")):
            pruned, blobs = prune_file(i8, s, kinds)
            gz = gzip9(pruned)
            row = {"sparsity": s, "kernels": "+".join(kinds), "gzip": gz, "gzip_vs_dense_int8": gz / dense_gz,
                   "kernel_bits": kernel_bits(blobs, n)}
            row["kernels_alone_vs_dense"] = row["kernel_bits"]["gzip9"] / res["dense_kernels"]["gzip9"]
            res["pruned"].append(row)
            print(row, flush=True)
        k = Kernels(i8)
        blobs = []
        for kind, t in k.items:
            if kind in ("conv", "fc"):
                blobs.append(prune_cluster_codes(k, t, s, clusters).tobytes())
        row = {"sparsity": s, "clusters": clusters, "kernel_bits": kernel_bits(blobs, n)}
        row["kernels_alone_vs_float32_kernels"] = row["kernel_bits"]["gzip9"] / res["float32_kernels_gzip_bits"]
        res["pruned_clustered"].append(row)
        print(row, flush=True)
    return res


def synthetic_int8(alpha: float, seed: int = 0) -> bytes:
    """Full-int8 .tflite of an untrained MobileNetV2 ``alpha`` (32x32x3, 10 classes) whose weights imitate a trained
    model's: Laplace-distributed kernels (trained kernels are peaked, not glorot-uniform) and random BatchNorm
    statistics (so folded biases and per-channel scales are dense, as after training). Converted once, kept in WORK."""
    path = WORK / f"synthetic_mobilenet_v2_{alpha}.tflite"
    if not path.exists():
        from edgeopt import create, keras
        from edgeopt.export import convert

        rng = np.random.default_rng(seed)
        model = create("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=alpha)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                g, b, m, v = layer.get_weights()
                layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.5, b.shape), rng.normal(0, 0.5, m.shape),
                                   rng.uniform(0.5, 2.0, v.shape)])
            elif layer.get_weights():
                ws = layer.get_weights()
                fan_in = np.prod(ws[0].shape[:-1]) if not isinstance(layer, keras.layers.DepthwiseConv2D) else np.prod(ws[0].shape[:2])
                ws[0] = rng.laplace(0, np.sqrt(1 / fan_in), ws[0].shape)
                layer.set_weights([w.astype("float32") for w in ws])
        rep = rng.random((64, 32, 32, 3)).astype("float32")
        print(f"converting synthetic MobileNetV2 {alpha} to int8", flush=True)
        WORK.mkdir(parents=True, exist_ok=True)
        write_file(path, convert(model, "int8", rep))
    return path.read_bytes()


def pruned_gzip_ratio(i8: bytes, sparsity: float, kinds=("conv", "fc")) -> dict:
    """Whole-file gzip of ``i8`` with ``kinds`` kernels pruned to ``sparsity`` by magnitude, against the dense file;
    and the share of the dense file's gzip bytes that lies outside those kernels (what pruning cannot shrink)."""
    k = Kernels(i8)
    dense_gz = gzip9(i8)
    kernels_gz = gzip9(b"".join(k.codes(t).tobytes() for kind, t in k.items if kind in kinds))
    return {"dense_gzip": dense_gz, "gzip_vs_dense_int8": gzip9(prune_file(i8, sparsity, kinds)[0]) / dense_gz,
            "share_outside_kernels": 1 - kernels_gz / dense_gz}


def width_sweep(alphas=(0.35, 0.5, 0.75, 1.0, 1.4), sparsity: float = 0.5) -> list[dict]:
    """The 50% row's whole-file bound at other widths, on synthetic weights; alpha 0.35 is also computed on the
    trained file, so the gap between the two says how far the synthetic numbers can be trusted."""
    rows = [{"alpha": 0.35, "weights": "trained", **pruned_gzip_ratio(tflite_files()[1], sparsity)}]
    for a in alphas:
        rows.append({"alpha": a, "weights": "synthetic", **pruned_gzip_ratio(synthetic_int8(a), sparsity)})
        print(rows[-1], flush=True)
    return rows


def _bits(kb: dict) -> list[str]:
    return [f"{kb['gzip9']:.2f}", f"{kb['entropy']:.2f}", f"{kb['huffman_only']:.2f}"]


def markdown(r: dict) -> str:
    fb = r["float32_kernels_gzip_bits"]
    md = ["# gzip bounds for sparse and clustered int8 MobileNetV2 0.35 (32x32x3)", "",
          "Command: `PYTHONPATH=. python benchmarks/gzip_bounds.py`. Model: the quantization benchmark's trained float model;",
          "its dense int8 file is edited in place (weights zeroed by float magnitude, survivors optionally clustered), so these",
          "are the sizes of files that differ from a real pruned export only in the kernel values. gzip = `gzip -9`.", "",
          f"Dense int8: {r['dense_int8_bytes']:,} B, gzip {r['dense_int8_gzip']:,} B. Float32: {r['float32_bytes']:,} B, "
          f"gzip {r['float32_gzip']:,} B. The {r['tfmot_kernel_weights']:,} weights TF-MOT can prune (1x1 convolutions, classifier) "
          f"gzip to {r['dense_kernels']['gzip9']:.2f} bits each as dense int8 (entropy {r['dense_kernels']['entropy']:.2f}) and "
          f"{fb:.2f} bits each as float32.", "",
          "## Pruned int8 (#4: gzipped int8 at most 0.7x the dense int8's at 50%)", ""]
    md += md_table(["sparsity", "kernels pruned", "whole file gzip B", "vs dense int8", "TF-MOT kernels: gzip bits/weight", "entropy", "Huffman-only",
                    "kernels alone vs dense kernels (gzip)"],
                   ([f"{p['sparsity']:.0%}", p["kernels"], f"{p['gzip']:,}", f"{p['gzip_vs_dense_int8']:.3f}", *_bits(p["kernel_bits"]),
                     f"{p['kernels_alone_vs_dense']:.3f}"] for p in r["pruned"]), "rlrrrrrr")
    md += ["", "## Pruned + clustered int8 kernels, one scale per kernel (#5: whole file gzip at most 1/8 of the float32 file's)", ""]
    md += md_table(["sparsity", "clusters", "TF-MOT kernels: gzip bits/weight", "entropy", "Huffman-only", "kernels alone vs float32 kernels (gzip)"],
                   ([f"{p['sparsity']:.0%}", p["clusters"], *_bits(p["kernel_bits"]), f"{p['kernels_alone_vs_float32_kernels']:.3f}"]
                    for p in r["pruned_clustered"]), "rrrrrr")
    if r.get("widths"):
        md += ["", "## Other widths: TF-MOT kernels 50% pruned, whole file vs dense int8", "",
               "Synthetic weights (untrained MobileNetV2 at 32x32x3 with Laplace kernels and random BatchNorm statistics,",
               "`synthetic_int8`) against the trained alpha 0.35 file: a wider model puts a larger share of its bytes in the",
               "1x1 kernels that TF-MOT prunes, so its bound falls.", ""]
        md += md_table(["alpha", "weights", "dense int8 gzip B", "share of gzip bytes outside TF-MOT kernels", "50% pruned vs dense"],
                       ([w["alpha"], w["weights"], f"{w['dense_gzip']:,}", f"{w['share_outside_kernels']:.3f}", f"{w['gzip_vs_dense_int8']:.3f}"]
                        for w in r["widths"]), "rlrrr")
    return "\n".join(md) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--widths", type=float, nargs="*", default=[0.35, 0.5, 0.75, 1.0, 1.4],
                    help="MobileNetV2 widths of the synthetic-weight sweep (none: skip it)")
    a = ap.parse_args(argv)
    res = run()
    if a.widths:
        res["widths"] = width_sweep(tuple(a.widths))
    a.out.mkdir(parents=True, exist_ok=True)
    write_file(a.out / "gzip_bounds.json", json.dumps(res, indent=1))
    write_file(a.out / "gzip_bounds.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
