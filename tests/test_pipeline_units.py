"""Pipeline pieces without Ray: planning, filing rows into cells, pools, output checks, progress."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pipeline_helpers import dummy_model, market_dataset, matrix

from raybench.datasets.manifest import make_manifest
from raybench.errors import DatasetError, RaybenchError
from raybench.pipeline import plan as planning
from raybench.pipeline.collect import CellBuffer, finish
from raybench.pipeline.failure import BATCH, IMAGE, LOAD, STREAM, Failure
from raybench.pipeline.progress import Progress, format_seconds
from raybench.pipeline.reducer import job_for, result_record, summary_row
from raybench.pipeline.runtime import Cluster, check_out, plan_pool, reducer_selector
from raybench.eval.protocol import Scored
from raybench.metrics import Scores
from raybench.rundir.records import CellMarker, CellResult, RunFileError, scores_json
from raybench.rundir.store import RunStore
from raybench.specs import EvalSpec, EvalVariant


def _manifest(trials: bool = True, images=None):
    names = [str(p) for p in images] if images else [f"/d/{n}.jpg" for n in ("q1", "g1", "g2", "t1")]
    rows = [{"path": path, "pid": pid, "camid": cam, "split": split}
            for path, pid, cam, split in zip(names, (1, 1, 2, 3), (0, 1, 1, 0), ("query", "gallery", "gallery", "train"))]
    if trials:  # an image listed in two trials, with another role in the second
        rows = [{**r, "trial": 0} for r in rows] + [{**rows[1], "split": "query", "trial": 1},
                                                     {**rows[0], "split": "gallery", "trial": 1},
                                                     {**rows[2], "trial": 1}]
    return make_manifest(rows)


def _cell(tmp_path, images, trials: bool = True, **options):
    data = planning.load_images(market_dataset("d", tmp_path), lambda spec: _manifest(trials, images))
    return planning.Cell(dummy_model("m", 3, **options), data, planning.EMBED, "k")


def _embed(cell, rows, parts=None) -> dict:
    """The stages of a stream, without Ray: work rows of ``cell``'s images -> decode
    (embed.load_block) -> the embedding actor (embed.EmbedWorker, writing into ``parts``)."""
    from raybench.models import resolve_preprocess
    from raybench.pipeline.embed import Pool, _path_blocks, load_block, worker_class

    preprocess = resolve_preprocess(cell.model)
    (block,) = _path_blocks(cell.data.paths, 0)
    work = block.take(rows)
    pixels = load_block({n: work.column(n).to_numpy(zero_copy_only=False) for n in work.column_names}, preprocess)
    return worker_class("units", cell.model, preprocess, Pool(), parts=parts)()(pixels)


def _file(buffer, batch) -> int:
    from raybench.pipeline.collect import file_batch

    return file_batch(batch, [buffer])[0]


def test_each_image_is_embedded_once_and_stored_rows_mirror_the_manifest(tmp_path, crops):
    from raybench.pipeline.parts import Parts
    from raybench.rundir.store import embedding_matrix

    cell = _cell(tmp_path, crops)
    data = cell.data
    assert data.paths == tuple(str(p) for p in crops[:3])  # train rows are never embedded
    assert data.manifest.num_rows == 6 and list(data.index) == [0, 1, 2, 1, 0, 2]
    store = RunStore.open(tmp_path / "run")
    parts, buffer = Parts.open(store, [cell]), CellBuffer(cell)
    # Rows arrive out of order, one batch twice (a retried batch): its second part brings no
    # new row and is left out of the commit.
    assert [_file(buffer, _embed(cell, rows, parts)) for rows in ([2, 0], [2, 0], [0, 1])] == [2, 0, 1]
    assert buffer.complete and buffer.num_params == 0 and buffer.dim == 3 and len(buffer.parts) == 2
    rows, skipped, error = finish(buffer, "fail")
    assert error is None and not skipped
    marker = store.commit_embeddings(CellMarker("k", "m", "d", "s", data.hash, buffer.dim, rows.num_rows),
                                     parts.attempt, rows, buffer.parts)
    assert sorted(n for n in marker.files if n.startswith("part-")) == sorted(buffer.parts)
    table = store.read_embeddings("d", "m")
    assert table.column("path").to_pylist() == data.manifest.column("path").to_pylist()
    assert table.column("split").to_pylist() == data.manifest.column("split").to_pylist()
    forward = _embed(cell, [0, 1, 2])["embedding"]  # the actor's own output, nothing written
    assert np.array_equal(embedding_matrix(table), forward[data.index]) and np.ptp(forward) > 0


def test_bad_images_fail_or_are_skipped_per_policy(tmp_path, crops):
    from raybench.pipeline.parts import Parts

    cell = _cell(tmp_path, [crops[0], tmp_path / "g1.jpg", crops[2]], trials=False)  # g1 does not exist
    buffer = CellBuffer(cell)
    batch = _embed(cell, [0, 1, 2], Parts.open(RunStore.open(tmp_path / "run"), [cell]))
    assert list(batch["part"] != "") == [True, False, True]  # an unreadable image is not written
    _file(buffer, batch)
    table, skipped, error = finish(buffer, "fail")
    assert table is None and error.kind == IMAGE and "g1.jpg" in error.message and "on_bad_image" in error.message
    rows, skipped, error = finish(buffer, "skip")
    assert error is None and skipped == [str(tmp_path / "g1.jpg")]
    assert rows.column("path").to_pylist() == [str(crops[0]), str(crops[2])] and rows.column("row").to_pylist() == [0, 2]


def test_an_embedding_error_or_a_short_stream_fails_the_cell(tmp_path, crops):
    from PIL import Image

    black = tmp_path / "black.jpg"
    Image.new("RGB", (16, 32)).save(black)
    from raybench.pipeline.parts import Parts

    cell = _cell(tmp_path, [crops[0], crops[1], black], trials=False, fail_on_black=True)
    buffer, parts = CellBuffer(cell), Parts.open(RunStore.open(tmp_path / "run"), [cell])
    _file(buffer, _embed(cell, [0], parts))
    assert finish(buffer, "fail")[2] == Failure(STREAM, "the stream ended with 2 of 3 images not embedded")
    _file(buffer, _embed(cell, [1, 2], parts))
    failure = finish(buffer, "fail")[2]
    assert failure.kind == BATCH and "model m failed to embed" in failure.message and "fail_on_black" in failure.message
    assert not failure.model_wide


def test_plan_states_follow_the_store(tmp_path):
    store = RunStore.open(tmp_path)
    data = planning.load_images(market_dataset("d", tmp_path), lambda spec: _manifest(trials=False))

    def broken(spec):
        raise DatasetError("d2: no query images found")

    missing = planning.load_images(market_dataset("d2", tmp_path), broken)
    model = dummy_model("m")
    spec = matrix([model], [data.spec, missing.spec])
    datasets = {"d": data, "d2": missing}
    states = lambda force=False: [c.state for c in planning.plan_cells(spec, datasets, store, force)]  # noqa: E731
    assert states() == ["embed", "failed"]
    key = planning.cell_key(model, data)
    table = _embedded(data)
    store.write_embeddings("d", "m", table, CellMarker(key, "m", "d", model.spec_hash(), data.hash, 2, table.num_rows))
    assert states() == ["evaluate", "failed"]  # embeddings current, no result yet
    job = job_for(planning.Cell(model, data, planning.EVALUATE, key), spec.eval)
    store.write_result(result_record(job, spec.eval, OK))
    assert states() == ["done", "failed"] and states(force=True) == ["embed", "failed"]
    # A damaged result (mAP 1.7) is not done: it is scored again from the stored embeddings.
    path = tmp_path / "results/d/m.json"
    path.write_text(path.read_text().replace('"mAP": 0.5', '"mAP": 1.7'))
    (cell, _) = planning.plan_cells(spec, datasets, store, False)
    assert cell.state == "evaluate" and "mAP" in cell.reason and "[0, 1]" in cell.reason
    # New weights (another spec hash) or another eval make the cell stale again.
    other = dummy_model("m", dim=16)
    assert planning.plan_cells(matrix([other], [data.spec]), {"d": data}, store, False)[0].state == "embed"
    stricter = matrix([model], [data.spec])
    stricter = type(stricter)(stricter.name, stricter.models, stricter.datasets, EvalSpec(max_rank=3))
    assert planning.plan_cells(stricter, {"d": data}, store, False)[0].state == "evaluate"
    assert planning.group_by_model(planning.plan_cells(spec, datasets, store, True))[0][0] is model
    # A truncated embeddings part: the cell is embedded again (its result cannot be re-scored).
    (part,) = (tmp_path / "embeddings/d/m").glob("attempt-*/part-*.parquet")
    part.write_bytes(part.read_bytes()[:-30])
    (cell, _) = planning.plan_cells(spec, datasets, store, False)
    assert cell.state == "embed" and str(part) in cell.reason and "bytes" in cell.reason and "committed" in cell.reason


def _embedded(data):
    from raybench.rundir.store import embedding_table

    return embedding_table(data.manifest, np.ones((data.manifest.num_rows, 2), np.float32))


def test_result_records_have_every_contract_key_also_when_failed(tmp_path):
    data = planning.load_images(market_dataset("d", tmp_path), lambda spec: _manifest(trials=False))
    embedded = CellMarker("k", "m", "d", "spec", data.hash, dim=2, rows=0, num_params=7, embed_seconds=2.0,
                          device="cpu", skipped_images=("/x.jpg",))
    job = job_for(planning.Cell(dummy_model("m"), data, planning.EMBED, "k"), EvalSpec(), marker=embedded)
    failed = result_record(job, EvalSpec(), failure=Failure(LOAD, "boom")).to_json()
    assert set(failed) == {f.name for f in dataclasses.fields(CellResult)}  # the contract is the dataclass
    assert failed["status"] == "failed" and failed["mAP"] is None and failed["error"] == "boom"
    assert failed["protocol"]["distance"] == "euclidean" and failed["seconds"] == 2.0
    assert failed["error_kind"] == "load"
    # what the marker knew at embedding time is the result's (records.MARKER_FIELDS)
    assert (failed["num_params"], failed["device"], failed["skipped_images"]) == (7, "cpu", ["/x.jpg"])
    ok = result_record(job, EvalSpec(), scored(cmc=(0.25, 0.5, 0.75, 0.8, 0.9)), None, 1.0)
    assert ok.status == "ok" and ok.error is None and ok.seconds == 3.0
    assert summary_row(ok)["R1"] == 0.25 and summary_row(ok)["R5"] == 0.9
    assert CellResult.from_json(ok.to_json()) == ok  # what is written reads back the same


def scored(mAP=0.5, mINP=0.25, cmc=(0.5, 1.0), variants=None, **block) -> Scored:
    """protocol.score's answer for a cell of 2 queries and 4 gallery images."""
    return Scored(Scores(mAP, mINP, cmc, 2, 2, 4, **block), variants or {})


OK = scored()


def test_eval_hash_without_variants_is_the_one_written_before_they_existed():
    """The rule: a matrix without eval variants, AQE off, hashes as it always has, so finished
    results of such a matrix (a `make run` behind results/smoke, say) stay fresh across
    upgrades; the pinned values are those every raybench wrote for it."""
    from raybench.catalog import load_dataset_catalog, load_matrix

    smoke = load_matrix("smoke")
    assert smoke.eval_variants == ()
    assert {d.name: planning.eval_hash(d, smoke.eval, smoke.eval_variants) for d in smoke.datasets} == \
        {"synth-a": "3d5d58b5351c0f02", "synth-b": "3d5d58b5351c0f02"}
    grid, market = load_dataset_catalog()["grid"], load_dataset_catalog()["market1501"]
    assert planning.eval_hash(grid, EvalSpec()) == "2dea7e96e467e8d9"
    assert planning.eval_hash(market, EvalSpec(rerank=True, distance="cosine")) == "c7c33a73d2345ca9"
    # AQE's other fields, while it is off, change nothing; turning it on does
    assert planning.eval_hash(grid, EvalSpec(aqe_alpha=1.0, aqe_times=2)) == "2dea7e96e467e8d9"
    assert planning.eval_hash(grid, EvalSpec(aqe_k=5)) != "2dea7e96e467e8d9"
    # adding, changing, renaming, removing or reordering a variant gives another hash
    rr, aqe = EvalVariant("rr", EvalSpec(rerank=True)), EvalVariant("aqe", EvalSpec(aqe_k=5))
    sets = [(), (rr,), (EvalVariant("rr", EvalSpec(rerank=True, rerank_k1=10)),), (EvalVariant("rr2", rr.eval),),
            (rr, aqe), (aqe, rr), (EvalVariant("aqe", EvalSpec(aqe_k=5, aqe_alpha=1.0)),)]
    assert len({planning.eval_hash(grid, EvalSpec(), variants) for variants in sets}) == len(sets)


def test_variants_make_a_finished_cell_rescore_and_their_metrics_are_validated(tmp_path):
    store = RunStore.open(tmp_path)
    data = planning.load_images(market_dataset("d", tmp_path), lambda spec: _manifest(trials=False))
    model = dummy_model("m")
    spec = matrix([model], [data.spec])
    key = planning.cell_key(model, data)
    table = _embedded(data)
    store.write_embeddings("d", "m", table, CellMarker(key, "m", "d", model.spec_hash(), data.hash, 2, table.num_rows))
    cell = planning.Cell(model, data, planning.EVALUATE, key)
    store.write_result(result_record(job_for(cell, spec.eval), spec.eval, OK))
    states = lambda s: [c.state for c in planning.plan_cells(s, {"d": data}, store, False)]  # noqa: E731
    assert states(spec) == ["done"]
    rr = EvalVariant("rr", EvalSpec(max_rank=10, rerank=True))
    with_rr = dataclasses.replace(spec, eval_variants=(rr,))
    assert states(with_rr) == ["evaluate"]  # scored again from the stored embeddings, not embedded
    variant = Scores(0.75, 0.5, (0.5, 1.0), 2, 2, 4, scoring={"distance": "euclidean", "normalize": True,
                                                              "rerank": True, "max_rank": 10})
    result = result_record(job_for(cell, spec.eval, with_rr.eval_variants), spec.eval,
                           scored(variants={"rr": variant}))
    store.write_result(result)
    assert states(with_rr) == ["done"] and states(spec) == ["evaluate"]  # and removing it re-scores
    assert CellResult.from_json(result.to_json()) == result and result.variants == {"rr": variant}
    assert summary_row(result)["mAP (rr)"] == 0.75
    stored = scores_json(variant)
    for damage, message in [({"mAP": 1.5}, r"variants.rr: field 'mAP': must be a fraction"),
                            ({"cmc": [1.0, 0.5]}, r"variants.rr: field 'cmc': decreases"),
                            ({"num_valid_query": 3}, r"variants.rr: field 'num_valid_query': is 3, more than num_query 2")]:
        with pytest.raises(RunFileError, match=message):
            CellResult.from_json({**result.to_json(), "variants": {"rr": {**stored, **damage}}}, where="r.json")
    failed = result_record(job_for(cell, spec.eval), spec.eval, failure=Failure(LOAD, "boom")).to_json()
    with pytest.raises(RunFileError, match="variants.*a failed result has no scores"):
        CellResult.from_json({**failed, "variants": {"rr": stored}})


def test_pools_keep_a_cpu_for_decoding_and_use_every_gpu():
    assert plan_pool(Cluster(1, 2, 0, 2)).__dict__ == {"actors": 1, "gpus": 0, "cpus": 1, "threads": 2,
                                                       "writes": "workers"}
    assert plan_pool(Cluster(1, 2, 0, 2), threads=1).threads == 1
    assert plan_pool(Cluster(1, 16, 0, 16), actors=3).threads == 5
    assert plan_pool(Cluster(1, 2, 0, 2), actors=4).actors == 1  # never every CPU
    assert plan_pool(Cluster(4, 64, 0, 16)).cpus == 15  # an actor fits on one node
    gpu = plan_pool(Cluster(2, 32, 2, 16))
    assert (gpu.actors, gpu.gpus, gpu.device) == (2, 1, "cuda")
    assert plan_pool(Cluster(1, 16, 1, 16), actors=4).actors == 1


def test_the_reducer_keeps_off_a_driver_node_that_takes_no_work():
    # a head with num-cpus 0 and workers (cluster/): anywhere but the head
    assert reducer_selector("head", {"head": 0, "w1": 8, "w2": 8}) == {"ray.io/node-id": "!head"}
    assert reducer_selector("laptop", {"laptop": 2}) is None  # one node with CPUs: beside the driver
    assert reducer_selector("head", {"head": 4, "w1": 8}) is None  # a head that takes work
    assert reducer_selector("head", {"head": 0}) is None  # no worker yet: nowhere else to go
    assert reducer_selector("head", {"head": 0, "gpu": 0}) is None


def test_node_local_out_is_refused_on_a_multi_node_cluster(tmp_path, monkeypatch):
    from pyarrow import fs as pafs

    monkeypatch.delenv("RAYBENCH_SHARED_OUT", raising=False)
    local, remote = RunStore.open(tmp_path), RunStore(pafs._MockFileSystem(), "b/run", "mock://b/run")
    check_out(local, Cluster(1, 2, 0, 2))
    check_out(remote, Cluster(3, 48, 0, 16))
    with pytest.raises(RaybenchError, match="3 nodes.*--shared-out"):
        check_out(local, Cluster(3, 48, 0, 16))
    check_out(local, Cluster(3, 48, 0, 16), shared=True)
    monkeypatch.setenv("RAYBENCH_SHARED_OUT", "1")
    check_out(local, Cluster(3, 48, 0, 16))


def test_workers_write_the_embeddings_where_they_see_the_run_directory(tmp_path, monkeypatch):
    from pyarrow import fs as pafs

    from raybench.pipeline.runtime import embedding_writes

    monkeypatch.delenv("RAYBENCH_SHARED_OUT", raising=False)
    local, remote = RunStore.open(tmp_path), RunStore(pafs._MockFileSystem(), "b/run", "mock://b/run")
    one, three = Cluster(1, 2, 0, 2), Cluster(3, 48, 0, 16)
    assert embedding_writes(local, one, joined=False) == ("workers", "")  # a Ray of this machine
    assert embedding_writes(remote, three, joined=True) == ("workers", "")  # object storage
    assert embedding_writes(local, three, shared=True, joined=True) == ("workers", "")
    # a cluster the run joined may add nodes: a local --out not declared shared is the driver's
    writes, why = embedding_writes(local, one, joined=True)
    assert writes == "driver" and str(tmp_path) in why and "--shared-out" in why
    monkeypatch.setenv("RAYBENCH_SHARED_OUT", "1")
    assert embedding_writes(local, one, joined=True) == ("workers", "")


def test_progress_shows_cells_rate_and_eta():
    lines, now = [], [0.0]
    progress = Progress(4, 1, 1000, echo=lines.append, interval=5, clock=lambda: now[0])
    progress.start_model("m")
    now[0] = 2.0
    progress.add_images(100)
    assert not lines  # not yet: at most one line per interval
    assert progress.line() == "cells 1/4 | m: images 100/1,000 | - img/s | ETA -"  # one batch: no rate yet
    now[0] = 10.0
    progress.add_images(100)
    # The rate counts from the first batch (at 2 s), so model loading does not dilute it.
    assert lines[-1] == "cells 1/4 | m: images 200/1,000 | 12.5 img/s | ETA 1:04"
    progress.cell_finished(CellResult("m", "d", "ok", mAP=0.5, mINP=0.1, cmc=(0.25, 1.0), num_query=4,
                                      num_valid_query=4, num_gallery=9,
                                      variants={"rr": Scores(0.625, 0.2, (0.5, 1.0), 4, 4, 9)}))
    progress.cell_finished(CellResult("m", "e", "failed", error="boom"))
    assert lines[-2] == "[2/4] done   d x m: mAP 50.00%  R1 25.00%  rr mAP 62.50%"
    assert lines[-1] == "[3/4] FAILED e x m: boom"
    assert format_seconds(3725) == "1:02:05"


def test_progress_sends_every_image_to_the_metrics():
    class Metrics:
        def __init__(self):
            self.sent = {}

        def embedded(self, model, count, rate):
            self.sent[model] = self.sent.get(model, 0) + count

        def remaining(self, images, cells):
            self.left = (images, cells)

    metrics, now = Metrics(), [0.0]
    progress = Progress(2, 0, 30, metrics=metrics, echo=lambda _: None, interval=100, clock=lambda: now[0])
    progress.start_model("a")
    progress.add_images(10)
    progress.start_model("b")
    assert metrics.left == (20, 2)  # what the dashboard's ETA divides by the rate
    progress.add_images(20)
    progress.cell_finished(CellResult("b", "d", "ok", mAP=0.5, mINP=0.5, cmc=(0.5,), num_query=2, num_valid_query=2,
                                      num_gallery=4))
    assert metrics.left == (0, 1)
    progress.close()
    assert metrics.sent == {"a": 10, "b": 20}


def test_bench_embed_ratio_is_the_median_of_paired_rounds():
    from raybench.bench.embed import summarize, summary_line

    def side(steady, startup=None):
        return {"images_per_s_steady": steady, "images_per_s": steady / 2, "images_per_s_with_startup": startup}

    # The machine slows down in round 2: best over best (95 / 100) would call Ray slower, while
    # in every round but the first it kept up with the loop that ran just before it.
    rounds = [{"plain": side(100), "ray": side(95)}, {"plain": side(60), "ray": side(66)},
              {"plain": side(80), "ray": side(84)}]
    record = {"repeat": 3, **summarize(rounds)}
    assert record["paired"]["ratio_without_startup"] == pytest.approx([0.95, 1.1, 1.05])
    assert record["ratio_without_startup"] == pytest.approx(1.05)
    assert record["best_of"]["ratio_without_startup"] == pytest.approx(0.95)
    assert record["target"]["met"] and "median of 3 paired" in record["target"]["judged_on"]
    assert "ratio_with_startup" not in record  # Ray was already up: no start-up figure to pair
    line = summary_line(record)
    assert "median of 3 paired round(s): 1.05x" in line and "target >= 1.0x: met" in line
