"""Statistics behind every verdict: the test-sampling interval, seed spread, the noise of a difference, verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeopt.stats import difference_noise, mean_std, sampling_interval, seed_stats, topk_hits, verdict


def test_sampling_interval_is_the_normal_95_percent_half_width():
    assert sampling_interval(0.9, 10_000) == pytest.approx(1.96 * math.sqrt(0.9 * 0.1 / 10_000))
    assert sampling_interval(0.9, 10_000) == pytest.approx(0.00588)  # the brief's "±0.6 point at 10,000 images"
    assert sampling_interval(0.9, 2_000) == pytest.approx(0.01315, abs=1e-5)


def test_mean_std_uses_the_sample_deviation():
    assert mean_std([0.90, 0.92, 0.94]) == pytest.approx((0.92, 0.02))
    assert mean_std([0.5]) == (0.5, 0.0)


def test_difference_noise_adds_seed_and_sampling_intervals_in_quadrature():
    a, b = [0.90, 0.92, 0.94], [0.91, 0.91, 0.91]
    seeds = 1.96 * math.sqrt(0.02**2 / 3 + 0.0)
    assert difference_noise(a, b, 10_000) == pytest.approx(math.hypot(seeds, sampling_interval(0.915, 10_000)))


def test_verdicts_against_noise():
    assert verdict(0.01, 0.005) == "met"
    assert verdict(-0.01, 0.005) == "missed"
    assert verdict(0.004, 0.005) == "within noise"
    row = seed_stats([0.930, 0.931, 0.932], [0.9384], 10_000, at_least=-0.005)
    assert row["n"] == 3 and row["diff_mean"] == pytest.approx(-0.0074)
    assert row["verdict"] == "within noise"  # -0.24 points past the target, noise about ±0.5
    paired = seed_stats([0.93, 0.94], [0.92, 0.92], 10_000)
    assert paired["diff_mean"] == pytest.approx(0.015) and paired["diff_std"] == pytest.approx(math.sqrt(0.00005))


def test_kendall_tau_on_known_rankings():
    from edgeopt.stats import kendall_tau

    # 10 pairs; (2, 3) and (4, 5) swap order: 8 concordant, 2 discordant -> (8 - 2) / 10
    assert kendall_tau([1, 2, 3, 4, 5], [0.1, 0.3, 0.2, 0.5, 0.4])[0] == pytest.approx(0.6)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    # ties (tau-b): x ties one pair, y ties one pair, 4 concordant of 6: 4 / sqrt((6 - 1) * (6 - 1))
    tau, p = kendall_tau([1, 2, 2, 3], [1, 2, 3, 3])
    assert tau == pytest.approx(0.8) and 0 < p <= 1
    with pytest.raises(ValueError, match="equally long lists of at least 2 values"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="undefined when every value"):
        kendall_tau([1, 1, 1], [1, 2, 3])


def test_topk_hits_counts_first_place_and_top_k():
    scores = np.array([[0.1, 0.7, 0.2],   # label 1 first
                       [0.5, 0.3, 0.2],   # label 1 second: top-2 only
                       [0.6, 0.3, 0.1]])  # label 2 last: neither
    assert topk_hits(scores, [[1], [1], [2]], k=2) == (1, 2)
    assert topk_hits(scores, np.array([1, 1, 2]), k=5) == (1, 3)  # k above the class count: every label is in the top k
