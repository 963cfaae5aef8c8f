"""A driver killed with SIGKILL after its first finished cell; the rerun recomputes nothing
that was finished, and the results equal those of a run that was never interrupted."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline_helpers import make_market

from raybench.catalog import load_matrix
from raybench.pipeline.driver import RunOptions, run_matrix
from raybench.rundir.store import RunStore

DATASETS = ("mkt-a", "mkt-b", "mkt-c")


def _write_matrix(path: Path, market: Path) -> Path:
    # A slow dummy (a pause per batch of 8) so that the kill lands between cells.
    path.write_text(json.dumps({
        "name": "resume",
        "models": [{"name": "slow", "loader": "dummy", "arch": "rp", "paradigm": "baseline", "batch_size": 8,
                    "preprocess": {"size": [32, 16]}, "options": {"dim": 8, "sleep": 0.5}}],
        "datasets": [{"name": name, "adapter": "market1501", "root": str(market)} for name in DATASETS],
        "eval": {"max_rank": 10},
    }))
    return path


def _uncommitted_parts(out: Path) -> list[Path]:
    """Parts written into the folder of a cell that has no _SUCCESS: an attempt in progress."""
    return [p for p in out.glob("embeddings/*/*/attempt-*/part-*.parquet") if not (p.parent.parent / "_SUCCESS").exists()]


def _kill_after_first_cell(out: Path, matrix: Path, timeout: float = 240) -> None:
    """SIGKILL once a cell is committed and the workers have written a part of the next."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "raybench", "run", "--matrix", str(matrix), "--out", str(out), "--num-cpus", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not (list(out.glob("embeddings/*/*/_SUCCESS")) and _uncommitted_parts(out)):
            assert proc.poll() is None, f"the run ended before its first cell: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no cell finished in time"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def test_sigkill_then_rerun_resumes_without_recomputing(ray_local, tmp_path):
    market = make_market(tmp_path / "market")
    matrix = _write_matrix(tmp_path / "resume.yaml", market)
    out = tmp_path / "run"
    _kill_after_first_cell(out, matrix)

    finished = sorted(p.parent.parent.name for p in out.glob("embeddings/*/*/_SUCCESS"))
    assert 1 <= len(finished) < len(DATASETS), f"the kill should land between cells: {finished}"
    stamps = {p: p.stat().st_mtime_ns for d in finished for p in (out / "embeddings" / d).rglob("*")}
    interrupted = _uncommitted_parts(out)
    assert interrupted, "no part of an unfinished cell was written before the kill"
    results = {d: (out / "results" / d / "slow.json").read_text() for d in finished if (out / "results" / d).exists()}

    assert json.loads((out / "run.json").read_text())["status"] == "running"  # as the killed run left it
    spec = load_matrix(str(matrix))
    lines: list[str] = []
    summary = run_matrix(spec, str(out), RunOptions(), echo=lines.append)
    assert summary.ok
    # The killed run's lock is taken over, and the rerun says and records that it was killed.
    assert any("no longer alive" in line for line in lines), lines
    assert any("was killed" in line for line in lines), lines
    assert json.loads((out / "run.json").read_text())["previous_status"] == "killed"
    assert any(line.startswith("3 cells: ") and " kept" in line for line in lines), lines
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "finished cells were embedded again"
    for dataset, text in results.items():
        assert (out / "results" / dataset / "slow.json").read_text() == text
    # The interrupted attempt's parts are in no commit, and the rerun deleted them.
    assert not [p for p in interrupted if p.exists()]
    store = RunStore.open(out)
    for dataset in DATASETS:
        marker = store.cell_marker(dataset, "slow")
        assert not {p.name for p in interrupted} & set(marker.files)
        if dataset not in finished:  # embedded by the rerun: its folder holds its commit only
            assert sorted(p.name for p in (out / "embeddings" / dataset / "slow").rglob("*")) == \
                sorted(["_SUCCESS", marker.attempt, *marker.files])
    plan = {c["dataset"]: c["state"] for c in json.loads((out / "run.json").read_text())["plan"]}
    assert all(plan[d] in ("done", "evaluate") for d in finished)
    assert all(plan[d] == "embed" for d in DATASETS if d not in finished)

    # The uninterrupted reference, without the pause (which does not change the embeddings).
    fast = dataclasses.replace(spec.models[0], options={**spec.models[0].options, "sleep": 0})
    run_matrix(dataclasses.replace(spec, models=(fast,)), str(tmp_path / "clean"), RunOptions(), echo=lambda _: None)
    metric_keys = ("mAP", "mINP", "cmc", "num_valid_query", "per_query")
    for dataset in DATASETS:
        resumed = json.loads((out / "results" / dataset / "slow.json").read_text())
        fresh = json.loads((tmp_path / "clean/results" / dataset / "slow.json").read_text())
        assert {k: resumed[k] for k in metric_keys} == {k: fresh[k] for k in metric_keys}
