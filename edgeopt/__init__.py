"""edgeopt: Keras image classifiers -> small, fast, verified int8 TFLite models for Android, with numbers.

Layers, bottom to top (imports only point down; ``tests/test_layout.py`` checks it):
``_env`` and ``_keras`` (the one Keras choice), ``registry``, ``config``, ``io``; ``data``, ``models``, ``costs``,
``train``, ``tflite/``; ``compress/``, ``export``, ``bench/``; ``pipeline/``, ``search/``; ``report``, ``cli``.

``import edgeopt`` is cheap: it makes the Keras choice (``_env``) and loads TensorFlow and the rest on first use
of a name below (``edgeopt.load_dataset``, ``from edgeopt import create``), so ``edgeopt --help`` answers at once.
"""
from __future__ import annotations

import importlib

from edgeopt import _env  # noqa: F401  (first: TF_USE_LEGACY_KERAS=1 before anything imports TensorFlow)
from edgeopt.version import __version__

# public name -> the module that defines it; "bench" is a module itself
_EXPORTS = {
    "keras": "edgeopt._keras", "tf": "edgeopt._keras", "bench": "edgeopt.bench",
    "Preprocessing": "edgeopt.data", "Splits": "edgeopt.data", "list_datasets": "edgeopt.data", "load_dataset": "edgeopt.data",
    "read_manifest": "edgeopt.export", "to_tflite": "edgeopt.export", "PrecisionConfig": "edgeopt.export",
    "quantize_report": "edgeopt.bench.quant_report", "auto_fallback": "edgeopt.bench.quant_report",
    "create": "edgeopt.models", "list_models": "edgeopt.models", "load_model": "edgeopt.models",
    "run_recipe": "edgeopt.pipeline",
    "Profile": "edgeopt.costs", "profile": "edgeopt.costs",
    "TrainConfig": "edgeopt.train", "evaluate": "edgeopt.train", "fit": "edgeopt.train",
    "finetune": "edgeopt.transfer", "FinetuneConfig": "edgeopt.transfer", "new_head": "edgeopt.transfer",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module == f"edgeopt.{name}" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
