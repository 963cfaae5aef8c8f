"""Bootstrap intervals over queries, so that small differences between cells are not over-read.

The unit that varies is the query: a cell's mAP is the mean of its queries' AP, Rank-1 the
fraction of queries whose first true match is at rank 1. Resampling queries with replacement
(seeded, percentile method) gives the spread a different draw of queries from the same
population would show. For datasets scored over several published splits (trials), queries
are resampled within each trial and the trials' means averaged, as the reported metric is.
The interval does not cover the spread between trials; results carry that separately.
"""

from __future__ import annotations

from typing import Any, Mapping

DEFAULT_BOOTSTRAPS = 1000
DEFAULT_LEVEL = 0.95
#: Indices drawn at once (bounds memory on MSMT17-sized query sets: 32 MB of int64).
_CHUNK_ELEMENTS = 4_000_000


def bootstrap_intervals(
    per_query: Mapping[str, Any] | None,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, tuple[float, float]] | None:
    """Percentile intervals of mAP and Rank-1 (fractions) from a result's ``per_query``.

    per_query: {"ap": [N], "first_match": [N] (1-based), "trial": [N] optional}, valid
    queries only. Returns {"mAP": (lo, hi), "R1": (lo, hi)}, or None without queries.
    """
    import numpy as np

    if not per_query or not per_query.get("ap"):
        return None
    ap = np.asarray(per_query["ap"], dtype=np.float64)
    first = np.asarray(per_query.get("first_match") or np.zeros(len(ap)), dtype=np.float64)
    if len(first) != len(ap):
        return None
    stats = np.stack([ap, first == 1], axis=1)
    trial = np.asarray(per_query.get("trial") or np.zeros(len(ap), dtype=int))
    trials = np.unique(trial)
    rng = np.random.default_rng(seed)
    draws = np.zeros((n_boot, 2))
    for t in trials:
        draws += _resampled_means(stats[trial == t], n_boot, rng) / len(trials)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return {"mAP": (float(lo[0]), float(hi[0])), "R1": (float(lo[1]), float(hi[1]))}


def _resampled_means(stats, n_boot: int, rng):
    """[n_boot, k] means of ``stats`` [n, k] over n rows drawn with replacement."""
    import numpy as np

    n = len(stats)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty((n_boot, stats.shape[1]))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = stats[idx].mean(axis=1)
    return out
