"""One place starts Ray (raybench.ray_runtime), and the console policy it applies: raybench's
own lines by default, Ray's too with -v, no ANSI codes on a console that is not a terminal."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raybench import console

REPO = Path(__file__).resolve().parent.parent

#: What Ray prints on a console when left alone (Ray 2.60): its log records ("<time>\tWARNING
#: file.py:NN -- ..."), the C++ core worker's lines ("[<time> E pid tid] core_worker.cc:..."),
#: forwarded worker output ("(RayTrainWorker pid=...)", "(raylet)") and colour codes.
RAY_LINE = re.compile(r"\t(DEBUG|INFO|WARNING|ERROR) \S+\.py:\d+ -- |^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] "
                      r"|^\((\w+ )?pid=|^\(raylet\)|token authentication|\x1b\[", re.M | re.I)


def _env():
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_COLOR"))},
            "PYTHONPATH": str(REPO)}


def test_ray_is_started_in_one_place():
    """run (pipeline/driver via runtime), train and bench all go through ray_runtime.connect."""
    calls = [f"{path.relative_to(REPO)}:{node.lineno}"
             for path in sorted((REPO / "raybench").rglob("*.py")) if path.name != "ray_runtime.py"
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func) in ("ray.init", "init")]
    assert calls == [], f"ray.init outside raybench/ray_runtime.py: {calls}"
    assert "ray.init(" in (REPO / "raybench" / "ray_runtime.py").read_text()


CONNECT = textwrap.dedent("""
    import logging, os, sys, time, warnings
    import ray
    from raybench import console, ray_runtime
    console.configure_logging(verbose=sys.argv[1] == "-v")
    assert ray_runtime.connect("console-test", num_cpus=1, kind="test")
    logging.getLogger("ray").warning("\\x1b[1m\\x1b[32mcoloured\\x1b[39m\\x1b[22m record")
    logging.getLogger("ray.data.dataset").warning("Warning: no available CPUs (a Ray Data record)")
    warnings.warn("a library's UserWarning")  # torchreid warns so on import
    sys.stderr.flush()
    os.write(2, b"[2026-12-03 00:03:38,944 E 1 1] core_worker.cc:1: a native Ray line\\n")
    os.write(2, b"a native line of another library\\n")
    marker = sys.argv[2]

    @ray.remote(max_retries=-1)
    def dies_once():
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # as a worker killed by SIGTERM or the OOM killer
        return 1

    assert ray.get(dies_once.remote()) == 1
    time.sleep(2)  # Ray publishes "Task ... failed" through the GCS; its listener prints it
    print("LOGS", ray_runtime.session_log_dir())
    print("COLOR", os.environ.get("RAY_COLOR_PREFIX"))
    console.notice("a raybench line")
    ray.shutdown()
""")  # no wait at the end: at exit, every line written before reaches the console (ray_runtime._drain)


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["", "-v"])
def test_connect_console_policy(flag, tmp_path):
    """Default: Ray's records and its native lines stay off the console, other native output
    and raybench's lines stay on it; -v: Ray's lines show. Never an ANSI code in a pipe.

    Ray's driver also prints the errors its GCS publishes ("(raylet) Task ... failed. There are
    infinite retries remaining", "A worker died") on stdout whatever log_to_driver says, and a
    library's Python warning prints on stderr: by default neither shows (they are in the
    session's log folder: python-core-driver-*.log), with -v both do."""
    done = subprocess.run([sys.executable, "-c", CONNECT, flag, str(tmp_path / "died")], capture_output=True,
                          text=True, env=_env(), cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    err, shown = done.stderr, done.stdout + done.stderr
    assert (tmp_path / "died").exists()
    assert "a raybench line" in err and "a native line of another library" in err
    assert "\x1b" not in shown
    assert "COLOR 0" in done.stdout
    logs = re.search(r"^LOGS (.+)$", done.stdout, re.M).group(1)
    assert Path(logs).is_dir() and Path(logs).name == "logs", logs
    assert list(Path(logs).glob("python-core-driver-*.log")), logs
    if flag == "-v":
        assert "Started a local Ray instance" in err and "coloured record" in err
        assert "a Ray Data record" in err
        assert "core_worker.cc:1: a native Ray line" in err
        assert "infinite retries remaining" in shown and "a library's UserWarning" in shown
    else:
        assert not RAY_LINE.search(err), err
        assert "coloured" not in err and "Started a local Ray" not in err and "Ray Data" not in err
        assert "retries remaining" not in shown and "raylet" not in shown and "Warning" not in shown, shown


LIBRARY_LINES = textwrap.dedent("""
    import logging, sys, warnings
    from raybench import console
    console.configure_logging(verbose=sys.argv[1] == "-v")
    logging.warning("No pretrained weights loaded for model 'ViT-B-16'")  # open_clip, via the root logger
    logging.getLogger("timm.models").warning("a library's logger")
    warnings.warn("a library's UserWarning")
    console.notice("a raybench line")
    logging.getLogger("raybench.x").warning("a raybench warning")
""")


@pytest.mark.parametrize("flag", ["", "-v"])
def test_library_log_records_and_warnings_stay_off_the_console(flag):
    """open_clip logs "No pretrained weights loaded" on the root logger, which prints when no
    one configured logging; a Python warning prints too: by default neither shows, raybench's
    own lines and warnings do; with -v everything shows. (`raybench rehearse` builds models in
    a process of its own, which applies the same policy.)"""
    done = subprocess.run([sys.executable, "-c", LIBRARY_LINES, flag], capture_output=True, text=True,
                          env=_env(), cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "a raybench line" in done.stderr and "warning: a raybench warning" in done.stderr
    libraries = ("No pretrained weights", "a library's logger", "a library's UserWarning")
    if flag == "-v":
        assert all(line in done.stderr for line in libraries), done.stderr
    else:
        assert not any(line in done.stderr for line in libraries), done.stderr


@pytest.mark.slow
def test_default_run_prints_raybench_lines_only(tmp_path):
    """A real `raybench run` of the smoke matrix, stdout and stderr pipes (not terminals)."""
    done = subprocess.run([sys.executable, "-m", "raybench", "run", "--matrix", "smoke", "--num-cpus", "2",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          env=_env(), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 cells: 4 ok" in done.stderr
    assert not RAY_LINE.search(done.stderr + done.stdout), done.stderr


def test_quiet_and_verbose_levels(capsys):
    logger = logging.getLogger(console.LOGGER)
    try:
        console.configure_logging(quiet=True)
        console.notice("progress")
        logger.warning("a problem")
        assert capsys.readouterr().err == "warning: a problem\n"
        console.configure_logging()
        console.notice("progress")
        logger.debug("details")
        assert capsys.readouterr().err == "progress\n"
        console.configure_logging(verbose=True)
        logger.debug("details")
        assert capsys.readouterr().err == "details\n"
        # configured three times, one handler of its own (pytest may add capture handlers)
        assert sum(isinstance(h, console._StderrHandler) for h in logger.handlers) == 1
    finally:
        logger.setLevel(logging.NOTSET)
        logger.handlers.clear()


def test_verbose_and_quiet_exclude_each_other():
    done = subprocess.run([sys.executable, "-m", "raybench", "-v", "-q", "list", "matrices"],
                          capture_output=True, text=True, env=_env(), cwd=REPO)
    assert done.returncode == 2 and "exclude each other" in done.stderr


def test_train_log_echo(tmp_path, capsys):
    """By default a training run's console gets rank 0's train.log lines, without time stamps."""
    from raybench.train.run import _echo

    log = tmp_path / "train.log"
    log.write_text("2026-12-03 00:00:00 from an earlier run\n")
    with _echo(log, True, every_s=0.01):
        with open(log, "a") as fh:
            fh.write("2026-12-03 00:00:01 epoch 0 done: loss 1.0\n2026-12-03 00:00:02 half a li")
    assert capsys.readouterr().err == "epoch 0 done: loss 1.0\n"


def test_job_log_keeps_the_jobs_own_lines(monkeypatch):
    """A job's log arrives in chunks that can cut a line; Ray's records go unless -v."""
    from raybench import ray_runtime

    chunks = ["2026-12-03 00:18:50,889\tINFO job_manager.py:581 -- Runtime env is setting up.\nRunning entry",
              "point for job x\n[2026-12-03 00:03:38,944 E 7 7] core_worker.cc:2465: Actor ...\ncells 0/4",
              " | done"]
    written: list[str] = []
    log = ray_runtime.JobLog(written.append)
    monkeypatch.setattr(ray_runtime, "verbose", lambda: False)  # the CLI's default
    for chunk in chunks:
        log(chunk)
    log.close()
    assert "".join(written) == "Running entrypoint for job x\ncells 0/4 | done"
    monkeypatch.setattr(ray_runtime, "verbose", lambda: True)
    written.clear()
    for chunk in chunks:
        log(chunk)
    assert "".join(written) == "".join(chunks)


def _wait_gone(pids: dict[int, int], limit: float) -> float | None:
    """Seconds until none of ``pids`` (pid: start time) runs, or None after ``limit``."""
    import time

    from raybench.ray_watchdog import _stat

    start = time.monotonic()
    while time.monotonic() - start < limit:
        alive = [p for p, t in pids.items() if (s := _stat(p)) is not None and s[2] == t and s[0] != "Z"]
        if not alive:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def test_watchdog_ends_what_a_killed_driver_left():
    """A driver (here a plain Python that starts a `sleep`) killed with SIGKILL: its child ends too."""
    import signal
    import time

    from raybench.ray_watchdog import descendants

    code = ("import subprocess, sys, time; from raybench import ray_watchdog; "
            "subprocess.Popen(['sleep', '300']); ray_watchdog.start(); print('ready', flush=True); time.sleep(300)")
    driver = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert driver.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # the watchdog has seen the child
        left = {p: t for p, t in descendants(driver.pid).items()}
        assert len(left) == 2  # the sleep and the watchdog
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _wait_gone(left, 10) is not None
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_local_ray_does_not_outlive_a_killed_driver_by_more_than_seconds():
    """Without the watchdog, the raylet's agents outlive a SIGKILLed driver by about 64 s (they
    try to report the raylet's death to the dead GCS for a fixed minute); with it, about 3 s."""
    import signal
    import time

    from raybench.ray_watchdog import descendants

    code = ("import time; from raybench import ray_runtime; ray_runtime.connect('watchdog-test', num_cpus=1); "
            "print('ready', flush=True); time.sleep(600)")
    driver = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    left: dict[int, int] = {}
    try:
        assert driver.stdout.readline().strip() == "ready"
        time.sleep(3)  # the agents are up and the watchdog has seen them
        left = descendants(driver.pid)
        names = " ".join(open(f"/proc/{p}/cmdline").read() for p in left if os.path.exists(f"/proc/{p}/cmdline"))
        assert "raylet" in names and "gcs_server" in names
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        took = _wait_gone(left, 30)
        assert took is not None, "Ray's processes outlived the killed driver by over 30 s"
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)
        for pid in {**left, **descendants(driver.pid)}:  # none still runs, unless the test failed
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
