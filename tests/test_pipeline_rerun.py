"""Reruns through run_matrix: a re-score-only run, --force, --no-pixel-cache, and a reducer that
dies while scoring. Each compares with an independent computation or with a clean run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import dummy_model, make_market, market_dataset, matrix

from raybench.pipeline.driver import RunOptions, run_matrix
from raybench.rundir.store import RunStore, embedding_matrix
from raybench.specs import EvalSpec


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return make_market(tmp_path_factory.mktemp("market"))


def _two_models(market: Path, name: str):
    """Two models of one pixel geometry on one dataset: a pixel cache is built for them."""
    return matrix([dummy_model("d8", 8), dummy_model("d4", 4)], [market_dataset("mkt", market)], name=name)


def _stamps(out: Path, folder: str) -> dict:
    return {p: p.stat().st_mtime_ns for p in (out / folder).rglob("*") if p.is_file()}


def _metrics(out: Path) -> dict:
    keys = ("mAP", "mINP", "cmc", "num_query", "num_valid_query", "num_gallery")
    return {p.relative_to(out).as_posix(): {k: json.loads(p.read_text())[k] for k in keys}
            for p in sorted((out / "results").rglob("*.json"))}


def test_a_new_eval_block_rescores_from_the_stored_embeddings(ray_local, market, tmp_path):
    from raybench.eval.rank import evaluate_features

    out = tmp_path / "run"
    spec = _two_models(market, "rescore")
    first = run_matrix(spec, str(out), RunOptions(), echo=_quiet)
    embeddings = _stamps(out, "embeddings")
    raw = dataclasses.replace(spec, eval=EvalSpec(distance="euclidean", normalize=False, max_rank=10))
    again = run_matrix(raw, str(out), RunOptions(), echo=_quiet)
    assert again.ok and _stamps(out, "embeddings") == embeddings  # not embedded again
    assert {c["state"] for c in json.loads((out / "run.json").read_text())["plan"]} == {"evaluate"}
    # The new scores are those of the new eval block on the stored embeddings (computed here,
    # with the metric function alone), and they differ from the first run's.
    table = RunStore.open(out).read_embeddings("mkt", "d8")
    emb, split = embedding_matrix(table), table.column("split").to_numpy(zero_copy_only=False)
    pid, cam = table.column("pid").to_numpy(), table.column("camid").to_numpy()
    q, g = split == "query", split == "gallery"
    expected = evaluate_features(emb[q], emb[g], pid[q], pid[g], cam[q], cam[g], max_rank=10,
                                 distance="euclidean", normalize=False, device="cpu")
    result = json.loads((out / "results/mkt/d8.json").read_text())
    assert result["mAP"] == pytest.approx(expected.mAP) and result["protocol"]["normalize"] is False
    np.testing.assert_allclose(result["cmc"], expected.cmc)
    before = {r["model"]: r["mAP"] for r in first.rows}
    assert {r["model"]: r["mAP"] for r in again.rows} != before


def test_force_reembeds_and_no_pixel_cache_decodes_per_model(ray_local, market, tmp_path, monkeypatch):
    cached = tmp_path / "cached"
    run_matrix(_two_models(market, "cache"), str(cached), RunOptions(), echo=_quiet)
    assert (cached / "cache/pixels/mkt/32x16-bilinear-squash/_SUCCESS").is_file()

    # Decoding per model, and on a cluster the run joined (as if RAY_ADDRESS were set), where a
    # local --out not declared shared is written by the driver: the same embeddings.
    from raybench import ray_runtime

    monkeypatch.setattr(ray_runtime, "joins_cluster", lambda: True)
    plain, lines = tmp_path / "plain", []
    run_matrix(_two_models(market, "nocache"), str(plain), RunOptions(pixel_cache=False), echo=lines.append)
    monkeypatch.undo()
    assert not (plain / "cache").exists()
    assert json.loads((plain / "run.json").read_text())["pool"]["writes"] == "driver"
    assert json.loads((cached / "run.json").read_text())["pool"]["writes"] == "workers"
    assert [line for line in lines if line.startswith(f"embeddings are written by the driver: --out {plain} is a local")]
    for model in ("d8", "d4"):
        assert RunStore.open(plain).read_embeddings("mkt", model).equals(RunStore.open(cached).read_embeddings("mkt", model))
    assert _metrics(plain) == _metrics(cached)  # decoding per model gives the same numbers

    embeddings, caches = _stamps(cached, "embeddings"), _stamps(cached, "cache")
    forced = run_matrix(_two_models(market, "cache"), str(cached), RunOptions(force=True), echo=_quiet)
    assert forced.ok
    assert {c["state"] for c in json.loads((cached / "run.json").read_text())["plan"]} == {"embed"}
    now = _stamps(cached, "embeddings")
    assert all(now[p] != t for p, t in embeddings.items() if p.name == "_SUCCESS")  # every cell again
    assert all(_stamps(cached, "cache")[p] != t for p, t in caches.items() if p.name == "_SUCCESS")
    assert _metrics(cached) == _metrics(plain)


def test_a_reducer_that_dies_while_scoring_fails_only_that_cell(ray_local, market, tmp_path):
    """The reducer process dies whenever it scores one cell: Ray restarts it; the other cell,
    whose call died with the process, is scored again and is ok; the crashing cell is recorded
    as failed ("scoring crashed") after its second try; the driver's table keeps every cell; a
    rerun scores the cell from its stored embeddings, equal to a run without the crash."""
    import ray
    import ray.cloudpickle

    import crashing_reducer
    from raybench.pipeline import plan, reducer
    from raybench.pipeline.tracker import Tracker
    from raybench.pipeline.progress import Progress

    out = tmp_path / "run"
    spec = matrix([dummy_model("d8", 8)], [market_dataset("mkt", market), market_dataset("mkt2", market)])
    clean = run_matrix(spec, str(out), RunOptions(), echo=_quiet)
    expected = _metrics(out)
    for dataset in ("mkt", "mkt2"):
        (out / "results" / dataset / "d8.json").unlink()

    store = RunStore.open(out)
    from raybench.datasets import load_manifest

    data = {d.name: plan.load_images(d, load_manifest) for d in spec.datasets}
    cells = plan.plan_cells(spec, data, store, force=False)
    assert [c.state for c in cells] == ["evaluate", "evaluate"]
    ray.cloudpickle.register_pickle_by_value(crashing_reducer)
    marker = tmp_path / "crashed"
    actor = ray.remote(crashing_reducer.CrashOnce).options(max_restarts=-1, max_task_retries=0).remote(
        store, spec.eval, "crash", str(marker), "mkt")
    lines: list[str] = []
    tracker = Tracker(actor, Progress(2, 0, 0, echo=lines.append))
    for cell in cells:
        tracker.evaluate(reducer.job_for(cell, spec.eval))
    rows = tracker.wait_all()
    assert marker.exists(), "the reducer never died: the test proves nothing"
    status = {r["dataset"]: (r["status"], r["error"]) for r in rows}
    assert status["mkt2"] == ("ok", None)
    assert status["mkt"][0] == "failed" and status["mkt"][1].startswith("scoring crashed")
    failed = json.loads((out / "results/mkt/d8.json").read_text())
    assert failed["error_kind"] == "scoring" and failed["mAP"] is None
    ray.kill(actor)

    rerun = run_matrix(spec, str(out), RunOptions(), echo=_quiet)
    assert rerun.ok and _metrics(out) == expected
    assert [r["mAP"] for r in rerun.rows] == [r["mAP"] for r in clean.rows]
