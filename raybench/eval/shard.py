"""Exact scores of a gallery split into shards: each shard counts, the counts add up.

A query's AP, INP and first-match rank depend only on the 1-based rank of each of its true
matches among the non-junk gallery items, and that rank is a count: 1 + the non-junk items
ordered before the match (by distance, then by global gallery index; count.py). Counts add up
over any split of the gallery's columns, so a gallery too large for one process is split into
contiguous shards (``shard_bounds``), each held by its own ``GalleryShard`` (in a Ray actor of
its own: raybench/pipeline/shards.py), and scored in query chunks, in two rounds per chunk:

1. every shard computes its block of distances [chunk rows, shard items] and returns the
   distances of the chunk's true matches that it holds (a query's matches may live in any
   shard): they are gathered and each row's matches sorted by (distance, global index);
2. every shard counts, per sorted match, its non-junk items ordered at or before it
   (``count.count_before``); the sum over shards is the match's rank.

The second round of one chunk and the first of the next are one call per shard (``Step``), so
a chunk costs one round trip. ``evaluate_sharded`` drives the rounds (the caller says how a
list of steps reaches the shards: in process, or Ray actors) and scores the summed ranks with
``rank.evaluate_ranks``: mAP, mINP, CMC and every per-query number are those of one process,
bit for bit, whenever each (query, gallery) distance has the same bits in both. It has: a
shard computes a pair's distance with the same formula (distance.DistanceRows), on the same
query chunks (``distance.row_chunks`` of the whole gallery), on its own columns. BLAS may in
principle pick its kernel by a block's width; with MKL 2024.2 (torch 2.14, AVX-512) blocks of
every width gave identical bits up to d = 768, and at d >= 1024 for shards of 8,192 items or
more of galleries of 200,000 (tests/test_eval_shard.py checks the study's dimensions).

``resolve_shards`` turns the eval block's ``shards`` (``auto`` or N) and ``shard_memory`` into a
number of shards; ``auto`` keeps every study-sized gallery in one process. Top-k lists (the
rank lists' pages) merge per-shard top-k the same way: ``block_top_k`` then ``merge_top_k``.

This module is pure: arrays in, counts out. Nothing here knows Ray or the run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from raybench.errors import EvaluationError
from raybench.eval.count import count_before, sorted_matches
from raybench.eval.distance import chunk_rows
from raybench.eval.matches import SamePid

#: What a shard's process costs besides its features and distances: Python, numpy, pyarrow,
#: torch (its shared libraries count as resident: 0.68 GB for torch 2.14+cu130 alone), numba's
#: kernels and Ray's worker, 0.99 GB measured here before the first distance; and reading its
#: rows and holding their ids, 0.25 GB at Market + 500k in one process (results/bench).
SHARD_BASE_BYTES = 1_250_000_000


def shard_bytes(items: int, dim: int, num_query: int, num_gallery: int) -> int:
    """Peak memory of a shard holding ``items`` of a gallery of ``num_gallery`` (float32
    features of ``dim``): its features and their prepared (normalised) copy, the queries twice,
    one chunk's block of distances, and the process itself (``SHARD_BASE_BYTES``)."""
    return (8 * items * dim + 8 * num_query * dim + 4 * chunk_rows(num_gallery) * items
            + SHARD_BASE_BYTES)


def resolve_shards(setting: int | str, num_gallery: int, dim: int, num_query: int, budget: int) -> int:
    """How many shards a gallery is scored in: ``setting`` N (at most one per gallery item),
    or ``auto``: the fewest whose each fits ``budget`` bytes (``shard_bytes``)."""
    if setting != "auto":
        return max(1, min(int(setting), num_gallery))
    if shard_bytes(0, dim, num_query, num_gallery) >= budget:
        raise EvaluationError(
            f"shard_memory {budget / 1e9:.2f} GB is below what a shard process needs before it holds any "
            f"gallery item ({shard_bytes(0, dim, num_query, num_gallery) / 1e9:.2f} GB for {num_query} queries "
            f"of d={dim}); raise shard_memory or give shards: N")
    per_item = 8 * dim + 4 * chunk_rows(num_gallery)
    room = budget - shard_bytes(0, dim, num_query, num_gallery)
    return max(1, min(num_gallery, math.ceil(num_gallery * per_item / room)))


def shard_bounds(num_items: int, shards: int) -> np.ndarray:
    """[shards + 1] balanced bounds: shard s holds gallery items bounds[s] .. bounds[s+1] - 1."""
    if not 1 <= shards <= max(num_items, 1):
        raise EvaluationError(f"cannot split {num_items} gallery items into {shards} shards")
    return np.linspace(0, num_items, shards + 1).round().astype(np.int64)


# -- one shard ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One shard's share of a block of queries' matches or junk: per row, the shard's entries
    as column indices of the shard (padded with -1), their count, and where they start in the
    row's global list (a row's entries are ascending, so a shard holds a contiguous run)."""

    local: np.ndarray  # [B, W] int64
    count: np.ndarray  # [B] int64
    start: np.ndarray  # [B] int64


def part_of(idx: np.ndarray, n: np.ndarray, lo: int, hi: int) -> Part:
    """The entries of ``idx`` ([B, P] ascending global indices, n[b] of them) in [lo, hi)."""
    present = np.arange(idx.shape[1])[None, :] < n[:, None]
    start = (present & (idx < lo)).sum(axis=1)
    count = (present & (idx >= lo) & (idx < hi)).sum(axis=1)
    width = int(count.max(initial=0))
    k = np.arange(width)
    take = np.minimum(start[:, None] + k[None, :], max(idx.shape[1] - 1, 0))
    local = np.where(k[None, :] < count[:, None], np.take_along_axis(idx, take, axis=1) - lo, -1) if width else \
        np.zeros((len(idx), 0), np.int64)
    return Part(local.astype(np.int64, copy=False), count.astype(np.int64), start.astype(np.int64))


@dataclass(frozen=True)
class Step:
    """One round of one shard for the scoring block ``key`` (queries and eval settings): count
    the chunk ``count`` (query rows a..b) against the sorted matches (``sv``, ``si``, ``npos``;
    ``junk``: the shard's junk columns), then compute the chunk ``compute`` and return the
    distances of its matches held here (``pos``). Either part may be None. A step says all a
    shard needs, so a shard restarted from its stored embeddings takes any step."""

    key: str
    distance: str
    normalize: bool
    count: tuple[int, int] | None = None
    sv: np.ndarray | None = None
    si: np.ndarray | None = None
    npos: np.ndarray | None = None
    junk: Part | None = None
    compute: tuple[int, int] | None = None
    pos: Part | None = None


class GalleryShard:
    """Gallery items offset .. offset + len(features) - 1: their distances to chunks of
    queries, the distances of true matches, and the counts (module docstring)."""

    def __init__(self, features, offset: int, device: str | None = None):
        self.features, self.offset, self.device = features, int(offset), device
        self._prepared: tuple | None = None  # (key, queries, DistanceRows)
        self._block: tuple | None = None  # ((key, a, b), distances)

    def __len__(self) -> int:
        return len(self.features)

    def step(self, queries, step: Step) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(counts [B, P] of ``step.count``, distances [B, W] of ``step.pos``); ``queries``:
        the block's query features [Q, dim] as they were stored (raw, prepared here)."""
        counts = values = None
        if step.count is not None:
            d = self._distances(queries, step, step.count)
            self._block = None
            counts = count_before(d, self.offset, step.sv, step.si, step.npos, step.junk.local, step.junk.count)
        if step.compute is not None:
            d = self._distances(queries, step, step.compute)
            self._block = ((step.key, *step.compute), d)
            values = _gather(d, step.pos)
        return counts, values

    def _distances(self, queries, step: Step, rows: tuple[int, int]):
        """The block of query rows ``rows``: the one held (computed by the previous step), else
        computed now (a shard restarted between two steps computes it again, to the same bits)."""
        if self._block is not None and self._block[0] == (step.key, *rows):
            return self._block[1]
        self._block = None
        if self._prepared is None or self._prepared[0] != step.key:
            from raybench.eval.distance import DistanceRows, prepare_features

            self._prepared = None  # the previous block's features go before these are made
            q, g = prepare_features(queries, self.features, distance=step.distance, normalize=step.normalize,
                                    device=self.device)
            self._prepared = (step.key, q, DistanceRows(g, step.distance))
        _, q, rows_of = self._prepared
        return rows_of(q[rows[0]:rows[1]])


def _gather(d, pos: Part) -> np.ndarray:
    """[B, W] distances of each row's local columns ``pos.local`` (padding: 0)."""
    if pos.local.shape[1] == 0:
        return np.zeros(pos.local.shape, np.float32)
    if hasattr(d, "detach"):
        import torch

        idx = torch.from_numpy(np.maximum(pos.local, 0)).to(d.device)
        return d.gather(1, idx).cpu().numpy()
    return np.take_along_axis(np.asarray(d), np.maximum(pos.local, 0), axis=1)


# -- the rounds --------------------------------------------------------------------------------


#: How a list of steps (one per shard, in order) reaches the shards: returns each one's answer.
RunSteps = Callable[[Sequence[Step]], Sequence[tuple]]


def evaluate_sharded(run_steps: RunSteps, bounds: np.ndarray, same: SamePid, *, key: str, distance: str,
                     normalize: bool, max_rank: int = 50, chunk_size: int | None = None):
    """The RankResult of queries against a gallery held in shards (``bounds``: shard_bounds;
    ``same``: the queries' matches in the whole gallery), from rounds of ``Step`` (module
    docstring). ``key`` names the scoring block (its queries and eval settings) for the
    shards' caches."""
    from raybench.eval.distance import row_chunks
    from raybench.eval.rank import evaluate_ranks

    G = len(same.g_pids)
    if bounds[0] != 0 or bounds[-1] != G:
        raise EvaluationError(f"the shards cover gallery items {bounds[0]}..{bounds[-1]}, the gallery has {G}")
    chunks = list(row_chunks(len(same.q_pids), G, chunk_size))
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

    def ranks():
        held = None  # the chunk counted in the next round: (a, b, matches, sv, si)
        for i in range(len(chunks) + 1):
            rows = chunks[i] if i < len(chunks) else None
            m = same.rows(*rows) if rows else None
            pos = [part_of(m.pos, m.npos, lo, hi) for lo, hi in ranges] if m else [None] * len(ranges)
            steps = [Step(key, distance, normalize, compute=rows, pos=p, **_counting(held, lo, hi))
                     for (lo, hi), p in zip(ranges, pos)]
            answers = run_steps(steps)
            if held is not None:
                yield held[0], held[2].npos, sum(counts for counts, _ in answers)
            held = None
            if m is not None:
                values = np.zeros(m.pos.shape, np.float32 if not answers else _dtype(answers))
                for p, (_, v) in zip(pos, answers):
                    _place(values, p, v)
                held = (*rows, m, *sorted_matches(values, m.pos, m.npos))

    return evaluate_ranks(ranks(), same, max_rank=max_rank)


def _counting(held, lo: int, hi: int) -> dict:
    if held is None:
        return {}
    a, b, m, sv, si = held
    return {"count": (a, b), "sv": sv, "si": si, "npos": m.npos, "junk": part_of(m.junk, m.njunk, lo, hi)}


def _dtype(answers) -> np.dtype:
    kinds = [v.dtype for _, v in answers if v is not None and v.size]
    return np.result_type(*kinds) if kinds else np.dtype(np.float32)


def _place(values: np.ndarray, part: Part, got: np.ndarray) -> None:
    """Write a shard's match distances into the rows' global lists of matches."""
    if not part.local.shape[1]:
        return
    rows, k = np.nonzero(np.arange(part.local.shape[1])[None, :] < part.count[:, None])
    values[rows, part.start[rows] + k] = got[rows, k]


class LocalShards:
    """Shards in this process (tests, and a benchmark's reference): the interface that
    ``Sharded`` reaches its shards through; raybench.pipeline.shards.ActorShards is the same
    over Ray actors."""

    def __init__(self, shards: Sequence[GalleryShard]):
        self.shards = list(shards)

    def put(self, queries):
        return queries

    def run(self, queries, steps: Sequence[Step]) -> list[tuple]:
        return [shard.step(queries, step) for shard, step in zip(self.shards, steps)]


class Sharded:
    """A cell's gallery held in shards (``shards``: LocalShards, or ActorShards over Ray),
    covering the table rows ``gallery`` (in order) split at ``bounds``: what
    eval.protocol.score hands every block that compares plain distances."""

    def __init__(self, shards, bounds: np.ndarray, gallery: np.ndarray, chunk_size: int | None = None):
        self.shards, self.bounds, self.gallery, self.chunk_size = shards, bounds, gallery, chunk_size
        self.blocks = 0

    def holds(self, gallery: np.ndarray) -> bool:
        """Whether ``gallery`` (table rows) is the gallery held: a block over part of it (a
        setting's cameras or draws) is scored in one process instead."""
        return np.array_equal(gallery, self.gallery)

    def evaluate(self, queries, gallery: np.ndarray, same: SamePid, spec):
        """The RankResult of ``queries`` (features [Q, dim]) against the held gallery, which
        must be ``gallery`` (table rows), by the eval block ``spec``; ``same``: the queries'
        true matches and junk in it (matches.SamePid, or any rule with its ``rows``)."""
        if not self.holds(gallery):
            raise EvaluationError("the shards hold another gallery than the one this block scores")
        self.blocks += 1
        handle = self.shards.put(np.ascontiguousarray(queries))
        return evaluate_sharded(lambda steps: self.shards.run(handle, steps), self.bounds, same,
                                key=f"block-{self.blocks}", distance=spec.distance, normalize=spec.normalize,
                                max_rank=spec.max_rank, chunk_size=self.chunk_size)


# -- top-k lists -------------------------------------------------------------------------------


def block_top_k(d: np.ndarray, offset: int, k: int, drop: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest columns of a block of distances d [B, G_block] (gallery items
    offset ..), ordered by (distance, global index), leaving out ``drop`` [B, G_block] (junk):
    (distances [B, k'], global indices [B, k']), k' = min(k, G_block); a row with fewer kept
    items pads with +inf and index -1."""
    d = np.where(drop, np.inf, d) if drop is not None else np.asarray(d)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]  # stable: ties by index
    values = np.take_along_axis(d, order, axis=1)
    idx = np.where(np.isinf(values) & (drop is not None), -1, order + offset)
    return values, idx


def merge_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of the union of blocks' top-k lists, by (distance, global index): the same
    list as ``block_top_k`` of the whole gallery."""
    values = np.concatenate([v for v, _ in parts], axis=1)
    idx = np.concatenate([i for _, i in parts], axis=1)
    key_idx = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_idx, values), axis=1)[:, :k]
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(idx, order, axis=1)
