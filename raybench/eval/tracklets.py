"""Video ReID: a tracklet's frame embeddings pooled into one vector, before the distance.

A video dataset's table holds one row per frame (datasets/manifest.py: ``tracklet`` names the
tracklet, ``frame`` places the frame in it). Scoring ranks tracklets, so ``pool_tracklets``
turns the frame columns into tracklet columns: one row per (trial, split, tracklet), its pid,
camera and split those of its frames (which must agree), its ``path`` the tracklet's name (the
per-query unit of the result and of the rank lists), its embedding the mean or the
element-wise max of the frames that ``frames`` picks:

- ``all``: every frame the table holds for the tracklet;
- ``evenly:N``: torchreid's test sampling (``VideoDataset.__getitem__``, sample_method
  'evenly', seq_len N), on the frames in ``frame`` order: a tracklet of n >= N frames gives the
  N frames 0, k, 2k, ... (N - 1)k with k = n // N (the tail past (N - 1)k is never used); a
  shorter one gives all n, then its last frame again until there are N (so the last frame
  weighs more in the mean, as in torchreid).

The pooled vectors are not normalised here: the eval block's ``normalize`` does that after
pooling, as torchreid's ``normalize_feature`` does (frames are never normalised one by one).
A query tracklet and a gallery tracklet of the same name (MARS's official gallery holds its
queries) are pooled apart, since they are two rows of the ranking. Tracklets come out in the
order of their first row in the table (the adapter's order). ``evenly_indices`` also serves
``embed_frames`` (pipeline/plan.py): embedding only the frames a pooling will read.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from raybench.errors import EvaluationError
from raybench.specs import POOLS, frames_count

#: Frames pooled per chunk: bounds the float64 copy the pooling makes (64 MiB at d=256).
CHUNK_ROWS = 1 << 15


def evenly_indices(lengths: np.ndarray, count: int) -> np.ndarray:
    """torchreid's ``evenly`` frame indices for tracklets of ``lengths`` frames: int64
    [len(lengths), count], each row the positions (0-based, in frame order) that its tracklet's
    sample reads (module docstring)."""
    n = np.asarray(lengths, dtype=np.int64)[:, None]
    i = np.arange(count, dtype=np.int64)[None, :]
    return np.where(n >= count, (n // count) * i, np.minimum(i, n - 1))


def selected_rows(cols: Mapping[str, np.ndarray], frames: str) -> np.ndarray:
    """A mask of the rows that pooling with ``frames`` reads (``embed_frames``: the frames worth
    embedding); ``cols`` holds tracklet, frame, split and, where there are trials, trial."""
    count = frames_count(frames)
    if count is None:
        return np.ones(len(cols["frame"]), dtype=bool)
    order, starts, lengths = _groups(_group_codes(cols), np.asarray(cols["frame"]))
    picks = starts[:, None] + evenly_indices(lengths, count)
    keep = np.zeros(len(order), dtype=bool)
    keep[order[picks.ravel()]] = True
    return keep


def pool_tracklets(cols: Mapping[str, np.ndarray], pool: str, frames: str) -> dict:
    """Frame columns (path, pid, camid, split, tracklet, frame, embedding [rows, d], trial or
    None) -> tracklet columns (path = the tracklet's name, pid, camid, split, trial, embedding
    float32 [tracklets, d], and ``frames``: how many frame rows each pooled, repeats counted).
    A tracklet whose frames disagree on pid or camera is an EvaluationError naming it."""
    if pool not in POOLS:
        raise EvaluationError(f"unknown pool {pool!r}; allowed: {', '.join(POOLS)}")
    trial = cols.get("trial")
    order, starts, lengths = _groups(_group_codes(cols), np.asarray(cols["frame"]))
    first = order[starts]
    _check_constant(cols, order, starts, lengths, first)
    count = frames_count(frames)
    picks = (starts[:, None] + evenly_indices(lengths, count)) if count else None
    emb = np.asarray(cols["embedding"])
    in_order = bool(np.array_equal(order, np.arange(len(order))))  # a stored table usually is: no copy
    pooled = np.empty((len(starts), emb.shape[1]), dtype=np.float32)
    for a, b in _chunks(lengths if count is None else np.full(len(lengths), count)):
        if picks is None:
            first_row, end = starts[a], starts[b - 1] + lengths[b - 1]
            block = emb[first_row:end] if in_order else emb[order[first_row:end]]
            at = starts[a:b] - first_row
            # sums in float64 (a float32 running sum over hundreds of frames drifts); max is exact
            pooled[a:b] = (np.add.reduceat(block, at, axis=0, dtype=np.float64) / lengths[a:b, None] if pool == "mean"
                           else np.maximum.reduceat(block, at, axis=0))
        else:
            block = emb[order[picks[a:b]]]  # [tracklets, N, d]
            pooled[a:b] = block.mean(axis=1, dtype=np.float64) if pool == "mean" else block.max(axis=1)
    shown = np.argsort(first, kind="stable")  # the table's order
    out = {"path": np.asarray(cols["tracklet"], dtype=object)[first][shown], "embedding": pooled[shown],
           "frames": (lengths if count is None else np.full(len(lengths), count))[shown],
           "trial": None if trial is None else np.asarray(trial)[first][shown]}
    for name in ("pid", "camid", "split", "tracklet"):
        out[name] = np.asarray(cols[name])[first][shown]
    return out


def _group_codes(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """One integer per (trial, split, tracklet): the rows pooled together (mixed-radix codes,
    not renumbered: grouping only needs them equal where the keys are)."""
    code = _codes(cols["tracklet"])
    for values in (cols["split"], cols.get("trial")):
        if values is not None:
            part = _codes(values)
            code = code * (int(part.max(initial=0)) + 1) + part
    return code


def _codes(values) -> np.ndarray:
    """Integer codes of any column (strings included), equal where the values are."""
    return np.unique(np.asarray(values), return_inverse=True)[1].ravel().astype(np.int64)


def _groups(codes: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row order: by group, then frame; each group's first position in it; its length)."""
    codes = np.asarray(codes)
    if len(codes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((np.asarray(frame), codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    lengths = np.diff(np.r_[starts, len(codes)])
    return order, starts, lengths


def _check_constant(cols, order, starts, lengths, first) -> None:
    group = np.repeat(np.arange(len(starts)), lengths)
    for name in ("pid", "camid"):
        values = np.asarray(cols[name])
        differs = values[order] != values[first][group]
        if differs.any():
            at = int(group[np.argmax(differs)])
            raise EvaluationError(f"tracklet {cols['tracklet'][first[at]]!r}: its frames have different "
                                  f"{name}s; a tracklet is one person seen by one camera")


def _chunks(sizes: np.ndarray):
    """(a, b) ranges of tracklets whose sizes sum to about CHUNK_ROWS (one at least)."""
    ends = np.cumsum(sizes)
    a = 0
    while a < len(sizes):
        base = ends[a - 1] if a else 0
        b = max(a + 1, int(np.searchsorted(ends, base + CHUNK_ROWS, side="right")))
        yield a, b
        a = b
