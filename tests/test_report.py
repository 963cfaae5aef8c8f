"""`raybench report` on a small run directory built by hand: every file, and files that read well.

The run follows the result-JSON contract and the run-directory layout: three models x two
datasets, one failed cell, one dataset scored over two trials, tiny JPEG images, and an
embeddings Parquet per cell.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from raybench.cli import cli

MODELS = {  # name -> (paradigm, options)
    "osnet-tiny-alpha": ("supervised", {"trained_on": "alpha"}),
    "clip-fake": ("language-aligned", {}),
    "color-hist": ("baseline", {}),
}
DATASETS = {"alpha": 1, "beta": 2}  # name -> trials
FAILED = ("clip-fake", "beta", "CUDA out of memory while embedding beta; lower batch_size")
N_PIDS, DIM = 6, 8


def _images(root: Path, dataset: str) -> list[dict]:
    """Person-like tiny JPEGs: one query (camera 0) and two gallery images (cameras 1, 2) per id,
    plus a distractor (pid 0); the colour encodes the identity."""
    from PIL import Image

    rows = []
    folder = root / "data" / dataset
    folder.mkdir(parents=True)
    for pid in range(N_PIDS + 1):
        for cam, split in ((0, "query"), (1, "gallery"), (2, "gallery")):
            if pid == 0 and split == "query":
                continue
            path = folder / f"{pid:04d}_c{cam + 1}_{split}.jpg"
            colour = (40 * pid % 256, 255 - 30 * pid, 60 + 20 * cam)
            Image.new("RGB", (32, 64), colour).save(path, quality=90)
            rows.append({"path": str(path), "pid": pid, "camid": cam, "split": split})
    return rows


def _write_embeddings(run: Path, dataset: str, model: str, rows: list[dict], trials: int, seed: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_PIDS + 1, DIM))
    table_rows = [dict(r, trial=t) for t in range(trials) for r in rows]
    emb = np.stack([centres[r["pid"]] + 0.8 * rng.normal(size=DIM) for r in table_rows]).astype(np.float32)
    columns = {
        "path": pa.array([r["path"] for r in table_rows], pa.string()),
        "pid": pa.array([r["pid"] for r in table_rows], pa.int32()),
        "camid": pa.array([r["camid"] for r in table_rows], pa.int32()),
        "split": pa.array([r["split"] for r in table_rows], pa.string()),
    }
    if trials > 1:
        columns["trial"] = pa.array([r["trial"] for r in table_rows], pa.int16())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), DIM)
    folder = run / "embeddings" / dataset / model
    folder.mkdir(parents=True)
    pq.write_table(pa.table(columns), folder / "part-00000.parquet")
    (folder / "_SUCCESS").write_text("")


def _result(model: str, dataset: str, trials: int, queries: list[dict], seed: int) -> dict:
    """A result JSON per the contract, with per-query numbers drawn at random."""
    paradigm = MODELS[model][0]
    base = {"model": model, "dataset": dataset, "paradigm": paradigm, "spec_hash": f"h-{model}",
            "num_params": 1000, "seconds": 1.5, "embed_seconds": 1.0, "eval_seconds": 0.5,
            "skipped_images": [],
            "protocol": {"camera_filter": True, "cuhk03_metric": False, "trials": trials,
                         "distance": "euclidean", "normalize": True, "rerank": False, "max_rank": 50}}
    if (model, dataset) == FAILED[:2]:
        return {**base, "status": "failed", "error": FAILED[2], "mAP": None, "mINP": None, "cmc": None,
                "trials": [], "spread": None, "per_query": None}
    rng = np.random.default_rng(seed)
    per_query = {"trial": [], "query": [], "path": [], "ap": [], "inp": [], "first_match": []}
    trial_rows = []
    for t in range(trials):
        first = rng.integers(1, 4, size=len(queries))
        ap = np.clip(1.0 / first + rng.normal(0, 0.05, size=len(queries)), 0.05, 1.0)
        per_query["trial"] += [t] * len(queries)
        per_query["query"] += list(range(len(queries)))
        per_query["path"] += [q["path"] for q in queries]
        per_query["ap"] += ap.tolist()
        per_query["inp"] += (ap * 0.8).tolist()
        per_query["first_match"] += first.tolist()
        cmc = [float(np.mean(first <= k)) for k in range(1, 2 * N_PIDS + 2)]
        trial_rows.append({"trial": t, "mAP": float(ap.mean()), "mINP": float(ap.mean() * 0.8), "cmc": cmc,
                           "num_query": len(queries), "num_valid_query": len(queries),
                           "num_gallery": 2 * N_PIDS + 2})
    cmc = np.mean([t["cmc"] for t in trial_rows], axis=0).tolist()
    maps = [t["mAP"] for t in trial_rows]
    spread = {"mAP_std": float(np.std(maps)), "rank1_std": float(np.std([t["cmc"][0] for t in trial_rows]))}
    return {**base, "status": "ok", "error": None, "mAP": float(np.mean(maps)),
            "mINP": float(np.mean([t["mINP"] for t in trial_rows])), "cmc": cmc,
            "num_query": len(queries), "num_valid_query": len(queries), "num_gallery": 2 * N_PIDS + 2,
            "trials": trial_rows, "spread": spread if trials > 1 else None, "per_query": per_query}


def make_run(root: Path) -> Path:
    """A stored run: run.json, embeddings and results for every cell but the failed one's embeddings."""
    run = root / "run"
    (run / "results").mkdir(parents=True)
    models = [{"name": m, "paradigm": p, "loader": "dummy", "arch": "x", "weights": None, "options": o}
              for m, (p, o) in MODELS.items()]
    (run / "run.json").write_text(json.dumps({
        "matrix": {"name": "handmade", "models": models, "datasets": [{"name": d} for d in DATASETS]},
        "git": "0123456789abcdef",
    }))
    for i, (dataset, trials) in enumerate(DATASETS.items()):
        rows = _images(root, dataset)
        queries = [r for r in rows if r["split"] == "query"]
        (run / "results" / dataset).mkdir()
        for j, model in enumerate(MODELS):
            result = _result(model, dataset, trials, queries, seed=10 * i + j)
            (run / "results" / dataset / f"{model}.json").write_text(json.dumps(result))
            if result["status"] == "ok":
                _write_embeddings(run, dataset, model, rows, trials, seed=10 * i + j)
    return run


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"))


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["report", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_json_prints_one_row_per_cell(stored_run):
    rows = json.loads(invoke(str(stored_run), "--format", "json", "--no-ranklists").stdout)
    assert len(rows) == len(MODELS) * len(DATASETS)
    by_cell = {(r["model"], r["dataset"]): r for r in rows}
    failed = by_cell[FAILED[:2]]
    assert failed["status"] == "failed" and failed["error"] == FAILED[2] and failed["mAP"] is None
    stored = json.loads((stored_run / "results" / "alpha" / "color-hist.json").read_text())
    row = by_cell[("color-hist", "alpha")]
    assert row["mAP"] == stored["mAP"] and row["mINP"] == stored["mINP"] and row["cmc"] == stored["cmc"]
    assert 0 <= row["mAP"] <= 1 and all(0 <= v <= 1 for v in row["cmc"])
    assert row["R1"] == stored["cmc"][0]
    assert row["mAP_ci_lo"] <= row["mAP"] <= row["mAP_ci_hi"]
    assert by_cell[("color-hist", "beta")]["num_trials"] == 2
