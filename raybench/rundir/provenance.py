"""Provenance of what a run directory holds: library versions, the code's git state, and the
run.json record built from them (``RunRecord``), started when a run starts and completed when it
ends. Benchmarks record the same versions and git state from here."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from raybench.rundir.records import RunRecord

#: Distributions whose versions go into every run.json (read from metadata: nothing is
#: imported); each model family adds the libraries it declares (``Loader.versioned``).
VERSIONED = ("raybench", "ray", "torch", "torchvision", "pyarrow", "numpy", "pillow")


def versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    from raybench.models import versioned_packages

    found: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in dict.fromkeys((*VERSIONED, *versioned_packages(), *extra)):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_state() -> dict[str, object]:
    """The checkout's commit and whether it had local changes (None outside a git checkout)."""
    from raybench.paths import PROJECT_ROOT

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def now(ts: float | None = None) -> str:
    """An ISO-8601 UTC timestamp (seconds) of ``ts``, default now."""
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc).isoformat(timespec="seconds")


def start_record(*, run: str, run_id: str, out: str, matrix: dict, previous: RunRecord | None,
                 started: float, plan: list[dict], **context: Any) -> RunRecord:
    """run.json as a run starts: status "running", the resolved matrix, the plan, the code.

    ``context`` holds the run's options, cluster, pool and Ray's log folder (``ray_logs``).
    """
    return RunRecord(
        run=run, run_id=run_id, status="running", out=out, started=now(started), matrix=matrix,
        previous_run_id=previous.run_id if previous else None,
        # a previous run.json still "running" under a lock this run now holds: killed
        previous_status=None if previous is None else "killed" if previous.status == "running" else previous.status,
        command=tuple(sys.argv),
        versions=versions(), git=git_state(), plan=tuple(plan), **context,
    )


def finish_record(record: RunRecord, rows: list[dict], started: float) -> RunRecord:
    """run.json once every cell is scored: status, end time and every cell's summary row."""
    import dataclasses

    failed = [r for r in rows if r["status"] != "ok"]
    return dataclasses.replace(
        record, status="failed" if failed else "finished", finished=now(),
        seconds=round(time.time() - started, 3), cells=tuple(rows),
        summary={"cells": len(rows), "ok": len(rows) - len(failed), "failed": len(failed)},
    )
