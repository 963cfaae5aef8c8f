"""mAP, CMC and mINP of a query/gallery ranking: torchreid's numbers, chunked and fast.

Semantics (torchreid ``evaluate_rank``, PROTOCOLS.md): per query the gallery is ordered by
distance, ascending; gallery items with the query's pid AND camera are removed (camera
filtering); a query with no true match left is skipped and mAP, mINP and CMC average over
the others; AP is taken over the whole filtered ranking; CMC is cut at ``max_rank``, or at the
gallery size when that is smaller (torchreid warns and does the same); mINP is fast-reid's,
``#matches / rank of the hardest match``. Ties in distance are ordered by gallery index (see
count.py); on tie-free distances every number equals torchreid's.

Two corners where torchreid fails and raybench does not: when camera filtering leaves a query
fewer than ``max_rank`` items, torchreid's ragged CMC list cannot become an array; here the
curve is extended with its last value (1: every valid query has found its match by then).
When no query is valid, torchreid asserts; here an EvaluationError says which setting to fix.

``clothes`` (matches.Clothes) widens the junk by an outfit rule (raybench.eval.clothes: the
clothes-changing and same-clothes settings); ``ap="trapezoid"`` takes each query's AP as the
trapezoid area under its precision-recall curve, as open-reid-era code that calls
``auc(recall, precision)`` does (Celeb-reID's own evaluator): hit k at rank r_k adds
``((k-1)/(r_k-1) + k/r_k) / 2`` (the first term 1 when r_k is 1) instead of ``k/r_k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from raybench.errors import EvaluationError
from raybench.eval.count import positive_ranks
from raybench.eval.matches import Clothes, SamePid
from raybench.specs.dataset import AP_RULES  # how a query's AP is read from its matches' ranks


@dataclass(frozen=True, eq=False)
class RankResult:
    """Metrics of one query/gallery evaluation; per-query arrays cover every query."""

    mAP: float
    mINP: float
    cmc: np.ndarray  # [min(max_rank, G)] fractions of valid queries matched within rank k+1
    num_query: int
    num_gallery: int
    num_valid_query: int
    ap: np.ndarray  # [Q] float64, NaN for queries without a true match
    inp: np.ndarray  # [Q] float64, NaN likewise
    first_match: np.ndarray  # [Q] int64, 1-based rank of the first true match; 0 if none
    valid: np.ndarray  # [Q] bool: the query has a true match after filtering

    @property
    def rank1(self) -> float:
        return float(self.cmc[0])

    def per_query_values(self) -> dict[str, np.ndarray]:
        """Every per-query list a block keeps (raybench.metrics.Metric.per_query names them):
        [Q] arrays over all queries; the block keeps the valid queries' entries."""
        return {"ap": self.ap, "inp": self.inp, "first_match": self.first_match}


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, *, max_rank: int = 50,
             camera_filter: bool = True, cuhk03: bool = False, seed: int = 0,
             chunk_size: int | None = None, clothes: Clothes | None = None, ap: str = "step") -> RankResult:
    """Score a dense distance matrix.

    distmat: [Q, G] (numpy or torch, any device); q_pids/q_camids: [Q]; g_pids/g_camids: [G].
    cuhk03: the classic single-shot CMC, drawn from ``RandomState(seed)``.
    """
    if getattr(distmat, "ndim", None) != 2:
        raise EvaluationError(f"distmat must be 2-D [num_query, num_gallery], got {type(distmat).__name__}"
                              f" of shape {getattr(distmat, 'shape', None)}")
    Q, G = distmat.shape
    from raybench.eval.distance import row_chunks

    blocks = ((a, b, distmat[a:b]) for a, b in row_chunks(Q, G, chunk_size))
    return evaluate_rows(blocks, q_pids, g_pids, q_camids, g_camids, shape=(Q, G), max_rank=max_rank,
                         camera_filter=camera_filter, cuhk03=cuhk03, seed=seed, clothes=clothes, ap=ap)


def evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, *, distance: str = "euclidean",
                      normalize: bool = True, device: str | None = None, max_rank: int = 50,
                      camera_filter: bool = True, cuhk03: bool = False, seed: int = 0,
                      chunk_size: int | None = None, clothes: Clothes | None = None,
                      ap: str = "step") -> RankResult:
    """Score query features against gallery features without a Q x G distance matrix.

    qf: [Q, dim], gf: [G, dim] (numpy or torch). distance: squared "euclidean" or "cosine",
    torchreid's formulas; normalize: L2-normalise features first. device: None picks the GPU
    when present. At most ``chunk_size`` query rows of distances exist at a time.
    """
    from raybench.eval.distance import DistanceRows, prepare_features, row_chunks

    q, g = prepare_features(qf, gf, distance=distance, normalize=normalize, device=device)
    rows = DistanceRows(g, distance)
    blocks = ((a, b, rows(q[a:b])) for a, b in row_chunks(len(q), len(g), chunk_size))
    return evaluate_rows(blocks, q_pids, g_pids, q_camids, g_camids, shape=(len(q), len(g)),
                         max_rank=max_rank, camera_filter=camera_filter, cuhk03=cuhk03, seed=seed,
                         clothes=clothes, ap=ap)


def evaluate_rows(blocks: Iterable[tuple[int, int, object]], q_pids, g_pids, q_camids, g_camids, *,
                  shape: tuple[int, int], max_rank: int = 50, camera_filter: bool = True,
                  cuhk03: bool = False, seed: int = 0, clothes: Clothes | None = None,
                  ap: str = "step") -> RankResult:
    """Score distance rows given block by block: ``(start, stop, d[start:stop])`` in query order.

    The engine behind ``evaluate``, ``evaluate_features`` and re-ranking, which all produce
    distances a block of queries at a time.
    """
    Q, G = shape
    if ap not in AP_RULES:
        raise EvaluationError(f"ap rule {ap!r}; allowed: {', '.join(AP_RULES)}")
    if cuhk03 and clothes is not None and clothes.mode != "standard":
        raise EvaluationError("the classic CUHK03 metric has no clothes rule: score clothes settings Market-style")
    same = _matches(q_pids, g_pids, q_camids, g_camids, camera_filter, Q, G, max_rank, clothes)
    acc = _Accumulator(Q, ap == "trapezoid")
    cmc_sampled = _SampledCMC(same, min(max_rank, G), seed) if cuhk03 else None
    for a, b, d in blocks:
        matches = same.rows(a, b)
        acc.add(a, matches.npos, positive_ranks(d, matches))
        if cmc_sampled is not None:
            cmc_sampled.add(a, d, acc.valid[a:b])
        del d  # before the next block is computed: one block of distances at a time
    return _result(acc, same, min(max_rank, G), G, cmc_sampled)


def evaluate_ranks(blocks: Iterable[tuple[int, np.ndarray, np.ndarray]], same: SamePid, *,
                   max_rank: int = 50) -> RankResult:
    """Score true-match ranks found elsewhere (a sharded gallery's summed counts, eval/shard.py):
    ``(start, npos [B], ranks [B, P])`` per block of queries, ranks 1-based and ascending as
    ``count.positive_ranks`` gives them. ``same``: the queries' matches in the whole gallery."""
    G = len(same.g_pids)
    _check_max_rank(max_rank)
    acc = _Accumulator(len(same.q_pids))
    for a, npos, ranks in blocks:
        acc.add(a, npos, ranks)
    return _result(acc, same, min(max_rank, G), G)


def _check_max_rank(max_rank: int) -> None:
    if max_rank < 1:
        raise EvaluationError(f"max_rank must be at least 1, got {max_rank}")


def _matches(q_pids, g_pids, q_camids, g_camids, camera_filter: bool, Q: int, G: int, max_rank: int,
             clothes=None) -> SamePid:
    _check_max_rank(max_rank)
    same = SamePid(q_pids, g_pids, q_camids, g_camids, camera_filter, clothes)
    if (len(same.q_pids), len(same.g_pids)) != (Q, G):
        raise EvaluationError(f"distances are {Q} x {G} but there are {len(same.q_pids)} query "
                              f"and {len(same.g_pids)} gallery ids")
    return same


def _result(acc: "_Accumulator", same: SamePid, length: int, G: int, cmc_sampled=None) -> RankResult:
    if not acc.valid.any():
        raise EvaluationError(same.explain_no_valid_query())
    cmc = cmc_sampled.curve() if cmc_sampled is not None else _cmc(acc.first[acc.valid], length)
    return acc.result(cmc, G)


class _Accumulator:
    """Per-query AP, INP and first-match rank, filled block by block."""

    def __init__(self, Q: int, trapezoid: bool = False):
        self.trapezoid = trapezoid
        self.ap = np.full(Q, np.nan)
        self.inp = np.full(Q, np.nan)
        self.first = np.zeros(Q, np.int64)
        self.valid = np.zeros(Q, bool)

    def add(self, a: int, npos: np.ndarray, ranks: np.ndarray) -> None:
        """ranks: [B, P] ascending 1-based ranks of each row's npos true matches."""
        b = a + len(npos)
        ok = npos > 0
        self.valid[a:b] = ok
        if not ok.any() or ranks.shape[1] == 0:
            return
        k = np.arange(1, ranks.shape[1] + 1)
        safe = np.where(ranks > 0, ranks, 1)
        precision = k[None, :] / safe
        if self.trapezoid:  # the mean of the precisions just before and at each hit
            before = np.where(safe > 1, (k[None, :] - 1) / np.maximum(safe - 1, 1), 1.0)
            precision = (before + precision) / 2
        precision = np.where(k[None, :] <= npos[:, None], precision, 0.0)
        n = np.maximum(npos, 1)
        hardest = np.take_along_axis(safe, (n - 1)[:, None], axis=1)[:, 0]
        # a running sum read at the last match: the same additions whatever the padding
        total = np.take_along_axis(np.cumsum(precision, axis=1), (n - 1)[:, None], axis=1)[:, 0]
        self.ap[a:b] = np.where(ok, total / n, np.nan)
        self.inp[a:b] = np.where(ok, npos / hardest, np.nan)
        self.first[a:b] = np.where(ok, ranks[:, 0], 0)

    def result(self, cmc: np.ndarray, G: int) -> RankResult:
        v = self.valid
        return RankResult(
            mAP=float(self.ap[v].mean()), mINP=float(self.inp[v].mean()), cmc=cmc,
            num_query=len(v), num_gallery=G, num_valid_query=int(v.sum()),
            ap=self.ap, inp=self.inp, first_match=self.first, valid=v,
        )


def _cmc(first: np.ndarray, length: int) -> np.ndarray:
    """CMC from the first-match ranks of the valid queries."""
    hits = np.bincount(np.minimum(first, length + 1), minlength=length + 2)[1:length + 1]
    return np.cumsum(hits) / len(first)


class _SampledCMC:
    """The CUHK03 classic CMC, one valid query at a time, in query order (for the RNG stream)."""

    def __init__(self, same: SamePid, length: int, seed: int):
        from raybench.eval.cuhk03 import sampled_cmc

        self.same, self.length, self.sample = same, length, sampled_cmc
        self.rng = np.random.RandomState(seed)
        self.curves: list[np.ndarray] = []

    def add(self, a: int, d, valid: np.ndarray) -> None:
        d = d.detach().cpu().numpy() if hasattr(d, "detach") else np.asarray(d)
        s = self.same
        for i in np.flatnonzero(valid):
            q = a + i
            self.curves.append(self.sample(d[i], s.q_pids[q], s.q_camids[q], s.g_pids, s.g_camids,
                                           self.length, s.camera_filter, self.rng))

    def curve(self) -> np.ndarray:
        return np.mean(self.curves, axis=0)

