"""Tables of a run: one flat row per cell (JSON, CSV) and the study-style Markdown grid.

Every number in rows is a fraction 0..1 (as in the result JSONs); only the Markdown shows
percentages, as the study's tables do. CSV keeps every scalar of a row (the full CMC curve is
in the JSON only) and `read_csv` gives the same rows back.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from raybench.report.load import Cell, Run
from raybench.rundir.records import variant_column

def _flag(text: str) -> bool:
    """A boolean CSV field as `write_csv` writes it (True / False)."""
    return text.strip().lower() == "true"


#: CSV columns and their parsers: the order of the file, the types `read_csv` restores.
COLUMNS: dict[str, Callable[[str], Any]] = {
    "model": str, "dataset": str, "paradigm": str, "status": str,
    "mAP": float, "mAP_ci_lo": float, "mAP_ci_hi": float,
    "R1": float, "R1_ci_lo": float, "R1_ci_hi": float,
    "R5": float, "R10": float, "R20": float, "mINP": float,
    "num_trials": int, "mAP_std": float, "R1_std": float,
    "num_query": int, "num_valid_query": int, "num_gallery": int,
    "num_params": int, "seconds": float, "embed_seconds": float, "eval_seconds": float,
    "skipped_images": int, "stream_cells": int, "distance": str, "camera_filter": _flag, "device": str, "spec_hash": str,
    "i2i_rule": str,
    "T2I_R1": float, "T2I_R5": float, "T2I_R10": float, "T2I_mAP": float, "T2I_mINP": float,
    "num_captions": int, "num_text_images": int, "text_status": str,
    "limit": int, "random_weights": _flag, "error": str,
}
RANKS = (1, 5, 10, 20)
#: An eval variant's column group (raybench.rundir.records.variant_column: "mAP (rerank)"),
#: after the main figures, in the order of the run's variants; fractions like theirs.
VARIANT_METRICS = ("mAP", "R1", "R5", "R10", "mINP")


def variant_names(run: Run) -> list[str]:
    """The run's eval variants, as its results name them, in the order they give them (the matrix's)."""
    names: dict[str, None] = {}
    for cell in run.cells:
        names.update(dict.fromkeys(cell.result.get("variants") or {}))
    return list(names)


def variant_columns(variants: Sequence[str]) -> list[str]:
    return [variant_column(metric, name) for name in variants for metric in VARIANT_METRICS]


def cell_row(cell: Cell, interval: Mapping[str, tuple[float, float]] | None,
             variants: Sequence[str] = ()) -> dict[str, Any]:
    """The flat row of one cell: every CSV column, each of ``variants``' column group (None
    where the cell has no such variant), plus the CMC curve (JSON only)."""
    r = cell.result
    cmc = list(r.get("cmc") or []) if cell.ok else []
    spread = r.get("spread") or {}
    protocol = r.get("protocol") or {}
    interval = interval or {}
    row = {
        "model": cell.model, "dataset": cell.dataset, "paradigm": cell.paradigm,
        "status": cell.status,
        "mAP": _num(r.get("mAP")) if cell.ok else None,
        "mAP_ci_lo": _bound(interval, "mAP", 0), "mAP_ci_hi": _bound(interval, "mAP", 1),
        "R1": _rank(cmc, 1),
        "R1_ci_lo": _bound(interval, "R1", 0), "R1_ci_hi": _bound(interval, "R1", 1),
        **{f"R{k}": _rank(cmc, k) for k in RANKS[1:]},
        "mINP": _num(r.get("mINP")) if cell.ok else None,
        "num_trials": len(r.get("trials") or []) or None,
        "mAP_std": _num(spread.get("mAP_std")), "R1_std": _num(spread.get("rank1_std")),
        **{k: r.get(k) for k in ("num_query", "num_valid_query", "num_gallery", "num_params")},
        **{k: _num(r.get(k)) for k in ("seconds", "embed_seconds", "eval_seconds")},
        "skipped_images": len(r.get("skipped_images") or []),
        "stream_cells": r.get("stream_cells") or 1,
        "distance": protocol.get("distance"),
        "camera_filter": protocol.get("camera_filter") if isinstance(protocol.get("camera_filter"), bool) else None,
        "device": r.get("device") or None,
        "spec_hash": r.get("spec_hash"),
        **_text_columns(r if cell.ok else {}),
        "limit": r.get("limit") if isinstance(r.get("limit"), int) else None,
        "random_weights": r.get("random_weights") is True,
        "error": None if cell.ok else (cell.error or f"status {cell.status!r} without an error message"),
    }
    for name in variants:
        row.update(_variant_columns(name, (r.get("variants") or {}).get(name) if cell.ok else None))
    return {**row, "cmc": cmc}


def _variant_columns(name: str, scored: Mapping[str, Any] | None) -> dict[str, Any]:
    """One variant's column group from its block of the result (None: every value None)."""
    scored = scored or {}
    cmc = list(scored.get("cmc") or [])
    values = {"mAP": _num(scored.get("mAP")), "mINP": _num(scored.get("mINP")),
              **{f"R{k}": _rank(cmc, k) for k in RANKS}}
    return {variant_column(metric, name): values[metric] for metric in VARIANT_METRICS}


def _text_columns(result: Mapping[str, Any]) -> dict[str, Any]:
    """The text-to-image columns of a cell (None on an image-only dataset or a failed cell)."""
    text = result.get("text") or {}
    return {"i2i_rule": result.get("i2i_rule"),
            "T2I_R1": _num(text.get("r1")), "T2I_R5": _num(text.get("r5")), "T2I_R10": _num(text.get("r10")),
            "T2I_mAP": _num(text.get("mAP")), "T2I_mINP": _num(text.get("mINP")),
            "num_captions": text.get("num_captions"), "num_text_images": text.get("num_images"),
            "text_status": result.get("text_status")}


def text_datasets(run: Run, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The run's datasets with text-to-image numbers (some model has a text tower), in matrix
    order: a run of image models only on captioned datasets (the smoke run) shows no text table."""
    found = {r["dataset"] for r in rows if r.get("text_status") == "ok"}
    return [d for d in run.datasets if d in found]


def t2i(row: Mapping[str, Any]) -> str:
    """Text-to-image R1 / R5 / R10 / mAP, or why the cell has none."""
    if row.get("T2I_R1") is None:
        return str(row.get("text_status") or "-")
    return " / ".join(pct(row[f"T2I_{k}"]) for k in ("R1", "R5", "R10", "mAP"))


def status_counts(rows: Sequence[Mapping[str, Any]]) -> str:
    """'3 ok, 1 failed, 1 missing': how the cells of a report ended, for its summary lines."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    ok = counts.pop("ok", 0)
    return ", ".join([f"{ok} ok"] + [f"{n} {status}" for status, n in sorted(counts.items())])


def rehearsal_note(row: Mapping[str, Any]) -> str:
    """"limited", "random weights" or both: a cell that is a rehearsal, not the model's score."""
    notes = (["limited"] if row.get("limit") is not None else []) + (["random weights"] if row.get("random_weights") else [])
    return ", ".join(notes)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _rank(cmc: Sequence[float], k: int) -> float | None:
    """CMC@k; a gallery shorter than k has found every match it can by its last rank."""
    return float(cmc[min(k, len(cmc)) - 1]) if cmc else None


def _bound(interval: Mapping[str, tuple[float, float]], key: str, side: int) -> float | None:
    return float(interval[key][side]) if key in interval else None


# ---------------------------------------------------------------------------------------------
# JSON and CSV


def write_json(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(list(rows), indent=2) + "\n")


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path, variants: Sequence[str] = ()) -> None:
    """Floats as repr (exact round trip), None as an empty field; ``COLUMNS``, then each of
    ``variants``' column group."""
    fields = [*COLUMNS, *variant_columns(variants)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.csv with their types restored (the inverse of `write_csv`; a variant's
    columns are fractions)."""
    with path.open(newline="") as fh:
        return [
            {k: None if v == "" else _parser(k)(v) for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def _parser(column: str) -> Callable[[str], Any]:
    """COLUMNS' parser of a column; a variant's metric ("mAP (rerank)", variant_column) is a float."""
    if column in COLUMNS:
        return COLUMNS[column]
    metric, _, rest = column.partition(" (")
    return float if metric in VARIANT_METRICS and rest.endswith(")") else str


# ---------------------------------------------------------------------------------------------
# Markdown


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f}"


def md_table(header: Sequence[str], lines: Iterable[Sequence[str]], align: str = "l") -> str:
    """A GitHub Markdown table; ``align`` 'r' right-aligns every column after the first."""
    rule = ["---"] + ["---:" if align == "r" else "---"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    out += ["| " + " | ".join(_escape(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def grid(run: Run, rows: Sequence[Mapping[str, Any]], fmt, failures: list[Mapping[str, Any]] | None = None,
         datasets: Sequence[str] | None = None) -> str:
    """The study's layout: rows grouped by paradigm, a column per dataset (``datasets``, default
    the run's), ``fmt(row)`` in cells.

    A failed or missing cell shows ``failed [n]``; its row is appended to ``failures`` so the
    caller can list the reasons under the table.
    """
    datasets = list(run.datasets if datasets is None else datasets)
    by_cell = {(r["model"], r["dataset"]): r for r in rows}
    lines = []
    for paradigm, models in run.models_by_paradigm():
        lines.append([f"**{paradigm}**"] + [""] * len(datasets))
        for model in models:
            line = [model]
            for dataset in datasets:
                row = by_cell.get((model, dataset))
                if row is None:
                    line.append("")
                elif row["status"] != "ok":
                    if failures is not None and row not in failures:
                        failures.append(row)
                    n = failures.index(row) + 1 if failures is not None else ""
                    line.append(f"{row['status']} [{n}]")
                else:
                    note = rehearsal_note(row)
                    line.append(fmt(row) + (f" ({note})" if note else ""))
            lines.append(line)
    return md_table(["model", *datasets], lines, align="r")


def map_r1(row: Mapping[str, Any]) -> str:
    return f"{pct(row['mAP'])} / {pct(row['R1'])}"


def intervals(row: Mapping[str, Any]) -> str:
    """mAP and Rank-1 with their 95% intervals, and the trials' spread where there are trials."""
    text = (f"{pct(row['mAP'])} [{pct(row['mAP_ci_lo'])}, {pct(row['mAP_ci_hi'])}] / "
            f"{pct(row['R1'])} [{pct(row['R1_ci_lo'])}, {pct(row['R1_ci_hi'])}]")
    if (row.get("num_trials") or 0) > 1:
        text += f" ({row['num_trials']} trials, sd {pct(row['mAP_std'])} / {pct(row['R1_std'])})"
    return text


def variants_table(rows: Sequence[Mapping[str, Any]], variants: Sequence[str]) -> str:
    """mAP and Rank-1 of every ok cell: the main eval block's first, then a column group per
    eval variant."""
    groups = [("mAP", "R1"), *((variant_column("mAP", v), variant_column("R1", v)) for v in variants)]
    lines = [[r["model"], r["dataset"], *(pct(r[key]) for group in groups for key in group)]
             for r in rows if r["status"] == "ok"]
    return md_table(["model", "dataset", *(key for group in groups for key in group)], lines, align="r")


def variant_settings(run: Run, variants: Sequence[str]) -> list[str]:
    """What each variant changes in the eval block, as its results state it: the keys of the
    variant's ``eval`` that differ from the cell's protocol block ("`aqe`: aqe_k 5, ...")."""
    lines = []
    for name in variants:
        for cell in run.cells:
            scored = (cell.result.get("variants") or {}).get(name) if cell.ok else None
            if scored:
                main = cell.result.get("protocol") or {}
                changes = [f"{k} {str(v).lower() if isinstance(v, bool) else v}"
                           for k, v in scored["eval"].items() if main.get(k) != v]
                lines.append(f"`{name}`: {', '.join(changes)}")
                break
    return lines


def details(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per-cell counts, the remaining metrics and timings."""
    header = ["model", "dataset", "mINP", "R5", "R10", "valid / queries", "gallery", "trials", "seconds"]
    lines = [
        [r["model"], r["dataset"], pct(r["mINP"]), pct(r["R5"]), pct(r["R10"]),
         f"{_count(r['num_valid_query'])} / {_count(r['num_query'])}", _count(r["num_gallery"]),
         _count(r["num_trials"]), seconds_text(r)]
        for r in rows if r["status"] == "ok"
    ]
    if any(rehearsal_note(r) for r in rows if r["status"] == "ok"):  # a rehearsal says so on every line
        header.append("note")
        notes = [rehearsal_note(r) for r in rows if r["status"] == "ok"]
        lines = [line + [note or "-"] for line, note in zip(lines, notes)]
    note = stream_note([r for r in rows if r["status"] == "ok"])
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


def stream_note(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The footnote for seconds marked ``*``: cells embedded in one stream share its time."""
    if any((r.get("stream_cells") or 1) > 1 for r in rows):
        return ("* embedded in one stream with other datasets of the same model: the seconds are "
                "this cell's share of the stream (the time since the previous cell of it finished), "
                "not a separate cost.")
    return None


def seconds_text(row: Mapping[str, Any]) -> str:
    """Seconds with one decimal, marked ``*`` when shared with a stream's other cells."""
    if row.get("seconds") is None:
        return "-"
    return f"{row['seconds']:.1f}" + ("*" if (row.get("stream_cells") or 1) > 1 else "")


def _count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def failure_list(failures: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(
        f"{i}. `{r['model']}` x `{r['dataset']}` ({r['status']}): {_escape(r['error'] or '')}"
        for i, r in enumerate(failures, 1)
    )


def pivot(run: Run, rows: Sequence[Mapping[str, Any]], key: str,
          datasets: Sequence[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """(models in paradigm order, [[row[key] or a status string per dataset]]) for heatmaps;
    an ok cell without the value (a model without a text tower) shows its ``text_status``."""
    by_cell = {(r["model"], r["dataset"]): r for r in rows}
    models = [m for _, group in run.models_by_paradigm() for m in group]
    values = []
    for model in models:
        line = []
        for dataset in run.datasets if datasets is None else datasets:
            row = by_cell.get((model, dataset))
            value = None if row is None else row[key] if row["status"] == "ok" else row["status"]
            line.append(row.get("text_status") if row is not None and value is None else value)
        values.append(line)
    return models, values
