"""Real data, real weights, a distractor set and a gallery in shards: the numbers torchreid gives.

OSNet x0.25 (Market-1501-trained) on the real market1501-mini crops, with the fixture's 32
training crops (16 identities that no query has) as the distractor set, scored in 3 shard
actors. The reference is torchreid's own path on the enlarged gallery (osnet_reference.py:
build_model + load_state_dict, its transform, compute_distance_matrix, evaluate_rank over the
test gallery plus the training crops); the same cell scored again in one process gives the same
numbers bit for bit. Two datasets that name the same folder (one relative to its root, one
absolute) share the one distractor cell of the model.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import MARKET_MINI, OSNET_DIR, needs_fixtures
from osnet_reference import folder_features, reference, reference_model

from raybench.catalog import load_matrix
from raybench.pipeline.driver import RunOptions, run_matrix

CHECKPOINT = "osnet_x0_25_market1501.pth"
MAX_RANK = 20  # torchreid's CMC needs every query's filtered gallery to reach it


@needs_fixtures
@pytest.mark.skipif(not (OSNET_DIR / CHECKPOINT).exists(), reason=f"{CHECKPOINT} not found in {OSNET_DIR}")
def test_distractors_in_three_shards_equal_torchreid_and_one_process(ray_local, tmp_path):
    import torch
    import yaml

    from raybench.pipeline.reducer import CellJob
    from raybench.pipeline.shards import score_cell
    from raybench.rundir.store import RunStore

    path = tmp_path / "distractors.yaml"
    path.write_text(yaml.safe_dump({
        "name": "distractors-fixture",
        "models": [{"name": "osnet-market", "loader": "torchreid", "arch": "osnet_x0_25", "paradigm": "supervised",
                    "weights": str(OSNET_DIR / CHECKPOINT), "batch_size": 32}],
        "datasets": [{"name": "market1501", "root": str(MARKET_MINI), "distractors": "bounding_box_train"},
                     {"name": "mini-again", "adapter": "market1501", "root": str(MARKET_MINI),
                      "distractors": str(MARKET_MINI / "bounding_box_train")}],
        "eval": {"distance": "euclidean", "normalize": False, "max_rank": MAX_RANK, "shards": 3},
    }))
    matrix = load_matrix(str(path))
    out = tmp_path / "run"
    summary = run_matrix(matrix, str(out), RunOptions(), echo=lambda _: None)
    assert summary.ok, summary.failed
    sets = sorted(p.name for p in (out / "embeddings").iterdir() if p.name.startswith("distractors-"))
    assert len(sets) == 1 and (out / "embeddings" / sets[0] / "osnet-market" / "_SUCCESS").is_file(), sets

    model = reference_model(CHECKPOINT, 751)
    query = folder_features(model, MARKET_MINI / "query")
    parts = [folder_features(model, MARKET_MINI / f) for f in ("bounding_box_test", "bounding_box_train")]
    gallery = tuple(torch.cat([p[0] for p in parts]) if i == 0 else np.concatenate([p[i] for p in parts])
                    for i in range(3))
    ref_map, ref_cmc = reference(query, gallery, MAX_RANK)
    from torchreid.reid.metrics import compute_distance_matrix

    distmat = compute_distance_matrix(query[0], gallery[0], metric="euclidean").numpy()
    for dataset in ("market1501", "mini-again"):
        result = json.loads((out / "results" / dataset / "osnet-market.json").read_text())
        assert (result["num_query"], result["num_valid_query"], result["num_gallery"]) == (32, 30, 64)
        assert result["distractors"]["name"] == sets[0] and result["distractors"]["images"] == 32
        assert result["shards"]["count"] == 3 and sum(result["shards"]["items"]) == 64
        assert result["mAP"] == pytest.approx(ref_map, abs=1e-6)
        assert np.allclose(result["cmc"], ref_cmc, atol=1e-6) and len(result["cmc"]) == len(ref_cmc)

    # the same cell in one process: the same numbers, bit for bit
    store = RunStore.open(out)
    marker = store.cell_marker("market1501", "osnet-market")
    extra = store.cell_marker(sets[0], "osnet-market")
    spec = dataclasses.replace(matrix.eval, shards=1)
    job = CellJob(model="osnet-market", dataset=matrix.datasets[0], paradigm="supervised", spec_hash="",
                  cell_key=marker.key, manifest_hash=marker.manifest_hash, eval_hash="",
                  distractors=(sets[0], extra.key))
    scored, placement = score_cell(store, job, spec)
    assert placement.shards is None and placement.distractors["images"] == 32
    result = json.loads((out / "results" / "market1501" / "osnet-market.json").read_text())
    assert (scored.main.mAP, scored.main.mINP, list(scored.main.cmc)) == (result["mAP"], result["mINP"], result["cmc"])
    assert scored.main.per_query == result["per_query"]

    # the rank list ranks the distractors too, a block of the set at a time: torchreid's top 10
    from raybench.report.load import load_run
    from raybench.report.ranklist import Distractors, load_embeddings, sample_lines

    run = load_run(str(out))
    cell = next(c for c in run.cells if c.dataset == "market1501")
    meta, emb = load_embeddings(run.store, "market1501", "osnet-market")
    extra = Distractors(run.store, sets[0], "osnet-market")
    extra.BLOCK = 10  # four blocks of the set
    lines, _, _ = sample_lines(cell, meta, emb, 8, 0, extra)
    names = [p.name for f in ("bounding_box_test", "bounding_box_train") for p in sorted((MARKET_MINI / f).glob("*.jpg"))]
    paths = np.concatenate([meta["path"], extra.paths])
    queries = [p.name for p in sorted((MARKET_MINI / "query").glob("*.jpg"))]
    for line in lines:
        q = queries.index(meta["path"][line.query].rsplit("/", 1)[1])
        junk = (gallery[1] == query[1][q]) & (gallery[2] == query[2][q])
        order = [i for i in np.argsort(distmat[q], kind="stable") if not junk[i]]
        assert [p.rsplit("/", 1)[1] for p in paths[list(line.top)]] == [names[i] for i in order[:10]]
        assert line.first_match == line.stored["first_match"]
