"""Size of a .tflite, raw and gzipped: what an app download costs."""
from __future__ import annotations

from edgeopt.bench.results import SizeResult
from edgeopt.io import gzip_size
from edgeopt.tflite import flatbuffer


def size_of(model) -> SizeResult:
    """Raw and gzipped (level 9) size in bytes of a .tflite given as bytes or a path."""
    data, _ = flatbuffer.load_model_bytes(model)
    return SizeResult(len(data), gzip_size(data))
