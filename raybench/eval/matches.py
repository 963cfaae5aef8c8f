"""Which gallery items are true matches and which are junk, per query, without a Q x G mask.

A query's identity has a handful of gallery images; the rest of the gallery are negatives. So
the gallery is grouped by pid once (a stable argsort), and each query looks up its group: items
under another camera are true matches, items under the query's own camera are junk (removed
from its ranking, the market protocol) unless camera filtering is off.

A clothes rule (``Clothes``, the clothes-changing settings of raybench.eval.clothes) widens the
junk of the same group: ``cc`` also removes the query's person in the query's outfit, ``sc``
the query's person in any other outfit. Items of another identity are never junk, so the rule
costs nothing beyond the group's own items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raybench.errors import EvaluationError
from raybench.specs.dataset import SETTING_RULES


def _one_d(x, name: str) -> np.ndarray:
    """A 1-D numpy array (numpy, torch or a list in)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def as_ids(x, name: str) -> np.ndarray:
    """A 1-D int64 array of pids or camids (numpy, torch or a list in)."""
    a = _one_d(x, name)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise EvaluationError(f"{name} must be integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


#: Clothes rules: which same-identity items a setting keeps as true matches (besides camera filtering).
CLOTHES_MODES = SETTING_RULES


@dataclass(frozen=True, eq=False)
class Clothes:
    """The outfits of queries and gallery (integer codes: equal code, same outfit) and the rule.

    ``cc`` (clothes-changing): a same-identity item in the query's outfit is junk; ``sc``
    (same-clothes): one in another outfit is junk; ``standard``: outfits are ignored.
    """

    q: np.ndarray  # [Q] int64
    g: np.ndarray  # [G] int64
    mode: str = "standard"

    def __post_init__(self):
        if self.mode not in CLOTHES_MODES:
            raise EvaluationError(f"clothes mode {self.mode!r}; allowed: {', '.join(CLOTHES_MODES)}")


def clothes_codes(q_clothes, g_clothes, mode: str = "standard") -> Clothes:
    """A ``Clothes`` rule from outfit labels of any kind (ints or strings, numpy, torch or
    lists): labels are compared as they are, over query and gallery together."""
    q, g = _one_d(q_clothes, "q_clothes"), _one_d(g_clothes, "g_clothes")
    if (q.dtype.kind in "OUS") != (g.dtype.kind in "OUS"):
        raise EvaluationError(f"query and gallery clothes labels are of different kinds ({q.dtype}, {g.dtype})")
    _, codes = np.unique(np.concatenate([q, g]), return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    return Clothes(codes[:len(q)], codes[len(q):], mode)


@dataclass(frozen=True)
class RowMatches:
    """True matches and junk of a block of queries, as left-aligned padded index arrays."""

    pos: np.ndarray  # [B, P] int64 gallery indices of true matches, ascending; padding -1
    npos: np.ndarray  # [B] int64
    junk: np.ndarray  # [B, J] int64 gallery indices of same-pid items removed (camera, clothes); padding -1
    njunk: np.ndarray  # [B] int64


class SamePid:
    """The gallery grouped by identity; ``rows(a, b)`` gives the matches of queries a..b-1."""

    def __init__(self, q_pids, g_pids, q_camids, g_camids, camera_filter: bool = True,
                 clothes: Clothes | None = None):
        self.q_pids, self.g_pids = as_ids(q_pids, "q_pids"), as_ids(g_pids, "g_pids")
        self.q_camids, self.g_camids = as_ids(q_camids, "q_camids"), as_ids(g_camids, "g_camids")
        if len(self.q_pids) != len(self.q_camids) or len(self.g_pids) != len(self.g_camids):
            raise EvaluationError(
                f"pids and camids differ in length: query {len(self.q_pids)} vs {len(self.q_camids)}, "
                f"gallery {len(self.g_pids)} vs {len(self.g_camids)}"
            )
        if not len(self.q_pids) or not len(self.g_pids):
            raise EvaluationError(
                f"nothing to rank: {len(self.q_pids)} queries and {len(self.g_pids)} gallery items"
            )
        if clothes is not None and (len(clothes.q), len(clothes.g)) != (len(self.q_pids), len(self.g_pids)):
            raise EvaluationError(f"clothes labels are {len(clothes.q)} query and {len(clothes.g)} gallery, "
                                  f"pids {len(self.q_pids)} and {len(self.g_pids)}")
        self.camera_filter = camera_filter
        self.clothes = None if clothes is None or clothes.mode == "standard" else clothes
        self.order = np.argsort(self.g_pids, kind="stable")
        sorted_pids = self.g_pids[self.order]
        self.start = np.searchsorted(sorted_pids, self.q_pids, "left")
        self.count = np.searchsorted(sorted_pids, self.q_pids, "right") - self.start

    def rows(self, a: int, b: int) -> RowMatches:
        count = self.count[a:b]
        width = int(count.max(initial=0))
        k = np.arange(width)
        present = k[None, :] < count[:, None]
        idx = self.order[np.minimum(self.start[a:b, None] + k[None, :], len(self.order) - 1)]
        same_cam = self.g_camids[idx] == self.q_camids[a:b, None]
        junk = present & same_cam if self.camera_filter else np.zeros_like(present)
        if self.clothes is not None:
            same_clothes = self.clothes.g[idx] == self.clothes.q[a:b, None]
            junk |= present & (same_clothes if self.clothes.mode == "cc" else ~same_clothes)
        pos, npos = _left_align(idx, present & ~junk)
        junk_idx, njunk = _left_align(idx, junk)
        return RowMatches(pos, npos, junk_idx, njunk)

    def explain_no_valid_query(self) -> str:
        """Why no query has a true match: the message of the EvaluationError."""
        in_gallery = int((self.count > 0).sum())
        nq, ng = len(self.q_pids), len(self.g_pids)
        if in_gallery == 0:
            return (
                f"no query identity appears in the gallery ({nq} queries, {ng} gallery images): "
                "check the query/gallery split and the pid parsing of the dataset adapter"
            )
        if self.clothes is not None:
            wanted = "another outfit" if self.clothes.mode == "cc" else "the same outfit"
            return (
                f"no query has a true match under the {self.clothes.mode!r} clothes rule: {in_gallery} of {nq} "
                f"queries share an identity with the gallery ({ng} images), but none under another camera in "
                f"{wanted}; check the dataset's clothes labels, or leave the setting out of its protocol"
            )
        return (
            f"no query has a true match left after same-camera filtering: {in_gallery} of {nq} "
            f"queries share an identity with the gallery ({ng} images), but only under the "
            "query's own camera. If the dataset has no real camera ids (every image parsed as "
            "one camera, or the camera taken from an image index), set `protocol: "
            "{camera_filter: false}` for it in configs/datasets.yaml; otherwise fix the camera "
            "parsing of its adapter"
        )


def _left_align(idx: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the kept entries of ``idx`` moved left in their order, padded with -1."""
    n = keep.sum(axis=1)
    width = int(n.max(initial=0))
    order = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    out = np.take_along_axis(idx, order, axis=1)
    out[np.arange(width)[None, :] >= n[:, None]] = -1
    return out.astype(np.int64, copy=False), n.astype(np.int64)
