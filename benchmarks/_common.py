"""What the benchmark scripts share, on edgeopt's public API only: the machine line every table carries,
interleaved latency (``edgeopt.bench.interleave`` / ``interleaved_latency`` / ``median_ms``, re-exported here:
one timing method for every script and for ``edgeopt report``), and atomic writes of text, CSV and Markdown tables.

Sizes come from ``edgeopt.io.gzip_size`` / ``edgeopt.bench.size_of``, flatbuffers are read and written with
``edgeopt.tflite.flatbuffer``; nothing here re-implements them.
"""
from __future__ import annotations

import csv
import io
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from edgeopt import tf
from edgeopt.bench import interleave, interleaved_latency, median_ms, this_machine  # noqa: F401  (interleave, median_ms: re-exported for the scripts)
from edgeopt.io import write_atomic

# ---- the machine ----------------------------------------------------------------------------------------


def machine_line() -> str:
    """One line for a table header: CPU, cores, architecture, SIMD flags (VNNI or not), Python and TF versions."""
    return f"{this_machine().describe()}, Python {platform.python_version()}, TF {tf.__version__}"


# ---- interleaved timing ---------------------------------------------------------------------------------


def median_latency_ms(files: Mapping[str, bytes | os.PathLike], rounds: int, **kw) -> dict[str, float]:
    """Each file's median over ``rounds`` interleaved rounds of its per-round median latency (ms); ``kw`` as
    :func:`interleaved_latency`."""
    return {k: median_ms(v) for k, v in interleaved_latency(files, rounds, **kw).items()}


# ---- writing --------------------------------------------------------------------------------------------


def write_file(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically (readers never see half a table), replacing
    any old file."""
    return write_atomic(path, data, overwrite=True)


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping], fields: Sequence[str] | None = None,
              float_format: str | None = None) -> Path:
    """Write ``rows`` (dicts) as CSV with header ``fields`` (default: the first row's keys; other keys are left out),
    floats formatted with ``float_format`` (e.g. ``"{:.4g}"``) when given; atomically."""
    rows = list(rows)
    fields = list(fields if fields is not None else rows[0])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: float_format.format(v) if float_format and isinstance(v, float) else v for k, v in row.items()})
    return write_file(path, buf.getvalue())


def _md_row(cells: Iterable) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence[str], rows: Iterable[Iterable], align: str = "") -> list[str]:
    """A Markdown table's lines: header, alignment row (``align``: one "l" or "r" per column, default all left),
    one line per row of cells (formatted with ``str``)."""
    align = align or "l" * len(header)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} columns, header {len(header)}")
    return [_md_row(header), "|" + "".join("---:|" if a == "r" else "---|" for a in align), *(_md_row(r) for r in rows)]


# ---- statistics over seeds ------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) of per-seed results."""
    arr = np.asarray(values, float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def sampling_interval(accuracy: float, images: int) -> float:
    """Half-width of the 95% interval of an accuracy measured on ``images`` test images (normal approximation):
    how far another test sample of the same size could move it (about 0.006 at 10,000 images and 90%)."""
    return 1.96 * float(np.sqrt(accuracy * (1 - accuracy) / images))


def verdict(difference: float, noise: float) -> str:
    """"met" when ``difference`` (the claimed gain, > 0 is good) is above ``noise``, "missed" when it is below
    -``noise``, else "within noise"."""
    return "met" if difference > noise else "missed" if difference < -noise else "within noise"
