"""Renders benchmarks/lowbit.md, lowbit.csv, lowbit.png and lowbit_findings.md from the committed per-model data
(``lowbit_<model>.json``, written by benchmarks/lowbit.py); imports no TensorFlow (matplotlib only for the plot)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks._common import md_table, mean_std, plural, pm, seed_stats, signed_pm, wrap, write_csv, write_file

FINDINGS = "lowbit_findings.md"
PREFIX = "lowbit_"  # lowbit_<model>.json: one model's raw per-seed results
INT4_SUFFIX = " INT4"  # a low-bit run's second file: its stripped model exported with INT4 kernels (to_tflite mode int4)


def int4_variant(variant: str) -> str:
    """The row of ``variant``'s INT4 file ("4-bit QAT" -> "4-bit QAT INT4")."""
    return variant + INT4_SUFFIX


LOWBIT = {"4-bit QAT": 4, "2-bit QAT": 2, "binary": 1}  # rows whose kernels sit on a b-bit grid (first and last layers at 8)
VARIANTS = ("float32", "float16", "int8 PTQ", "int8 QAT", *(v for low in ("mixed 8/4", *LOWBIT) for v in (low, int4_variant(low))))
CODE_LIMIT = {"1": 2, "2": 3, "4": 15}  # most int8 codes an output channel may hold in the file at each width
BUDGET, MIXED_POINTS, MIN_AGREEMENT = 0.6, 1.0, 0.98  # the issue's targets: 60% of int8's packed size, within 1 point of int8
# numbers in the findings that are not results: the targets above, the model widths and input size
FINDINGS_CONSTANTS = frozenset({"60", "0.6", "15", "98", "0.98", "95", "0.35", "0.25", "28", "127", "255"})


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob(f"{PREFIX}*.json"))


def findings_data(folder: Path) -> dict:
    """``{"models": {name: data}}`` from every lowbit_<model>.json in ``folder`` (MobileNetV2 first)."""
    models = {}
    for path in sorted(_model_files(folder), key=lambda p: ("v2" not in p.stem, p.stem)):
        data = json.loads(path.read_text())
        models[data["model"]] = data
    return {"models": models}


def _title(name: str) -> str:
    parts = name.split("_")
    return f"MobileNet{parts[1].upper()} {parts[2]}" if len(parts) == 3 and parts[0] == "mobilenet" else name


def summary(data: dict) -> list[dict]:
    """One dict per variant (float32 first, then :data:`VARIANTS` order) of one model: seeds (0: one deterministic
    run), test top-1 mean and std over seeds, its test-sampling interval, the difference to float32 and the noise on it,
    sizes (the .tflite's raw and gzipped bytes, the packed bytes, all means over seeds), mean bits per kernel weight,
    the least verified agreement, the most int8 codes per output channel found in the file at each width (worst seed)
    and the latency of the first seed's file (ms)."""
    images = data["test_images"]
    by: dict[str, list[dict]] = {}
    for r in data["runs"]:
        by.setdefault(r["variant"], []).append(r)
    reference = [r["top1"] for r in by["float32"]]
    int8_packed = data["int8_packed_bytes"]
    rows = []
    for name in [v for v in VARIANTS if v in by]:
        runs = by[name]
        st = seed_stats([r["top1"] for r in runs], reference, images)
        codes = {}
        for r in runs:
            for width, count in (r.get("codes_per_channel") or {}).items():
                codes[width] = max(codes.get(width, 0), count)
        packed = round(mean_std([r["packed_bytes"] for r in runs])[0])
        rows.append({"variant": name, "seeds": len([r for r in runs if r["seed"] is not None]), "top1": st["mean"], "top1_std": st["std"],
                     "interval": st["interval"], "diff": st["diff_mean"], "diff_std": st["diff_std"], "noise": st["noise"] if name != "float32" else 0.0,
                     "size_bytes": round(mean_std([r["size_bytes"] for r in runs])[0]), "gzip_bytes": round(mean_std([r["gzip_bytes"] for r in runs])[0]),
                     "packed_bytes": packed, "packed_vs_int8": packed / int8_packed, "weight_bits": runs[0]["weight_bits"],
                     "agreement": min(r["agreement"] for r in runs) if all(r.get("agreement") is not None for r in runs) else None,
                     "codes_per_channel": dict(sorted(codes.items(), key=lambda kv: -int(kv[0]))), "median_ms": data["latency_ms"].get(name)})
    return rows


def _mixed_vs_int8(data: dict) -> dict:
    """seed_stats of mixed 8/4 against int8 QAT, paired by seed, with the target of :data:`MIXED_POINTS`."""
    top1 = {v: [r["top1"] for r in sorted((r for r in data["runs"] if r["variant"] == v), key=lambda r: r["seed"])] for v in ("mixed 8/4", "int8 QAT")}
    return seed_stats(top1["mixed 8/4"], top1["int8 QAT"], data["test_images"], at_least=-MIXED_POINTS / 100)


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _codes(row: dict) -> str:
    return ", ".join(f"{c} at {w} bit{'' if w == '1' else 's'}" for w, c in row["codes_per_channel"].items()) or "-"


def _depthwise(settings: dict) -> str:
    """" (binary: depthwise kernels at 8 bits)" for the low-bit rows whose settings set depthwise_bits."""
    own = [f"{v}: depthwise kernels at {c['depthwise_bits']} bits" for v, c in settings["lowbit"].items() if c.get("depthwise_bits")]
    return f" ({'; '.join(own)})" if own else ""


def _rates(settings: dict) -> str:
    """"0.0002 (int8 QAT, mixed 8/4, 4-bit QAT), 0.0005 (2-bit QAT)": each peak learning rate and its rows."""
    by: dict[float, list[str]] = {}
    for variant, rate in settings["rates"].items():
        by.setdefault(rate, []).append(variant)
    return ", ".join(f"{rate:g} ({', '.join(variants)})" for rate, variants in by.items())


def _header(data: dict) -> list[str]:
    s, b = data["settings"], data["baseline"]
    return wrap(f"Baseline: `{b['file']}` ({_title(data['model'])} at 28x28x3; Keras test top-1 {100 * b['keras_top1']:.2f}%, validation "
                f"{100 * b['val_top1']:.2f}%; {b['kernel_weights']:,} kernel weights). Seeded rows run once per seed "
                f"({plural(len(data['seeds']), 'seed')}: the {s['calibration']} calibration images, the data order, TF-MOT's randomness); "
                f"float32 and float16 need neither. QAT fine-tunes: {s['steps']:,} steps of batch 128 "
                f"(2-bit x{s['factors']['2-bit QAT']}, binary x{s['factors']['binary']}) at peak rates {_rates(s)} with a cosine decay, label smoothing "
                f"0.1, validated {s['checks']} times, the best validation check kept; activation ranges calibrated on the calibration images "
                f"first. Low-bit rows keep the first convolution and the classifier at 8 bits{_depthwise(s)}; their "
                f"stripped model is exported to int8{_int4_header(data)}. Mixed 8/4: bits per layer chosen under the budget from the validation loss increase "
                f"of each layer alone at 4 bits ({s['sensitivity_samples']} validation images). Every file is exported by "
                "`edgeopt.export.to_tflite` (standard metadata included) and verified against its Keras model; its test top-1 is "
                f"read once on the {data['test_images']:,} test images. Packed bytes: `edgeopt.compress.lowbit.packed_size_bytes` (kernels at "
                "their bit-width, a float scale and an int32 bias per channel, other parameters float; float rows: 4 or 2 bytes a "
                "parameter). Codes per channel: the most distinct int8 values an output channel of a kernel holds in the "
                f".tflite, per bit-width (INT4 rows: the low-bit kernels' values as stored, INT4 or int8). Latency: the first seed's files, 1 thread, interleaved, median of the rounds' medians. Raw results: "
                f"`{PREFIX}{data['model']}.json`. Command: `PYTHONPATH=. python {data['cmd']}`.")


def _int4_header(data: dict) -> str:
    """", and again with INT4 kernels (...)" when the runs of ``data`` wrote INT4 files."""
    if not any(r["variant"].endswith(INT4_SUFFIX) for r in data["runs"]):
        return ""
    return (" and again with INT4 kernels (rows named INT4: `to_tflite(mode='int4', lowbit_bits=...)`, ai-edge-quantizer, the same "
            "calibration images)")


def _table(rows: list[dict]) -> list[str]:
    return md_table(["variant", "bits/weight", "seeds", "top-1 %", "± 95% test sampling", "vs float32 (points)", "noise ±", ".tflite bytes",
                     "gzip bytes", "packed bytes", "packed vs int8", "codes per channel", "verified agreement", "median ms"],
                    ([r["variant"], f"{r['weight_bits']:.2f}", r["seeds"] or "one run", pm(r["top1"], r["top1_std"]), f"{100 * r['interval']:.2f}",
                      signed_pm(r["diff"], r["diff_std"]) if r["variant"] != "float32" else "-",
                      f"{100 * r['noise']:.2f}" if r["variant"] != "float32" else "-", f"{r['size_bytes']:,}", f"{r['gzip_bytes']:,}",
                      f"{r['packed_bytes']:,}", f"{r['packed_vs_int8']:.3f}", _codes(r),
                      f"{100 * r['agreement']:.1f}%" if r["agreement"] is not None else "-",
                      f"{r['median_ms']:.3f}" if r["median_ms"] is not None else "-"] for r in rows), "lrrrrrrrrrrlrr")


def _plan_lines(data: dict) -> list[str]:
    plan = data["plan"]
    chosen = {n: b for n, b in plan["layer_bits"].items() if n not in plan["fixed"]}
    at4 = sorted(n for n, b in chosen.items() if b == 4)
    at4_cost = {n: plan["sensitivities"][n]["4"] for n in chosen}
    kept = sorted((n for n, b in chosen.items() if b == 8), key=lambda n: -at4_cost[n])
    named = ", ".join(f"`{n}` +{at4_cost[n]:.4f} nats" for n in kept[:3])
    share = plan["size_bytes"] / plan["int8_size_bytes"]
    return wrap(f"The plan: {len(at4)} chosen layers at 4 bits, {len(kept)} kept at 8"
                + (f" (the most sensitive at 4 bits: {named})" if kept else "")
                + f"; packed {plan['size_bytes']:,} B against a budget of {plan['budget_bytes']:,} B ({share:.3f} of int8's "
                f"{plan['int8_size_bytes']:,} B); summed loss increase of the chosen widths, measured one layer at a time, "
                f"{plan['sensitivity']:.4f} nats.")


def _model_findings(name: str, data: dict) -> list[str]:
    rows = {r["variant"]: r for r in summary(data)}
    f32, int8 = rows["float32"], rows.get("int8 PTQ")
    mixed, vs = rows.get("mixed 8/4"), _mixed_vs_int8(data) if "mixed 8/4" in rows and "int8 QAT" in rows else None
    table = []
    if mixed is not None:
        table.append((f"mixed 8/4 packed at most {100 * BUDGET:g}% of int8's", f"{mixed['packed_vs_int8']:.3f}x ({mixed['packed_bytes']:,} B)",
                      _met(mixed["packed_vs_int8"] <= BUDGET)))
    if vs is not None:
        table.append((f"mixed 8/4 within {MIXED_POINTS:g} point of int8 QAT",
                      f"{signed_pm(vs['diff_mean'], vs['diff_std'])} points over {plural(vs['n'], 'seed')} (paired), noise ±{100 * vs['noise']:.2f}",
                      vs["verdict"]))
    for variant, bits in LOWBIT.items():
        for row, stored in ((variant, "int8 codes"), (int4_variant(variant), "values (INT4 or int8 kernels)")):
            if row in rows:
                found = rows[row]["codes_per_channel"].get(str(bits))
                table.append((f"{row}: at most {CODE_LIMIT[str(bits)]} {stored} per channel in the file",
                              f"{found} (worst layer, worst seed)" if found is not None else "no such kernel found",
                              _met(found is not None and found <= CODE_LIMIT[str(bits)])))
    agreements = [r["agreement"] for r in rows.values() if r["agreement"] is not None]
    worst = min(rows.values(), key=lambda r: r["agreement"] if r["agreement"] is not None else 2)
    table.append((f"every file agrees with its Keras model on at least {100 * MIN_AGREEMENT:g}% of the verification images",
                  f"least {100 * worst['agreement']:.1f}% ({worst['variant']})" if agreements else "not verified",
                  _met(bool(agreements) and min(agreements) >= MIN_AGREEMENT and len(agreements) == len(rows))))
    lines = [f"### {_title(name)} ({plural(len(data['seeds']), 'seed')})", "", *md_table(["target", "result", "verdict"], table), ""]
    if "plan" in data and mixed is not None:
        lines += [*_plan_lines(data), ""]
    low = [rows[v] for v in ("4-bit QAT", "2-bit QAT", "binary") if v in rows]
    if low:
        lines += wrap("Accuracy against bits per weight: " + "; ".join(
            f"{r['variant']} {r['weight_bits']:.2f} bits/weight, {signed_pm(r['diff'], r['diff_std'])} points against float32 "
            f"(packed {r['packed_vs_int8']:.3f}x int8's)" for r in low) + f". Float32 reads {100 * f32['top1']:.2f}% "
            f"(±{100 * f32['interval']:.2f} points test sampling at 95%).") + [""]
    if int8 is not None and low:
        same = [r for r in low if r["size_bytes"] == int8["size_bytes"]]
        sizes = ", ".join(f"{r['size_bytes']:,}" for r in low)
        timed = ", ".join(f"{r['median_ms']:.3f}" for r in low if r["median_ms"] is not None)
        lines += wrap("What runs and what is only stored: the int8 file of a low-bit run is a standard int8 .tflite; LiteRT executes "
                      f"int8 kernels, so the file is as large as int8 PTQ's ({sizes} against {int8['size_bytes']:,} B; {len(same)} of "
                      f"{len(low)} byte for byte) and as fast"
                      + (f" ({timed} against {int8['median_ms']:.3f} ms)" if timed and int8["median_ms"] is not None else "")
                      + ". The 4-, 2- and 1-bit grids survive as int8 codes (2-bit and binary exactly on 0 and ±127; 4-bit on "
                      "round(127 k / 7)), so the packed column is what storing them at their width would take.") + [""]
    lines += _int4_lines(data, rows, int8)
    return lines


def _int4_lines(data: dict, rows: dict, int8: dict | None) -> list[str]:
    """What the INT4 files of the low-bit runs weigh, score (paired with the same run's int8 file) and cost against
    int8 PTQ's file, or that this model's runs made none."""
    runs = {(r["variant"], r["seed"]): r["top1"] for r in data["runs"]}
    parts = []
    for plain in ("mixed 8/4", *LOWBIT):
        four = rows.get(int4_variant(plain))
        if four is None or plain not in rows:
            continue
        seeds = [s for v, s in runs if v == four["variant"]]
        gap = mean_std([runs[(four["variant"], s)] - runs[(plain, s)] for s in seeds])
        ms = (f", {four['median_ms']:.3f} ms against {rows[plain]['median_ms']:.3f} ({four['median_ms'] / rows[plain]['median_ms']:.2f}x)"
              if four["median_ms"] is not None and rows[plain]["median_ms"] is not None else "")
        parts.append(f"{plain}: {four['size_bytes']:,} B ({four['size_bytes'] / rows[plain]['size_bytes']:.3f}x its int8 file), top-1 "
                     f"{signed_pm(*gap)} points against the int8 file of the same {plural(len(seeds), 'run')}{ms}")
    if not parts:
        return wrap("INT4 files: this model's runs were made before the benchmark exported them; "
                    "`edgeopt.export.to_tflite(model, 'int4', ..., lowbit_bits=...)` writes them.") + [""]
    ratios = [rows[int4_variant(v)]["median_ms"] / rows[v]["median_ms"] for v in ("mixed 8/4", *LOWBIT)
              if int4_variant(v) in rows and v in rows and rows[v]["median_ms"] and rows[int4_variant(v)]["median_ms"]]
    if ratios:
        parts.append(f"on this CPU the INT4 files run {min(ratios):.2f}-{max(ratios):.2f}x the time of their int8 files, so they "
                     + ("trade latency for size: XNNPACK leaves INT4 CONV_2D to TFLite's built-in kernel (edgeopt.tflite.int4)"
                        if min(ratios) > 1 else "cost no latency here"))
    ref = ""
    if int8 is not None:
        ref = f" (int8 PTQ: {int8['size_bytes']:,} B" + (f", {int8['median_ms']:.3f} ms)" if int8["median_ms"] is not None else ")")
    return wrap("INT4 files (the same stripped models exported by `to_tflite(mode='int4', lowbit_bits=...)`: ai-edge-quantizer writes "
                "the low-bit CONV_2D and FULLY_CONNECTED kernels as INT4, two to a byte; depthwise kernels and the 8-bit layers stay "
                f"int8; LiteRT reads the INT4 kernels as stored){ref}: " + "; ".join(parts) + ".") + [""]


def findings_markdown(data: dict) -> str:
    """lowbit_findings.md: per model, the targets with verdicts, the mixed-precision plan, accuracy against bits and
    what the runtime executes; every number from ``data``."""
    lines = ["## Findings", ""]
    for name, model in data["models"].items():
        lines += _model_findings(name, model)
    return "\n".join(lines).rstrip() + "\n"


def report_markdown(data: dict) -> str:
    """lowbit.md: per model the header and the summary table, then every run, then the findings."""
    lines = ["# Low-bit weights: 8, mixed 8/4, 4, 2 and 1 bit on Fashion-MNIST", ""]
    for name, model in data["models"].items():
        lines += [f"## {_title(name)}", "", f"Machine: {model['machine']}.", "", *_header(model), "", *_table(summary(model)), "",
                  "Every run (test top-1 read once per file):", "",
                  *md_table(["variant", "seed", "kept step / steps", "validation top-1 %", "test top-1 %", "packed bytes", "codes per channel"],
                            ([r["variant"], "-" if r["seed"] is None else r["seed"],
                              f"{r['selected_step']:,} / {r['steps']:,}" if r.get("steps") else "-",
                              f"{100 * r['val_top1']:.2f}" if r.get("val_top1") is not None else "-", f"{100 * r['top1']:.2f}",
                              f"{r['packed_bytes']:,}", ", ".join(f"{c} at {w}" for w, c in (r.get("codes_per_channel") or {}).items()) or "-"]
                             for r in model["runs"]), "lrrrrrl"), ""]
    return "\n".join(lines) + "\n" + findings_markdown(data)


def plot(data: dict, path: Path) -> None:
    """lowbit.png: test top-1 (mean ± std over seeds) against mean bits per kernel weight, one line per model."""
    import matplotlib  # lazy: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, model in data["models"].items():
        everything = sorted(summary(model), key=lambda r: r["weight_bits"])
        rows = [r for r in everything if not r["variant"].endswith(INT4_SUFFIX)]
        four = [r for r in everything if r["variant"].endswith(INT4_SUFFIX)]
        line = ax.errorbar([r["weight_bits"] for r in rows], [100 * r["top1"] for r in rows], yerr=[100 * r["top1_std"] for r in rows],
                           marker="o", linestyle="none", capsize=3, label=f"{_title(name)} (int8 files)")
        if four:  # the INT4 files of the same runs, beside their int8 files
            ax.errorbar([r["weight_bits"] for r in four], [100 * r["top1"] for r in four], yerr=[100 * r["top1_std"] for r in four],
                        marker="x", linestyle="none", capsize=3, color=line[0].get_color(), label=f"{_title(name)} (INT4 files)")
        for i, r in enumerate(rows):  # rows at the same width (int8 PTQ and QAT) get their labels on alternate sides
            ax.annotate(r["variant"], (r["weight_bits"], 100 * r["top1"]), textcoords="offset points", xytext=(4, -11 if i % 2 else 5), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mean bits per kernel weight (log scale)")
    ax.set_ylabel("test top-1 of the .tflite (%)")
    ax.set_title("Fashion-MNIST: accuracy against weight bits")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(out: Path) -> None:
    """lowbit.md, lowbit.csv, lowbit.png and lowbit_findings.md from the lowbit_<model>.json files in ``out``."""
    data = findings_data(out)
    rows = [{"model": name, **{k: v for k, v in r.items() if k != "codes_per_channel"},
             "codes_per_channel": "; ".join(f"{w}:{c}" for w, c in r["codes_per_channel"].items())}
            for name, model in data["models"].items() for r in summary(model)]
    write_csv(out / "lowbit.csv", rows, list(rows[0]), "{:.6g}")
    write_file(out / FINDINGS, findings_markdown(data))
    write_file(out / "lowbit.md", report_markdown(data))
    plot(data, out / "lowbit.png")
