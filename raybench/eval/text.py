"""Text-to-image person retrieval metrics, as IRRA (CVPR 2023) and its successors report them.

For each caption, every test image is ranked by similarity, descending; the caption's true
matches are the images of its identity. Rank-k: the first true match is within the top k.
AP: the mean over true matches of precision at each match's position, over the whole
ranking. INP: #matches / position of the hardest match (fast-reid's mINP). No camera
filtering, no junk. All numbers are fractions (IRRA prints percentages).

Ties in similarity are ordered by image index, the lower first (a stable sort of each row on
-similarity), as raybench's image metrics order ties in distance. IRRA sorts with
``torch.argsort(descending=True)``, which leaves the order of exact ties unspecified: on
similarities without ties the two agree exactly, on ties raybench's order is defined.

The ranks come from raybench's rank engine (rank.py / count.py): similarity rows are negated
into distances a block of captions at a time, so the working memory beyond the input is one
block (about ``distance.CHUNK_ELEMENTS`` entries), never a second [T, G] array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raybench.errors import EvaluationError
from raybench.eval.matches import as_ids
from raybench.metrics import Scores


@dataclass(frozen=True, eq=False)
class TextRetrievalResult:
    """Metrics of one text-to-image evaluation (fractions); per-caption arrays cover every caption."""

    R1: float
    R5: float
    R10: float
    mAP: float
    mINP: float
    cmc: np.ndarray  # [min(max_rank, G)] fraction of captions whose first match is within rank k+1
    num_captions: int
    num_images: int
    ap: np.ndarray  # [T] float64
    inp: np.ndarray  # [T] float64
    first_match: np.ndarray  # [T] int64, 1-based rank of each caption's first true match

    def scores(self) -> Scores:
        """This evaluation as a scoring block (raybench.metrics): every caption is a query."""
        every = np.arange(self.num_captions)
        return Scores(mAP=self.mAP, mINP=self.mINP, cmc=tuple(float(c) for c in self.cmc),
                      num_query=self.num_captions, num_valid_query=self.num_captions, num_gallery=self.num_images,
                      per_query={"trial": [0] * self.num_captions, "query": every.tolist(),
                                 "ap": self.ap.tolist(), "inp": self.inp.tolist(),
                                 "first_match": self.first_match.tolist()})


def evaluate_t2i(similarity, text_pids, image_pids, max_rank: int = 10, *,
                 chunk_size: int | None = None) -> TextRetrievalResult:
    """Score captions against images.

    similarity: [T, G] caption-to-image similarities, higher is closer (numpy, or torch on any
    device; integer similarities are scored as float64, exactly, since negating an unsigned
    integer would wrap); text_pids: [T] the identity each caption describes; image_pids: [G].
    max_rank: the length of ``cmc`` (R1, R5 and R10 are given whatever it is). chunk_size:
    captions per block (default: blocks of about ``distance.CHUNK_ELEMENTS`` entries).

    Every caption's identity must have at least one image (as in every published split):
    otherwise an EvaluationError names one, where IRRA's code raises an IndexError (its
    ``match_row.nonzero()[-1]`` of a caption without a match).
    """
    from raybench.eval.distance import row_chunks
    from raybench.eval.rank import evaluate_rows

    if getattr(similarity, "ndim", None) != 2:
        raise EvaluationError(f"similarity must be 2-D [num_captions, num_images], got {type(similarity).__name__}"
                              f" of shape {getattr(similarity, 'shape', None)}")
    similarity = _as_float(similarity)
    T, G = similarity.shape
    t_pids, g_pids = as_ids(text_pids, "text_pids"), as_ids(image_pids, "image_pids")
    if (len(t_pids), len(g_pids)) != (T, G):
        raise EvaluationError(f"similarity is {T} x {G} but there are {len(t_pids)} text and {len(g_pids)} image pids")
    unmatched = np.setdiff1d(t_pids, g_pids)
    if unmatched.size:
        raise EvaluationError(f"{np.isin(t_pids, unmatched).sum()} captions describe identities with no image "
                              f"(e.g. pid {unmatched[0]}): text-to-image retrieval needs every identity's images")
    blocks = ((a, b, -similarity[a:b]) for a, b in row_chunks(T, G, chunk_size))
    zeros = np.zeros(1, np.int64)
    rank = evaluate_rows(blocks, t_pids, g_pids, np.broadcast_to(zeros, (T,)), np.broadcast_to(zeros, (G,)),
                         shape=(T, G), max_rank=max_rank, camera_filter=False)
    first = rank.first_match
    r1, r5, r10 = (float(np.mean(first <= k)) for k in (1, 5, 10))
    return TextRetrievalResult(R1=r1, R5=r5, R10=r10, mAP=rank.mAP, mINP=rank.mINP, cmc=rank.cmc,
                               num_captions=T, num_images=G, ap=rank.ap, inp=rank.inp, first_match=first)


def _as_float(similarity):
    """Floating-point similarities as they are; integer or boolean ones as float64 (exact below
    2**53), so that negating them into distances cannot wrap; anything else is refused."""
    if hasattr(similarity, "detach"):  # a torch tensor
        return similarity if similarity.is_floating_point() else similarity.double()
    similarity = np.asarray(similarity)
    if np.issubdtype(similarity.dtype, np.floating):
        return similarity
    if similarity.dtype == bool or np.issubdtype(similarity.dtype, np.integer):
        return similarity.astype(np.float64)
    raise EvaluationError(f"similarity must hold numbers, got dtype {similarity.dtype}")


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero): captions and images are compared
    by the cosine of their embeddings, as open_clip's retrieval does."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
