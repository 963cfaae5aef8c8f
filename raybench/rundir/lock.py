"""One writer per run directory: a lock file that names its holder and keeps a heartbeat.

``<run>/.lock`` holds the holder's host, pid, run id, start time and a heartbeat that a
background thread renews every ``HEARTBEAT_SECONDS``. A second run on the same directory
refuses at once, naming the holder, unless the holder is dead:

- same host: its pid no longer exists;
- another host (a cluster's shared storage, object storage): no heartbeat for
  ``STALE_SECONDS``.

A dead holder's lock is taken over with a one-line notice, and the new run records that the
previous one was killed (run.json ``previous_status``).

What holds where: on a local or shared POSIX filesystem the lock is created with O_EXCL, so of
two runs starting at the same instant exactly one wins. Object storage (s3://, gs://) through
pyarrow has no conditional create, so there the lock is a heartbeat object: the second run
sees the first's lock once it is written (a window of well under a second between the read and
the write), and a run that reads its own lock back after writing it finds out if it lost that
race. Both then refuse or proceed as above.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass

from raybench.errors import RaybenchError

LOCK = ".lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 120.0


class RunLockedError(RaybenchError):
    """Another live run holds the run directory."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    run_id: str
    started: str
    heartbeat: float  # time.time() of the last renewal

    @classmethod
    def me(cls, run_id: str) -> "Holder":
        from raybench.rundir.provenance import now

        return cls(socket.gethostname(), os.getpid(), run_id, now(), time.time())

    def alive(self) -> bool:
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # another user's live process
                return True
            return True
        return time.time() - self.heartbeat < STALE_SECONDS

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, started {self.started} (run {self.run_id})"


class RunLock:
    """The lock of one run directory, held from ``acquire`` to ``release``."""

    def __init__(self, store, holder: Holder):
        self.store, self.holder = store, holder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, store, run_id: str, echo=None) -> tuple["RunLock", Holder | None]:
        """Hold ``store``'s run directory; returns the lock and the dead holder it replaced
        (None when there was none). A live holder raises RunLockedError."""
        previous = cls.holder_of(store)
        if previous is not None:
            if previous.alive():
                raise RunLockedError(
                    f"{store.uri} is being written by another run: {previous.describe()}. "
                    "Wait for it to finish or stop it; only one run writes a run directory at a time.")
            if echo:
                echo(f"taking over the lock of a run that is no longer alive: {previous.describe()}")
            store.fs.delete_file(store.path(LOCK))
        lock = cls(store, Holder.me(run_id))
        lock._create()
        mine = cls.holder_of(store)
        if mine is None or mine.run_id != run_id:  # lost a race on object storage
            raise RunLockedError(f"{store.uri} was taken by another run at the same moment: "
                                 f"{mine.describe() if mine else 'unknown'}")
        lock._start_heartbeat()
        return lock, previous

    @staticmethod
    def holder_of(store) -> Holder | None:
        data = store.read_json(LOCK)
        if not isinstance(data, dict):
            return None
        try:
            return Holder(str(data["host"]), int(data["pid"]), str(data["run_id"]), str(data["started"]),
                          float(data["heartbeat"]))
        except (KeyError, TypeError, ValueError):
            return None  # a torn or foreign file holds nothing

    def _payload(self) -> bytes:
        return json.dumps(asdict(self.holder)).encode() + b"\n"

    def _create(self) -> None:
        self.store.fs.create_dir(self.store.root, recursive=True)
        if self.store.is_local:
            try:
                fd = os.open(self.store.path(LOCK), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self.holder_of(self.store)
                raise RunLockedError(f"{self.store.uri} was taken by another run at the same moment: "
                                     f"{other.describe() if other else 'unknown'}") from None
            with os.fdopen(fd, "wb") as out:
                out.write(self._payload())
        else:
            self.store.write_json(LOCK, asdict(self.holder))

    def _start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(HEARTBEAT_SECONDS):
                self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
                try:
                    self.store.write_json(LOCK, asdict(self.holder))
                except OSError:  # storage hiccup: the next beat tries again
                    pass

        self._thread = threading.Thread(target=beat, name="raybench-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = self.holder_of(self.store)
        if current is not None and current.run_id == self.holder.run_id:
            self.store.fs.delete_file(self.store.path(LOCK))
