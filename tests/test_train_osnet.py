"""OSNet x0.25 on Ray Train, 2 CPU workers, synthetic domain A: the osnet_smoke recipe.

One run serves every test here, driven as a user drives it: `raybench train DRILL --out D
--workers 2` in a subprocess with a session of its own, DRILL being osnet_smoke plus
`fail_once_after_epoch: 0`. After epoch 0 its workers fail (fault injection): Ray Train's
FailureConfig restarts the group, which resumes from the epoch-0 checkpoint. Once Ray Train has
recorded a checkpoint of the restarted group, the driver's whole process group is SIGKILLed
(the driver and the local Ray it started); the Ray workers, each in a process group of its
own within the session, must exit by themselves. Then the identical command runs again: it
resumes from the latest recorded checkpoint and finishes. The exported model, loaded by the
torchreid loader exactly as a matrix loads it, must rank held-out domain-A identities clearly
better than the same network before training (its own initial weights: random OSNet features
are a strong baseline on synthetic persons, mAP ~0.4), and domain B worse than A.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from raybench.catalog import load_dataset_catalog
from raybench.train.config import load_train_config
from raybench.train.sampler import pk_plan
from test_ray_runtime import RAY_LINE

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").is_file(),
                                 reason="needs /proc (Linux) to see what a killed run leaves running")]

FAIL_AFTER = 0  # the injected worker failure comes after this epoch's checkpoint
KILL_AT = FAIL_AFTER + 1  # killed once the restarted group's first checkpoint is recorded
PHASE_S = 420  # bound on each run (to the kill, and the rerun), on two busy cores
LINGER_S = 60  # bound on the killed run's Ray workers noticing that their raylet is gone


@dataclasses.dataclass(frozen=True)
class Run:
    cfg: object
    out: Path
    killed_at: int  # the epoch of the latest checkpoint Ray Train recorded before the kill
    left_running: list  # processes of the killed run still running LINGER_S after the kill
    output: str  # the rerun's console output


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = load_train_config("osnet_smoke")
    root = tmp_path_factory.mktemp("osnet")
    drill = root / "osnet_smoke_drill.yaml"
    drill.write_text(Path(cfg.source).read_text() + f"fail_once_after_epoch: {FAIL_AFTER}\n")
    out = root / cfg.name
    command = [sys.executable, "-m", "raybench", "train", str(drill), "--out", str(out), "--workers", "2"]
    storage = out / "ray" / cfg.name
    with _session(command, root / "killed.log") as first:
        _wait_for_checkpoint(first, storage, KILL_AT, root / "killed.log")
        os.killpg(first.pid, signal.SIGKILL)
        left_running = _wait_gone(first.pid, LINGER_S)
    killed_at = _resumed_epoch(storage)
    with _session(command, root / "rerun.log") as rerun:
        _wait_exit(rerun, PHASE_S)
    output = (root / "rerun.log").read_text()
    assert rerun.returncode == 0, output[-4000:]
    return Run(cfg, out, killed_at, left_running, output)


@contextlib.contextmanager
def _session(command, log: Path):
    """``command`` in a new session (its id is the driver's pid), output to ``log``; whatever
    of it still runs afterwards is killed, so that a failing test leaks no Ray. The driver is
    reaped last: until then its pid, the session's id, cannot be given to another process, so
    every process of that session is this command's."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray
    with open(log, "w") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        if not _exited(proc):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid, _ in _running(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(proc.pid, 30)
        proc.wait()


def _exited(proc) -> bool:
    """Whether the driver has exited, without reaping it (see _session)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _wait_exit(proc, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not _exited(proc):
        assert time.monotonic() < deadline, f"{proc.args} still running after {seconds} s"
        time.sleep(0.5)


def _running(session: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes of ``session`` (zombies are dead: left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            state, _, _, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
            if int(sid) == session and state not in "ZX":
                found.append((int(stat.parent.name), (stat.parent / "cmdline").read_text().replace("\0", " ")[:120]))
    return found


def _wait_gone(session: int, seconds: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + seconds
    while (left := _running(session)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _snapshot(storage: Path) -> dict | None:
    """Ray Train V2's record of a run's checkpoints (written after each checkpoint's folder: a
    folder alone may not be recorded yet); a rerun resumes from its latest. None before the
    first checkpoint, or while it is being written."""
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    with contextlib.suppress(OSError, ValueError):
        return json.loads((storage / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME).read_text())
    return None


def _recorded_epoch(storage: Path) -> int | None:
    """The epoch of the latest recorded checkpoint, the one a rerun resumes from."""
    with contextlib.suppress(TypeError, KeyError):
        return int(_snapshot(storage)["latest_checkpoint_result"]["metrics"]["epoch"])
    return None


def _resumed_epoch(storage: Path) -> int | None:
    """The checkpoint a rerun resumes from after a kill: the recorded one, or, where the kill
    tore Ray's record while it was rewritten, the latest checkpoint folder (raybench sets the
    torn record aside and resumes that folder by path)."""
    from raybench.train.loop import INFO_FILE
    from raybench.train.run import latest_checkpoint

    recorded = _recorded_epoch(storage)
    latest = latest_checkpoint(storage)
    if recorded is not None or latest is None:
        return recorded
    return int(json.loads((latest / INFO_FILE).read_text())["epoch"])


def _wait_for_checkpoint(proc, storage: Path, epoch: int, log: Path) -> None:
    deadline = time.monotonic() + PHASE_S
    while (recorded := _recorded_epoch(storage)) is None or recorded < epoch:
        assert not _exited(proc), f"the run ended before its checkpoint of epoch {epoch}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} in {PHASE_S} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.2)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_and_every_epoch_is_logged(run):
    rows = _metrics(run.out)
    assert [r["epoch"] for r in rows] == list(range(run.cfg.epochs))  # each once, across restarts and the kill
    first, last = np.mean([r["loss"] for r in rows[:2]]), np.mean([r["loss"] for r in rows[-2:]])
    assert last < 0.85 * first, [round(r["loss"], 3) for r in rows]
    assert all(r["images_per_s"] == pytest.approx(r["images"] / r["seconds"], rel=1e-3) and 0 <= r["acc"] <= 1
               for r in rows)
    log = (run.out / "train.log").read_text()
    assert "images/s" in log and f"epoch {run.cfg.epochs - 1} done" in log


def test_each_worker_batch_is_p_times_k(run):
    cfg = run.cfg
    p, k = cfg.sampler.ids_per_batch, cfg.sampler.images_per_id
    from raybench.train.data import load_train_set

    labels = load_train_set(cfg.dataset).labels
    for row in _metrics(run.out):
        steps = len(pk_plan(labels, p, k, cfg.seed, row["epoch"])) // 2
        assert row["images"] == 2 * steps * p * k  # 2 workers, every step a full P x K batch


def test_a_lost_worker_group_resumes_from_the_last_checkpoint(run):
    log = (run.out / "train.log").read_text()
    assert log.count("injecting a worker failure") == 1  # not again in the rerun: it had a checkpoint
    assert f"resumed from the checkpoint of epoch {FAIL_AFTER}; continuing at epoch {FAIL_AFTER + 1}" in log


def test_nothing_of_the_killed_run_is_left_running(run):
    """SIGKILL of the driver's process group takes the local Ray it started (head processes in
    that group); its workers, in process groups of their own, exit when their raylet is gone."""
    assert run.left_running == []


def test_the_killed_run_resumes_when_the_same_command_runs_again(run):
    cfg, out, at = run.cfg, run.out, run.killed_at
    assert KILL_AT <= at < cfg.epochs - 1
    log = (out / "train.log").read_text()
    assert f"resumed from the checkpoint of epoch {at}; continuing at epoch {at + 1}" in log
    assert f"epochs {at + 1}..{cfg.epochs - 1}" in log
    # rank 0 of three worker groups wrote the epochs: the first, the one FailureConfig restarted
    # (killed after epoch `at`), and the rerun's
    pids = [r["pid"] for r in _metrics(out)]
    spans = [pids[:FAIL_AFTER + 1], pids[FAIL_AFTER + 1:at + 1], pids[at + 1:]]
    assert [len(set(span)) for span in spans] == [1, 1, 1] and len({span[0] for span in spans}) == 3, pids
    # a SIGKILL may leave a checkpoint folder that was never recorded: count the recorded ones
    snapshot = _snapshot(out / "ray" / cfg.name)
    assert len(snapshot["checkpoint_results"]) == cfg.keep_checkpoints
    latest = snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
    info = json.loads((out / "ray" / cfg.name / latest / "train.json").read_text())
    assert info["epoch"] == cfg.epochs - 1 and info["world"] == 2 and info["num_classes"] == 24
    assert (out / "model.yaml").is_file() and (out / "model.pth").is_file()
    assert f"trained:{out}" in run.output and "images_per_s" in run.output
    # the default console: rank 0's own lines, not Ray's (worker prefixes, records, native lines)
    assert f"epoch {cfg.epochs - 1} done" in run.output and not RAY_LINE.search(run.output), run.output[-3000:]


def _map(embedder, dataset):
    import pyarrow.compute as pc

    from raybench.datasets import load_manifest
    from raybench.eval.rank import evaluate_features
    from raybench.models.images import load_pixels

    table = load_manifest(load_dataset_catalog()[dataset])
    parts = {}
    for split in ("query", "gallery"):
        rows = table.filter(pc.equal(table.column("split"), split))
        pixels = np.stack([load_pixels(p, embedder.preprocess) for p in rows.column("path").to_pylist()])
        parts[split] = (embedder.embed(pixels), rows.column("pid").to_numpy(), rows.column("camid").to_numpy())
    (qf, qp, qc), (gf, gp, gc) = parts["query"], parts["gallery"]
    return float(evaluate_features(qf, gf, qp, gp, qc, gc).mAP)


def test_training_really_learns_and_shows_the_domain_gap(run, tmp_path):
    """Held-out identities of domain A: the synthetic split keeps test ids out of train."""
    import torch

    from raybench.models import build_embedder
    from raybench.models.trained import run_spec
    from raybench.train.osnet import build_osnet

    cfg, out = run.cfg, run.out
    spec = run_spec(str(out))
    assert spec.loader == "torchreid" and spec.options["trained_on"] == "synth-a"
    torch.manual_seed(cfg.seed)  # what every worker did right before building the network
    torch.save(build_osnet(cfg.model, 24).state_dict(), tmp_path / "init.pth")
    before = dataclasses.replace(spec, name="before-training", weights=str(tmp_path / "init.pth"))
    scores = {(name, ds): _map(build_embedder(s, device="cpu"), ds)
              for name, s in (("trained", spec), ("untrained", before)) for ds in ("synth-a", "synth-b")}
    print("mAP", {f"{k[0]}/{k[1]}": round(v, 4) for k, v in scores.items()})
    a, a0, b = scores["trained", "synth-a"], scores["untrained", "synth-a"], scores["trained", "synth-b"]
    assert a > a0 + 0.15, scores  # real learning, not noise
    assert b < a, scores  # the cross-domain gap in miniature


def test_the_ablation_smoke_matrix_scores_end_to_end_in_a_fresh_process(run, clipreid_runs, ray_local, tmp_path):
    """docs/training.md's ablation sequence: this OSNet run and conftest's CLIP-ReID runs (both arms)
    in one run folder, then `raybench run --matrix ablation_smoke` in a new process (joining the
    session's Ray) and `raybench report`: every cell scores, the CLIP-ReID arms embed exactly
    their trained modules' features, the fusion and the interpolations are there, and the report
    draws them."""
    from test_train_clipreid import _trained_features

    from raybench.catalog import load_matrix
    from raybench.models.images import load_pixels
    from raybench.rundir.store import RunStore

    runs = tmp_path / "trained"
    runs.mkdir()
    (runs / run.cfg.name).symlink_to(run.out)
    for cfg, result in clipreid_runs.values():
        (runs / cfg.name).symlink_to(result.out)
    env = {**os.environ, "RAYBENCH_TRAINED": str(runs), "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    out = tmp_path / "ablation"
    for args in (["run", "--matrix", "ablation_smoke", "--out", str(out)], ["report", str(out), "--no-ranklists"]):
        done = subprocess.run([sys.executable, "-m", "raybench", *args], capture_output=True, text=True, env=env,
                              timeout=PHASE_S)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    matrix = load_matrix("ablation_smoke")
    models = [m.name for m in matrix.models] + [f.name for f in matrix.fusions]
    assert {"osnet-x0_25-smoke-wise@0.5", "clipreid-tiny-textfrozen-wise@0.5", "osnet+clipreid-textfrozen"} <= set(models)
    store = RunStore.open(out)
    for model in models:
        for dataset in ("synth-a", "synth-b"):
            result = store.read_result(dataset, model)
            assert result.ok, (model, dataset, result.error)
    for config in ("clipreid_smoke_stage2_textfrozen", "clipreid_smoke_stage2_texttrained"):
        cfg, result = clipreid_runs[config]
        stored = store.read_embeddings("synth-a", cfg.name).slice(0, 6).to_pylist()
        pixels = np.stack([load_pixels(row["path"], cfg.model.preprocess) for row in stored])
        embeddings = np.array([row["embedding"] for row in stored], dtype=np.float32)
        assert np.abs(embeddings - _trained_features(cfg, result, pixels)).max() < 1e-4, config
    assert store.read_result("synth-a", "osnet+clipreid-textfrozen").paradigm == "hybrid"
    md = (out / "report" / "results.md").read_text()
    assert "## Hybrids" in md and "| osnet-x0_25-smoke-wise@0.5 | interpolation, alpha 0.5 | synth-a |" in md
    assert (out / "report" / "tradeoff_map.png").is_file()
