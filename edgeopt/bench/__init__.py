"""Benchmarks of .tflite files: latency, accuracy and size on the LiteRT interpreter, or on a phone over adb.

``measure_latency`` follows TFLite's ``benchmark_model`` tool, ``interleaved_latency`` times files compared
with each other in one interleaved run; ``evaluate_tflite`` feeds float model
inputs, quantized with the model's own input scale and zero point; results are dataclasses with units in
their field names (``results``); ``machine`` describes the machine every number was measured on.

Modules: ``latency``, ``accuracy``, ``size``, ``measure`` (all three as one BenchResult), ``results``,
``adb`` (benchmark_model on a phone), ``machine``, ``mediapipe`` (accuracy through MediaPipe's
ImageClassifier, what an Android app gets).
"""
from edgeopt.bench.accuracy import evaluate_tflite, load_test_data
from edgeopt.bench.adb import DeviceUnavailableError, measure_latency_adb, parse_benchmark_output
from edgeopt.bench.latency import interleave, interleaved_latency, litert_version, measure_latency, median_ms, pooled
from edgeopt.bench.machine import FEATURES, Machine, machine, this_machine
from edgeopt.bench.mediapipe import classify, evaluate_mediapipe, mediapipe_classifier
from edgeopt.bench.measure import RUNTIMES, measure
from edgeopt.bench.results import AccuracyResult, BenchResult, LatencyResult, SizeResult
from edgeopt.bench.size import size_of
from edgeopt.tflite.flatbuffer import InvalidModelError

__all__ = [
    "FEATURES", "RUNTIMES", "AccuracyResult", "BenchResult", "DeviceUnavailableError", "InvalidModelError", "LatencyResult", "Machine", "SizeResult",
    "classify", "evaluate_mediapipe", "evaluate_tflite", "interleave", "interleaved_latency", "mediapipe_classifier", "litert_version", "load_test_data", "machine", "measure", "measure_latency", "measure_latency_adb", "median_ms", "parse_benchmark_output",
    "pooled", "size_of", "this_machine",
]
