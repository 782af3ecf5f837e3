"""Do the shipped .tflite files load in Android's standard API, and does the app see edgeopt's accuracy?

For every artifact under tflite_models/ (int8 models and float32 baselines) it takes the file as committed
before edgeopt wrote standard metadata (git revision ORIGINALS_REV), tries it in MediaPipe Tasks'
ImageClassifier (the C++ task of com.google.mediapipe:tasks-vision; pip mediapipe), makes it Android-ready
with ``edgeopt.export.make_android_ready`` (int8 files get uint8 input/output by an exact re-quantization;
all get TFLite Metadata with the labels packed inside), writes it back in place, and then measures on the
full Fashion-MNIST test set (10,000 images):
  - top-1 through MediaPipe's ImageClassifier (its own resizing of the stored 28x28 images, its own
    normalization from the metadata, category names from the packed labels);
  - top-1 of ``edgeopt bench`` (``edgeopt.bench.evaluate_tflite``: edgeopt's resizing, LiteRT interpreter);
  - the difference (target: within 0.5 point; both read the same 10,000 images, so the test-sampling
    interval does not apply to the difference, which is paired) and how often the two top-1 agree;
  - for int8 files: the uint8 file's outputs against the original int8 file's (identical = the same
    agreement with Keras that the int8 file was verified with), and both files' latency in one interleaved
    run on this machine.

    PYTHONPATH=. .venv/bin/python benchmarks/android_ready.py            # all artifacts, writes them back
    PYTHONPATH=. .venv/bin/python benchmarks/android_ready.py --limit 500 --no-write   # a quick look
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks._common import interleaved_latency, machine_line, md_table, median_ms, write_csv, write_file
from edgeopt import bench, export
from edgeopt.data import raw_test_split
from edgeopt.tflite import runtime

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORIGINALS_REV = "f84dbfc"  # the last commit whose artifacts had int8 I/O and no standard metadata
TARGET_POINTS = 0.5
DATASET = "fashion_mnist"


def original_bytes(path: Path) -> bytes:
    return subprocess.run(["git", "show", f"{ORIGINALS_REV}:{path.relative_to(ROOT)}"], cwd=ROOT, check=True, capture_output=True).stdout


def mediapipe_error(data: bytes) -> str:
    try:
        with bench.mediapipe_classifier(data):
            return ""
    except ValueError as err:
        return str(err).split(": ", 1)[-1].split(" (missing:")[0]


def litert_predictions(data: bytes, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    test, _ = bench.load_test_data(data, DATASET, limit=limit)
    interp = runtime.make_interpreter(data)
    interp.allocate_tensors()
    preds, labels = [], []
    for x, y in test:
        preds.append(runtime.predict(interp, x.numpy()).argmax(-1))
        labels.append(y.numpy())
    return np.concatenate(preds), np.concatenate(labels)


def mediapipe_predictions(data: bytes, limit: int | None, labels: list[str]) -> tuple[np.ndarray, bool]:
    images, _, _ = raw_test_split(DATASET, limit)
    with bench.mediapipe_classifier(data, max_results=1) as classifier:
        top = bench.classify(classifier, images)
    names_ok = all(t[0][1] == labels[t[0][0]] for t in top)
    return np.array([t[0][0] for t in top]), names_ok


def files_to_check() -> list[Path]:
    found = sorted(ROOT.glob("tflite_models/**/*.tflite"))
    tracked = subprocess.run(["git", "ls-tree", "-r", "--name-only", ORIGINALS_REV, "tflite_models"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    return [p for p in found if str(p.relative_to(ROOT)) in tracked]


def report_top1(file: str) -> tuple[float, int] | None:
    """The top-1 the run's report.json recorded for a shipped file (edgeopt's resizing before it matched
    MediaPipe's: tf.image.resize with half-pixel centers), or None (search trials have no report)."""
    folder, stem = (ROOT / "tflite_models" / file).parent, Path(file).stem
    report = folder / "report.json"
    if not report.is_file():
        return None
    bench_stage = [st for st in json.loads(report.read_text())["stages"] if st["type"] == "bench"]
    entry = bench_stage[-1]["metrics"].get(stem, {}) if bench_stage else {}
    accuracy = entry.get("accuracy") or {}
    return (accuracy["top1"], accuracy["samples"]) if "top1" in accuracy else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds per int8/uint8 pair")
    parser.add_argument("--no-write", action="store_true", help="measure only; leave tflite_models/ as it is")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the tables from benchmarks/android_ready.json")
    parser.add_argument("--rewrite", action="store_true", help="re-export the artifacts from the originals (no measuring), then the tables")
    args = parser.parse_args()
    if args.rewrite:  # the files again from the originals (same graph and outputs; manifest fields added since)
        saved = json.loads((HERE / "android_ready.json").read_text())
        for row in saved["rows"]:
            path = ROOT / "tflite_models" / row["file"]
            row["size_after"] = len(export.make_android_ready(original_bytes(path), path=path, overwrite=True).model_bytes)
        write_file(HERE / "android_ready.json", json.dumps(saved, indent=1) + "\n")
        args.from_json = True
    if args.from_json:
        saved = json.loads((HERE / "android_ready.json").read_text())
        args.rounds = saved.get("rounds", args.rounds)
        write(saved["rows"], args, saved["machine"], saved["written"])
        return

    rows, started = [], time.time()
    files = files_to_check()
    for n, path in enumerate(files, 1):
        name = str(path.relative_to(ROOT / "tflite_models"))
        original = original_bytes(path)
        before = mediapipe_error(original)
        art = export.make_android_ready(original, path=None if args.no_write else path, overwrite=True)
        new = art.model_bytes
        after = mediapipe_error(new)
        mp_pred, names_ok = mediapipe_predictions(new, args.limit, art.manifest["labels"])
        lt_pred, y = litert_predictions(new, args.limit)
        bench_top1 = bench.evaluate_tflite(new, bench.load_test_data(new, DATASET, limit=args.limit)[0]).top1
        orig_pred, _ = litert_predictions(original, args.limit)
        row = {
            "file": name, "mode": art.manifest["mode"], "io_before": export.read_manifest(original)["input"]["dtype"],
            "io_after": art.manifest["io"], "size_before": len(original), "size_after": len(new),
            "mediapipe_before": before or "loads", "mediapipe_after": after or "loads", "names_from_labels": names_ok,
            "test_images": len(y), "mediapipe_top1": float(np.mean(mp_pred == y)), "bench_top1": bench_top1,
            "original_top1": float(np.mean(orig_pred == y)), "top1_agreement_mediapipe_litert": float(np.mean(mp_pred == lt_pred)),
            "same_predictions_as_original": bool(np.array_equal(orig_pred, lt_pred)),
        }
        row["diff_points"] = (row["mediapipe_top1"] - row["bench_top1"]) * 100
        row["verdict"] = "met" if abs(row["diff_points"]) <= TARGET_POINTS and not after else "missed"
        if art.manifest["mode"] == "int8":
            lat = interleaved_latency({"int8": original, "uint8": new}, args.rounds, alternate=True, threads=1, runs=200, min_seconds=0.5)
            row["int8_ms"], row["uint8_ms"] = median_ms(lat["int8"]), median_ms(lat["uint8"])
        rows.append(row)
        elapsed = time.time() - started
        print(f"[{n}/{len(files)}] {name}: MediaPipe {row['mediapipe_top1']:.2%} vs bench {row['bench_top1']:.2%} "
              f"({row['diff_points']:+.2f}) {row['verdict']}; ~{elapsed / n * (len(files) - n):.0f}s left", flush=True)
    write(rows, args, machine_line(), datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def write(rows: list[dict], args, machine: str, stamp: str) -> None:
    for row in rows:
        row["report_top1"] = report_top1(row["file"])
    fields = ["file", "mode", "io_before", "io_after", "size_before", "size_after", "mediapipe_before", "mediapipe_after", "names_from_labels",
              "test_images", "mediapipe_top1", "bench_top1", "diff_points", "verdict", "top1_agreement_mediapipe_litert", "original_top1",
              "same_predictions_as_original", "report_top1", "int8_ms", "uint8_ms"]
    write_csv(HERE / "android_ready.csv", rows, fields, float_format="{:.6g}")
    write_file(HERE / "android_ready.json", json.dumps({"machine": machine, "written": stamp, "originals_rev": ORIGINALS_REV, "rounds": args.rounds, "rows": rows}, indent=1) + "\n")
    met = sum(r["verdict"] == "met" for r in rows)
    loaded_before = sum(r["mediapipe_before"] == "loads" for r in rows)
    worst = max(rows, key=lambda r: abs(r["diff_points"]))
    int8 = [r for r in rows if "int8_ms" in r]
    lines = [
        "# Android-ready artifacts: MediaPipe's ImageClassifier against edgeopt bench", "",
        f"Written by `benchmarks/android_ready.py` on {stamp}. Machine: {machine}.", "",
        f"- Before: {loaded_before} of {len(rows)} shipped files loaded in MediaPipe's ImageClassifier (originals: git {ORIGINALS_REV}).",
        f"- After `edgeopt.export.make_android_ready`: {sum(r['mediapipe_after'] == 'loads' for r in rows)} of {len(rows)} load; "
        f"{sum(r['names_from_labels'] for r in rows)} of {len(rows)} return category names that match the packed labels.",
        f"- Top-1 through MediaPipe vs `edgeopt bench` on the same {rows[0]['test_images']:,} test images: {met} of {len(rows)} within "
        f"{TARGET_POINTS} point (met); largest gap {worst['diff_points']:+.2f} points ({worst['file']}). Both resize the stored 28x28 "
        "images the same way (edgeopt.data.resize_like_mediapipe); what is left is MediaPipe rounding the resized pixels to bytes.",
        f"- int8 files: uint8 I/O gives the same top-1 prediction as the int8 file on {sum(r['same_predictions_as_original'] for r in int8)} of "
        f"{len(int8)} files on every test image (the int8 graph is unchanged; the QUANTIZE ops at the ends re-quantize exactly), so their "
        "agreement with Keras is the int8 file's.",
    ]
    same = [r for r in rows if r["report_top1"] is not None and r["report_top1"][1] == r["test_images"]]
    shifts = [(r["bench_top1"] - r["report_top1"][0]) * 100 for r in same]
    if shifts:
        lines.append(f"- Resizing: edgeopt now resizes as MediaPipe does (bilinear, no half-pixel centers). These files were trained "
                     "with tf.image.resize's half-pixel bilinear, so the accuracy an app gets differs from what their run reports "
                     f"recorded (column 'report top-1', same {same[0]['test_images']:,} images: {len(same)} files) by {min(shifts):+.2f} to "
                     f"{max(shifts):+.2f} points; retrained with the new resizing, training and the app see the same pixels.")
    if int8:
        ratio = [r["uint8_ms"] / r["int8_ms"] for r in int8]
        lines.append(f"- Latency, one interleaved run ({args.rounds} rounds alternating order, 1 thread, XNNPACK, medians of per-round medians): "
                     f"uint8 / int8 ratio {min(ratio):.3f} to {max(ratio):.3f} (mean {np.mean(ratio):.3f}; {sum(x <= 1.0 for x in ratio)} of "
                     f"{len(ratio)} files at or below 1, the largest {(max(ratio) - 1) * 100:+.1f}%): the two extra QUANTIZE ops (input image, 10 outputs) "
                     "cost no latency beyond this shared machine's noise.")
    lines += ["", *md_table(
        ["file", "mode", "I/O before -> after", "MediaPipe before", "MediaPipe top-1", "bench top-1", "gap (points)", "verdict",
         "top-1 agreement", "report top-1", "int8 ms", "uint8 ms", "size before -> after"],
        [[r["file"], r["mode"], f"{r['io_before']} -> {r['io_after']}", r["mediapipe_before"][:60], f"{r['mediapipe_top1']:.2%}", f"{r['bench_top1']:.2%}",
          f"{r['diff_points']:+.2f}", r["verdict"], f"{r['top1_agreement_mediapipe_litert']:.2%}",
          f"{r['report_top1'][0]:.2%} ({r['report_top1'][1]:,})" if r["report_top1"] is not None else "-", f"{r['int8_ms']:.3f}" if "int8_ms" in r else "-", f"{r['uint8_ms']:.3f}" if "uint8_ms" in r else "-",
          f"{r['size_before']:,} -> {r['size_after']:,}"] for r in rows],
        "llllrrrlrrrrl")]
    write_file(HERE / "android_ready.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
