"""Pruning benchmark on Fashion-MNIST, from the well-trained baseline (MobileNetV2 alpha 0.35 at 28x28x3, >= 93%,
recipes/fmnist_mobilenet_v2.toml; benchmarks/_common.py loads it and its data). Every verdict row (the fine-tuned
control, layer-wise 50% / 75%, global 75%, 2:4, structured 50% filters) starts from the baseline's weights and is
fine-tuned with ``--seeds`` seeds (seed = data order and TF-MOT randomness, int8 calibration images); the weights
kept are those of the validation check with the best top-1 after the sparsity schedule has ended (early stopping
on the validation split); then each model's Keras and int8 .tflite files are read on the 10,000 test images once.
Latency: the first seed's int8 files, interleaved, medians. Plus a lottery-ticket study on an MLP 784-300-100-10.

Results: each (variant, seed) is cached in benchmarks/raw/pruning/<settings>/runs.json as it finishes (committed: a
killed run continues, in this session or the next one on a fresh clone; the files it keeps stay in runs/bench_cache/);
the first seed's rows run first, then the latency table (it reads their files), then the other seeds. The run
writes the raw per-seed results to the committed benchmarks/pruning.json (lottery: pruning_lottery.json) and renders
pruning.md, pruning.csv, the plots and pruning_findings.md from them (benchmarks/_pruning_report.py, no TensorFlow).

Full run: 18 fine-tunes (15 of ``--finetune-steps``, default 1,200, and the 3 structured ones of twice that), about 50 s
of measuring each, 1 min of latency, 5 min of lottery. Measured on 2 idle cores of an AMD EPYC without VNNI (2026-12-03,
``--finetune-steps 600``), with TensorFlow's oneDNN kernels (edgeopt turns them on): 265-350 s per 600-step run (about
0.4 s a step with its validation checks), 254 s per structured run of 1,200 steps (its filters are half gone), so
about 1.5 h at 600 steps and 2.7 h at the default; without oneDNN (the first two seeds) 380-610 s a run, twice the
time; twice that again while another training shares the cores. It prints its own estimate first, and continues in a later session:
      nice -n 19 env PYTHONPATH=. python benchmarks/pruning.py [--finetune-steps 600]
      PYTHONPATH=. python benchmarks/pruning.py --part mobilenet|lottery|report    (one part; report: render only)
Smoke run (15 min at nice 19 next to a training, most of it TensorFlow tracing and conversion; writes
/tmp/edgeopt-bench-quick/pruning/ and runs/bench_cache/quick/):
      nice -n 19 env PYTHONPATH=. python benchmarks/pruning.py --quick
      PYTHONPATH=. python benchmarks/pruning.py --findings-only   (re-render pruning.md and the findings from the committed data)
Conversion: edgeopt.export.convert; accuracy, latency, size: edgeopt.bench.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import (BATCH, QUICK_OUT, BaselineRun, baseline_args, calibration_images, check_baseline, finetune,
                                machine_line, median_latency_ms, reseeded, seed_runs, write_file)

OUT = Path("benchmarks")
STEPS, CHECKS, LR = 1200, 6, 5e-4  # fine-tune steps of batch 128, validation checks, Adam peak learning rate (cosine)
STRUCTURED_STEPS, STRUCTURED_LR = 2, 1e-3  # the filter-pruned row: twice the steps (it loses whole filters), at 1e-3
CALIBRATION = 500  # int8 calibration images, drawn by seed from the training split
SECONDS_PER_STEP = 0.4  # a (pruned) MobileNetV2 0.35 fine-tune step at 28x28, batch 128, with its share of the validation checks,
# on 2 idle cores of an AMD EPYC without VNNI, oneDNN on (measured 2026-12-03: 265-350 s per 600-step run; structured steps about half)
SECONDS_PER_RUN = 50  # besides the steps: two conversions, Keras and int8 test passes (the dense row: 48 s)
LATENCY_SECONDS = 60  # the interleaved latency passes, int8 and float32 (48 s measured)
LATENCY = {"threads": 1, "runs": 30, "min_seconds": 0.2}  # per file and round; 7 interleaved rounds, medians
QUICK = {"steps": 12, "checks": 2, "seeds": 1, "calibration": 32, "lottery_rounds": 2, "lottery_limit": 3584, "latency_rounds": 1}
# committed inputs the findings quote (made by other scripts); --quick copies them next to its own results
FINDINGS_INPUTS = ("pruning_xnnpack_probe.json", "gzip_bounds.json", "structured_latency.json", "pruning_lottery.json", "pruning_lottery.csv")


def to_tflite(model, mode, rep_x=None, sparse=False) -> bytes:
    from edgeopt.export import convert  # lazy: --findings-only loads no TensorFlow

    return convert(model, mode, rep_x if mode == "int8" else None, sparse_weights=sparse)


def latency_interleaved(datas: dict, rounds: int = 7) -> dict[str, float]:
    """Median over ``rounds`` of each file's median latency (ms, 1 thread, XNNPACK), files interleaved A,B,C,A,B,C..."""
    return median_latency_ms(datas, rounds, progress="latency", **LATENCY)


# ---- the MobileNetV2 rows: a table of variants -------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One verdict row: its kind, its compression config (None: fine-tune only), fine-tune steps (x ``steps``) and
    learning rate, and the step after which validation checks may be selected (the schedule's end)."""

    kind: str
    config: object = None
    steps_factor: int = 1
    learning_rate: float = LR
    select_after_step: int = 0


def variants(steps: int) -> dict[str, Variant]:
    """The rows, by name. Schedules reach their sparsity at half the fine-tune (``end``), so at least the checks in
    its second half hold the final sparsity, and only those are selected."""
    from edgeopt.compress.prune import PruneConfig  # lazy: as above
    from edgeopt.compress.structured import StructuredConfig

    freq = max(1, steps // 10)
    end = freq * 5

    def layer(sparsity, **kw):
        return PruneConfig(final_sparsity=sparsity, frequency=freq, end_step=end, **kw)

    return {
        "dense, fine-tuned as the others (control)": Variant("-", select_after_step=end),
        "layer-wise 50%": Variant("unstructured", layer(0.5), select_after_step=end),
        "layer-wise 75%": Variant("unstructured", layer(0.75), select_after_step=end),
        "global 75%": Variant("unstructured", layer(0.75, scope="global"), select_after_step=end),
        "2:4": Variant("2:4 (input channels)", PruneConfig(m_by_n=(2, 4), schedule="constant", frequency=freq), select_after_step=freq),
        "structured 50% filters": Variant("filters (L1)", StructuredConfig(ratio=0.5, scope="internal"), STRUCTURED_STEPS, STRUCTURED_LR),
    }


FLOAT_SPARSE = "layer-wise 75%"  # the row whose first seed is also converted to float32, plain and sparse-format
FLOAT_FILES = (".float32.tflite", ".float32-sparse.tflite")  # its two float32 files (suffixes)


def measure(model, splits, x_cal, kind: str) -> tuple[dict, bytes]:
    """Test top-1 of ``model`` (Keras) and of its int8 .tflite (calibrated on ``x_cal``), sparsity, size and cost:
    the test split read once per model. Returns the numbers and the int8 file."""
    from edgeopt import evaluate, profile  # lazy: as above
    from edgeopt.bench import evaluate_tflite
    from edgeopt.compress.prune import sparsity_report
    from edgeopt.io import gzip_size

    data = to_tflite(model, "int8", x_cal)
    sparse = to_tflite(model, "int8", x_cal, sparse=True) if kind == "unstructured" else data
    prof = profile(model)
    return {"keras_top1": evaluate(model, splits.test)["top1"], "int8_top1": evaluate_tflite(data, splits.test).top1,
            "kernel_sparsity": sparsity_report(model).sparsity, "params": prof.params, "macs": prof.macs, "int8_bytes": len(data),
            "int8_gzip_bytes": gzip_size(data), "int8_sparse_format_bytes": len(sparse), "int8_sparse_format_gzip_bytes": gzip_size(sparse)}, data


class MobileNetRows(BaselineRun):
    """Everything one run of the MobileNetV2 rows shares: baseline, data, settings, the cache."""

    def __init__(self, args):
        super().__init__(args, QUICK, CHECKS, CALIBRATION, BATCH)
        self.table = variants(self.steps)
        settings = {"baseline": self.digest, "steps": self.steps, "checks": self.checks, "calibration": self.calibration, "quick": self.quick,
                    "variants": {k: repr(v) for k, v in self.table.items()}}
        self.cache = seed_runs("pruning", settings, self.quick)

    def seconds(self, variant: str) -> float:
        v = self.table.get(variant)
        return SECONDS_PER_RUN + (v.steps_factor * self.steps * SECONDS_PER_STEP if v else 0)

    def dense(self, *_) -> dict:
        """The baseline as it is: validation, Keras and int8 test top-1 (calibration seed 0), size, cost."""
        from edgeopt import evaluate  # lazy: as above

        row, data = measure(self.model, self.splits, calibration_images(self.pool, 0, self.calibration), "-")
        write_file(self.cache.file("dense", None, ".tflite"), data)
        return {"kind": "-", "val_top1": evaluate(self.model, self.splits.val)["top1"], **row}

    def run(self, name: str, seed: int) -> dict:
        """Fine-tune one row with ``seed`` (early stopping on validation), then measure it on the test split."""
        from edgeopt import keras  # lazy: as above
        from edgeopt.compress.prune import PruneConfig, prune, pruning_callbacks, strip_pruning
        from edgeopt.compress.structured import StructuredConfig, prune_filters

        v = self.table[name]
        splits = reseeded(self.splits, seed)
        steps, callbacks = v.steps_factor * self.steps, ()
        if v.config is None:
            model = keras.models.clone_model(self.model)
            model.set_weights(self.model.get_weights())
        elif isinstance(v.config, StructuredConfig):
            model = prune_filters(self.model, v.config)
        else:
            assert isinstance(v.config, PruneConfig)
            model, callbacks = prune(self.model, v.config, total_steps=steps), pruning_callbacks(v.config)
        tuned = finetune(model, splits, steps, v.learning_rate, seed, self.checks, v.select_after_step, callbacks)
        if callbacks:
            model = strip_pruning(model)
        row, data = measure(model, self.splits, calibration_images(self.pool, seed, self.calibration), v.kind)
        write_file(self.cache.file(name, seed, ".tflite"), data)
        if name == FLOAT_SPARSE and seed == self.seeds[0]:
            plain, sparse = FLOAT_FILES
            write_file(self.cache.file(name, seed, plain), to_tflite(model, "float32"))
            write_file(self.cache.file(name, seed, sparse), to_tflite(model, "float32", sparse=True))
        return {"kind": v.kind, **tuned, **row}

    def latency(self, *_) -> dict:
        """int8 latency of the baseline and of every row's first-seed file, interleaved; float32 sparse inference of
        the :data:`FLOAT_SPARSE` row against the dense float32 file."""
        from edgeopt.io import gzip_size  # lazy: as above

        rounds = QUICK["latency_rounds"] if self.quick else 7
        first = self.seeds[0]
        files = {"dense": self.cache.file("dense", None, ".tflite"), **{n: self.cache.file(n, first, ".tflite") for n in self.table}}
        int8 = latency_interleaved(files, rounds)
        floats = {"dense float32": to_tflite(self.model, "float32"),
                  "75% float32 plain": self.cache.file(FLOAT_SPARSE, first, ".float32.tflite").read_bytes(),
                  "75% float32 sparse-format": self.cache.file(FLOAT_SPARSE, first, ".float32-sparse.tflite").read_bytes()}
        flat = latency_interleaved(floats, rounds)
        return {"int8_ms": int8, "machine": machine_line(),  # the table's machine: other seeds may run in a later session, elsewhere
                "floats": [{"variant": k, "float32_latency_ms": flat[k], "bytes": len(d), "gzip_bytes": gzip_size(d)} for k, d in floats.items()]}

    def measure_all(self) -> dict:
        """Every row on every seed (cached, resumable), latency as soon as the first seed's files exist (so the cache
        committed in benchmarks/raw/ needs no file once it is measured); the committed pruning.json's "mobilenet" part."""
        from edgeopt.compress.structured import plan  # lazy: as above

        first = self.seeds[0]
        if self.cache.get("latency") is None:  # latency reads the first seed's files: re-make any a fresh clone lacks
            self.cache.ensure_files([("dense", None, (".tflite",))] + [(n, first, (".tflite",) + (FLOAT_FILES if n == FLOAT_SPARSE else ())) for n in self.table],
                                    "pruning, latency table")
        jobs = [(n, s) for s in self.seeds for n in self.table]
        left = [self.seconds(n) for n, s in [("dense", None), *jobs] if self.cache.get(n, s) is None]
        print(f"pruning, MobileNetV2 rows: {len(left)} runs to do, about {_hours(sum(left) + LATENCY_SECONDS)} h on 2 idle cores "
              f"({self.steps} fine-tune steps at about {SECONDS_PER_STEP} s, {SECONDS_PER_RUN} s of measuring each; latency)", flush=True)
        dense = self.cache.run([("dense", None)], self.dense, self.seconds, "pruning: the baseline")[0]
        self.cache.run([(n, first) for n in self.table], self.run, self.seconds, "pruning: rows, first seed")
        lat = self.cache.run([("latency", None)], self.latency, lambda _: LATENCY_SECONDS, "pruning: latency")[0]
        runs = self.cache.run(jobs, self.run, self.seconds, "pruning: rows x other seeds")
        structured = next(v.config for v in self.table.values() if v.kind == "filters (L1)")
        return {"format": 2, "cmd": "benchmarks/pruning.py " + " ".join(sys.argv[1:]), "test_images": self.splits.sizes["test"],
                "seeds": self.seeds, "steps": self.steps, "checks": self.checks, "learning_rate": LR,
                "structured": {"steps_factor": STRUCTURED_STEPS, "learning_rate": STRUCTURED_LR}, "calibration": self.calibration,
                "baseline": {"file": str(self.baseline_file), **dense}, "runs": runs, "latency_ms": lat["int8_ms"], "floats": lat["floats"],
                "latency_machine": lat.get("machine"),
                "structured_kept": {k: len(v) for k, v in plan(self.model, structured).items()}}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}"


# ---- lottery tickets -----------------------------------------------------------------------------------------


def mlp():
    from edgeopt import keras  # lazy: as above

    inp = keras.Input((28, 28, 1), name="input")
    x = keras.layers.Flatten(name="flatten")(inp)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="classifier")(x))


def lottery_part(rounds: int, fraction: float, limit: int):
    from edgeopt import TrainConfig, load_dataset  # lazy: as above
    from edgeopt.compress.lottery import LotteryConfig, lottery_ticket

    splits = load_dataset("fashion_mnist", image_size=28, channels=1, batch_size=128, seed=0, limit_train=limit)
    train = TrainConfig(epochs=2, learning_rate=1.2e-3, cosine=False, verbose=0)
    out = {}
    for rewind, step in (("init", 0), ("step", 50)):
        cfg = LotteryConfig(rounds=rounds, fraction=fraction, rewind=rewind, rewind_step=step or 0, random_control=(rewind == "init"), train=train)
        out[rewind] = lottery_ticket(mlp, splits, cfg).to_dict()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    baseline_args(ap)
    ap.add_argument("--part", choices=["mobilenet", "lottery", "report"], default=None)
    ap.add_argument("--finetune-steps", type=int, default=STEPS)
    ap.add_argument("--lottery-rounds", type=int, default=8)
    ap.add_argument("--lottery-fraction", type=float, default=0.3)
    ap.add_argument("--lottery-limit", type=int, default=20000)
    ap.add_argument("--findings-only", action="store_true", help="re-render pruning.md, the CSVs and pruning_findings.md from the committed "
                    "pruning.json / pruning_lottery.json; measures nothing")
    a = ap.parse_args()
    from benchmarks._pruning_report import render  # no TensorFlow

    if a.findings_only:
        render(OUT)
        return
    out = QUICK_OUT / "pruning" if a.quick else OUT
    if a.quick:
        out.mkdir(parents=True, exist_ok=True)
        for name in FINDINGS_INPUTS:
            if (OUT / name).exists():
                shutil.copy(OUT / name, out / name)
    machine = f"{machine_line()} (shared with other TensorFlow jobs while this ran)"
    if a.part in (None, "mobilenet"):
        check_baseline(a.baseline, a.quick)
        t0 = time.perf_counter()
        mobilenet = MobileNetRows(a).measure_all()
        table_machine = mobilenet.pop("latency_machine") or machine
        data = {"format": 2, "mobilenet": {"machine": table_machine, "wall_s": time.perf_counter() - t0, **mobilenet}}  # replaces format 1's parts
        write_file(out / "pruning.json", json.dumps(data, indent=1) + "\n")
    if a.part in (None, "lottery"):
        rounds, limit = (QUICK["lottery_rounds"], QUICK["lottery_limit"]) if a.quick else (a.lottery_rounds, a.lottery_limit)
        res = lottery_part(rounds, a.lottery_fraction, limit)
        write_file(out / "pruning_lottery.json", json.dumps({"machine": machine, "result": res, "limit": limit,
                                                            "cmd": "benchmarks/pruning.py " + " ".join(sys.argv[1:])}, indent=1) + "\n")
    render(out, plots=True)
    print(f"wrote {out}/pruning.md, pruning.csv, {out}/pruning_findings.md", flush=True)


if __name__ == "__main__":
    main()
