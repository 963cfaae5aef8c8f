"""numba kernels of the rank engine (imported lazily; compiled once and cached on disk).

Kept apart so that importing raybench.eval never pulls in numba, and so that the one loop that
must be compiled to be fast is small enough to read against count.py's docstring.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _before(sv, si, n, top, v, j):
    """Number of the n sorted matches (values sv, gallery indices si) ordered before item (v, j).

    A branch-free binary search (``top``: the largest power of two <= n): a random model's
    matches are spread over the whole ranking, so most items reach this search, and a
    branchy one mispredicts on every step.
    """
    lo = 0
    step = top
    while step > 0:
        k = lo + step - 1
        if k < n:
            lo += step * ((sv[k] < v) | ((sv[k] == v) & (si[k] < j)))
        step >>= 1
    return lo


@numba.njit(inline="always")
def _scan(row, offset, sv, si, n, junk, njunk, out) -> bool:
    """out[k] = how many of this row's non-junk items are ordered at or before the k-th of its
    n sorted true matches (values sv, global gallery indices si); item j of the row is gallery
    item offset + j, and junk holds njunk column indices of the row. False when the row holds a
    NaN. The one scan behind a whole row (offset 0) and a shard's part of it (count.py)."""
    vmax, jmax = sv[n - 1], si[n - 1]
    top = 1
    while top * 2 <= n:
        top *= 2
    gaps = np.zeros(n + 1, np.int64)
    for j in range(len(row)):
        v = row[j]
        if v > vmax:  # the common case: after the hardest match
            continue
        g = offset + j
        if v == vmax and g > jmax:
            continue
        if v != v:
            return False
        gaps[_before(sv, si, n, top, v, g)] += 1
    for t in range(njunk):
        j = junk[t]
        v = row[j]
        g = offset + j
        if v < vmax or (v == vmax and g < jmax):
            gaps[_before(sv, si, n, top, v, g)] -= 1
    c = 0
    for k in range(n):
        c += gaps[k]
        out[k] = c
    return True


@numba.njit(parallel=True, cache=True, nogil=True)
def ranks(d, pos, npos, junk, njunk, out, bad):
    """out[b, k]: 1-based rank among non-junk items of the k-th nearest true match of row b.

    d [B, G] float; pos [B, P] / junk [B, J] gallery indices (ascending, padded with -1) with
    counts npos / njunk; out [B, P] int64 (written for k < npos[b]); bad [B] set where a row
    holds NaN (the caller raises).
    """
    B, G = d.shape
    for b in numba.prange(B):
        n = npos[b]
        if n == 0:
            continue
        row = d[b]
        idx = pos[b, :n]
        vals = np.empty(n, d.dtype)
        for k in range(n):
            vals[k] = row[idx[k]]
        order = np.argsort(vals, kind="mergesort")  # stable: ties stay in gallery order
        sv = vals[order]
        si = idx[order]
        if np.isnan(sv[n - 1]) or not _scan(row, 0, sv, si, n, junk[b], njunk[b], out[b]):
            bad[b] = True


@numba.njit(parallel=True, cache=True, nogil=True)
def counts(d, offset, sv, si, npos, junk, njunk, out, bad):
    """out[b, k]: how many non-junk items of this block of gallery columns (gallery items
    offset .. offset + G - 1) are ordered at or before the k-th of row b's true matches, given
    sorted over the whole gallery (sv [B, P] values, si [B, P] global indices, npos [B]); junk
    [B, J] column indices of the block (count njunk). Summed over the blocks of a gallery,
    these are ``ranks``. bad [B] set where a row holds NaN."""
    B, G = d.shape
    for b in numba.prange(B):
        n = npos[b]
        if n > 0 and not _scan(d[b], offset, sv[b], si[b], n, junk[b], njunk[b], out[b]):
            bad[b] = True


@numba.njit(parallel=True, cache=True, nogil=True)
def shared_min(a_indptr, a_indices, a_data, c_indptr, c_indices, c_data, col_lo, out):
    """out[b, j - col_lo] += min(A[b, l], C[j, l]) over the shared non-zeros l, for j >= col_lo.

    A: CSR rows (the queries' V), C: CSC of all of V, so column l lists the images j that
    share neighbour l. This is the inner loop of the k-reciprocal Jaccard distance.
    """
    for b in numba.prange(len(a_indptr) - 1):
        for p in range(a_indptr[b], a_indptr[b + 1]):
            l = a_indices[p]
            a = a_data[p]
            for q in range(c_indptr[l], c_indptr[l + 1]):
                j = c_indices[q]
                if j >= col_lo:
                    out[b, j - col_lo] += min(a, c_data[q])
