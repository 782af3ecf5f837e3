"""A one-model probe (#22 follow-up, not a verdict: one seed, one model): does PQAT win back the int8 loss of
pruning_criteria's OBD (Fisher) 90% seed-1 model (Keras 89.85% -> int8 75.09%, a loss spread over many layers)? Rebuilds that model with the benchmark's own code
(Run._saliency_prune: same seed, settings, data), checks it reproduces, then fine-tunes it quantization-aware with
its zeros kept (QATConfig(preserve="sparsity"), ranges calibrated on 512 training images, 400 steps at 1e-4 cosine,
no selection) and measures Keras-QAT and int8 test top-1 once each. Writes benchmarks/raw/pruning_criteria/pqat_probe.json
(committed) and keeps the rebuilt model in runs/bench_cache/.
About 20 min on 2 cores beside two training jobs:
    nice -n 15 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/pruning_criteria_pqat_probe.py
Measured 2026-12-05 (Intel Xeon, 2 cores): rebuilt exactly (Keras 89.85%, int8 75.09%); after PQAT, int8 90.02%."""
import argparse
import json
import time
from pathlib import Path

from benchmarks._common import baseline_args, calibration_images, training_arrays, write_file
from benchmarks.pruning_criteria import LR, STEPS, Plan, Run

OUT = Path("benchmarks/raw/pruning_criteria/pqat_probe.json")


def main() -> None:
    ap = argparse.ArgumentParser(); baseline_args(ap); ap.add_argument("--finetune-steps", type=int, default=STEPS)
    a = ap.parse_args([]); plan = Plan(a); run = Run(a, plan)
    t0 = time.perf_counter()
    pruned, fields = run._saliency_prune(run.model, 1, "obd_fisher", "weight", 0.9, LR)
    Run.keep(pruned, "int8_loss")
    from edgeopt import TrainConfig, evaluate, fit  # lazy: loading the run first, as the benchmark does
    from edgeopt.bench import evaluate_tflite
    from edgeopt.compress.quantize import QATConfig, calibrate_ranges, quantize
    from edgeopt.costs import weight_sparsity
    from edgeopt.export import convert
    calib = calibration_images(run.pool, 1, 500)
    out = {"rebuilt_val_top1": fields["val_top1"], "keras_top1": evaluate(pruned, run.splits.test)["top1"],
           "int8_top1": evaluate_tflite(convert(pruned, "int8", calib), run.splits.test).top1, "kernel_sparsity": weight_sparsity(pruned)}
    print("rebuilt:", out, flush=True)
    write_file(OUT, json.dumps(out, indent=1) + "\n")
    qat = quantize(pruned, QATConfig(preserve="sparsity"))
    calibrate_ranges(qat, pruned, training_arrays(run.splits, 512)[0])
    train = TrainConfig(epochs=1, steps_per_epoch=400, learning_rate=1e-4, cosine=True, label_smoothing=0.1, seed=1)
    res = fit(qat, run.splits, train)
    data = convert(qat, "int8", calib)
    out |= {"qat_steps": train.epochs * train.steps_per_epoch, "qat_lr": train.learning_rate, "qat_val_top1": res.val_top1, "qat_keras_top1": evaluate(qat, run.splits.test)["top1"],
            "qat_int8_top1": evaluate_tflite(data, run.splits.test).top1, "seconds": time.perf_counter() - t0}
    print("pqat:", out, flush=True)
    write_file(OUT, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
