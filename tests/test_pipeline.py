"""The whole pipeline on local Ray with the dummy embedder: store, results, resume, faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_helpers import (
    MISSING, RESULT_FIELDS, custom_dataset, dummy_model, make_market, market_dataset, matrix, model_forward,
)

from raybench.pipeline.driver import RunOptions, run_matrix
from raybench.rundir.store import SUCCESS, RunStore, embedding_matrix, embedding_schema


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return make_market(tmp_path_factory.mktemp("market"))


def _result(out: Path, dataset: str, model: str) -> dict:
    return json.loads((out / "results" / dataset / f"{model}.json").read_text())


def test_whole_pipeline_then_resume_recomputes_nothing(ray_local, market, tmp_path):
    # Two models with one geometry (one decode for both, via the pixel cache), two datasets.
    spec = matrix([dummy_model("d8", 8), dummy_model("d4", 4)],
                  [market_dataset("mkt-a", market), market_dataset("mkt-b", market)], name="whole")
    out = tmp_path / "run"
    summary = run_matrix(spec, str(out), RunOptions(), echo=_quiet)
    assert summary.ok and len(summary.rows) == 4

    # The reducer and the embedding actors carry the run's name (and the model's).
    names = _actor_names()
    assert any(n.startswith("raybench-reducer:whole:") for n in names), names
    assert {"MapWorker(MapBatches(EmbedWorker_whole_d8))", "MapWorker(MapBatches(EmbedWorker_whole_d4))"} <= names

    result = _result(out, "mkt-a", "d8")
    assert set(result) == RESULT_FIELDS and result["status"] == "ok" and result["error"] is None
    assert 0 < result["mAP"] <= 1 and all(0 <= c <= 1 for c in result["cmc"])
    assert result["num_query"] == 6 and result["num_gallery"] == 18 and result["paradigm"] == "baseline"

    # Embeddings: written by the workers as parts (three batches of 8), read back with the
    # declared schema, rows mirroring query + gallery.
    marker = RunStore.open(out).cell_marker("mkt-a", "d8")
    assert len([name for name in marker.files if name.startswith("part-")]) == 3
    table = RunStore.open(out).read_embeddings("mkt-a", "d8")
    assert table.schema.equals(embedding_schema(8)) and table.num_rows == 24
    assert set(table.column("split").to_pylist()) == {"query", "gallery"}
    assert (out / "cache/pixels/mkt-a/32x16-bilinear-squash/_SUCCESS").exists()

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["summary"] == {"cells": 4, "ok": 4, "failed": 0}
    assert run["versions"]["ray"] and "commit" in run["git"] and run["matrix"]["name"] == "whole"
    assert run["pool"]["writes"] == "workers"

    # Rerun: every cell is reused; nothing is written again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "run.json"}
    again = run_matrix(spec, str(out), RunOptions(), echo=_quiet)
    def metrics(rows):
        return [{k: v for k, v in r.items() if k != "this_run"} for r in rows]

    assert again.ok and metrics(again.rows) == metrics(summary.rows)
    assert {r["this_run"] for r in again.rows} == {"kept"} and {r["this_run"] for r in summary.rows} == {"scored"}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert {c["state"] for c in json.loads((out / "run.json").read_text())["plan"]} == {"done"}


def _actor_names() -> set[str]:
    """Names and class names of this Ray's actors, dead ones included: the GCS actor table that
    `ray list actors` (ray.util.state.list_actors) shows through the dashboard, which the tests'
    local Ray does not start."""
    from ray._private import state

    return {a[key] for a in state.actors().values() for key in ("Name", "ActorClassName") if a[key]}


def test_an_actor_that_dies_once_still_completes_its_cell(ray_local, market, tmp_path):
    marker = tmp_path / "died"
    spec = matrix([dummy_model("crashy", fail_once=str(marker))], [market_dataset("mkt", market)])
    summary = run_matrix(spec, str(tmp_path / "run"), RunOptions(), echo=_quiet)
    assert marker.exists(), "the embedder never died: the test proves nothing"
    assert summary.ok
    assert RunStore.open(tmp_path / "run").read_embeddings("mkt", "crashy").num_rows == 24


def test_bad_images_and_missing_datasets_fail_only_their_cells(ray_local, market, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(market, broken)
    bad = sorted((broken / "bounding_box_test").glob("*.jpg"))[0]
    bad.write_bytes(b"not a jpeg")
    missing = str(broken / "bounding_box_test" / MISSING)  # listed by the manifest, not on disk
    datasets = [market_dataset("good", market), custom_dataset("broken", broken, "BROKEN_ADAPTER"),
                market_dataset("absent", tmp_path / "nowhere"),
                custom_dataset("trials", market, "TRIALS_ADAPTER", trials=2)]
    out = f"file://{tmp_path}/run"  # a pyarrow filesystem URI, not a plain path
    summary = run_matrix(matrix([dummy_model("d")], datasets), out, RunOptions(), echo=_quiet)
    status = {r["dataset"]: r["status"] for r in summary.rows}
    assert status == {"good": "ok", "broken": "failed", "absent": "failed", "trials": "ok"} and not summary.ok
    # Two trials: the store mirrors the manifest (rows repeated per trial), each image embedded once.
    trials = RunStore.open(tmp_path / "run").read_embeddings("trials", "d")
    assert trials.num_rows == 48 and trials.schema.equals(embedding_schema(8, ["trial"]))
    assert json.loads((tmp_path / "run/embeddings/trials/d/_SUCCESS").read_text())["rows"] == 48
    assert len(_result(tmp_path / "run", "trials", "d")["trials"]) == 2
    failed = _result(tmp_path / "run", "broken", "d")
    assert str(bad) in failed["error"] and missing in failed["error"] and "file not found" in failed["error"]
    assert failed["mAP"] is None and set(failed) == RESULT_FIELDS
    assert "nowhere" in _result(tmp_path / "run", "absent", "d")["error"]

    # on_bad_image: skip scores the cell without the bad image and lists it. Two models of one
    # geometry: the dataset is decoded once, into a pixel cache that records the bad images.
    models = [dummy_model("d"), dummy_model("d4", 4)]
    skip = run_matrix(matrix(models, datasets[1:2], on_bad_image="skip"), str(tmp_path / "skip"),
                      RunOptions(), echo=_quiet)
    assert skip.ok
    result = _result(tmp_path / "skip", "broken", "d")
    assert sorted(result["skipped_images"]) == sorted([str(bad), missing])
    assert result["num_gallery"] == 17  # 18 + the missing row - 2 skipped
    table = RunStore.open(tmp_path / "skip").read_embeddings("broken", "d")
    assert not {str(bad), missing} & set(table.column("path").to_pylist())
    cache = tmp_path / "skip/cache/pixels/broken/32x16-bilinear-squash/_SUCCESS"
    assert json.loads(cache.read_text())["bad_images"] == 2

    # The user fixes the corrupt image: the rerun under `fail` embeds the cell again and reads
    # the files as they are now (only the missing one is named), not the cache's old errors.
    shutil.copyfile(sorted((market / "bounding_box_test").glob("*.jpg"))[0], bad)
    rerun = run_matrix(matrix(models[:1], datasets[1:2]), str(tmp_path / "skip"), RunOptions(), echo=_quiet)
    (row,) = rerun.failed
    assert missing in row["error"] and str(bad) not in row["error"], row["error"]


def test_run_command_prints_the_table_and_exits_nonzero_on_failure(ray_local, market, tmp_path):
    from click.testing import CliRunner

    from raybench.commands.run import run

    path = tmp_path / "m.yaml"
    path.write_text(json.dumps({
        "name": "cli", "description": "two cells, one without data",
        "models": [{"name": "d", "loader": "dummy", "arch": "rp", "paradigm": "baseline",
                    "preprocess": {"size": [32, 16]}, "options": {"dim": 4}}],
        "datasets": [{"name": "mkt", "adapter": "market1501", "root": str(market)},
                     {"name": "gone", "adapter": "market1501", "root": str(tmp_path / "gone")}],
        "eval": {"max_rank": 5},
    }))
    res = CliRunner().invoke(run, ["--matrix", str(path), "--out", str(tmp_path / "o"), "--datasets", "mkt,gone"])
    assert res.exit_code == 1, res.output
    assert "mkt" in res.output and "FAILED gone x d" in res.output
    assert res.output.count("no GPU in this Ray cluster") == 1  # the session's Ray has none: said once
    res = CliRunner().invoke(run, ["--matrix", str(path), "--out", str(tmp_path / "o"), "--datasets", "mkt"])
    assert res.exit_code == 0, res.output
    row = next(line.split() for line in res.output.splitlines() if line.startswith("mkt "))
    assert row[3] == "kept"  # finished by the first run: kept, not scored again
    assert float(row[4]) == round(100 * _result(tmp_path / "o", "mkt", "d")["mAP"], 2)


@pytest.mark.gpu
def test_smoke_matrix_embeds_on_the_gpu(ray_local, tmp_path):
    """Local single-GPU mode: with a GPU in the cluster, one actor per GPU, each holding one."""
    from raybench.catalog import load_matrix

    lines: list[str] = []
    summary = run_matrix(load_matrix("smoke"), str(tmp_path / "run"), RunOptions(), echo=lines.append)
    assert summary.ok, summary.failed
    assert not [line for line in lines if "no GPU" in line]
    pool = json.loads((tmp_path / "run/run.json").read_text())["pool"]
    assert pool["gpus"] == 1 and pool["actors"] == int(ray_local.cluster_resources()["GPU"])
    for row in summary.rows:
        assert _result(tmp_path / "run", row["dataset"], row["model"])["device"].startswith("cuda")


def test_bench_embed_times_both_sides_on_the_same_images(ray_local, market, tmp_path, monkeypatch):
    from raybench.bench import embed as bench

    paths = sorted(str(p) for p in market.rglob("*.jpg"))
    monkeypatch.setattr(bench, "bench_images", lambda: paths)
    record = bench.run("dummy", images=None, batch_size=8, repeat=1)
    assert record["images"] == len(paths) and record["batch_size"] == 8
    # the ratio is the two rates measured in this run, each the images over the side's own time
    assert record["ratio_without_startup"] == pytest.approx(
        record["ray"]["images_per_s_steady"] / record["plain"]["images_per_s_steady"])
    assert record["ray"]["init_seconds"] is None  # Ray was up
    assert record["paired"]["ratio_without_startup"] == [record["ratio_without_startup"]]
    assert record["target"]["ratio_without_startup"] == 1.0 and "met" in record["target"]
    from raybench.bench import write_json

    out = write_json(record, tmp_path / "embed.json")
    assert json.loads(out.read_text())["model"] == "dummy-untrained"


def _seen_before_cleanup(monkeypatch) -> dict:
    """(dataset, model) -> the files of the cell's folder when the run drops its uncommitted
    attempts (RunStore.drop_uncommitted, on the driver), filled in as the run goes."""
    seen, drop = {}, RunStore.drop_uncommitted

    def recording(store, dataset, model, marker=None):
        seen[(dataset, model)] = store.list_files(store.embeddings_dir(dataset, model))
        drop(store, dataset, model, marker)

    monkeypatch.setattr(RunStore, "drop_uncommitted", recording)
    return seen


def test_a_cell_the_model_cannot_embed_fails_alone(ray_local, market, tmp_path, monkeypatch):
    """A batch that fails to embed fails its own cell; the model's cells after it still run.
    A model that fails to load fails all its cells, with the load error, in one go."""
    import shutil

    import numpy as np
    from PIL import Image

    dark = tmp_path / "dark"
    shutil.copytree(market, dark)
    black = sorted((dark / "bounding_box_test").glob("*.jpg"))[-1]
    original = black.read_bytes()
    Image.fromarray(np.zeros((64, 32, 3), np.uint8)).save(black)
    datasets = [market_dataset("a", market), market_dataset("dark", dark), market_dataset("b", market)]
    from raybench.specs import parse_model

    missing = tmp_path / "missing.pth"
    nowhere = parse_model({"name": "nowhere", "loader": "torchreid", "arch": "osnet_x0_25", "weights": str(missing),
                           "paradigm": "supervised"}, "test model nowhere")
    models = [dummy_model("picky", fail_on_black=True), dummy_model("unloadable", dim="eight"), nowhere]
    seen = _seen_before_cleanup(monkeypatch)
    summary = run_matrix(matrix(models, datasets), str(tmp_path / "run"), RunOptions(), echo=_quiet)
    monkeypatch.undo()
    status = {(r["model"], r["dataset"]): r["status"] for r in summary.rows}
    assert status == {("picky", "a"): "ok", ("picky", "dark"): "failed", ("picky", "b"): "ok",
                      **{(m, d): "failed" for m in ("unloadable", "nowhere") for d in ("a", "dark", "b")}}, status
    assert "fail_on_black" in _result(tmp_path / "run", "dark", "picky")["error"]
    for name in ("a", "dark", "b"):
        assert "unloadable failed to load" in _result(tmp_path / "run", name, "unloadable")["error"]
        assert _result(tmp_path / "run", name, "nowhere")["error"] == (
            f"model nowhere failed to load: weights file {missing} does not exist")  # named once
    assert _result(tmp_path / "run", "b", "picky")["mAP"] == _result(tmp_path / "run", "a", "picky")["mAP"]

    # The workers wrote the failed cell's batches before the black one: those parts, in the
    # failed attempt's folder, were never committed, and the run deleted them as it ended.
    # Once the image is fixed, a rerun commits the cell from its own attempt only.
    cell = tmp_path / "run/embeddings/dark/picky"
    written = [f for f in seen[("dark", "picky")] if "/attempt-" in f and "/part-" in f]
    assert written, "no part before the failing batch: the test proves nothing"
    assert not (cell / "_SUCCESS").exists() and not list(cell.iterdir())
    black.write_bytes(original)  # decoded afresh: the run's pixel cache holds the black image
    assert run_matrix(matrix(models[:1], datasets[1:2]), str(tmp_path / "run"), RunOptions(pixel_cache=False),
                      echo=_quiet).ok
    store = RunStore.open(tmp_path / "run")
    marker = store.cell_marker("dark", "picky")
    assert sorted(p.name for p in cell.rglob("*")) == sorted([SUCCESS, marker.attempt, *marker.files])
    assert not {f.rsplit("/", 1)[1] for f in written} & set(marker.files)
    table = store.read_embeddings("dark", "picky")
    np.testing.assert_allclose(embedding_matrix(table), model_forward(models[0], table.column("path").to_pylist()),
                               rtol=1e-5, atol=1e-6)


def test_empty_and_oversize_images_are_named_where_people_look(ray_local, market, tmp_path):
    """A zero-byte crop is skipped as "empty file (0 bytes)" and counted under the table; a
    full-size frame among the crops gets a warning naming it before anything is embedded."""
    import shutil

    import numpy as np
    from PIL import Image

    from raybench.commands.run import closing_lines

    copy = tmp_path / "mine"
    shutil.copytree(market, copy)
    gallery = sorted((copy / "bounding_box_test").glob("*.jpg"))
    empty, frame = gallery[0], gallery[1]
    empty.write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(frame, format="PNG")  # ~3.6 MB among crops of a few hundred bytes
    lines: list[str] = []
    data = market_dataset("mine", copy)
    summary = run_matrix(matrix([dummy_model("d")], [data], on_bad_image="skip"), str(tmp_path / "run"),
                         RunOptions(), echo=lines.append)
    assert summary.ok
    warnings = [line for line in lines if line.startswith("warning: mine:")]
    assert len(warnings) == 1 and "1 image(s) far larger than its usual crops" in warnings[0]
    assert str(frame) in warnings[0] and str(empty) not in warnings[0]
    assert _result(tmp_path / "run", "mine", "d")["skipped_images"] == [str(empty)]
    closing = closing_lines(summary)
    assert closing[0] == "1 image could not be read and was skipped (on_bad_image: skip):"
    assert closing[1] == f"  mine x d: 1 skipped image(s): {empty}"

    failed = run_matrix(matrix([dummy_model("d")], [data]), str(tmp_path / "fail"), RunOptions(), echo=_quiet)
    (row,) = failed.failed
    assert f"cannot read image {empty}: empty file (0 bytes)" in row["error"]


def test_progress_counts_the_cells_an_earlier_run_finished(ray_local, market, tmp_path):
    """After "2 cells: 1 kept, 1 to run (0 to re-score)", the cell this run scores is the second of two: the
    kept one counts as done ("[2/2]", not "[1/2]"), in the lines and the progress count."""
    d8 = dummy_model("d8", 8)
    both = matrix([d8], [market_dataset("mkt-a", market), market_dataset("mkt-b", market)], name="kept")
    out = str(tmp_path / "run")
    run_matrix(both.select(None, ["mkt-a"]), out, RunOptions(), echo=_quiet)
    lines: list[str] = []
    summary = run_matrix(both, out, RunOptions(), echo=lines.append)
    assert summary.ok and [r["this_run"] for r in summary.rows] == ["kept", "scored"]
    assert "2 cells: 1 kept, 1 to run (0 to re-score)" in lines
    [done] = [line for line in lines if line.startswith("[")]
    assert done.startswith("[2/2] done   mkt-b x d8: mAP ")
