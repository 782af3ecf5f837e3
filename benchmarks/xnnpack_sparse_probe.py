"""Does XNNPACK's sparse (NCHW) path run for our pruned float32 MobileNetV2? A quick probe with random
weights (latency does not depend on their values, only on where the zeros are).

For each graph variant: dense float32, 80%-zero 1x1 convolutions converted plainly, and the same converted
with ``Optimize.EXPERIMENTAL_SPARSITY``; latencies at 1 thread, interleaved, medians.
Variants marked "+ PAD/VALID rewrite" pass the dense and the sparse-format files through
``edgeopt.tflite.xnnpack.explicit_pad_for_xnnpack`` (exact; checked here on random inputs) and also time the
unrewritten files. Every file gets ``xnnpack_sparse_eligibility`` (would XNNPACK switch to sparse on ARM?).
On x86 CPUs with AVX XNNPACK never runs sparse (``xnn_is_chw_compatible_config``), so latencies here can only
show that the rewrite costs nothing; the speed-up needs an ARM machine (run this same script there).
Run: PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py benchmarks/pruning_xnnpack_probe.json
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from edgeopt._keras import keras
from edgeopt.tflite.xnnpack import explicit_pad_for_xnnpack_report, xnnpack_sparse_eligibility
from edgeopt.compress.graph import explicit_padding
from edgeopt.models import create


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
    from edgeopt.export import convert as export_convert

    return export_convert(model, "float32", sparse_weights=sparse, explicit_pad=False)  # the probe rewrites itself


def host() -> dict:
    """CPU model and whether XNNPACK's CHW (sparse) kernels are enabled on it (not on x86 with AVX)."""
    import platform

    info = open("/proc/cpuinfo").read() if platform.system() == "Linux" else ""
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith(("model name", "Model"))), platform.processor())
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    x86 = platform.machine() in ("x86_64", "AMD64", "i686")
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:
        litert = "?"
    return {"cpu": model, "machine": platform.machine(), "cores": os.cpu_count(), "avx": "avx" in flags,
            "xnnpack_chw_enabled": not (x86 and "avx" in flags), "ai_edge_litert": litert}


def outputs(data: bytes, x: np.ndarray) -> np.ndarray:
    it = make_interp(data)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def ops(data: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, experimental_preserve_all_tensors=False)
    out = {}
    for d in it._get_ops_details():
        out[d["op_name"]] = out.get(d["op_name"], 0) + 1
    return out


def make_interp(data: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.random.default_rng(0).standard_normal(inp["shape"]).astype(np.float32))
    it.invoke()
    return it


def time_interleaved(datas: dict, rounds=9, per=20) -> dict:
    its = {k: make_interp(v) for k, v in datas.items()}
    times = {k: [] for k in datas}
    for _ in range(rounds):
        for k, it in its.items():
            t = time.perf_counter()
            for _ in range(per):
                it.invoke()
            times[k].append((time.perf_counter() - t) / per * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def main():
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
                "dense": float(np.abs(outputs(dense_rw, x) - outputs(datas["dense"], x)).max()),
                "pruned_sparsity_flag": float(np.abs(outputs(sparse_rw, x) - outputs(datas["pruned_sparsity_flag"], x)).max()),
            }
            assert max(diff.values()) <= 1e-5, f"rewrite changed the outputs: {diff}"
            datas["dense_no_rewrite"], datas["pruned_sparsity_flag_no_rewrite"] = datas["dense"], datas["pruned_sparsity_flag"]
            datas["dense"], datas["pruned_sparsity_flag"] = dense_rw, sparse_rw
            extra = {"rewrite": rep.to_dict(), "rewrite_max_abs_output_diff": diff}
        lat = time_interleaved(datas)
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
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
