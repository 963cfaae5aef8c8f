"""The metric table and the scoring block: what raybench reports, declared once.

Every layer reads this module: the scorer (raybench.eval) fills ``Scores``, the result files
(raybench.rundir.records) store them, the live table (raybench.pipeline), every report format
and the bootstrap (raybench.report) show and resample them. A metric is named here once and
spelled the same everywhere: in a result JSON, in results.json and results.csv, in the live
table and in Markdown (``R1``, never ``r1``, ``rank1`` or ``T2I_R1``).

A scoring block (``Scores``) is one way of scoring a cell: the main block (the dataset's
protocol with the matrix's eval block), an eval variant, a scoring setting (a clothes-changing
rule, say) or text-to-image retrieval. Every block has the same metric fields, so one piece of
code validates, stores and shows them all.

Adding a metric is one ``Metric`` line in ``METRICS``, plus, for a metric that is not a point
of the CMC curve or the mean of a per-query list, where the scorer computes it. This module
imports nothing heavy and nothing of raybench.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Metric:
    """One reported metric. Every metric is a fraction in [0, 1] (shown as a percentage).

    ``rank``: the metric is the CMC curve at this rank (R5: the fraction of valid queries whose
    first true match is in the top 5); a curve shorter than ``rank`` (a small gallery) gives
    its last value, since every match it can find is found by then. Otherwise the metric is
    the block's field of its name (mAP, mINP), the mean of the per-query list ``per_query``
    over valid queries (trial means averaged, where there are trials).
    """

    name: str  # the one spelling, in every layer and file
    meaning: str
    label: str = ""  # how titles and figures say it ("Rank-1"); default the name
    rank: int | None = None
    per_query: str | None = None  # the per-query list it is the mean of ("ap", "inp")
    interval: bool = False  # the report gives it a bootstrap interval over queries
    spread: bool = False  # results state its sd over trials, as ``<name>_std``
    live: bool = False  # the run's live table shows it
    headline: bool = False  # the one or two figures a grid cell or a progress line shows
    block: bool = True  # shown for every block, not only the main one

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def std_key(self) -> str:
        """Its sd over trials in a block's ``spread`` (``mAP_std``, ``R1_std``)."""
        return f"{self.name}_std"

    def per_query_values(self, per_query: Mapping[str, Sequence]) -> list[float] | None:
        """The per-query values whose mean is this metric (the bootstrap's unit), from a
        block's ``per_query`` lists (valid queries only); None where they are not stored."""
        if self.rank is not None:
            first = per_query.get("first_match")
            return None if first is None else [float(1 <= f <= self.rank) for f in first]
        values = per_query.get(self.per_query or "")
        return None if values is None else [float(v) for v in values]


METRICS: tuple[Metric, ...] = (
    Metric("mAP", "mean average precision over the valid queries", per_query="ap",
           interval=True, spread=True, live=True, headline=True),
    Metric("R1", "Rank-1: fraction of valid queries whose first true match ranks first", "Rank-1", rank=1,
           interval=True, spread=True, live=True, headline=True),
    Metric("R5", "CMC at rank 5", "Rank-5", rank=5, live=True),
    Metric("R10", "CMC at rank 10", "Rank-10", rank=10),
    Metric("R20", "CMC at rank 20", "Rank-20", rank=20, block=False),
    Metric("mINP", "mean inverse negative penalty (fast-reid): #matches / rank of the hardest match",
           per_query="inp", live=True),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
#: The metrics every block shows (the main block shows all of METRICS).
BLOCK_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.block)
HEADLINE: tuple[Metric, ...] = tuple(m for m in METRICS if m.headline)
#: Metrics of result files written before this table: old spelling -> name.
LEGACY_NAMES = {"r1": "R1", "r5": "R5", "r10": "R10", "rank1_std": "R1_std"}


def metric(name: str) -> Metric:
    """The metric of a name; an unknown name is a programming error (KeyError naming the table)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no metric {name!r} in raybench.metrics.METRICS ({', '.join(BY_NAME)})") from None


def title(name: str) -> str:
    """A metric's label, by name ("R1" -> "Rank-1")."""
    return metric(name).title


def percent(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals; "-" for a missing value: the one
    formatter of every table."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.{digits}f}"


def points(delta: float | None, digits: int = 1) -> str:
    """A difference of two fractions in signed percentage points ("+1.2"); "-" for none: the
    one formatter of every difference a table shows."""
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return "-"
    return f"{100 * delta:+.{digits}f}"


@dataclass(frozen=True)
class Scores:
    """One scoring block of a cell: its metrics (fractions) and counts.

    ``cmc``: the CMC curve, rank 1 first, up to the eval block's ``max_rank`` or the gallery's
    size. ``spread``: sd over trials (``Metric.std_key``), None for a single split. ``trials``:
    each trial's own figures (mAP, mINP, cmc and counts), where there are several.
    ``per_query``: per valid query, ``trial``, ``query`` (its index in the trial's queries),
    ``ap``, ``inp``, ``first_match`` (1-based rank) and, in the main block, ``path``: what the
    bootstrap resamples and paired comparisons align. ``scoring``: what makes this block differ
    from the others (an eval variant's eval block, a setting's rule), as results state it.
    ``ranks``: CMC points stated directly where a curve was not stored (result files written
    before blocks had one: their text-to-image R1, R5 and R10).
    """

    mAP: float
    mINP: float
    cmc: tuple[float, ...]
    num_query: int
    num_valid_query: int
    num_gallery: int
    spread: Mapping[str, float] | None = field(default=None, hash=False)
    trials: tuple[Mapping[str, Any], ...] = ()
    per_query: Mapping[str, list] | None = field(default=None, hash=False, repr=False)
    scoring: Mapping[str, Any] | None = field(default=None, hash=False)
    ranks: Mapping[int, float] | None = field(default=None, hash=False)

    def value(self, name: str) -> float | None:
        """The metric ``name`` of this block (METRICS), None where it cannot be known."""
        m = metric(name)
        if m.rank is None:
            value = getattr(self, m.name, None)
            return self._per_query_mean(m) if value is None else value
        if self.ranks is not None:
            return self.ranks.get(m.rank)
        return float(self.cmc[min(m.rank, len(self.cmc)) - 1]) if self.cmc else None

    def _per_query_mean(self, m: Metric) -> float | None:
        """A metric without a field of its own: the mean of its per-query values over the valid
        queries, trial by trial, then over trials (as mAP is)."""
        values = m.per_query_values(self.per_query or {})
        if not values:
            return None
        trials = (self.per_query or {}).get("trial") or [0] * len(values)
        means = [sum(v for v, t in zip(values, trials) if t == trial) / trials.count(trial) for trial in
                 dict.fromkeys(trials)]
        return sum(means) / len(means)

    def std(self, name: str) -> float | None:
        """The metric's sd over trials, None for a single split."""
        return (self.spread or {}).get(metric(name).std_key)
