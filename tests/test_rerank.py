"""k-reciprocal re-ranking against torchreid's re_ranking, dense and from features."""

from __future__ import annotations

import numpy as np
import pytest

from raybench.bench.peers import torchreid_module
from raybench.errors import EvaluationError
from raybench.eval import evaluate, evaluate_rows
from raybench.eval.rerank import re_ranking, rerank_rows


def features(rng, n, dim=16):
    import torch
    import torch.nn.functional as F

    return F.normalize(torch.from_numpy(rng.standard_normal((n, dim)).astype(np.float32)), dim=1)


def torchreid_reranked(qf, gf, distance="euclidean", **params):
    dist = torchreid_module("reid/metrics/distance.py").compute_distance_matrix
    rerank = torchreid_module("reid/utils/rerank.py").re_ranking
    mats = [dist(a, b, distance).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    return mats, rerank(*mats, **params)


@pytest.mark.parametrize("sizes", [(5, 12), (20, 90), (40, 260)])
@pytest.mark.parametrize("params", [dict(k1=20, k2=6, lambda_value=0.3), dict(k1=5, k2=3, lambda_value=0.5),
                                    dict(k1=3, k2=1, lambda_value=0.0)])
def test_dense_and_chunked_equal_torchreid(sizes, params):
    rng = np.random.default_rng(sum(sizes))
    qf, gf = features(rng, sizes[0]), features(rng, sizes[1])
    mats, expected = torchreid_reranked(qf, gf, **params)
    np.testing.assert_allclose(re_ranking(*mats, **params), expected, atol=1e-6)
    for chunk in (None, 7):
        rows = list(rerank_rows(qf, gf, normalize=False, device="cpu", chunk_size=chunk, **params))
        assert [a for a, _, _ in rows] == sorted(a for a, _, _ in rows)
        np.testing.assert_allclose(np.concatenate([r for _, _, r in rows]), expected, atol=1e-6)


def test_cosine_and_unnormalised_features():
    rng = np.random.default_rng(1)
    qf, gf = features(rng, 15) * 3, features(rng, 60) * 3
    _, expected = torchreid_reranked(qf, gf, distance="cosine")
    got = np.concatenate([r for _, _, r in rerank_rows(qf, gf, distance="cosine", normalize=False, device="cpu")])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_evaluating_reranked_rows_equals_the_dense_matrix():
    rng = np.random.default_rng(2)
    qf, gf = features(rng, 30), features(rng, 150)
    ids = (rng.integers(0, 12, 30), rng.integers(0, 12, 150), rng.integers(0, 3, 30), rng.integers(0, 3, 150))
    mats, dense = torchreid_reranked(qf, gf)
    chunked = evaluate_rows(rerank_rows(qf, gf, device="cpu", chunk_size=8), *ids, shape=(30, 150))
    direct = evaluate(dense, *ids)
    assert chunked.mAP == pytest.approx(direct.mAP, abs=1e-9)
    np.testing.assert_array_equal(chunked.first_match, direct.first_match)


def test_bad_parameters_are_user_errors():
    with pytest.raises(EvaluationError, match="k1"):
        re_ranking(np.ones((2, 3)), np.ones((2, 2)), np.ones((3, 3)), k1=0)
    with pytest.raises(EvaluationError, match="lambda"):
        next(rerank_rows(np.ones((2, 4)), np.ones((3, 4)), lambda_value=2.0))


def test_faiss_neighbours_with_every_list_probed_equal_the_exact_ones():
    from raybench.eval.knn import exact_neighbours, faiss_neighbours

    rng = np.random.default_rng(3)
    x = features(rng, 400, dim=8) * 2
    for distance in ("euclidean", "cosine"):
        nn, rowmax = exact_neighbours(x, distance, 6)
        fnn, frowmax = faiss_neighbours(x, distance, 6, nprobe=10_000)
        assert (fnn == nn).mean() > 0.99  # faiss's own float rounding may swap a near tie
        np.testing.assert_allclose(frowmax.numpy(), rowmax.numpy(), rtol=1e-4)
    qf, gf = x[:50], x[50:]
    exact = np.concatenate([r for _, _, r in rerank_rows(qf, gf, knn="exact", device="cpu")])
    approx = np.concatenate([r for _, _, r in rerank_rows(qf, gf, knn="faiss", nprobe=10_000, device="cpu")])
    assert np.abs(exact - approx).max() < 1e-3
