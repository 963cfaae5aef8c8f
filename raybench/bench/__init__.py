"""Performance benchmarks against the peers: `raybench bench metrics` (rank metrics vs
torchreid's evaluate_rank, or re-ranking at scale) and `raybench bench embed` (embedding
throughput vs a plain torch loop).

features.py holds the seeded synthetic embeddings with the shapes of real test sets that the
benchmarks share; peers.py loads the peers' reference code. Here: ``write_json`` writes a
record, ``provenance`` says which code produced it, and the peak-RSS helpers measure memory.
"""

from __future__ import annotations

import json
from pathlib import Path

from raybench.memory import current_rss, peak_rss, peak_rss_mark, reset_peak_rss  # noqa: F401 - the benchmarks' names

#: Paths whose local changes do not make a benchmark's code "dirty": its own outputs. Without
#: this, writing one record (results/bench/metrics-msmt17.json) marked the next one dirty.
OUTPUT_PATHS = ("results/",)
#: Untracked files that could change what runs (an importable module, a config); untracked
#: files elsewhere (another engineer's scratch notes in a shared checkout) cannot.
CODE_PATHS = ("raybench/", "configs/")


def write_json(record: dict, out: Path) -> Path:
    """Write a benchmark record atomically (a reader never sees half a file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out)
    return out


def provenance() -> dict:
    """The checkout's commit and the local changes that could affect a benchmark.

    ``dirty`` is true when a tracked file outside ``OUTPUT_PATHS`` differs from the commit, or
    an untracked file lies under ``CODE_PATHS``; ``dirty_paths`` names them, so a reader can
    tell a benchmark of modified code from one next to an unrelated edit. None outside git.
    """
    from raybench.rundir.provenance import git_state

    state = git_state()
    if state["commit"] is None:
        return {**state, "dirty_paths": None, "ignored_paths": list(OUTPUT_PATHS)}
    paths = _changed_paths()
    return {"commit": state["commit"], "dirty": bool(paths) if paths is not None else None,
            "dirty_paths": paths, "ignored_paths": list(OUTPUT_PATHS)}


def _changed_paths() -> list[str] | None:
    import subprocess

    from raybench.paths import PROJECT_ROOT

    try:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain=v1", "-z",
                               "--untracked-files=all"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    paths = []
    entries = iter(done.stdout.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            next(entries, None)  # a rename's second field is the old path
        untracked = code == "??"
        if path.startswith(OUTPUT_PATHS) or untracked and not path.startswith(CODE_PATHS):
            continue
        paths.append(path)
    return sorted(paths)


def bench_device(asked: str | None) -> tuple[str, str | None]:
    """The device a benchmark runs on, and why it is not the one asked for (None when it is):
    None is the GPU when torch sees one, else the CPU; ``cuda`` without a CUDA device visible
    to torch falls back to the CPU."""
    import torch

    if asked is None:
        return ("cuda" if torch.cuda.is_available() else "cpu"), None
    if asked != "cuda" or torch.cuda.is_available():
        return "cuda", None
    return "cpu", "no CUDA device is visible to torch: the benchmark ran on the CPU"


def drain_stream(stream) -> dict:
    """Consume an embedding stream (pipeline.embed) as the driver does; what a throughput
    figure needs: images, arrival times of the first and last batch, the times the actors
    finished the first and the last batch (``embedded_at``), each actor call as ``calls``
    [(actor, end, seconds in the model, images)] where the stream carries those columns (the
    driver may get a call's rows split or merged: a call is one actor's one ``embedded_at``),
    the stream's start on the actors' clock (``start_wall``), and any errors named in the
    ``embed_error`` / ``image_error`` columns."""
    import time

    start, start_wall = time.perf_counter(), time.time()
    first = first_count = None
    count, errors, embedded, calls = 0, set(), [], {}
    for batch in stream.iter_batches(batch_size=None, batch_format="numpy"):
        count += len(batch["row"])
        errors.update(e for e in batch["embed_error"] if e)
        errors.update(e for e in batch["image_error"] if e)
        embedded.append(float(batch["embedded_at"].max()) if len(batch["row"]) else float("nan"))
        for actor, end, seconds in zip(batch.get("actor", ()), batch["embedded_at"], batch.get("forward_seconds", ())):
            key = (str(actor), float(end))
            calls[key] = (float(seconds), calls.get(key, (0.0, 0))[1] + 1)
        if first is None:
            first, first_count = time.perf_counter(), count
    return {"start": start, "start_wall": start_wall, "first": first, "first_count": first_count, "count": count,
            "end": time.perf_counter(), "errors": sorted(errors),
            # the actors' clock: when the first batch's embeddings were done, and the last's
            "first_embedded": embedded[0] if embedded else None,
            "last_embedded": max(embedded) if embedded else None,
            "calls": [(actor, end, seconds, images) for (actor, end), (seconds, images) in calls.items()]}
