"""Terminal output shared by every command: tables, JSON, one-line notices, and the logging
set-up that the CLI applies once (``-v``/``-q``)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Iterable, Mapping, Sequence

#: raybench's logger: its level, set by the CLI, also decides what Ray prints (ray_runtime).
LOGGER = "raybench"


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return str(value)


def print_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], title: str | None = None,
                headers: Mapping[str, str] | None = None) -> None:
    """A readable table: rich when stdout is a terminal, plain aligned text otherwise."""
    rows = list(rows)
    headers = headers or {}
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    names = [headers.get(c, c) for c in columns]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for name in names:
            table.add_column(name)
        for line in cells:
            table.add_row(*line)
        Console().print(table)
        return
    widths = [max([len(n)] + [len(line[i]) for line in cells]) for i, n in enumerate(names)]
    if title:
        print(title)
    print("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())


def count(n: int, noun: str) -> str:
    """'1 cell', '4 cells': a count with its noun (plurals by 's')."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def notice(message: str) -> None:
    """A one-line message for the person at the terminal (stderr, so stdout stays parseable);
    ``-q`` silences it."""
    if logging.getLogger(LOGGER).level <= logging.INFO:  # NOTSET (library use) included
        print(message, file=sys.stderr)


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """The CLI's logging, set once per command: raybench's records go to stderr; ``-v`` adds its
    debug lines, Ray's own (raybench.ray_runtime reads this level) and other libraries' Python
    warnings and log records, ``-q`` keeps warnings and errors only (notices and progress lines go)."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.handlers = [h for h in logger.handlers if not isinstance(h, _StderrHandler)]
    logger.addHandler(_StderrHandler())
    logger.propagate = False
    if not verbose:
        quiet_libraries()


def quiet_libraries() -> None:
    """Other libraries' Python warnings and log records off the console (torchreid's "Cython
    evaluation ... unavailable" warning on import; open_clip's "No pretrained weights loaded"
    on the root logger, which would configure it to print; deprecation notices). raybench
    writes its own warnings through its logger (which does not propagate to the root), never
    ``warnings.warn``, so its lines stay. A root logger someone configured is left alone. Also
    for a process that raybench spawns (it does not inherit this) while its parent is quiet."""
    import warnings

    warnings.filterwarnings("ignore")
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


class _StderrHandler(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a test's capture, or the console that
    raybench.ray_runtime keeps apart from Ray's native output), as ``notice`` does."""

    def __init__(self):
        super().__init__()
        self.setFormatter(_Formatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    """Plain lines like ``notice``'s; warnings and errors say so."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {record.message}"
        return record.message
