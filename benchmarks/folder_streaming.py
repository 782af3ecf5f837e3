"""Does training from an image folder stream with bounded memory, and how much slower is it than images in memory?

1. Writes the first ``--images`` Fashion-MNIST training images (``edgeopt.data.load_raw("fashion_mnist")``) as RGB
   JPEGs of ``--size`` x ``--size`` (PIL, quality 90) into ``--work``/n<images>_s<size>/<class>/ (kept for later runs).
2. Streamed, in its own process: ``edgeopt.load_dataset("folder:DIR", batch 64)`` and one epoch of
   ``create("mobilenet_v2", alpha=0.35)`` with ``edgeopt.fit``; peak RSS (VmHWM) and images/s after warm-up.
3. In memory, in its own process (its peak RSS apart): ``--memory-images`` of the same JPEGs decoded to one uint8
   array, fed by ``tf.data.Dataset.from_tensor_slices`` with the same normalization, one pass; images/s after warm-up.

Goals: streamed peak RSS < 4 GB; memory / streamed throughput <= 1.3. Writes ``--out``.md and .json.

    PYTHONPATH=. python benchmarks/folder_streaming.py                     # full: 60,000 images at 224x224
    PYTHONPATH=. python benchmarks/folder_streaming.py --images 600 --size 64 --out /tmp/folder_streaming   # smoke
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import edgeopt
from benchmarks._common import machine_line, md_table, write_file
from edgeopt import keras, tf
from edgeopt.bench import this_machine
from edgeopt.data import load_raw

HERE = Path(__file__).resolve().parent
BATCH = 64
WARMUP_STEPS = 5
RSS_GOAL_GB, RATIO_GOAL = 4.0, 1.3


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def eta(done: int, total: int, start: float) -> str:
    """'12.3 s left' from the rate so far."""
    rate = done / max(time.perf_counter() - start, 1e-9)
    return f"{(total - done) / rate:.0f} s left" if done else "estimating time left"


def peak_rss_gb() -> float:
    """This process's peak resident set size (VmHWM) in GB (10^9 bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # kB on Linux


# ---- 1. the folder ---------------------------------------------------------------------------------------


def image_folder(work: Path, images: int, size: int) -> Path:
    """The JPEG folder of the first ``images`` Fashion-MNIST training images at ``size`` x ``size`` RGB; files already
    written are kept. Class folders are '<label>_<name>' so their sorted order is the label order."""
    folder = work / f"n{images}_s{size}"
    raw = load_raw("fashion_mnist")
    if images > len(raw.x_train):
        sys.exit(f"--images must be <= {len(raw.x_train)} (Fashion-MNIST's training images); got {images}")
    classes = [f"{i}_{name.replace('/', '-')}" for i, name in enumerate(raw.class_names)]
    start, step = time.perf_counter(), max(images // 20, 1)
    for i in range(images):
        path = folder / classes[raw.y_train[i]] / f"{i:05d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(raw.x_train[i, :, :, 0]).convert("RGB").resize((size, size), Image.BILINEAR).save(path, quality=90)
        if (i + 1) % step == 0:
            log(f"JPEGs {i + 1}/{images}, {eta(i + 1, images, start)}")
    return folder


# ---- 2. and 3. training, one process each ------------------------------------------------------------------


def _timing_callback(total_steps: int, label: str):
    """A Keras callback recording when each batch ends and printing progress with time left every ~5%."""
    class Timing(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[float] = []
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            if len(self.ends) % max(total_steps // 20, 1) == 0:
                log(f"{label} step {len(self.ends)}/{total_steps}, {eta(len(self.ends), total_steps, self.start)}")

    return Timing()


def _train_one_pass(splits, size: int, label: str, max_steps: int | None = None) -> dict:
    """One epoch of MobileNetV2 0.35 on ``splits`` with ``edgeopt.fit`` (or its first ``max_steps`` steps, drawn from
    the whole shuffled file list); wall seconds, steps, images/s after warm-up."""
    model = edgeopt.create("mobilenet_v2", input_shape=(size, size, 3), classes=10, alpha=0.35)
    epoch_steps = int(np.ceil(splits.sizes["train"] / BATCH))
    steps = min(epoch_steps, max_steps or epoch_steps)
    timing = _timing_callback(steps, label)
    config = edgeopt.TrainConfig(epochs=1, verbose=0, steps_per_epoch=steps if steps < epoch_steps else None)
    result = edgeopt.fit(model, splits, config, callbacks=[timing])
    if len(timing.ends) <= WARMUP_STEPS:
        raise SystemExit(f"{label}: {len(timing.ends)} steps is too few to time after {WARMUP_STEPS} warm-up steps; use more --images")
    trained = splits.sizes["train"] if steps == epoch_steps else steps * BATCH
    timed_images = trained - WARMUP_STEPS * BATCH  # the images of the steps after warm-up
    return {"images": trained, "epoch_images": splits.sizes["train"], "steps": steps, "epoch_steps": epoch_steps, "train_s": result.seconds,
            "images_per_s": timed_images / (timing.ends[-1] - timing.ends[WARMUP_STEPS - 1]), "train_top1": result.history["accuracy"][-1]}


def streamed(folder: Path, size: int, max_steps: int | None = None) -> dict:
    """Phase 2: train from ``folder:`` streamed; adds load time, the bad-file count and peak RSS."""
    start = time.perf_counter()
    splits = edgeopt.load_dataset(f"folder:{folder}", image_size=size, channels=3, batch_size=BATCH, val_fraction=0.0)
    load_s = time.perf_counter() - start
    log(f"streamed: load_dataset {load_s:.1f} s (file listing and check), sizes {splits.sizes}")
    out = _train_one_pass(splits, size, "streamed", max_steps)
    return {**out, "load_s": load_s, "skipped": len(splits.skipped), "peak_rss_gb": peak_rss_gb()}


def in_memory(folder: Path, size: int, count: int, max_steps: int | None = None) -> dict:
    """Phase 3: ``count`` of the folder's JPEGs (a seeded sample, all classes) decoded to uint8 (count, size, size, 3)
    in memory, normalized as the streamed pipeline does, one pass."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(p, label) for label, c in enumerate(classes) for p in sorted((folder / c).glob("*.jpg"))]
    picked = [files[i] for i in np.sort(np.random.default_rng(0).choice(len(files), min(count, len(files)), replace=False))]
    start = time.perf_counter()
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p, _ in picked])
    y = np.array([label for _, label in picked], np.int64)
    log(f"memory: decoded {len(x)} JPEGs to {x.nbytes / 1e9:.2f} GB in {time.perf_counter() - start:.1f} s")
    prep = edgeopt.Preprocessing((size, size), 3, class_names=tuple(classes), dataset=f"folder:{folder}")
    train = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(BATCH)
             .map(lambda a, b: ((tf.cast(a, tf.float32) - prep.mean) / prep.std, b), num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    empty = train.take(0)
    splits = edgeopt.Splits(train, empty, empty, prep, {"train": len(x), "val": 0, "test": 0})
    return {**_train_one_pass(splits, size, "memory", max_steps), "peak_rss_gb": peak_rss_gb()}


def run_phase(phase: str, args: argparse.Namespace, folder: Path) -> dict:
    """Run ``phase`` in a child process (so its peak RSS is its own) and return its result (its last stdout line)."""
    cmd = [sys.executable, __file__, "--phase", phase, "--folder", str(folder), "--size", str(args.size), "--memory-images", str(args.memory_images)]
    cmd += ["--steps", str(args.steps)] if args.steps else []
    log(f"{phase}: starting its own process")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent, check=False)
    if proc.returncode:
        sys.exit(f"{phase} phase failed (exit {proc.returncode}); its output is above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- report ------------------------------------------------------------------------------------------------


def verdicts(stream: dict, memory: dict) -> dict:
    """The goals, met or missed, computed from the measurements."""
    ratio = memory["images_per_s"] / stream["images_per_s"]
    return {"memory_over_streamed": ratio,
            "peak_rss_goal_met": stream["peak_rss_gb"] < RSS_GOAL_GB,
            "throughput_goal_met": ratio <= RATIO_GOAL}


def write_report(out: Path, result: dict) -> None:
    s, m, v = result["streamed"], result["memory"], result["verdicts"]

    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = [
        "# Training from an image folder: streamed from disk vs decoded in memory", "",
        f"Machine: {result['machine']}.", f"Reproduce: `{result['command']}`", "",
        (f"{result['images']} Fashion-MNIST training images as {result['size']}x{result['size']} RGB JPEGs (quality 90); "
         f"MobileNetV2 0.35, batch {BATCH}, " + (f"one epoch of the folder's training split ({s['epoch_images']} images; the fixed 20% test "
         "split is held out) with `edgeopt.fit`" if s["steps"] == s["epoch_steps"] else
         f"the first {s['steps']} of the epoch's {s['epoch_steps']} steps with `edgeopt.fit` (drawn from the whole shuffled file list; "
         f"the whole epoch at this rate: {s['epoch_images'] / s['images_per_s'] / 60:.0f} min)") + f"; images/s exclude the first {WARMUP_STEPS} steps. "
         f"Each phase ran in its own process. Total wall time {result['wall_s']:.0f} s (JPEG writing {result['write_s']:.0f} s)."), "",
        *md_table(["feed", "images trained", "steps", "train s", "images/s", "peak RSS GB"], [
            ["streamed (`folder:`)", s["images"], s["steps"], f"{s['train_s']:.1f}", f"{s['images_per_s']:.1f}", f"{s['peak_rss_gb']:.2f}"],
            ["in memory (uint8 array)", m["images"], m["steps"], f"{m['train_s']:.1f}", f"{m['images_per_s']:.1f}", f"{m['peak_rss_gb']:.2f}"],
        ], "lrrrrr"), "",
        f"- streamed `load_dataset` (list + check every file): {s['load_s']:.1f} s; unreadable files skipped: {s['skipped']}",
        f"- peak RSS streamed {s['peak_rss_gb']:.2f} GB (goal < {RSS_GOAL_GB:g} GB): **{met(v['peak_rss_goal_met'])}**",
        f"- throughput memory / streamed = {v['memory_over_streamed']:.2f} (goal <= {RATIO_GOAL:g}): **{met(v['throughput_goal_met'])}**", "",
    ]
    write_file(out.with_suffix(".md"), "\n".join(lines))
    write_file(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    log(f"wrote {out.with_suffix('.md')} and .json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=60_000, help="Fashion-MNIST training images to write and stream (default 60000)")
    p.add_argument("--size", type=int, default=224, help="JPEG side in pixels, also the model input (default 224)")
    p.add_argument("--memory-images", type=int, default=4000, help="images decoded into memory for the in-memory pass (default 4000)")
    p.add_argument("--work", type=Path, default=Path("/tmp/edgeopt_folder_bench"), help="where the JPEG folders are written and kept")
    p.add_argument("--out", type=Path, default=HERE / "folder_streaming", help="report path without suffix (.md and .json are written)")
    p.add_argument("--steps", type=int, default=None, help="train only this many steps of the epoch (drawn from every file; default: the whole epoch)")
    p.add_argument("--phase", choices=("streamed", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--rewrite", action="store_true", help="rewrite --out.md from --out.json (no measuring)")
    args = p.parse_args()
    if args.rewrite:
        write_report(args.out, json.loads(args.out.with_suffix(".json").read_text()))
        return
    if args.phase:  # a child process: one measurement, printed as the last line
        out = streamed(args.folder, args.size, args.steps) if args.phase == "streamed" else in_memory(args.folder, args.size, args.memory_images, args.steps)
        print(json.dumps(out), flush=True)
        return

    start = time.perf_counter()
    folder = image_folder(args.work, args.images, args.size)
    write_s = time.perf_counter() - start
    stream = run_phase("streamed", args, folder)
    log(f"streamed: {stream['images_per_s']:.1f} images/s, peak RSS {stream['peak_rss_gb']:.2f} GB")
    memory = run_phase("memory", args, folder)
    log(f"memory: {memory['images_per_s']:.1f} images/s, peak RSS {memory['peak_rss_gb']:.2f} GB")
    options = "".join(f" --{k} {getattr(args, k.replace('-', '_'))}" for k in ("images", "size", "memory-images", "steps") if getattr(args, k.replace('-', '_')))
    command = f"PYTHONPATH=. python benchmarks/folder_streaming.py{options}"
    result = {"machine": machine_line(), "cpu": this_machine().to_dict(), "command": command, "images": args.images, "size": args.size,
              "write_s": write_s, "wall_s": time.perf_counter() - start, "streamed": stream, "memory": memory, "verdicts": verdicts(stream, memory)}
    write_report(args.out, result)
    print(Path(args.out.with_suffix(".md")).read_text())


if __name__ == "__main__":
    main()
