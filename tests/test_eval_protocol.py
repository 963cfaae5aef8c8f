"""protocol.score: a cell's embedding columns in, its scoring blocks (raybench.metrics.Scores) out."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from eval_references import torchreid_metrics

from raybench.errors import EvaluationError
from raybench.eval import evaluate_features
from raybench.eval import protocol
from raybench.rundir.records import scores_json
from raybench.rundir.store import embedding_columns, embedding_matrix
from raybench.specs import EvalSpec, EvalVariant, Protocol

DIM = 8


def table(trials: int, seed: int = 0, with_trial_column: bool = True) -> pa.Table:
    """Each trial: 12 queries and 40 gallery images drawn from 10 identities, 3 cameras."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((11, DIM))
    rows = {"path": [], "pid": [], "camid": [], "split": [], "trial": [], "embedding": []}
    for t in range(trials):
        for split, n in (("query", 12), ("gallery", 40)):
            pids = rng.integers(1, 11, n)
            for i, pid in enumerate(pids):
                rows["path"].append(f"/data/t{t}/{split}/{i}.jpg")
                rows["pid"].append(int(pid))
                rows["camid"].append(int(rng.integers(0, 3)))
                rows["split"].append(split)
                rows["trial"].append(t)
                rows["embedding"].append((centres[pid] + rng.standard_normal(DIM)).astype(np.float32))
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(rows.pop("embedding"))), DIM)
    t = pa.table({"path": pa.array(rows["path"]), "pid": pa.array(rows["pid"], pa.int32()),
                  "camid": pa.array(rows["camid"], pa.int32()), "split": pa.array(rows["split"]),
                  "trial": pa.array(rows["trial"], pa.int16()), "embedding": emb})
    return t if with_trial_column else t.drop_columns(["trial"])


def score(tab: pa.Table, *args, **kwargs) -> protocol.Scored:
    """protocol.score of a stored cell's table, read as the reducer reads it."""
    return protocol.score(embedding_columns(tab), *args, **kwargs)


def rows_of(tab: pa.Table, trial: int, split: str) -> np.ndarray:
    return np.flatnonzero((tab["trial"].to_numpy() == trial) & (tab["split"].to_numpy() == split))


def test_trials_are_scored_apart_and_averaged():
    tab = table(3)
    out = score(tab, Protocol(trials=3), EvalSpec(max_rank=10)).main
    emb = embedding_matrix(tab)
    per_trial = []
    for t in range(3):
        q, g = rows_of(tab, t, "query"), rows_of(tab, t, "gallery")
        pid, cam = tab["pid"].to_numpy(), tab["camid"].to_numpy()
        per_trial.append(evaluate_features(emb[q], emb[g], pid[q], pid[g], cam[q], cam[g], max_rank=10, device="cpu"))
    assert [t["mAP"] for t in out.trials] == pytest.approx([r.mAP for r in per_trial])
    assert out.mAP == pytest.approx(np.mean([r.mAP for r in per_trial]))
    assert out.mINP == pytest.approx(np.mean([r.mINP for r in per_trial]))
    np.testing.assert_allclose(out.cmc, np.mean([r.cmc for r in per_trial], axis=0))
    assert out.spread["mAP_std"] == pytest.approx(np.std([r.mAP for r in per_trial], ddof=1))
    assert out.spread["R1_std"] == pytest.approx(np.std([r.rank1 for r in per_trial], ddof=1))
    assert (out.num_query, out.num_gallery) == (12, 40)
    stored = scores_json(out)
    assert json.loads(json.dumps(stored)) == stored  # plain JSON types all the way down
    pq = out.per_query
    assert len(pq["ap"]) == sum(r.num_valid_query for r in per_trial) == len(pq["path"])
    first = per_trial[0]
    valid = np.flatnonzero(first.valid)
    n0 = len(valid)
    assert pq["query"][:n0] == valid.tolist() and pq["trial"][:n0] == [0] * n0
    assert pq["first_match"][:n0] == first.first_match[valid].tolist()
    assert pq["path"][0] == f"/data/t0/query/{valid[0]}.jpg"


def test_single_split_has_no_spread_and_rerank_is_applied():
    tab = table(1, seed=1, with_trial_column=False)
    plain = score(tab, Protocol(), EvalSpec(distance="cosine")).main
    assert plain.spread is None and len(plain.trials) == 1 and len(plain.cmc) == 40
    rr = score(tab, Protocol(), EvalSpec(distance="cosine", rerank=True, rerank_k1=5, rerank_k2=2)).main
    assert rr.mAP != plain.mAP


def test_protocol_and_table_must_agree():
    with pytest.raises(EvaluationError, match="asks for 10 trials"):
        score(table(3), Protocol(trials=10), EvalSpec())
    with pytest.raises(EvaluationError, match="no 'trial' column"):
        score(table(1, with_trial_column=False), Protocol(trials=10), EvalSpec())
    without = {k: v for k, v in embedding_columns(table(1)).items() if k != "embedding"}
    with pytest.raises(EvaluationError, match="lacks the columns: embedding"):
        protocol.score(without, Protocol(), EvalSpec())
    import pyarrow.compute as pc

    only_queries = table(1).filter(pc.equal(table(1)["split"], "query"))
    with pytest.raises(EvaluationError, match="0 gallery"):
        score(only_queries, Protocol(), EvalSpec())


def test_a_trial_without_valid_queries_is_named():
    """GRID-like: one split whose gallery holds the queries' identities only under their own
    cameras; the error names that trial and the camera setting."""
    tab = table(2, seed=2)
    trial, pid = tab["trial"].to_numpy(), tab["pid"].to_numpy()
    camid = np.where(trial == 1, pid % 3, tab["camid"].to_numpy()).astype(np.int32)
    tab = tab.set_column(tab.column_names.index("camid"), "camid", pa.array(camid, pa.int32()))
    with pytest.raises(EvaluationError, match=r"^trial 1 \(2 trials\): .*camera_filter: false"):
        score(tab, Protocol(trials=2), EvalSpec())
    unfiltered = score(tab, Protocol(trials=2, camera_filter=False), EvalSpec()).main
    assert [t["num_valid_query"] for t in unfiltered.trials] == [t["num_query"] for t in unfiltered.trials]


#: Over a main eval block of unnormalised squared euclidean distances (where cosine differs:
#: on unit vectors the two order every gallery alike).
MAIN = EvalSpec(max_rank=10, normalize=False)
VARIANTS = (
    EvalVariant("cosine", EvalSpec(distance="cosine", normalize=False, max_rank=10)),
    EvalVariant("aqe", EvalSpec(max_rank=10, aqe_k=5, aqe_alpha=3.0)),
    EvalVariant("aqe2-rerank", EvalSpec(max_rank=10, normalize=False, aqe_k=3, aqe_alpha=1.0, aqe_times=2,
                                        rerank=True, rerank_k1=6, rerank_k2=3, rerank_lambda=0.3)),
)


def test_each_variant_scores_every_trial_as_torchreid_does_from_the_same_features():
    """Three trials (GRID-like): each variant's numbers are the means over trials of torchreid's
    metrics of that trial's features, under the variant's distance, normalisation, query
    expansion (the per-row reference) and re-ranking; the main numbers are those of a score
    without variants."""
    tab = table(3, seed=4)
    out = score(tab, Protocol(trials=3), MAIN, variants=VARIANTS)
    assert scores_json(out.main) == scores_json(score(tab, Protocol(trials=3), MAIN).main)
    assert list(out.variants) == ["cosine", "aqe", "aqe2-rerank"]
    emb, pid, cam = embedding_matrix(tab), tab["pid"].to_numpy(), tab["camid"].to_numpy()
    for variant in VARIANTS:
        spec = variant.eval
        per_trial = []
        for t in range(3):
            q, g = rows_of(tab, t, "query"), rows_of(tab, t, "gallery")
            per_trial.append(torchreid_metrics(
                emb[q], emb[g], pid[q], pid[g], cam[q], cam[g], distance=spec.distance, normalize=spec.normalize,
                max_rank=10, aqe=(spec.aqe_k, spec.aqe_alpha, spec.aqe_times) if spec.aqe else None,
                rerank=(spec.rerank_k1, spec.rerank_k2, spec.rerank_lambda) if spec.rerank else None))
        got = out.variants[variant.name]
        assert got.mAP == pytest.approx(np.mean([m for m, _, _ in per_trial]), abs=1e-6)
        assert got.mINP == pytest.approx(np.mean([i for _, i, _ in per_trial]), abs=1e-6)
        np.testing.assert_allclose(got.cmc, np.mean([c for _, _, c in per_trial], axis=0), atol=1e-6)
        assert got.spread["mAP_std"] == pytest.approx(np.std([m for m, _, _ in per_trial], ddof=1), abs=1e-6)
        assert got.num_valid_query == out.main.num_valid_query
        assert got.per_query["query"] == out.main.per_query["query"]  # the same queries, aligned
        assert abs(got.mAP - out.main.mAP) > 1e-3  # each variant changes the scores
    assert out.variants["aqe"].scoring == {"distance": "euclidean", "normalize": True, "rerank": False,
                                           "max_rank": 10, "aqe_k": 5, "aqe_alpha": 3.0, "aqe_times": 1}
    assert out.variants["cosine"].scoring == {"distance": "cosine", "normalize": False, "rerank": False,
                                              "max_rank": 10}


def test_a_variant_that_cannot_be_scored_is_named():
    tab = table(1, with_trial_column=False)  # 52 images
    big = EvalVariant("big-k", EvalSpec(aqe_k=60))
    with pytest.raises(EvaluationError, match=r"^eval variant 'big-k': query expansion with k=60 needs at least 60"):
        score(tab, Protocol(), EvalSpec(), variants=(big,))
