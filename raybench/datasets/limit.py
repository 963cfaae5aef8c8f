"""`raybench run --limit N`: a small, protocol-consistent slice of a dataset's evaluated rows.

``limit_manifest(table, n)`` keeps, in each trial (the whole table when it has no ``trial``
column):

- the first ``n`` query identities in pid order, with every query and gallery image of
  theirs: no query loses a true match that the full dataset holds, so the camera rules
  (same pid and same camid is dropped) leave each kept query the matches it had;
- a deterministic share of every other gallery image (other identities, pid 0 distractors,
  pid -1 junk): an image is kept when a hash of its path falls below the share
  ``n / (query identities of the trial)``, so the gallery keeps about as many distractors per
  kept identity as the full one, and the same image is kept (or not) in every trial and on
  every machine.

A video dataset (a ``tracklet`` column) is limited by the same rule with whole tracklets: a
kept identity keeps every frame of its tracklets, and the share of other gallery tracklets is
drawn by a hash of the tracklet's name, so a tracklet is kept or dropped with all its frames.

A trial's query identities are its own (GRID tests a different 125 in each of its 10 splits,
CUHK03 has one split), so each trial keeps the first ``n`` of its own, by the same rule;
distractors are chosen by path, so a distractor kept in one trial is kept in all of them.
Pure: Arrow table in, Arrow table out, row order kept.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raybench.errors import RaybenchError


def path_fraction(path: str) -> float:
    """A stable number in [0, 1) from a path (the same on every machine and Python)."""
    digest = hashlib.blake2b(path.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def limit_manifest(table: pa.Table, limit: int) -> pa.Table:
    """The rows of ``table`` (query and gallery, trials repeated) that ``--limit limit`` keeps."""
    if limit < 1:
        raise RaybenchError(f"--limit must be at least 1, got {limit}")
    split = table.column("split").to_numpy(zero_copy_only=False)
    pid = table.column("pid").to_numpy()
    unit = table.column("tracklet" if "tracklet" in table.column_names else "path")
    trial = table.column("trial").to_numpy() if "trial" in table.column_names else np.zeros(len(pid), np.int64)
    names = pc.unique(unit)  # hashed once per tracklet (or image)
    by_name = np.array([path_fraction(p) for p in names.to_pylist()], dtype=np.float64)
    fraction = by_name[pc.index_in(unit, value_set=names).to_numpy()]
    keep = np.zeros(len(pid), dtype=bool)
    for t in np.unique(trial):
        rows = trial == t
        query_ids = np.unique(pid[rows & (split == "query")])
        chosen = query_ids[:limit]
        share = min(1.0, len(chosen) / len(query_ids)) if len(query_ids) else 1.0
        identity = rows & np.isin(pid, chosen)
        distractor = rows & ~identity & (split == "gallery") & (fraction < share)
        keep |= identity | distractor
    return table.filter(pa.array(keep))


#: Query identities of a typical test set (Market-1501's 750): under --limit N a distractor set
#: keeps the share N / TYPICAL_QUERY_IDS of its images (by the same path hash), about the share
#: of its own distractors that a limited Market-sized gallery keeps.
TYPICAL_QUERY_IDS = 750


def limit_distractors(table: pa.Table, limit: int) -> pa.Table:
    """The rows of a distractor set (datasets/distractors.py) that ``--limit limit`` keeps."""
    if limit < 1:
        raise RaybenchError(f"--limit must be at least 1, got {limit}")
    share = min(1.0, limit / TYPICAL_QUERY_IDS)
    return table.filter(pa.array([path_fraction(p) < share for p in table.column("path").to_pylist()]))


def limit_counts(table: pa.Table) -> dict[str, int]:
    """Query identities, query images and gallery images of a (limited) table: for messages."""
    split = table.column("split")
    query = table.filter(pc.equal(split, "query"))
    return {"query_ids": len(pc.unique(query.column("pid"))), "query": query.num_rows,
            "gallery": int(pc.sum(pc.equal(split, "gallery")).as_py() or 0)}
