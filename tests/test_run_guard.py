"""A run you can trust: one writer per run directory, interrupts that keep finished cells, and
problems caught before Ray starts (an --out that cannot be written, missing weights or data)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import make_market

from raybench.rundir.lock import LOCK, Holder, RunLock, RunLockedError
from raybench.rundir.store import RunStore


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "raybench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_lock(store: RunStore, **fields) -> Holder:
    holder = Holder(**{"host": socket.gethostname(), "pid": os.getpid(), "run_id": "other",
                       "started": "2026-01-01T00:00:00+00:00", "heartbeat": time.time(), **fields})
    store.write_json(LOCK, holder.__dict__)
    return holder


def test_a_live_holder_refuses_and_a_dead_one_is_taken_over(tmp_path):
    store = RunStore.open(tmp_path / "run")
    lock, previous = RunLock.acquire(store, "first")
    assert previous is None and RunLock.holder_of(store).run_id == "first"
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}.*run first"):
        RunLock.acquire(store, "second")
    lock.release()
    assert not store.exists(LOCK)

    dead = _write_lock(store, pid=_dead_pid())  # same host, its process is gone
    lines = []
    lock, previous = RunLock.acquire(store, "third", echo=lines.append)
    assert previous == dead and "no longer alive" in lines[0] and f"pid {dead.pid}" in lines[0]
    lock.release()

    # Another host: alive while its heartbeat is fresh, taken over once it is stale.
    _write_lock(store, host="elsewhere", pid=1)
    with pytest.raises(RunLockedError, match="host elsewhere"):
        RunLock.acquire(store, "fourth")
    store.fs.delete_file(store.path(LOCK))
    _write_lock(store, host="elsewhere", pid=1, heartbeat=time.time() - 3600)
    lock, previous = RunLock.acquire(store, "fifth")
    assert previous.host == "elsewhere"
    lock.release()


def test_a_second_run_on_a_held_folder_refuses_at_once(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        holder = _write_lock(RunStore.open(tmp_path / "run"), pid=sleeper.pid, run_id="abc123")
        start = time.monotonic()
        done = _cli("run", "--matrix", "smoke", "--out", str(tmp_path / "run"))
        took = time.monotonic() - start
    finally:
        sleeper.kill()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("run smoke:")  # the plan's line, then the refusal
    assert f"pid {holder.pid}" in lines[1] and "run abc123" in lines[1] and socket.gethostname() in lines[1]
    assert took < 15, f"refused only after {took:.1f} s: Ray must not start"
    assert not (tmp_path / "run" / "run.json").exists()


def test_an_out_that_cannot_be_written_is_one_line_before_ray_starts(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = _cli("run", "--matrix", "smoke", "--out", str(blocker / "run"))
    assert done.returncode == 2
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"--out {blocker}/run cannot be written" in error and "choose another --out" in error
    assert "Traceback" not in done.stderr


def test_missing_weights_and_dataset_roots_are_found_before_ray_starts(tmp_path):
    matrix = tmp_path / "typo.yaml"
    matrix.write_text(json.dumps({
        "name": "typo",
        "models": [{"name": "osnet-local", "loader": "torchreid", "arch": "osnet_x0_25", "paradigm": "supervised",
                    "weights": str(tmp_path / "osnet_x0_25_markt1501.pth")}, "color-hist"],
        "datasets": [{"name": "mine", "adapter": "market1501", "root": str(tmp_path / "Market-1501-typo")},
                     "synth-a"],
    }))
    # Ray's start is replaced by a tripwire: the problems must be found without reaching it.
    code = ("import sys, raybench.ray_runtime as r\n"
            "def tripwire(*args, **kwargs):\n    print('RAY STARTED', file=sys.stderr); raise SystemExit(3)\n"
            "r.connect = tripwire\n"
            "from raybench.cli import main\n"
            f"main(['run', '--matrix', {str(matrix)!r}, '--out', {str(tmp_path / 'run')!r}])\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "RAY STARTED" not in done.stderr, done.stderr[-2000:]
    assert "2 problems found before starting Ray" in done.stderr
    assert "osnet_x0_25_markt1501.pth does not exist" in done.stderr
    assert f"{tmp_path}/Market-1501-typo does not exist" in done.stderr and "expected layout" in done.stderr
    assert "--models / --datasets" in done.stderr


def _foreground() -> None:
    """A child's SIGINT as in a terminal's foreground job (Ctrl-C interrupts): a process started
    in the background by a non-interactive shell inherits SIGINT ignored, and Python then keeps
    ignoring it, so the suite's own launch must not decide these tests."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _slow_matrix(tmp_path: Path) -> Path:
    market = make_market(tmp_path / "market")
    path = tmp_path / "slow.yaml"
    path.write_text(json.dumps({
        "name": "slow",
        "models": [{"name": "slow", "loader": "dummy", "arch": "rp", "paradigm": "baseline", "batch_size": 8,
                    "preprocess": {"size": [32, 16]}, "options": {"dim": 8, "sleep": 1.0}}],
        "datasets": [{"name": f"mkt-{x}", "adapter": "market1501", "root": str(market)} for x in "abcd"],
        "eval": {"max_rank": 10},
    }))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_keeps_finished_cells_and_says_how_to_resume(tmp_path, signum):
    matrix, out = _slow_matrix(tmp_path), tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "raybench", "run", "--matrix", str(matrix), "--out", str(out),
                             "--num-cpus", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_foreground)
    deadline = time.monotonic() + 240
    while not list(out.glob("results/*/slow.json")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no cell finished in time"
        time.sleep(0.1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "rerun the same command to resume" in err and "Traceback" not in err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted" and record["finished"]
    kept = [p for p in out.glob("results/*/slow.json") if json.loads(p.read_text())["status"] == "ok"]
    assert 1 <= len(kept) < 4, "the interrupt should land between the first and the last cell"
    assert not (out / LOCK).exists(), "the lock outlived the run"


def test_fusions_are_made_as_soon_as_their_members_are_committed(tmp_path):
    """A fusion of two fast models is scored while a third, slow model still embeds: a run
    interrupted then keeps the fusion's cells: a fusion waits for its members only."""
    market = make_market(tmp_path / "market")
    fast = {"loader": "dummy", "arch": "rp", "paradigm": "baseline", "batch_size": 64,
            "preprocess": {"size": [32, 16]}, "options": {"dim": 8}}
    matrix = tmp_path / "fused.yaml"
    matrix.write_text(json.dumps({
        "name": "fused",
        "models": [{"name": "a", **fast}, {"name": "b", **fast, "options": {"dim": 6}},
                   {"name": "slow", **fast, "batch_size": 4, "options": {"dim": 4, "sleep": 1.0}}],
        "fusions": [{"name": "ab", "of": ["a", "b"]}],
        "datasets": [{"name": "mkt", "adapter": "market1501", "root": str(market)}],
        "eval": {"max_rank": 10},
    }))
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "raybench", "run", "--matrix", str(matrix), "--out", str(out),
                             "--num-cpus", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_foreground)
    fused = out / "results" / "mkt" / "ab.json"
    deadline = time.monotonic() + 240
    while not fused.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the fusion was not scored in time"
        time.sleep(0.1)
    assert not (out / "results" / "mkt" / "slow.json").exists()  # the slow model is still embedding
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert json.loads(fused.read_text())["status"] == "ok"
