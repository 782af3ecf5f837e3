"""The recipe runner: ``run_recipe(path)`` runs the stages in order into a run directory, resumably.

runs/<recipe>/recipe.toml, NN-<stage>/{model.keras, result.json, ...}, report.json. A stage is done when
its ``result.json`` exists (written last, atomically) with the fingerprint of the recipe sections it
depends on; ``resume=True`` skips such stages and reloads the last saved model, so a run killed at any
point (even ``kill -9``) continues from the last completed stage. Shipped artifacts are copied from the
export stage to ``tflite_models/<recipe>/``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Callable

from edgeopt import io
from edgeopt._keras import keras, tf
from edgeopt.data import Splits, load_dataset
from edgeopt.io import save_model_atomic
from edgeopt.models import application_model, application_normalization, check_model_fits, create, load_model
from edgeopt.pipeline.recipe import DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, Recipe, RecipeError, load_recipe
from edgeopt.pipeline.stage import STAGES, RunContext, StageOutcome, StageResult, load_stage_model, model_metrics
from edgeopt.transfer import new_head

write_atomic = partial(io.write_atomic, overwrite=True)  # a run owns its directory: its files are replaced


def make_strategy(name: str):
    """The ``tf.distribute`` strategy a recipe names: none (default), mirrored (local devices) or
    multi_worker (machines listed in the TF_CONFIG environment variable)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise RecipeError("train.distribute = \"multi_worker\" needs the TF_CONFIG environment variable (cluster and task) on every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _user_model(recipe: Recipe) -> keras.Model | None:
    """The recipe's model file loaded (flat tf_keras; code in it refused unless allowed), or None for other sources."""
    m = recipe.model
    return load_model(m.path, allow_custom_code=m.allow_custom_code, custom_module=m.custom_module) if m.path else None


def _data_for(recipe: Recipe, user_model: keras.Model | None) -> dict:
    """image_size, channels, mean and std for the data: the recipe's, else what the model expects."""
    d, m = recipe.data, recipe.model
    size, channels = d.image_size, d.channels
    if user_model is not None:
        h, w, c = (tuple(user_model.input_shape[1:]) + (None, None, None))[:3]
        if size is None and h is not None and h != w:
            raise RecipeError(f"model.path {m.path} takes {h}x{w} images; edgeopt feeds square images: set data.image_size and rebuild the model square")
        size, channels = size or h, channels or c
        if size is None:
            raise RecipeError(f"model.path {m.path} accepts any image size: set data.image_size (e.g. 224)")
    mean, std = (application_normalization(m.application) if m.application else (127.5, 127.5))
    return {"image_size": size or DEFAULT_IMAGE_SIZE, "channels": channels or DEFAULT_CHANNELS,
            "mean": d.mean if d.mean is not None else mean, "std": d.std if d.std is not None else std}


def _create_model(recipe: Recipe, splits, user_model: keras.Model | None = None) -> keras.Model:
    """The model the first stage starts from, fitted to the data: the zoo model built for it, the application with a
    head for its classes, or the user's file (a new head when ``new_head``); a mismatch is a one-line error naming both."""
    prep, m = splits.preprocessing, recipe.model
    classes = len(prep.class_names)
    if m.application:
        return application_model(m.application, prep.input_shape, classes, weights=m.weights, include_top=m.include_top, **m.knobs)
    if user_model is None:
        return create(m.name, input_shape=prep.input_shape, classes=classes, weights=m.weights, **m.knobs)
    if m.new_head and user_model.output_shape[-1] != classes:
        user_model = new_head(user_model, classes)
    return check_model_fits(user_model, prep.input_shape, classes, recipe.data.dataset, class_names=prep.class_names, model_source=m.path)


def recipe_splits(recipe: Recipe, user_model: keras.Model | None = None) -> Splits:
    """The recipe's data as splits, as its run loads them: at the recipe's image size, channels and normalization, else
    those its model expects. ``user_model``: the recipe's model file, loaded (read here when the recipe has one)."""
    if user_model is None and recipe.model.path:
        user_model = _user_model(recipe)
    return _load_splits(recipe, _data_for(recipe, user_model))


def _load_splits(recipe: Recipe, data: dict) -> Splits:
    """The recipe's data as splits, at ``data`` (:func:`_data_for`: image_size, channels, mean, std)."""
    d = recipe.data
    return load_dataset(d.dataset, batch_size=d.batch_size, val_fraction=d.val_fraction, seed=d.seed, limit_train=d.limit_train,
                        limit_test=d.limit_test, augment=d.augment, crop_padding=d.crop_padding, cache=d.cache, on_bad_image=d.on_bad_image, **data)


def run_recipe(
    recipe: Recipe | str | Path,
    out_dir: str | Path = "runs",
    resume: bool = False,
    force: bool = False,
    artifacts_dir: str | Path | None = "tflite_models",
    progress: Callable[[str], None] = print,
    train_callbacks: tuple = (),
    evaluate_test: bool = True,
) -> dict:
    """Run every stage of ``recipe``; returns the run report (also written to ``report.json``).

    ``train_callbacks`` are extra Keras callbacks for ``train`` stages (a search reports and prunes trials with them).
    ``evaluate_test=False``: stages do not measure their Keras models on the test split (no ``test_top1``; a search
    trial, chosen on validation data only). It decides what is measured, not what is made: a stage finished either way
    is resumed either way (its fingerprint does not include it)."""
    recipe, recipe_text = _read_recipe(recipe)
    # Before any TensorFlow op: MultiWorkerMirroredStrategy can only configure collective ops at program startup.
    strategy = make_strategy(recipe.train.distribute)
    label = f"[run {recipe.name}]"
    # The model file and the data are read, and checked against each other, before the run directory is made.
    with strategy.scope():
        user_model = _user_model(recipe)
    data = _data_for(recipe, user_model)
    progress(f"{label} loading {recipe.data.dataset} at {data['image_size']}x{data['image_size']}x{data['channels']}")
    splits = _load_splits(recipe, data)
    if splits.skipped:
        progress(f"{label} skipped {len(splits.skipped)} unreadable image file(s) (data.on_bad_image = \"skip\"): {', '.join(splits.skipped[:3])}"
                 + (", ..." if len(splits.skipped) > 3 else ""))
    with strategy.scope():  # a model file is checked against the data now; zoo and application models are built for it
        first_model = _create_model(recipe, splits, user_model) if user_model is not None else None
    run_dir = _prepare_run_dir(Path(out_dir) / recipe.name, recipe_text, resume, force)
    if recipe.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    initial = (lambda: _create_model(recipe, splits, _user_model(recipe))) if recipe.model.path else None
    ctx = RunContext(recipe, splits, run_dir, strategy, progress, train_callbacks=tuple(train_callbacks), initial_model=initial,
                     evaluate_test=evaluate_test)
    # a run that starts from a trained model file: that model is the float baseline, measured once here (no stage trains it)
    source_metrics = model_metrics(first_model, ctx) if first_model is not None and recipe.model.path else None
    model, model_from, rerun = None, None, False
    total = len(recipe.stages)
    for i, (spec, stage_dir) in enumerate(zip(recipe.stages, ctx.stage_dirs())):
        stage = STAGES.get(spec.type)
        done = None if (rerun or not resume) else _finished(stage_dir, recipe.fingerprint(i))
        if done is not None:
            progress(f"{label} stage {i + 1}/{total} {spec.type}: done earlier, skipped (--resume)")
            ctx.results.append(done)
            if stage.makes_model:
                model, model_from = None, (stage_dir, spec.type)
            continue
        rerun = True  # from here on every stage runs again: its inputs may have changed
        if stage_dir.exists():
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True)
        keras.utils.set_random_seed(recipe.train.seed + i)  # before the model is built: its initial weights too
        if model is None:
            with ctx.strategy.scope():
                model = load_stage_model(*model_from) if model_from else first_model or _create_model(recipe, splits)
            first_model = None
        ctx.stage_dir, ctx.stage_label = stage_dir, f"stages[{i}] ({spec.type})"
        progress(f"{label} stage {i + 1}/{total} {spec.type}")
        ctx.splits = splits.with_fresh_train()  # same data order whether this stage runs first or after a resume
        model, result = _run_stage(ctx, i, model)
        ctx.results.append(result)
        progress(f"{label} stage {i + 1}/{total} {spec.type} done in {result.seconds:.0f} s: {_short(result.metrics)}")

    report = {"recipe": recipe.name, "description": recipe.description,
              "model": {"name": recipe.model.label, "knobs": recipe.model.knobs,
                        "source": {**_source_of(recipe), **({"metrics": source_metrics} if source_metrics else {})}},
              "data": {"dataset": recipe.data.dataset, "input_shape": list(splits.preprocessing.input_shape), "skipped_files": list(splits.skipped)},
              "stages": [r.to_dict() for r in ctx.results]}
    write_atomic(run_dir / "report.json", json.dumps(report, indent=1, default=str))
    if artifacts_dir is not None:
        _ship(ctx, Path(artifacts_dir) / recipe.name, report)
    return report


def _source_of(recipe: Recipe) -> dict:
    m = recipe.model
    return {"path": m.path, "new_head": m.new_head} if m.path else {"application": m.application} if m.application else {"zoo": m.name}


def _read_recipe(recipe: Recipe | str | Path) -> tuple[Recipe, str]:
    """The validated recipe and its file's text (empty for a Recipe object: nothing to copy into the run)."""
    if isinstance(recipe, Recipe):
        return recipe, ""
    return load_recipe(recipe), Path(recipe).read_text()


def _prepare_run_dir(run_dir: Path, recipe_text: str, resume: bool, force: bool) -> Path:
    """Create (or, with ``force``, empty) the run directory and copy the recipe into it; refuse to mix runs."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not force:
            raise FileExistsError(f"run directory {run_dir} already exists: pass --resume to continue it or --force to start it again")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if recipe_text:
        write_atomic(run_dir / "recipe.toml", recipe_text)
    return run_dir


def _finished(stage_dir: Path, fingerprint: str) -> StageResult | None:
    """The stage's result when it finished earlier with the same inputs (its ``result.json`` is written last)."""
    path = stage_dir / "result.json"
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    return StageResult.from_dict(done) if done.get("fingerprint") == fingerprint else None


def _run_stage(ctx: RunContext, i: int, model: keras.Model) -> tuple[keras.Model, StageResult]:
    """Run stage ``i`` on ``model``, save its model and then its ``result.json``; returns the next model and the result."""
    spec = ctx.recipe.stages[i]
    stage = STAGES.get(spec.type)
    start = time.perf_counter()
    outcome: StageOutcome = stage.run(ctx, model, spec.config)
    if stage.makes_model:
        model = outcome.model if outcome.model is not None else model
        (stage.save or save_model_atomic)(model, ctx.stage_dir / stage.model_file)
        outcome.files.setdefault("model", stage.model_file)
    result = StageResult(i, spec.type, ctx.stage_dir.name, ctx.recipe.fingerprint(i), spec.raw, round(time.perf_counter() - start, 1),
                         outcome.metrics, outcome.files)
    write_atomic(ctx.stage_dir / "result.json", json.dumps(result.to_dict(), indent=1, default=str))
    return model, result


def _short(metrics: dict) -> str:
    keys = ("test_top1", "val_top1", "sparsity")
    return ", ".join(f"{k}={metrics[k]}" for k in keys if k in metrics) or ", ".join(sorted(metrics))


def copy_artifacts(export_dir: Path, dest: Path) -> None:
    """Copy what an export stage wrote (.tflite files, manifests, labels; not its result.json) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(export_dir).iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name != "result.json":
            write_atomic(dest / f.name, f.read_bytes())


def _ship(ctx: RunContext, dest: Path, report: dict) -> None:
    """Copy the last export stage's files (and the report) to ``dest`` (our own artifact directory)."""
    export = ctx.last_result("export")
    if export is None:
        return
    copy_artifacts(ctx.run_dir / export.dir, dest)
    write_atomic(dest / "report.json", json.dumps(report, indent=1, default=str))
    ctx.progress(f"[run {report['recipe']}] artifacts in {dest}")
