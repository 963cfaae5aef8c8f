"""Bootstrap intervals over queries: seeded, around the estimate, and narrower with more queries."""

import numpy as np
import pytest

from raybench.report.bootstrap import bootstrap_intervals


def per_query(n, seed=0, trials=1):
    rng = np.random.default_rng(seed)
    return {
        "trial": [t for t in range(trials) for _ in range(n)],
        "ap": rng.beta(2, 3, size=n * trials).tolist(),
        "first_match": rng.integers(1, 6, size=n * trials).tolist(),
    }


def width(interval, key):
    return interval[key][1] - interval[key][0]


def test_intervals_shrink_as_queries_grow():
    small, large = bootstrap_intervals(per_query(40)), bootstrap_intervals(per_query(4000))
    for key in ("mAP", "R1"):
        # Standard error falls as 1/sqrt(n): 100x the queries, about a tenth of the width.
        assert 0.05 < width(large, key) / width(small, key) < 0.2


def test_intervals_are_seeded_and_cover_the_estimate():
    pq = per_query(200)
    first = bootstrap_intervals(pq, seed=3)
    assert first == bootstrap_intervals(pq, seed=3)
    assert first != bootstrap_intervals(pq, seed=4)
    assert first["mAP"][0] < np.mean(pq["ap"]) < first["mAP"][1]
    r1 = np.mean(np.array(pq["first_match"]) == 1)
    assert first["R1"][0] < r1 < first["R1"][1]


def test_normal_approximation():
    """For a mean, the percentile interval is close to +-1.96 standard errors."""
    pq = per_query(2000)
    ap = np.array(pq["ap"])
    half = 1.96 * ap.std() / np.sqrt(len(ap))
    lo, hi = bootstrap_intervals(pq, n_boot=2000)["mAP"]
    assert lo == pytest.approx(ap.mean() - half, abs=0.2 * half)
    assert hi == pytest.approx(ap.mean() + half, abs=0.2 * half)


def test_trials_resample_within_each_trial():
    """The statistic is the mean of the trials' means, as a multi-split dataset reports it."""
    pq = per_query(300, trials=3)
    ap = np.array(pq["ap"]).reshape(3, 300)
    lo, hi = bootstrap_intervals(pq)["mAP"]
    assert lo < ap.mean(axis=1).mean() < hi


def test_no_queries_no_interval():
    assert bootstrap_intervals(None) is None
    assert bootstrap_intervals({"ap": [], "first_match": []}) is None
