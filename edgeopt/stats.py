"""Statistics of measured accuracies: top-1/top-k hit counts, mean and spread over seeds, the test-sampling
interval, and verdicts of a difference against its noise. Plain NumPy (no TensorFlow): evaluation, reports and
benchmark findings use it alike."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) of per-seed results."""
    arr = np.asarray(values, float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def topk_hits(scores, labels, k: int = 5) -> tuple[int, int]:
    """How many rows of ``scores`` (one row of class scores per image) rank their label first, and how many rank it
    among the ``k`` highest: the counts behind top-1 and top-k accuracy."""
    labels = np.asarray(labels).reshape(-1)
    top = np.argsort(-np.asarray(scores), axis=1)[:, :k]
    return int((top[:, 0] == labels).sum()), int((top == labels[:, None]).any(axis=1).sum())


def sampling_interval(accuracy: float, images: int) -> float:
    """Half-width of the 95% interval of an accuracy measured on ``images`` test images (normal approximation):
    how far another test sample of the same size could move it (about 0.006 at 10,000 images and 90%)."""
    return 1.96 * float(np.sqrt(accuracy * (1 - accuracy) / images))


def verdict(difference: float, noise: float) -> str:
    """"met" when ``difference`` (the claimed gain, > 0 is good) is above ``noise``, "missed" when it is below
    -``noise``, else "within noise"."""
    return "met" if difference > noise else "missed" if difference < -noise else "within noise"


def difference_noise(a: Sequence[float], b: Sequence[float], images: int) -> float:
    """95% noise on ``mean(a) - mean(b)`` (accuracies of per-seed runs, each measured on ``images`` test images): the
    seeds' interval of the difference (1.96 x its standard error, sample standard deviations) and the test-sampling
    interval of one accuracy (:func:`sampling_interval`), added in quadrature. Compare a gain with it by :func:`verdict`."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    seeds = 1.96 * float(np.sqrt(sa**2 / len(a) + sb**2 / len(b)))
    return float(np.hypot(seeds, sampling_interval((ma + mb) / 2, images)))


def seed_stats(values: Sequence[float], reference: Sequence[float], images: int, at_least: float | None = None) -> dict:
    """One verdict row from per-seed accuracies ``values`` (fractions, one per seed) against ``reference`` (the
    fixed baseline's one accuracy, or a reference row's per-seed accuracies), each measured on ``images`` test images.

    Returns ``n``, ``mean``, ``std`` (sample, over seeds), ``interval`` (the test-sampling 95% half-width of one
    accuracy at the mean, :func:`sampling_interval`), ``diff_mean`` and ``diff_std`` (of ``value - reference``;
    paired by seed when the reference has one value per seed), ``noise`` (:func:`difference_noise`) and, when
    ``at_least`` is given (the target: the difference must be at least that, e.g. -0.005 for "within 0.5 point",
    +0.005 for "a gain of 0.5 point"), ``verdict``: "met", "missed" or "within noise" (:func:`verdict` of
    ``diff_mean - at_least``). All in fractions."""
    values, reference = [float(v) for v in values], [float(v) for v in reference]
    mean, std = mean_std(values)
    diffs = [v - r for v, r in zip(values, reference)] if len(reference) == len(values) > 1 else [v - mean_std(reference)[0] for v in values]
    diff_mean, diff_std = mean_std(diffs)
    noise = difference_noise(values, reference, images)
    out = {"n": len(values), "mean": mean, "std": std, "interval": sampling_interval(mean, images), "diff_mean": diff_mean,
           "diff_std": diff_std, "noise": noise}
    if at_least is not None:
        out["verdict"] = verdict(diff_mean - at_least, noise)
    return out


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's rank correlation of paired values (e.g. one-shot scores and stand-alone accuracies of the same
    sub-networks): tau-b (ties counted as in ``scipy.stats.kendalltau``; 1 = same order, -1 = reversed) and its
    two-sided p-value. Needs at least 2 pairs, and values that are not all tied."""
    from scipy.stats import kendalltau  # scikit-learn's dependency; imported here so the module loads without it

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"kendall_tau needs two equally long lists of at least 2 values, got {len(x)} and {len(y)}")
    result = kendalltau(x, y)
    if not np.isfinite(result.statistic):
        raise ValueError("kendall_tau is undefined when every value of x or of y is the same")
    return float(result.statistic), float(result.pvalue)
