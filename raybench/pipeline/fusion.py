"""Fusion cells: a matrix's ``fusions:`` scored from its members' stored embeddings.

A fused cell is computed by the reducer, never by an embedding actor: it reads each member's
committed cell of the same dataset (the keys the driver planned, so a member embedded again
since makes the fusion stale), fuses the rows as ``fuse`` says, and commits the result as a cell
of its own (embeddings/<dataset>/<fusion>/, keyed by the fusion's spec hash and its members'
keys). From there it is an ordinary cell: scored with the matrix's eval block, re-scored from
its stored embeddings, shown in rank lists.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from raybench.errors import RaybenchError

#: The columns that say which image a row is (in which trial, and in a video table which frame
#: of which tracklet): equal across members.
_IDENTITY = ("path", "split", "trial", "tracklet", "frame")


def fuse(embeddings: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """float32 [N, d_i] per member -> float32 [N, sum d_i]: concat of sqrt(w_i) * e_i / ||e_i||_2.

    Each member counts by its weight whatever its scale or dimension: the squared euclidean
    distance of two fused vectors is sum_i w_i * ||u_i - v_i||^2 = 2 * sum_i w_i * (1 - cos_i),
    and their dot product sum_i w_i * cos_i. A zero vector stays zero.
    """
    parts = []
    for e, w in zip(embeddings, weights):
        e = np.asarray(e, dtype=np.float64)
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        parts.append(np.sqrt(w) * e / np.maximum(norm, 1e-12))
    return np.concatenate(parts, axis=1).astype(np.float32)


def fuse_cell(store, fusion: str, dataset: str, members, weights, key: str, spec_hash: str, manifest_hash: str):
    """Fuse ``members`` ((model, expected key) pairs) of ``dataset`` (a dataset's or a distractor
    set's cell) with ``weights`` and commit the fused cell of ``fusion`` under ``key``; returns
    its CellMarker. A member not committed under the key the driver planned, or members that
    hold different images, raise RaybenchError."""
    from raybench.rundir import provenance
    from raybench.rundir.records import CellMarker
    from raybench.rundir.store import embedding_matrix, embedding_table

    start = time.perf_counter()
    tables, markers = [], []
    for model, member_key in members:
        marker = store.cell_marker(dataset, model)
        if marker is None or marker.key != member_key:
            state = "never committed" if marker is None else "stale (embedded again since this run planned)"
            raise RaybenchError(f"fusion {fusion}: the embeddings of member {model} on {dataset} are {state}")
        markers.append(marker)
        tables.append(store.read_embeddings(dataset, model))
    _check_same_rows(fusion, [m for m, _ in members], tables)
    fused = fuse([embedding_matrix(t) for t in tables], list(weights))
    first = tables[0]
    table = embedding_table(first.drop_columns(["embedding"]), fused)
    params = [m.num_params for m in markers]
    marker = CellMarker(
        key=key, model=fusion, dataset=dataset, spec_hash=spec_hash,
        manifest_hash=manifest_hash, dim=int(fused.shape[1]), rows=table.num_rows,
        num_params=None if None in params else sum(params),
        embed_seconds=round(time.perf_counter() - start, 3),
        skipped_images=tuple(sorted({s for m in markers for s in m.skipped_images})),
        device=",".join(sorted({m.device for m in markers if m.device})), written=provenance.now(),
        video=markers[0].video,  # the members embedded the same frames
    )
    spec = {"fusion": {"name": fusion, "of": [m for m, _ in members], "weights": list(weights)},
            "members": {m.model: m.key for m in markers}}
    return store.write_embeddings(dataset, fusion, table, marker, spec)


def _check_same_rows(fusion: str, members: list[str], tables: list[pa.Table]) -> None:
    """Members must hold the same images in the same order (they do when they embedded the same
    manifest; on_bad_image: skip drops the same unreadable files for every model)."""
    names = [c for c in _IDENTITY if c in tables[0].column_names]
    first = tables[0].select(names)
    for member, table in zip(members[1:], tables[1:]):
        if table.num_rows != first.num_rows or not table.select(names).equals(first):
            raise RaybenchError(
                f"fusion {fusion}: members {members[0]} ({first.num_rows} rows) and {member} "
                f"({table.num_rows} rows) hold different images; embed both from the same dataset copy")
