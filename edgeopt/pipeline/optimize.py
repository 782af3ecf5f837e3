"""``edgeopt optimize MODEL --data D [--prune S] [--qat] [--cluster N] [--distill-from T]``: a recipe for a user's model.

:func:`optimize_recipe` writes the recipe a mobile engineer would write by hand for their trained model and image
folder, as plain data (then TOML, :func:`recipe_toml`), so the run can be repeated, edited and resumed:

- the model file as it is (``[model] path``); a zoo name is trained first; a model whose class count differs from
  the data's gets a new head and a ``finetune`` stage (head on the frozen backbone, then every block);
- compression in the order that keeps each step's gains: distillation from the teacher file, magnitude pruning,
  weight clustering (keeping the zeros), quantization-aware training (keeping zeros and clusters), each fine-tuned
  for ``epochs`` at ``learning_rate`` (default 1e-4: the weights are already trained);
- with none of them, post-training int8 quantization only (calibrated on training images, no training);
- an int8 export with uint8 input/output, the standard TFLite metadata and labels inside (what Android's
  ImageClassifier loads), next to the float32 baseline, then accuracy, size and latency of both.

:func:`prepare_run` writes it as TOML (``edgeopt.config.to_toml``) into the output folder, refusing to replace a
different recipe there unless asked.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from edgeopt.config import to_toml
from edgeopt.data import class_names
from edgeopt.io import write_atomic
from edgeopt.models import MODELS, check_model_path, load_model
from edgeopt.pipeline.recipe import recipe_from_dict

FINETUNE_LEARNING_RATE = 1e-3  # a new head learns from scratch; its backbone then moves at a tenth of it


def model_source(model: str) -> dict:
    """The ``[model]`` table for MODEL: a zoo name, or a model file (.keras / .h5 / SavedModel directory)."""
    if model in MODELS and not Path(model).exists():
        return {"name": model}
    if not Path(model).expanduser().exists():
        raise FileNotFoundError(f"model {model!r} is neither a file nor a zoo model; pass a .keras/.h5 file, a SavedModel directory or one of "
                                f"{', '.join(MODELS.names())}")
    return {"path": str(check_model_path(model, "model").resolve())}


def recipe_name(model: str) -> str:
    """A run name from the model's file name (letters, digits, '-' and '_')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(model).stem if Path(model).suffix else Path(model).name).strip("_") or "model"


def optimize_recipe(model: str, data: str, *, prune: float | None = None, cluster: int | None = None, qat: bool = False,
                    distill_from: str | None = None, epochs: int = 2, learning_rate: float = 1e-4, image_size: int | None = None,
                    batch_size: int = 32, train_epochs: int = 10, name: str | None = None) -> dict:
    """The recipe (plain data, validated) that compresses ``model`` on ``data`` with the chosen methods."""
    source = model_source(model)
    stages: list[dict] = []
    if "name" in source:
        stages.append({"type": "train", "epochs": train_epochs, "learning_rate": 2e-3})
    else:
        user = load_model(source["path"])
        classes = len(class_names(data))
        if user.output_shape[-1] != classes:
            source["new_head"] = True
            stages.append({"type": "finetune", "head_epochs": max(1, epochs // 2), "unfreeze": "all", "epochs": max(epochs, 2),
                           "learning_rate": FINETUNE_LEARNING_RATE})
    tune = {"epochs": epochs, "learning_rate": learning_rate}
    if distill_from:
        stages.append({"type": "distill", **_teacher(distill_from), **tune})
    if prune is not None:
        stages.append({"type": "prune", "final_sparsity": prune, **tune})
    if cluster is not None:
        stages.append({"type": "cluster", "number_of_clusters": cluster, "preserve_sparsity": prune is not None, **tune})
    if qat:
        preserve = {(False, False): "none", (True, False): "sparsity", (False, True): "clusters", (True, True): "sparsity_and_clusters"}
        stages.append({"type": "qat", "preserve": preserve[(prune is not None, cluster is not None)], **tune})
    stages += [{"type": "export", "mode": "int8"}, {"type": "bench", "threads": [1]}]
    done = [s["type"] for s in stages if s["type"] not in ("export", "bench")]
    doc = {"name": name or recipe_name(model),
           "description": f"edgeopt optimize {Path(model).name} on {data}: " + (", ".join(done) + ", " if done else "") + "int8 export, benchmark",
           "data": {"dataset": data, "batch_size": batch_size, **({"image_size": image_size} if image_size else {})},
           "model": source, "stages": stages}
    recipe_from_dict(doc, doc["name"], "edgeopt optimize")  # the same validation a hand-written recipe gets
    return doc


def _teacher(teacher: str) -> dict:
    source = model_source(teacher)
    return {"teacher_path": source["path"]} if "path" in source else {"teacher_model": source["name"]}


def prepare_run(doc: dict, out: Path, command: str, force: bool = False) -> Path:
    """Write recipe ``doc`` to ``out/recipe.toml`` (with the command that made it and the one that resumes it) and
    return its path; a different recipe already there is kept unless ``force``."""
    path = Path(out) / "recipe.toml"
    again = f"edgeopt run {path} --out {Path(out) / 'runs'} --artifacts {out} --resume"
    text = to_toml(doc, f"Written by: {command}\nRun it again (or after editing): {again}")
    if path.exists() and not force:
        if tomllib.loads(path.read_text()) == tomllib.loads(text):  # the same recipe (comments aside): keep the file
            return path
        raise FileExistsError(f"{path} exists with other settings: pass --force to replace it and start again, or edit it and run {again}")
    write_atomic(path, text, overwrite=True)
    return path
