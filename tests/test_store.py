"""The run store: atomic cells on a local path, a file:// URI and other pyarrow filesystems."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

from raybench.datasets.manifest import make_manifest
from raybench.rundir.records import CellMarker, CellResult, RunFileError
from raybench.rundir.store import SUCCESS, RunStore, embedding_schema, embedding_table


def _marker(key: str, rows: int = 3) -> CellMarker:
    return CellMarker(key=key, model="m", dataset="ds", spec_hash="s", manifest_hash="h", dim=2, rows=rows)


def _manifest(trials: bool = False) -> pa.Table:
    rows = [
        {"path": "/d/q1.jpg", "pid": 1, "camid": 0, "split": "query"},
        {"path": "/d/g1.jpg", "pid": 1, "camid": 1, "split": "gallery"},
        {"path": "/d/g2.jpg", "pid": 2, "camid": 1, "split": "gallery"},
    ]
    if trials:
        rows = [{**r, "trial": t} for t in (0, 1) for r in rows]
    return make_manifest(rows)


def _stores(tmp_path):
    yield RunStore.open(tmp_path / "plain")
    yield RunStore.open(f"file://{tmp_path}/uri")
    yield RunStore(pafs.SubTreeFileSystem(str(tmp_path / "sub"), pafs.LocalFileSystem()), "run", "subtree")
    yield RunStore(pafs._MockFileSystem(), "bucket/run", "mock://bucket/run")


@pytest.mark.parametrize("trials", [False, True])
def test_embedding_table_mirrors_the_manifest_with_the_declared_schema(trials):
    manifest = _manifest(trials)
    emb = np.arange(manifest.num_rows * 4, dtype=np.float32).reshape(-1, 4)
    table = embedding_table(manifest, emb)
    assert table.schema.equals(embedding_schema(4, trials))
    assert table.column("path").to_pylist() == manifest.column("path").to_pylist()
    assert np.array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), emb)
    assert pa.types.is_fixed_size_list(table.schema.field("embedding").type)  # not a Ray extension type


def test_cells_commit_atomically_on_every_filesystem(tmp_path):
    manifest = _manifest()
    table = embedding_table(manifest, np.ones((3, 2), np.float32))
    for store in _stores(tmp_path):
        rel = store.embeddings_dir("ds", "m")
        assert store.marker(rel) is None and not store.is_finished(rel, "k1")
        store.write_embeddings("ds", "m", table, _marker("k1"), spec={"model": "m"})
        assert store.is_finished(rel, "k1") and not store.is_finished(rel, "k2")
        assert store.marker(rel)["rows"] == 3 and store.cell_marker("ds", "m") == _marker("k1")
        assert store.read_embeddings("ds", "m").equals(table)
        # A second commit (a --force rerun) replaces the cell, leaving no stray files behind.
        store.write_embeddings("ds", "m", table.slice(0, 2), _marker("k2", rows=2))
        assert store.is_finished(rel, "k2") and store.read_embeddings("ds", "m").num_rows == 2
        names = {i.base_name for i in store.fs.get_file_info(pafs.FileSelector(store.path("embeddings/ds")))}
        assert names == {"m"}, f"{store.uri}: staging directories left behind: {names}"


def test_a_cell_killed_before_its_marker_is_not_finished(tmp_path):
    store = RunStore.open(tmp_path)
    rel = store.embeddings_dir("ds", "m")
    tmp = store.staging_dir(rel)
    pq.write_table(embedding_table(_manifest(), np.ones((3, 2), np.float32)), store.path(tmp, "part-00000.parquet"))
    assert not store.is_finished(rel, "k")  # staged, never committed
    store.commit(tmp, rel, {"key": "k"})
    (tmp_path / rel / SUCCESS).unlink()  # killed between the last move and the marker
    assert not store.is_finished(rel, "k")


def test_parquet_reads_with_plain_pyarrow(tmp_path):
    store = RunStore.open(tmp_path)
    store.write_embeddings("ds", "m", embedding_table(_manifest(True), np.ones((6, 3), np.float32)),
                           dataclasses.replace(_marker("k", rows=6), dim=3))
    (part,) = (tmp_path / "embeddings/ds/m").glob("*.parquet")
    assert pq.read_table(part).schema.equals(embedding_schema(3, trials=True))


def _result(m_ap: float) -> CellResult:
    return CellResult(model="m", dataset="ds", status="ok", mAP=m_ap, mINP=0.1, cmc=(0.5, 1.0),
                      num_query=2, num_valid_query=2, num_gallery=4)


def test_json_is_replaced_whole_and_torn_files_are_named(tmp_path):
    for store in _stores(tmp_path):
        store.write_result(_result(0.5))
        store.write_result(_result(0.75))
        assert store.read_result("ds", "m") == _result(0.75)
        assert store.read_result("ds", "other") is None
        assert store.result_files() == ["results/ds/m.json"]
    (tmp_path / "plain/results/ds/m.json").write_text('{"model": ')
    with pytest.raises(RunFileError, match=r"results/ds/m.json.*not valid JSON"):
        RunStore.open(tmp_path / "plain").read_result("ds", "m")
    assert RunStore.open(tmp_path / "plain").read_json("results/ds/m.json") is None  # torn: as never written


def test_truncated_or_uncommitted_embeddings_are_named(tmp_path):
    store = RunStore.open(tmp_path)
    with pytest.raises(RunFileError, match="_SUCCESS.*never committed"):
        store.read_embeddings("ds", "m")
    store.write_embeddings("ds", "m", embedding_table(_manifest(), np.ones((3, 2), np.float32)), _marker("k"))
    part = tmp_path / "embeddings/ds/m/part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-40])
    with pytest.raises(RunFileError, match=f"{part}.*unreadable Parquet"):
        store.read_embeddings("ds", "m")


def test_out_uris_and_paths(tmp_path):
    assert RunStore.open(tmp_path).is_local and RunStore.open(f"file://{tmp_path}").is_local
    assert RunStore.open(f"file://{tmp_path}/x").root == f"{tmp_path}/x"
    assert not RunStore(pafs._MockFileSystem(), "b", "mock://b").is_local
    from raybench.errors import RaybenchError

    with pytest.raises(RaybenchError, match="not a usable filesystem URI"):
        RunStore.open("nosuchscheme://bucket/run")
