"""Tables of a run: one flat row per cell (JSON, CSV) and the study-style Markdown grids.

Every figure comes from the cells' typed results (report/load.py) through the metric table
(raybench.metrics): the columns are the metrics of the main block, with their bootstrap
intervals and spread over trials, then the cell's fields, then a column group per other block
of the run (records.BLOCK_KINDS: "mAP (rerank)", "R1 (t2i)"), all generated from the
declarations, so a new metric or block kind needs no edit here. Every number in rows is a
fraction 0..1 (as in the result JSONs); only the Markdown shows percentages, as the study's
tables do. CSV keeps every scalar of a row (the full CMC curve and the nested blocks are in the
JSON only) and `read_csv` gives the same rows back.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from raybench.metrics import BLOCK_METRICS, HEADLINE, METRICS, percent, points
from raybench.report.load import Cell, Run
from raybench.rundir.records import BLOCK_KINDS, BlockKind, CellResult, block_column


def _flag(text: str) -> bool:
    """A boolean CSV field as `write_csv` writes it (True / False)."""
    return text.strip().lower() == "true"


def interval_columns(name: str) -> tuple[str, str]:
    """A metric's interval bounds in rows: ``mAP_ci_lo``, ``mAP_ci_hi``."""
    return f"{name}_ci_lo", f"{name}_ci_hi"


def _metric_columns(metrics) -> list[str]:
    return [c for m in metrics for c in (m.name, *(interval_columns(m.name) if m.interval else ()))]


#: CellResult fields a row shows another way (identity, the main block through the metric
#: table, curves, blocks, per-query lists) or not at all (keys for resume); every other scalar
#: field of a result is a column of its own, so a new one needs no edit here.
_SHOWN_ELSEWHERE = {"model", "dataset", "status", "paradigm", "error", "mAP", "mINP", "cmc", "trials", "spread",
                    "protocol", "per_query", "skipped_images", "cell_key", "manifest_hash", "eval_hash",
                    "schema_version", *(kind.key for kind in BLOCK_KINDS)}
_PARSERS = {str: str, int: int, float: float, bool: _flag}


def _field_columns() -> dict[str, Callable[[str], Any]]:
    """The scalar fields of CellResult (str, int, float, bool, optional or not) that rows show as
    they are, in declaration order, with the parser of their type."""
    hints = typing.get_type_hints(CellResult)
    out = {}
    for f in dataclasses.fields(CellResult):
        kinds = [k for k in (typing.get_args(hints[f.name]) or (hints[f.name],)) if k is not type(None)]
        if f.name not in _SHOWN_ELSEWHERE and len(kinds) == 1 and kinds[0] in _PARSERS:
            out[f.name] = _PARSERS[kinds[0]]
    return out


_FIELD_COLUMNS = _field_columns()
#: The cell's columns after the main block's metrics, and their parsers: the trials and their
#: spread, every scalar field of the result (``_field_columns``), then what rows derive.
CELL_COLUMNS: dict[str, Callable[[str], Any]] = {
    "num_trials": int, **{m.std_key: float for m in METRICS if m.spread}, **_FIELD_COLUMNS,
    "skipped_images": int, "distance": str, "camera_filter": _flag, "error": str,
}
#: CSV columns and their parsers: the order of the file, the types `read_csv` restores (then
#: each block's group, ``block_columns``).
COLUMNS: dict[str, Callable[[str], Any]] = {
    "model": str, "dataset": str, "paradigm": str, "status": str,
    **{c: float for c in _metric_columns(METRICS)}, **CELL_COLUMNS,
}
#: A block's column group, per metric of BLOCK_METRICS (and intervals), then its valid queries.
BLOCK_COUNT = "num_valid_query"
#: Columns of reports written before the metric table: old name -> name.
LEGACY_COLUMNS = {"T2I_R1": "R1 (t2i)", "T2I_R5": "R5 (t2i)", "T2I_R10": "R10 (t2i)", "T2I_mAP": "mAP (t2i)",
                  "T2I_mINP": "mINP (t2i)", "num_captions": "num_valid_query (t2i)"}
_BLOCK_COLUMN = re.compile(r"^(?P<key>\S+) \((?P<block>[^()]+)\)$")


#: A paired block's difference to the main block, per compared metric (report/paired.py):
#: "mAP_vs_main (rerank)", its interval and p-value.
VS_MAIN = ("vs_main", "vs_main_lo", "vs_main_hi", "vs_main_p")


def _group(kind: BlockKind) -> list[str]:
    from raybench.report.paired import COMPARED

    paired = [f"{m}_{suffix}" for m in COMPARED for suffix in VS_MAIN] if kind.paired else []
    return [*_metric_columns(BLOCK_METRICS), BLOCK_COUNT, *paired]


def block_columns(blocks: Sequence[tuple[BlockKind, str]]) -> list[str]:
    """The column groups of the blocks (kind, name): "mAP (rerank)", "mAP_ci_lo (rerank)", ...,
    and for a paired kind the difference to the main block, "mAP_vs_main (rerank)", ..."""
    return [block_column(c, name) for kind, name in blocks for c in _group(kind)]


def cell_row(cell: Cell, blocks: Sequence[tuple[BlockKind, str]] = ()) -> dict[str, Any]:
    """The flat row of one cell: every CSV column, each of ``blocks``' column group (None
    where the cell has no such block), then, JSON only, the CMC curve and each block kind's
    blocks by name ({metric: value, ..., num_valid_query})."""
    r = cell.result if cell.ok else None
    row: dict[str, Any] = {"model": cell.model, "dataset": cell.dataset, "paradigm": cell.paradigm,
                           "status": cell.status, **_metrics(cell, None, METRICS)}
    protocol = (r.protocol if r else None) or {}
    fields = {name: getattr(cell.result, name) if cell.result else None for name in _FIELD_COLUMNS}
    row.update({
        "num_trials": len(r.trials) or None if r else None,
        **{m.std_key: _num(r.main.std(m.name)) if r else None for m in METRICS if m.spread},
        **{name: None if value == "" else value for name, value in fields.items()},
        "skipped_images": len(cell.result.skipped_images) if cell.result else 0,
        "distance": protocol.get("distance"),
        "camera_filter": protocol.get("camera_filter") if isinstance(protocol.get("camera_filter"), bool) else None,
        "error": None if cell.ok else (cell.error or f"status {cell.status!r} without an error message"),
    })
    held = {(kind.key, name): _block_values(cell, kind, name) for kind, name, _ in (r.blocks() if r else ())}
    for kind, name in blocks:
        values = held.get((kind.key, name)) or _block_values(cell, kind, name)
        row.update({block_column(k, name): values.get(k) for k in _group(kind)})
    nested: dict[str, dict] = {}
    for (key, name), values in held.items():
        nested.setdefault(key, {})[name] = values
    return {**row, "cmc": list(r.cmc) if r else [], **nested}


def _block_values(cell: Cell, kind: BlockKind, block: str) -> dict[str, Any]:
    scores = cell.scores(block)
    out = {**_metrics(cell, block, BLOCK_METRICS), BLOCK_COUNT: scores.num_valid_query if scores else None}
    for name, p in cell.vs_main.get(block, {}).items() if kind.paired else ():
        out.update(zip((f"{name}_{suffix}" for suffix in VS_MAIN), (p.delta, p.ci_low, p.ci_high, p.p_value)))
    return out


def _metrics(cell: Cell, block: str | None, metrics) -> dict[str, float | None]:
    """A block's metrics and their intervals (report/bootstrap.py), None where there are none."""
    out = {}
    for m in metrics:
        out[m.name] = _num(cell.value(m.name, block))
        if m.interval:
            bounds = cell.interval(m.name, block)
            out.update(zip(interval_columns(m.name), bounds if bounds else (None, None)))
    return out


def status_counts(cells: Sequence[Cell]) -> str:
    """'3 ok, 1 failed, 1 missing': how the cells of a report ended, for its summary lines."""
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    ok = counts.pop("ok", 0)
    return ", ".join([f"{ok} ok"] + [f"{n} {status}" for status, n in sorted(counts.items())])


def rehearsal_note(cell: Cell) -> str:
    """"limited", "random weights" or both: a cell that is a rehearsal, not the model's score."""
    r = cell.result
    if r is None:
        return ""
    return ", ".join((["limited"] if r.limit is not None else []) + (["random weights"] if r.random_weights else []))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------------------------
# JSON and CSV


def write_json(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(list(rows), indent=2) + "\n")


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path, blocks: Sequence[tuple[BlockKind, str]] = ()) -> None:
    """Floats as repr (exact round trip), None as an empty field; ``COLUMNS``, then each of
    ``blocks``' column group."""
    fields = [*COLUMNS, *block_columns(blocks)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.csv with their types restored (the inverse of `write_csv`); a file
    written before the metric table has its columns renamed (``LEGACY_COLUMNS``)."""
    with path.open(newline="") as fh:
        return [
            {LEGACY_COLUMNS.get(k, k): None if v == "" else _parser(LEGACY_COLUMNS.get(k, k))(v) for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def _parser(column: str) -> Callable[[str], Any]:
    """COLUMNS' parser of a column; a block's column ("mAP (rerank)") is a float, its count an int."""
    if column in COLUMNS:
        return COLUMNS[column]
    if column == "num_text_images":  # a column of reports written before the metric table
        return int
    found = _BLOCK_COLUMN.match(column)
    if found is None:
        return str
    return int if found["key"] == BLOCK_COUNT else float  # a metric, its interval or its difference to main


# ---------------------------------------------------------------------------------------------
# Markdown


pct = percent  # tables' name for the one formatter (raybench.metrics.percent)


def md_table(header: Sequence[str], lines: Iterable[Sequence[str]], align: str = "l") -> str:
    """A GitHub Markdown table; ``align`` 'r' right-aligns every column after the first."""
    rule = ["---"] + ["---:" if align == "r" else "---"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    out += ["| " + " | ".join(_escape(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def grid(run: Run, fmt: Callable[[Cell], str], failures: list[Cell] | None = None,
         datasets: Sequence[str] | None = None) -> str:
    """The study's layout: rows grouped by paradigm, a column per dataset (``datasets``, default
    the run's), ``fmt(cell)`` in ok cells.

    A failed or missing cell shows ``failed [n]``; it is appended to ``failures`` so the
    caller can list the reasons under the table.
    """
    datasets = list(run.datasets if datasets is None else datasets)
    lines = []
    for paradigm, models in run.models_by_paradigm():
        lines.append([f"**{paradigm}**"] + [""] * len(datasets))
        for model in models:
            line = [model]
            for dataset in datasets:
                cell = run.cell(model, dataset)
                if cell is None:
                    line.append("")
                elif not cell.ok:
                    if failures is not None and cell not in failures:
                        failures.append(cell)
                    n = failures.index(cell) + 1 if failures is not None else ""
                    line.append(f"{cell.status} [{n}]")
                else:
                    note = rehearsal_note(cell)
                    line.append(fmt(cell) + (f" ({note})" if note else ""))
            lines.append(line)
    return md_table(["model", *datasets], lines, align="r")


def figures(metrics: Sequence[str], block: str | None = None) -> Callable[[Cell], str]:
    """A grid's cell format: the block's ``metrics``, "45.4 / 47.3"."""
    return lambda cell: " / ".join(pct(cell.value(m, block)) for m in metrics)


map_r1 = figures([m.name for m in HEADLINE])


def with_intervals(block: str | None = None) -> Callable[[Cell], str]:
    """The headline metrics with their 95% intervals, and the trials' spread where there are
    trials: "45.4 [38.1, 51.9] / 47.3 [35.1, 58.1]"."""
    def fmt(cell: Cell) -> str:
        parts = []
        for m in HEADLINE:
            bounds = cell.interval(m.name, block)
            parts.append(f"{pct(cell.value(m.name, block))}" + (f" [{pct(bounds[0])}, {pct(bounds[1])}]"
                                                                  if bounds else " [-, -]"))
        text = " / ".join(parts)
        scores = cell.scores(block)
        if scores is not None and len(scores.trials) > 1:
            sds = " / ".join(pct(scores.std(m.name)) for m in HEADLINE)
            text += f" ({len(scores.trials)} trials, sd {sds})"
        return text
    return fmt


intervals = with_intervals()


def block_figures(kind: BlockKind, name: str) -> Callable[[Cell], str]:
    """A block's grid cell: ``kind.shown`` of the block, or, for an ok cell without it, why
    (``kind.absent``: the result field that says so), else "-"."""
    shown = figures(kind.shown, name)

    def fmt(cell: Cell) -> str:
        if cell.scores(name) is not None:
            return shown(cell)
        return str(getattr(cell.result, kind.absent) or "-") if kind.absent else "-"
    return fmt


def vs_main(block: str) -> Callable[[Cell], str]:
    """A paired block's grid cell: its headline metrics with their intervals, then its mAP's
    paired difference to the main block ("vs main -6.7 [-9.9, -3.4]*")."""
    shown = with_intervals(block)

    def fmt(cell: Cell) -> str:
        if cell.scores(block) is None:
            return "-"
        diff = cell.vs_main.get(block, {}).get("mAP")
        if diff is None:
            return shown(cell)
        return (f"{shown(cell)}, vs main {points(diff.delta)} [{pct(diff.ci_low)}, {pct(diff.ci_high)}]"
                + ("*" if diff.significant else ""))
    return fmt


def block_datasets(run: Run, name: str) -> list[str]:
    """The run's datasets on which some cell has the block ``name``, in matrix order."""
    found = {c.dataset for c in run.cells if c.scores(name) is not None}
    return [d for d in run.datasets if d in found]


def block_changes(run: Run, name: str) -> str | None:
    """What a block changes in the way a cell is scored, as its results state it: the keys of
    its ``scoring`` that differ from the cell's protocol block ("rerank true, rerank_k1 20");
    None where it states nothing."""
    for cell in run.cells:
        scores = cell.scores(name)
        if scores is not None and scores.scoring:
            main = cell.result.protocol or {}
            return ", ".join(f"{k} {str(v).lower() if isinstance(v, bool) else v}"
                             for k, v in scores.scoring.items() if main.get(k) != v)
    return None


def details(run: Run) -> str:
    """Per-cell counts, the remaining metrics and timings."""
    ok = [c for c in run.cells if c.ok]
    rest = [m for m in BLOCK_METRICS if not m.headline]
    header = ["model", "dataset", *(m.name for m in rest), "valid / queries", "gallery", "trials", "seconds"]
    lines = [
        [c.model, c.dataset, *(pct(c.value(m.name)) for m in rest),
         f"{_count(c.result.num_valid_query)} / {_count(c.result.num_query)}", _count(c.result.num_gallery),
         _count(len(c.result.trials) or None), seconds_text(c.result)]
        for c in ok
    ]
    if any(rehearsal_note(c) for c in ok):  # a rehearsal says so on every line
        header.append("note")
        lines = [line + [rehearsal_note(c) or "-"] for line, c in zip(lines, ok)]
    note = stream_note(c.result.stream_cells for c in ok)
    return md_table(header, lines, align="r") + (f"\n\n{note}" if note else "")


#: How many skipped image paths a summary names per cell before "and N more".
SKIPPED_NAMED = 3


def skipped_lines(cells: Iterable[tuple[str, str, Sequence[str]]]) -> list[str]:
    """One line per (model, dataset, skipped paths) with any: how many images the cell left out
    (``on_bad_image: skip``) and the first few paths. For the console and results.md alike."""
    lines = []
    for model, dataset, paths in cells:
        if not paths:
            continue
        named = ", ".join(paths[:SKIPPED_NAMED])
        more = len(paths) - SKIPPED_NAMED
        lines.append(f"{dataset} x {model}: {len(paths):,} skipped image(s): {named}"
                     + (f" and {more:,} more" if more > 0 else ""))
    return lines


def stream_note(stream_cells: Iterable[int]) -> str | None:
    """The footnote for seconds marked ``*``: cells embedded in one stream share its time."""
    if any((n or 1) > 1 for n in stream_cells):
        return ("* embedded in one stream with other datasets of the same model: the seconds are "
                "this cell's share of the stream (the time since the previous cell of it finished), "
                "not a separate cost.")
    return None


def seconds_text(source: Any) -> str:
    """Seconds with one decimal, marked ``*`` when shared with a stream's other cells; from a
    result (``seconds``, ``stream_cells``) or a row of the live table."""
    get = source.get if isinstance(source, Mapping) else lambda key: getattr(source, key, None)
    if get("seconds") is None:
        return "-"
    return f"{get('seconds'):.1f}" + ("*" if (get("stream_cells") or 1) > 1 else "")


def _count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def failure_list(failures: Sequence[Cell]) -> str:
    return "\n".join(
        f"{i}. `{c.model}` x `{c.dataset}` ({c.status}): {_escape(c.error or f'status {c.status!r} without an error message')}"
        for i, c in enumerate(failures, 1)
    )


def pivot(run: Run, metric: str, block: str | None = None, datasets: Sequence[str] | None = None,
          absent: str | None = None) -> tuple[list[str], list[list[Any]]]:
    """(models in paradigm order, [[value or a status string per dataset]]) for heatmaps: a
    block's metric of each ok cell, the status of a failed one; an ok cell without the block
    shows the result field ``absent`` (why it has none, "no text tower")."""
    models = [m for _, group in run.models_by_paradigm() for m in group]
    values = []
    for model in models:
        line = []
        for dataset in run.datasets if datasets is None else datasets:
            cell = run.cell(model, dataset)
            if cell is None:
                line.append(None)
            elif not cell.ok:
                line.append(cell.status)
            else:
                value = cell.value(metric, block)
                line.append(value if value is not None else getattr(cell.result, absent) if absent else None)
        values.append(line)
    return models, values
