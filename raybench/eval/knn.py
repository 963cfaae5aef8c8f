"""Nearest neighbours and farthest distance of every image, for re-ranking.

Re-ranking reads, per image, its ``width`` nearest neighbours (ordered) and its largest squared
distance (torchreid divides each row by it). Two ways to get them:

- ``exact``: one chunked pass over all pairs with torch (CPU cores or the GPU): the same
  distances as torchreid's, the neighbours ordered by a stable sort (ties by index). O(N^2 d)
  time (4.5e12 multiply-adds for MSMT17's 94K images at d=512), O(N * width) memory besides
  one block of rows. The measured time and peak RSS at that size, with re-ranking and scoring
  around it, come from ``raybench bench metrics --scale msmt17 --rerank``, which records them
  in results/bench/metrics-msmt17-rerank.json.
- ``faiss``: an inverted-file index (IVF, ``nlist`` ~ 4 sqrt(N) lists, ``nprobe`` visited), on
  the GPU when a faiss GPU build sees one. Sub-quadratic, for sizes where all pairs cannot be
  afforded (G2A: 2.4M images). Approximate, in two documented ways: a true neighbour in an
  unvisited list is missed (recall rises with ``nprobe``; ``nprobe = nlist`` is exact), and the
  row maximum comes from the same kind of search for the farthest point (maximum inner product
  on augmented vectors), so it can be low, which scales that row's weights.

``auto`` takes ``exact`` up to ``EXACT_LIMIT`` images, ``faiss`` beyond.
"""

from __future__ import annotations

import math

import numpy as np

from raybench.errors import EvaluationError

EXACT_LIMIT = 250_000
BACKENDS = ("auto", "exact", "faiss")


def neighbours(x, distance: str, width: int, *, backend: str = "auto", chunk_size: int | None = None,
               nprobe: int = 32):
    """([N, width] int64 neighbour indices, nearest first; [N] torch row max of squared distance)."""
    width = min(width, len(x))
    if resolve_backend(len(x), backend) == "exact":
        return exact_neighbours(x, distance, width, chunk_size)
    return faiss_neighbours(x, distance, width, nprobe=nprobe)


def resolve_backend(num_images: int, backend: str = "auto") -> str:
    """The search that ``backend`` means for this many images: "exact" or "faiss"."""
    if backend not in BACKENDS:
        raise EvaluationError(f"unknown neighbour backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "exact" if num_images <= EXACT_LIMIT else "faiss"
    return backend


def exact_neighbours(x, distance: str, width: int, chunk_size: int | None = None):
    """All pairs, a block of rows at a time (never N x N)."""
    import torch

    from raybench.eval.distance import DistanceRows, row_chunks

    rows = DistanceRows(x, distance)
    nn = np.empty((len(x), width), np.int64)
    rowmax = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for a, b in row_chunks(len(x), len(x), chunk_size):
        od = rows(x[a:b]).pow_(2)  # in place: one [rows, N] block alive, not three
        rowmax[a:b] = od.max(dim=1).values
        od.div_(rowmax[a:b, None])
        _, idx = torch.topk(od, width, dim=1, largest=False, sorted=False)
        nn[a:b] = _by_value_then_index(od.gather(1, idx), idx)
    return nn, rowmax


def faiss_neighbours(x, distance: str, width: int, nprobe: int = 32):
    """IVF search for the nearest and for the farthest (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    xs = F.normalize(x, p=2, dim=1) if distance == "cosine" else x
    v = xs.detach().float().cpu().numpy()
    if distance == "cosine":  # 1 - x.y: nearest = largest inner product, farthest = smallest
        sim, idx = _ivf_search(v, v, width, inner_product=True, nprobe=nprobe)
        near = 1 - sim
        far = 1 + _ivf_search(v, -v, 1, inner_product=True, nprobe=nprobe)[0][:, 0]
    else:  # squared euclidean; farthest: max over y of ||y||^2 - 2 x.y, an inner product
        near, idx = _ivf_search(v, v, width, inner_product=False, nprobe=nprobe)
        sq = (v * v).sum(axis=1)
        base = np.hstack([v, sq[:, None]])
        probe = np.hstack([-2 * v, np.ones((len(v), 1), np.float32)])
        far = sq + _ivf_search(base, probe, 1, inner_product=True, nprobe=nprobe)[0][:, 0]
    rowmax = torch.from_numpy(np.maximum(far, near.max(axis=1)) ** 2).to(device=x.device, dtype=x.dtype)
    od = torch.from_numpy(near ** 2) / rowmax.cpu()[:, None].float()
    return _by_value_then_index(od, torch.from_numpy(idx)), rowmax


def _ivf_search(base: np.ndarray, queries: np.ndarray, k: int, *, inner_product: bool, nprobe: int):
    import faiss

    n, dim = base.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants ~39 training points per list
    metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    quantizer = faiss.IndexFlatIP(dim) if inner_product else faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
    index.train(np.ascontiguousarray(base))
    index.add(np.ascontiguousarray(base))
    index.nprobe = min(nprobe, nlist)
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:  # a GPU build that sees a GPU
        index = faiss.index_cpu_to_all_gpus(index)
    dist, idx = index.search(np.ascontiguousarray(queries), k)
    if (idx < 0).any():
        raise EvaluationError(f"faiss found fewer than {k} neighbours for some images; raise nprobe")
    return dist, idx


def _by_value_then_index(values, idx) -> np.ndarray:
    """Each row's candidates ordered by value, ties by index (sort by index, then stable by value)."""
    idx, by_index = idx.sort(dim=1)
    values = values.gather(1, by_index)
    order = values.sort(dim=1, stable=True).indices
    return idx.gather(1, order).cpu().numpy()
