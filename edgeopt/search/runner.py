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
* Trials are chosen on the validation split only: every bench stage of a trial measures the ``.tflite`` on
  it, Keras accuracies are validation accuracies, and the export checks its agreement on it. The test
  split is read once per reported model: when no trial is left to run, each trial on the Pareto front (the
  best trial of one objective) is measured on it by its recipe's last bench stage, run again on the trained
  and exported files in its run directory. The test metrics are kept in the study and shown beside the
  validation ones (``test_accuracy``); they never choose anything.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Callable

import tomllib

from edgeopt._keras import keras
from edgeopt.config import RecipeError
from edgeopt.pipeline import copy_artifacts
from edgeopt.pipeline.recipe import recipe_from_dict
from edgeopt.report import write_search_report
from edgeopt.search.objective import Job, measure_on_test, run_trial
from edgeopt.search.result import SearchConfig, SearchResult, summarize
from edgeopt.search.space import SearchSpace, apply_overrides, load_search_space
from edgeopt.search.study import META_KEY, TEST_KEY, Heartbeat, open_study, take_queued_trial


def _work(study, storage, job: Job) -> int:
    """Run queued trials until none is left; returns how many this worker ran."""
    import optuna  # optional dependency (edgeopt[search]), loaded when a search runs

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
            _run_and_tell(study, storage, job, trial, trial_id)
        ran += 1


def _run_and_tell(study, storage, job: Job, trial, trial_id: int) -> None:
    """Run one taken trial and record how it ended (complete, pruned, failed; queued again on Ctrl-C)."""
    import optuna  # optional dependency (edgeopt[search])
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    label = f"[search {study.study_name}] trial {trial.number}"
    try:
        values = run_trial(job, trial, trial_id)
    except optuna.TrialPruned as why:
        study.tell(trial, state=TrialState.PRUNED)
        job.progress(f"{label} pruned: {why}")
    except KeyboardInterrupt:
        study.tell(trial, state=TrialState.FAIL)
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, storage.get_trial(trial_id))  # queued again for the resume
        raise
    except Exception as err:  # a config that cannot train/convert: recorded, the search goes on
        trial.set_user_attr("note", f"{type(err).__name__}: {err}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        job.progress(f"{label} failed: {type(err).__name__}: {err}")
        if isinstance(err, RecipeError):
            raise
    else:
        study.tell(trial, values)
        job.progress(f"{label} done: " + ", ".join(f"{o}={v:.4g}" for o, v in zip(job.space.objectives, values)))
    finally:
        keras.backend.clear_session()  # free the trial's graphs: a long search would otherwise grow by each model


def measure_reported(study, base_doc: dict, progress: Callable[[str], None] = print) -> int:
    """Measure each reported trial (Pareto front, or best trial) not measured yet on the test split, once
    (:func:`edgeopt.search.objective.measure_on_test`), and keep its test metrics in the study; does nothing
    while trials are queued or running (the front may still change). Returns how many were measured."""
    from optuna.trial import TrialState  # optional dependency (edgeopt[search])

    if study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)):
        progress(f"[search {study.study_name}] trials still run on other workers: the last worker to finish measures the reported trials on the test split")
        return 0
    tested = dict(study.user_attrs.get(TEST_KEY, {}))
    measured = 0
    for t in summarize(study).pareto:
        if str(t.number) in tested or not t.run_dir:
            continue
        progress(f"[search {study.study_name}] trial {t.number} (reported): measuring it on the test split, once")
        try:
            tested[str(t.number)] = measure_on_test(base_doc, t.number, t.overrides, t.run_dir, lambda msg: progress(f"  {msg}"))
        except RecipeError as err:
            progress(f"[search {study.study_name}] trial {t.number}: test split not measured: {err}")
            continue
        finally:
            keras.backend.clear_session()
        study.set_user_attr(TEST_KEY, tested)
        measured += 1
    return measured


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
    """Run (or join, or resume) the search, measure the reported trials on the test split once (when no trial is
    left to run) and write its report into ``out_dir`` (default ``runs/search/<study>``): search.md/.csv/.json
    and search_pareto.png; the Pareto trials' artifacts go to ``artifacts_dir/trial-NNNN/`` (default
    ``<out_dir>/pareto``). Returns the study summary. A recipe with ``data.val_fraction = 0`` is refused: trials
    are chosen on the validation split."""
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
    job = Job(base_doc, recipe.name, space, config, out, progress, use_pruner=single_accuracy and config.pruner != "none")
    ran = _work(study, storage, job)
    measure_reported(study, base_doc, progress)
    result = summarize(study, url)
    keep_pareto_artifacts(result, Path(artifacts_dir) if artifacts_dir is not None else out / "pareto")
    write_search_report(result, out)
    progress(f"[search {name}] this worker ran {ran} trials; study: {result.counts()}; report in {out}/search.md")
    return result


def report_search(storage_url: str, study: str, out_dir: str | Path, progress: Callable[[str], None] = print,
                  artifacts_dir: str | Path | None = None) -> SearchResult:
    """Summarize an existing study (no trial is run, nothing is measured): the report files, with the test
    metrics the search measured, and the Pareto artifacts found here."""
    import optuna

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
    stage the recipe lacks, or a recipe leaves no validation split to choose on. Errors name the space entry and
    the recipe field."""
    _check_val_split(recipe, source)
    types = [s.type for s in recipe.stages]
    needs_bench = [o for o in space.objectives + tuple(c.metric for c in space.constraints) if o in ("latency_ms", "size_bytes", "gzip_bytes")]
    if needs_bench and "bench" not in types:
        raise RecipeError(f"{source}: {needs_bench[0]} needs export and bench stages in the recipe (stages: {', '.join(types)})")
    for path, spec in space.params.items():
        values = list(spec.choices) if spec.choices is not None else [spec.low, spec.high]
        for value in values:
            try:
                _check_val_split(recipe_from_dict(apply_overrides(base_doc, {path: value}), recipe.name, source=f"{source} with {path} = {value!r}"), "")
            except RecipeError as err:
                raise RecipeError(f"{space.source}: params.{path!r}: {err}") from None
    if space.compound:
        try:
            recipe_from_dict(apply_overrides(base_doc, space.overrides({"compound.alpha": 1.0, "compound.beta": 1.0}, base_doc)), recipe.name, source=source)
        except RecipeError as err:
            raise RecipeError(f"{space.source}: compound: {err}") from None


def _check_val_split(recipe, source: str) -> None:
    if recipe.data.val_fraction == 0:
        raise RecipeError(f"{source + ': ' if source else ''}data.val_fraction is 0: a search chooses trials on the validation split; set it above 0 (default 0.1)")
