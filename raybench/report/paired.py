"""Paired comparisons: is model A better than model B on the same queries, and by how much?

Two blocks scored on the same queries (two models on one dataset, a model's eval variant and
its main block, a fusion and its member) are paired: query by query, the difference of their
per-query values (AP for mAP, a first match at rank 1 for Rank-1, INP for mINP: the metric
table's ``per_query_values``) varies far less than either block alone, so the interval of the
difference is far narrower than the two marginal intervals that a reader would otherwise
compare by eye.

The interval is a paired bootstrap: queries are resampled with replacement, the same draw for
both blocks; where a dataset has several splits (trials), queries are resampled within each
and the trials' mean differences averaged, as the metric averages them; a comparison over
several datasets (a mean of cross-domain mAPs) resamples within each dataset the same way.
The p-value is two-sided, from the bootstrap distribution shifted to the null (no difference):
the share of resampled differences at least as far from the observed one as the observed one
is from zero (with the usual +1 in numerator and denominator), so a block compared with
itself gets delta 0, the interval [0, 0] and p = 1. ``delta`` is ``a_value - b_value`` of the
reported values exactly; the resampling only gives its interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from raybench.errors import RaybenchError
from raybench.metrics import Scores, metric
from raybench.report.bootstrap import DEFAULT_BOOTSTRAPS, DEFAULT_LEVEL, resampled_means

#: The metrics a comparison reports by default.
COMPARED = ("mAP", "R1", "mINP")


class NotPaired(RaybenchError):
    """Two blocks that do not hold the same queries (or not their per-query numbers)."""


@dataclass(frozen=True)
class Paired:
    """A paired comparison of one metric: A's and B's values, their difference, its
    ``level`` interval and two-sided p-value, over ``num_queries`` queries."""

    metric: str
    a_value: float
    b_value: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    num_queries: int

    @property
    def significant(self) -> bool:
        """The interval excludes zero (at the bootstrap's level)."""
        return self.ci_low > 0 or self.ci_high < 0


def paired(pairs: Sequence[tuple[Scores, Scores]], name: str, n_boot: int = DEFAULT_BOOTSTRAPS,
           seed: int = 0, level: float = DEFAULT_LEVEL) -> Paired:
    """The paired difference in metric ``name`` of A and B, for one (a, b) pair of blocks or
    the mean over several (datasets). Each pair must hold the same valid queries (per-query
    ``trial`` and ``query``); NotPaired says why not."""
    m = metric(name)
    per_pair = []  # each pair's per-trial differences
    for a, b in pairs:
        diffs, trials = _differences(a, b, name)
        per_pair.append([diffs[trials == t] for t in np.unique(trials)])
    a_value = float(np.mean([_reported(a, name) for a, _ in pairs]))
    b_value = float(np.mean([_reported(b, name) for _, b in pairs]))
    delta = a_value - b_value
    observed = float(np.mean([np.mean([g.mean() for g in groups]) for groups in per_pair]))
    rng = np.random.default_rng(seed)
    draws = np.zeros(n_boot)
    for groups in per_pair:
        for g in groups:
            draws += resampled_means(g[:, None], n_boot, rng)[:, 0] / (len(groups) * len(per_pair))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    extreme = np.abs(draws - observed) >= abs(observed) - 1e-12
    return Paired(m.name, a_value, b_value, delta, float(low), float(high),
                  float((1 + extreme.sum()) / (n_boot + 1)), sum(len(g) for groups in per_pair for g in groups))


def compare(a: Scores, b: Scores, metrics: Sequence[str] = COMPARED, n_boot: int = DEFAULT_BOOTSTRAPS,
            seed: int = 0) -> list[Paired]:
    """One Paired per metric of A against B, from the same resamples."""
    return [paired([(a, b)], name, n_boot, seed) for name in metrics]


def _differences(a: Scores, b: Scores, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per query (aligned on trial and query index), A's value minus B's, and the trials."""
    keys = []
    for side, block in (("A", a), ("B", b)):
        if not block.per_query or not block.per_query.get("ap"):
            raise NotPaired(f"{side} has no per-query numbers (a result written before they were kept)")
        pq = block.per_query
        keys.append(list(zip(pq.get("trial") or [0] * len(pq["ap"]), pq["query"])))
    if keys[0] != keys[1]:
        raise NotPaired(f"A and B scored different queries ({len(keys[0])} and {len(keys[1])} valid); "
                        "compare cells of the same dataset copy")
    m = metric(name)
    va, vb = m.per_query_values(a.per_query), m.per_query_values(b.per_query)
    if va is None or vb is None:
        raise NotPaired(f"{name} has no per-query values")
    return np.asarray(va, float) - np.asarray(vb, float), np.asarray([t for t, _ in keys[0]])


def _reported(block: Scores, name: str) -> float:
    """The block's reported value of the metric (the mean over trials where it has several)."""
    value = block.value(name)
    if value is None:
        raise NotPaired(f"{name} is not reported for this block")
    return float(value)


def compare_models(run, a: str, b: str, datasets: Sequence[str] | None = None, metrics: Sequence[str] = COMPARED,
                   n_boot: int = DEFAULT_BOOTSTRAPS, seed: int = 0) -> list[dict]:
    """``raybench report DIR --compare A,B``: one row per dataset (of ``datasets``, default every
    dataset where both are scored) and metric, {a, b, dataset, metric, a_value, b_value, delta,
    ci_low, ci_high, p_value, num_queries}. A and B name models of the run, each optionally with
    one of its blocks (``osnet:rerank``: the eval variant "rerank" of osnet; a variant against its
    own model's main block is ``osnet:rerank,osnet``)."""
    from raybench.errors import UnknownNameError

    (model_a, block_a), (model_b, block_b) = _side(run, a), _side(run, b)
    for model in (model_a, model_b):
        if model not in run.models:
            raise UnknownNameError("model of this run", model, run.models)
    for dataset in datasets or ():
        if dataset not in run.datasets:
            raise UnknownNameError("dataset of this run", dataset, run.datasets)
    rows = []
    for dataset in datasets or run.datasets:
        sa, sb = _scores(run, model_a, dataset, block_a), _scores(run, model_b, dataset, block_b)
        if sa is None or sb is None:
            if datasets:
                raise RaybenchError(f"{a} or {b} has no scored cell on {dataset}")
            continue
        for p in compare(sa, sb, metrics, n_boot, seed):
            rows.append({"a": a, "b": b, "dataset": dataset, "metric": p.metric, "a_value": p.a_value,
                         "b_value": p.b_value, "delta": p.delta, "ci_low": p.ci_low, "ci_high": p.ci_high,
                         "p_value": p.p_value, "num_queries": p.num_queries})
    if not rows:
        raise RaybenchError(f"{a} and {b} share no scored dataset in this run")
    return rows


def _side(run, name: str) -> tuple[str, str | None]:
    """"model" or "model:block" (a block name of the run's cells)."""
    model, sep, block = name.rpartition(":")
    if sep and block in {n for _, n in run.block_names()}:
        return model, block
    return name, None


def _scores(run, model: str, dataset: str, block: str | None) -> Scores | None:
    cell = run.cell(model, dataset)
    return None if cell is None else cell.scores(block)
