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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt._keras import keras, tf
from edgeopt.recipe import Recipe, RecipeError, load_recipe
from edgeopt.stages import STAGES, StageOutcome


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file, fsync, rename): runs own these files."""
    from edgeopt.export import write_atomic as _write_atomic

    _write_atomic(path, data.encode() if isinstance(data, str) else data, overwrite=True)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


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


@dataclass
class RunContext:
    """What a stage can use: the recipe, data splits, its directory, and earlier stages' results."""

    recipe: Recipe
    splits: object
    run_dir: Path
    strategy: object
    progress: Callable[[str], None]
    results: list = field(default_factory=list)
    train_callbacks: tuple = ()  # extra Keras callbacks for the train stage (e.g. a search's trial pruning)
    stage_dir: Path | None = None
    stage_label: str = ""

    def stage_dirs(self) -> list[Path]:
        return [self.run_dir / f"{i:02d}-{s.type}" for i, s in enumerate(self.recipe.stages)]

    def baseline_model(self) -> keras.Model | None:
        """The float model saved by the most recent ``train`` stage, if any."""
        for result in reversed(self.results):
            if result["type"] == "train":
                return load_stage_model(self.run_dir / result["dir"], "train")
        return None

    def last_export(self) -> dict[str, Path] | None:
        """``{name: path}`` of the .tflite files of the most recent export stage."""
        for result in reversed(self.results):
            if result["type"] == "export":
                return {stem: self.run_dir / result["dir"] / name for stem, name in result["files"].items()}
        return None


def load_model_safe(path: Path) -> keras.Model:
    """A saved .keras model, never running code from the file (Lambda layers are refused)."""
    return keras.models.load_model(path, safe_mode=True, compile=False)


def load_stage_model(stage_dir: Path, stage_type: str) -> keras.Model:
    stage = STAGES.get(stage_type)
    path = Path(stage_dir) / stage.model_file
    return (stage.load or load_model_safe)(path)


def _create_model(recipe: Recipe, splits) -> keras.Model:
    from edgeopt.models import create

    prep = splits.preprocessing
    return create(recipe.model.name, input_shape=prep.input_shape, classes=len(prep.class_names), weights=recipe.model.weights, **recipe.model.knobs)


def _load_splits(recipe: Recipe):
    from edgeopt.data import load_dataset

    d = recipe.data
    return load_dataset(d.dataset, image_size=d.image_size, channels=d.channels, batch_size=d.batch_size, val_fraction=d.val_fraction,
                        seed=d.seed, limit_train=d.limit_train, limit_test=d.limit_test, augment=d.augment)


def run_recipe(
    recipe: Recipe | str | Path,
    out_dir: str | Path = "runs",
    resume: bool = False,
    force: bool = False,
    artifacts_dir: str | Path | None = "tflite_models",
    progress: Callable[[str], None] = print,
    train_callbacks: tuple = (),
) -> dict:
    """Run every stage of ``recipe``; returns the run report (also written to ``report.json``).

    ``train_callbacks`` are extra Keras callbacks for ``train`` stages (a search reports and prunes trials with them)."""
    if not isinstance(recipe, Recipe):
        recipe_path = Path(recipe)
        recipe = load_recipe(recipe_path)
        recipe_text = recipe_path.read_text()
    else:
        recipe_text = ""
    # Before any TensorFlow op: MultiWorkerMirroredStrategy can only configure collective ops at program startup.
    strategy = make_strategy(recipe.train.distribute)
    run_dir = Path(out_dir) / recipe.name
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not force:
            raise FileExistsError(f"run directory {run_dir} already exists: pass --resume to continue it or --force to start it again")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if recipe_text:
        write_atomic(run_dir / "recipe.toml", recipe_text)
    if recipe.train.deterministic:
        tf.config.experimental.enable_op_determinism()

    label = f"[run {recipe.name}]"
    progress(f"{label} loading {recipe.data.dataset} at {recipe.data.image_size}x{recipe.data.image_size}x{recipe.data.channels}")
    splits = _load_splits(recipe)
    ctx = RunContext(recipe, splits, run_dir, strategy, progress, train_callbacks=tuple(train_callbacks))
    model, model_from, rerun = None, None, False
    total = len(recipe.stages)
    for i, (spec, stage_dir) in enumerate(zip(recipe.stages, ctx.stage_dirs())):
        stage = STAGES.get(spec.type)
        fingerprint = recipe.fingerprint(i)
        result_path = stage_dir / "result.json"
        if resume and not rerun and result_path.exists():
            done = json.loads(result_path.read_text())
            if done.get("fingerprint") == fingerprint:
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
                model = load_stage_model(*model_from) if model_from else _create_model(recipe, splits)
        ctx.stage_dir, ctx.stage_label = stage_dir, f"stages[{i}] ({spec.type})"
        progress(f"{label} stage {i + 1}/{total} {spec.type}")
        ctx.splits = splits.with_fresh_train()  # same data order whether this stage runs first or after a resume
        start = time.perf_counter()
        outcome: StageOutcome = stage.run(ctx, model, spec.config)
        if stage.makes_model:
            model = outcome.model if outcome.model is not None else model
            (stage.save or save_model_atomic)(model, stage_dir / stage.model_file)
            outcome.files.setdefault("model", stage.model_file)
        result = {"stage": i, "type": spec.type, "dir": stage_dir.name, "fingerprint": fingerprint, "config": spec.raw,
                  "seconds": round(time.perf_counter() - start, 1), "metrics": outcome.metrics, "files": outcome.files}
        write_atomic(result_path, json.dumps(result, indent=1, default=str))
        ctx.results.append(result)
        progress(f"{label} stage {i + 1}/{total} {spec.type} done in {result['seconds']:.0f} s: {_short(outcome.metrics)}")

    report = {"recipe": recipe.name, "description": recipe.description, "model": {"name": recipe.model.name, "knobs": recipe.model.knobs},
              "data": {"dataset": recipe.data.dataset, "input_shape": list(splits.preprocessing.input_shape)}, "stages": ctx.results}
    write_atomic(run_dir / "report.json", json.dumps(report, indent=1, default=str))
    if artifacts_dir is not None:
        _ship(ctx, Path(artifacts_dir) / recipe.name, report)
    return report


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
    export = next((r for r in reversed(ctx.results) if r["type"] == "export"), None)
    if export is None:
        return
    copy_artifacts(ctx.run_dir / export["dir"], dest)
    write_atomic(dest / "report.json", json.dumps(report, indent=1, default=str))
    ctx.progress(f"[run {report['recipe']}] artifacts in {dest}")
