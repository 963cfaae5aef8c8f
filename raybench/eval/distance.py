"""Query x gallery distances, one chunk of query rows at a time, with torchreid's arithmetic.

Rankings are only "equal to torchreid" if the distances are equal to the last bit: a near tie
between a true match and a negative flips on a one-ulp difference. So the formulas below are
torchreid's ``compute_distance_matrix`` op for op (squared euclidean as
``||q||^2 + ||g||^2 - 2 q.g`` through ``addmm_``; cosine as ``1 - q.g`` after ``F.normalize``),
run on a block of query rows. A row block of the same GEMM gives bitwise the same numbers as the
full matrix as long as the block is not tiny (MKL switches kernels below about 12 rows), so
chunks are balanced and at least ``MIN_CHUNK_ROWS`` rows whenever there are that many queries.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from raybench.errors import EvaluationError
from raybench.specs import DISTANCES

MIN_CHUNK_ROWS = 64
#: Gallery rows per block of the squared norms (DistanceRows): each row's sum is the same bits
#: in any block, and no [G, dim] temporary is made (1 GB at 500,000 x 512).
SQ_ROWS = 1 << 16
#: Default chunk: about this many distance entries (256 MiB of float32) per block of rows; the
#: GEMM runs ~15% faster on blocks of ~1000 rows than on ~400 (MSMT17's gallery is 82K wide).
CHUNK_ELEMENTS = 1 << 26


def resolve_device(device: str | None = None) -> str:
    """``None`` means the GPU when one is visible, else the CPU (torch uses every core)."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def as_features(x, device: str, name: str):
    """A 2-D float tensor on ``device`` (numpy or torch in; float64 stays float64)."""
    import torch

    t = torch.as_tensor(x).detach()  # no autograd graph over Q x G distances
    if t.dim() != 2:
        raise EvaluationError(f"{name} must be a 2-D [N, dim] array, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.to(device)


def prepare_features(qf, gf, *, distance: str, normalize: bool, device: str | None):
    """Features on the device, L2-normalised when asked (``F.normalize``, as users of torchreid do)."""
    import torch.nn.functional as F

    if distance not in DISTANCES:
        raise EvaluationError(f"unknown distance {distance!r}; allowed: {', '.join(DISTANCES)}")
    device = resolve_device(device)
    q, g = as_features(qf, device, "query features"), as_features(gf, device, "gallery features")
    if q.shape[1] != g.shape[1]:
        raise EvaluationError(f"query features have dim {q.shape[1]}, gallery features {g.shape[1]}")
    if q.dtype != g.dtype:
        q, g = q.double(), g.double()
    if normalize:
        q, g = F.normalize(q, p=2, dim=1), F.normalize(g, p=2, dim=1)
    return q, g


class DistanceRows:
    """Distances from blocks of query rows to the whole gallery (the gallery side computed once)."""

    def __init__(self, gallery, distance: str):
        import torch
        import torch.nn.functional as F

        self.distance = distance
        if distance == "cosine":
            self.gallery_t = F.normalize(gallery, p=2, dim=1).t()
        else:
            self.gallery_t = gallery.t()
            # a block of rows at a time: the same row sums, without a [G, dim] temporary
            self.gallery_sq = torch.cat([torch.pow(gallery[a:a + SQ_ROWS], 2).sum(dim=1)
                                         for a in range(0, len(gallery), SQ_ROWS)])

    def __call__(self, q):
        import torch
        import torch.nn.functional as F

        if self.distance == "cosine":
            return 1 - torch.mm(F.normalize(q, p=2, dim=1), self.gallery_t)
        d = torch.pow(q, 2).sum(dim=1, keepdim=True) + self.gallery_sq[None, :]
        return d.addmm_(q, self.gallery_t, beta=1, alpha=-2)


def chunk_rows(num_cols: int) -> int:
    """The default rows per block against ``num_cols`` columns: about ``CHUNK_ELEMENTS`` entries,
    at most 4096 rows and never below ``MIN_CHUNK_ROWS`` (gallery shards use it too, so that each
    distance has the same bits as in one process)."""
    return max(MIN_CHUNK_ROWS, min(4096, CHUNK_ELEMENTS // max(num_cols, 1)))


def row_chunks(num_rows: int, num_cols: int, chunk_size: int | None = None) -> Iterator[tuple[int, int]]:
    """Balanced ``(start, stop)`` row blocks of at most ``chunk_size`` rows (default: chunk_rows)."""
    if chunk_size is None:
        chunk_size = chunk_rows(num_cols)
    if chunk_size < 1:
        raise EvaluationError(f"chunk_size must be at least 1, got {chunk_size}")
    n_chunks = max(1, math.ceil(num_rows / chunk_size))
    bounds = np.linspace(0, num_rows, n_chunks + 1).round().astype(int)
    return ((int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
