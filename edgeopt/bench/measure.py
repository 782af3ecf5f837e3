"""``measure``: size, latency at each thread count and accuracy of one .tflite, as one BenchResult."""
from __future__ import annotations

from dataclasses import replace

from edgeopt.bench.accuracy import evaluate_tflite, load_test_data
from edgeopt.bench.latency import measure_latency
from edgeopt.bench.mediapipe import evaluate_mediapipe
from edgeopt.bench.results import BenchResult
from edgeopt.bench.size import size_of
from edgeopt.tflite import flatbuffer

RUNTIMES = ("litert", "mediapipe")


def measure(model, dataset: str | None = None, *, threads=(1,), runs: int = 50, min_seconds: float = 1.0,
            warmup: int = 1, xnnpack: bool = True, limit: int | None = None, runtime: str = "litert") -> BenchResult:
    """Size, latency at each thread count (on real test images when ``dataset`` is given) and accuracy.

    ``runtime="mediapipe"`` also classifies the test set through MediaPipe's ImageClassifier (what an
    Android app gets, its own resizing included) into ``app_accuracy``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "mediapipe" and not dataset:
        raise ValueError("runtime 'mediapipe' measures accuracy through MediaPipe's ImageClassifier: give a dataset (--data)")
    data, label = flatbuffer.load_model_bytes(model)
    accuracy = inputs = app = None
    if dataset:
        test, _ = load_test_data(data, dataset, limit=limit)
        accuracy = evaluate_tflite(data, test)
        inputs = next(iter(test))[0].numpy()
        if runtime == "mediapipe":
            app = evaluate_mediapipe(data, dataset, limit=limit)
    latency = [
        replace(measure_latency(data, threads=t, runs=runs, min_seconds=min_seconds, warmup=warmup, xnnpack=xnnpack, inputs=inputs), model=label)
        for t in threads
    ]
    return BenchResult(label, size_of(data), latency, accuracy, dataset, app)
