"""`--limit N`: the first N query identities per trial, their images, a share of the rest."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import MARKET_MINI, needs_fixtures
from pipeline_helpers import dummy_model, market_dataset, matrix

from raybench.datasets import cuhk03, get_adapter, synthetic
from raybench.datasets import grid as grid_adapter
from raybench.datasets.limit import limit_counts, limit_manifest, path_fraction
from raybench.datasets.manifest import make_manifest
from raybench.errors import RaybenchError
from raybench.pipeline import plan as planning
from raybench.eval.protocol import Scored
from raybench.metrics import Scores
from raybench.pipeline.reducer import job_for, result_record
from raybench.rundir.records import CellMarker, CellResult
from raybench.rundir.store import RunStore, embedding_table


def _eval_rows(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table.column("split"), pa.array(planning.EVAL_SPLITS)))


def _matches(table: pa.Table) -> dict:
    """(trial, query path) -> the gallery paths that count as its true matches (same pid,
    another camera): what the market protocol scores."""
    rows = table.to_pylist()
    out = {}
    for q in rows:
        if q["split"] != "query":
            continue
        trial = q.get("trial", 0)
        out[(trial, q["path"])] = {g["path"] for g in rows if g["split"] == "gallery" and g.get("trial", 0) == trial
                                   and g["pid"] == q["pid"] and g["camid"] != q["camid"]}
    return out


def _check_protocol(full: pa.Table, limited: pa.Table, n: int) -> None:
    """The kept queries are the first n query ids of each trial, with all their matches; every
    kept gallery row of another identity was chosen by the path rule."""
    full_rows = full.to_pylist()
    trials = sorted({r.get("trial", 0) for r in full_rows})
    for t in trials:
        ids = sorted({r["pid"] for r in full_rows if r["split"] == "query" and r.get("trial", 0) == t})
        kept = {r["pid"] for r in limited.to_pylist() if r["split"] == "query" and r.get("trial", 0) == t}
        assert kept == set(ids[:n]), (t, kept, ids[:n])
    full_matches, kept_matches = _matches(full), _matches(limited)
    assert kept_matches and set(kept_matches) <= set(full_matches)
    for key, matches in kept_matches.items():
        assert matches == full_matches[key]  # no query loses a cross-camera match
    assert any(kept_matches.values())  # the check has matches to lose


def _synthetic_table(tmp_path) -> pa.Table:
    tiny = synthetic.tiny_copy(tmp_path)
    root, params = tiny.root, tiny.options
    return _eval_rows(get_adapter("synthetic").parse(root, **params))


def test_limit_keeps_the_first_identities_and_their_matches_on_synthetic_sets(tmp_path):
    full = _synthetic_table(tmp_path)
    limited = limit_manifest(full, 2)
    _check_protocol(full, limited, 2)
    counts, total = limit_counts(limited), limit_counts(full)
    assert counts["query_ids"] == 2 and total["query_ids"] == 3
    assert counts["query"] < total["query"]
    kept_ids = set(limited.filter(pa.compute.equal(limited.column("split"), "query")).column("pid").to_pylist())
    assert counts["gallery"] == sum(1 for r in full.to_pylist() if r["split"] == "gallery"
                                    and (r["pid"] in kept_ids or path_fraction(r["path"]) < 2 / 3))
    # deterministic: the same rows from the same table, and from its rows in another order
    assert limit_manifest(full, 2).equals(limited)
    shuffled = full.take(pa.array(np.random.default_rng(0).permutation(full.num_rows)))
    assert sorted(limit_manifest(shuffled, 2).column("path").to_pylist()) == sorted(limited.column("path").to_pylist())
    # a limit above the identities keeps the whole table
    assert limit_manifest(full, 99).num_rows == full.num_rows


def test_the_gallery_keeps_a_deterministic_share_of_distractors():
    # 10 query ids with one gallery image each, and 1,000 distractors (pid 0)
    rows = [{"path": f"/q/{i}.jpg", "pid": i, "camid": 0, "split": "query"} for i in range(1, 11)]
    rows += [{"path": f"/g/{i}.jpg", "pid": i, "camid": 1, "split": "gallery"} for i in range(1, 11)]
    rows += [{"path": f"/d/{j}.jpg", "pid": 0, "camid": 2, "split": "gallery"} for j in range(1000)]
    limited = limit_manifest(make_manifest(rows), 3)
    distractors = [r["path"] for r in limited.to_pylist() if r["pid"] == 0]
    assert distractors == [f"/d/{j}.jpg" for j in range(1000) if path_fraction(f"/d/{j}.jpg") < 0.3]
    assert 240 <= len(distractors) <= 360  # about 3/10 of them
    other_ids = {r["pid"] for r in limited.to_pylist() if r["pid"] > 3}
    assert all(path_fraction(f"/g/{i}.jpg") < 0.3 for i in other_ids)  # other identities: distractors too
    with pytest.raises(RaybenchError, match="at least 1"):
        limit_manifest(make_manifest(rows), 0)


@needs_fixtures
def test_limit_on_the_real_market_fixture():
    full = _eval_rows(get_adapter("market1501").parse(MARKET_MINI))
    limited = limit_manifest(full, 4)
    _check_protocol(full, limited, 4)
    ids = sorted(set(full.filter(pa.compute.equal(full.column("split"), "query")).column("pid").to_pylist()))[:4]
    expected_gallery = sum(1 for r in full.to_pylist() if r["split"] == "gallery"
                           and (r["pid"] in ids or path_fraction(r["path"]) < 4 / limit_counts(full)["query_ids"]))
    counts = limit_counts(limited)
    assert counts["query_ids"] == 4 and counts["gallery"] == expected_gallery
    assert counts["query"] == sum(1 for r in full.to_pylist() if r["split"] == "query" and r["pid"] in ids)


def test_limit_per_trial_on_grid_and_cuhk03(tmp_path):
    tiny_grid = grid_adapter.tiny_copy(tmp_path / "grid")
    grid_root, params = tiny_grid.root, tiny_grid.options
    grid = _eval_rows(get_adapter("grid").parse(grid_root, **params))
    limited = limit_manifest(grid, 2)
    _check_protocol(grid, limited, 2)
    assert sorted(set(limited.column("trial").to_pylist())) == [0, 1, 2]  # every trial keeps queries
    # a distractor is kept in every trial or in none
    kept = [{r["path"] for r in limited.to_pylist() if r["pid"] == 0 and r["trial"] == t} for t in range(3)]
    assert kept[0] == kept[1] == kept[2]
    tiny_cuhk = cuhk03.tiny_copy(tmp_path / "cuhk")
    cuhk_root, options = tiny_cuhk.root, tiny_cuhk.options
    cuhk = _eval_rows(get_adapter("cuhk03").parse(cuhk_root, **options))
    _check_protocol(cuhk, limit_manifest(cuhk, 2), 2)


def test_a_limited_cell_is_recorded_and_never_kept_by_a_full_run(tmp_path):
    store = RunStore.open(tmp_path / "run")
    rows = _synthetic_table(tmp_path)
    full = planning.load_images(market_dataset("d", tmp_path), lambda spec: rows)
    limited = planning.load_images(market_dataset("d", tmp_path), lambda spec: rows, limit=99)
    assert limited.hash == full.hash and limited.limit == 99  # the limit kept every row...
    model = dummy_model("m")
    spec = matrix([model], [full.spec])
    key = planning.cell_key(model, limited)
    assert key != planning.cell_key(model, full)  # ...yet the cells differ
    table = embedding_table(limited.manifest, np.ones((limited.manifest.num_rows, 2), np.float32))
    store.write_embeddings("d", "m", table, CellMarker(key, "m", "d", model.spec_hash(), limited.hash, 2, table.num_rows))
    job = job_for(planning.Cell(model, limited, planning.EVALUATE, key), spec.eval)
    store.write_result(result_record(job, spec.eval, Scored(Scores(0.5, 0.4, (0.5,), 2, 2, 3))))
    stored = store.read_result("d", "m")
    assert stored.limit == 99 and stored.random_weights is False and stored.to_json()["limit"] == 99
    assert CellResult.from_json(stored.to_json()).limit == 99
    assert planning.plan_cells(spec, {"d": limited}, store, False)[0].state == "done"
    assert planning.plan_cells(spec, {"d": full}, store, False)[0].state == "embed"
    random = planning.plan_cells(spec, {"d": limited}, store, False, random_weights=True)[0]
    assert random.state == "embed" and random.key.endswith("-random") and random.random_weights


@needs_fixtures
@pytest.mark.slow
def test_run_limit_random_weights_end_to_end_then_a_full_run_recomputes(ray_local, tmp_path):
    """`raybench run --limit 3 --random-weights` on the real fixture with a catalog model:
    the result says so, the report marks it, and a run without the options recomputes it."""
    import json

    from click.testing import CliRunner

    from raybench.commands.run import run
    from raybench.report.build import build_report

    path = tmp_path / "m.yaml"
    path.write_text(json.dumps({
        "name": "limited", "models": [{"name": "osnet-x0_25-market", "batch_size": 16}],
        "datasets": [{"name": "mkt", "adapter": "market1501", "root": str(MARKET_MINI)}], "eval": {"max_rank": 5},
    }))
    out = tmp_path / "o"
    result = out / "results" / "mkt" / "osnet-x0_25-market.json"
    res = CliRunner().invoke(run, ["--matrix", str(path), "--out", str(out), "--limit", "3", "--random-weights"])
    assert res.exit_code == 0, res.output
    assert "limited (3 ids), random weights" in res.output
    limited = json.loads(result.read_text())
    full = _eval_rows(get_adapter("market1501").parse(MARKET_MINI))
    counts = limit_counts(limit_manifest(full, 3))
    assert limited["limit"] == 3 and limited["random_weights"] is True
    assert limited["num_query"] == counts["query"] and limited["num_gallery"] == counts["gallery"]
    report = (build_report(out).out / "results.md").read_text()
    assert "**Rehearsal**" in report and "(limited, random weights)" in report
    # Without --limit: the cell is embedded again, over every image, and no longer limited.
    res = CliRunner().invoke(run, ["--matrix", str(path), "--out", str(out), "--random-weights"])
    assert res.exit_code == 0, res.output
    again = json.loads(result.read_text())
    assert again["limit"] is None and again["random_weights"] is True
    assert again["num_query"] == limit_counts(full)["query"] > limited["num_query"]
    assert again["cell_key"] != limited["cell_key"]
