"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), as torchreid's ``re_ranking`` computes it.

torchreid's version holds five dense (Q+G) x (Q+G) matrices and loops in Python: about 7 GB
and minutes at Market size, and impossible at MSMT17 size (94K x 94K). Here the same algorithm
runs on sparse structures:

- only the first ``max(k1 + 1, k2)`` neighbours of each image are kept (all the algorithm
  reads of the full argsort), with each row's maximum for the normalisation;
- V (the k-reciprocal weights) and its query expansion are sparse rows of a few hundred
  entries; the Jaccard distance is computed for query rows only, against the gallery, in
  chunks (a numba kernel walks the shared non-zeros);
- the final distance never exists as a whole: ``rerank_rows`` yields it a block of queries at
  a time, for ``rank.evaluate_rows``.

Two entry points. ``re_ranking(q_g, q_q, g_g)`` takes torchreid's dense inputs and returns its
output, equal to torchreid's to float32 rounding (neighbours ordered by a stable sort: ties by
index). ``rerank_rows(qf, gf, ...)`` starts from features and needs memory linear in Q+G (it
builds a ``Reranker``, then reads its rows; the benchmark uses the two steps apart); it
differs from the dense path in two documented ways, both at the level of float32 rounding: it
treats the distance as symmetric (torchreid normalises column i of the stacked matrix by the
column's maximum and reads it as row i; the two agree up to rounding of q.g vs g.q), and pair
distances off the neighbour lists are recomputed from the features. A near tie at the k-th
neighbour could then pick the other neighbour; nothing else is approximated, unless the
neighbour search is faiss's approximate one (``knn="faiss"``, or "auto" beyond 250K images:
see knn.py for what that changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from raybench.errors import EvaluationError

#: Rows per block of the fixed-size temporaries (pair gathers, reciprocal checks, expansions):
#: large enough that numpy and torch run at full speed, small enough that the temporaries stay
#: a few tens of MB whatever N is (8192 pairs make [8192, d] temporaries of 16 MB at d=512).
PAIR_BLOCK = 1 << 13
GRAPH_BLOCK = 512


@dataclass(frozen=True)
class RerankParams:
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self):
        if self.k1 < 1 or self.k2 < 1 or not 0.0 <= self.lambda_value <= 1.0:
            raise EvaluationError(f"re-ranking needs k1 >= 1, k2 >= 1 and 0 <= lambda <= 1, got {self}")

    @property
    def width(self) -> int:
        """How many nearest neighbours per image the algorithm ever reads."""
        return max(self.k1 + 1, self.k2)


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """torchreid's ``re_ranking`` on dense matrices: [Q, G], [Q, Q], [G, G] in, [Q, G] out."""
    p = RerankParams(k1, k2, lambda_value)
    q_g, q_q, g_g = (np.asarray(x) for x in (q_g_dist, q_q_dist, g_g_dist))
    Q = q_g.shape[0]
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    full = np.power(full, 2).astype(np.float32)
    od = np.transpose(1.0 * full / np.max(full, axis=0))  # torchreid's normalisation, verbatim
    nn = np.argsort(od, axis=1, kind="stable")[:, :p.width]
    graph = _Graph(nn, lambda rows, cols: od[rows, cols])
    return _Jaccard(graph.expanded_weights(p), Q, p.lambda_value).rows(0, Q, od[:Q, Q:])


def rerank_rows(qf, gf, *, k1: int = 20, k2: int = 6, lambda_value: float = 0.3, distance: str = "euclidean",
                normalize: bool = True, device: str | None = None, chunk_size: int | None = None,
                knn: str = "auto", nprobe: int = 32) -> Iterator[tuple[int, int, np.ndarray]]:
    """Re-ranked distances from features, ``(start, stop, final[start:stop])`` over the queries.

    The base distance is ``distance`` (torchreid's formulas, as in ``evaluate_features``),
    squared and normalised per row as torchreid does with the matrix it is given. knn:
    "exact", "faiss" (approximate, for millions of images) or "auto" (see knn.py).

    Memory: O((Q+G) * (width + non-zeros of V per row)) for the graph, plus blocks of
    ``chunk_size`` rows of distances and a few fixed-size temporaries (``PAIR_BLOCK``,
    ``GRAPH_BLOCK``); never (Q+G)^2. tests/test_rerank.py checks the peak RSS against the
    dense size; ``raybench bench metrics --scale msmt17 --rerank`` measures it at MSMT17 size.
    """
    reranker = Reranker.from_features(qf, gf, k1=k1, k2=k2, lambda_value=lambda_value, distance=distance,
                                      normalize=normalize, device=device, chunk_size=chunk_size, knn=knn,
                                      nprobe=nprobe)
    yield from reranker.rows(chunk_size)


class Reranker:
    """The k-reciprocal structure of Q+G images, built once (``from_features``: the neighbour
    search, then the graph); ``rows`` then gives the re-ranked distances a block of queries at a
    time. ``seconds`` holds the build's two phases, for the benchmark to attribute its time."""

    def __init__(self, q, g, rowmax, final: "_Jaccard", distance: str, seconds: dict[str, float]):
        from raybench.eval.distance import DistanceRows

        self.q, self.rowmax, self.final, self.seconds = q, rowmax, final, seconds
        self.num_gallery = len(g)
        self.to_gallery = DistanceRows(g, distance)

    @classmethod
    def from_features(cls, qf, gf, *, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                      distance: str = "euclidean", normalize: bool = True, device: str | None = None,
                      chunk_size: int | None = None, knn: str = "auto", nprobe: int = 32) -> "Reranker":
        import time

        import torch

        from raybench.eval.distance import prepare_features
        from raybench.eval.knn import neighbours

        start = time.perf_counter()
        p = RerankParams(k1, k2, lambda_value)
        q, g = prepare_features(qf, gf, distance=distance, normalize=normalize, device=device)
        x = torch.cat([q, g])  # freed once the graph is built: only the query rows are read later
        nn, rowmax = neighbours(x, distance, p.width, backend=knn, chunk_size=chunk_size, nprobe=nprobe)
        searched = time.perf_counter()
        final = _Jaccard(_Graph(nn, _PairDistance(x, distance, rowmax)).expanded_weights(p), len(q), p.lambda_value)
        seconds = {"neighbours": searched - start, "graph": time.perf_counter() - searched}
        return cls(q, g, rowmax, final, distance, seconds)

    def rows(self, chunk_size: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        from raybench.eval.distance import row_chunks

        for a, b in row_chunks(len(self.q), self.num_gallery, chunk_size):
            od = self.to_gallery(self.q[a:b]).pow_(2).div_(self.rowmax[a:b, None])
            block = self.final.rows(a, b, od.cpu().numpy())
            del od  # not alive while the caller scores this block and the next one is computed
            yield a, b, block


class _PairDistance:
    """Normalised squared distance of arbitrary pairs (i, j), from the features."""

    def __init__(self, x, distance: str, rowmax):
        import torch.nn.functional as F

        self.x = F.normalize(x, p=2, dim=1) if distance == "cosine" else x
        self.distance, self.rowmax = distance, rowmax

    def __call__(self, rows: np.ndarray, cols: np.ndarray, block: int = PAIR_BLOCK) -> np.ndarray:
        """Pairs a block at a time: gathering both sides of millions of pairs at once would
        hold [pairs, dim] copies of the features (gigabytes at MSMT17 size)."""
        out = np.empty(len(rows), np.float32)
        for a in range(0, len(rows), block):
            out[a:a + block] = self._block(rows[a:a + block], cols[a:a + block])
        return out

    def _block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        import torch

        dev = self.x.device
        r, c = torch.from_numpy(rows).to(dev), torch.from_numpy(cols).to(dev)
        xr, xc = self.x[r], self.x[c]
        dot = (xr * xc).sum(dim=-1)
        if self.distance == "cosine":
            d = 1 - dot
        else:
            d = torch.pow(xr, 2).sum(dim=-1) + torch.pow(xc, 2).sum(dim=-1) - 2 * dot
        return (torch.pow(d, 2) / self.rowmax[r]).float().cpu().numpy()


class _Graph:
    """The k-reciprocal structure over all Q+G images, from each one's nearest neighbours."""

    def __init__(self, nn: np.ndarray, od_pairs: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.nn, self.od_pairs = nn, od_pairs

    def reciprocal(self, k: int) -> np.ndarray:
        """[N, k]: row i's k nearest that also have i among their k nearest (others -1)."""
        fwd = self.nn[:, :k]
        out = np.empty_like(fwd)
        for a in range(0, len(fwd), GRAPH_BLOCK):
            f = fwd[a:a + GRAPH_BLOCK]
            mine = np.arange(a, a + len(f))[:, None, None]
            out[a:a + GRAPH_BLOCK] = np.where((fwd[f] == mine).any(axis=-1), f, -1)
        return out

    def expanded_weights(self, p: RerankParams):
        """V after query expansion: a CSR matrix [N, N] float32."""
        import scipy.sparse as sp

        N = len(self.nn)
        recip = self.reciprocal(p.k1 + 1)
        half = self.reciprocal(int(np.around(p.k1 / 2.0)) + 1)
        rows, cols = [], []
        for a in range(0, N, GRAPH_BLOCK):  # compacted per block: the padded rows are ~6x larger
            grown = _expansion(recip[a:a + GRAPH_BLOCK], half)
            keep = grown >= 0
            rows.append(np.repeat(np.arange(a, a + len(grown)), keep.sum(axis=1)))
            cols.append(grown[keep])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        w = np.exp(-self.od_pairs(rows, cols)).astype(np.float32)
        w /= np.bincount(rows, weights=w, minlength=N).astype(np.float32)[rows]
        v = sp.csr_matrix((w, (rows, cols)), shape=(N, N), dtype=np.float32)
        if p.k2 == 1:
            return v
        k2 = min(p.k2, self.nn.shape[1])
        qe_rows = np.repeat(np.arange(N), k2)
        select = sp.csr_matrix((np.ones(len(qe_rows), np.float32), (qe_rows, self.nn[:, :k2].ravel())),
                               shape=(N, N))
        v = (select @ v).tocsr()
        v.data /= np.float32(k2)
        return v


def _expansion(recip: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Rows of k-reciprocal sets grown by the half-size sets of their members that overlap
    them by more than 2/3; sorted, unique, padded with -1."""
    cand = np.where(recip[..., None] >= 0, half[recip], -1)  # [B, k1+1, kh]
    size = (cand >= 0).sum(axis=-1)
    inter = ((cand[..., None] == recip[:, None, None, :]) & (cand[..., None] >= 0)).any(-1).sum(-1)
    keep = (recip >= 0) & (inter > 2.0 / 3 * size)
    cand = np.where(keep[..., None], cand, -1).reshape(len(recip), -1)
    every = np.sort(np.concatenate([recip, cand], axis=1), axis=1)
    dup = np.zeros_like(every, dtype=bool)
    dup[:, 1:] = every[:, 1:] == every[:, :-1]
    every[dup] = -1
    return np.sort(every, axis=1)[:, ::-1]  # valid entries first (descending), -1 last


class _Jaccard:
    """Final distances of query rows: (1 - lambda) Jaccard + lambda original, vs the gallery."""

    def __init__(self, v, num_query: int, lambda_value: float):
        self.v, self.csc, self.Q, self.lam = v, v.tocsc(), num_query, lambda_value

    def rows(self, a: int, b: int, od_rows: np.ndarray) -> np.ndarray:
        from raybench.eval import _kernels

        r, c = self.v[a:b], self.csc
        shared = np.zeros((b - a, self.v.shape[1] - self.Q), np.float32)
        _kernels.shared_min(r.indptr, r.indices, r.data, c.indptr, c.indices, c.data, self.Q, shared)
        # 1 - s / (2 - s), then (1 - lambda) J + lambda od: torchreid's float32 steps, in place
        np.divide(shared, 2.0 - shared, out=shared)
        np.subtract(np.float32(1), shared, out=shared)
        shared *= np.float32(1 - self.lam)
        od_rows = od_rows.astype(np.float32, copy=False)
        od_rows *= np.float32(self.lam)
        shared += od_rows
        return shared
