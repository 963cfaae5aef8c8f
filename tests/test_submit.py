"""raybench submit/status/logs/stop against a real Ray head started here.

The head runs `ray start --head --block` from the project's .venv (so `python` in a job's entry
point is the project's), on free ports, with its own --temp-dir (Ray 2.60 writes the
`ray_current_cluster` file there, not in /tmp/ray, so another engineer's plain `ray.init()`
cannot join it), with token authentication on and a token of its own, in its own process
group, and is ended by its process id when the module's tests are done.
"""

from __future__ import annotations

import json
import re
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from raybench.paths import PROJECT_ROOT
from raybench.pipeline.progress import exported_names
from test_ray_runtime import RAY_LINE

VENV_BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Head:
    url: str
    token: str
    token_path: Path
    root: Path
    metrics_port: int  # the head's Prometheus endpoint (--metrics-export-port)

    def env(self, **extra) -> dict[str, str]:
        """The client's environment: this head's token through RAY_AUTH_TOKEN_PATH only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        return {**env, "RAY_AUTH_TOKEN_PATH": str(self.token_path), **extra}

    def api(self, path: str) -> dict:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def _start_head(root: Path):
    token = secrets.token_hex(32)
    token_path = root / "auth_token"
    token_path.write_text(token)
    token_path.chmod(0o600)
    gcs, dash = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token_path), RAY_USAGE_STATS_ENABLED="0",
               # SIGTERM then stops the node at once instead of draining it for 30 s.
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               # the raylet waits 15 s for the metrics agent by default, then dies: too short for
               # two cores that other tests keep busy
               RAY_agent_register_timeout_ms="120000")
    ports = {f"--{name}": str(free_port()) for name in (
        "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "runtime-env-agent-port", "metrics-export-port")}
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--port", str(gcs),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
           "--temp-dir", str(root / "ray"), "--num-cpus", "2", "--disable-usage-stats",
           *[x for kv in ports.items() for x in kv]]
    log = open(root / "head.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                            start_new_session=True)
    head = Head(f"http://127.0.0.1:{dash}", token, token_path, root, int(ports["--metrics-export-port"]))
    return proc, head


def _wait_ready(proc, head: Head, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited {proc.returncode}:\n{(head.root / 'head.log').read_text()[-3000:]}")
        try:
            head.api("/api/version")
            head.api("/api/jobs/")  # the job agent answers a little after the dashboard
            if (head.root / "ray" / "ray_current_cluster").exists():  # the last thing `ray start` does
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the head did not answer in {timeout} s:\n{(head.root / 'head.log').read_text()[-3000:]}")


def _stop_head(proc) -> None:
    """SIGTERM to `ray start --block` (it stops its node), then SIGKILL to the process group we
    created for whatever is left; both by the process id this fixture started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def head():
    # A short path: Ray's Unix sockets live under --temp-dir (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="rbh-", dir="/tmp"))
    global_file = Path("/tmp/ray/ray_current_cluster")
    before = global_file.read_text() if global_file.exists() else None
    proc, head = _start_head(root)
    try:
        _wait_ready(proc, head)
        # The current-cluster file went to our temp dir, not the machine-wide /tmp/ray.
        assert (global_file.read_text() if global_file.exists() else None) == before
        yield head
    finally:
        _stop_head(proc)
        shutil.rmtree(root, ignore_errors=True)


def cli(head: Head, *args, env=None, timeout=240):
    return subprocess.run([str(VENV_BIN / "raybench"), *args, "--address", head.url], capture_output=True,
                          text=True, env=env or head.env(), timeout=timeout, cwd=PROJECT_ROOT)


def submit_raw(head: Head, entrypoint: str) -> str:
    """A job submitted with Ray's own client (for status/logs/stop without a matrix)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.token}"})
    return client.submit_job(entrypoint=entrypoint, submission_id=f"raybench-test-{secrets.token_hex(3)}")


def job_status(head: Head, job_id: str) -> str:
    return head.api(f"/api/jobs/{job_id}")["status"]


# --- tests ------------------------------------------------------------------------------------


def test_missing_token_is_named_and_nothing_secret_is_printed(head, tmp_path):
    env = head.env(HOME=str(tmp_path))
    env.pop("RAY_AUTH_TOKEN_PATH")
    start = time.monotonic()
    result = cli(head, "status", env=env)
    assert time.monotonic() - start < 10
    assert result.returncode == 2
    assert "authentication required" in result.stderr and "no token was sent" in result.stderr
    assert "~/.ray/auth_token" in result.stderr and "Traceback" not in result.stderr


def test_wrong_token_is_rejected_clearly(head):
    result = cli(head, "status", env=head.env(RAY_AUTH_TOKEN="not-the-token"))
    assert result.returncode == 2
    assert "authentication failed" in result.stderr and "$RAY_AUTH_TOKEN" in result.stderr
    assert "not-the-token" not in result.stderr + result.stdout


@pytest.fixture
def as_client(head, monkeypatch):
    """This process as a client of the head: its token through RAY_AUTH_TOKEN_PATH only."""
    for name in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(head.token_path))
    return head


def invoke(capsys, head: Head, *argv):
    """raybench's main() in this process (saves an interpreter start per call): (code, out, err)."""
    from raybench.cli import main

    with pytest.raises(SystemExit) as exc:
        main([argv[0], "--address", head.url, *argv[1:]])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_status_logs_and_stop(as_client, capsys):
    head = as_client
    job_id = submit_raw(head, "echo started; sleep 120")
    deadline = time.monotonic() + 60
    while job_status(head, job_id) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    code, out, err = invoke(capsys, head, "status", "--json")
    assert code == 0, err
    assert job_id in [row["job"] for row in json.loads(out)]
    shown = out
    code, out, err = invoke(capsys, head, "status", job_id)
    assert "RUNNING" in out and f"/#/jobs/{job_id}" in out
    shown += out + err
    code, out, err = invoke(capsys, head, "stop", job_id, "--wait")
    assert code == 0, err
    assert job_status(head, job_id) == "STOPPED"
    shown += out + err
    assert "started" in invoke(capsys, head, "logs", job_id)[1]
    assert "already ended: STOPPED" in invoke(capsys, head, "stop", job_id)[1]
    assert head.token not in shown
    code, _, err = invoke(capsys, head, "logs", "raybench-no-such-job", "--follow")
    assert code == 2 and "does not exist" in err


def test_follow_exits_non_zero_for_a_failed_job(as_client, capsys):
    job_id = submit_raw(as_client, "echo line-one; sleep 1; echo line-two; exit 3")
    code, out, err = invoke(capsys, as_client, "logs", job_id, "--follow")
    assert code == 1, err
    assert out.index("line-one") < out.index("line-two")
    assert f"job {job_id} FAILED" in err


#: The run's metrics, as the head's Prometheus endpoint names them, with their tags (read from
#: progress.METRICS, which the Grafana dashboard in cluster/grafana is checked against too).
RUN_METRICS = exported_names()


def scrape(head: Head) -> str:
    url = f"http://127.0.0.1:{head.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def run_samples(text: str, run: str) -> dict[str, list[tuple[str, float]]]:
    """{metric: [(labels, value)]} of the raybench series tagged with this run."""
    found: dict[str, list[tuple[str, float]]] = {}
    for m in re.finditer(r'^(ray_raybench_\w+)\{([^}]*)\} (\S+)$', text, re.M):
        if f'run="{run}"' in m.group(2):
            found.setdefault(m.group(1), []).append((m.group(2), float(m.group(3))))
    return found


class Scraper(threading.Thread):
    """Reads the head's /metrics every second while the job runs: a gauge is only kept while
    its emitter is alive, so images/s must be seen during the run."""

    def __init__(self, head: Head, run: str):
        super().__init__(daemon=True)
        self.head, self.run_name, self.seen, self.stopping = head, run, {}, threading.Event()

    def run(self):
        while not self.stopping.wait(1.0):
            self.seen.update(run_samples(scrape(self.head), self.run_name))


def test_submit_smoke_matrix_and_wait(head, tmp_path):
    """The real thing: `raybench submit --matrix smoke --wait` uploads the project, the driver runs
    on the head, the results land in --out, and the run's metrics reach the head's Prometheus
    endpoint (what the dashboard's Metrics view reads), tagged with the run's name."""
    out = tmp_path / "smoke-run"
    scraper = Scraper(head, "smoke")
    scraper.start()
    try:
        result = cli(head, "submit", "--matrix", "smoke", "--out", str(out), "--wait")
    finally:
        scraper.stopping.set()
        scraper.join()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    job_id = re.search(r"submitted job (\S+)", result.stdout).group(1)
    assert job_id.startswith("raybench-smoke-")
    assert f"dashboard: {head.url}/#/jobs/{job_id}" in result.stdout
    info = head.api(f"/api/jobs/{job_id}")
    assert info["status"] == "SUCCEEDED"
    assert head.api(f"/api/jobs/{job_id}-check")["status"] == "SUCCEEDED"  # the cluster was checked first
    listed = cli(head, "status", "--json")
    assert [row["job"] for row in json.loads(listed.stdout) if row["job"].startswith(job_id)] == [job_id]
    assert info["entrypoint"] == f"python -m raybench run --matrix smoke --out {out}"
    assert info["metadata"]["target"] == "smoke"
    cells = sorted((out / "results").glob("*/*.json"))
    assert [p.relative_to(out / "results").as_posix() for p in cells] == [
        "synth-a/color-hist.json", "synth-a/osnet-x0_25-untrained.json",
        "synth-b/color-hist.json", "synth-b/osnet-x0_25-untrained.json"]
    for cell in cells:
        assert json.loads(cell.read_text())["status"] == "ok", cell
    assert head.token not in result.stdout + result.stderr
    assert not RAY_LINE.search(result.stdout + result.stderr), result.stdout[-4000:] + result.stderr[-4000:]

    # Counters stay on the endpoint after the driver exits; the last export may lag a little.
    # Gauges (images/s, what remains) are only kept while the driver lives: the scraper saw them.
    done = "ray_raybench_cells_done_total"
    deadline = time.monotonic() + 30
    samples = run_samples(scrape(head), "smoke")
    while time.monotonic() < deadline and sum(v for _, v in samples.get(done, [])) < 4:
        time.sleep(1)
        samples = run_samples(scrape(head), "smoke")
    samples = {**scraper.seen, **samples}
    failed = "ray_raybench_cells_failed_total"  # no cell failed: a counter never increased is not exported
    assert set(RUN_METRICS) - {failed} <= set(samples), sorted(samples)
    for name, series in samples.items():  # every series carries the metric's tags
        for labels, _ in series:
            assert {f'{tag}="' for tag in RUN_METRICS[name]} <= {m.group(0) for m in re.finditer(r'\w+="', labels)}, \
                (name, labels)
    cells = {(re.search(r'model="([^"]+)"', labels).group(1), re.search(r'dataset="([^"]+)"', labels).group(1)): value
             for labels, value in samples[done]}
    assert cells == {(m, d): 1.0 for m in ("color-hist", "osnet-x0_25-untrained") for d in ("synth-a", "synth-b")}
    for model in ("color-hist", "osnet-x0_25-untrained"):
        assert any(f'model="{model}"' in labels and value > 0
                   for labels, value in samples["ray_raybench_images_embedded_total"]), model
    # what remains (the ETA's numerator): of the smoke run's 2 x 2 x 216 images and 4 cells
    assert all(0 <= v <= 4 * 216 for _, v in samples["ray_raybench_images_remaining"])
    assert all(0 <= v <= 4 for _, v in samples["ray_raybench_cells_remaining"])


def test_submit_wait_fails_when_the_driver_fails(as_client, capsys, tmp_path):
    """Arguments after `--` reach the driver; a driver that fails makes `submit --wait` fail."""
    code, out, err = invoke(capsys, as_client, "submit", "--matrix", "smoke", "--out", str(tmp_path),
                            "--wait", "--", "--models", "no-such-model")
    assert code == 1, err
    assert "no-such-model" in out  # the driver's own error, in the job's log
    job_id = re.search(r"submitted job (\S+)", out).group(1)
    assert job_status(as_client, job_id) == "FAILED" and f"job {job_id} FAILED" in err


def test_a_cluster_whose_python_lacks_raybenchs_environment_gets_no_job(as_client, capsys, tmp_path):
    """The head's `python` is the system one (no click, no ray): one line naming the fix, and
    no job is submitted, instead of a job that dies with ModuleNotFoundError."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3 to stand in for a head without the project's environment")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(system_python)
    env_file = tmp_path / "bare.yaml"
    env_file.write_text(json.dumps({"env_vars": {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": ""}}))
    before = {row["submission_id"] for row in as_client.api("/api/jobs/")}
    code, out, err = invoke(capsys, as_client, "submit", "--matrix", "smoke", "--out", str(tmp_path / "o"),
                            "--runtime-env", str(env_file), "--wait")
    assert code != 0
    lines = [line for line in err.splitlines() if "cannot import" in line]
    assert len(lines) == 1, err
    assert "cannot import 'click', which raybench needs: start the head from the project's environment" in lines[0]
    assert "submitted job" not in out and "Traceback" not in out + err
    new = {row["submission_id"] for row in as_client.api("/api/jobs/")} - before
    assert len(new) == 1 and new.pop().endswith("-check")  # only the check ran
