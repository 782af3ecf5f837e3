"""What the benchmark scripts share, on edgeopt's public API only: the machine line every table carries,
interleaved latency (``edgeopt.bench.interleave`` / ``interleaved_latency`` / ``median_ms``, delegated to lazily:
one timing method for every script and for ``edgeopt report``), atomic writes of text, CSV and Markdown tables,
statistics over seeds, and the number formats the findings templates use.

Sizes come from ``edgeopt.io.gzip_size`` / ``edgeopt.bench.size_of``, flatbuffers are read and written with
``edgeopt.tflite.flatbuffer``; nothing here re-implements them. Importing this module loads no TensorFlow (the
edgeopt imports are inside the functions that measure), so findings render from committed data in a second.
"""
from __future__ import annotations

import csv
import io
import os
import platform
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

# ---- the machine ----------------------------------------------------------------------------------------


def machine_line() -> str:
    """One line for a table header: CPU, cores, architecture, SIMD flags (VNNI or not), Python and TF versions."""
    from edgeopt import tf  # lazy: TensorFlow only where a script measures
    from edgeopt.bench import this_machine  # lazy: as above

    return f"{this_machine().describe()}, Python {platform.python_version()}, TF {tf.__version__}"


# ---- interleaved timing ---------------------------------------------------------------------------------


def interleave(calls, rounds: int, **kw):
    """``edgeopt.bench.interleave`` (imported when called: rendering findings loads no TensorFlow)."""
    from edgeopt.bench import interleave as run

    return run(calls, rounds, **kw)


def interleaved_latency(files, rounds: int, **kw):
    """``edgeopt.bench.interleaved_latency`` (imported when called)."""
    from edgeopt.bench import interleaved_latency as run

    return run(files, rounds, **kw)


def median_ms(results) -> float:
    """``edgeopt.bench.median_ms``: the median over rounds of the per-round median latencies (ms)."""
    from edgeopt.bench import median_ms as run

    return run(results)


def median_latency_ms(files: Mapping[str, bytes | os.PathLike], rounds: int, **kw) -> dict[str, float]:
    """Each file's median over ``rounds`` interleaved rounds of its per-round median latency (ms); ``kw`` as
    :func:`interleaved_latency`."""
    return {k: median_ms(v) for k, v in interleaved_latency(files, rounds, **kw).items()}


# ---- writing --------------------------------------------------------------------------------------------


def write_file(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically (readers never see half a table), replacing
    any old file."""
    from edgeopt.io import write_atomic  # lazy: edgeopt.io loads TensorFlow (Keras model files)

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


# ---- findings: prose whose numbers are formatted from the data ------------------------------------------


def span(values: Iterable[float], fmt: str = "{:.2f}") -> str:
    """The range of ``values`` as text, "lo-hi" with each end formatted by ``fmt`` (one number when both ends
    format alike)."""
    values = list(values)
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"



def wrap(text: str, bullet: str = "", width: int = 118) -> list[str]:
    """A paragraph of findings prose as lines of at most ``width`` characters; ``bullet`` ("* ", "  - ") starts the
    first line and indents the others. Words (numbers, inline code) are never split."""
    return textwrap.wrap(text, width, initial_indent=bullet, subsequent_indent=" " * len(bullet), break_long_words=False,
                         break_on_hyphens=False)


def difference_noise(a: Sequence[float], b: Sequence[float], images: int) -> float:
    """95% noise on ``mean(a) - mean(b)`` (accuracies of per-seed runs, each measured on ``images`` test images): the
    seeds' interval of the difference (1.96 x its standard error, sample standard deviations) and the test-sampling
    interval of one accuracy (:func:`sampling_interval`), added in quadrature. Compare a gain with it by :func:`verdict`."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    seeds = 1.96 * float(np.sqrt(sa**2 / len(a) + sb**2 / len(b)))
    return float(np.hypot(seeds, sampling_interval((ma + mb) / 2, images)))
