"""Real crops, real weights, a clothes-changing layout: the pipeline's settings equal the rules.

The real market1501-mini crops renamed into LTCC's naming ({pid}_{clothes}_c{cam}_{frame}.png;
query/ and test/), the clothes id invented from Market's sequence field (c2s3: outfit 3: a
person seen in two sequences wears two outfits), embedded by the real OSNet x0.25 fixture
through the whole Ray pipeline. Each setting of the result (standard, cc, sc) must equal the
per-query reference of the rules (tests/eval_references.py) applied to the cell's stored
embeddings as RunStore.read_embeddings returns them (clothes column included); the report must
show the clothes table and the clothes gap figure, and its JSON rows the settings.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import MARKET_MINI, OSNET_DIR, needs_fixtures
from eval_references import reference_clothes

CHECKPOINT = OSNET_DIR / "osnet_x0_25_market1501.pth"
MAX_RANK = 20


def fake_ltcc(root):
    """LTCC_ReID/{query,test} from the real crops: 0004_c2s3_059152_00.jpg -> 004_3_c2_059152.png."""
    from PIL import Image

    for market, ltcc in (("query", "query"), ("bounding_box_test", "test")):
        (root / "LTCC_ReID" / ltcc).mkdir(parents=True)
        for path in sorted((MARKET_MINI / market).glob("*.jpg")):
            pid, cam, seq, frame = re.match(r"(\d+)_c(\d)s(\d)_(\d+)", path.name).groups()
            Image.open(path).save(root / "LTCC_ReID" / ltcc / f"{int(pid):03d}_{seq}_c{cam}_{frame}.png")
    return root


@needs_fixtures
@pytest.mark.skipif(not CHECKPOINT.exists(), reason=f"OSNet checkpoint not found: {CHECKPOINT}")
def test_osnet_on_a_fake_ltcc_equals_the_rules_on_its_stored_embeddings(ray_local, tmp_path):
    import yaml

    from raybench.catalog import load_matrix
    from raybench.pipeline.driver import RunOptions, run_matrix
    from raybench.report.build import ReportOptions, build_report
    from raybench.rundir.store import RunStore, embedding_columns

    data = fake_ltcc(tmp_path / "data")
    path = tmp_path / "clothes.yaml"
    path.write_text(yaml.safe_dump({
        "name": "clothes-fixture",
        "models": [{"name": "osnet-market", "loader": "torchreid", "arch": "osnet_x0_25", "paradigm": "supervised",
                    "weights": str(CHECKPOINT), "batch_size": 32}],
        "datasets": [{"name": "ltcc", "root": str(data)}],  # the catalog's entry: settings standard, cc, sc
        "eval": {"distance": "euclidean", "normalize": False, "max_rank": MAX_RANK},
    }))
    summary = run_matrix(load_matrix(str(path)), str(tmp_path / "run"), RunOptions(), echo=lambda _: None)
    assert summary.ok, summary.failed

    result = json.loads((tmp_path / "run/results/ltcc/osnet-market.json").read_text())
    assert set(result["settings"]) == {"standard", "cc", "sc"} and result["protocol"]["headline"] == "cc"
    cols = embedding_columns(RunStore.open(tmp_path / "run").read_embeddings("ltcc", "osnet-market"))
    q, g = cols["split"] == "query", cols["split"] == "gallery"
    assert cols["clothes"][q][0] == "004_3"  # the store keeps the manifest's clothes column
    emb = cols["embedding"].astype(np.float64)
    distmat = (emb[q] ** 2).sum(1)[:, None] + (emb[g] ** 2).sum(1)[None] - 2 * emb[q] @ emb[g].T
    valid = {}
    for mode, block in result["settings"].items():
        ref_map, ref_minp, ref_cmc, ref_valid = reference_clothes(
            distmat, cols["pid"][q], cols["pid"][g], cols["camid"][q], cols["camid"][g], cols["clothes"][q],
            cols["clothes"][g], mode=mode, max_rank=MAX_RANK)
        assert (block["num_query"], block["num_valid_query"]) == (32, ref_valid), mode
        assert block["mAP"] == pytest.approx(ref_map, abs=1e-5) and block["mINP"] == pytest.approx(ref_minp, abs=1e-5)
        assert np.allclose(block["cmc"], ref_cmc, atol=1e-9), mode
        assert block["scoring"] == {"rule": mode}
        valid[mode] = ref_valid
    assert valid == {"standard": 30, "cc": valid["cc"], "sc": valid["sc"]} and 0 < valid["cc"] < 30
    assert result["mAP"] == result["settings"]["cc"]["mAP"]  # the headline setting is the main block

    report = build_report(tmp_path / "run", ReportOptions(bootstraps=50, ranklist_queries=2))
    names = {p.name for p in report.files}
    assert "clothes_gap.png" in names
    md = (report.out / "results.md").read_text()
    assert "## Clothes-changing: standard / cc / sc" in md and "### ltcc" in md
    [row] = json.loads((report.out / "results.json").read_text())
    assert row["settings"]["cc"]["mAP"] == result["settings"]["cc"]["mAP"]
    assert row["settings"]["sc"]["num_valid_query"] == valid["sc"]
    page = (report.out / "ranklists" / "ltcc__osnet-market.html").read_text()
    assert re.search(r"clothes \d{3}_\d<", page)  # every image shows its clothes key
