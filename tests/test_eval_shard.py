"""raybench.eval.shard: a gallery split into shards scores exactly as one process.

The reference is raybench's own one-process engine (``evaluate_features``), itself equal to
torchreid's evaluate_rank and to a brute-force definition (test_eval_rank.py): every per-query
number must be the same bits, on galleries with exact ties across shard boundaries, junk,
queries without a match, and shards of every size down to one item.
"""

from __future__ import annotations

import numpy as np
import pytest

from raybench.errors import EvaluationError
from raybench.eval import evaluate_features
from raybench.eval.count import count_before, positive_ranks, sorted_matches
from raybench.eval.matches import SamePid
from raybench.eval.shard import (GalleryShard, LocalShards, Sharded, block_top_k, merge_top_k, part_of,
                                 resolve_shards, shard_bounds, shard_bytes)
from raybench.specs import EvalSpec


def case(seed: int, Q: int = 70, G: int = 500, dim: int = 12):
    """Features with exact ties (gallery rows repeated, some queries equal to gallery rows),
    junk (same pid and camera), distractors (pid 0) and queries whose pid the gallery lacks."""
    rng = np.random.default_rng(seed)
    gf = rng.standard_normal((G, dim)).astype(np.float32)
    n = min(40, G // 4)
    gf[G // 2:G // 2 + n] = gf[10:10 + n]  # ties between items far apart: in different shards
    qf = rng.standard_normal((Q, dim)).astype(np.float32)
    qf[:6] = gf[[3, 10, G // 2, G - 1, 0, G // 3]]
    q_pids, g_pids = rng.integers(1, 25, Q), rng.integers(0, 25, G)
    q_pids[-8:] += 1000  # no true match in the gallery
    return qf, gf, (q_pids, g_pids, rng.integers(0, 3, Q), rng.integers(0, 3, G))


def sharded(qf, gf, ids, shards: int, spec: EvalSpec = EvalSpec(), camera_filter: bool = True, chunk_size=None):
    bounds = shard_bounds(len(gf), shards)
    held = LocalShards([GalleryShard(gf[lo:hi], lo, "cpu") for lo, hi in zip(bounds[:-1], bounds[1:])])
    return Sharded(held, bounds, np.arange(len(gf)), chunk_size).evaluate(qf, np.arange(len(gf)),
                                                                          SamePid(*ids, camera_filter), spec)


def assert_same(ours, ref):
    for name in ("ap", "inp", "first_match", "valid", "cmc"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(ref, name), err_msg=name)
    assert (ours.mAP, ours.mINP, ours.num_valid_query, ours.num_gallery) == \
        (ref.mAP, ref.mINP, ref.num_valid_query, ref.num_gallery)


@pytest.mark.parametrize("shards", [1, 2, 7, 61])
@pytest.mark.parametrize("spec, camera_filter", [(EvalSpec(), True), (EvalSpec(distance="cosine"), True),
                                                 (EvalSpec(normalize=False, max_rank=7), False)])
def test_shards_score_as_one_process(shards, spec, camera_filter):
    qf, gf, ids = case(shards)
    ref = evaluate_features(qf, gf, *ids, distance=spec.distance, normalize=spec.normalize, device="cpu",
                            max_rank=spec.max_rank, camera_filter=camera_filter, chunk_size=16)
    assert 0 < ref.num_valid_query < len(qf)  # queries without a match are there
    assert_same(sharded(qf, gf, ids, shards, spec, camera_filter, chunk_size=16), ref)


def test_shards_of_one_item_score_as_one_process():
    qf, gf, ids = case(8, Q=20, G=60)
    ref = evaluate_features(qf, gf, *ids, device="cpu")
    assert_same(sharded(qf, gf, ids, 60), ref)


def test_default_chunks_at_study_width_match_one_process():
    """d=512 (OSNet, CLIP B): the shards' column blocks give the whole gallery's bits."""
    qf, gf, ids = case(9, Q=200, G=6000, dim=512)
    ref = evaluate_features(qf, gf, *ids, device="cpu")
    for shards in (2, 5):
        assert_same(sharded(qf, gf, ids, shards), ref)


def test_counts_of_any_column_split_sum_to_the_ranks():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 6, (40, 300)).astype(np.float32)  # many exact ties
    q_pids, g_pids = rng.integers(0, 8, 40), rng.integers(0, 8, 300)
    m = SamePid(q_pids, g_pids, rng.integers(0, 2, 40), rng.integers(0, 2, 300)).rows(0, 40)
    values = np.take_along_axis(d, np.maximum(m.pos, 0), axis=1)
    sv, si = sorted_matches(values, m.pos, m.npos)
    total = 0
    for lo, hi in ((0, 1), (1, 150), (150, 151), (151, 300)):
        junk = part_of(m.junk, m.njunk, lo, hi)
        total = total + count_before(d[:, lo:hi], lo, sv, si, m.npos, junk.local, junk.count)
    np.testing.assert_array_equal(total, positive_ranks(d, m))


def test_torch_counts_equal_the_kernel():
    import torch

    from raybench.eval.count import _counts_torch

    rng = np.random.default_rng(4)
    d = rng.integers(0, 9, (30, 200)).astype(np.float32)
    m = SamePid(rng.integers(0, 6, 30), rng.integers(0, 6, 200), rng.integers(0, 3, 30),
                rng.integers(0, 3, 200)).rows(0, 30)
    sv, si = sorted_matches(np.take_along_axis(d, np.maximum(m.pos, 0), axis=1), m.pos, m.npos)
    junk = part_of(m.junk, m.njunk, 60, 200)
    ours = _counts_torch(torch.from_numpy(d[:, 60:]), 60, sv, si, m.npos, junk.local, junk.count)
    np.testing.assert_array_equal(ours, count_before(d[:, 60:], 60, sv, si, m.npos, junk.local, junk.count))


def test_nan_distances_are_one_clear_error():
    qf, gf, ids = case(5)
    gf[400, 0] = np.nan
    with pytest.raises(EvaluationError, match="NaN"):
        sharded(qf, gf, ids, 3)


def test_merged_top_k_is_the_whole_gallery_top_k():
    rng = np.random.default_rng(6)
    d = rng.integers(0, 20, (12, 250)).astype(np.float32)
    drop = rng.random((12, 250)) < 0.1
    whole = block_top_k(d, 0, 10, drop)
    bounds = shard_bounds(250, 4)
    parts = [block_top_k(d[:, lo:hi], lo, 10, drop[:, lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    merged = merge_top_k(parts, 10)
    np.testing.assert_array_equal(merged[1], whole[1])
    np.testing.assert_array_equal(merged[0], whole[0])
    order = np.lexsort((np.arange(250)[None, :].repeat(12, 0), np.where(drop, np.inf, d)), axis=1)[:, :10]
    np.testing.assert_array_equal(whole[1], order)  # by distance, then by index


def test_auto_keeps_study_sizes_whole_and_picks_the_fewest_shards_that_fit():
    assert resolve_shards("auto", 82161, 512, 11659, 4 * 10**9) == 1  # MSMT17
    assert resolve_shards("auto", 515913, 512, 3368, 4 * 10**9) == 1  # Market + 500k
    for G, dim, Q, budget in ((515913, 512, 3368, 2 * 10**9), (10**7, 1024, 100_000, 16 * 10**9)):
        n = resolve_shards("auto", G, dim, Q, budget)
        assert shard_bytes(-(-G // n), dim, Q, G) <= budget < shard_bytes(-(-G // (n - 1)), dim, Q, G), n
    assert resolve_shards(4, 3, 8, 2, 1) == 3  # never more shards than items
    with pytest.raises(EvaluationError, match="shard_memory"):
        resolve_shards("auto", 1000, 512, 100, 10**9)


def test_a_setting_over_part_of_the_held_gallery_scores_as_one_process():
    """A setting that keeps part of the gallery (VC-Clothes' cameras, PRCC's single-shot draws)
    is not the gallery the shards hold: it is scored in this process, to the same numbers as a
    cell scored without shards, while the whole-gallery setting is scored in the shards."""
    from raybench.eval.protocol import score
    from raybench.specs import Protocol, Setting

    qf, gf, (q_pids, g_pids, q_cams, g_cams) = case(5)
    Q, G = len(qf), len(gf)
    cols = {"path": np.array([f"{i}.jpg" for i in range(Q + G)]), "split": np.array(["query"] * Q + ["gallery"] * G),
            "pid": np.r_[q_pids, g_pids], "camid": np.r_[q_cams, g_cams], "embedding": np.vstack([qf, gf])}
    protocol = Protocol(settings=(Setting("all"), Setting("cams", gallery_cameras=(0, 1)),
                                  Setting("one", single_shot=2)))
    bounds = shard_bounds(G, 3)
    held = LocalShards([GalleryShard(gf[lo:hi], lo, "cpu") for lo, hi in zip(bounds[:-1], bounds[1:])])
    in_shards = Sharded(held, bounds, np.arange(Q, Q + G))
    ours, ref = score(cols, protocol, EvalSpec(), sharded=in_shards), score(cols, protocol, EvalSpec())
    assert in_shards.blocks == 1  # "all"
    for name in ("all", "cams", "one"):
        assert ours.settings[name] == ref.settings[name], name
