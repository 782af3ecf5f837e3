"""Tables (Markdown, CSV) and plots from run reports and benchmark results. Renders, never recomputes."""
from __future__ import annotations


def _bench_rows(report: dict) -> list[dict]:
    """One row per benchmarked .tflite of a run report: name, accuracy, sizes, latency per thread count."""
    bench = next((s for s in reversed(report["stages"]) if s["type"] == "bench"), None)
    export = next((s for s in reversed(report["stages"]) if s["type"] == "export"), None)
    rows = []
    for stem, m in (bench or {}).get("metrics", {}).items():
        row = {"artifact": stem, "mode": (export or {}).get("metrics", {}).get(stem, {}).get("mode", "?"),
               "top1": m.get("accuracy", {}).get("top1"), "size_bytes": m["size"]["size_bytes"], "gzip_bytes": m["size"]["gzip_bytes"]}
        for key, lat in m.items():
            if key.startswith("latency_"):
                row[f"median_ms_{key.split('_')[1]}"] = lat["median_ms"]
        rows.append(row)
    return rows


def run_summary_markdown(report: dict) -> str:
    """The table a run ends with: every stage's Keras metrics, then float vs int8 .tflite accuracy/size/latency."""
    lines = [f"### {report['recipe']}: {report['model']['name']} {report['model'].get('knobs', {})} on {report['data']['dataset']} "
             f"{'x'.join(map(str, report['data']['input_shape']))}", "",
             "| stage | type | seconds | Keras test top-1 | sparsity | parameters |", "|---|---|---:|---:|---:|---:|"]
    for s in report["stages"]:
        m = s["metrics"]
        top1 = f"{100 * m['test_top1']:.2f}%" if "test_top1" in m else ""
        sparsity = f"{100 * m['sparsity']:.1f}%" if "sparsity" in m else ""
        params = f"{m['params']:,}" if "params" in m else ""
        lines.append(f"| {s['stage']} | {s['type']} | {s['seconds']:.0f} | {top1} | {sparsity} | {params} |")
    rows = _bench_rows(report)
    if rows:
        threads = sorted({k for r in rows for k in r if k.startswith("median_ms_")})
        lines += ["", "| artifact | mode | .tflite top-1 | size (bytes) | gzipped (bytes) | " + " | ".join(f"median ms @{t.split('_')[-1]}" for t in threads) + " |",
                  "|---|---|---:|---:|---:|" + "---:|" * len(threads)]
        for r in rows:
            top1 = f"{100 * r['top1']:.2f}%" if r["top1"] is not None else "n/a"
            lines.append(f"| {r['artifact']} | {r['mode']} | {top1} | {r['size_bytes']:,} | {r['gzip_bytes']:,} | " + " | ".join(f"{r.get(t, float('nan')):.2f}" for t in threads) + " |")
    return "\n".join(lines)
