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

The counts add up over any split of the gallery's columns: given a row's true matches sorted
over the whole gallery (``sorted_matches``), ``count_before`` counts one block of columns (a
shard, eval/shard.py), and the blocks' counts sum to ``positive_ranks``'s ranks, exactly.
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
    def kernel(kernels, d, bad):
        out = np.zeros(m.pos.shape, np.int64)
        kernels.ranks(d, m.pos, m.npos, m.junk, m.njunk, out, bad)
        return out

    return _on_device(d, lambda t: _ranks_torch(t, m), kernel)


def _on_device(d, torch_path, kernel_path):
    """Run where the distances ``d`` are: ``torch_path(tensor)`` for a tensor on a GPU (or on a
    CPU without numba: exact too, only slower), else ``kernel_path(raybench.eval._kernels, d,
    bad)`` on a contiguous float numpy ``d``; a row the kernel flags in ``bad`` (NaN
    distances) is one clear error."""
    if hasattr(d, "detach") and d.device.type != "cpu":
        return torch_path(d)
    d = d.detach().numpy() if hasattr(d, "detach") else np.asarray(d)
    try:
        from raybench.eval import _kernels
    except ImportError:
        import torch

        return torch_path(torch.from_numpy(np.ascontiguousarray(d)))
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float64)
    bad = np.zeros(len(d), np.bool_)
    out = kernel_path(_kernels, np.ascontiguousarray(d), bad)
    if bad.any():
        raise EvaluationError(_nan_message(int(bad.sum())))
    return out


def _nan_message(rows: int) -> str:
    return (f"{rows} query rows have NaN distances: the embeddings contain NaN or inf "
            "(check the model's precision setting and its input preprocessing)")


def sorted_matches(values: np.ndarray, pos: np.ndarray, npos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's true matches ordered by (distance, gallery index): the order ``positive_ranks``
    sorts them in. values [B, P]: the matches' distances; pos [B, P]: their global gallery
    indices, ascending (RowMatches.pos); entries past npos[b] are padding. Returns (sv, si),
    the padding +inf with index ``PAD_INDEX``, so that it sorts after every real match."""
    present = np.arange(pos.shape[1])[None, :] < npos[:, None]
    if np.isnan(values[present]).any():
        raise EvaluationError(_nan_message(int(np.isnan(np.where(present, values, 0)).any(axis=1).sum())))
    v = np.where(present, values, np.inf).astype(values.dtype, copy=False)
    order = np.argsort(v, axis=1, kind="stable")  # pos ascending: ties stay in gallery order
    return (np.take_along_axis(v, order, axis=1),
            np.take_along_axis(np.where(present, pos, PAD_INDEX), order, axis=1).astype(np.int64, copy=False))


#: The gallery index of sorted_matches' padding: after every real item.
PAD_INDEX = np.iinfo(np.int64).max


def count_before(d, offset: int, sv: np.ndarray, si: np.ndarray, npos: np.ndarray, junk: np.ndarray,
                 njunk: np.ndarray) -> np.ndarray:
    """[B, P] int64: per row and per sorted true match k (``sorted_matches`` over the whole
    gallery), how many non-junk items of the block ``d`` [B, G_block] (gallery items offset ..
    offset + G_block - 1, numpy or torch on any device) are ordered at or before it; junk
    [B, J] holds column indices of the block (padded), njunk their counts. Summed over blocks
    that cover the gallery, these are the 1-based ranks ``positive_ranks`` gives."""
    def kernel(kernels, d, bad):
        out = np.zeros(sv.shape, np.int64)
        kernels.counts(d, int(offset), np.ascontiguousarray(sv, d.dtype), np.ascontiguousarray(si), npos, junk, njunk,
                       out, bad)
        return out

    return _on_device(d, lambda t: _counts_torch(t, offset, sv, si, npos, junk, njunk), kernel)


def _ranks_torch(d, m: RowMatches) -> np.ndarray:
    """The same counts with torch ops (GPU, or a CPU without numba)."""
    import torch

    if torch.isnan(d).any():
        raise EvaluationError(_nan_message(int(torch.isnan(d).any(dim=1).sum())))
    G = d.shape[1]
    if m.pos.shape[1] == 0:
        return np.zeros((len(d), 0), np.int64)
    pos = torch.from_numpy(m.pos).to(d.device)
    present = pos >= 0
    keys_idx = torch.where(present, pos, G)  # padding sorts after every real item
    vals = d.gather(1, pos.clamp(min=0)).masked_fill(~present, float("inf"))
    vals, order = vals.sort(dim=1, stable=True)  # pos is ascending, so ties stay by index
    return _histogram(d, 0, vals, keys_idx.gather(1, order), m.npos, m.junk)


def _counts_torch(d, offset: int, sv: np.ndarray, si: np.ndarray, npos: np.ndarray, junk: np.ndarray,
                  njunk: np.ndarray) -> np.ndarray:
    """count_before with torch ops (GPU, or a CPU without numba)."""
    import torch

    if torch.isnan(d).any():
        raise EvaluationError(_nan_message(int(torch.isnan(d).any(dim=1).sum())))
    if sv.shape[1] == 0:
        return np.zeros((len(d), 0), np.int64)
    vals = torch.from_numpy(np.ascontiguousarray(sv)).to(device=d.device, dtype=d.dtype)
    return _histogram(d, offset, vals, torch.from_numpy(np.ascontiguousarray(si)).to(d.device), npos, junk)


def _histogram(d, offset: int, vals, keys_idx, npos: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """Per row, how many non-junk columns of d fall before each sorted match (vals, keys_idx:
    values and global indices, padding last), cumulated: the ranks' contributions of this block."""
    import torch

    dev = d.device
    B, G = d.shape
    P = vals.shape[1]
    hist = torch.zeros(B, P + 1, dtype=torch.int64, device=dev)
    gallery_idx = (offset + torch.arange(G, device=dev)).expand(B, G)
    hist.scatter_add_(1, _bucket(vals, keys_idx, d, gallery_idx), torch.ones_like(d, dtype=torch.int64))
    if junk.shape[1]:
        junk_t = torch.from_numpy(junk).to(dev)
        present = junk_t >= 0
        column = junk_t.clamp(min=0)
        hist.scatter_add_(1, _bucket(vals, keys_idx, d.gather(1, column), offset + column), -present.long())
    ranks = hist.cumsum(dim=1)[:, :P].cpu().numpy()
    ranks[np.arange(P)[None, :] >= npos[:, None]] = 0
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
