"""Scoring one cell: its stored rows and its distractors, in one process or in shard actors.

``score_cell`` is the reducer's scoring of a committed cell. It reads the cell's manifest rows
from the run directory (not yet their embeddings) and, where the dataset names distractors,
the rows of its distractor set's cell (datasets/distractors.py), as gallery rows with pid
``DISTRACTOR_PID``; then it decides how many shards the gallery needs (the eval block's
``shards`` and ``shard_memory``, raybench.eval.shard.resolve_shards):

- one: every embedding is read into this process and scored by raybench.eval.protocol.score,
  as for any cell (every study-sized gallery: ``auto`` keeps them in one process);
- N: the gallery is split into N contiguous shards, each held by a ``ShardActor`` that reads
  its rows of the embeddings from the run directory itself (so the run directory must be
  shared storage on a cluster, as it must be for the embedding actors). The actors are placed
  on the nodes that take work, one after another, and reserve no CPU, like the reducer. This process reads the query embeddings only, and scores every block through
  eval.shard.Sharded: the main block and every eval variant on the same shards; a block that
  needs every gallery feature in one place (query expansion, re-ranking, the classic CUHK03
  CMC) reads them here. A table with several trials, or without image queries (scored
  leave-one-out), is scored in one process (its galleries are small).

A shard actor that dies (its process killed, its node lost) is replaced, on another node if
its own is gone (``ActorShards``), and the new one reads its shard again from the stored
embeddings; the step it was running is sent again, and a step says all a shard needs
(eval.shard.Step), so the cell finishes with the same numbers. The result's ``shards`` records
the shards: count, items, the nodes each ran on, restarts, and each one's peak memory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from raybench.errors import EvaluationError, RaybenchError

#: What a result's ``shards`` holds per shard process besides where it ran (ShardActor.stats).
STATS = ("peak_rss_bytes", "read_seconds", "read_cpu_seconds", "step_seconds", "step_cpu_seconds")
#: Replacements of a lost shard actor before its cell fails.
SHARD_RESTARTS = 3


@dataclass(frozen=True)
class Placement:
    """Where a cell's gallery was, for its result: its shards (None: one process) and its
    distractor set (None: none)."""

    shards: Mapping[str, Any] | None = None
    distractors: Mapping[str, Any] | None = None


def score_cell(store, job, spec, seed: int = 0, variants=(), actor=None, device: str | None = None,
               gpus: float = 0):
    """(eval.protocol.Scored, Placement) of a committed cell (reducer.CellJob) with the eval
    block ``spec`` and its ``variants``; ``actor``: the shard actor class (tests); ``device``
    and ``gpus``: where the distances are computed, and the GPUs a shard actor reserves (the
    benchmark's --device cuda)."""
    from raybench.eval.protocol import score
    from raybench.eval.shard import resolve_shards

    table = CellTable.load(store, job)
    shards = resolve_shards(spec.shards, table.num_gallery, table.dim, table.num_query, spec.shard_memory) \
        if table.shardable else 1
    if shards == 1:
        cols = {**table.cols, "embedding": table.read(np.arange(table.num_rows))}
        return score(cols, job.dataset.protocol, spec, seed=seed, variants=variants, device=device), \
            Placement(distractors=table.distractor_record)
    from raybench.eval.shard import Sharded, shard_bounds

    gallery = table.gallery
    bounds = shard_bounds(len(gallery), shards)
    held = ActorShards(store, [table.pieces(gallery[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])], bounds,
                       table.dim, actor=actor or ShardActor, device=device, gpus=gpus)
    try:
        scored = score({**table.cols, "embedding": table}, job.dataset.protocol, spec, seed=seed, variants=variants,
                       device=device, sharded=Sharded(held, bounds, gallery))
        return scored, Placement(held.record(), table.distractor_record)
    finally:
        held.close()


# -- the rows a cell is scored on -----------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """Rows of one committed cell (its name in embeddings/ and model): their ``row`` in its parts."""

    dataset: str
    model: str
    rows: np.ndarray


class CellTable:
    """A cell's rows, then its distractor set's, as numpy columns (``cols``, no embeddings);
    ``table[rows]`` reads the embeddings of any of them (eval.protocol.score takes it as the
    embedding column)."""

    def __init__(self, store, model: str, parts: list[tuple[str, np.ndarray]], cols: dict[str, np.ndarray],
                 dim: int, distractor_record: Mapping[str, Any] | None):
        self.store, self.model, self.parts, self.cols, self.dim = store, model, parts, cols, dim
        self.distractor_record = distractor_record
        self.starts = np.cumsum([0] + [len(rows) for _, rows in parts])

    @classmethod
    def load(cls, store, job) -> "CellTable":
        """The cell's rows (``store.read_rows``) and its distractors' (checked against the key
        the job expects: a set embedded again since would be another set's scores)."""
        own = store.read_rows(job.dataset.name, job.model)
        marker = store.cell_marker(job.dataset.name, job.model)
        cols = _columns(own)
        parts = [(job.dataset.name, own.column("row").to_numpy())]
        record = None
        if job.distractors is not None:
            name, key = job.distractors
            found = store.cell_marker(name, job.model)
            if found is None or found.key != key:
                raise RaybenchError(f"the embeddings of {job.dataset.name}'s distractor set ({name}) for {job.model} "
                                    "are missing or stale; run the matrix again")
            if found.dim != marker.dim:
                raise RaybenchError(f"{job.model}'s embeddings of {job.dataset.name} have dim {marker.dim}, of its "
                                    f"distractor set {name} dim {found.dim}; run the matrix again with --force")
            extra = store.read_rows(name, job.model)
            cols = _joined(cols, _distractor_columns(extra, job.dataset))
            parts.append((name, extra.column("row").to_numpy()))
            record = {"name": name, "images": extra.num_rows, "source": job.dataset.distractors}
        return cls(store, job.model, parts, cols, marker.dim, record)

    @property
    def num_rows(self) -> int:
        return int(self.starts[-1])

    def __len__(self) -> int:
        return self.num_rows

    @property
    def gallery(self) -> np.ndarray:
        return np.flatnonzero(self.cols["split"] == "gallery")

    @property
    def num_gallery(self) -> int:
        return len(self.gallery)

    @property
    def num_query(self) -> int:
        return int((self.cols["split"] == "query").sum())

    @property
    def shardable(self) -> bool:
        """One split with image queries (eval.protocol: trials and leave-one-out stay whole),
        and images, not frames (a video table's blocks rank its tracklets, pooled in one process)."""
        return "trial" not in self.cols and "tracklet" not in self.cols and self.num_query > 0

    def pieces(self, rows: np.ndarray) -> list[Piece]:
        """The table rows ``rows`` as pieces of the stored cells, in order."""
        out = []
        for (name, part_rows), lo, hi in zip(self.parts, self.starts[:-1], self.starts[1:]):
            mine = rows[(rows >= lo) & (rows < hi)]
            if len(mine):
                out.append(Piece(name, self.model, part_rows[mine - lo]))
        return out

    def __getitem__(self, rows) -> np.ndarray:
        return self.read(np.asarray(rows))

    def read(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), dim]: the embeddings of table rows ``rows``, read piece by piece."""
        out = np.empty((len(rows), self.dim), np.float32)
        at = 0
        for piece in self.pieces(rows) if _ascending(rows) else ():
            self.store.read_embedding_rows(piece.dataset, piece.model, piece.rows, out=out[at:at + len(piece.rows)])
            at += len(piece.rows)
        if at == len(rows):
            return out
        order = np.argsort(rows, kind="stable")  # any order: read ascending, then put back
        out[order] = self.read(rows[order])
        return out


def _ascending(rows: np.ndarray) -> bool:
    return bool(len(rows) < 2 or (np.diff(rows) >= 0).all())


def _columns(table) -> dict[str, np.ndarray]:
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names if name != "row"}


def _distractor_columns(table, dataset) -> dict[str, np.ndarray]:
    """A distractor set's rows as gallery rows of ``dataset`` (a DatasetSpec): pid
    DISTRACTOR_PID, the camera read from each name with the dataset's naming (-1 elsewhere)."""
    from raybench.datasets import get_adapter
    from raybench.datasets.distractors import cameras
    from raybench.eval.protocol import DISTRACTOR_PID

    cols = _columns(table)
    cols["pid"] = np.full(table.num_rows, DISTRACTOR_PID, np.int32)
    cols["camid"] = cameras(cols["path"], get_adapter(dataset.adapter).naming)
    return cols


def _joined(own: dict[str, np.ndarray], extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The dataset's columns, then the distractors'; a column they lack (``trial``, any other
    optional manifest column) is -1 for them: eval.protocol.ALL_TRIALS, no value."""
    out = {}
    for name, values in own.items():
        tail = extra.get(name)
        if tail is None:
            tail = np.full(len(extra["path"]), -1 if values.dtype.kind in "iu" else "", values.dtype)
        out[name] = np.concatenate([values, tail.astype(values.dtype, copy=False)])
    return out


# -- the shard actors -----------------------------------------------------------------------------


class ShardActor:
    """One shard of a cell's gallery in a Ray actor: its embeddings read from the run directory
    (``pieces``, ``dim``), items offset .. offset + len - 1 of the gallery; ``step`` is
    eval.shard.GalleryShard's, with where it ran."""

    def __init__(self, store, pieces: Sequence[Piece], offset: int, dim: int, device: str | None = None,
                 threads: int | None = None):
        import time

        import torch

        from raybench.eval.shard import GalleryShard

        if threads:
            torch.set_num_threads(threads)
        start, cpu = time.perf_counter(), time.process_time()  # the rows' reading, imports done
        features = np.empty((sum(len(p.rows) for p in pieces), dim), np.float32)
        at = 0
        for piece in pieces:
            store.read_embedding_rows(piece.dataset, piece.model, piece.rows, out=features[at:at + len(piece.rows)])
            at += len(piece.rows)
        self.shard = GalleryShard(features, offset, device)
        self.seconds = {"read_seconds": time.perf_counter() - start, "read_cpu_seconds": time.process_time() - cpu,
                        "step_seconds": 0.0, "step_cpu_seconds": 0.0}

    def step(self, queries, step):
        """eval.shard.GalleryShard.step's answer, and the node it ran on."""
        import time

        import ray

        start, cpu = time.perf_counter(), time.process_time()
        counts, values = self.shard.step(queries, step)
        self.seconds["step_seconds"] += time.perf_counter() - start
        self.seconds["step_cpu_seconds"] += time.process_time() - cpu
        return counts, values, ray.get_runtime_context().get_node_id()

    def stats(self) -> dict[str, Any]:
        """This process's peak resident memory in bytes (VmHWM; None where unknown), and its
        seconds, wall and CPU (all its threads), reading its rows and in steps (distances,
        gathers, counts): CPU seconds say what the work costs on a machine that others share."""
        from raybench.memory import peak_rss_mark

        return {"peak_rss_bytes": peak_rss_mark(), **{k: round(v, 3) for k, v in self.seconds.items()}}


class ActorShards:
    """The shards of one cell as Ray actors (eval.shard.LocalShards' interface: ``put`` the
    queries once, ``run`` one step per shard); ``record`` says where they ran.

    Each actor is pinned to a node that takes work (CPUs > 0), the nodes taken in turn: Ray's
    SPREAD strategy put a shard on a head without CPUs, and two on one node of a two-worker
    cluster; a soft node affinity was not honoured. An actor that dies (its process, or its
    node) is replaced here, not by Ray: a new actor on the same node if it is alive (a second
    loss moves it), else on the working node that holds the fewest shards, reads the shard
    from the stored embeddings and is sent the step again (a step says all a shard needs), up
    to ``restarts`` times a shard.
    """

    def __init__(self, store, layout: Sequence[Sequence[Piece]], bounds: np.ndarray, dim: int, actor=ShardActor,
                 device: str | None = None, restarts: int = SHARD_RESTARTS, gpus: float = 0):
        import ray

        self.cls, self.restarts, self.gpus = ray.remote(actor), restarts, gpus
        node_cpus = _alive_cpus()
        threads = _threads(len(layout), node_cpus)
        self.args = [(store, pieces, int(lo), dim, device, threads) for pieces, lo in zip(layout, bounds[:-1])]
        working = _working(node_cpus)
        self.nodes = [working[s % len(working)] if working else None for s in range(len(layout))]
        self.actors = [self._start(s) for s in range(len(layout))]
        self.items = np.diff(bounds).tolist()
        self.seen: list[set[str]] = [set() for _ in self.actors]  # per shard: the nodes that answered
        self.lost = [0] * len(self.actors)

    def _start(self, shard: int):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self.nodes[shard]
        placement = {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)} if node else {}
        return self.cls.options(num_cpus=0, max_restarts=0, **({"num_gpus": self.gpus} if self.gpus else {}),
                                **placement).remote(*self.args[shard])

    def put(self, queries):
        import ray

        return ray.put(queries)

    def run(self, queries, steps) -> list[tuple]:
        import ray

        refs = [actor.step.remote(queries, step) for actor, step in zip(self.actors, steps)]
        answers = []
        for shard, ref in enumerate(refs):
            while True:
                try:
                    counts, values, node = ray.get(ref)
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError) as exc:
                    ref = self._replace(shard, exc).step.remote(queries, steps[shard])
            self.seen[shard].add(node)
            answers.append((counts, values))
        return answers

    def _replace(self, shard: int, exc: Exception):
        """A new actor for a lost one (class docstring)."""
        self.lost[shard] += 1
        if self.lost[shard] > self.restarts:
            raise EvaluationError(f"shard {shard} of {len(self.actors)} was lost {self.lost[shard]} times: "
                                  f"{type(exc).__name__}: {exc}") from None
        working = _working(_alive_cpus())
        if working and (self.nodes[shard] not in working or self.lost[shard] > 1):  # its node is gone, or
            others = [node for node in working if node != self.nodes[shard]] or working  # not yet seen gone
            self.nodes[shard] = min(others, key=self.nodes.count)
        self.actors[shard] = self._start(shard)
        return self.actors[shard]

    def record(self) -> dict[str, Any]:
        """The result's ``shards``: count, items per shard, the nodes each ran on, restarts, and
        per shard process its peak resident memory (bytes), seconds reading its rows and
        seconds in steps (ShardActor.stats; None where unknown)."""
        import ray

        try:
            stats = ray.get([a.stats.remote() for a in self.actors], timeout=60)
        except ray.exceptions.RayError:  # figures to show, not worth failing a scored cell
            stats = [{}] * len(self.actors)
        return {"count": len(self.actors), "items": self.items, "nodes": [sorted(seen) for seen in self.seen],
                "restarts": sum(self.lost),
                **{key: [s.get(key) for s in stats] for key in STATS}}

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def _alive_cpus() -> dict[str, float]:
    import ray

    return {n["NodeID"]: n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")}


def _working(node_cpus: dict[str, float]) -> list[str]:
    """The nodes that take work (CPUs > 0: not a head started with --num-cpus 0), sorted."""
    return sorted(node for node, cpus in node_cpus.items() if cpus > 0)


def _threads(shards: int, node_cpus: dict[str, float]) -> int:
    """torch threads per shard actor: a node's CPUs shared by the shards placed there."""
    working = [c for c in node_cpus.values() if c > 0] or [float(os.cpu_count() or 1)]
    per_node = math.ceil(shards / len(working))
    return max(1, int(min(working)) // per_node)
