"""Pruning benchmark on Fashion-MNIST: MobileNetV2 alpha 0.35 at 32x32x3 (zoo small-input variant, stride-1 stem),
trained from scratch (dense baseline cached in runs/bench_cache/pruning/), each pruned variant fine-tuned from the
dense weights; accuracy, gzipped size and latency of the int8 .tflite measured in this one run (latency
interleaved across variants, medians). Plus a lottery-ticket study on an MLP 784-300-100-10.

Results: each part caches its raw results in runs/bench_cache/pruning/; the report part folds them into the committed
benchmarks/pruning.json (MobileNetV2 rows, float32 sparse files, longer fine-tune) and pruning_lottery.json (every
round of both lottery runs) and renders pruning.md, the CSVs, plots and pruning_findings.md from those files
(benchmarks/_pruning_report.py, no TensorFlow).

Run:  PYTHONPATH=. python benchmarks/pruning.py [--part mobilenet|lottery|report] [--finetune-steps 120]
      PYTHONPATH=. python benchmarks/pruning.py --part longer [--longer-steps 1200]   (the 50% row, longer fine-tune)
      PYTHONPATH=. python benchmarks/pruning.py --findings-only   (re-render pruning.md and the findings from the committed data)
Conversion: edgeopt.export.convert; accuracy, latency, size: edgeopt.bench.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks._common import machine_line, median_latency_ms, write_file
from edgeopt import TrainConfig, create, evaluate, fit, keras, load_dataset, profile
from edgeopt.bench import evaluate_tflite
from edgeopt.compress.lottery import LotteryConfig, lottery_ticket
from edgeopt.compress.prune import PruneConfig, prune, pruning_callbacks, sparsity_report, strip_pruning
from edgeopt.compress.structured import StructuredConfig, plan, prune_filters
from edgeopt.export import convert
from edgeopt.io import gzip_size

OUT = Path("benchmarks")
CACHE = Path("runs/bench_cache/pruning")
ALPHA, SIZE = 0.35, 32
LATENCY = {"threads": 1, "runs": 30, "min_seconds": 0.2}  # per file and round; 7 interleaved rounds, medians


def to_tflite(model, mode, rep_x=None, sparse=False) -> bytes:
    return convert(model, mode, rep_x if mode == "int8" else None, sparse_weights=sparse)


def latency_interleaved(datas: dict[str, bytes], rounds: int = 7) -> dict[str, float]:
    """Median over ``rounds`` of each file's median latency (ms, 1 thread, XNNPACK), files interleaved A,B,C,A,B,C..."""
    return median_latency_ms(datas, rounds, progress="latency", **LATENCY)


# ---- MobileNetV2 rows ----
def build():
    return create("mobilenet_v2", input_shape=(SIZE, SIZE, 3), classes=10, alpha=ALPHA, classifier_activation=None)


def dense_model(splits):
    CACHE.mkdir(parents=True, exist_ok=True)
    m = build()
    path = CACHE / "dense.weights.h5"
    if path.exists():
        m.load_weights(str(path))
    else:
        fit(m, splits, TrainConfig(epochs=3, learning_rate=3e-3, seed=0))
        m.save_weights(str(path))
    return m


def relative_to_dense(rows: list[dict], lat: dict[str, float]) -> None:
    """Adds each row's int8 latency (``lat`` by variant) and its latency, gzip size and top-1 drop against the dense
    row (``rows[0]``, variant "dense")."""
    dense = rows[0]
    for r in rows:
        r["int8_latency_ms"] = lat[r["variant"]]
        r["latency_vs_dense"] = lat[r["variant"]] / lat["dense"]
        r["gzip_vs_dense"] = r["int8_gzip_bytes"] / dense["int8_gzip_bytes"]
        r["top1_drop_points"] = 100 * (dense["int8_top1"] - r["int8_top1"])


def finetune_pruned(dense, splits, config: PruneConfig, steps: int):
    pruned = prune(dense, config, total_steps=steps)
    fit(pruned, splits, TrainConfig(epochs=1, steps_per_epoch=steps, learning_rate=5e-4, seed=1), callbacks=pruning_callbacks(config))
    return strip_pruning(pruned)


def mobilenet_part(steps: int):
    splits = load_dataset("fashion_mnist", image_size=SIZE, channels=3, batch_size=128, seed=0)
    x_rep, _ = splits.arrays("train", limit=300)
    dense = dense_model(splits)
    freq = max(1, steps // 10)
    variants = {
        "dense": (None, "-"),
        "dense, fine-tuned as the others (control)": ("finetune", "-"),
        "layer-wise 50%": (PruneConfig(final_sparsity=0.5, frequency=freq, end_step=freq * 7), "unstructured"),
        "layer-wise 75%": (PruneConfig(final_sparsity=0.75, frequency=freq, end_step=freq * 7), "unstructured"),
        "global 75%": (PruneConfig(final_sparsity=0.75, scope="global", frequency=freq, end_step=freq * 7), "unstructured"),
        "2:4": (PruneConfig(m_by_n=(2, 4), schedule="constant"), "2:4 (input channels)"),
        "structured 50% filters": (StructuredConfig(ratio=0.5, scope="internal"), "filters (L1)"),
    }
    rows, int8 = [], {}
    base_prof = profile(dense)
    for name, (cfg, kind) in variants.items():
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        if cfg is None:
            model = dense
        elif cfg == "finetune":
            model = keras.models.clone_model(dense)
            model.set_weights(dense.get_weights())
            fit(model, splits, TrainConfig(epochs=1, steps_per_epoch=steps, learning_rate=5e-4, seed=1))
        elif isinstance(cfg, StructuredConfig):
            model = prune_filters(dense, cfg)
            fit(model, splits, TrainConfig(epochs=1, steps_per_epoch=steps * 2, learning_rate=1e-3, seed=1))
        else:
            model = finetune_pruned(dense, splits, cfg, steps)
        rep = sparsity_report(model)
        prof = profile(model)
        data = to_tflite(model, "int8", x_rep)
        int8[name] = data
        sparse_fmt = to_tflite(model, "int8", x_rep, sparse=True) if kind == "unstructured" else data
        rows.append({
            "variant": name, "kind": kind, "keras_top1": evaluate(model, splits.test)["top1"],
            "int8_top1": evaluate_tflite(data, splits.test).top1, "kernel_sparsity": rep.sparsity,
            "params": prof.params, "macs": prof.macs, "macs_vs_dense": prof.macs / base_prof.macs,
            "int8_bytes": len(data), "int8_gzip_bytes": gzip_size(data),
            "int8_sparse_format_bytes": len(sparse_fmt), "int8_sparse_format_gzip_bytes": gzip_size(sparse_fmt),
            "seconds": time.perf_counter() - t0,
        })
        if name == "layer-wise 75%":
            float_sparse_model = model
        print(rows[-1], flush=True)
        write_file(CACHE / "rows.json", json.dumps(rows, indent=1))
    relative_to_dense(rows, latency_interleaved(int8))
    for r in rows:
        r["sparse_format_gzip_vs_dense"] = r["int8_sparse_format_gzip_bytes"] / rows[0]["int8_gzip_bytes"]
    # sparse float32: the 75% layer-wise model (1x1 convs 75% zero) with and without EXPERIMENTAL_SPARSITY
    f_dense, f_sparse = to_tflite(dense, "float32"), to_tflite(float_sparse_model, "float32", sparse=True)
    f_plain = to_tflite(float_sparse_model, "float32")
    flat = latency_interleaved({"dense float32": f_dense, "75% float32 plain": f_plain, "75% float32 sparse-format": f_sparse})
    floats = [{"variant": k, "float32_latency_ms": v, "bytes": len(d), "gzip_bytes": gzip_size(d)} for (k, v), d in zip(flat.items(), (f_dense, f_plain, f_sparse))]
    structured_kept = {k: len(v) for k, v in plan(dense, variants["structured 50% filters"][0]).items()}
    return rows, floats, structured_kept


def longer_part(steps: int) -> dict:
    """The layer-wise 50% row again with a longer fine-tune (``steps``; the schedule still reaches 50% at 70% of it),
    against the cached dense model, converted and timed in this run."""
    splits = load_dataset("fashion_mnist", image_size=SIZE, channels=3, batch_size=128, seed=0)
    x_rep, _ = splits.arrays("train", limit=300)
    dense = dense_model(splits)
    freq = max(1, steps // 10)
    t0 = time.perf_counter()
    print(f"== layer-wise 50%, {steps} fine-tune steps", flush=True)
    pruned = finetune_pruned(dense, splits, PruneConfig(final_sparsity=0.5, frequency=freq, end_step=freq * 7), steps)
    rows = []
    datas = {}
    for name, model in (("dense", dense), (f"layer-wise 50%, {steps} steps", pruned)):
        data = to_tflite(model, "int8", x_rep)
        datas[name] = data
        rows.append({"variant": name, "kernel_sparsity": sparsity_report(model).sparsity,
                     "keras_top1": evaluate(model, splits.test)["top1"], "int8_top1": evaluate_tflite(data, splits.test).top1,
                     "int8_gzip_bytes": gzip_size(data)})
        print(rows[-1], flush=True)
    relative_to_dense(rows, latency_interleaved(datas))
    return {"rows": rows, "steps": steps, "seconds": time.perf_counter() - t0, "cmd": " ".join(sys.argv)}


# ---- lottery tickets ----
def mlp():
    inp = keras.Input((28, 28, 1), name="input")
    x = keras.layers.Flatten(name="flatten")(inp)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="classifier")(x))


def lottery_part(rounds: int, fraction: float, limit: int):
    splits = load_dataset("fashion_mnist", image_size=28, channels=1, batch_size=128, seed=0, limit_train=limit)
    train = TrainConfig(epochs=2, learning_rate=1.2e-3, cosine=False, verbose=0)
    out = {}
    for rewind, step in (("init", 0), ("step", 50)):
        cfg = LotteryConfig(rounds=rounds, fraction=fraction, rewind=rewind, rewind_step=step or 0, random_control=(rewind == "init"), train=train)
        out[rewind] = lottery_ticket(mlp, splits, cfg).to_dict()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["mobilenet", "lottery", "longer", "report"], default=None)
    ap.add_argument("--finetune-steps", type=int, default=600)
    ap.add_argument("--longer-steps", type=int, default=1200, help="fine-tune steps of --part longer (the 50%% row again)")
    ap.add_argument("--lottery-rounds", type=int, default=8)
    ap.add_argument("--lottery-fraction", type=float, default=0.3)
    ap.add_argument("--lottery-limit", type=int, default=20000)
    ap.add_argument("--findings-only", action="store_true", help="re-render pruning.md, the CSVs and pruning_findings.md from the committed "
                    "pruning.json / pruning_lottery.json; measures nothing")
    a = ap.parse_args()
    if a.findings_only:
        from benchmarks._pruning_report import render

        render(OUT)
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    machine = f"{machine_line()} (shared with other TensorFlow jobs while this ran)"
    if a.part in (None, "mobilenet"):
        rows, floats, kept = mobilenet_part(a.finetune_steps)
        write_file(CACHE / "mobilenet.json", json.dumps({"machine": machine, "rows": rows, "floats": floats, "structured_kept": kept,
                                                         "steps": a.finetune_steps, "cmd": " ".join(sys.argv)}, indent=1))
    if a.part == "longer":
        write_file(CACHE / "longer50.json", json.dumps({"machine": machine, **longer_part(a.longer_steps)}, indent=1))
    if a.part in (None, "lottery"):
        res = lottery_part(a.lottery_rounds, a.lottery_fraction, a.lottery_limit)
        write_file(CACHE / "lottery.json", json.dumps({"machine": machine, "result": res, "limit": a.lottery_limit, "cmd": " ".join(sys.argv)}, indent=1))
    if a.part in (None, "report"):
        from benchmarks._pruning_report import write

        write(CACHE, OUT, machine)


if __name__ == "__main__":
    main()
