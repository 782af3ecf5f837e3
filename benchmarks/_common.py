"""What the benchmark scripts share, on edgeopt's public API only: the machine line every table carries,
interleaved latency (``edgeopt.bench.interleave`` / ``interleaved_latency`` / ``median_ms``, delegated to lazily:
one timing method for every script and for ``edgeopt report``), atomic writes of text, CSV and Markdown tables,
statistics over seeds (mean ± std, test-sampling interval, noise on a difference, the verdict of a row against its
target), the number formats the findings templates use, and for the compression benchmarks the well-trained
baseline (its file, its data settings, ``--baseline / --seeds / --quick``), fine-tunes that keep the best validation
check, and :class:`SeedRuns`, the resumable cache of (variant, seed) results.

Sizes come from ``edgeopt.io.gzip_size`` / ``edgeopt.bench.size_of``, flatbuffers are read and written with
``edgeopt.tflite.flatbuffer``; nothing here re-implements them. Importing this module loads no TensorFlow (the
edgeopt imports are inside the functions that measure), so findings render from committed data in a second.
"""
from __future__ import annotations

import csv
import io
import os
import platform
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

# ---- the machine ----------------------------------------------------------------------------------------


def machine_line() -> str:
    """One line for a table header: CPU, cores, architecture, SIMD flags (VNNI or not), Python and TF versions."""
    from edgeopt import tf  # lazy: TensorFlow only where a script measures
    from edgeopt.bench import this_machine  # lazy: as above

    return f"{this_machine().describe()}, Python {platform.python_version()}, TF {tf.__version__}"


# ---- interleaved timing ---------------------------------------------------------------------------------


def interleave(calls, rounds: int, **kw):
    """``edgeopt.bench.interleave`` (imported when called: rendering findings loads no TensorFlow)."""
    from edgeopt.bench import interleave as run

    return run(calls, rounds, **kw)


def interleaved_latency(files, rounds: int, **kw):
    """``edgeopt.bench.interleaved_latency`` (imported when called)."""
    from edgeopt.bench import interleaved_latency as run

    return run(files, rounds, **kw)


def median_ms(results) -> float:
    """``edgeopt.bench.median_ms``: the median over rounds of the per-round median latencies (ms)."""
    from edgeopt.bench import median_ms as run

    return run(results)


def median_latency_ms(files: Mapping[str, bytes | os.PathLike], rounds: int, **kw) -> dict[str, float]:
    """Each file's median over ``rounds`` interleaved rounds of its per-round median latency (ms); ``kw`` as
    :func:`interleaved_latency`."""
    return {k: median_ms(v) for k, v in interleaved_latency(files, rounds, **kw).items()}


# ---- writing --------------------------------------------------------------------------------------------


def write_file(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically (readers never see half a table), replacing
    any old file."""
    from edgeopt.io import write_atomic  # lazy: edgeopt.io loads TensorFlow (Keras model files)

    return write_atomic(path, data, overwrite=True)


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping], fields: Sequence[str] | None = None,
              float_format: str | None = None) -> Path:
    """Write ``rows`` (dicts) as CSV with header ``fields`` (default: the first row's keys; other keys are left out),
    floats formatted with ``float_format`` (e.g. ``"{:.4g}"``) when given; atomically."""
    rows = list(rows)
    fields = list(fields if fields is not None else rows[0])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: float_format.format(v) if float_format and isinstance(v, float) else v for k, v in row.items()})
    return write_file(path, buf.getvalue())


def _md_row(cells: Iterable) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence[str], rows: Iterable[Iterable], align: str = "") -> list[str]:
    """A Markdown table's lines: header, alignment row (``align``: one "l" or "r" per column, default all left),
    one line per row of cells (formatted with ``str``)."""
    align = align or "l" * len(header)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} columns, header {len(header)}")
    return [_md_row(header), "|" + "".join("---:|" if a == "r" else "---|" for a in align), *(_md_row(r) for r in rows)]


# ---- statistics over seeds ------------------------------------------------------------------------------


from edgeopt.stats import difference_noise, mean_std, sampling_interval, seed_stats, verdict  # noqa: E402,F401  (one implementation; re-exported)


# ---- findings: prose whose numbers are formatted from the data ------------------------------------------


def span(values: Iterable[float], fmt: str = "{:.2f}") -> str:
    """The range of ``values`` as text, "lo-hi" with each end formatted by ``fmt`` (one number when both ends
    format alike)."""
    values = list(values)
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"



def wrap(text: str, bullet: str = "", width: int = 118) -> list[str]:
    """A paragraph of findings prose as lines of at most ``width`` characters; ``bullet`` ("* ", "  - ") starts the
    first line and indents the others. Words (numbers, inline code) are never split."""
    return textwrap.wrap(text, width, initial_indent=bullet, subsequent_indent=" " * len(bullet), break_long_words=False,
                         break_on_hyphens=False)


def plural(n: int, noun: str) -> str:
    """"1 seed", "3 seeds"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def pm(mean: float, std: float, scale: float = 100, fmt: str = "{:.2f}") -> str:
    """"mean ± std" of fractions as points (``scale`` 100) or of any quantity (``scale`` 1)."""
    return f"{fmt.format(scale * mean)} ± {fmt.format(scale * std)}"


def signed_pm(mean: float, std: float) -> str:
    """A difference of fractions as signed points, "+0.12 ± 0.08"."""
    return f"{100 * mean:+.2f} ± {100 * std:.2f}"


# ---- the well-trained baseline every compression benchmark starts from ------------------------------------

BASELINE = Path("benchmarks/baselines/fmnist_mobilenet_v2_0.35.keras")
BASELINE_RECIPE = "recipes/fmnist_mobilenet_v2.toml"
BASELINE_RUN_MODEL = "runs/fmnist_mobilenet_v2/00-train/model.keras"
# the data the baseline was trained on (recipes/fmnist_mobilenet_v2.toml, [data]): the same validation split
# (val_fraction and seed), so validation images stay unseen by the baseline; all training images, the full test set
BASELINE_DATA = {"name": "fashion_mnist", "image_size": 28, "channels": 3, "val_fraction": 0.05, "seed": 0, "mean": 127.5, "std": 127.5}
# its training augmentation (the recipe's [data] augment and crop_padding: left-right flips, shifts of up to 2 pixels)
BASELINE_AUGMENT = {"augment": True, "crop_padding": 2}
BATCH = 128
TEST_IMAGES = 10_000
QUICK_TRAIN, QUICK_VAL, QUICK_TEST = 384, 256, 500  # --quick: the first images of the training, validation and test splits
QUICK_OUT = Path("/tmp/edgeopt-bench-quick")  # --quick writes here (never to the committed files)
CACHE_ROOT = Path("runs/bench_cache")  # files a run keeps (.tflite, weights) and --quick's results: never committed
RAW_ROOT = Path("benchmarks/raw")  # full runs' per-(variant, seed) results: committed, so a run continues in a later session
STANDIN = CACHE_ROOT / "quick" / "baseline_standin.keras"  # --quick's model when the baseline is missing


def baseline_args(ap, seeds: int = 3) -> None:
    """Add the options every baseline benchmark takes: ``--baseline``, ``--seeds``, ``--quick``."""
    ap.add_argument("--baseline", type=Path, default=BASELINE, help=f"the float Keras baseline (default {BASELINE}, made by {BASELINE_RECIPE})")
    ap.add_argument("--seeds", type=int, default=seeds, help="fine-tune seeds per verdict row (seed = data order and TF-MOT randomness; "
                    f"default {seeds})")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_TRAIN} training and {QUICK_TEST} test images, a few steps, "
                    "a stand-in model when the baseline is missing, "
                    f"writes to {QUICK_OUT}/ and runs/bench_cache/quick/, never to the committed files")


def baseline_missing_message(path: os.PathLike) -> str:
    """One line: which recipe makes the baseline and the command that puts it at ``path``."""
    return (f"baseline {path} not found: it is the trained float model of {BASELINE_RECIPE}; make it with "
            f"`edgeopt run {BASELINE_RECIPE} --out runs` and copy it: `mkdir -p {Path(path).parent} && cp {BASELINE_RUN_MODEL} {path}`")


def check_baseline(path: os.PathLike, quick: bool = False) -> None:
    """Stop at once (before any data is loaded) with :func:`baseline_missing_message` when the baseline is missing
    and no ``--quick`` stand-in may replace it."""
    if not quick and not Path(path).exists():
        raise SystemExit(baseline_missing_message(path))


def load_baseline(path: os.PathLike = BASELINE, quick: bool = False, splits=None):
    """The baseline float Keras model at ``path``, read with ``edgeopt.load_model`` (the safe loader: no Lambda
    layers or custom code). A missing file stops the script with :func:`baseline_missing_message`; with ``quick`` a
    stand-in (the zoo's ``mobilenet_v2_tiny``: alpha 0.35, one or two blocks a stage; 30 steps on ``splits``) is
    trained and cached instead, so smoke runs need no baseline and convert in seconds."""
    from edgeopt import load_model  # lazy: rendering the findings loads no TensorFlow

    path = Path(path)
    if path.exists():
        return load_model(path)
    if not quick:
        raise SystemExit(baseline_missing_message(path))
    standin = STANDIN
    if standin.exists():
        return load_model(standin)
    from edgeopt import TrainConfig, create, fit

    print(f"--quick: {path} not found; training a stand-in (mobilenet_v2_tiny, 30 steps) into {standin}", flush=True)
    model = create("mobilenet_v2_tiny", input_shape=(28, 28, 3), classes=10)
    fit(model, splits, TrainConfig(epochs=1, steps_per_epoch=30, learning_rate=3e-3))
    standin.parent.mkdir(parents=True, exist_ok=True)
    model.save(standin)
    return load_model(standin)


def baseline_used(path: os.PathLike) -> Path:
    """The file :func:`load_baseline` reads for ``path``: the baseline, or in a ``--quick`` run without it the stand-in."""
    return Path(path) if Path(path).exists() else STANDIN


def baseline_splits(quick: bool = False, batch_size: int = BATCH, augment: bool = False):
    """Fashion-MNIST as the baseline saw it (:data:`BASELINE_DATA`): all training images, the same validation split,
    the full 10,000-image test set; ``quick``: the first :data:`QUICK_TRAIN` / :data:`QUICK_VAL` / :data:`QUICK_TEST`
    images of train, validation and test.
    No augmentation (fine-tunes and students see the images as they are) unless ``augment``: then the training split
    is augmented as the baseline's was (:data:`BASELINE_AUGMENT`), for models trained from scratch by its recipe."""
    from dataclasses import replace

    from edgeopt import load_dataset  # lazy: as above

    data = {**BASELINE_DATA, **(BASELINE_AUGMENT if augment else {})}
    if not quick:
        return load_dataset(**data, batch_size=batch_size)
    splits = load_dataset(**data, batch_size=batch_size, limit_train=QUICK_TRAIN, limit_test=QUICK_TEST)
    val = splits.val.unbatch().take(QUICK_VAL).batch(batch_size)  # the split stays; fewer of its images
    return replace(splits, val=val, sizes={**splits.sizes, "val": QUICK_VAL})


def reseeded(splits, seed: int):
    """``splits`` with a new training pipeline whose order follows ``seed`` (the validation and test splits stay:
    the split itself is fixed by :data:`BASELINE_DATA`); also seeds Python, NumPy and TensorFlow (TF-MOT's randomness)."""
    from edgeopt import keras  # lazy: as above

    keras.utils.set_random_seed(seed)  # the new pipeline's shuffle takes the global seed with its own
    return splits.with_fresh_train()


def training_arrays(splits, limit: int | None = None):
    """The model inputs and labels of the training split (the first ``limit``) in one fixed order (the seed-0 pass),
    whatever ran before: calibration pools, precomputed teacher logits."""
    return reseeded(splits, 0).arrays("train", limit=limit)


def calibration_images(pool: np.ndarray, seed: int, count: int = 500) -> np.ndarray:
    """``count`` images for int8 calibration drawn by ``seed`` from ``pool`` (e.g. ``training_arrays(splits, 4000)[0]``)."""
    return pool[np.random.default_rng(seed).choice(len(pool), min(count, len(pool)), replace=False)]


def finetune(model, splits, steps: int, learning_rate: float, seed: int, checks: int = 4, select_after_step: int = 0,
             callbacks=(), cosine: bool = True, label_smoothing: float = 0.1) -> dict:
    """Fine-tune ``model`` in place for about ``steps`` steps (``checks`` equal parts), validating after each part;
    the weights of the part with the best validation top-1 among those ending after ``select_after_step`` are put back
    (early stopping on the validation split; the test split is never read). ``label_smoothing`` 0.1 as the baseline
    trained. Returns the steps run, the selected step, its validation top-1 and every check's (fractions)."""
    from edgeopt import TrainConfig, fit, keras  # lazy: as above

    per = max(1, steps // checks)
    first = next((e for e in range(checks) if (e + 1) * per > select_after_step), checks - 1)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=checks + 1, restore_best_weights=True,
                                         start_from_epoch=first)
    result = fit(model, splits, TrainConfig(epochs=checks, steps_per_epoch=per, learning_rate=learning_rate, seed=seed, cosine=cosine,
                                            label_smoothing=label_smoothing), callbacks=[*callbacks, stop])
    val = result.history.get("val_accuracy", [])
    return {"steps": per * checks, "selected_step": (stop.best_epoch + 1) * per, "val_top1": val[stop.best_epoch] if val else None,
            "val_checks": val}


# ---- resumable runs over (variant, seed) -------------------------------------------------------------------


def file_digest(path: os.PathLike, chars: int = 12) -> str:
    """The first ``chars`` hex digits of a file's sha256 (which baseline a cache belongs to)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:chars]


class BaselineRun:
    """What one run of a seeded benchmark over the baseline shares: the settings (``quick`` ones with ``--quick``:
    fine-tune steps, validation checks, calibration images, seeds), the baseline's splits and model, the pool of
    training images calibration sets are drawn from by seed, and the baseline file with its digest (the cache key)."""

    def __init__(self, args, quick: dict, checks: int, calibration: int, batch_size: int = BATCH):
        self.args, self.quick = args, args.quick
        self.steps, self.checks = (quick["steps"], quick["checks"]) if args.quick else (args.finetune_steps, checks)
        self.calibration = quick["calibration"] if args.quick else calibration
        self.seeds = list(range(quick["seeds"] if args.quick else args.seeds))
        self.splits = baseline_splits(args.quick, batch_size)
        self.model = load_baseline(args.baseline, args.quick, self.splits)
        self.pool = training_arrays(self.splits, 4000)[0]  # calibration images are drawn from it by seed
        self.baseline_file = baseline_used(args.baseline)
        self.digest = file_digest(self.baseline_file)


def seed_runs(name: str, settings: Mapping, quick: bool) -> "SeedRuns":
    """The cache of benchmark ``name`` (a folder path such as ``"pruning"`` or ``"lowbit/mobilenet"``): a full run keeps
    its results in benchmarks/raw/``name``/ (committed: the next session, on a fresh clone, continues where this one
    stopped) and its files under runs/bench_cache/``name``/; ``--quick`` keeps both under runs/bench_cache/quick/."""
    if quick:
        return SeedRuns(CACHE_ROOT / "quick" / name, settings)
    return SeedRuns(RAW_ROOT / name, settings, files_root=CACHE_ROOT / name)


class SeedRuns:
    """Finished (variant, seed) results of one benchmark configuration in ``folder``/runs.json, rewritten atomically
    after each, so a killed benchmark continues where it stopped. Each save merges with what other processes saved
    meanwhile (under a lock), so jobs split between processes with ``only`` share one checkout and one file.
    ``settings`` (steps, rates, the baseline's digest...; not the seed count) name the folder: other settings start a
    new one. Files a run keeps beside its result (:meth:`file`) go to the same-named folder under ``files_root``
    (default ``root``): results can be committed while the files stay out of git, so a job that needs an earlier job's
    file calls :meth:`ensure_files` first."""

    def __init__(self, root: os.PathLike, settings: Mapping, files_root: os.PathLike | None = None):
        import hashlib
        import json

        key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
        self.folder = Path(root) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files = Path(files_root if files_root is not None else root) / key
        self.files.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "runs.json"
        self.settings = dict(settings)
        self.results = self._read()

    @staticmethod
    def key(variant: str, seed) -> str:
        return f"{variant} | seed {seed}"

    def get(self, variant: str, seed=None) -> dict | None:
        return self.results.get(self.key(variant, seed))

    def put(self, variant: str, seed, result: Mapping) -> dict:
        self.results[self.key(variant, seed)] = {"variant": variant, "seed": seed, **result}
        self._save(put=[self.key(variant, seed)])
        return self.results[self.key(variant, seed)]

    def forget(self, variant: str, seed=None) -> bool:
        """Drop a finished result so that its job runs again; whether there was one."""
        if self.results.pop(self.key(variant, seed), None) is None:
            return False
        self._save(forgotten=[self.key(variant, seed)])
        return True

    def forget_all(self) -> int:
        """Drop every finished result (saved at once, other processes' too); how many there were."""
        dropped = set(self.results) | set(self._read())
        self._save(forgotten=dropped)
        return len(dropped)

    def _read(self) -> dict:
        import json

        return json.loads(self.path.read_text())["results"] if self.path.exists() else {}

    def _save(self, put: Iterable[str] = (), forgotten: Iterable[str] = ()) -> None:
        """Write this process's change (the keys ``put``, from :attr:`results`, and those ``forgotten``) into the file as
        it is now (another process may have saved others since) and read the rest back, holding an exclusive lock on
        ``runs.json.lock`` (under ``files_root``, out of git) so that two savers never drop each other's results."""
        import fcntl
        import json

        with open(self.files / "runs.json.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            forgotten = set(forgotten)
            on_disk = {k: v for k, v in self._read().items() if k not in forgotten}
            self.results = {**on_disk, **{k: self.results[k] for k in put}}
            write_file(self.path, json.dumps({"settings": self.settings, "results": self.results}, indent=1, default=str) + "\n")

    @classmethod
    def selected(cls, jobs: Sequence[tuple[str, object]], only: Sequence[str]) -> list[tuple[str, object]]:
        """The ``jobs`` that ``only`` names, each entry a variant (all its seeds) or a key as ``"VARIANT | seed N"``
        (one run); every job when ``only`` is empty. An entry that names no job is an error listing what would work."""
        if not only:
            return list(jobs)
        for name in only:
            if not any(name in (v, cls.key(v, s)) for v, s in jobs):
                choices = sorted({v for v, _ in jobs}) + [cls.key(*jobs[0])] if jobs else []
                raise ValueError(f"--only {name!r} names no job here; give a variant or one run as 'VARIANT | seed N', "
                                 f"e.g. {', '.join(repr(c) for c in choices)}")
        return [(v, s) for v, s in jobs if v in only or cls.key(v, s) in only]

    def file(self, variant: str, seed, suffix: str) -> Path:
        """Where a run keeps a file (a .tflite, weights) beside its result: under ``files_root``, not committed."""
        slug = "".join(c if c.isalnum() else "-" for c in variant).strip("-")
        return self.files / f"{slug}-s{seed}{suffix}"

    def ensure_files(self, needs: Iterable[tuple[str, object, Sequence[str]]], desc: str) -> list[tuple[str, object]]:
        """Before a job that reads earlier jobs' files: forget each finished ``(variant, seed, suffixes)`` whose files
        are not here (a fresh clone has the committed results, not the files), so it runs again. Says so; returns them."""
        gone = [(v, s) for v, s, suffixes in needs
                if self.get(v, s) is not None and not all(self.file(v, s, x).exists() for x in suffixes)]
        for variant, seed in gone:
            print(f"{desc}: {variant} (seed {seed}) is cached in {self.path} but its files are not in {self.files}; it runs again", flush=True)
            self.forget(variant, seed)
        return gone

    def run(self, jobs: Sequence[tuple[str, object]], work, seconds, desc: str) -> list[dict]:
        """Run ``work(variant, seed) -> dict`` for every job not finished yet, caching each result; ``seconds(variant)``
        estimates a job's wall time. Prints the estimate first and, after each job, the time left at the speed so far
        (the estimate scaled by measured / estimated time), with a progress bar. Returns every job's result in order."""
        import time

        from edgeopt.progress import bar  # lazy: as above

        left = [(v, s) for v, s in jobs if self.get(v, s) is None]
        estimate = sum(seconds(v) for v, _ in left)
        print(f"{desc}: {len(jobs) - len(left)} of {len(jobs)} runs cached in {self.path}; {len(left)} to run, estimated "
              f"{_duration(estimate)} on 2 idle cores", flush=True)
        spent = planned = 0.0
        with bar(total=len(left), desc=desc, unit="run") as shown:
            for i, (variant, seed) in enumerate(left):
                t0 = time.perf_counter()
                result = work(variant, seed)
                result.setdefault("seconds", time.perf_counter() - t0)
                self.put(variant, seed, result)
                spent, planned = spent + time.perf_counter() - t0, planned + seconds(variant)
                rest = sum(seconds(v) for v, _ in left[i + 1:]) * spent / planned
                shown.update(1)
                shown.write(f"{desc}: {i + 1}/{len(left)} done ({variant}, seed {seed}); about {_duration(rest)} left", file=sys.stdout)
        return [self.get(v, s) for v, s in jobs]


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"
