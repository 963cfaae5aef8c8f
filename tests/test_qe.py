"""Average query expansion (raybench.eval.qe) against its definition written as a per-row loop
(eval_references.reference_aqe), a hand-worked case, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from eval_references import reference_aqe

from raybench.errors import EvaluationError
from raybench.eval.qe import average_query_expansion


def expand(qf, gf, **kwargs):
    q, g = average_query_expansion(qf, gf, device="cpu", **kwargs)
    return q.numpy(), g.numpy()


@pytest.mark.parametrize("times", [1, 2])
@pytest.mark.parametrize("k, alpha", [(5, 3.0), (1, 3.0), (8, 1.0), (3, 0.0)])
def test_equals_the_per_row_definition(times, k, alpha):
    rng = np.random.default_rng(10 * times + k)
    qf, gf = rng.standard_normal((13, 6)) + 2, rng.standard_normal((41, 6)) + 2  # float64: no near ties
    q, g = expand(qf, gf, k=k, alpha=alpha, times=times)
    ref_q, ref_g = reference_aqe(qf, gf, k, alpha, times)
    np.testing.assert_allclose(q, ref_q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-12)
    # row blocks of any size give the same rows (similarities exist a block at a time)
    for chunk in (1, 7):
        blocked = expand(qf, gf, k=k, alpha=alpha, times=times, chunk_size=chunk)
        np.testing.assert_allclose(blocked[0], q, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(blocked[1], g, rtol=1e-12, atol=1e-12)


def test_float32_features_stay_float32_and_close_to_the_definition():
    rng = np.random.default_rng(3)
    qf, gf = rng.standard_normal((20, 16), np.float32), rng.standard_normal((70, 16), np.float32)
    q, g = expand(qf, gf, k=5, alpha=3.0)
    assert q.dtype == np.float32 and q.shape == (20, 16) and g.shape == (70, 16)
    ref_q, ref_g = reference_aqe(qf, gf, 5, 3.0)
    np.testing.assert_allclose(np.concatenate([q, g]), np.concatenate([ref_q, ref_g]), atol=1e-6)


def test_hand_worked_case():
    """a=(1,0), b=(0,2), c=(3,4): unit c = (0.6, 0.8), so a.c = 0.6, b.c = 0.8, a.b = 0.
    k=2, alpha=2: a keeps itself and c (weights 1, 0.36), b and c keep each other (1, 0.64),
    and the raw (unnormalised) features are averaged: a' = (a + 0.36 c) / 2 = (1.04, 0.72),
    b' = (b + 0.64 c) / 2 = (0.96, 2.28), c' = (c + 0.64 b) / 2 = (1.5, 2.64)."""
    q, g = expand(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0], [3.0, 4.0]]), k=2, alpha=2.0)
    np.testing.assert_allclose(q, [[1.04, 0.72]], atol=1e-12)
    np.testing.assert_allclose(g, [[0.96, 2.28], [1.5, 2.64]], atol=1e-12)
    # k=1 keeps each row alone with weight 1: nothing changes, however many rounds
    q1, g1 = expand(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0], [3.0, 4.0]]), k=1, alpha=2.0, times=3)
    np.testing.assert_array_equal(q1, [[1.0, 0.0]])
    np.testing.assert_array_equal(g1, [[0.0, 2.0], [3.0, 4.0]])


def test_errors_name_the_setting():
    qf, gf = np.eye(3)[:1], np.eye(3)[1:]
    with pytest.raises(EvaluationError, match="k=4 needs at least 4 images, got 3"):
        expand(qf, gf, k=4)
    with pytest.raises(EvaluationError, match="k >= 1"):
        expand(qf, gf, k=0)
    opposite = np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]])
    with pytest.raises(EvaluationError, match="alpha 2.5 on a negative similarity"):
        expand(*opposite, k=2, alpha=2.5)
    q, _ = expand(*opposite, k=2, alpha=3.0)  # an odd integer power keeps the sign, as numpy's does
    np.testing.assert_allclose(q, [[1.0, 0.0]])
