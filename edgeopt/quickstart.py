"""The quickstart job: build a zoo model, train it briefly on real data, report accuracy and cost."""
from __future__ import annotations

import json
import os
from pathlib import Path

from edgeopt import data, models
from edgeopt.profile import profile
from edgeopt.train import TrainConfig, evaluate, fit


def _dataset_name() -> str:
    try:
        data.load_raw("fashion_mnist")
        return "fashion_mnist"
    except data.DatasetUnavailableError as err:
        print(f"[quickstart] {err}\n[quickstart] falling back to scikit-learn's digits")
        return "digits"


def run_quickstart(out_dir: str = "runs/quickstart", epochs: int = 2, limit_train: int | None = None) -> dict:
    """Train MobileNetV2 0.35 (32x32, stride-1 stem) and write ``report.json`` into ``out_dir``."""
    name = _dataset_name()
    print(f"[quickstart] 1/3 loading {name} at 32x32x3")
    splits = data.load_dataset(name, image_size=32, channels=3, batch_size=128, limit_train=limit_train)
    model = models.create("mobilenet_v2", input_shape=splits.preprocessing.input_shape, classes=len(splits.preprocessing.class_names), alpha=0.35)
    cost = profile(model)
    print(f"[quickstart] 2/3 training {model.name} alpha=0.35 ({cost.params:,} parameters, {cost.macs / 1e6:.1f} M multiply-adds) for {epochs} epochs on {splits.sizes['train']:,} images")
    trained = fit(model, splits, TrainConfig(epochs=epochs))
    print("[quickstart] 3/3 evaluating on the test split")
    test = evaluate(model, splits.test)
    report = {
        "dataset": name,
        "model": "mobilenet_v2",
        "knobs": {"alpha": 0.35},
        "input_shape": list(splits.preprocessing.input_shape),
        "params": cost.params,
        "macs": cost.macs,
        "epochs": epochs,
        "train_seconds": round(trained.seconds, 1),
        "test_top1": round(test["top1"], 4),
        "test_top5": round(test["top5"], 4),
        "test_samples": test["samples"],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out / "report.json")
    print("\n| model | dataset | params | MACs (M) | epochs | train s | test top-1 |\n|---|---|---:|---:|---:|---:|---:|")
    print(f"| mobilenet_v2 0.35 32x32 | {name} | {cost.params:,} | {cost.macs / 1e6:.1f} | {epochs} | {trained.seconds:.0f} | {100 * test['top1']:.2f}% |")
    print(f"\n[quickstart] wrote {out / 'report.json'} and {out / 'model.keras'}")
    return report
