"""Bootstrap intervals over queries, so that small differences between cells are not over-read.

The unit that varies is the query: a cell's mAP is the mean of its queries' AP, Rank-1 the
fraction of queries whose first true match is at rank 1. Resampling queries with replacement
(seeded, percentile method) gives the spread a different draw of queries from the same
population would show. For datasets scored over several published splits (trials), queries
are resampled within each trial and the trials' means averaged, as the reported metric is.
The interval does not cover the spread between trials; results carry that separately.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from raybench.metrics import METRICS, Metric

INTERVAL_METRICS = tuple(m for m in METRICS if m.interval)
DEFAULT_BOOTSTRAPS = 1000
DEFAULT_LEVEL = 0.95
#: Indices drawn at once (bounds memory on MSMT17-sized query sets: 32 MB of int64).
_CHUNK_ELEMENTS = 4_000_000


def bootstrap_intervals(
    per_query: Mapping[str, Any] | None,
    n_boot: int = DEFAULT_BOOTSTRAPS,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    metrics: Sequence[Metric] = INTERVAL_METRICS,
) -> dict[str, tuple[float, float]] | None:
    """Percentile intervals (fractions) of ``metrics`` (default: those the metric table gives
    an interval, mAP and R1) from a block's ``per_query`` lists (raybench.metrics.Scores: valid
    queries only, ``trial`` optional). Returns {metric name: (lo, hi)}, or None without queries;
    a metric whose per-query values are not stored is left out."""
    import numpy as np

    if not per_query or not per_query.get("ap"):
        return None
    columns = {m.name: m.per_query_values(per_query) for m in metrics}
    n = len(per_query["ap"])
    columns = {name: values for name, values in columns.items() if values is not None and len(values) == n}
    if not columns:
        return None
    stats = np.stack([np.asarray(v, dtype=np.float64) for v in columns.values()], axis=1)
    trial = np.asarray(per_query.get("trial") or np.zeros(n, dtype=int))
    trials = np.unique(trial)
    rng = np.random.default_rng(seed)
    draws = np.zeros((n_boot, stats.shape[1]))
    for t in trials:
        draws += resampled_means(stats[trial == t], n_boot, rng) / len(trials)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(columns)}


def resampled_means(stats, n_boot: int, rng):
    """[n_boot, k] means of ``stats`` [n, k] over n rows drawn with replacement."""
    import numpy as np

    n = len(stats)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    out = np.empty((n_boot, stats.shape[1]))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = stats[idx].mean(axis=1)
    return out
