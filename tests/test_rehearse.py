"""`raybench rehearse`: a real catalog model end to end (random weights, synthetic crops,
the Ray pipeline), every JSON field, the ratio from the same run's two rates, failures named."""

from __future__ import annotations

import json

import pytest

from raybench.bench.rehearse import FIELDS, eval_images
from raybench.catalog import load_dataset_catalog, load_model_catalog


def test_published_image_counts_per_cell():
    catalog = load_dataset_catalog()
    assert eval_images(catalog["market1501"]) == (3368 + 15913, "query + gallery")
    assert eval_images(catalog["last-test"]) == (135529, "eval_images")
    assert eval_images(catalog["grid"]) == (1275, "all images (upper bound)")  # 10 trials


@pytest.mark.slow
def test_rehearse_runs_a_catalog_model_end_to_end_and_names_a_failure(ray_local, tmp_path):
    from click.testing import CliRunner

    from raybench.commands.rehearse import rehearse

    matrix = tmp_path / "m.yaml"
    matrix.write_text(json.dumps({
        "name": "rehearse-test",
        "models": ["osnet-x0_25-market",
                   {"name": "hf-unstated", "loader": "hf", "arch": "facebook/dinov2-small", "paradigm": "baseline"}],
        "datasets": ["market1501", "grid"],
    }))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(rehearse, ["--matrix", str(matrix), "--limit", "2", "--batch-size", "8",
                                        "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 1, res.output  # one model cannot be rehearsed
    assert "FAILED hf-unstated" in res.output and "osnet-x0_25-market" in res.output
    record = json.loads(out.read_text())
    assert {"device", "cpus", "gpus", "models", "estimate_seconds", "cells"} <= set(record)
    assert record["device"] == "cpu" and record["cpus"] == 2 and record["gpus"] == 0
    ok, bad = record["models"]
    assert set(FIELDS) <= set(ok) and set(FIELDS) <= set(bad)
    assert bad["status"] == "failed" and "preprocess" in bad["error"] and bad["ratio"] is None
    assert ok["status"] == "ok" and ok["error"] is None
    assert ok["params"] == load_model_catalog()["osnet-x0_25-market"].options["params"]
    assert ok["build_seconds"] > 0 and ok["peak_host_bytes"] > 100e6 and ok["peak_gpu_bytes"] is None
    assert ok["ceiling_images_per_s"] > 0 and ok["pipeline_images_per_s"] > 0
    assert ok["ratio"] == ok["pipeline_images_per_s"] / ok["ceiling_images_per_s"]
    # The estimate: the failed model has no rate, so the total is partial; the ok model's cells
    # are its published image counts over its pipeline rate, its start on the first.
    assert record["estimate_seconds"] is None
    market, grid = [c for c in record["cells"] if c["model"] == "osnet-x0_25-market"]
    rate = ok["pipeline_images_per_s"]
    assert market["seconds"] == pytest.approx(19281 / rate + ok["start_seconds"])
    assert grid["seconds"] == pytest.approx(1275 / rate)
    assert record["estimate_partial_seconds"] == pytest.approx(market["seconds"] + grid["seconds"])


def test_the_driver_benchmark_commits_every_cell_it_is_fed(tmp_path):
    """`bench driver`'s two sides are the run's own writing, filing and commit: every embedding
    lands in its cell, in manifest order, whatever order the batches arrive in, whether the
    driver writes the parts or the tasks that emit the embeddings do."""
    import numpy as np

    from raybench.bench import driver
    from raybench.pipeline.parts import Parts
    from raybench.rundir.store import RunStore, embedding_matrix

    cells = driver._cells(3, 40)
    for driver_writes in (True, False):
        store = RunStore.open(tmp_path / f"driver-writes-{driver_writes}")
        parts = Parts.open(store, cells)
        batches = [driver._emit({"id": np.arange(start, start + 60)}, 40, 16, None if driver_writes else parts)
                   for start in (60, 0)]
        assert ("embedding" in batches[0]) == driver_writes
        assert driver.collect_and_commit(batches, cells, parts, driver_writes)[0] == 120
        for c in range(3):  # the embedding of global id i is row i % 60 of the batch's noise
            stored = embedding_matrix(store.read_embeddings(f"zero{c}", "zero"))
            assert np.array_equal(stored, driver._noise(60, 16)[(np.arange(40) + 40 * c) % 60])
