"""One trial of a search: the recipe with the trial's values, run and measured on the validation split; what a search can
optimize; a reported trial measured once on the test split."""
from __future__ import annotations

import copy
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeopt._keras import keras
from edgeopt.bench import BenchResult
from edgeopt.config import RecipeError
from edgeopt.data import class_names
from edgeopt.models import create
from edgeopt.pipeline import recipe_splits, run_recipe
from edgeopt.pipeline.stage import keras_test_top1, last_model_metrics, last_model_stage, latest, load_stage_model, stage_results
from edgeopt.pipeline.recipe import DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, recipe_from_dict
from edgeopt.costs import profile
from edgeopt.search.result import SearchConfig
from edgeopt.search.space import BEFORE_TRAINING, SearchSpace, apply_overrides
from edgeopt.search.study import retry_history


def trial_metrics(report: dict) -> dict:
    """What a search can optimize, from a run report, none of it measured on the test split: ``accuracy`` (the
    benchmarked .tflite's top-1 on the validation split, else the Keras model's), ``keras_accuracy`` (the Keras
    model's validation top-1), ``val_samples`` (validation images the .tflite's accuracy counted),
    ``latency_ms`` (median at the first benchmarked thread count), ``size_bytes``, ``gzip_bytes``, ``macs``,
    ``params``, and the export's top-1 agreement with Keras on validation images (``int8_agreement``); missing
    ones are absent. A bench accuracy measured on the test split is left out: see :func:`metrics_on_test`."""
    stages = stage_results(report)
    last = last_model_metrics(stages)
    out = {k: last[k] for k in ("macs", "params") if last.get(k) is not None}
    if last.get("val_top1") is not None:
        out["keras_accuracy"] = out["accuracy"] = last["val_top1"]
        out["accuracy_of"] = "keras"
    export = latest(stages, "export")
    shipped = export.metrics.get("model", {}) if export else {}
    if shipped.get("agreement") is not None:
        out["int8_agreement" if shipped.get("mode") == "int8" else "agreement"] = shipped["agreement"]
    result = _benchmarked(stages)
    if result is not None:
        if result.accuracy is not None and result.accuracy.split == "val":
            out["accuracy"], out["accuracy_of"] = result.accuracy.top1, f"tflite {shipped.get('mode', '?')}"
            out["val_samples"] = result.accuracy.samples
        out["size_bytes"], out["gzip_bytes"] = result.size.size_bytes, result.size.gzip_bytes
        if result.latency:
            first = min(result.latency, key=lambda r: r.threads)
            out["latency_ms"], out["latency_threads"] = first.median_ms, first.threads
    return out


def metrics_on_test(report: dict, keras_top1: float | None = None) -> dict:
    """What a reported model scores on the test split, from the run report of its recipe run with bench stages on
    the test split: ``test_accuracy`` (the .tflite's top-1, else the Keras model's), ``test_accuracy_of``,
    ``test_samples`` (test images the .tflite's accuracy counted) and ``keras_test_accuracy`` (``keras_top1``, the
    last Keras model's test top-1 measured apart, else the one its stage measured, if any)."""
    stages = stage_results(report)
    if keras_top1 is None:
        keras_top1 = last_model_metrics(stages).get("test_top1")
    out = {}
    if keras_top1 is not None:
        out["keras_test_accuracy"] = out["test_accuracy"] = keras_top1
        out["test_accuracy_of"] = "keras"
    result = _benchmarked(stages)
    if result is not None and result.accuracy is not None and result.accuracy.split == "test":
        export = latest(stages, "export")
        mode = export.metrics.get("model", {}).get("mode", "?") if export else "?"
        out["test_accuracy"], out["test_accuracy_of"], out["test_samples"] = result.accuracy.top1, f"tflite {mode}", result.accuracy.samples
    return out


def _benchmarked(stages) -> BenchResult | None:
    """The last bench stage's result for the shipped file (``model``), if any."""
    bench = latest(stages, "bench")
    return BenchResult.from_dict(bench.metrics["model"]) if bench is not None and "model" in bench.metrics else None


def with_bench_split(doc: dict, split: str) -> dict:
    """A copy of recipe data ``doc`` whose bench stages measure accuracy on ``split`` ("val": a trial; "test": a
    reported model, once)."""
    out = copy.deepcopy(doc)
    for s in out.get("stages", []):
        if isinstance(s, dict) and s.get("type") == "bench":
            s["split"] = split
    return out


def _cost_before_training(recipe) -> dict:
    """Multiply-adds and parameters of the recipe's model as built (nothing trained)."""

    d = recipe.data
    if not recipe.model.name:
        raise RecipeError(f"{recipe.source}: a search builds zoo models (model.name); model {recipe.model.label} is a file or an application")
    classes = len(class_names(d.dataset))
    size, channels = d.image_size or DEFAULT_IMAGE_SIZE, d.channels or DEFAULT_CHANNELS
    model = create(recipe.model.name, input_shape=(size, size, channels), classes=classes, **recipe.model.knobs)
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
class Job:
    """Everything a worker needs to run trials of one search."""

    base_doc: dict
    recipe_name: str
    space: SearchSpace
    config: SearchConfig
    out_dir: Path
    progress: Callable[[str], None]
    use_pruner: bool


def run_trial(job: Job, trial, trial_id: int) -> list[float]:
    """Run one trial's recipe and return its objective values; raises optuna.TrialPruned for a pruned one."""
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
    doc = with_bench_split(apply_overrides(job.base_doc, overrides), "val")  # trials are chosen on validation data only
    doc["name"] = run_name
    recipe = recipe_from_dict(doc, run_name, source=f"trial {trial.number}")
    _prune_before_training(job, trial, recipe)
    callbacks = (_PruningCallback(trial),) if job.use_pruner else ()
    start = time.perf_counter()
    report = run_recipe(recipe, out_dir=job.out_dir / "trials", resume=True, artifacts_dir=None, train_callbacks=callbacks,
                        progress=lambda msg: job.progress(f"  {msg}"), evaluate_test=False)  # no Keras model reads the test split
    metrics = trial_metrics(report)
    trial.set_user_attr("metrics", metrics)
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
    missing = [o for o in job.space.objectives if metrics.get(o) is None]
    if missing:
        raise RecipeError(f"objective {missing[0]} was not measured: the recipe needs {'export and bench stages' if missing[0] != 'keras_accuracy' else 'a train stage'} for it")
    trial.set_user_attr("constraints", [c.violation(metrics[c.metric]) if metrics.get(c.metric) is not None else 1.0 for c in job.space.constraints])
    return [float(metrics[o]) for o in job.space.objectives]


def _prune_before_training(job: Job, trial, recipe) -> None:
    """Raise optuna.TrialPruned when the built (untrained) model breaks a multiply-add or parameter constraint."""
    import optuna  # optional dependency (edgeopt[search])

    early = [c for c in job.space.constraints if c.metric in BEFORE_TRAINING]
    if not early:
        return
    cost = _cost_before_training(recipe)
    broken = [c for c in early if c.violation(cost[c.metric]) > 0]
    if broken:
        trial.set_user_attr("metrics", cost)
        trial.set_user_attr("constraints", [c.violation(cost[c.metric]) if c.metric in cost else 1.0 for c in job.space.constraints])
        note = "; ".join(f"{c.metric} {cost[c.metric]:,} breaks {c}" for c in broken)
        trial.set_user_attr("note", f"pruned before training: {note}")
        raise optuna.TrialPruned(note)


def _retry_origin(frozen) -> int:
    """The number of the first try of this trial (a retried trial resumes that try's recipe run)."""
    history = retry_history(frozen)
    return history[0] if history else frozen.number


# ---- a reported trial on the test split ---------------------------------------------------------------


def measure_on_test(base_doc: dict, number: int, overrides: dict, run_dir: str | Path, progress: Callable[[str], None]) -> dict:
    """Trial ``number``'s recipe run again in its run directory with its last bench stage on the test split: the
    models it trained and exported are reused (the stages before that bench stage are done) and the test split is
    read once by that stage (the .tflite) and once by the trial's last Keras model; returns its
    :func:`metrics_on_test`. Raises RecipeError when the run directory does not hold those finished stages (a trial
    run on another machine, or removed): nothing is trained again."""
    run_dir = Path(run_dir)
    doc = with_bench_split(apply_overrides(base_doc, overrides), "val")  # the trial's recipe, as run_trial ran it
    doc["name"] = run_dir.name
    benches = [i for i, s in enumerate(doc.get("stages", [])) if s.get("type") == "bench"]
    if benches:
        doc["stages"][benches[-1]]["split"] = "test"
    recipe = recipe_from_dict(doc, run_dir.name, source=f"trial {number} on the test split")
    for i, spec in enumerate(recipe.stages[: benches[-1] if benches else None]):
        done = run_dir / f"{i:02d}-{spec.type}" / "result.json"
        if not done.is_file() or json.loads(done.read_text()).get("fingerprint") != recipe.fingerprint(i):
            raise RecipeError(f"trial {number}: {done} is missing or from another recipe: its models are not on this machine")
    report = run_recipe(recipe, out_dir=run_dir.parent, resume=True, artifacts_dir=None, progress=progress, evaluate_test=False)
    return metrics_on_test(report, _last_model_on_test(recipe, run_dir, stage_results(report), progress))


def _last_model_on_test(recipe, run_dir: Path, stages, progress: Callable[[str], None]) -> float | None:
    """Test top-1 of the last Keras model the run saved (None: none did), read from its stage directory."""
    last = last_model_stage(stages)
    if last is None or "model" not in last.files:
        return None
    progress(f"[run {recipe.name}] measuring the Keras model of stage {last.stage} ({last.type}) on the test split")
    splits = recipe_splits(recipe)
    model = load_stage_model(run_dir / last.dir, last.type)
    return keras_test_top1(model, splits)
