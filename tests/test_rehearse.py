"""`raybench rehearse`: a real catalog model end to end (random weights, synthetic crops,
the Ray pipeline), every JSON field, the ratio from the same batches' two measures, failures
named; the smoke matrix from the command line (a numpy model, synthetic datasets, the default
output folder, a quiet console, SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from raybench.bench.rehearse import FIELDS, eval_images
from raybench.catalog import load_dataset_catalog, load_model_catalog

REPO = Path(__file__).resolve().parent.parent


def test_published_image_counts_per_cell():
    catalog = load_dataset_catalog()
    assert eval_images(catalog["market1501"]) == (3368 + 15913, "query + gallery")
    assert eval_images(catalog["last-test"]) == (135529, "eval_images")
    assert eval_images(catalog["grid"]) == (1275, "all images (upper bound)")  # 10 trials
    # generated: the count is known (74 queries + 142 gallery images, as a run of smoke scores)
    assert eval_images(catalog["synth-a"]) == (216, "generated (query + gallery)")


def test_the_ratio_is_the_pipelines_pace_over_the_models_own_on_the_same_batches():
    """Both rates come from the same actors' same batches, each actor's first left out: the
    pipeline's from the time between its batches' ends, the model's from the time spent in the
    model's own embed. A batch's embed happens between the previous batch's end and its own
    end, so the ratio never exceeds 1. Two actors here (a GPU pool), with made-up clocks."""
    from raybench.bench.rehearse import steady_rates

    calls = [  # (actor, end of the batch, seconds in the model, images)
        ("a", 100.0, 5.0, 8), ("a", 102.0, 1.0, 8), ("a", 104.0, 2.0, 8), ("a", 107.0, 2.0, 8),
        ("b", 101.0, 6.0, 8), ("b", 102.5, 1.0, 8), ("b", 104.5, 1.0, 4),
    ]
    rates = steady_rates(calls)
    # a: 24 images in 7 s of pipeline, 5 s of model; b: 12 images in 3.5 s, 2 s
    assert rates["pipeline_images_per_s"] == pytest.approx(24 / 7 + 12 / 3.5)
    assert rates["ceiling_images_per_s"] == pytest.approx(24 / 5 + 12 / 2)
    assert rates["timed_batches"] == 5 and rates["timed_images"] == 36
    assert rates["pipeline_images_per_s"] <= rates["ceiling_images_per_s"]
    assert steady_rates([("a", 100.0, 5.0, 8)]) is None  # one batch: no steady rate


def test_the_embedding_actor_times_its_model_on_each_batch():
    """The actor's columns for the rehearsal: when its batch was done and how long its model
    took, on one clock (an injected one here), and which actor process did it."""
    from raybench.models.base import small_person_preprocess
    from raybench.pipeline.embed import Pool, worker_class

    ticks = iter([10.0, 10.25, 20.0, 21.0])
    spec = load_model_catalog()["color-hist"]
    pre = small_person_preprocess(spec)
    worker = type("Clocked", (worker_class("t", spec, pre, Pool()),), {"clock": staticmethod(lambda: next(ticks))})()
    batch = {"cell": np.zeros(3, np.int16), "row": np.arange(3), "image_error": np.array(["", "", ""], object),
             "pixels": np.zeros((3, *pre.size, 3), np.uint8)}
    first, second = worker(batch), worker(batch)
    assert list(first["embedded_at"]) == [10.25] * 3 and list(first["forward_seconds"]) == [0.25] * 3
    assert list(second["embedded_at"]) == [21.0] * 3 and list(second["forward_seconds"]) == [1.0] * 3
    assert len(set(first["actor"]) | set(second["actor"])) == 1 and str(os.getpid()) in first["actor"][0]


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
    assert ok["ceiling_images_per_s"] > 0 and ok["pipeline_images_per_s"] > 0 and ok["timed_batches"] == 2
    assert ok["ratio"] == ok["pipeline_images_per_s"] / ok["ceiling_images_per_s"] and ok["ratio"] <= 1
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


def _rehearse(cwd: Path, *args: str) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "raybench", "rehearse", "--matrix", "smoke", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_the_smoke_matrix_rehearses_from_any_folder_into_that_folder(tmp_path):
    """Its numpy model (color-hist) rehearses like a torch one; synthetic datasets have a known
    image count, so the estimate is whole and holds each model's start; the record goes to the
    current folder, never into the checkout (results/bench/ holds committed records); the CPU
    default batch is small; the console holds raybench's lines only."""
    committed = {p: p.read_bytes() for p in (REPO / "results" / "bench").glob("rehearse-*.json")}
    proc = _rehearse(tmp_path, "--limit", "2")
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    record = json.loads((tmp_path / "rehearse-cpu.json").read_text())
    assert {p: p.read_bytes() for p in (REPO / "results" / "bench").glob("rehearse-*.json")} == committed
    rows = {r["model"]: r for r in record["models"]}
    assert set(rows) == {"color-hist", "osnet-x0_25-untrained"}
    for row in rows.values():
        assert row["status"] == "ok" and row["timed_batches"] == 2, row
        assert 0 < row["ratio"] <= 1 and row["start_seconds"] >= 0
    # a torch model at the CPU's small batch, the weight-free one at its own
    assert (rows["osnet-x0_25-untrained"]["batch_size"], rows["color-hist"]["batch_size"]) == (4, 64)
    assert rows["color-hist"]["params"] == 0 and rows["color-hist"]["peak_gpu_bytes"] is None
    cells = {(c["model"], c["dataset"]): c for c in record["cells"]}
    for (model, dataset), cell in cells.items():
        start = rows[model]["start_seconds"] if dataset == "synth-a" else 0.0
        assert cell["images"] == 216
        assert cell["seconds"] == pytest.approx(216 / rows[model]["pipeline_images_per_s"] + start)
    assert record["estimate_seconds"] == pytest.approx(sum(c["seconds"] for c in cells.values()))
    assert "full matrix on this hardware (4 cells" in out and "about" in out
    assert f"wrote {tmp_path / 'rehearse-cpu.json'}" in err
    assert "Warning" not in err and "WARNING" not in err and "raylet" not in err + out, err


@pytest.mark.slow
def test_sigterm_stops_a_rehearsal_cleanly(tmp_path):
    """As `raybench run`: exit 130 and one line, not a native stack dump and "Aborted" (134)."""
    proc = _rehearse(tmp_path, "--limit", "50", "--models", "osnet-x0_25-untrained")
    lines = []
    for line in proc.stderr:  # until the model's measurement has begun
        lines.append(line)
        if line.startswith("rehearse osnet-x0_25-untrained"):
            break
    time.sleep(1)  # into the child process's build, or the stream
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    err = "".join(lines) + err
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "SIGTERM received" not in err and "Aborted" not in err, err
    assert not (tmp_path / "rehearse-cpu.json").exists()
