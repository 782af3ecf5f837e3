"""Accuracy as an Android app sees it: the test set classified by MediaPipe Tasks' ImageClassifier.

``pip install mediapipe`` runs the same C++ task as ``com.google.mediapipe:tasks-vision`` on Android:
it reads the model's standard metadata, resizes each image to the model's input size and normalizes it
(float models) or feeds the bytes (uint8 models) itself, and names the classes from the packed labels.
Feeding it the dataset's stored images (before edgeopt's own resizing) measures what an app will get,
resizing included, beside ``evaluate_tflite``'s LiteRT path. mediapipe is optional (see the README).
"""
from __future__ import annotations

import numpy as np

from edgeopt.bench.results import AccuracyResult
from edgeopt.data import raw_test_split
from edgeopt.tflite import flatbuffer, metadata


def _import_mediapipe():
    try:
        import mediapipe as mp  # optional: not a dependency of edgeopt itself
        from mediapipe.tasks import python as mp_tasks
        from mediapipe.tasks.python import vision
    except ImportError as err:
        raise ImportError(f"the mediapipe runtime needs the mediapipe package ({err}); install it with "
                          "`.venv/bin/pip install 'mediapipe~=1.2'` (scripts/setup.sh does)") from None
    return mp, mp_tasks, vision


def mediapipe_classifier(model, max_results: int = 5):
    """A MediaPipe ImageClassifier (image mode) for a .tflite given as bytes or a path; raises ValueError
    with what the file lacks when MediaPipe refuses it."""
    mp, mp_tasks, vision = _import_mediapipe()
    data, label = flatbuffer.load_model_bytes(model)
    options = vision.ImageClassifierOptions(base_options=mp_tasks.BaseOptions(model_asset_buffer=data), max_results=max_results)
    try:
        return vision.ImageClassifier.create_from_options(options)
    except Exception as err:  # mediapipe maps its status codes to assorted types (FileNotFoundError, RuntimeError, ValueError)
        missing = "; ".join(metadata.missing_for_image_classifier(data)) or "no known cause"
        raise ValueError(f"MediaPipe's ImageClassifier cannot load {label}: {err} (missing: {missing})") from None


def classify(classifier, images: np.ndarray) -> list[list[tuple[int, str, float]]]:
    """(index, category name, score) of the top classes of each uint8 image (N, H, W, 1 or 3)."""
    mp, _, _ = _import_mediapipe()
    out = []
    for image in images:
        rgb = np.ascontiguousarray(np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image, dtype=np.uint8)
        result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        out.append([(c.index, c.category_name, c.score) for c in result.classifications[0].categories])
    return out


def evaluate_mediapipe(model, dataset: str, limit: int | None = None) -> AccuracyResult:
    """Top-1 and top-5 accuracy of a .tflite through MediaPipe's ImageClassifier on the stored test images
    of ``dataset`` (the same images, in the same order, as ``load_test_data``)."""
    images, labels, _ = raw_test_split(dataset, limit)
    if len(images) == 0:
        raise ValueError(f"dataset {dataset!r} has no test images")
    with mediapipe_classifier(model, max_results=5) as classifier:
        top = classify(classifier, images)
    top1 = np.mean([t[0][0] == y for t, y in zip(top, labels)])
    top5 = np.mean([y in [c[0] for c in t] for t, y in zip(top, labels)])
    return AccuracyResult(float(top1), float(top5), len(labels), runtime="mediapipe")
