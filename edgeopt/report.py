"""Tables (Markdown, CSV) and plots from run reports and benchmark results. Renders, never recomputes;
the one exception is latency, which ``edgeopt report`` re-measures for every artifact in one interleaved run
(:func:`remeasure_latency`, timed by ``edgeopt.bench``) so that a table never mixes machines."""
from __future__ import annotations

import copy
import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from io import StringIO
from pathlib import Path

from edgeopt import io
from edgeopt.bench import BenchResult, interleave, measure_latency, pooled, this_machine
from edgeopt.pipeline.stage import last_model_metrics, latest, latest_baseline, stage_results
from edgeopt.stats import sampling_interval

write_atomic = partial(io.write_atomic, overwrite=True)  # tables are regenerated in place


def bench_rows(report: dict) -> list[dict]:
    """One row per benchmarked .tflite of a run report: name, mode, accuracy, sizes, median latency per thread
    count (``median_ms_<threads>``), read from the bench stage's :class:`BenchResult` records."""
    stages = stage_results(report)
    bench, export = latest(stages, "bench"), latest(stages, "export")
    rows = []
    for stem, entry in (bench.metrics if bench else {}).items():
        result = BenchResult.from_dict(entry, model=stem)
        row = {"artifact": stem, "mode": (export.metrics if export else {}).get(stem, {}).get("mode", "?"),
               "top1": result.accuracy.top1 if result.accuracy else None, "test_images": result.accuracy.samples if result.accuracy else None, "size_bytes": result.size.size_bytes, "gzip_bytes": result.size.gzip_bytes}
        for lat in result.latency:
            row[f"median_ms_{lat.threads}"] = lat.median_ms
            row.setdefault("machine", lat.device)
        rows.append(row)
    return rows


def thread_counts(rows: list[dict], always: Sequence[int] = ()) -> list[int]:
    """The thread counts of the rows' ``median_ms_<threads>`` keys (and ``always``), in numeric order (1, 2, 4, 16)."""
    return sorted({int(k[len("median_ms_"):]) for r in rows for k in r if k.startswith("median_ms_")} | set(always))


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
    rows = bench_rows(report)
    if rows:
        threads = [f"median_ms_{t}" for t in thread_counts(rows)]
        lines += ["", "| artifact | mode | .tflite top-1 | size (bytes) | gzipped (bytes) | " + " | ".join(f"median ms @{t.split('_')[-1]}" for t in threads) + " |",
                  "|---|---|---:|---:|---:|" + "---:|" * len(threads)]
        for r in rows:
            top1 = f"{100 * r['top1']:.2f}%" if r["top1"] is not None else "n/a"
            lines.append(f"| {r['artifact']} | {r['mode']} | {top1} | {r['size_bytes']:,} | {r['gzip_bytes']:,} | " + " | ".join(f"{r.get(t, float('nan')):.2f}" for t in threads) + " |")
    return "\n".join(lines)


# ---- RESULTS.md across runs ----------------------------------------------------------------------------

RESULT_COLUMNS = ("recipe", "artifact", "mode", "model", "seeds", "keras_top1", "tflite_top1", "tflite_top1_ci95", "test_images", "size_bytes", "gzip_bytes", "median_ms_1", "median_ms_2", "macs", "params",
                  "machine")
RESULT_THREADS = (1, 2)  # latency columns RESULTS always has; other thread counts a run measured get a column after them


def result_columns(rows: list[dict]) -> list[str]:
    """The CSV columns of ``rows``: :data:`RESULT_COLUMNS` with one ``median_ms_<threads>`` per thread count, in numeric order."""
    at = RESULT_COLUMNS.index("median_ms_1")
    fixed = [c for c in RESULT_COLUMNS if not c.startswith("median_ms_")]
    return fixed[:at] + [f"median_ms_{t}" for t in thread_counts(rows, RESULT_THREADS)] + fixed[at:]


def result_rows(report: dict) -> list[dict]:
    """Rows of RESULTS.md for one run report: one per benchmarked .tflite, with the model's Keras metrics and
    ``median_ms_<threads>`` for 1 and 2 threads (None when not measured) and any other thread count measured.
    ``seeds`` is 1: a recipe run trains once, with its recipe's seed; ``tflite_top1_ci95`` is the half-width of the
    95% test-sampling interval of the .tflite top-1 on its ``test_images`` (:func:`edgeopt.stats.sampling_interval`)."""
    stages = stage_results(report)
    last = last_model_metrics(stages)
    trained = latest_baseline(stages)  # the float baseline's Keras metrics: its last training stage, else the model file it started from
    base = trained.metrics if trained else report["model"].get("source", {}).get("metrics", {})
    knobs = ",".join(f"{k}={v}" for k, v in report["model"].get("knobs", {}).items())
    rows = []
    for r in bench_rows(report):
        keras_m = base if r["artifact"].startswith("baseline") else last
        rows.append({"recipe": report["recipe"], "artifact": r["artifact"], "mode": r["mode"],
                     "model": f"{report['model']['name']}({knobs}) {'x'.join(map(str, report['data']['input_shape']))}",
                     "seeds": 1, "keras_top1": keras_m.get("test_top1"), "tflite_top1": r["top1"],
                     "tflite_top1_ci95": sampling_interval(r["top1"], r["test_images"]) if r["top1"] is not None and r["test_images"] else None,
                     "test_images": r["test_images"], "size_bytes": r["size_bytes"], "gzip_bytes": r["gzip_bytes"],
                     **{f"median_ms_{t}": r.get(f"median_ms_{t}") for t in thread_counts([r], RESULT_THREADS)},
                     "macs": keras_m.get("macs"), "params": keras_m.get("params"), "machine": r.get("machine")})
    return rows


def pareto_front(points: list[list[float]], directions: list[str]) -> list[bool]:
    """True for each point that no other point dominates (at least as good in every objective, better in
    one); ``directions`` holds "minimize" or "maximize" per objective."""
    signs = [1 if d == "minimize" else -1 for d in directions]
    keyed = [[s * v for s, v in zip(signs, p)] for p in points]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [not any(dominates(other, p) for j, other in enumerate(keyed) if j != i) for i, p in enumerate(keyed)]


def pareto_mask(cost: list[float], value: list[float]) -> list[bool]:
    """True for points no other point beats: lower-or-equal cost and higher-or-equal value, one strictly."""
    return pareto_front([[c, v] for c, v in zip(cost, value)], ["minimize", "maximize"])


def _fmt(v, kind: str) -> str:
    if v is None:
        return "n/a"
    return {"pct": lambda: f"{100 * v:.2f}%", "int": lambda: f"{int(v):,}", "ms": lambda: f"{v:.2f}", "M": lambda: f"{v / 1e6:.1f}"}.get(kind, lambda: str(v))()


def _stored_latency_note(machines: list[str]) -> str:
    """The header sentence of a table whose latencies are the ones each run stored (``--no-remeasure``). A stored
    machine is a CPU model and core count only: its SIMD flags were not recorded, and two machines of one CPU
    model (one with AVX-512, one without) look alike, so no flags are claimed for it, not even this machine's."""
    how = "as each run stored it (`edgeopt report --no-remeasure`; SIMD flags not recorded)"
    if len(machines) == 1:
        return f"Latency measured on {machines[0]}, {how}"
    return (f"Latency {how}, measured on {len(machines)} different machines ({'; '.join(machines)}), named per row; "
            "compare latencies only between rows of one machine")


def results_markdown(rows: list[dict], run: LatencyRun | None = None) -> str:
    """RESULTS.md: one row per artifact. With ``run`` (what :func:`remeasure_latency` returns) the header says
    how every latency was re-measured, on this machine (CPU, cores, AVX2 / AVX-512 / VNNI / AMX). Without it the
    latencies are each run's own: the header names the machines and, when there are several, so does each row
    (their latencies don't compare)."""
    machines = list(dict.fromkeys(r.get("machine") or "unknown machine" for r in rows))
    several = run is None and len(machines) > 1
    where = run.describe() if run else _stored_latency_note(machines)
    threads = thread_counts(rows, RESULT_THREADS)
    lines = ["# edgeopt results", "", f"{where}. Built by `edgeopt report` from each run's report.json; "
             "accuracy is top-1 on the dataset's test split, of the Keras model and of the .tflite itself. Each row is one run of its "
             "recipe (seeds = 1: one training, the recipe's seed); ± is the 95% test-sampling interval of the .tflite top-1 on the "
             "test images it was measured on (1.96 sqrt(p(1-p)/n)): two rows closer than that differ within noise.", "",
             "| recipe | artifact | mode | model | seeds | Keras top-1 | .tflite top-1 | size (bytes) | gzipped (bytes) | "
             + "".join(f"median ms @{t} | " for t in threads) + "MACs (M) | parameters |" + (" machine |" if several else ""),
             "|---|---|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(threads) + "---:|---:|" + ("---|" if several else "")]
    for r in rows:
        top1 = _fmt(r["tflite_top1"], "pct") + (f" ± {100 * r['tflite_top1_ci95']:.2f}" if r.get("tflite_top1_ci95") is not None else "")
        lines.append(f"| {r['recipe']} | {r['artifact']} | {r['mode']} | {r['model']} | {r.get('seeds') or 1} | {_fmt(r['keras_top1'], 'pct')} | {top1} | "
                     f"{_fmt(r['size_bytes'], 'int')} | {_fmt(r['gzip_bytes'], 'int')} | " + "".join(f"{_fmt(r.get(f'median_ms_{t}'), 'ms')} | " for t in threads)
                     + f"{_fmt(r['macs'], 'M')} | {_fmt(r['params'], 'int')} |" + (f" {r.get('machine') or 'unknown machine'} |" if several else ""))
    lines += ["", "Pareto plots (optimal points ringed): `pareto_latency.png` (accuracy vs median latency at 1 thread), "
              "`pareto_size.png` (accuracy vs gzipped size)."]
    return "\n".join(lines) + "\n"


def pareto_plot(rows: list[dict], x_key: str, x_label: str, path, per_machine: bool = False) -> None:
    """Accuracy against ``x_key`` with the Pareto-optimal points ringed. ``per_machine`` (for latency) keeps
    each machine's points apart, with their own marker and front, since latencies of two machines don't compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list] = {}
    for r in rows:
        if r.get(x_key) is not None and r.get("tflite_top1") is not None:
            key = (r.get("machine") or "unknown machine") if per_machine else ""
            groups.setdefault(key, []).append((r[x_key], r["tflite_top1"], f"{r['recipe']}:{r['artifact']}"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (group, pts), marker in zip(groups.items(), "osD^v"):
        xs, ys, labels = zip(*pts)
        mask = pareto_mask(list(xs), list(ys))
        ax.scatter(xs, [100 * y for y in ys], marker=marker, label=group or None)
        front = sorted((x, y) for x, y, m in zip(xs, ys, mask) if m)
        ax.scatter([x for x, _ in front], [100 * y for _, y in front], s=160, facecolors="none", edgecolors="tab:red",
                   label="Pareto-optimal" if marker == "o" else None)
        ax.plot([x for x, _ in front], [100 * y for _, y in front], "--", c="tab:red", lw=1)
        for x, y, label in pts:
            ax.annotate(label, (x, 100 * y), fontsize=7, xytext=(4, 2), textcoords="offset points")
    if groups:
        ax.legend(fontsize=7)
    ax.set_xlabel(x_label)
    ax.set_ylabel(".tflite test top-1 (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine_description() -> str:
    """CPU model, cores, architecture and SIMD flags of this machine, for every committed table."""
    return this_machine().describe()


# ---- latency re-measured in one run --------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyRun:
    """How :func:`remeasure_latency` timed every artifact: one interleaved run on this machine."""

    machine: str  # this_machine().describe(): CPU, cores, SIMD flags, AVX2 / AVX-512 / VNNI / AMX present or absent
    files: int
    threads: tuple[int, ...]
    rounds: int
    runs: int
    min_seconds: float
    runtime: str
    missing: tuple[str, ...] = ()  # recipe:artifact whose file was not there (--skip-missing): no latency in the table

    def describe(self) -> str:
        """The header sentence of a table of these latencies."""
        skipped = (f"; not timed, their files are not in this checkout (no latency shown): {', '.join(self.missing)}"
                   if self.missing else "")
        return (f"Latency re-measured by `edgeopt report` in one run on {self.machine}: all {self.files} .tflite files interleaved "
                f"(round-robin, every other round reversed), {self.rounds} rounds at {' and '.join(map(str, self.threads))} thread(s), "
                f"each file at least {self.runs} runs and {self.min_seconds:g} s per round, XNNPACK, random inputs, {self.runtime}; "
                f"each latency is the median of per-round medians{skipped}")


def artifact_files(report: dict, where, skip_missing: bool = False) -> dict[str, Path]:
    """The .tflite of every benchmarked artifact of a run report read from directory ``where``: beside the
    report (``tflite_models/<recipe>/``) or in the run's export stage folder (``runs/<recipe>/NN-export/``).
    Raises FileNotFoundError, one line naming the missing file, when one is not there (``skip_missing``: leaves it
    out instead)."""
    stages = stage_results(report)
    bench, export = latest(stages, "bench"), latest(stages, "export")
    where = Path(where)
    files = {}
    for stem in bench.metrics if bench else {}:
        name = (export.files if export else {}).get(stem, f"{stem}.tflite")
        places = [where / name] + ([where / export.dir / name] if export and export.dir else [])
        found = next((p for p in places if p.is_file()), None)
        if found is None and skip_missing:
            continue
        if found is None:
            named = places[-1] if places[-1].parent.is_dir() else places[0]
            raise FileNotFoundError(f"{named}: no such file, so the latency of {report['recipe']}:{stem} can't be re-measured; "
                                    f"pass --skip-missing to leave its latency out, --no-remeasure to keep the latency its run stored, "
                                    f"or re-run the recipe {report['recipe']!r} to make the file")
        files[stem] = found
    return files


def measured_threads(reports: Sequence[dict]) -> tuple[int, ...]:
    """Every thread count the reports' bench stages measured latency at, in numeric order ((1,) when none did)."""
    return tuple(thread_counts([row for rep in reports for row in bench_rows(rep)])) or (1,)


def remeasure_latency(reports: Sequence[dict], where: Sequence, *, rounds: int = 5, runs: int = 10,
                      min_seconds: float = 0.2, skip_missing: bool = False) -> tuple[list[dict], LatencyRun]:
    """Re-measure the latency of every benchmarked .tflite of ``reports`` (read from the directories ``where``,
    one per report) in one interleaved run on this machine: every file at every thread count the reports
    measured, round-robin over files, ``rounds`` rounds, each call timing at least ``runs`` runs and
    ``min_seconds`` seconds (``edgeopt.bench.measure_latency``). Every file is found before any is timed.

    Returns copies of the reports whose bench entries hold the re-measured latencies (``edgeopt.bench.pooled``:
    the median of per-round medians; accuracy and size as stored), and the :class:`LatencyRun` that says how.
    ``skip_missing``: an artifact whose file is not there keeps no latency at all (never one from another machine)."""
    if len(where) != len(reports):
        raise ValueError(f"remeasure_latency needs one directory per report; got {len(where)} for {len(reports)} reports")
    files = [artifact_files(rep, w, skip_missing) for rep, w in zip(reports, where)]
    threads = measured_threads(reports)
    paths = list(dict.fromkeys(p.resolve() for f in files for p in f.values()))
    calls = {(p, t): partial(measure_latency, p, threads=t, runs=runs, min_seconds=min_seconds) for t in threads for p in paths}
    timed = interleave(calls, rounds, alternate=True, progress=f"re-measuring latency of {len(paths)} files at {len(threads)} thread count(s)")
    out, missing = [], []
    for rep, stems in zip(reports, files):
        rep = copy.deepcopy(rep)
        bench = next((s for s in reversed(rep["stages"]) if s["type"] == "bench"), None)
        for stem in bench["metrics"] if bench else {}:
            result = BenchResult.from_dict(bench["metrics"][stem], model=stem)
            if stem in stems:
                result.latency = [replace(pooled(timed[(stems[stem].resolve(), t)]), model=result.model) for t in threads]
            else:
                result.latency = []
                missing.append(f"{rep['recipe']}:{stem}")
            bench["metrics"][stem] = result.to_dict()
        out.append(rep)
    runtime = next((results[0].runtime for results in timed.values()), "ai-edge-litert")
    return out, LatencyRun(this_machine().describe(), len(paths), threads, rounds, runs, min_seconds, runtime, tuple(missing))


def write_results(reports: list[dict], out_dir="benchmarks", *, where: Sequence | None = None, remeasure: bool = False,
                  rounds: int = 5, runs: int = 10, min_seconds: float = 0.2, skip_missing: bool = False) -> list[dict]:
    """Write RESULTS.md, RESULTS.csv and the two Pareto plots into ``out_dir``; returns the rows.

    ``remeasure`` first re-measures every artifact's latency in one interleaved run on this machine
    (:func:`remeasure_latency`; ``where``: the directory each report was read from); otherwise the latencies
    are the ones each run stored, and the table names their machines."""
    run = None
    if remeasure:
        if where is None:
            raise ValueError("remeasure needs where: the directory each report was read from (its .tflite files are there)")
        reports, run = remeasure_latency(reports, where, rounds=rounds, runs=runs, min_seconds=min_seconds, skip_missing=skip_missing)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for rep in reports for row in result_rows(rep)]
    write_atomic(out / "RESULTS.md", results_markdown(rows, run))
    buf = StringIO()
    writer = csv.DictWriter(buf, fieldnames=result_columns(rows))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "RESULTS.csv", buf.getvalue())
    pareto_plot(rows, "median_ms_1", "median latency, 1 thread (ms)", out / "pareto_latency.png", per_machine=True)
    pareto_plot(rows, "gzip_bytes", "gzipped .tflite size (bytes)", out / "pareto_size.png")
    return rows


# ---- search results ------------------------------------------------------------------------------------

_SEARCH_METRICS = (("accuracy", "pct"), ("test_accuracy", "pct"), ("keras_accuracy", "pct"), ("int8_agreement", "pct"), ("latency_ms", "ms"), ("size_bytes", "int"), ("gzip_bytes", "int"),
                   ("macs", "M"), ("params", "int"))


def search_markdown(result, machine: str) -> str:
    """The search report: settings, counts, the Pareto front (or best trial) and every trial."""
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts().items()))
    goals = ", ".join(f"{d} {o}" for o, d in zip(result.objectives, result.directions))
    lines = [f"# Search {result.study}", "", f"Machine: {machine}. Recipe `{result.recipe}`, sampler `{result.sampler}`, budget {result.budget} trials "
             f"({counts}); objectives: {goals}; constraints: {', '.join(result.constraints) or 'none'}. Study: `{result.storage}`.", "",
             "Accuracy is top-1 on the validation split, what trials are chosen by, of the benchmarked `.tflite` (of the Keras model when the recipe "
             "has no bench stage; keras_accuracy: the Keras model's); test_accuracy is top-1 on the test split, read once after the search for the "
             "reported trials only; latency is the median at the first benchmarked thread count.", ""]
    params = sorted({k for t in result.trials for k in t.overrides})
    metrics = [(m, kind) for m, kind in _SEARCH_METRICS if any(m in t.metrics for t in result.trials)]
    header = "| trial | state | " + " | ".join(params) + " | " + " | ".join(m for m, _ in metrics) + " | feasible | Pareto | note |"
    rule = "|---:|---|" + "---|" * len(params) + "---:|" * len(metrics) + "---|---|---|"

    def row(t):
        vals = [f"{t.overrides[p]:.4g}" if isinstance(t.overrides.get(p), float) else str(t.overrides.get(p, "")) for p in params]
        mets = [_fmt(t.metrics.get(m), kind) if m in t.metrics else "" for m, kind in metrics]
        feasible = "" if t.feasible is None else ("yes" if t.feasible else "no")
        return f"| {t.number} | {t.state.lower()} | " + " | ".join(vals) + " | " + " | ".join(mets) + f" | {feasible} | {'**yes**' if t.pareto else ''} | {t.note or ''} |"

    front = sorted(result.pareto, key=lambda t: t.values)
    title = "Pareto front" if len(result.objectives) > 1 else "Best trial"
    lines += [f"## {title} ({len(front)} trials; their .tflite, manifest and labels are kept in `trial-NNNN/` folders)", "", header, rule] + [row(t) for t in front]
    lines += ["", "## Every trial", "", header, rule] + [row(t) for t in sorted(result.trials, key=lambda t: t.number)]
    return "\n".join(lines) + "\n"


def search_plot(result, path) -> None:
    """Two objectives: a scatter of every complete trial with the Pareto front ringed. One objective: the
    objective of each trial in order and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in sorted(result.trials, key=lambda t: t.number) if t.state == "COMPLETE"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    scale = [100 if o in ("accuracy", "keras_accuracy") else 1 for o in result.objectives]
    label = [f"{o} (%)" if s == 100 else o for o, s in zip(result.objectives, scale)]
    if len(result.objectives) >= 2 and done:
        xs, ys = [t.values[1] * scale[1] for t in done], [t.values[0] * scale[0] for t in done]
        colors = ["tab:blue" if t.feasible else "tab:gray" for t in done]
        ax.scatter(xs, ys, c=colors, label="trial (grey: breaks a constraint)")
        front = sorted((t.values[1] * scale[1], t.values[0] * scale[0]) for t in done if t.pareto)
        ax.scatter([x for x, _ in front], [y for _, y in front], s=160, facecolors="none", edgecolors="tab:red", label="Pareto-optimal")
        ax.plot([x for x, _ in front], [y for _, y in front], "--", c="tab:red", lw=1)
        for t, x, y in zip(done, xs, ys):
            ax.annotate(str(t.number), (x, y), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel(label[1])
        ax.set_ylabel(label[0])
        ax.legend(fontsize=8)
    elif done:
        sign = 1 if result.directions[0] == "maximize" else -1
        values = [t.values[0] * scale[0] for t in done]
        best = [sign * max(sign * v for v in values[: i + 1]) for i in range(len(values))]
        ax.plot(range(1, len(values) + 1), values, "o", label="trial")
        ax.step(range(1, len(values) + 1), best, where="post", c="tab:red", label="best so far")
        ax.set_xlabel("complete trial (in order)")
        ax.set_ylabel(label[0])
        ax.legend(fontsize=8)
    ax.set_title(f"{result.study} ({result.sampler})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_search_report(result, out_dir, stem: str = "search") -> None:
    """Write ``<stem>.md``, ``.csv``, ``.json`` and ``<stem>_pareto.png`` into ``out_dir``."""


    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{stem}.md", search_markdown(result, machine_description()))
    write_atomic(out / f"{stem}.json", json.dumps(result.to_dict(), indent=1, default=str))
    params = sorted({k for t in result.trials for k in t.overrides})
    metrics = sorted({k for t in result.trials for k in t.metrics})
    buf = StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial", "state", *params, *metrics, "feasible", "pareto", "worker", "seconds", "note"])
    for t in sorted(result.trials, key=lambda t: t.number):
        writer.writerow([t.number, t.state, *[t.overrides.get(p, "") for p in params], *[t.metrics.get(m, "") for m in metrics],
                         t.feasible, t.pareto, t.worker, t.seconds, t.note or ""])
    write_atomic(out / f"{stem}.csv", buf.getvalue())
    search_plot(result, out / f"{stem}_pareto.png")
