"""Where the gzipped bytes of a prune + cluster + PCQAT int8 .tflite go, for the 1/8 gzip target of
quantization_findings.md: the conv/FC kernels (pruned and clustered), the depthwise kernels (TF-MOT neither prunes
nor clusters them), the int32 biases, and the rest (graph, scales, zero points, metadata), each gzipped alone;
plus the order-0 entropy of the kernels' int8 codes (per tensor: the floor for any coder that keeps one code
table per tensor), the file's quantization scales, and the float32 reference file's gzip size.

No training and no timing: it reads two committed .tflite files. Default: the PCQAT file and float32 baseline the
``fmnist_mobilenet_v2_compressed`` recipe ships (MobileNetV2 0.35, 32x32, prune 50% + cluster 16 + PCQAT). To
break down the quantization benchmark's own PCQAT file, pass the files it keeps in runs/bench_cache/quantization/.
The JSON starts with the command that made it.

Run:  PYTHONPATH=. python benchmarks/pcqat_breakdown.py [--tflite F [F ...] --float32 F] [--out benchmarks/pcqat_breakdown.json]
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from benchmarks._common import write_file

RECIPE = Path("tflite_models/fmnist_mobilenet_v2_compressed")
OUT = Path("benchmarks/pcqat_breakdown.json")
PARTS = {  # part -> what the findings call it
    "kernels": "pruned + clustered int8 kernels (conv and classifier)",
    "depthwise": "depthwise int8 kernels (TF-MOT neither prunes nor clusters them)",
    "biases": "int32 biases",
    "rest": "graph, scales, zero points, metadata",
}


def entropy_bits(codes: np.ndarray) -> float:
    """Order-0 entropy of the values in ``codes`` (bits per value)."""
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def breakdown(data: bytes, float32: bytes) -> dict:
    """The gzip -9 bytes of each part of the int8 .tflite ``data`` (see ``PARTS``; "rest" = the whole file's gzip
    minus the others'), the kernels' entropy floor (bytes), scale counts and codes, and the gzip bytes of
    ``float32`` (the reference of the 1/8 target)."""
    from edgeopt.io import gzip_size  # lazy: the module's helpers import without TensorFlow
    from edgeopt.tflite import flatbuffer

    model = flatbuffer.read_model(data)
    graph = model.subgraphs[0]
    groups: dict[str, list] = {"kernels": [], "depthwise": [], "biases": []}
    conv_scales = conv_channels = conv_kernels = 0  # CONV_2D kernels and their biases: scales now, output channels
    for op in graph.operators:
        name = flatbuffer.OP_NAMES.get(flatbuffer.builtin_code(model.operatorCodes[op.opcodeIndex]))
        if name not in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
            continue
        kernel = graph.tensors[op.inputs[1]]
        bias = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        groups["depthwise" if name == "DEPTHWISE_CONV_2D" else "kernels"].append(kernel)
        if bias is not None:
            groups["biases"].append(bias)
        if name == "CONV_2D":  # the kernels whose scales PCQAT makes per tensor or per output channel (FC: per tensor)
            conv_kernels += 1
            conv_channels += int(kernel.shape[0])
            conv_scales += len(kernel.quantization.scale) + (len(bias.quantization.scale) if bias is not None else 0)

    def raw(tensors) -> bytes:
        return b"".join(bytes(model.buffers[t.buffer].data) for t in tensors)

    parts, whole = [], gzip_size(data)
    for key in ("kernels", "depthwise", "biases"):
        blob = raw(groups[key])
        weights = sum(int(np.prod(t.shape)) for t in groups[key])
        parts.append({"part": key, "tensors": len(groups[key]), "raw_bytes": len(blob), "gzip_bytes": gzip_size(blob), "values": weights})
    parts.append({"part": "rest", "tensors": None, "raw_bytes": len(data) - sum(p["raw_bytes"] for p in parts),
                  "gzip_bytes": whole - sum(p["gzip_bytes"] for p in parts), "values": None})
    codes = [np.frombuffer(bytes(model.buffers[t.buffer].data), np.int8) for t in groups["kernels"]]
    floor_bits = sum(entropy_bits(c) * c.size for c in codes)
    n = sum(c.size for c in codes)
    scales = sum(len(t.quantization.scale) for t in graph.tensors if t.quantization is not None and t.quantization.scale is not None)
    other_scales = scales - conv_scales
    return {
        "file_bytes": len(data), "file_gzip_bytes": whole, "float32_bytes": len(float32), "float32_gzip_bytes": gzip_size(float32),
        "parts": parts,
        "kernel_entropy_bits_per_weight": floor_bits / n, "kernel_entropy_floor_bytes": int(np.ceil(floor_bits / 8)),
        "kernel_zero_fraction": float(sum((c == 0).sum() for c in codes) / n),
        "kernel_max_codes_per_tensor": max(len(np.unique(c)) for c in codes),
        "kernel_scales": "per_tensor" if conv_scales == 2 * conv_kernels else "per_channel",
        "scales": scales, "scales_with_per_tensor_kernels": other_scales + 2 * conv_kernels,
        "scales_with_per_channel_kernels": other_scales + 2 * conv_channels,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite", type=Path, nargs="+", default=[RECIPE / "model.tflite"], help="PCQAT int8 files of one model")
    ap.add_argument("--float32", type=Path, default=RECIPE / "baseline_float32.tflite", help="the float32 file of the same model")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    command = "PYTHONPATH=. python benchmarks/pcqat_breakdown.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    float32 = args.float32.read_bytes()
    result = {"command": command.strip(), "float32_file": str(args.float32),
              "files": [{"file": str(f), **breakdown(f.read_bytes(), float32)} for f in args.tflite]}
    write_file(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
