"""Transfer learning vs training from scratch, at the same number of optimizer steps, 3 seeds (issue #19).

Source task: a MobileNetV2 0.35 trained by edgeopt on Fashion-MNIST (32x32, grey repeated to RGB). Target task: an
image folder that this script writes from real data, scikit-learn's handwritten digits (1,797 8x8 PNGs, ten class
folders), loaded with ``folder:PATH`` like a user's photos. For each seed, the same architecture is trained on the
folder two ways for the same number of steps:

- transfer: the Fashion-MNIST backbone with a new head (``edgeopt.new_head``), ``edgeopt.finetune``: the head alone
  for ``--head-epochs`` epochs, then every block at a tenth of the learning rate for ``--epochs`` epochs;
- scratch: random initial weights, ``edgeopt.fit`` for ``--head-epochs + --epochs`` epochs at the full rate.

Two regimes: all training images of the folder, and ``--few`` images per class (a user with a small folder).
Each model's test accuracy is read once, on the folder's fixed test split (20%, 359 images). Verdict: transfer minus
scratch against the noise (95%: the seeds' standard error of the difference and the test-sampling interval, added
in quadrature). Writes benchmarks/transfer.{md,csv,json,png}.

    .venv/bin/python benchmarks/transfer.py            # ~15 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import edgeopt
from edgeopt import FinetuneConfig, TrainConfig, create, evaluate, finetune, fit, keras, load_dataset, new_head
from edgeopt.data import load_raw
from edgeopt.io import load_model_safe, save_model_atomic

from _common import machine_line, md_table, mean_std, sampling_interval, verdict, write_csv, write_file

OUT = Path(__file__).resolve().parent


def write_digits_folder(root: Path) -> Path:
    """scikit-learn's digits as PNG files in root/<digit>/<index>.png (skipped when already written)."""
    from PIL import Image

    raw = load_raw("digits")
    if root.is_dir() and sum(1 for _ in root.rglob("*.png")) == len(raw.x_train):
        return root
    for i, (img, label) in enumerate(zip(raw.x_train, raw.y_train)):
        path = root / raw.class_names[label] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(path)
    return root


def source_backbone(path: Path, args) -> keras.Model:
    """MobileNetV2 0.35 trained on Fashion-MNIST (cached at ``path``)."""
    if path.exists():
        return load_model_safe(path)
    splits = load_dataset("fashion_mnist", image_size=args.size, channels=3, batch_size=128, limit_train=args.source_images, augment=True)
    keras.utils.set_random_seed(0)
    model = create("mobilenet_v2", input_shape=(args.size, args.size, 3), classes=10, alpha=0.35)
    print(f"[transfer] training the Fashion-MNIST backbone: {splits.sizes['train']} images, {args.source_epochs} epochs", flush=True)
    fit(model, splits, TrainConfig(epochs=args.source_epochs, learning_rate=3e-3, seed=0))
    top1 = evaluate(model, splits.test)["top1"]
    print(f"[transfer] backbone: Fashion-MNIST test top-1 {top1:.4f}", flush=True)
    save_model_atomic(model, path)
    (path.with_suffix(".json")).write_text(json.dumps({"fashion_mnist_test_top1": top1, "images": splits.sizes["train"], "epochs": args.source_epochs}))
    return model


def run_one(kind: str, seed: int, splits, backbone_path: Path, args) -> dict:
    keras.utils.set_random_seed(seed)
    train = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, seed=seed, verbose=0)
    start = time.perf_counter()
    if kind == "transfer":
        model = new_head(load_model_safe(backbone_path), classes=10)
        finetune(model, splits, FinetuneConfig(head_epochs=args.head_epochs, unfreeze="all", learning_rate_factor=0.1), train)
    else:
        model = create("mobilenet_v2", input_shape=(args.size, args.size, 3), classes=10, alpha=0.35)
        fit(model, splits, TrainConfig(epochs=args.epochs + args.head_epochs, learning_rate=args.learning_rate, seed=seed, verbose=0))
    seconds = time.perf_counter() - start
    test = evaluate(model, splits.test)  # read once per reported model
    steps = (args.epochs + args.head_epochs) * -(-splits.sizes["train"] // args.batch_size)
    return {"method": kind, "seed": seed, "train_images": splits.sizes["train"], "steps": steps, "test_top1": round(test["top1"], 4),
            "test_images": test["samples"], "train_seconds": round(seconds, 1)}


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for regime in dict.fromkeys(r["regime"] for r in rows):
        by = {m: [r["test_top1"] for r in rows if r["regime"] == regime and r["method"] == m] for m in ("transfer", "scratch")}
        (mt, st), (ms, ss) = mean_std(by["transfer"]), mean_std(by["scratch"])
        n = len(by["transfer"])
        images = next(r["test_images"] for r in rows if r["regime"] == regime)
        seed_noise = 1.96 * float(np.sqrt((st**2 + ss**2) / n))
        interval = sampling_interval((mt + ms) / 2, images)
        noise = float(np.hypot(seed_noise, interval))
        out.append({"regime": regime, "seeds": n, "train_images": next(r["train_images"] for r in rows if r["regime"] == regime),
                    "steps": next(r["steps"] for r in rows if r["regime"] == regime),
                    "transfer_mean": round(mt, 4), "transfer_std": round(st, 4), "scratch_mean": round(ms, 4), "scratch_std": round(ss, 4),
                    "gain": round(mt - ms, 4), "noise": round(noise, 4), "test_interval": round(interval, 4), "verdict": verdict(mt - ms, noise)})
    return out


def write_report(rows: list[dict], summary: list[dict], meta: dict) -> None:
    write_csv(OUT / "transfer.csv", rows)
    write_file(OUT / "transfer.json", json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=1))
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    table = md_table(["target data", "train images", "steps", "transfer (mean ± std)", "scratch (mean ± std)", "gain", "noise (95%)", "verdict"],
                     [[s["regime"], s["train_images"], s["steps"], f"{pct(s['transfer_mean'])} ± {pct(s['transfer_std'])}",
                       f"{pct(s['scratch_mean'])} ± {pct(s['scratch_std'])}", f"{100 * s['gain']:+.1f}", f"±{pct(s['noise'])}", s["verdict"]]
                      for s in summary])
    lines = [
        "# Transfer learning vs training from scratch (issue #19)", "",
        f"Machine: {meta['machine']}. Wall time {meta['wall_minutes']:.1f} min (the backbone, trained once with seed 0 and cached in "
        f"`--work`, not included). Command: `{meta['command']}`; `--rewrite` rewrites these files from `transfer.json`.", "",
        f"Backbone: MobileNetV2 0.35 trained by edgeopt on Fashion-MNIST ({meta['source']['images']} images, {meta['source']['epochs']} epochs, "
        f"{meta['size']}x{meta['size']}), Fashion-MNIST test top-1 {pct(meta['source']['fashion_mnist_test_top1'])}%. Target: scikit-learn's "
        f"digits written as a folder of PNGs (ten class folders), read with `folder:PATH`; test split fixed (20%, {rows[0]['test_images']} images). "
        f"Transfer = new head, {meta['head_epochs']} epoch(s) of the head on the frozen backbone, then {meta['epochs']} epochs of every block at "
        f"a tenth of the rate (`edgeopt.finetune`); scratch = the same architecture from random weights for the same number of steps "
        f"({meta['head_epochs'] + meta['epochs']} epochs at the full rate {meta['learning_rate']}). Test top-1 in %, {meta['seeds']} seeds each.", "",
        *table, "",
        "The seeds vary the new head's initial weights, the training order and the validation split; the backbone is the same "
        "for every seed. With every image, digits are easy enough that training from scratch reaches the same accuracy in "
        "these steps; with 20 images per class the Fashion-MNIST features are what makes the model work.", "",
        "Noise = the seeds' 95% interval of the difference (1.96 x its standard error) and the test-sampling 95% interval, added in "
        "quadrature; the verdict is \"met\" when the gain is above it, \"missed\" below minus it, else \"within noise\".", "",
        "Per run: `benchmarks/transfer.csv`; everything: `benchmarks/transfer.json`.",
    ]
    write_file(OUT / "transfer.md", "\n".join(lines) + "\n")
    _plot(summary)


def _plot(summary: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(summary))
    for j, (method, color) in enumerate((("transfer", "tab:blue"), ("scratch", "tab:gray"))):
        ax.bar(x + (j - 0.5) * 0.35, [100 * s[f"{method}_mean"] for s in summary], 0.35, yerr=[100 * s[f"{method}_std"] for s in summary],
               label=method, color=color, capsize=4)
    ax.set_xticks(x, [f"{s['regime']}\n({s['train_images']} images)" for s in summary])
    ax.set_ylabel("digits test top-1 (%)")
    ax.set_title("Fashion-MNIST backbone -> digits folder, same steps")
    ax.legend()
    fig.tight_layout()
    path = OUT / "transfer.png"
    fig.savefig(path.with_suffix(".tmp.png"), dpi=120)
    path.with_suffix(".tmp.png").replace(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/edgeopt_transfer"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--source-images", type=int, default=30000)
    p.add_argument("--source-epochs", type=int, default=3)
    p.add_argument("--head-epochs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--few", type=int, default=20, help="images per class in the small-folder regime")
    p.add_argument("--rewrite", action="store_true", help="rewrite the report files from transfer.json (no training)")
    args = p.parse_args()
    if args.rewrite:
        saved = json.loads((OUT / "transfer.json").read_text())
        write_report(saved["runs"], saved["summary"], saved["meta"])
        return
    start = time.perf_counter()
    folder = write_digits_folder(args.work / "digits")
    backbone_path = args.work / f"fmnist_mobilenet_v2_0.35_{args.size}.keras"
    source_backbone(backbone_path, args)
    rows = []
    regimes = {"all images": None, f"{args.few} per class": args.few * 10}
    total = len(regimes) * args.seeds * 2
    for regime, limit in regimes.items():
        for seed in range(args.seeds):
            splits = load_dataset(f"folder:{folder}", image_size=args.size, channels=3, batch_size=args.batch_size, seed=seed, limit_train=limit)
            for kind in ("transfer", "scratch"):
                row = {"regime": regime, **run_one(kind, seed, splits, backbone_path, args)}
                rows.append(row)
                done, elapsed = len(rows), time.perf_counter() - start
                print(f"[transfer] {done}/{total} {regime} seed {seed} {kind}: top-1 {row['test_top1']:.4f} "
                      f"({row['train_seconds']:.0f} s; about {elapsed / done * (total - done) / 60:.1f} min left)", flush=True)
    summary = summarize(rows)
    meta = {"machine": machine_line(), "command": "python benchmarks/transfer.py", "seeds": args.seeds, "size": args.size,
            "head_epochs": args.head_epochs, "epochs": args.epochs, "learning_rate": args.learning_rate, "edgeopt": edgeopt.__version__,
            "source": json.loads(backbone_path.with_suffix(".json").read_text()), "wall_minutes": (time.perf_counter() - start) / 60}
    write_report(rows, summary, meta)
    for s in summary:
        print(f"[transfer] {s['regime']}: transfer {s['transfer_mean']:.4f} ± {s['transfer_std']:.4f}, scratch {s['scratch_mean']:.4f} ± "
              f"{s['scratch_std']:.4f}, gain {s['gain']:+.4f} (noise ±{s['noise']:.4f}): {s['verdict']}")


if __name__ == "__main__":
    main()
