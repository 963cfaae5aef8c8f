"""Seeded synthetic ReID embeddings with the shapes of real test sets, for benchmarks.

The metric engine's cost depends on more than Q x G: on how many true matches each query has,
on how deep the hardest one lands, on distractors and on same-camera junk. So the features
mimic a test set's structure, not only its size: every identity is seen by a few cameras
(at least two, so that a query has matches under another camera), there is one query per
(identity, camera) pair as in Market-1501 and a long-tailed number of gallery images per pair,
and distractors (pid 0, as in Market-1501) are images of nobody. An image embedding is its
identity's centre + its camera's bias + noise whose size varies per identity, so some
identities are easy and some are hard, and the resulting mAP sits where real models sit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SynthShape:
    """The published sizes of a test set."""

    name: str
    num_ids: int
    num_cameras: int
    num_query: int
    num_gallery: int  # distractors included
    num_distractors: int = 0
    dim: int = 512
    noise: float = 1.0  # image noise relative to identity spread: sets how hard the set is
    outfits: int = 1  # > 1: every image wears one of its person's 1..outfits outfits (clothes labels)


SCALES = {
    # Market-1501 test: 750 ids, 6 cameras, 3,368 queries, 15,913 gallery images of which
    # 2,793 are distractors (pid 0); junk (pid -1) is not part of the evaluation.
    "market": SynthShape("market", 750, 6, 3368, 15913, 2793),
    # MSMT17 test: 3,060 ids, 15 cameras, 11,659 queries, 82,161 gallery images, no distractors.
    # A harder set (mAP ~0.55 here, as OSNet's ~0.52) than Market (~0.87 here, OSNet ~0.85).
    "msmt17": SynthShape("msmt17", 3060, 15, 11659, 82161, 0, noise=1.7),
    "tiny": SynthShape("tiny", 40, 4, 120, 600, 60, 64),
    # LTCC test: 75 ids, 12 cameras, 493 queries, 7,050 gallery images, each person in 1-3
    # outfits (the clothes-changing benchmark, raybench.eval.clothes).
    "ltcc": SynthShape("ltcc", 75, 12, 493, 7050, 0, outfits=3),
    # DeepChange test (as cited: 521 ids, 17,527 queries, 62,956 gallery images). Its "cameras"
    # are tracklets (a true match may share the camera, not the tracklet: datasets/deepchange.py),
    # many per person: 60 here, so there are enough (identity, tracklet) pairs for its queries.
    "deepchange": SynthShape("deepchange", 521, 60, 17527, 62956, 0, noise=1.4, outfits=3),
    # Market-1501 + 500k: the same queries and gallery, and the 500,000 extra distractors of
    # Market-1501+500k (images of nobody, pid 0) after them (raybench bench metrics, bench/shards.py).
    "market500k": SynthShape("market500k", 750, 6, 3368, 15913 + 500_000, 2793 + 500_000),
}
#: The extra distractors of a scale: the last ones of its gallery, a distractor set of their own.
EXTRA_DISTRACTORS = {"market500k": 500_000, "tiny": 60}


@dataclass(frozen=True, eq=False)
class SynthFeatures:
    qf: np.ndarray  # [Q, dim] float32
    gf: np.ndarray  # [G, dim] float32
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    q_clothes: np.ndarray | None = None  # [Q] int64 outfit keys, for shapes with outfits
    g_clothes: np.ndarray | None = None


def synthetic_features(shape: SynthShape | str, seed: int = 0) -> SynthFeatures:
    """Features and ids of one synthetic test set; the same seed gives the same bytes."""
    shape = SCALES[shape] if isinstance(shape, str) else shape
    rng = np.random.default_rng(seed)
    q_pids, q_cams, g_pids, g_cams = _layout(shape, rng)
    embed = _Embedder(shape, rng)
    gf = np.concatenate([embed(g_pids, g_cams), embed.distractors(shape.num_distractors)])
    g_pids = np.concatenate([g_pids, np.zeros(shape.num_distractors, np.int64)])
    g_cams = np.concatenate([g_cams, rng.integers(0, shape.num_cameras, shape.num_distractors)])
    qf = embed(q_pids, q_cams)
    if shape.outfits == 1:
        return SynthFeatures(qf, gf, q_pids, g_pids, q_cams, g_cams)
    return _dressed(shape, seed, qf, gf, q_pids, g_pids, q_cams, g_cams)


def _dressed(shape: SynthShape, seed: int, qf, gf, q_pids, g_pids, q_cams, g_cams) -> SynthFeatures:
    """Outfits drawn after everything else (from a stream of their own, so a shape's other
    bytes never depend on them): each person owns 1..outfits outfits, each image wears one, and
    an outfit moves the embedding as much as the person's own noise does."""
    rng = np.random.default_rng([seed, 1])
    owned = rng.integers(1, shape.outfits + 1, shape.num_ids + 1)
    shift = rng.standard_normal((shape.num_ids + 1, shape.outfits, shape.dim), np.float32) / np.sqrt(shape.dim)

    def wear(f, pids):
        outfit = rng.integers(0, owned[pids])
        return f + shift[pids, outfit], pids * shape.outfits + outfit  # keys unique per person and outfit

    qf, q_clothes = wear(qf, q_pids)
    gf, g_clothes = wear(gf, g_pids)
    return SynthFeatures(qf, gf, q_pids, g_pids, q_cams, g_cams, q_clothes, g_clothes)


def _layout(shape: SynthShape, rng: np.random.Generator):
    """pids and cameras: one query per (identity, camera) pair, the gallery spread over the pairs."""
    pairs = _camera_pairs(shape, rng)  # [num_query, 2] (pid, camera)
    n_gallery = shape.num_gallery - shape.num_distractors
    # every pair gets one gallery image; the rest follow a long-tailed weight per pair
    weights = rng.pareto(2.0, len(pairs)) + 0.2
    extra = rng.multinomial(n_gallery - len(pairs), weights / weights.sum())
    g = np.repeat(pairs, extra + 1, axis=0)
    return pairs[:, 0], pairs[:, 1], g[:, 0], g[:, 1]


def _camera_pairs(shape: SynthShape, rng: np.random.Generator) -> np.ndarray:
    """num_query distinct (pid, camera) pairs, each identity under at least two cameras."""
    n_ids, n_cams = shape.num_ids, shape.num_cameras
    if shape.num_query > n_ids * n_cams:  # one query per pair: more would never be placed
        raise ValueError(f"{shape.name}: {shape.num_query} queries need more than {n_ids} ids x {n_cams} cameras")
    per_id = np.full(n_ids, 2)
    extra = shape.num_query - 2 * n_ids
    while extra > 0:  # add cameras to random identities that still have one free
        room = np.flatnonzero(per_id < n_cams)
        pick = rng.choice(room, size=min(extra, len(room)), replace=False)
        per_id[pick] += 1
        extra -= len(pick)
    cams = [np.sort(rng.choice(n_cams, k, replace=False)) for k in per_id]
    pids = np.repeat(np.arange(1, n_ids + 1), per_id)
    return np.stack([pids, np.concatenate(cams)], axis=1)


class _Embedder:
    """centre(pid) + bias(camera) + noise(pid-dependent size), in float32."""

    def __init__(self, shape: SynthShape, rng: np.random.Generator):
        self.rng, self.dim = rng, shape.dim
        scale = float(1.0 / np.sqrt(shape.dim))
        self.centres = rng.standard_normal((shape.num_ids + 1, shape.dim), np.float32) * scale
        self.bias = rng.standard_normal((shape.num_cameras, shape.dim), np.float32) * (0.6 * scale)
        self.noise = (rng.gamma(4.0, 0.25, shape.num_ids + 1) * 1.1 * shape.noise * scale).astype(np.float32)

    def __call__(self, pids: np.ndarray, cams: np.ndarray, block: int = 8192) -> np.ndarray:
        out = np.empty((len(pids), self.dim), np.float32)
        for a in range(0, len(pids), block):  # blocks keep the temporaries small
            p, c = pids[a:a + block], cams[a:a + block]
            noise = self.rng.standard_normal((len(p), self.dim), np.float32) * self.noise[p, None]
            out[a:a + block] = self.centres[p] + self.bias[c] + noise
        return out

    def distractors(self, n: int) -> np.ndarray:
        scale = float(1.2 / np.sqrt(self.dim))
        return self.rng.standard_normal((n, self.dim), np.float32) * scale
