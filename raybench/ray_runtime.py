"""Starting or joining Ray: the one place that does it (`run`, `train`, `bench embed`), and
what Ray may print on this process's console.

Local Ray is started with ``address="local"``, never a bare ``ray.init()``, which would silently
join whatever cluster happens to run on the machine; RAY_ADDRESS (set by Ray Jobs, or by the
user) joins that cluster instead.

What shows follows the level of the ``raybench`` logger, which the CLI sets once
(console.configure_logging): at DEBUG (``-v``), or never set (raybench used as a library),
Ray prints as it always does. At INFO (the default) or WARNING (``-q``) the console holds
raybench's own lines only:

- Ray's Python loggers (the token-authentication notice, "Started a local Ray instance",
  Ray Data's memory and "no available CPUs" warnings): their console handlers drop records
  below ERROR (Ray Data's records stay in ray-data.log in the session log folder);
- worker and actor output (``(RayTrainWorker pid=...)`` lines, the core-worker lines of Ray
  Train's controller): not forwarded to the driver (``log_to_driver=False``); it stays in the
  workers' log files in the session log folder (``session_log_dir``);
- the C++ core worker of this process, which writes its ERROR lines to stderr as well as to
  its python-core-driver-*.log there: those lines are filtered out of stderr (``_NativeStderr``);
- the errors Ray's GCS publishes to the driver ("(raylet) Task ... failed. There are infinite
  retries remaining", "A worker died or was killed"), which Ray's listener thread prints on
  stdout whatever ``log_to_driver`` says: left out (``_quiet_published_errors``); the core
  worker's log holds the same events, and a task that runs out of retries fails its cells,
  which raybench reports itself.

When stderr is not a terminal, Ray's lines carry no ANSI colour codes (RAY_COLOR_PREFIX=0 for
the worker prefixes, a filter for its log records), whatever the level.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import atexit
import threading
from typing import Callable

from raybench.console import LOGGER

#: An ANSI escape sequence (colour, bold, cursor moves), as Ray and colorama write them.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: A line of Ray's C++ logging below FATAL: "[2026-12-03 00:03:38,944 E 3603 3603] core_worker.cc:..."
NATIVE_LINE = re.compile(rb"^(\x1b\[[0-9;]*m)*\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWE] \d+ \d+\] ")
#: Written to fd 2 at exit, after everything else: the copying thread has passed it once it sees it.
DRAINED = b"\x00raybench-stderr-drained\x00\n"
#: A record of Ray's Python logging: "2026-12-03 00:18:50,889\tINFO job_manager.py:581 -- ..."
RECORD_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\t[A-Z]+ \S+:\d+ -- ")


def verbose() -> bool:
    """True when Ray prints as it always does: ``-v``, or a raybench logger nobody configured."""
    return logging.getLogger(LOGGER).level <= logging.DEBUG  # NOTSET (0) included


def joins_cluster() -> bool:
    """Whether ``connect`` joins a running cluster (RAY_ADDRESS) rather than start a local Ray."""
    return bool(os.environ.get("RAY_ADDRESS"))


def connect(name: str, num_cpus: int | None = None, dashboard: bool | None = False,
            kind: str = "run") -> bool:
    """Start a local Ray or join RAY_ADDRESS; True when this process started Ray (and must stop it).

    ``name`` and ``kind`` ("run", "train", "bench") label the Ray job (its metadata, shown by the
    dashboard); ``num_cpus`` and ``dashboard`` apply to a local Ray only (``None``: Ray's default,
    the dashboard when its packages are installed).
    """
    import ray

    if ray.is_initialized():
        return False
    from ray.job_config import JobConfig

    import ray.data  # noqa: F401 - imported now, so that its console handler gets the policy

    configure_ray_console()  # before ray.init: the token notice is logged by it
    _quiet_published_errors()
    common = {
        "namespace": "raybench",
        "log_to_driver": verbose(),
        "job_config": JobConfig(metadata={"job_name": f"raybench-{kind}:{name}", f"raybench_{kind}": name}),
    }
    address = os.environ.get("RAY_ADDRESS") if joins_cluster() else None
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, **common)
        from raybench import ray_watchdog

        ray_watchdog.start()  # a killed driver's Ray ends within seconds, not a minute later
    if not verbose():
        _NativeStderr.install()
    return not address


class JobLog:
    """A Ray job's log, written on as it comes, in chunks, minus Ray's own lines unless -v:
    the job supervisor logs into it too ("Runtime env is setting up"), next to the driver's
    lines (which the job's raybench already keeps to its own)."""

    def __init__(self, write: Callable[[str], None]):
        self.write, self.partial = write, ""

    def __call__(self, text: str) -> None:
        if verbose():
            self.write(text)
            return
        *lines, self.partial = (self.partial + text).split("\n")
        kept = [line for line in lines if not (RECORD_LINE.match(line) or NATIVE_LINE.match(line.encode()))]
        if kept:
            self.write("".join(line + "\n" for line in kept))

    def close(self) -> None:
        """Write a last line that had no newline."""
        if self.partial:
            self.write(self.partial)
            self.partial = ""


def session_log_dir() -> str | None:
    """The log folder of the Ray session this process is connected to (``/tmp/ray/session_*/logs``
    on its node: the raylet's, the workers', this driver's core-worker log); None without Ray.

    Named in run.json so that the lines a default run keeps off the console can be found.
    """
    import ray

    if not ray.is_initialized():
        return None
    node = getattr(ray._private.worker, "_global_node", None)  # the public API does not say
    return node.get_logs_dir_path() if node is not None else None


def configure_ray_console() -> None:
    """Apply the console policy (module docstring) to Ray's Python loggers and worker prefixes.

    Also for processes that only talk to a cluster (``raybench submit``: Ray's job client logs
    each packaging step). Idempotent. It reaches the loggers imported so far: Ray's own at
    ``import ray``, Ray Data's at ``import ray.data``.
    """
    import ray  # noqa: F401 - creates the "ray" logger's console handler

    plain = not _is_terminal(sys.stderr)
    if plain:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read by the driver when it prints worker lines
    quiet = not verbose()
    for logger in _ray_loggers():
        for handler in logger.handlers:
            if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
                continue
            if quiet:
                handler.setLevel(max(handler.level, logging.ERROR))
            if plain and not any(isinstance(f, _PlainText) for f in handler.filters):
                handler.addFilter(_PlainText())


def _quiet_published_errors() -> None:
    """Ray's driver prints the errors published by its GCS (its listener thread calls
    ``ray._private.worker.print_to_stdstream`` with pid "raylet" for each) on stdout; Ray has
    no setting for it. Wrapped once per process: such messages print only when ``verbose()``,
    decided per message, so -v shows them. Worker output that ``log_to_driver`` forwards (on
    with -v only) goes through the same function and is left as it is."""
    from ray._private import worker

    original = worker.print_to_stdstream
    if getattr(original, "raybench_quiet", False):
        return

    def print_to_stdstream(data, ignore_prefix: bool):
        if data.get("pid") == "raylet" and not verbose():
            return
        original(data, ignore_prefix)

    print_to_stdstream.raybench_quiet = True
    worker.print_to_stdstream = print_to_stdstream


def _ray_loggers() -> list[logging.Logger]:
    loggers = logging.Logger.manager.loggerDict.items()
    return [logger for name, logger in loggers
            if (name == "ray" or name.startswith("ray.")) and isinstance(logger, logging.Logger)]


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _PlainText(logging.Filter):
    """Drops ANSI colour codes from a record's message (Ray colours the dashboard URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b" in message:
            record.msg, record.args = ANSI.sub("", message), None
        return True


class _NativeStderr:
    """File descriptor 2 of this process, minus the lines of Ray's C++ logging below FATAL.

    The C++ core worker writes its ERROR lines to fd 2 as well as to its log file in the
    session folder. Python's ``sys.stderr`` moves to a copy of the original descriptor (so
    raybench's lines and tracebacks go straight to the console), and fd 2 becomes a pipe that a
    thread copies to the console, line by line, leaving out those lines: anything else written
    to fd 2 (another library's native warnings, a subprocess, a FATAL check) still shows.
    """

    _installed = threading.Lock()  # held from the first install on: one pipe per process

    @classmethod
    def install(cls) -> None:
        try:
            if sys.stderr.fileno() != 2:  # captured (pytest, click's test runner): leave it alone
                return
        except (AttributeError, OSError, ValueError):
            return
        if not cls._installed.acquire(blocking=False):
            return  # once per process
        sys.stderr.flush()
        console = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        sys.stderr = open(console, "w", buffering=1, encoding=sys.stderr.encoding,  # noqa: SIM115
                          errors=sys.stderr.errors, closefd=False)
        drained = threading.Event()
        threading.Thread(target=cls._copy, args=(read, console, drained), name="raybench-stderr", daemon=True).start()
        atexit.register(cls._drain, drained)

    @staticmethod
    def _copy(read: int, console: int, drained: threading.Event) -> None:
        with open(read, "rb") as pipe:
            for line in iter(pipe.readline, b""):
                if line == DRAINED:
                    drained.set()
                elif not NATIVE_LINE.match(line):
                    os.write(console, line)

    @staticmethod
    def _drain(drained: threading.Event, limit: float = 5.0) -> None:
        """At exit: every line written to fd 2 before it reaches the console (the copying thread
        is a daemon, so the interpreter would not wait for it): a marker line follows them down
        the pipe, and exit waits until the thread has passed it."""
        try:
            os.write(2, DRAINED)
        except OSError:
            return
        drained.wait(limit)
