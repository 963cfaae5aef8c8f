"""`python -m raybench.ray_watchdog PID`: end the local Ray of a driver that was killed.

A driver that starts a local Ray (ray_runtime.connect) is its processes' parent. When it exits
normally, ``ray.shutdown()`` stops them. When it is killed (SIGKILL, the OOM killer), Ray ties
the GCS and the raylet to it, but the raylet's agents then spend a minute trying to report the
raylet's death to the dead GCS (a fixed 60 s timeout in Ray 2.60), holding memory and ports, and
a worker can linger as long. This watchdog, started by the driver, notes the driver's
descendants every ``POLL_S`` seconds; once the driver is gone it kills those still alive (the
same processes: pid and start time), then exits. Linux only (it reads /proc); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 1.0


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks) from /proc/PID/stat; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """{pid: start time} of a process's descendants (this watchdog left out)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            children.setdefault(stat[1], []).append(int(name))
            starts[int(name)] = stat[2]
    found, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child != os.getpid():
            found[child] = starts[child]
        todo += children.get(child, [])
    return found


def kill_remaining(seen: dict[int, int]) -> int:
    """SIGKILL the processes of ``seen`` that still run (same pid and start time); how many."""
    killed = 0
    for pid, started in seen.items():
        stat = _stat(pid)
        if stat is None or stat[2] != started or stat[0] == "Z":
            continue  # gone, a reused pid, or a zombie its new parent will reap
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            continue
    return killed


def watch(driver: int, poll_s: float = POLL_S) -> int:
    """Until ``driver`` exits; then end what it left. Returns how many processes were killed."""
    first = _stat(driver)
    if first is None:
        return 0
    seen: dict[int, int] = {}
    while True:
        stat = _stat(driver)
        if stat is None or stat[2] != first[2] or stat[0] == "Z":
            return kill_remaining(seen)
        seen.update(descendants(driver))
        time.sleep(poll_s)


def start(driver: int | None = None) -> None:
    """Start the watchdog of ``driver`` (default: this process) as a detached process."""
    import subprocess

    if not os.path.isdir("/proc/self"):
        return
    subprocess.Popen([sys.executable, "-m", "raybench.ray_watchdog", str(driver or os.getpid())],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver
    watch(int(sys.argv[1]))
