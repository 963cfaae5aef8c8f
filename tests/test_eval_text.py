"""evaluate_t2i against a brute-force reference, a hand-worked case and IRRA's evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from raybench.errors import EvaluationError
from raybench.eval.text import evaluate_t2i


def brute_force(similarity, text_pids, image_pids):
    """Plain Python: sort each row by (-similarity, image index), walk the whole ranking."""
    r1 = r5 = r10 = 0
    aps, inps = [], []
    for row, pid in zip(np.asarray(similarity).tolist(), text_pids):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        hits = [k + 1 for k, j in enumerate(order) if image_pids[j] == pid]
        r1 += hits[0] <= 1
        r5 += hits[0] <= 5
        r10 += hits[0] <= 10
        aps.append(sum((n + 1) / k for n, k in enumerate(hits)) / len(hits))
        inps.append(len(hits) / hits[-1])
    n = len(text_pids)
    return {"R1": r1 / n, "R5": r5 / n, "R10": r10 / n, "mAP": sum(aps) / n, "mINP": sum(inps) / n}


def irra_rank(similarity, q_pids, g_pids, max_rank=10, stable=False):
    """IRRA's utils/metrics.py ``rank`` (get_mAP=True), re-implemented: argsort every row,
    descending; cumulative matches. Percentages, as IRRA returns them. ``stable``: sort ties
    by index (IRRA's unstable argsort leaves their order unspecified)."""
    import torch

    if stable:
        indices = torch.sort(similarity, dim=1, descending=True, stable=True).indices
    else:
        indices = torch.argsort(similarity, dim=1, descending=True)
    matches = g_pids[indices].eq(q_pids.view(-1, 1))
    cmc = matches[:, :max_rank].cumsum(1).clamp(max=1).float().mean(0) * 100
    hits = matches.cumsum(1)
    position = torch.arange(1, matches.shape[1] + 1)
    last = matches.shape[1] - 1 - matches.flip(1).int().argmax(1)  # position of the hardest match
    inp = hits.gather(1, last[:, None])[:, 0] / (last + 1.0)
    ap = (hits / position * matches).sum(1) / matches.sum(1)
    return cmc, ap.mean() * 100, inp.mean() * 100


def random_case(seed, ties):
    rng = np.random.default_rng(seed)
    images_per_id = rng.integers(1, 5, size=rng.integers(3, 12))
    images_per_id[0] = 1  # always an identity with a single image
    image_pids = rng.permutation(np.repeat(np.arange(len(images_per_id)) * 3 + 1, images_per_id))
    text_pids = np.append(rng.choice(np.unique(image_pids), size=rng.integers(5, 30)), 1)  # 1: the single image
    shape = (len(text_pids), len(image_pids))
    similarity = (rng.integers(0, 4, shape) / 4 if ties else rng.random(shape)).astype(np.float32)
    return similarity, text_pids, image_pids


def values(result):
    return {k: getattr(result, k) for k in ("R1", "R5", "R10", "mAP", "mINP")}


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [True, False])
def test_equals_brute_force(seed, ties):
    similarity, text_pids, image_pids = random_case(seed, ties)
    expected = brute_force(similarity, text_pids.tolist(), image_pids.tolist())
    for chunk_size in (None, 1, 4):
        got = values(evaluate_t2i(similarity, text_pids, image_pids, chunk_size=chunk_size))
        assert got == pytest.approx(expected, abs=1e-12), chunk_size


def test_hand_worked_case_and_the_tie_rule():
    # caption of pid 1; images 1 and 2 tie at 0.5: the lower index (1, a match) ranks first
    result = evaluate_t2i(np.array([[0.9, 0.5, 0.5, 0.1]]), [1], [2, 1, 2, 1])
    assert (result.R1, result.R5) == (0.0, 1.0)
    assert result.first_match.tolist() == [2]
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)  # matches at ranks 2 and 4
    assert result.mINP == pytest.approx(2 / 4)
    swapped = evaluate_t2i(np.array([[0.9, 0.5, 0.5, 0.1]]), [1], [1, 2, 2, 1])
    assert swapped.R1 == 1.0 and swapped.mAP == pytest.approx((1 / 1 + 2 / 4) / 2)


@pytest.mark.parametrize("seed", range(6))
def test_equals_irra_on_the_same_similarities(seed):
    torch = pytest.importorskip("torch")
    similarity, text_pids, image_pids = random_case(seed, ties=False)
    ours = evaluate_t2i(similarity, text_pids, image_pids)
    cmc, mAP, mINP = irra_rank(torch.from_numpy(similarity), torch.from_numpy(text_pids), torch.from_numpy(image_pids))
    k = len(cmc)
    irra = {"R1": cmc[0], "R5": cmc[min(4, k - 1)], "R10": cmc[min(9, k - 1)], "mAP": mAP, "mINP": mINP}
    assert values(ours) == pytest.approx({name: float(v) / 100 for name, v in irra.items()}, abs=1e-6)
    # on ties, IRRA's numbers with a stable sort are ours
    tied, text_pids, image_pids = random_case(seed, ties=True)
    cmc, mAP, mINP = irra_rank(torch.from_numpy(tied), torch.from_numpy(text_pids), torch.from_numpy(image_pids),
                               stable=True)
    got = evaluate_t2i(torch.from_numpy(tied), torch.from_numpy(text_pids), image_pids)
    assert (got.R1, got.mAP, got.mINP) == pytest.approx((float(cmc[0]) / 100, float(mAP) / 100, float(mINP) / 100),
                                                        abs=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(EvaluationError, match=r"1 captions describe identities with no image \(e.g. pid 9\)"):
        evaluate_t2i(np.ones((2, 3)), [1, 9], [1, 1, 2])
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate_t2i(np.array([[0.1, np.nan, 0.3]]), [1], [1, 2, 2])
    with pytest.raises(EvaluationError, match="2-D"):
        evaluate_t2i(np.ones(3), [1], [1, 1, 1])
    with pytest.raises(EvaluationError, match="similarity is 2 x 3 but there are 1 text and 3 image pids"):
        evaluate_t2i(np.ones((2, 3)), [1], [1, 1, 1])


def test_bench_t2i_records_the_metrics_of_its_similarities(tmp_path):
    import json

    from click.testing import CliRunner

    from raybench.bench.text import similarities
    from raybench.commands.bench import bench

    out = tmp_path / "t2i.json"
    result = CliRunner().invoke(bench, ["t2i", "--size", "tiny", "--chunk-size", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    similarity, text_pids, image_pids = similarities(400, 300)
    assert record["metrics"] == pytest.approx(brute_force(similarity, text_pids.tolist(), image_pids.tolist()), abs=1e-12)
    assert (record["num_captions"], record["num_images"], record["chunk_size"]) == (400, 300, 50)
    assert record["seconds"] > 0 and record["traced_peak_mib"] >= 0


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, bool])
def test_integer_similarities_rank_as_their_float_values(dtype):
    """Negated into distances, unsigned integers would wrap (uint8: R1 0.0 where float32 gives
    1.0): any integer or boolean similarity is scored as its exact float64 value."""
    import torch

    rng = np.random.default_rng(3)
    sim = rng.integers(0, 2 if dtype is bool else 200, size=(12, 30)).astype(dtype)
    text_pids, image_pids = rng.integers(0, 5, 12), np.arange(30) % 5
    expected = values(evaluate_t2i(sim.astype(np.float32), text_pids, image_pids))
    assert values(evaluate_t2i(sim, text_pids, image_pids)) == expected
    if dtype is not np.uint32:  # torch has no uint32 arithmetic on every build
        assert values(evaluate_t2i(torch.from_numpy(sim), text_pids, image_pids)) == expected


def test_a_similarity_that_is_not_numbers_is_refused():
    with pytest.raises(EvaluationError, match="must hold numbers, got dtype <U1"):
        evaluate_t2i(np.array([["a", "b"]]), [0], [0, 1])
