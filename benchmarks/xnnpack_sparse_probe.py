"""Does XNNPACK's sparse (NCHW) path run for our pruned float32 MobileNetV2? A quick probe with random
weights (latency does not depend on their values, only on where the zeros are).

For each graph variant: dense float32, 80%-zero 1x1 convolutions converted plainly, and the same converted
with ``Optimize.EXPERIMENTAL_SPARSITY``; latencies (``edgeopt.bench.measure_latency``) at 1 thread, interleaved,
median of 9 rounds of per-round medians.
Variants marked "+ PAD/VALID rewrite" pass the dense and the sparse-format files through
``edgeopt.tflite.xnnpack.explicit_pad_for_xnnpack`` (exact; checked here on random inputs) and also time the
unrewritten files. Every file gets ``xnnpack_sparse_eligibility`` (would XNNPACK switch to sparse on ARM?).
On x86 CPUs with AVX XNNPACK never runs sparse (``xnn_is_chw_compatible_config``), so latencies here can only
show that the rewrite costs nothing; the speed-up needs an ARM machine (run this same script there).
Run: PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py benchmarks/pruning_xnnpack_probe.json
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks._common import median_latency_ms, write_file
from edgeopt import keras
from edgeopt.bench import litert_version, this_machine
from edgeopt.compress.graph import explicit_padding
from edgeopt.export import convert as export_convert
from edgeopt.export import run_tflite
from edgeopt.models import create
from edgeopt.tflite.flatbuffer import list_ops
from edgeopt.tflite.xnnpack import explicit_pad_for_xnnpack_report, xnnpack_sparse_eligibility


def zero_pointwise(model, sparsity=0.8):
    m = keras.models.clone_model(model)
    m.set_weights(model.get_weights())
    for layer in m.layers:
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D) and tuple(layer.kernel_size) == (1, 1):
            w = layer.get_weights()
            k = w[0]
            thr = np.quantile(np.abs(k), sparsity)
            w[0] = np.where(np.abs(k) <= thr, 0.0, k).astype(np.float32)
            layer.set_weights(w)
    return m


def convert(model, sparse: bool) -> bytes:
    return export_convert(model, "float32", sparse_weights=sparse, explicit_pad=False)  # the probe rewrites itself


def host() -> dict:
    """CPU model and whether XNNPACK's CHW (sparse) kernels are enabled on it (not on x86 with AVX)."""
    m = this_machine()
    avx = "avx" in m.flags
    return {"cpu": m.cpu, "machine": m.arch, "cores": m.cores, "avx": avx,
            "xnnpack_chw_enabled": not (m.arch in ("x86_64", "AMD64", "i686") and avx), "ai_edge_litert": litert_version() or "?"}


def ops(data: bytes) -> dict:
    """Operator name -> count, in order of first use."""
    out = {}
    for op in list_ops(data):
        out[op.op] = out.get(op.op, 0) + 1
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="JSON file for the results (default: print only)")
    args = ap.parse_args(argv)
    variants = {
        "zoo_32x32 (stem s1, 'same' padding)": (create("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=0.35), False),
        "zoo_224 (stem s2, 'same' padding)": (create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35), False),
        "explicit_pad_224 (ZeroPadding2D + valid)": (explicit_padding(create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35)), False),
        "explicit_pad_64_stem_s2 (64x64 in, 32x32 after stem)": (explicit_padding(
            create("mobilenet_v2", input_shape=(64, 64, 3), classes=10, alpha=0.35, small_input=True), stem_stride=2
        ), False),
        "zoo_225 + PAD/VALID rewrite (exact, all stride-2 inputs odd)": (create("mobilenet_v2", input_shape=(225, 225, 3), classes=10, alpha=0.35), True),
        "explicit_pad_224 + PAD/VALID rewrite": (explicit_padding(create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35)), True),
        "explicit_pad_64_stem_s2 + PAD/VALID rewrite": (explicit_padding(
            create("mobilenet_v2", input_shape=(64, 64, 3), classes=10, alpha=0.35, small_input=True), stem_stride=2
        ), True),
    }
    machine = host()
    print("host:", machine, flush=True)
    results = {}
    for name, (model, rewrite) in variants.items():
        pruned = zero_pointwise(model)
        datas = {"dense": convert(model, False), "pruned_plain": convert(pruned, False), "pruned_sparsity_flag": convert(pruned, True)}
        extra = {}
        if rewrite:
            dense_rw, rep_dense = explicit_pad_for_xnnpack_report(datas["dense"])
            sparse_rw, rep = explicit_pad_for_xnnpack_report(datas["pruned_sparsity_flag"])
            x = np.random.default_rng(1).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
            diff = {
                "dense": float(np.abs(run_tflite(dense_rw, x) - run_tflite(datas["dense"], x)).max()),
                "pruned_sparsity_flag": float(np.abs(run_tflite(sparse_rw, x) - run_tflite(datas["pruned_sparsity_flag"], x)).max()),
            }
            assert max(diff.values()) <= 1e-5, f"rewrite changed the outputs: {diff}"
            datas["dense_no_rewrite"], datas["pruned_sparsity_flag_no_rewrite"] = datas["dense"], datas["pruned_sparsity_flag"]
            datas["dense"], datas["pruned_sparsity_flag"] = dense_rw, sparse_rw
            extra = {"rewrite": rep.to_dict(), "rewrite_max_abs_output_diff": diff}
        lat = median_latency_ms(datas, 9, threads=1, runs=20, min_seconds=0.0)
        elig = {k: xnnpack_sparse_eligibility(v) for k, v in datas.items()}
        results[name] = {
            "ms": lat,
            "bytes": {k: len(v) for k, v in datas.items()},
            "ops_dense": ops(datas["dense"]),
            "ops_sparse": ops(datas["pruned_sparsity_flag"]),
            "xnnpack_would_switch_on_arm": {k: e.would_switch for k, e in elig.items()},
            "xnnpack_blockers_sparse_file": list(elig["pruned_sparsity_flag"].blockers),
            "xnnpack_clusters_sparse_file": list(elig["pruned_sparsity_flag"].clusters),
            "host": machine,
            **extra,
        }
        print(name, json.dumps({k: results[name][k] for k in ("ms", "bytes", "xnnpack_would_switch_on_arm")}), flush=True)
    if args.out:
        write_file(args.out, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
