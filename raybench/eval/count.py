"""The rank of every true match in its query's filtered ranking, without sorting the gallery.

AP, CMC and mINP depend only on where the true matches land. For a query with P true matches
(P is small: tens) the rank of match k is 1 + the number of non-junk gallery items ordered
before it, so the P matches are sorted and the gallery row is scanned once, each item falling
into the gap between two consecutive matches; a cumulative count of the gaps gives the ranks.
Items beyond the hardest match are skipped with one comparison. That is O(G + P log P) per
query instead of torchreid's O(G log G) argsort plus a Python loop over the whole ranking.

Order (the tie rule): by distance, then by gallery index. It is the order of a stable sort of
each row, so on rows without ties it is the only order and equals torchreid's argsort; on exact
ties torchreid's order is whatever numpy's unstable introsort leaves, ours is defined.

On the CPU the scan is a numba kernel, parallel over query rows; on the GPU (or without
numba) the same counts come from ``torch.searchsorted`` and a per-row histogram.
"""

from __future__ import annotations

import numpy as np

from raybench.errors import EvaluationError
from raybench.eval.matches import RowMatches


def positive_ranks(d, m: RowMatches) -> np.ndarray:
    """1-based ranks among the non-junk gallery items of each row's true matches, ascending.

    d: [B, G] distances (numpy, or a torch tensor on any device); m: the rows' matches.
    Returns [B, P] int64; entries past ``m.npos[b]`` are 0.
    """
    if hasattr(d, "detach"):  # a torch tensor
        if d.device.type != "cpu":
            return _ranks_torch(d, m)
        d = d.detach().numpy()
    d = np.asarray(d)
    try:
        from raybench.eval import _kernels
    except ImportError:  # numba missing: the torch path is exact too, only slower on a CPU
        import torch

        return _ranks_torch(torch.from_numpy(np.ascontiguousarray(d)), m)
    out = np.zeros(m.pos.shape, np.int64)
    bad = np.zeros(len(d), np.bool_)
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float64)
    _kernels.ranks(np.ascontiguousarray(d), m.pos, m.npos, m.junk, m.njunk, out, bad)
    if bad.any():
        raise EvaluationError(_nan_message(int(bad.sum())))
    return out


def _nan_message(rows: int) -> str:
    return (f"{rows} query rows have NaN distances: the embeddings contain NaN or inf "
            "(check the model's precision setting and its input preprocessing)")


def _ranks_torch(d, m: RowMatches) -> np.ndarray:
    """The same counts with torch ops (GPU, or a CPU without numba)."""
    import torch

    if torch.isnan(d).any():
        raise EvaluationError(_nan_message(int(torch.isnan(d).any(dim=1).sum())))
    dev = d.device
    B, G = d.shape
    P = m.pos.shape[1]
    if P == 0:
        return np.zeros((B, 0), np.int64)
    pos = torch.from_numpy(m.pos).to(dev)
    present = pos >= 0
    keys_idx = torch.where(present, pos, G)  # padding sorts after every real item
    vals = d.gather(1, pos.clamp(min=0)).masked_fill(~present, float("inf"))
    vals, order = vals.sort(dim=1, stable=True)  # pos is ascending, so ties stay by index
    keys_idx = keys_idx.gather(1, order)
    hist = torch.zeros(B, P + 1, dtype=torch.int64, device=dev)
    gallery_idx = torch.arange(G, device=dev).expand(B, G)
    hist.scatter_add_(1, _bucket(vals, keys_idx, d, gallery_idx), torch.ones_like(d, dtype=torch.int64))
    if m.junk.shape[1]:
        junk = torch.from_numpy(m.junk).to(dev)
        jpresent = junk >= 0
        jb = _bucket(vals, keys_idx, d.gather(1, junk.clamp(min=0)), junk.clamp(min=0))
        hist.scatter_add_(1, jb, -jpresent.long())
    ranks = hist.cumsum(dim=1)[:, :P].cpu().numpy()
    ranks[np.arange(P)[None, :] >= m.npos[:, None]] = 0
    return ranks


def _bucket(vals, keys_idx, v, j):
    """For items (value v, gallery index j): how many sorted matches come strictly before them."""
    import torch

    b = torch.searchsorted(vals, v.contiguous())  # matches with a smaller value
    last = vals.shape[1] - 1
    while True:  # equal value, smaller index: also before (rare; one pass when there are no ties)
        bc = b.clamp(max=last)
        step = (b <= last) & (vals.gather(1, bc) == v) & (keys_idx.gather(1, bc) < j)
        if not step.any():
            return b
        b = b + step
