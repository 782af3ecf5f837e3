"""Does XNNPACK's sparse (NCHW) path run for our pruned float32 MobileNetV2? A quick probe with random
weights (latency does not depend on their values, only on where the zeros are).

For each graph variant: dense float32, 80%-zero 1x1 convolutions converted plainly, and the same converted
with ``Optimize.EXPERIMENTAL_SPARSITY``; latencies at 1 thread, interleaved, medians.
Run: PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from edgeopt._keras import keras, tf
from edgeopt.compress._graph import explicit_padding
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
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    if sparse:
        conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return conv.convert()


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


def time_interleaved(datas: dict, rounds=7, per=20) -> dict:
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
        "zoo_32x32 (stem s1, 'same' padding)": create("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=0.35),
        "zoo_224 (stem s2, 'same' padding)": create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35),
        "explicit_pad_224 (ZeroPadding2D + valid)": explicit_padding(create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35)),
        "explicit_pad_64_stem_s2 (64x64 in, 32x32 after stem)": explicit_padding(
            create("mobilenet_v2", input_shape=(64, 64, 3), classes=10, alpha=0.35, small_input=True), stem_stride=2
        ),
    }
    results = {}
    for name, model in variants.items():
        pruned = zero_pointwise(model)
        datas = {"dense": convert(model, False), "pruned_plain": convert(pruned, False), "pruned_sparsity_flag": convert(pruned, True)}
        lat = time_interleaved(datas)
        results[name] = {
            "ms": lat,
            "bytes": {k: len(v) for k, v in datas.items()},
            "ops_dense": ops(datas["dense"]),
            "ops_sparse": ops(datas["pruned_sparsity_flag"]),
        }
        print(name, json.dumps(results[name]), flush=True)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
