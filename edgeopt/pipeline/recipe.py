"""Recipe files: declarative TOML read with the standard library into frozen, validated dataclasses.

A recipe names its data, model and default training, then an ordered list of stages from the stage
registry (``edgeopt.pipeline.stage``). Unknown keys, wrong types and bad values are errors that name the field
path (``stages[2].final_sparsity must be in [0, 1)``); nothing is evaluated or unpickled. A dataset whose
files are not on this machine is a validation error too (a cheap look for its files; no image is read).
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from edgeopt.config import RecipeError, from_dict, to_dict
from edgeopt.data import SOURCES, DatasetUnavailableError, check_crop_padding, check_dataset, check_feed_options, list_datasets
from edgeopt.models import MODELS, check_knobs, check_model_path, list_applications
from edgeopt.pipeline import stages as _stages  # noqa: F401  (registers every stage type in STAGES)
from edgeopt.pipeline.stage import STAGES
from edgeopt.train import TrainConfig

__all__ = ["DataSection", "ModelSection", "Recipe", "RecipeError", "StageSpec", "TrainSection", "load_recipe", "parse_recipe", "recipe_from_dict"]


DEFAULT_IMAGE_SIZE, DEFAULT_CHANNELS = 32, 3  # a zoo model's input when the recipe gives none
MAX_IMAGE_SIZE = 2048  # a batch of 2048x2048x3 floats is already 48 MB per image: larger sizes only fail later, deep in TensorFlow


@dataclass(frozen=True)
class DataSection:
    """Where images come from and how they are fed: see ``edgeopt.data.load_dataset`` (``folder:PATH`` streams from disk;
    ``cache`` = "memory" or a directory keeps decoded images after the first epoch; ``on_bad_image`` = "error" names
    an unreadable file, "skip" leaves it out and the run reports it; training augmentation: ``augment`` = random
    left-right flips, ``crop_padding`` = random shifts of up to that many pixels). ``image_size``, ``channels``,
    ``mean`` and ``std`` default to what the model expects: a model file's input shape, an application's
    normalization, else 32 px, 3 channels and (pixel - 127.5) / 127.5."""

    dataset: str = "fashion_mnist"
    image_size: int | None = None
    channels: int | None = None
    batch_size: int = 128
    val_fraction: float = 0.1
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    augment: bool = False
    crop_padding: int = 0
    mean: float | None = None
    std: float | None = None
    cache: str | None = None
    on_bad_image: str = "error"

    def __post_init__(self):
        if not (self.dataset.startswith("folder:") or self.dataset in SOURCES) or self.dataset in ("folder", "folder:"):
            raise ValueError(f"dataset must be one of {', '.join(list_datasets())}; got {self.dataset!r}")
        if self.image_size is not None and not 8 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be in [8, {MAX_IMAGE_SIZE}] pixels (mobile classifiers take 96-512), got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_feed_options(self.cache, self.on_bad_image)
        check_crop_padding(self.crop_padding, self.image_size or MAX_IMAGE_SIZE)
        if self.std is not None and not self.std > 0:
            raise ValueError(f"std must be > 0 (model input = (pixel - mean) / std), got {self.std}")


@dataclass(frozen=True)
class ModelSection:
    """The model the stages start from, exactly one of: a zoo ``name`` (with ``knobs``, optional ``weights`` file);
    the user's model file ``path`` (.keras / .h5 / SavedModel directory; ``new_head`` replaces its classifier with
    one for the dataset's classes; ``allow_custom_code`` + ``custom_module`` to load layers defined in code); or a
    tf_keras ``application`` backbone with a new head (``knobs`` are its arguments, e.g. alpha; ``weights`` a
    local weights file; ``include_top`` keeps its own classifier). Nothing is downloaded."""

    name: str = ""
    knobs: dict = field(default_factory=dict)
    weights: str | None = None
    path: str | None = None
    new_head: bool = False
    allow_custom_code: bool = False
    custom_module: str | None = None
    application: str | None = None
    include_top: bool = False

    def __post_init__(self):
        given = [k for k in ("name", "path", "application") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("name (a zoo model), path (your model file) or application (a tf_keras.applications backbone) is required, "
                             f"exactly one of them; got {', '.join(given) or 'none'}")
        if self.name:
            if self.name not in MODELS:
                raise ValueError(f"name must be one of {', '.join(MODELS.names())}; got {self.name!r}")
            check_knobs(self.name, self.knobs)
        if self.path:
            check_model_path(self.path, "path")
            for other in ("knobs", "weights", "include_top"):
                if getattr(self, other):
                    raise ValueError(f"{other} does not apply to a model file (path); it belongs to name or application models")
        elif self.new_head or self.allow_custom_code or self.custom_module:
            raise ValueError("new_head, allow_custom_code and custom_module apply to a model file only (path = ...)")
        if self.custom_module and not self.allow_custom_code:
            raise ValueError("custom_module runs code from that module: set allow_custom_code = true as well to allow it")
        if self.application and self.application not in list_applications():
            raise ValueError(f"application must be one of {', '.join(list_applications())}; got {self.application!r}")
        if self.weights and not Path(self.weights).expanduser().exists() and not Path(self.weights + ".index").exists():
            raise ValueError(f"weights {self.weights!r} does not exist (a local weights file: edgeopt downloads nothing)")

    @property
    def label(self) -> str:
        """What the run reports as the model: the zoo name, the file's name or the application."""
        return self.name or (Path(self.path).name if self.path else f"{self.application}")


@dataclass(frozen=True)
class TrainSection(TrainConfig):
    """Default training for every stage that trains, plus the ``tf.distribute`` strategy and determinism."""

    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    deterministic: bool = True

    def train_config(self, **overrides) -> TrainConfig:
        base = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        return TrainConfig(**{**base, **overrides})


@dataclass(frozen=True)
class StageSpec:
    """One stage of a recipe: its registry ``type``, validated ``config`` and the raw table it came from."""

    type: str
    config: object
    raw: dict

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    data: DataSection
    model: ModelSection
    train: TrainSection
    stages: tuple[StageSpec, ...]
    source: str = ""

    def fingerprint(self, upto: int) -> str:
        """A hash of everything stage ``upto`` depends on: data, model, train and stages[0..upto]."""
        head = {"data": to_dict(self.data), "model": to_dict(self.model), "train": to_dict(self.train)}
        blob = json.dumps([head] + [s.raw for s in self.stages[: upto + 1]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_TOP_LEVEL = {"name", "description", "data", "model", "train", "stages"}


def parse_recipe(text: str, name: str = "recipe", source: str = "<string>") -> Recipe:
    """Parse and validate recipe TOML ``text``; errors are :class:`RecipeError` naming file and field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{source}: {_describe_toml_error(err, text)}") from None
    return recipe_from_dict(doc, name, source)


def recipe_from_dict(doc: dict, name: str = "recipe", source: str = "<dict>") -> Recipe:
    """Validate a recipe given as plain data (what ``tomllib`` returns); errors name ``source`` and the field."""
    try:
        unknown = sorted(set(doc) - _TOP_LEVEL)
        if unknown:
            raise RecipeError(f"{unknown[0]} is not a known section; known: {', '.join(sorted(_TOP_LEVEL))}")
        if "model" not in doc:
            raise RecipeError("model is required (e.g. [model] name = \"mobilenet_v2\", or path = \"my_model.keras\")")
        stages_raw = doc.get("stages")
        if not isinstance(stages_raw, list) or not stages_raw:
            raise RecipeError("stages is required: a list of [[stages]] tables, each with a type")
        data = from_dict(DataSection, doc.get("data", {}), "data")
        model = from_dict(ModelSection, doc["model"], "model")
        train = from_dict(TrainSection, doc.get("train", {}), "train")
        stages = []
        for i, raw in enumerate(stages_raw):
            path = f"stages[{i}]"
            if not isinstance(raw, dict):
                raise RecipeError(f"{path} must be a table with a type")
            if "type" not in raw:
                raise RecipeError(f"{path}.type is required; known stage types: {', '.join(STAGES.names())}")
            if raw["type"] not in STAGES:
                raise RecipeError(f"{path}.type must be one of {', '.join(STAGES.names())}; got {raw['type']!r}")
            stage = STAGES.get(raw["type"])
            params = {k: v for k, v in raw.items() if k != "type"}
            stages.append(StageSpec(raw["type"], stage.parse(params, path, train), dict(raw)))
        recipe_name = doc.get("name", name)
        if not isinstance(recipe_name, str) or not recipe_name.replace("-", "").replace("_", "").isalnum():
            raise RecipeError(f"name must be letters, digits, '-' or '_' (it names directories), got {recipe_name!r}")
        _check_dataset_available(data)
        return Recipe(recipe_name, str(doc.get("description", "")), data, model, train, tuple(stages), source)
    except RecipeError as err:
        raise RecipeError(f"{source}: {err}") from None


def _check_dataset_available(data: DataSection) -> None:
    """A recipe whose images are not on this machine fails here, before a run directory is made, rather than
    at the first stage. Checked last, so a recipe with other mistakes reports those first."""
    try:
        check_dataset(data.dataset)
    except DatasetUnavailableError as err:
        raise RecipeError(f"data.dataset {data.dataset!r} is not available on this machine: {err}") from None


def _describe_toml_error(err: Exception, text: str) -> str:
    """tomllib says "Cannot overwrite a value (at line 6, column 9)"; name the duplicated key too."""
    import re

    m = re.search(r"at line (\d+)", str(err))
    if m and "overwrite" in str(err):
        line = text.splitlines()[int(m.group(1)) - 1]
        key = line.split("=", 1)[0].strip().strip("[]").strip()
        return f"duplicated key {key!r} at line {m.group(1)}: each key may appear once per table"
    return f"not valid TOML: {err}"


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; its name defaults to the file name without ``.toml``."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not UTF-8 text (byte {err.start} is 0x{err.object[err.start]:02x}); save the recipe as UTF-8 TOML") from None
    return parse_recipe(text, name=path.stem, source=str(path))
