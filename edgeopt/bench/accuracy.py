"""Accuracy of a .tflite itself on a data split: float inputs quantized with the model's own input scale."""
from __future__ import annotations

import json

import numpy as np

from edgeopt.bench.results import AccuracyResult
from edgeopt.data import load_dataset
from edgeopt.progress import bar
from edgeopt.stats import topk_hits
from edgeopt.tflite import flatbuffer, runtime

SPLITS = ("test", "val")  # what an accuracy can be measured on: the test split (reports) or the validation split (selection)


def evaluate_tflite(model, dataset, limit: int | None = None, split: str = "test", xnnpack: bool = True) -> AccuracyResult:
    """Top-1 and top-5 accuracy (fractions) of a .tflite on a batched (float inputs, labels) dataset, recorded
    as measured on ``split`` ("test" or "val": which split ``dataset`` is); ``xnnpack=False`` runs LiteRT's builtin
    kernels only (for a file the XNNPACK delegate refuses to prepare).

    Quantized models get their inputs quantized with the model's own input scale and zero point.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    interp = runtime.make_interpreter(model, xnnpack=xnnpack)
    interp.allocate_tensors()
    correct1 = correct5 = total = 0
    shown = bar(total=limit or _known_size(dataset), desc="accuracy of the .tflite", unit="image")
    for x, y in dataset:
        x, y = np.asarray(x), np.asarray(y).reshape(-1)
        if limit is not None:
            x, y = x[: limit - total], y[: limit - total]
        scores = runtime.predict(interp, x)
        shown.update(len(y))
        hits1, hits5 = topk_hits(scores, y)
        correct1, correct5, total = correct1 + hits1, correct5 + hits5, total + len(y)
        if limit is not None and total >= limit:
            break
    shown.close()
    if total == 0:
        raise ValueError("evaluate_tflite got an empty dataset")
    return AccuracyResult(correct1 / total, correct5 / total, total, split=split)


def _known_size(dataset) -> int | None:
    """Images in a batched dataset when tf.data knows its length (batches x batch size, an upper bound), else None."""
    batches = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
    batch = dataset.element_spec[0].shape[0] if hasattr(dataset, "element_spec") else None
    return batches * batch if batches > 0 and batch else None


def load_test_data(model, dataset: str, limit: int | None = None, batch_size: int = 64):
    """The test split of ``dataset`` preprocessed as ``model`` expects; returns (tf.data.Dataset, Preprocessing).

    The preprocessing comes from the model's embedded edgeopt manifest; without one, from its input
    shape with the default normalization (pixel - 127.5) / 127.5.
    """
    data, _ = flatbuffer.load_model_bytes(model)
    ins, _ = flatbuffer.io_tensors(data)
    (h, w, c), mean, std = ins[0].shape[1:], 127.5, 127.5
    raw = flatbuffer.read_metadata(data, "edgeopt_manifest")
    if raw is not None:
        prep = json.loads(raw.decode()).get("preprocessing") or {}
        mean, std = prep.get("mean", mean), prep.get("std", std)
    splits = load_dataset(dataset, image_size=(h, w), channels=c, batch_size=batch_size, limit_test=limit, mean=mean, std=std, limit_train=1)
    return splits.test, splits.preprocessing
