"""Fusion cells: computed by the reducer from the members' stored embeddings, never embedded.

The fused scores are checked against an independent computation in the test (each member's
stored embeddings L2-normalised, scaled by sqrt(w), concatenated, torchreid's distance and
evaluate_rank); reruns check that a fusion added later starts no embedding stream and that a
member embedded again makes its fusions fuse and score again.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pipeline_helpers import dummy_model, make_market, market_dataset, matrix

from raybench.errors import SpecError, UnknownNameError
from raybench.pipeline.driver import RunOptions, run_matrix
from raybench.pipeline.fusion import fuse
from raybench.rundir.store import RunStore, embedding_matrix
from raybench.specs import FusionSpec


def test_fused_distance_is_the_weighted_sum_of_the_members_cosine_distances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)) * 7, rng.normal(size=(5, 4)) * 0.01  # any scales and dims
    fused = fuse([a, b], [1.0, 3.0])
    cos = [x @ x[0] / np.linalg.norm(x, axis=1) / np.linalg.norm(x[0]) for x in (a, b)]
    expected = 2 * (1.0 * (1 - cos[0]) + 3.0 * (1 - cos[1]))
    assert np.allclose(((fused - fused[0]) ** 2).sum(axis=1), expected, atol=1e-5)
    assert fused.shape == (5, 7) and fused.dtype == np.float32


def _matrix(tmp_path, fusions):
    """Models a and b, and "black", which cannot embed beta's all-black gallery image."""
    from PIL import Image

    root = tmp_path / "data"
    if not root.exists():
        make_market(root / "alpha", seed=1), make_market(root / "beta", seed=2)
        Image.new("RGB", (32, 64)).save(sorted((root / "beta/bounding_box_test").glob("*.jpg"))[-1])
    models = (dummy_model("a", dim=8), dummy_model("b", dim=5), dummy_model("black", fail_on_black=True))
    return matrix(models, [market_dataset("alpha", root / "alpha"), market_dataset("beta", root / "beta")],
                  fusions=tuple(fusions))


def _reference(store: RunStore, dataset: str, members, weights) -> tuple[float, np.ndarray]:
    """mAP and CMC by torchreid from the members' stored embeddings, fused here."""
    import torch
    from torchreid.reid.metrics import compute_distance_matrix, evaluate_rank

    tables = [store.read_embeddings(dataset, m) for m in members]
    parts = []
    for table, w in zip(tables, weights):
        e = embedding_matrix(table).astype(np.float64)
        parts.append(np.sqrt(w) * e / np.linalg.norm(e, axis=1, keepdims=True))
    feats = np.concatenate(parts, axis=1)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)  # the eval block's normalize: true
    split = np.array(tables[0].column("split").to_pylist())
    pid, cam = tables[0].column("pid").to_numpy(), tables[0].column("camid").to_numpy()
    q, g = split == "query", split == "gallery"
    dist = compute_distance_matrix(torch.from_numpy(feats[q]), torch.from_numpy(feats[g]), "euclidean").numpy()
    cmc, mAP = evaluate_rank(dist, pid[q], pid[g], cam[q], cam[g], max_rank=10)
    return float(mAP), np.asarray(cmc)


@pytest.mark.slow
def test_fusion_cells_are_scored_from_stored_embeddings(ray_local, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    even, black = FusionSpec("ab", ("a", "b"), (1.0, 1.0)), FusionSpec("a-black", ("a", "black"), (1.0, 1.0))
    summary = run_matrix(_matrix(tmp_path, [even, black]), out, RunOptions(), echo=lambda _: None)
    store = RunStore.open(out)
    # a fusion fails with its member's reason, and only where the member failed
    failed = {(r["dataset"], r["model"]): r["error"] for r in summary.failed}
    assert set(failed) == {("beta", "black"), ("beta", "a-black")}
    assert failed[("beta", "a-black")] == f"member black failed: {failed[('beta', 'black')]}"
    assert store.read_result("beta", "a-black").error_kind == "member"
    assert store.read_result("alpha", "a-black").ok
    for dataset in ("alpha", "beta"):
        result = store.read_result(dataset, "ab")
        ref_map, ref_cmc = _reference(store, dataset, ["a", "b"], [1, 1])
        assert result.paradigm == "hybrid" and result.mAP == pytest.approx(ref_map, abs=1e-6)
        assert np.allclose(result.cmc, ref_cmc, atol=1e-6)
        assert store.cell_marker(dataset, "ab").dim == 13

    # a fusion added later is fused from the stored embeddings: no embedding stream starts
    def no_stream(*args, **kwargs):
        raise AssertionError("an embedding stream started for a fusion")

    monkeypatch.setattr("raybench.pipeline.driver.embedding_stream", no_stream)
    skewed = FusionSpec("ab-skewed", ("a", "b"), (1.0, 4.0))
    lines = []
    ab = _matrix(tmp_path, [even, black, skewed]).select(models=["a", "b"])  # black would be retried
    assert [f.name for f in ab.fusions] == ["ab", "ab-skewed"]
    summary = run_matrix(ab, out, RunOptions(), echo=lines.append)
    assert summary.ok, summary.failed
    assert "8 cells: 6 kept, 2 to run (0 to re-score, 2 to fuse)" in lines
    ref_map, ref_cmc = _reference(store, "alpha", ["a", "b"], [1, 4])
    assert store.read_result("alpha", "ab-skewed").mAP == pytest.approx(ref_map, abs=1e-6)
    assert store.read_result("alpha", "ab-skewed").mAP != pytest.approx(store.read_result("alpha", "ab").mAP)
    monkeypatch.undo()

    # a member embedded again (its embeddings lost here) makes its fusions fuse and score again
    before = store.read_result("alpha", "ab").cell_key
    store.fs.delete_file(store.path("embeddings/alpha/b/_SUCCESS"))
    summary = run_matrix(ab, out, RunOptions(), echo=lambda _: None)
    again = {(r["dataset"], r["model"]): r["this_run"] for r in summary.rows}
    assert again == {("alpha", "a"): "kept", ("alpha", "b"): "scored", ("alpha", "ab"): "scored",
                     ("alpha", "ab-skewed"): "scored", ("beta", "a"): "kept", ("beta", "b"): "kept",
                     ("beta", "ab"): "kept", ("beta", "ab-skewed"): "kept"}
    assert store.read_result("alpha", "ab").cell_key == before  # same member key: same fusion
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert [f["name"] for f in run["matrix"]["fusions"]] == ["ab", "ab-skewed"]


def test_fusions_parse_with_errors_that_name_the_key(tmp_path):
    from raybench.catalog import load_matrix

    def write(fusions):
        path = tmp_path / "m.yaml"
        other = {"name": "other", "loader": "dummy", "arch": "x", "paradigm": "baseline"}
        path.write_text(json.dumps({"name": "m", "models": ["color-hist", other],
                                    "datasets": ["synth-a"], "fusions": fusions}))
        return str(path)

    spec = load_matrix(write([{"name": "f", "of": ["color-hist", "other"], "weights": [1, 2]}]))
    assert spec.fusions == (FusionSpec("f", ("color-hist", "other"), (1.0, 2.0)),)
    assert load_matrix(write([{"name": "f", "of": ["color-hist", "other"]}])).fusions[0].weights == (1.0, 1.0)
    with pytest.raises(UnknownNameError, match="'colour-hist'.*Did you mean 'color-hist'"):
        load_matrix(write([{"name": "f", "of": ["colour-hist", "other"]}]))
    with pytest.raises(SpecError, match="fusions\\[0\\]: key 'weights' must be 2 positive numbers"):
        load_matrix(write([{"name": "f", "of": ["color-hist", "other"], "weights": [1]}]))
    with pytest.raises(SpecError, match="has the name of a model"):
        load_matrix(write([{"name": "other", "of": ["color-hist", "other"]}]))
    # selecting a fusion brings its members; a fusion whose member is left out is dropped
    spec = load_matrix(write([{"name": "f", "of": ["color-hist", "other"]}]))
    assert [m.name for m in spec.select(models=["f"]).models] == ["color-hist", "other"]
    assert spec.select(models=["color-hist"]).fusions == ()


@pytest.mark.slow
def test_a_fusion_fuses_its_members_distractor_set_once_and_scores_with_it(ray_local, tmp_path):
    """Two datasets name one distractor folder: the fusion's cell of the set is fused from its
    members' set cells (never embedded) and joins both datasets' galleries; the scores equal
    torchreid's on the fused features of the gallery plus the set; a member's set embedded
    again makes the fusion fuse the set and score again, to the same numbers."""
    import dataclasses

    import torch
    from torchreid.reid.metrics import compute_distance_matrix, evaluate_rank

    root = tmp_path / "data"
    make_market(root / "alpha", seed=1), make_market(root / "beta", seed=2), make_market(root / "extra", seed=3)
    folder = str(root / "extra" / "bounding_box_test")
    datasets = [dataclasses.replace(market_dataset(n, root / n), distractors=folder) for n in ("alpha", "beta")]
    spec = matrix((dummy_model("a", dim=8), dummy_model("b", dim=5)), datasets,
                  fusions=(FusionSpec("ab", ("a", "b"), (1.0, 2.0)),))
    spec = dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, shards=2))
    out = str(tmp_path / "run")
    lines = []
    summary = run_matrix(spec, out, RunOptions(), echo=lines.append)
    assert summary.ok, summary.failed
    assert "6 cells: 0 kept, 6 to run (0 to re-score, 2 to fuse); 1 distractor set to embed (36 images)" in lines, lines[:3]
    store = RunStore.open(out)
    (name,) = {store.read_result(d, "ab").distractors["name"] for d in ("alpha", "beta")}
    fused_set = store.cell_marker(name, "ab")
    assert fused_set.dim == 13 and fused_set.rows == 18
    assert sorted(p.name for p in (tmp_path / "run" / "results").iterdir()) == ["alpha", "beta"]  # a set has no result
    assert {(r["dataset"], r["model"]) for r in summary.rows} == {(d, m) for d in ("alpha", "beta") for m in ("a", "b", "ab")}

    def reference(dataset):
        """torchreid on the members' stored embeddings of the dataset and the set, fused here."""
        parts = []
        for member, w in (("a", 1.0), ("b", 2.0)):
            e = np.concatenate([embedding_matrix(store.read_embeddings(d, member)) for d in (dataset, name)])
            e = e.astype(np.float64)
            parts.append(np.sqrt(w) * e / np.linalg.norm(e, axis=1, keepdims=True))
        feats = np.concatenate(parts, axis=1)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        own = store.read_embeddings(dataset, "a")
        split = np.array(own.column("split").to_pylist() + ["gallery"] * 18)
        pid = np.concatenate([own.column("pid").to_numpy(), np.full(18, -2)])  # no query's identity
        cam = np.concatenate([own.column("camid").to_numpy(), np.full(18, -1)])
        q, g = split == "query", split == "gallery"
        dist = compute_distance_matrix(torch.from_numpy(feats[q]), torch.from_numpy(feats[g]), "euclidean").numpy()
        cmc, mAP = evaluate_rank(dist, pid[q], pid[g], cam[q], cam[g], max_rank=10)
        return float(mAP), np.asarray(cmc)

    before = {}
    for dataset in ("alpha", "beta"):
        result = store.read_result(dataset, "ab")
        ref_map, ref_cmc = reference(dataset)
        assert result.num_gallery == 18 + 18 and result.shards["count"] == 2
        assert result.mAP == pytest.approx(ref_map, abs=1e-6) and np.allclose(result.cmc, ref_cmc, atol=1e-6)
        before[dataset] = result.mAP

    # b's set embedded again: the fusion's set is fused again and both fusion cells re-scored
    store.fs.delete_file(store.path(f"embeddings/{name}/b/_SUCCESS"))
    summary = run_matrix(spec, out, RunOptions(), echo=lambda _: None)
    assert summary.ok, summary.failed
    again = {(r["dataset"], r["model"]): r["this_run"] for r in summary.rows}
    assert again == {(d, m): "kept" if m == "a" else "scored" for d in ("alpha", "beta") for m in ("a", "b", "ab")}
    assert store.cell_marker(name, "ab").written != fused_set.written
    assert {d: store.read_result(d, "ab").mAP for d in before} == before

    # a member that cannot embed the set fails the fusion's cells with its reason, and no other
    from PIL import Image

    Image.new("RGB", (32, 64)).save(root / "extra" / "bounding_box_test" / "0099_c1s1_000000_00.jpg")
    spec = matrix((dummy_model("a", dim=8), dummy_model("black", fail_on_black=True)), datasets[:1],
                  fusions=(FusionSpec("a-black", ("a", "black"), (1.0, 1.0)),))
    summary = run_matrix(spec, str(tmp_path / "run2"), RunOptions(), echo=lambda _: None)
    failed = {(r["dataset"], r["model"]): r["error"] for r in summary.failed}
    assert set(failed) == {("alpha", "black"), ("alpha", "a-black")}, failed
    assert failed[("alpha", "black")].startswith("its distractor set ")
    assert failed[("alpha", "a-black")] == f"member black failed: {failed[('alpha', 'black')]}"
    assert [r["model"] for r in summary.rows if r["status"] == "ok"] == ["a"]
