"""Run raybench entry points on a Ray cluster as Ray Jobs: submit, status, logs, stop.

Why not plain `ray job submit`: the job needs the project uploaded minus its caches, an entry
point that names a matrix that exists (checked here, before anything is uploaded), and an
`--out` that means the same on the cluster as here (a URI or an absolute shared path). The job
specs live in jobs/*.yaml, one per entry point; `--runtime-env FILE` is merged on top.
Talking to the dashboard (timeouts, token, errors) is raybench.jobs.dashboard's job.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from raybench.errors import SpecError
from raybench.paths import PROJECT_ROOT
from raybench.jobs.dashboard import (
    ClusterAuthError,
    ClusterError,
    Dashboard,
    auth_message,
    connect,
    translate_errors,
)
from raybench.specs.schema import key

JOBS_DIR = PROJECT_ROOT / "jobs"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: Seconds between two reads of the job's logs when the websocket tail is unavailable.
POLL_S = 2.0


# ---------------------------------------------------------------------------------------------
# Job specs (jobs/*.yaml) and what one submission sends


def _has_target(entrypoint: str) -> str | None:
    return None if "{target}" in entrypoint else "must contain the placeholder {target}"


@dataclass(frozen=True)
class JobSpec:
    """One entry point as a Ray Job: command template, runtime_env, entrypoint resources."""

    name: str
    entrypoint: str = key(check=_has_target)  # a shell command with a {target} placeholder
    runtime_env: Mapping[str, Any] = field(default_factory=dict, hash=False)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: Mapping[str, float] = field(default_factory=dict, hash=False)
    description: str = ""
    source: str = key("<inline>", read=False)


def load_job_spec(name_or_path: str) -> JobSpec:
    """jobs/NAME.yaml, or a path to a spec file."""
    from raybench.catalog import find_config
    from raybench.specs import load_yaml
    from raybench.specs.schema import read

    path = find_config(name_or_path, JOBS_DIR, "job spec")
    return read(JobSpec, load_yaml(path), str(path), base={"name": path.stem}, given={"source": str(path)})


def merge_runtime_env(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` wins key by key; env_vars are merged and excludes are added to."""
    merged = dict(base)
    for key, value in override.items():
        if key == "env_vars" and isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **value}
        elif key == "excludes" and isinstance(value, list):
            merged[key] = [*merged.get(key, []), *value]
        else:
            merged[key] = value
    return merged


def load_runtime_env(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) runtime_env file, as `ray job submit --runtime-env` takes."""
    from raybench.specs import load_yaml

    data = load_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a runtime_env file must hold a mapping (working_dir, pip, env_vars, ...)")
    return data


@dataclass(frozen=True)
class Submission:
    """Everything one `submit_job` call sends."""

    submission_id: str
    entrypoint: str
    runtime_env: Mapping[str, Any] = field(hash=False)
    metadata: Mapping[str, str] = field(hash=False)
    resources: Mapping[str, Any] = field(hash=False)  # entrypoint_num_cpus, ... (set ones only)


def project_relative(path: str | Path, what: str) -> str:
    """A file inside the project, as the job sees it (relative to its working_dir)."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        raise SpecError(
            f"{what} {path} is outside the project ({PROJECT_ROOT}), which is all the job gets: "
            "move or copy it into the project (for example configs/matrices/) and submit again"
        ) from None


def check_out(out: str | None, uri_ok: bool = True) -> str | None:
    """--out must mean the same thing on the cluster: a URI or an absolute (shared) path.

    ``uri_ok=False`` for training: `raybench train` writes its checkpoints (Ray Train's
    storage_path), log and exported model as plain files, so it refuses a URI on the cluster;
    refusing it here saves an upload and a job that can only fail.
    """
    if out is not None and "://" in out and not uri_ok:
        raise SpecError(
            f"--out {out}: a training run needs a folder, not a URI (its checkpoints, log and "
            "exported model are plain files that every worker writes): give an absolute path on "
            "storage every node mounts, e.g. /mnt/raybench/train on the KubeRay shared volume"
        )
    if out is None or "://" in out:
        return out
    if not Path(out).expanduser().is_absolute():
        raise SpecError(
            f"--out {out!r} is relative, but the job runs in a copy of the project on the cluster: "
            "give an absolute path on storage every node mounts, or a URI (s3://..., gs://...)"
        )
    return str(Path(out).expanduser())


def matrix_target(matrix: str) -> tuple[str, str]:
    """(what the driver gets, the run's name); validates the matrix here, before any upload."""
    from raybench.catalog import find_config, load_matrix, matrices_dir

    path = find_config(matrix, matrices_dir(), "matrix")
    spec = load_matrix(str(path))
    is_file = Path(matrix).suffix in (".yaml", ".yml") or Path(matrix).exists()
    return (project_relative(path, "matrix") if is_file else matrix), spec.name


def train_target(config: str) -> tuple[str, str]:
    """(what `raybench train` gets, the run's name): configs/train/NAME.yaml or a project path."""
    from raybench.catalog import find_config, train_configs_dir
    from raybench.specs import load_yaml

    path = find_config(config, train_configs_dir(), "training config")
    data = load_yaml(path)
    name = data.get("name") if isinstance(data, dict) else None
    return project_relative(path, "training config"), name if isinstance(name, str) else path.stem


def submission_id(run_name: str, now: datetime | None = None) -> str:
    """raybench-<run>-<UTC time>-<4 hex>: the run's name shows in `ray job list` and the dashboard."""
    now = now or datetime.now(timezone.utc)
    slug = re.sub(r"[^a-z0-9]+", "-", run_name.lower()).strip("-")[:40] or "run"
    return f"raybench-{slug}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def build_submission(spec: JobSpec, target: str, run_name: str, out: str | None = None,
                     extra_args: Sequence[str] = (), runtime_env: Mapping[str, Any] | None = None) -> Submission:
    """The entry point with its target, --out and extra driver arguments, shell-quoted."""
    out = check_out(out)
    command = spec.entrypoint.format(target=shlex.quote(target))
    if out is not None:
        command += f" --out {shlex.quote(out)}"
    if extra_args:
        command += " " + shlex.join(extra_args)
    env = dict(spec.runtime_env)
    if env.get("working_dir") == ".":
        env["working_dir"] = str(PROJECT_ROOT)
    env = merge_runtime_env(env, runtime_env or {})
    if env.get("working_dir") == str(PROJECT_ROOT):
        _check_checkout()
    resources = {k: getattr(spec, k) for k in ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory")
                 if getattr(spec, k) is not None}
    if spec.entrypoint_resources:
        resources["entrypoint_resources"] = dict(spec.entrypoint_resources)
    from raybench import __version__

    metadata = {"raybench_version": __version__, "job_spec": spec.name, "target": target, "out": out or ""}
    return Submission(submission_id(run_name), command, env, metadata, resources)


def _check_checkout() -> None:
    if not (PROJECT_ROOT / "pyproject.toml").is_file() or not (PROJECT_ROOT / "configs").is_dir():
        raise SpecError(
            f"raybench submits its project checkout as the job's working_dir, but {PROJECT_ROOT} "
            "is not one (installed from a wheel?): run from a git checkout (`pip install -e .`), "
            "or give a working_dir in --runtime-env FILE"
        )


# ---------------------------------------------------------------------------------------------
# Talking to the Jobs API


def submit(dash: Dashboard, sub: Submission) -> str:
    """Upload the working_dir and start the job; returns its submission id."""
    return submit_job(dash, connect(dash), "submit the job", entrypoint=sub.entrypoint,
                      submission_id=sub.submission_id, runtime_env=dict(sub.runtime_env),
                      metadata=dict(sub.metadata), **sub.resources)


#: How long a submission waits for the head's job agent (it answers a few seconds after
#: `ray start --head` returns, up to half a minute on a loaded machine).
AGENT_WAIT_S = 60.0


def submit_job(dash: Dashboard, client, action: str, wait_s: float = AGENT_WAIT_S, poll_s: float = 1.0,
               **kwargs) -> str:
    """``client.submit_job(**kwargs)``, tried again while a head that just started says "No
    available agent to submit job"."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with translate_errors(dash, action):
                return client.submit_job(**kwargs)
        except ClusterError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------
# Before submitting: can the cluster's Python run raybench?

#: How long the check job may take (its runtime_env is the real job's: the upload is shared).
CHECK_TIMEOUT_S = 120.0
CHECK_MARK = "raybench-check"
#: What a job needs: the package, its CLI and the pipeline's own imports (click, numpy, pyarrow, ray).
CHECK_IMPORTS = ("raybench", "raybench.cli", "raybench.pipeline.driver")


class ClusterEnvironmentError(ClusterError):
    """The cluster's Python cannot run this raybench; the message says how to fix it."""


def check_entrypoint() -> str:
    """A one-line job that imports what the real job imports and prints raybench's version."""
    modules = ", ".join(f'"{m}"' for m in CHECK_IMPORTS)
    code = (f"import importlib, sys; [importlib.import_module(m) for m in ({modules})]; "
            f'import raybench; print("{CHECK_MARK}", raybench.__version__, sys.executable)')
    return f"python -c {shlex.quote(code)}"


def check_verdict(status: str, logs: str, version: str) -> str:
    """The cluster's raybench version from the check job's end; ClusterEnvironmentError (one line
    naming the fix) when its Python cannot import raybench, lacks a dependency, or has another version."""
    fix = ("start the head from the project's environment (`. .venv/bin/activate && ray start --head`), "
           f"install raybench {version} in the cluster's image, or ship the environment in "
           "--runtime-env FILE (working_dir: ., pip: [...])")
    if status == "SUCCEEDED":
        found = re.search(rf"^{CHECK_MARK} (\S+) (\S+)", logs, re.MULTILINE)
        if found is None:
            raise ClusterEnvironmentError(f"the cluster check job printed no version: {_last_line(logs)}")
        if found.group(1) != version:
            raise ClusterEnvironmentError(
                f"the cluster's Python ({found.group(2)}) imports raybench {found.group(1)}, this is "
                f"raybench {version}: {fix}")
        return found.group(1)
    missing = re.findall(r"No module named '([^']+)'", logs)
    if missing and missing[-1].split(".")[0] == "raybench":
        raise ClusterEnvironmentError(f"the cluster's Python cannot import raybench: {fix}")
    if missing:
        raise ClusterEnvironmentError(
            f"the cluster's Python cannot import {missing[-1]!r}, which raybench needs: {fix}")
    if "not found" in _last_line(logs):  # the shell found no `python`
        raise ClusterEnvironmentError(f"the cluster has no `python` on its PATH ({_last_line(logs)}): {fix}")
    raise ClusterEnvironmentError(f"the cluster check job ended {status}: {_last_line(logs) or 'no output'}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def check_cluster(dash: Dashboard, sub: Submission, client=None, timeout: float = CHECK_TIMEOUT_S,
                  poll_s: float = 0.5) -> str | None:
    """Run ``check_entrypoint`` with the job's runtime_env and judge it (``check_verdict``);
    returns the cluster's raybench version, None when the check did not end within ``timeout``
    (a busy cluster: the job is submitted anyway)."""
    from raybench import __version__

    client = client or connect(dash)
    check_id = f"{sub.submission_id}-check"
    submit_job(dash, client, "check the cluster's Python", entrypoint=check_entrypoint(), submission_id=check_id,
               runtime_env=dict(sub.runtime_env), metadata={"raybench_check": sub.submission_id},
               entrypoint_num_cpus=0)
    deadline = time.monotonic() + timeout
    while True:
        with translate_errors(dash, f"get the status of {check_id}"):
            status = client.get_job_status(check_id).value
        if status in TERMINAL:
            break
        if time.monotonic() > deadline:
            with translate_errors(dash, f"stop {check_id}"):
                client.stop_job(check_id)
            return None
        time.sleep(poll_s)
    return check_verdict(status, job_logs(dash, check_id, client), __version__)


def job_row(info) -> dict[str, Any]:
    """The printable facts of one JobDetails/JobInfo (never its runtime_env: it may hold secrets)."""
    start, end = info.start_time, info.end_time
    status = getattr(info.status, "value", str(info.status))
    seconds = None
    if start:
        seconds = round(((end or time.time() * 1000) - start) / 1000, 1)
    return {
        "job": getattr(info, "submission_id", None) or getattr(info, "job_id", None),
        "status": status,
        "started": _when(start),
        "seconds": seconds,
        "entrypoint": info.entrypoint,
        "message": info.message or "",
    }


def _when(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def job_info(dash: Dashboard, job_id: str, client=None) -> dict[str, Any]:
    client = client or connect(dash)
    with translate_errors(dash, f"get job {job_id}"):
        return job_row(client.get_job_info(job_id))


def list_jobs(dash: Dashboard) -> list[dict[str, Any]]:
    """All jobs on the cluster, newest first, minus the check jobs that ``submit`` ran."""
    client = connect(dash)
    with translate_errors(dash, "list jobs"):
        jobs = client.list_jobs()
    jobs = [j for j in jobs if getattr(j, "submission_id", None)  # drivers not started as Jobs
            and "raybench_check" not in (getattr(j, "metadata", None) or {})]  # submit's checks
    return [job_row(j) for j in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True)]


def job_logs(dash: Dashboard, job_id: str, client=None) -> str:
    client = client or connect(dash)
    with translate_errors(dash, f"read the logs of {job_id}"):
        return client.get_job_logs(job_id)


def stop(dash: Dashboard, job_id: str) -> tuple[bool, str]:
    """(whether a stop was requested, the status before): a finished job is left as it is."""
    client = connect(dash)
    with translate_errors(dash, f"stop {job_id}"):
        status = client.get_job_status(job_id).value
        return (False, status) if status in TERMINAL else (client.stop_job(job_id), status)


def wait(dash: Dashboard, job_id: str, client=None, poll_s: float = 1.0) -> str:
    """Block until the job is SUCCEEDED, FAILED or STOPPED; returns that status."""
    client = client or connect(dash)
    while True:
        with translate_errors(dash, f"get the status of {job_id}"):
            status = client.get_job_status(job_id).value
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def follow(dash: Dashboard, job_id: str, write: Callable[[str], None]) -> str:
    """Write the job's logs as they come until it ends; returns its final status.

    The dashboard's websocket tail streams them (pinged every 30 s, so a dead link is noticed).
    Where it is unavailable (a proxy without websockets, a dropped connection) or ends before
    the job does, the logs are polled instead, writing only what was not written yet.
    """
    client = connect(dash)
    try:
        written = _run_tail(dash, job_id, write)
    except _TailUnavailable as exc:
        written = exc.written
    return _poll_logs(dash, client, job_id, write, written)


class _TailUnavailable(Exception):
    def __init__(self, written: int):
        super().__init__(written)
        self.written = written


def _run_tail(dash: Dashboard, job_id: str, write: Callable[[str], None]) -> int:
    import asyncio

    return asyncio.run(_tail(dash, job_id, write))


async def _tail(dash: Dashboard, job_id: str, write: Callable[[str], None]) -> int:
    """Stream the job's log over the dashboard's websocket; returns the characters written."""
    import asyncio

    import aiohttp

    url = f"{dash.address}/api/jobs/{job_id}/logs/tail"
    timeout = aiohttp.ClientTimeout(total=None, connect=dash.timeout, sock_connect=dash.connect_timeout)
    written = 0
    try:
        async with aiohttp.ClientSession(headers=dict(dash.headers), timeout=timeout) as session:
            async with session.ws_connect(url, ssl=_ssl_context(dash), heartbeat=30.0) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise _TailUnavailable(written)
                    write(msg.data)
                    written += len(msg.data)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status in (401, 403):
            raise ClusterAuthError(auth_message(dash, exc.status == 403)) from None
        raise _TailUnavailable(written) from None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise _TailUnavailable(written) from None
    return written


def _ssl_context(dash: Dashboard):
    import ssl

    if dash.verify is False:
        return False
    if isinstance(dash.verify, str):
        if os.path.isdir(dash.verify):
            return ssl.create_default_context(capath=dash.verify)
        return ssl.create_default_context(cafile=dash.verify)
    return True


def _poll_logs(dash: Dashboard, client, job_id: str, write: Callable[[str], None], written: int) -> str:
    """Write what the log holds past `written` until the job has ended; returns its status."""
    while True:
        with translate_errors(dash, f"get the status of {job_id}"):
            status = client.get_job_status(job_id).value
        text = job_logs(dash, job_id, client)
        if len(text) > written:
            write(text[written:])
            written = len(text)
        if status in TERMINAL:
            return status
        time.sleep(POLL_S)
