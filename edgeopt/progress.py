"""Progress bars with time left for long work (training, calibration, verification, benchmarking), drawn by tqdm.

One bar per piece of work, on stderr, gone when it finishes (``leave=False``) so logs keep one line per result.
On a terminal the bar redraws twice a second; in a log file (CI, ``nohup``) at most every 30 s.
``EDGEOPT_PROGRESS=0`` turns the bars off.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable

from tqdm.auto import tqdm

from edgeopt._keras import keras


def enabled() -> bool:
    return os.environ.get("EDGEOPT_PROGRESS", "1") != "0"


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it") -> tqdm:
    """A tqdm bar (elapsed, rate and time left when ``total`` is known) over ``iterable`` or updated by hand."""
    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=not enabled(), dynamic_ncols=True,
                mininterval=0.5 if tty else 30, file=sys.stderr)


class TrainingProgress(keras.callbacks.Callback):
    """Keras fit with one bar over every step of every epoch (time left for the whole fit) and one printed line per
    epoch with its metrics, like ``verbose=2``."""

    def __init__(self, desc: str = "training"):
        super().__init__()
        self.desc = desc
        self._bar = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        steps, epochs = self.params.get("steps"), self.params.get("epochs", 1)
        self._epochs = epochs
        self._bar = bar(total=steps * epochs if steps else None, desc=self.desc, unit="step")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._bar.update(1)
        if logs and "loss" in logs:
            self._bar.set_postfix(epoch=f"{self._epoch + 1}/{self._epochs}", loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        shown = " - ".join(f"{k}: {float(v):.4f}" for k, v in (logs or {}).items() if not k.startswith("lr"))
        self._bar.write(f"{self.desc} epoch {epoch + 1}/{self._epochs} - {shown}", file=sys.stdout)

    def on_train_end(self, logs=None):
        self._bar.close()
