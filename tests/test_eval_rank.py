"""raybench.eval.rank against torchreid's evaluate_rank, a brute-force reference and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from raybench.bench.peers import torchreid_module
from raybench.errors import EvaluationError
from raybench.eval import evaluate, evaluate_features
from raybench.eval.count import _ranks_torch, positive_ranks
from raybench.eval.matches import SamePid


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, camera_filter=True):
    """The definition, one query at a time: stable sort, filter, AP / CMC / fast-reid INP."""
    length = min(max_rank, distmat.shape[1])
    aps, inps, cmcs = [], [], []
    for i, row in enumerate(distmat):
        order = np.argsort(row, kind="stable")
        match = g_pids[order] == q_pids[i]
        if camera_filter:
            keep = ~(match & (g_camids[order] == q_camids[i]))
            match = match[keep]
        if not match.any():
            continue
        hits = np.flatnonzero(match) + 1  # 1-based ranks of the true matches
        aps.append(np.mean(np.arange(1, len(hits) + 1) / hits))
        inps.append(len(hits) / hits[-1])
        cmcs.append(np.arange(1, length + 1) >= hits[0])
    return np.mean(aps), np.mean(inps), np.mean(cmcs, axis=0), len(aps)


def random_case(rng, q=None, g=None):
    Q, G = q or int(rng.integers(1, 60)), g or int(rng.integers(1, 150))
    n_ids, n_cams = int(rng.integers(1, 20)), int(rng.integers(1, 6))
    q_pids = rng.integers(1, n_ids + 1, Q)
    g_pids = rng.integers(0, n_ids + 1, G)  # pid 0: distractors
    q_pids[: Q // 5] += 1000  # some identities absent from the gallery: queries without a match
    return (rng.random((Q, G)), q_pids, g_pids, rng.integers(0, n_cams, Q), rng.integers(0, n_cams, G))


def torchreid_rank(distmat, *ids, max_rank=50, cuhk03=False):
    rank = torchreid_module("reid/metrics/rank.py")
    return rank.evaluate_rank(distmat, *ids, max_rank=max_rank, use_metric_cuhk03=cuhk03, use_cython=False)


def test_equal_to_torchreid_on_many_random_cases():
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(120):
        case = random_case(rng)
        max_rank = int(rng.choice([1, 5, 20, 50, 200]))
        try:
            ours = evaluate(*case, max_rank=max_rank)
        except EvaluationError:
            with pytest.raises(AssertionError):
                torchreid_rank(*case, max_rank=max_rank)
            continue
        ref = reference(*case, max_rank=max_rank)
        assert ours.mAP == pytest.approx(ref[0], abs=1e-12)
        assert ours.mINP == pytest.approx(ref[1], abs=1e-12)
        np.testing.assert_allclose(ours.cmc, ref[2], atol=1e-12)
        assert ours.num_valid_query == ref[3] and len(ours.cmc) == min(max_rank, case[0].shape[1])
        try:
            cmc, mAP = torchreid_rank(*case, max_rank=max_rank)
        except ValueError:  # torchreid's ragged CMC list: camera filtering left < max_rank items
            continue
        compared += 1
        assert abs(ours.mAP - mAP) < 1e-6
        # torchreid's curve is shorter when every query kept fewer than max_rank items; ours
        # goes on with its last value, 1
        np.testing.assert_allclose(ours.cmc[:len(cmc)], cmc, atol=1e-6)
        assert (ours.cmc[len(cmc):] == 1).all()
    assert compared > 40


def test_camera_filter_off_equals_torchreid_with_unmatched_cameras():
    rng = np.random.default_rng(1)
    d, qp, gp, qc, gc = random_case(rng, 30, 90)
    ours = evaluate(d, qp, gp, qc, gc, camera_filter=False)
    cmc, mAP = torchreid_rank(d, qp, gp, np.full_like(qc, -1), gc)  # no gallery camera is -1
    assert abs(ours.mAP - mAP) < 1e-12
    np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6)


def test_hand_worked_ap_cmc_inp():
    # gallery by distance: g0 (other id), g1 (match), g2 (match, same camera: junk), g3, g4 (match)
    d = np.array([[0.1, 0.2, 0.25, 0.3, 0.5]])
    g_pids, g_cams = np.array([7, 1, 1, 8, 1]), np.array([0, 1, 0, 1, 2])
    r = evaluate(d, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=4)
    # filtered ranking: g0, g1*, g3, g4*  -> matches at 2 and 4
    assert r.ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1])
    assert r.first_match[0] == 2 and r.valid.tolist() == [True]
    # without camera filtering g2 is a match at rank 3
    r = evaluate(d, np.array([1]), g_pids, np.array([0]), g_cams, camera_filter=False)
    assert r.mAP == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    assert r.mINP == pytest.approx(3 / 5)
    assert len(r.cmc) == 5  # max_rank 50 > gallery size: cut at the gallery


def test_two_queries_average_over_valid_ones_only():
    d = np.array([[0.3, 0.1, 0.2], [0.1, 0.2, 0.3], [0.5, 0.4, 0.6]])
    q_pids, g_pids = np.array([1, 2, 9]), np.array([1, 2, 3])
    r = evaluate(d, q_pids, g_pids, np.array([0, 0, 0]), np.array([1, 1, 1]))
    assert r.num_valid_query == 2 and r.valid.tolist() == [True, True, False]
    assert r.ap[0] == pytest.approx(1 / 3) and r.ap[1] == pytest.approx(1 / 2)
    assert r.mAP == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert np.isnan(r.ap[2]) and r.first_match.tolist() == [3, 2, 0]
    np.testing.assert_allclose(r.cmc, [0, 0.5, 1])


def test_ties_are_ordered_by_gallery_index():
    d = np.zeros((1, 6))
    g_pids = np.array([5, 5, 1, 5, 1, 5])
    r = evaluate(d, np.array([1]), g_pids, np.array([0]), np.array([1] * 6))
    assert r.first_match[0] == 3 and r.ap[0] == pytest.approx((1 / 3 + 2 / 5) / 2)


def test_ties_everywhere_match_the_stable_reference():
    rng = np.random.default_rng(2)
    for _ in range(20):
        d, *ids = random_case(rng)
        d = np.round(d * 4) / 4  # five distinct values: ties all over
        try:
            ours = evaluate(d, *ids)
        except EvaluationError:
            continue
        ref = reference(d, *ids)
        assert ours.mAP == pytest.approx(ref[0], abs=1e-12)
        assert ours.mINP == pytest.approx(ref[1], abs=1e-12)
        np.testing.assert_allclose(ours.cmc, ref[2], atol=1e-12)


def test_torch_counting_path_equals_the_kernel():
    import torch

    rng = np.random.default_rng(3)
    for _ in range(10):
        d, qp, gp, qc, gc = random_case(rng)
        d = np.round(d * 8) / 8
        m = SamePid(qp, gp, qc, gc).rows(0, len(qp))
        np.testing.assert_array_equal(positive_ranks(d, m), _ranks_torch(torch.from_numpy(d), m))


def test_chunk_size_does_not_change_anything():
    rng = np.random.default_rng(4)
    qf, gf = rng.integers(-3, 4, (70, 8)), rng.integers(-3, 4, (300, 8))  # exact arithmetic, many ties
    ids = (rng.integers(0, 12, 70), rng.integers(0, 12, 300), rng.integers(0, 3, 70), rng.integers(0, 3, 300))
    base = evaluate_features(qf, gf, *ids, normalize=False, device="cpu")
    for chunk in (1, 7, 64, 1000):
        r = evaluate_features(qf, gf, *ids, normalize=False, device="cpu", chunk_size=chunk)
        np.testing.assert_array_equal(r.ap, base.ap)
        np.testing.assert_array_equal(r.first_match, base.first_match)
        np.testing.assert_array_equal(r.cmc, base.cmc)
    distmat = ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1)
    ref = reference(distmat, *ids)
    assert base.mAP == pytest.approx(ref[0], abs=1e-12) and base.mINP == pytest.approx(ref[1], abs=1e-12)
    for chunk in (3, 50):
        np.testing.assert_array_equal(evaluate(distmat, *ids, chunk_size=chunk).ap, base.ap)


def test_features_equal_torchreid_distances_and_ranks():
    import torch
    import torch.nn.functional as F

    compute_distance_matrix = torchreid_module("reid/metrics/distance.py").compute_distance_matrix

    rng = np.random.default_rng(5)
    Q, G = 200, 900
    qf, gf = rng.standard_normal((Q, 32), np.float32), rng.standard_normal((G, 32), np.float32)
    ids = (rng.integers(0, 60, Q), rng.integers(0, 60, G), rng.integers(0, 4, Q), rng.integers(0, 4, G))
    for metric in ("euclidean", "cosine"):
        qt, gt = F.normalize(torch.from_numpy(qf)), F.normalize(torch.from_numpy(gf))
        distmat = compute_distance_matrix(qt, gt, metric).numpy()
        cmc, mAP = torchreid_rank(distmat, *ids)
        for chunk in (None, 100):
            r = evaluate_features(torch.from_numpy(qf), gf, *ids, distance=metric, device="cpu", chunk_size=chunk)
            assert abs(r.mAP - mAP) < 1e-6
            np.testing.assert_allclose(r.cmc, cmc, atol=1e-6)
            assert abs(r.mINP - reference(distmat, *ids)[1]) < 1e-6


def test_cosine_ranks_like_normalised_euclidean():
    rng = np.random.default_rng(6)
    qf, gf = rng.standard_normal((50, 16)), rng.standard_normal((400, 16))  # float64: no near ties
    ids = (rng.integers(0, 30, 50), rng.integers(0, 30, 400), rng.integers(0, 3, 50), rng.integers(0, 3, 400))
    cos = evaluate_features(qf, gf, *ids, distance="cosine", normalize=False, device="cpu")
    euc = evaluate_features(qf, gf, *ids, distance="euclidean", normalize=True, device="cpu")
    np.testing.assert_array_equal(cos.first_match, euc.first_match)
    np.testing.assert_allclose(cos.ap, euc.ap, atol=1e-12)


def test_cuhk03_metric_equals_torchreid_under_the_same_seed():
    eval_cuhk03 = torchreid_module("reid/metrics/rank.py").eval_cuhk03

    rng = np.random.default_rng(7)
    for seed in range(3):
        d, qp, gp, qc, gc = random_case(rng, 25, 120)
        gp[:20] = np.arange(1, 21)  # enough gallery identities for max_rank 10
        np.random.seed(seed)
        cmc, mAP = eval_cuhk03(d, qp, gp, qc, gc, 10)
        r = evaluate(d, qp, gp, qc, gc, max_rank=10, cuhk03=True, seed=seed)
        assert abs(r.mAP - mAP) < 1e-12
        np.testing.assert_allclose(r.cmc, cmc, atol=1e-6)
    again = evaluate(d, qp, gp, qc, gc, max_rank=10, cuhk03=True, seed=seed)
    np.testing.assert_array_equal(again.cmc, r.cmc)


def test_no_valid_query_explains_the_camera_setting():
    d = np.random.default_rng(8).random((3, 5))
    with pytest.raises(EvaluationError, match="camera_filter: false"):
        evaluate(d, np.array([1, 2, 3]), np.array([1, 2, 3, 4, 5]), np.zeros(3, int), np.zeros(5, int))
    with pytest.raises(EvaluationError, match="no query identity appears in the gallery"):
        evaluate(d, np.array([7, 8, 9]), np.array([1, 2, 3, 4, 5]), np.zeros(3, int), np.ones(5, int))


def test_bad_inputs_raise_evaluation_errors():
    d = np.ones((2, 3))
    ids = (np.array([1, 2]), np.array([1, 2, 2]), np.array([0, 0]), np.array([1, 1, 1]))
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate(np.where(np.eye(2, 3, 1) > 0, np.nan, d), *ids)
    with pytest.raises(EvaluationError, match="2 x 3"):
        evaluate(d, ids[0][:1], ids[1], ids[2][:1], ids[3])
    with pytest.raises(EvaluationError, match="max_rank"):
        evaluate(d, *ids, max_rank=0)
    with pytest.raises(EvaluationError, match="distance"):
        evaluate_features(d, d, *ids, distance="manhattan")


@pytest.mark.gpu
def test_gpu_path_equals_the_cpu_path():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(9)
    qf, gf = rng.integers(-3, 4, (300, 16)), rng.integers(-3, 4, (2000, 16))  # exact in float32, ties
    ids = (rng.integers(0, 50, 300), rng.integers(0, 50, 2000), rng.integers(0, 4, 300), rng.integers(0, 4, 2000))
    cpu = evaluate_features(qf, gf, *ids, normalize=False, device="cpu")
    gpu = evaluate_features(qf, gf, *ids, normalize=False, device="cuda", chunk_size=128)
    np.testing.assert_array_equal(gpu.ap, cpu.ap)
    np.testing.assert_array_equal(gpu.cmc, cpu.cmc)
    distmat = torch.cdist(torch.tensor(qf, dtype=torch.float64), torch.tensor(gf, dtype=torch.float64)) ** 2
    np.testing.assert_array_equal(evaluate(distmat.cuda(), *ids).ap, cpu.ap)
