"""The ``edgeopt`` command. It parses arguments and calls the library; it holds no logic of its own."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from edgeopt.logs import hide_native_logs

# Only argument parsing happens at import: each command imports the library (and so TensorFlow, ~5 s) when it
# runs, so `edgeopt --help` answers at once. TensorFlow's C++ log lines are hidden unless --verbose (main()).
RUNTIMES = ("litert", "mediapipe")  # edgeopt.bench.RUNTIMES (tests/test_cli.py checks they agree)
STATISTICS = ("median", "min")  # edgeopt.search.latency_table.STATISTICS (likewise)


def _value(text: str):
    """A knob value from the command line: int, float, true/false, or a string (never eval'd)."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _knobs(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, val = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"edgeopt: --set expects KEY=VALUE (e.g. --set alpha=0.5), got {pair!r}")
        out[key.strip()] = _value(val.strip())
    return out


def cmd_models(args) -> int:
    from edgeopt.models import MODELS, knobs_of  # lazy: TensorFlow loads only when a command runs

    for name in MODELS.names():
        entry = MODELS.get(name)
        print(f"{name:24s} {entry.default_size:4d}px  {entry.summary}")
        if args.verbose:
            print(f"{'':24s} knobs: {', '.join(knobs_of(name))}")
    return 0


def cmd_profile(args) -> int:
    from edgeopt import create, profile  # lazy: TensorFlow loads only when a command runs

    model = create(args.name, input_shape=args.input, classes=args.classes, **_knobs(args.set))
    result = profile(model)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print(result.to_markdown(per_layer=args.layers))
    return 0


def cmd_run(args) -> int:
    start = time.perf_counter()
    from edgeopt.pipeline import run_recipe  # lazy: TensorFlow loads only when a command runs
    from edgeopt.report import run_summary_markdown  # lazy: as above

    report = run_recipe(args.recipe, out_dir=args.out, resume=args.resume, force=args.force, artifacts_dir=args.artifacts)
    print()
    print(run_summary_markdown(report))
    minutes, seconds = divmod(round(time.perf_counter() - start), 60)
    print(f"\nwall time of this command: {minutes} min {seconds} s")
    return 0


def cmd_optimize(args) -> int:
    from pathlib import Path

    from edgeopt.pipeline import run_recipe  # lazy: TensorFlow loads only when a command runs
    from edgeopt.pipeline.optimize import optimize_recipe, prepare_run  # lazy: as above
    from edgeopt.report import run_summary_markdown  # lazy: as above

    start = time.perf_counter()
    doc = optimize_recipe(args.model, args.data, prune=args.prune, cluster=args.cluster, qat=args.qat, distill_from=args.distill_from,
                          epochs=args.epochs, learning_rate=args.learning_rate, image_size=args.image_size, batch_size=args.batch_size,
                          name=args.name)
    out = Path(args.out) if args.out else Path("optimized") / doc["name"]
    recipe_path = prepare_run(doc, out, shlex.join(["edgeopt", *args.argv]), force=args.force)
    print(f"recipe: {recipe_path}")
    report = run_recipe(recipe_path, out_dir=out / "runs", resume=args.resume, force=args.force, artifacts_dir=out)
    print()
    print(run_summary_markdown(report))
    print(f"\nartifacts: {out / doc['name']} (the .tflite for your app: model.tflite); wall time {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def cmd_report(args) -> int:
    from edgeopt.report import write_results  # lazy: TensorFlow loads only when a command runs
    import glob
    from pathlib import Path

    paths = []
    for pattern in args.runs or ["tflite_models/*/report.json"]:
        p = Path(pattern)
        paths += [p / "report.json"] if p.is_dir() else [Path(x) for x in sorted(glob.glob(pattern))]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise FileNotFoundError(f"no run report at {', '.join(missing) or ' '.join(args.runs or ['tflite_models/*/report.json'])}; run a recipe first (edgeopt run recipes/quickstart.toml)")
    rows = write_results([json.loads(p.read_text()) for p in paths], args.out, where=[p.parent for p in paths], remeasure=args.remeasure,
                         rounds=args.rounds, min_seconds=args.min_seconds, skip_missing=args.skip_missing)
    how = "latency re-measured on this machine in one interleaved run" if args.remeasure else "latency as each run stored it"
    print(f"wrote {args.out}/RESULTS.md, RESULTS.csv, pareto_latency.png, pareto_size.png ({len(rows)} rows from {len(paths)} runs; {how})")
    return 0


def cmd_search(args) -> int:
    from edgeopt.search import SearchConfig, report_search, run_search  # lazy: TensorFlow loads only when a command runs
    from pathlib import Path

    if args.report_only:
        if not (args.storage and args.study):
            raise SystemExit("edgeopt search: --report-only needs --storage URL and --study NAME")
        result = report_search(args.storage, args.study, args.out or Path("runs") / "search" / args.study, artifacts_dir=args.artifacts)
    else:
        if not args.space:
            raise SystemExit("edgeopt search: --space SPACE.toml is required (the recipe paths to vary, objectives, constraints)")
        config = SearchConfig(sampler=args.sampler, trials=args.trials, seed=args.seed, pruner=args.pruner, storage=args.storage, study=args.study,
                              heartbeat_seconds=args.heartbeat_seconds, grace_seconds=args.grace_seconds)
        result = run_search(args.recipe, args.space, config, out_dir=args.out, artifacts_dir=args.artifacts)
    front = result.pareto
    print(f"\n{len(front)} trial(s) on the {'Pareto front' if len(result.objectives) > 1 else 'top'} of {result.study}:")
    for t in sorted(front, key=lambda t: t.values):
        shown = ", ".join(f"{o}={v:.4g}" for o, v in zip(result.objectives, t.values))
        print(f"  trial {t.number}: {shown}  {t.overrides}")
    return 0


def _threads(text: str) -> tuple[int, ...]:
    try:
        threads = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise SystemExit(f"edgeopt: --threads expects a comma-separated list of integers (e.g. 1,2), got {text!r}") from None
    if not threads or min(threads) < 1:
        raise SystemExit(f"edgeopt: --threads needs thread counts >= 1, got {text!r}")
    return threads


def cmd_bench(args) -> int:
    from edgeopt import bench  # lazy: TensorFlow loads only when a command runs
    from edgeopt.io import write_atomic  # lazy: as above
    from dataclasses import replace

    settings = dict(runs=args.runs, min_seconds=args.min_seconds, warmup=args.warmup, xnnpack=not args.no_xnnpack)
    if args.adb:
        if not args.benchmark_model:
            raise SystemExit("edgeopt bench: --adb needs --benchmark-model PATH (the Android benchmark_model binary)")
        result = bench.measure(args.model, args.data, threads=(), limit=args.limit, **settings)
        result = replace(result, latency=[bench.measure_latency_adb(args.model, args.benchmark_model, serial=args.serial, threads=t, **settings) for t in args.threads])
    else:
        result = bench.measure(args.model, args.data, threads=args.threads, limit=args.limit, runtime=args.runtime, **settings)
    print(result.to_markdown())
    if args.json:
        write_atomic(args.json, (json.dumps(result.to_dict(), indent=1) + "\n").encode(), overwrite=True)
        print(f"wrote {args.json}")
    return 0


def _names(text: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in allowed]
    if not names or bad:
        raise SystemExit(f"edgeopt: {flag} expects a comma-separated list of {', '.join(allowed)}, got {text!r}")
    return names


def cmd_nas_table(args) -> int:
    from edgeopt.search import latency_table as lt  # lazy: TensorFlow loads only when a command runs
    from edgeopt.search.nas_space import SPACES  # lazy: as above

    if args.adb and not args.benchmark_model:
        raise SystemExit("edgeopt nas-table: --adb needs --benchmark-model PATH (the Android benchmark_model binary)")
    space = SPACES.get(args.preset)(args.width)
    config = lt.LatencyTableConfig(precisions=_names(args.precisions, lt.PRECISIONS, "--precisions"), threads=args.threads, rounds=args.rounds)
    timing = dict(xnnpack=not args.no_xnnpack, statistic=args.statistic)
    timing.update({k: v for k, v in (("runs", args.runs), ("min_seconds", args.min_seconds)) if v is not None})  # else the runner's defaults
    runner = (lt.AdbRunner(args.benchmark_model, serial=args.serial, **timing) if args.adb else lt.LiteRTRunner(**timing))
    table = lt.measure_table(space, (args.image_size, args.image_size, args.channels), args.classes, args.out, config, runner=runner)
    print(f"wrote {args.out}: {len(table.parts())} parts of {args.preset} at width {args.width:g} for {args.image_size}x{args.image_size}x"
          f"{args.channels} inputs, {args.classes} classes, measured on {runner.describe()['device']}; a recipe's nas stage uses it with "
          f'search.cost_model = "latency" and latency_table = "{args.out}"')
    return 0


def cmd_inspect(args) -> int:
    from edgeopt.tflite.inspect import inspect_model  # lazy: TensorFlow loads only when a command runs

    if args.quant:
        from edgeopt.bench.quant_report import report_files  # lazy: as above

        report = report_files(args.quant, args.data, args.model, num_calibration=args.num_calibration)
    elif args.model:
        report = inspect_model(args.model, with_op_times=args.op_times)
    else:
        raise SystemExit("edgeopt inspect: give a .tflite file, or --quant MODEL.keras --data DATASET")
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.to_markdown())
    return 0


def cmd_android(args) -> int:
    from edgeopt.export import ModelInfo, make_android_ready  # lazy: TensorFlow loads only when a command runs
    from pathlib import Path

    out = Path(args.out) if args.out else Path(args.model).with_name(Path(args.model).stem + "_android.tflite")
    info = ModelInfo(args.name, args.description, args.version, args.author, args.license)  # an empty name: the recipe's
    art = make_android_ready(args.model, io=args.io, info=info, path=out, overwrite=args.overwrite)
    print(f"wrote {art.path} ({len(art.model_bytes):,} bytes): {art.manifest['mode_description']}; standard metadata with "
          f"{len(art.manifest['labels'])} labels inside; outputs identical to {args.model}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's log lines and warnings (hidden by default)")
    parser = argparse.ArgumentParser(prog="edgeopt", description="Keras image classifiers -> verified int8 TFLite for Android.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    p = command("models", help="list the model zoo (with --verbose: each model's knobs)")
    p.set_defaults(func=cmd_models)

    p = command("profile", help="parameters and multiply-adds of a zoo model, by layer type")
    p.add_argument("name")
    p.add_argument("--input", type=int, default=None, help="input side in pixels (default: the model's paper size)")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--set", action="append", metavar="KNOB=VALUE", help="model knob, e.g. --set alpha=0.5 (repeatable)")
    p.add_argument("--layers", action="store_true", help="also print every layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.set_defaults(func=cmd_profile)

    p = command("run", help="run a recipe: train, compress, export and benchmark, into runs/<recipe>/")
    p.add_argument("recipe", help="recipe TOML file, e.g. recipes/quickstart.toml")
    p.add_argument("--out", default="runs", help="parent of the run directory (default: runs)")
    p.add_argument("--resume", action="store_true", help="continue a run: skip stages already done with the same settings")
    p.add_argument("--force", action="store_true", help="delete an existing run directory of this recipe and start again")
    p.add_argument("--artifacts", default="tflite_models", help="where shipped artifacts go (default: tflite_models)")
    p.set_defaults(func=cmd_run)

    p = command("optimize", help="compress your own model on your images in one line: writes the recipe, runs it, prints float vs int8")
    p.add_argument("model", help="your trained model: a .keras / .h5 file or a SavedModel directory (or a zoo name, trained first)")
    p.add_argument("--data", required=True, help="your images: folder:PATH with one sub-folder per class (or fashion_mnist, digits)")
    p.add_argument("--prune", type=float, default=None, metavar="SPARSITY", help="magnitude pruning to this fraction of zero weights, e.g. 0.5")
    p.add_argument("--cluster", type=int, default=None, metavar="N", help="weight clustering to N values per kernel, e.g. 16")
    p.add_argument("--qat", action="store_true", help="quantization-aware training before the int8 export (keeps zeros and clusters)")
    p.add_argument("--distill-from", default=None, metavar="TEACHER", help="distil from this bigger trained model file first")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs of each training stage (default 2)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="fine-tuning learning rate (default 1e-4: the model is trained)")
    p.add_argument("--image-size", type=int, default=None, help="input side in pixels (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--name", default=None, help="run name (default: the model file's name)")
    p.add_argument("--out", default=None, help="where the recipe, the run and the artifacts go (default: optimized/<name>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run: skip stages already done")
    p.add_argument("--force", action="store_true", help="replace an existing recipe and run of this name and start again")
    p.set_defaults(func=cmd_optimize)

    p = command("report", help="build benchmarks/RESULTS.md (+ CSV, Pareto plots) from run reports")
    p.add_argument("runs", nargs="*", help="run directories or report.json files/globs (default: tflite_models/*/report.json)")
    p.add_argument("--out", default="benchmarks")
    p.add_argument("--no-remeasure", dest="remeasure", action="store_false",
                   help="keep the latency each run stored (the table then names each row's machine when they differ); "
                        "default: re-measure every .tflite's latency on this machine in one interleaved run")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the re-measure (default 5)")
    p.add_argument("--skip-missing", action="store_true", help="an artifact whose .tflite is not in this checkout gets no latency (the header lists it) instead of an error")
    p.add_argument("--min-seconds", type=float, default=0.2, help="timing seconds per file, thread count and round, at least (default 0.2)")
    p.set_defaults(func=cmd_report)

    p = command("search", help="search recipe values (grid, random, Bayesian, NSGA-II) over accuracy, latency and size")
    p.add_argument("recipe", help="recipe TOML file the trials start from")
    p.add_argument("--space", required=False, help="search-space TOML: [params] recipe paths and values, objectives, constraints")
    p.add_argument("--sampler", choices=("grid", "random", "bayes", "nsga2"), default="bayes", help="bayes = Optuna TPE (default)")
    p.add_argument("--trials", type=int, default=20, help="trial budget of the study (a grid runs at most its size; default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pruner", choices=("none", "median", "hyperband"), default="median", help="early stopping of single-objective accuracy searches")
    p.add_argument("--storage", default=None, help="database URL shared by workers (default: sqlite file in the output directory)")
    p.add_argument("--study", default=None, help="study name (default: <recipe>-<sampler>); workers with the same storage and study share it")
    p.add_argument("--out", default=None, help="output directory (default: runs/search/<study>)")
    p.add_argument("--heartbeat-seconds", type=int, default=30, help="how often a running trial proves it is alive (default 30)")
    p.add_argument("--grace-seconds", type=int, default=120, help="a trial silent this long is failed and queued again (default 120)")
    p.add_argument("--artifacts", default=None, help="where the Pareto trials' .tflite files go, one trial-NNNN folder each (default: <out>/pareto)")
    p.add_argument("--report-only", action="store_true", help="write the report of an existing study without running trials")
    p.set_defaults(func=cmd_search)

    p = command("bench", help="latency, accuracy and size of a .tflite (LiteRT here, or a phone over adb)")
    p.add_argument("model", help="path to a .tflite file")
    p.add_argument("--data", default=None, help="dataset for accuracy and real latency inputs (e.g. fashion_mnist, digits, folder:PATH)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--threads", type=_threads, default=(1,), help="comma-separated thread counts, e.g. 1,2 (default 1)")
    p.add_argument("--runs", type=int, default=50, help="at least this many timed runs (default 50)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="and at least this many seconds of timed runs (default 1)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs before timing (default 1)")
    p.add_argument("--no-xnnpack", action="store_true", help="builtin kernels only (XNNPACK delegate off)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON to PATH")
    p.add_argument("--adb", action="store_true", help="time on a connected Android device with benchmark_model over adb")
    p.add_argument("--serial", default=None, help="adb serial of the device (when several are connected)")
    p.add_argument("--benchmark-model", default=None, metavar="PATH", help="path of the Android benchmark_model binary (with --adb)")
    p.add_argument("--runtime", choices=RUNTIMES, default="litert",
                   help="mediapipe: also classify the test set through MediaPipe's ImageClassifier, as an Android app does (needs --data)")
    p.set_defaults(func=cmd_bench)

    p = command("nas-table", help="measure the per-operator latency table of an architecture-search space (LiteRT here, or a phone over adb) "
                                 "for the nas stage's latency cost model; continues a table already at OUT")
    p.add_argument("out", help="the table's JSON file (exported parts go to OUT.models/ beside it)")
    p.add_argument("--preset", default="mobilenet_v2", help="registered search space (mobilenet_v2, tiny; default mobilenet_v2)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of the space (default 1.0; benchmarks/nas.py uses 0.35)")
    p.add_argument("--image-size", type=int, required=True, help="input side in pixels, as the recipe's data.image_size")
    p.add_argument("--channels", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--classes", type=int, required=True, help="number of classes of the classifier head")
    p.add_argument("--precisions", default="int8", help="comma-separated: int8, float32 (default int8: what the nas stage reads)")
    p.add_argument("--threads", type=_threads, default=(1,), help="comma-separated thread counts, e.g. 1,4 (default 1: what the nas stage reads)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; a part's latency is the median of its rounds (default 3)")
    p.add_argument("--runs", type=int, default=None, help="at least this many timed runs per measurement (default 20 here, 50 over adb)")
    p.add_argument("--min-seconds", type=float, default=None, help="and at least this many seconds per measurement (default 0.1 here, 0.5 over adb)")
    p.add_argument("--statistic", choices=STATISTICS, default="min", help="of each measurement's runs (default min: steadier on a busy machine)")
    p.add_argument("--no-xnnpack", action="store_true", help="builtin kernels only (XNNPACK delegate off)")
    p.add_argument("--adb", action="store_true", help="time on a connected Android device with benchmark_model over adb")
    p.add_argument("--serial", default=None, help="adb serial of the device (when several are connected)")
    p.add_argument("--benchmark-model", default=None, metavar="PATH", help="path of the Android benchmark_model binary (with --adb)")
    p.set_defaults(func=cmd_nas_table)

    p = command("inspect", help="deployability of a .tflite: ops and versions, minimum runtime, GPU delegate, memory, metadata; "
                               "--quant: the int8 error of every tensor of a Keras model, worst first")
    p.add_argument("model", nargs="?", help="path to a .tflite file (with --quant: the model's int8 export, optional)")
    p.add_argument("--quant", default=None, metavar="MODEL.keras", help="per-tensor int8 quantization report of this Keras model (needs --data)")
    p.add_argument("--data", default=None, help="with --quant: images to calibrate and debug on (e.g. digits, fashion_mnist, folder:PATH)")
    p.add_argument("--num-calibration", type=int, default=None, help="with --quant: calibration images (default: the .tflite's, else 300)")
    p.add_argument("--op-times", action="store_true", help="also estimate the time of each operator (times every prefix of the model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.set_defaults(func=cmd_inspect)

    p = command("android", help="make an edgeopt .tflite loadable by Android's standard APIs (uint8 I/O, metadata, labels inside)")
    p.add_argument("model", help="an edgeopt .tflite (with its embedded manifest)")
    p.add_argument("--out", default=None, help="output .tflite (default: MODEL_android.tflite beside it)")
    p.add_argument("--io", choices=("uint8", "int8", "float32"), default=None, help="input/output type of an int8 model (default uint8)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    for name in ("name", "description", "version", "author", "license"):
        p.add_argument(f"--{name}", default="", help=f"model {name} in the metadata" + (" (default: the recipe's name)" if name == "name" else ""))
    p.set_defaults(func=cmd_android)
    return parser


def _errors() -> tuple[type[BaseException], ...]:
    """The exceptions a command reports as one line: bad input and missing files or devices (a bug keeps its traceback)."""
    errors = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError)
    adb = sys.modules.get("edgeopt.bench.adb")  # loaded only by commands that may raise its error
    return errors + ((adb.DeviceUnavailableError,) if adb else ())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if argv is None and not args.verbose:  # the real command line (tests call main(argv) and keep their own stderr)
        hide_native_logs()
    try:
        return args.func(args)
    except Exception as err:
        if not isinstance(err, _errors()):
            raise
        print(f"edgeopt {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
