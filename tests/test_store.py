"""The run store: atomic cells on a local path, a file:// URI and other pyarrow filesystems."""

from __future__ import annotations

import json

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

from raybench.datasets.manifest import make_manifest
from raybench.errors import RaybenchError
from raybench.rundir.records import CellMarker, CellResult, RunFileError
from raybench.rundir.store import SUCCESS, RunStore, embedding_matrix, embedding_schema, embedding_table, part_schema, row_table


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
    assert table.schema.equals(embedding_schema(4, ["trial"] if trials else []))
    assert table.column("path").to_pylist() == manifest.column("path").to_pylist()
    assert np.array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), emb)
    assert pa.types.is_fixed_size_list(table.schema.field("embedding").type)  # not a Ray extension type


def test_cells_commit_atomically_on_every_filesystem(tmp_path):
    manifest = _manifest()
    table = embedding_table(manifest, np.ones((3, 2), np.float32))
    for store in _stores(tmp_path):
        rel = store.embeddings_dir("ds", "m")
        assert store.marker(rel) is None and not store.is_finished(rel, "k1")
        first = store.write_embeddings("ds", "m", table, _marker("k1"), spec={"model": "m"})
        assert store.is_finished(rel, "k1") and not store.is_finished(rel, "k2")
        assert first == dataclasses.replace(_marker("k1"), attempt=first.attempt, files=first.files)
        assert store.marker(rel)["rows"] == 3 and store.cell_marker("ds", "m") == first
        assert sorted(first.files) == sorted(["manifest.parquet", "spec.json", *[n for n in first.files if n.startswith("part-")]])
        assert store.read_embeddings("ds", "m").equals(table)
        store.check_embeddings("ds", first)
        # A second commit (a --force rerun) replaces the cell, leaving no stray files behind.
        second = store.write_embeddings("ds", "m", table.slice(0, 2), _marker("k2", rows=2))
        assert store.is_finished(rel, "k2") and store.read_embeddings("ds", "m").equals(table.slice(0, 2))
        names = {i.base_name for i in store.fs.get_file_info(pafs.FileSelector(store.path("embeddings/ds")))}
        assert names == {"m"}, f"{store.uri}: staging directories left behind: {names}"
        names = {i.base_name for i in store.fs.get_file_info(pafs.FileSelector(store.path(rel)))}
        assert names == {SUCCESS, second.attempt} and second.attempt != first.attempt, names


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
    table = embedding_table(_manifest(True), np.arange(18, dtype=np.float32).reshape(6, 3))
    marker = store.write_embeddings("ds", "m", table, dataclasses.replace(_marker("k", rows=6), dim=3))
    (part,) = (tmp_path / "embeddings/ds/m" / marker.attempt).glob("part-*.parquet")
    rows = pq.read_table(tmp_path / "embeddings/ds/m" / marker.attempt / "manifest.parquet")
    assert pq.read_table(part).schema.equals(part_schema(3))
    assert rows.schema.equals(embedding_schema(3, ["trial"]).remove(5).append(rows.schema.field("row")))
    # the reader's table is the rows file joined with the parts on ``row`` (here with pandas)
    joined = rows.to_pandas().merge(pq.read_table(part).to_pandas(), on="row")
    assert store.read_embeddings("ds", "m").equals(table)
    assert joined.path.tolist() == table.column("path").to_pylist()
    assert np.array_equal(np.stack(joined.embedding), embedding_matrix(table))


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
    marker = store.write_embeddings("ds", "m", embedding_table(_manifest(), np.ones((3, 2), np.float32)), _marker("k"))
    (part,) = (tmp_path / "embeddings/ds/m" / marker.attempt).glob("part-*.parquet")
    part.write_bytes(part.read_bytes()[:-40])
    with pytest.raises(RunFileError, match=f"{part}.*unreadable Parquet"):
        store.read_embeddings("ds", "m")
    with pytest.raises(RunFileError, match=f"{part}.*{part.stat().st_size} bytes, {part.stat().st_size + 40} committed"):
        store.check_embeddings("ds", marker)
    part.unlink()
    with pytest.raises(RunFileError, match=f"{part}.*missing"):
        store.check_embeddings("ds", marker)


def test_only_the_parts_a_marker_names_are_read(tmp_path):
    """Parts of an attempt that was never committed (a failed batch, an interrupted run), or
    that the commit left out (the first write of a retried batch), are never read, and the
    commit deletes them; a commit that misses one of its parts changes nothing."""
    manifest = _manifest()
    for store in _stores(tmp_path):
        failed = store.attempt_dir("ds", "m", store.new_attempt())
        store.write_part(failed, "part-", np.arange(3), np.full((3, 2), 7, np.float32))
        attempt = store.new_attempt()
        folder = store.attempt_dir("ds", "m", attempt)
        retried = store.write_part(folder, "part-", np.array([0, 1]), np.full((2, 2), 9, np.float32))
        parts = [store.write_part(folder, "part-", np.array([0, 1]), np.array([[0, 1], [2, 3]], np.float32)),
                 store.write_part(folder, "part-", np.array([2]), np.array([[4, 5]], np.float32))]
        rows = row_table(manifest, np.arange(3))
        with pytest.raises(RaybenchError, match="not there"):
            store.commit_embeddings(_marker("k"), attempt, rows, [*parts, "part-lost.parquet"])
        assert store.cell_marker("ds", "m") is None
        marker = store.commit_embeddings(_marker("k"), attempt, rows, parts)
        assert store.read_embeddings("ds", "m").equals(embedding_table(manifest, np.arange(6, dtype=np.float32).reshape(3, 2)))
        names = {i.base_name for i in store.fs.get_file_info(pafs.FileSelector(store.path("embeddings/ds/m"), recursive=True))}
        assert names == {SUCCESS, attempt, *marker.files} and retried not in names, f"{store.uri}: {names}"


def test_names_are_read_as_names(tmp_path):
    """A cell folder named like a hive partition (key=value) adds no column to what is read."""
    store = RunStore.open(tmp_path)
    table = embedding_table(_manifest(), np.ones((3, 2), np.float32))
    store.write_embeddings("ds", "wise=0.5", table, dataclasses.replace(_marker("k"), model="wise=0.5"))
    assert store.read_embeddings("ds", "wise=0.5").equals(table)


def test_a_cell_committed_by_an_older_raybench_is_still_read(tmp_path):
    """Version 1 (before parts): the whole table beside _SUCCESS, as raybench wrote it then. A
    run directory from before the upgrade keeps its cells; a truncated one is still caught."""
    import pyarrow.parquet as pq

    store = RunStore.open(tmp_path)
    table = embedding_table(_manifest(), np.arange(6, dtype=np.float32).reshape(3, 2))
    (tmp_path / "embeddings/ds/m").mkdir(parents=True)
    pq.write_table(table, tmp_path / "embeddings/ds/m/part-00000.parquet", compression="zstd")
    older = {**_marker("k").to_json(), "schema_version": 1}
    del older["attempt"], older["files"]
    store.write_json("embeddings/ds/m/_SUCCESS", older)
    marker = store.cell_marker("ds", "m")
    assert marker.schema_version == 1
    store.check_embeddings("ds", marker)
    assert store.read_embeddings("ds", "m").equals(table)
    store.write_json("embeddings/ds/m/_SUCCESS", {**older, "rows": 4})
    with pytest.raises(RunFileError, match="3 rows stored, 4 committed"):
        store.check_embeddings("ds", store.cell_marker("ds", "m"))


def test_out_uris_and_paths(tmp_path):
    assert RunStore.open(tmp_path).is_local and RunStore.open(f"file://{tmp_path}").is_local
    assert RunStore.open(f"file://{tmp_path}/x").root == f"{tmp_path}/x"
    assert not RunStore(pafs._MockFileSystem(), "b", "mock://b").is_local
    from raybench.errors import RaybenchError

    with pytest.raises(RaybenchError, match="not a usable filesystem URI"):
        RunStore.open("nosuchscheme://bucket/run")


def test_a_result_written_before_scoring_blocks_reads_with_the_metric_names(tmp_path):
    """A version-1 result (text block with r1/r5/r10, num_captions/num_images; spread's
    rank1_std; variants without their counts) reads as blocks with one spelling of each
    metric, and writing it again reads back the same."""
    from raybench.rundir.records import SCHEMA_VERSION

    old = {"model": "m", "dataset": "d", "status": "ok", "mAP": 0.5, "mINP": 0.25, "cmc": [0.5, 0.75],
           "num_query": 4, "num_valid_query": 4, "num_gallery": 9, "spread": {"mAP_std": 0.1, "rank1_std": 0.2},
           "text": {"r1": 0.2, "r5": 0.6, "r10": 0.9, "mAP": 0.3, "mINP": 0.1, "num_captions": 12, "num_images": 9},
           "text_status": "ok",
           "variants": {"rr": {"mAP": 0.6, "mINP": 0.3, "cmc": [0.75, 1.0], "num_valid_query": 4, "spread": None,
                               "eval": {"distance": "euclidean", "normalize": True, "rerank": True, "max_rank": 2}}}}
    result = CellResult.from_json(old, "old.json")
    assert result.schema_version == 1 and SCHEMA_VERSION == 2
    assert result.main.std("R1") == 0.2 and result.main.std("mAP") == 0.1
    text = result.text
    assert [text.value(m) for m in ("R1", "R5", "R10", "mAP", "mINP")] == [0.2, 0.6, 0.9, 0.3, 0.1]
    assert (text.num_query, text.num_gallery) == (12, 9)
    rr = result.variants["rr"]
    assert (rr.num_query, rr.num_gallery, rr.value("R1"), rr.scoring["rerank"]) == (4, 9, 0.75, True)
    again = CellResult.from_json(json.loads(json.dumps(result.to_json())), "again.json")
    assert again.text.value("R5") == 0.6 and again.variants == result.variants and again.main == result.main


def test_no_eval_variant_can_take_a_single_block_s_name():
    """A variant named like the text block would share its columns ("mAP (t2i)")."""
    from raybench.errors import SpecError
    from raybench.rundir.records import RESERVED_BLOCK_NAMES
    from raybench.specs import RESERVED_VARIANT_NAMES, EvalSpec, parse_eval_variants

    assert set(RESERVED_BLOCK_NAMES) <= set(RESERVED_VARIANT_NAMES)
    with pytest.raises(SpecError, match="'t2i'"):
        parse_eval_variants([{"name": "t2i", "rerank": True}], "m.yaml: eval_variants", EvalSpec())


def test_no_eval_variant_can_take_a_setting_s_name(tmp_path):
    """A variant named like a dataset's scoring setting would share its columns ("mAP (cc)")."""
    from raybench.catalog import load_matrix
    from raybench.errors import SpecError

    path = tmp_path / "m.yaml"
    path.write_text("name: m\nmodels: [color-hist]\ndatasets: [ltcc]\neval_variants: [{name: cc, rerank: true}]\n")
    with pytest.raises(SpecError, match="variant 'cc' has the name of a scoring setting of dataset 'ltcc'"):
        load_matrix(str(path))
