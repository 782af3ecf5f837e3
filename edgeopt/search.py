"""Hyperparameter and architecture search over a recipe, on Optuna: ``run_search(recipe, space, SearchConfig)``.

Each trial runs the recipe (``edgeopt.pipeline.run_recipe``) with the trial's values set into it and
reports what it measured: accuracy of the ``.tflite`` (of the Keras model when the recipe has no bench
stage), its median latency at the first benchmarked thread count, size raw and gzipped, multiply-adds
and parameters. The study lives in a database (SQLite file by default, any SQLAlchemy URL to share it):

* The budget of N trials is queued in the study when it is created (``Study.enqueue_trial``). Grid and
  random trials are drawn in full then (a shuffled grid; Optuna's ``RandomSampler``), so every worker runs
  a distinct point; Bayesian (TPE) and NSGA-II trials are queued empty and sampled when a worker takes
  them, from every trial finished by then.
* A worker takes a queued trial by moving it from WAITING to RUNNING in the database, an atomic update
  that only one worker can win, runs it and stores its values. Workers on several machines that share one
  database URL therefore run each queued trial exactly once, and stop when the queue is empty.
* A running trial beats a heartbeat into the database. A worker that dies (kill -9, lost machine) stops
  beating; after the grace period any worker marks its trial failed and queues it again with the same
  values (Optuna's ``RetryHeartbeatStaleTrialCallback``), and the rerun resumes its recipe run from the last
  finished stage. Restarting ``edgeopt search`` with the same study therefore resumes the search.
* Poor trials stop early: a candidate whose multiply-adds or parameters break a constraint is pruned
  before any training (the EfficientNet-style fixed budget), and single-objective accuracy searches report
  validation accuracy each epoch to an Optuna pruner (median or Hyperband). Optuna has no pruning for
  multi-objective studies.
"""
from __future__ import annotations

import os
import shutil
import socket
import time
import tomllib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

from edgeopt._keras import keras
from edgeopt._schema import RecipeError
from edgeopt.pipeline import copy_artifacts, run_recipe
from edgeopt.recipe import recipe_from_dict
from edgeopt._study import META_KEY, Heartbeat, retry_history, take_queued_trial, open_study
from edgeopt.search_space import BEFORE_TRAINING, SearchSpace, apply_overrides, load_search_space

__all__ = ["SearchConfig", "SearchResult", "TrialRecord", "report_search", "run_search", "summarize", "trial_metrics"]

@dataclass(frozen=True)
class SearchConfig:
    """How to search: ``sampler`` (grid, random, bayes = TPE, nsga2), ``trials`` (the budget; a grid runs
    at most its size), ``pruner`` for single-objective accuracy searches, ``storage`` (database URL;
    default ``sqlite:///<out>/study.db``) and ``study`` name, heartbeat and grace period in seconds."""

    sampler: Literal["grid", "random", "bayes", "nsga2"] = "bayes"
    trials: int = 20
    seed: int = 0
    pruner: Literal["none", "median", "hyperband"] = "median"
    storage: str | None = None
    study: str | None = None
    heartbeat_seconds: int = 30
    grace_seconds: int = 120
    max_retry: int = 2
    join_timeout_seconds: float = 120.0

    def __post_init__(self):
        if self.sampler not in ("grid", "random", "bayes", "nsga2"):
            raise ValueError(f"sampler must be one of grid, random, bayes, nsga2; got {self.sampler!r}")
        if self.pruner not in ("none", "median", "hyperband"):
            raise ValueError(f"pruner must be one of none, median, hyperband; got {self.pruner!r}")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.heartbeat_seconds < 1 or self.grace_seconds <= self.heartbeat_seconds:
            raise ValueError(f"heartbeat_seconds must be >= 1 and grace_seconds larger, got {self.heartbeat_seconds} and {self.grace_seconds}")


@dataclass
class TrialRecord:
    """One trial as stored: Optuna state and parameters, recipe overrides, measured metrics, objective
    values, constraint violations (<= 0 holds), feasibility, Pareto membership and where its run is."""

    number: int
    state: str
    params: dict
    overrides: dict
    metrics: dict
    values: list | None
    violations: list
    feasible: bool | None
    pareto: bool = False
    run_dir: str | None = None
    worker: str | None = None
    seconds: float | None = None
    note: str | None = None
    retry_of: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    study: str
    storage: str
    sampler: str
    recipe: str
    objectives: list[str]
    directions: list[str]
    constraints: list[str]
    budget: int
    trials: list[TrialRecord] = field(default_factory=list)

    @property
    def pareto(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.pareto]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = self.counts()
        return d


# ---- metrics of one run ------------------------------------------------------------------------------


def trial_metrics(report: dict) -> dict:
    """What a search can optimize, from a run report: ``accuracy`` (the benchmarked .tflite's top-1, else the
    Keras model's), ``keras_accuracy``, ``latency_ms`` (median at the first benchmarked thread count),
    ``size_bytes``, ``gzip_bytes``, ``macs``, ``params``, and the export's top-1 agreement with Keras
    (``int8_agreement``); missing ones are absent."""
    from edgeopt.report import _bench_rows

    model_stages = [s["metrics"] for s in report["stages"] if "test_top1" in s["metrics"]]
    last = model_stages[-1] if model_stages else {}
    out = {k: last[k] for k in ("macs", "params") if last.get(k) is not None}
    if last.get("test_top1") is not None:
        out["keras_accuracy"] = out["accuracy"] = last["test_top1"]
        out["accuracy_of"] = "keras"
    export = next((s["metrics"].get("model", {}) for s in reversed(report["stages"]) if s["type"] == "export"), {})
    if export.get("agreement") is not None:
        out["int8_agreement" if export.get("mode") == "int8" else "agreement"] = export["agreement"]
    row = next((r for r in _bench_rows(report) if r["artifact"] == "model"), None)
    if row is not None:
        if row["top1"] is not None:
            out["accuracy"], out["accuracy_of"] = row["top1"], f"tflite {row['mode']}"
        out["size_bytes"], out["gzip_bytes"] = row["size_bytes"], row["gzip_bytes"]
        latency = sorted((int(k.rsplit("_", 1)[1]), v) for k, v in row.items() if k.startswith("median_ms_"))
        if latency:
            out["latency_ms"], out["latency_threads"] = latency[0][1], latency[0][0]
    return out


def _cost_before_training(recipe) -> dict:
    """Multiply-adds and parameters of the recipe's model as built (nothing trained)."""
    from edgeopt.data import class_names
    from edgeopt.models import create
    from edgeopt.profile import profile

    d = recipe.data
    classes = len(class_names(d.dataset))
    model = create(recipe.model.name, input_shape=(d.image_size, d.image_size, d.channels), classes=classes, **recipe.model.knobs)
    cost = profile(model)
    del model
    keras.backend.clear_session()
    return {"macs": cost.macs, "params": cost.params}


# ---- one trial ---------------------------------------------------------------------------------------


class _PruningCallback(keras.callbacks.Callback):
    """Reports validation accuracy after each epoch to the trial and stops it when the pruner says so."""

    def __init__(self, trial):
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch, logs=None):
        import optuna

        value = (logs or {}).get("val_accuracy")
        if value is None:
            return
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            why = f"pruned after epoch {epoch + 1}: validation accuracy {value:.4f} below the pruner's bar"
            self.trial.set_user_attr("note", why)
            raise optuna.TrialPruned(why)


def _suggest(trial, name: str, dist):
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


@dataclass
class _Job:
    """Everything a worker needs to run trials of one search."""

    base_doc: dict
    recipe_name: str
    space: SearchSpace
    config: SearchConfig
    out_dir: Path
    progress: Callable[[str], None]
    use_pruner: bool


def _objective(job: _Job, trial, trial_id: int) -> list[float]:
    import optuna

    params = {name: _suggest(trial, name, dist) for name, dist in job.space.distributions().items()}
    origin = _retry_origin(trial.storage.get_trial(trial_id))
    run_name = f"trial-{origin:04d}"
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("run_dir", str(job.out_dir / "trials" / run_name))
    try:
        overrides = job.space.overrides(params, job.base_doc)
    except ValueError as err:  # a compound point off the budget (resolution would shrink)
        trial.set_user_attr("note", str(err))
        raise optuna.TrialPruned(str(err)) from None
    trial.set_user_attr("overrides", overrides)
    doc = apply_overrides(job.base_doc, overrides)
    doc["name"] = run_name
    recipe = recipe_from_dict(doc, run_name, source=f"trial {trial.number}")
    early = [c for c in job.space.constraints if c.metric in BEFORE_TRAINING]
    if early:
        cost = _cost_before_training(recipe)
        broken = [c for c in early if c.violation(cost[c.metric]) > 0]
        if broken:
            trial.set_user_attr("metrics", cost)
            trial.set_user_attr("constraints", [c.violation(cost[c.metric]) if c.metric in cost else 1.0 for c in job.space.constraints])
            note = "; ".join(f"{c.metric} {cost[c.metric]:,} breaks {c}" for c in broken)
            trial.set_user_attr("note", f"pruned before training: {note}")
            raise optuna.TrialPruned(note)
    callbacks = (_PruningCallback(trial),) if job.use_pruner else ()
    start = time.perf_counter()
    report = run_recipe(recipe, out_dir=job.out_dir / "trials", resume=True, artifacts_dir=None, train_callbacks=callbacks,
                        progress=lambda msg: job.progress(f"  {msg}"))
    metrics = trial_metrics(report)
    trial.set_user_attr("metrics", metrics)
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
    missing = [o for o in job.space.objectives if metrics.get(o) is None]
    if missing:
        raise RecipeError(f"objective {missing[0]} was not measured: the recipe needs {'export and bench stages' if missing[0] != 'keras_accuracy' else 'a train stage'} for it")
    trial.set_user_attr("constraints", [c.violation(metrics[c.metric]) if metrics.get(c.metric) is not None else 1.0 for c in job.space.constraints])
    return [float(metrics[o]) for o in job.space.objectives]


def _retry_origin(frozen) -> int:
    """The number of the first try of this trial (a retried trial resumes that try's recipe run)."""
    history = retry_history(frozen)
    return history[0] if history else frozen.number


def _work(study, storage, job: _Job) -> int:
    """Run queued trials until none is left; returns how many this worker ran."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    ran = 0
    budget = study.user_attrs[META_KEY]["budget"]
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, then queued again
        trial, trial_id = take_queued_trial(study, storage)
        if trial is None:
            return ran
        planned = storage.get_trial(trial_id).system_attrs.get("fixed_params") or {}
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in planned.items()) or f"values from {job.config.sampler}"
        job.progress(f"[search {study.study_name}] trial {trial.number} (budget {budget}): {shown}")
        with Heartbeat(storage, trial_id, job.config.heartbeat_seconds):
            try:
                values = _objective(job, trial, trial_id)
            except optuna.TrialPruned as why:
                study.tell(trial, state=TrialState.PRUNED)
                job.progress(f"[search {study.study_name}] trial {trial.number} pruned: {why}")
            except KeyboardInterrupt:
                study.tell(trial, state=TrialState.FAIL)
                RetryHeartbeatStaleTrialCallback(max_retry=None)(study, storage.get_trial(trial_id))  # queued again for the resume
                raise
            except Exception as err:  # a config that cannot train/convert: recorded, the search goes on
                trial.set_user_attr("note", f"{type(err).__name__}: {err}"[:500])
                study.tell(trial, state=TrialState.FAIL)
                job.progress(f"[search {study.study_name}] trial {trial.number} failed: {type(err).__name__}: {err}")
                if isinstance(err, RecipeError):
                    raise
            else:
                study.tell(trial, values)
                shown = ", ".join(f"{o}={v:.4g}" for o, v in zip(job.space.objectives, values))
                job.progress(f"[search {study.study_name}] trial {trial.number} done: {shown}")
            finally:
                keras.backend.clear_session()  # free the trial's graphs: a long search would otherwise grow by each model
        ran += 1


def summarize(study, storage_url: str = "") -> SearchResult:
    """The study as a :class:`SearchResult`: every trial, constraint feasibility, and the Pareto front among
    complete feasible trials (for one objective: the best trial)."""
    from edgeopt.report import pareto_front

    meta = study.user_attrs.get(META_KEY, {})
    objectives = meta.get("objectives", [f"objective_{i}" for i in range(len(study.directions))])
    directions = [d.name.lower() for d in study.directions]
    records = []
    for t in study.get_trials(deepcopy=False):
        violations = t.user_attrs.get("constraints", [])
        history = retry_history(t)
        records.append(TrialRecord(
            number=t.number, state=t.state.name, params=dict(t.params), overrides=t.user_attrs.get("overrides", {}),
            metrics=t.user_attrs.get("metrics", {}), values=list(t.values) if t.values is not None else None, violations=violations,
            feasible=(all(v <= 0 for v in violations) if violations else True) if t.state.name == "COMPLETE" else None,
            run_dir=t.user_attrs.get("run_dir"), worker=t.user_attrs.get("worker"), seconds=t.user_attrs.get("seconds"),
            note=t.user_attrs.get("note"), retry_of=history[0] if history else None))
    candidates = [r for r in records if r.state == "COMPLETE" and r.feasible]
    for r, keep in zip(candidates, pareto_front([r.values for r in candidates], directions)):
        r.pareto = keep
    return SearchResult(study.study_name, storage_url, meta.get("sampler", "?"), meta.get("recipe", "?"), objectives, directions,
                        meta.get("constraints", []), meta.get("budget", 0), records)


def keep_pareto_artifacts(result: SearchResult, dest: Path) -> list[Path]:
    """Copy each Pareto trial's exported files (model.tflite, manifest, labels) into ``dest/trial-NNNN/``
    and remove the ``trial-NNNN`` folders of trials no longer on the front; trials run on another machine
    are skipped (their run directory is there). Returns the folders written."""
    kept = []
    for t in result.pareto:
        exports = sorted(Path(t.run_dir).glob("*-export")) if t.run_dir else []
        if not exports:
            continue
        target = Path(dest) / f"trial-{t.number:04d}"
        copy_artifacts(exports[-1], target)
        kept.append(target)
    for old in Path(dest).glob("trial-[0-9][0-9][0-9][0-9]") if Path(dest).is_dir() else []:
        if old not in kept:
            shutil.rmtree(old)
    return kept


def run_search(recipe_path: str | Path, space: SearchSpace | str | Path, config: SearchConfig = SearchConfig(),
               out_dir: str | Path | None = None, progress: Callable[[str], None] = print,
               artifacts_dir: str | Path | None = None) -> SearchResult:
    """Run (or join, or resume) the search and write its report into ``out_dir`` (default
    ``runs/search/<study>``): search.md/.csv/.json and search_pareto.png; the Pareto trials' artifacts go to
    ``artifacts_dir/trial-NNNN/`` (default ``<out_dir>/pareto``). Returns the study summary."""
    from edgeopt.report import write_search_report

    recipe_path = Path(recipe_path)
    if not recipe_path.is_file():
        raise RecipeError(f"recipe file {recipe_path} does not exist")
    space = space if isinstance(space, SearchSpace) else load_search_space(space)
    base_doc = tomllib.loads(recipe_path.read_text())
    recipe = recipe_from_dict(base_doc, recipe_path.stem, source=str(recipe_path))
    _check_space(space, base_doc, recipe, str(recipe_path))
    name = config.study or f"{recipe.name}-{config.sampler}"
    out = Path(out_dir) if out_dir is not None else Path("runs") / "search" / name
    out.mkdir(parents=True, exist_ok=True)
    study, storage, url = open_study(space, config, base_doc, recipe.name, out, progress)
    single_accuracy = len(space.objectives) == 1 and space.objectives[0] in ("accuracy", "keras_accuracy")
    job = _Job(base_doc, recipe.name, space, config, out, progress, use_pruner=single_accuracy and config.pruner != "none")
    ran = _work(study, storage, job)
    result = summarize(study, url)
    keep_pareto_artifacts(result, Path(artifacts_dir) if artifacts_dir is not None else out / "pareto")
    write_search_report(result, out)
    progress(f"[search {name}] this worker ran {ran} trials; study: {result.counts()}; report in {out}/search.md")
    return result


def report_search(storage_url: str, study: str, out_dir: str | Path, progress: Callable[[str], None] = print,
                  artifacts_dir: str | Path | None = None) -> SearchResult:
    """Summarize an existing study (no trial is run): the report files and the Pareto artifacts found here."""
    import optuna
    from edgeopt.report import write_search_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        loaded = optuna.load_study(study_name=study, storage=storage_url)
    except KeyError:
        raise RecipeError(f"no study {study!r} in {storage_url}") from None
    result = summarize(loaded, storage_url)
    out = Path(out_dir)
    keep_pareto_artifacts(result, Path(artifacts_dir) if artifacts_dir is not None else out / "pareto")
    write_search_report(result, out)
    progress(f"[search {study}] study: {result.counts()}; report in {out}/search.md")
    return result


def _check_space(space: SearchSpace, base_doc: dict, recipe, source: str) -> None:
    """Fail before any training when a searched value makes an invalid recipe, or an objective needs a
    stage the recipe lacks. Errors name the space entry and the recipe field."""
    types = [s.type for s in recipe.stages]
    needs_bench = [o for o in space.objectives + tuple(c.metric for c in space.constraints) if o in ("latency_ms", "size_bytes", "gzip_bytes")]
    if needs_bench and "bench" not in types:
        raise RecipeError(f"{source}: {needs_bench[0]} needs export and bench stages in the recipe (stages: {', '.join(types)})")
    for path, spec in space.params.items():
        values = list(spec.choices) if spec.choices is not None else [spec.low, spec.high]
        for value in values:
            try:
                recipe_from_dict(apply_overrides(base_doc, {path: value}), recipe.name, source=f"{source} with {path} = {value!r}")
            except RecipeError as err:
                raise RecipeError(f"{space.source}: params.{path!r}: {err}") from None
    if space.compound:
        try:
            recipe_from_dict(apply_overrides(base_doc, space.overrides({"compound.alpha": 1.0, "compound.beta": 1.0}, base_doc)), recipe.name, source=source)
        except RecipeError as err:
            raise RecipeError(f"{space.source}: compound: {err}") from None
