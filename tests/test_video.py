"""Video ReID without Ray: frames pooled per tracklet as torchreid pools them, tracklets scored
as torchreid's evaluate_rank scores its pooled features, and the cost side (embed_frames,
--limit, unreadable frames, progress, the rehearsal's frame counts).

The peers: torchreid's own VideoDataset.__getitem__ (its 'evenly' sampling, with image reading
stubbed so each frame is its index) and torchreid's compute_distance_matrix + evaluate_rank on
features pooled here by a plain loop over tracklets. test_video_torchreid.py runs the real
OSNet on real crops through the Ray pipeline against torchreid's Mars class.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from eval_references import torchreid_metrics

from raybench.errors import EvaluationError
from raybench.eval import protocol
from raybench.eval.tracklets import evenly_indices, pool_tracklets, selected_rows
from raybench.specs import EvalSpec, EvalVariant, Protocol, frames_count, parse_dataset

DIM = 6


@pytest.mark.parametrize("seq_len", [4, 15])
def test_evenly_is_torchreids_test_sampling(seq_len, monkeypatch):
    pytest.importorskip("torchreid")
    import torch
    from torchreid.reid.data.datasets import dataset as torchreid_dataset

    monkeypatch.setattr(torchreid_dataset, "read_image", int)  # a frame "image" is its index
    lengths = list(range(1, 3 * seq_len + 2)) + [920]
    tracklets = [(tuple(str(i) for i in range(n)), 0, 0) for n in lengths]
    video = torchreid_dataset.VideoDataset(tracklets, tracklets, tracklets, seq_len=seq_len, sample_method="evenly",
                                           transform=lambda i: torch.tensor([i]), mode="query", verbose=False)
    theirs = np.stack([video[k]["img"].numpy().ravel() for k in range(len(lengths))])
    assert np.array_equal(evenly_indices(np.array(lengths), seq_len), theirs)


def video_columns(seed: int = 0, trials: int = 1) -> dict:
    """Frame columns of a video cell, rows shuffled: per trial 5 identities, each with a query
    tracklet in camera 0 and two gallery tracklets (cameras 0 and 1) of 1..9 frames, plus a
    distractor tracklet (pid 0); the query tracklet of pid 1 is in the gallery too under the same
    name (MARS's official gallery)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, DIM))
    rows = []
    for t in range(trials):
        tracklets = [(f"{p:04d}q", p, 0, ("query",) + (("gallery",) if p == 1 else ())) for p in range(1, 6)]
        tracklets += [(f"{p:04d}g{c}", p, c, ("gallery",)) for p in range(1, 6) for c in (0, 1)]
        tracklets += [("0000d", 0, 1, ("gallery",))]
        for name, pid, cam, splits in tracklets:
            for f in range(int(rng.integers(1, 10))):
                feature = centres[pid] + rng.standard_normal(DIM)
                rows += [(name, f, pid, cam, split, t, feature) for split in splits]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    names, frames, pids, cams, splits, trial, emb = zip(*rows)
    return {"tracklet": np.array(names, dtype=object), "frame": np.array(frames), "pid": np.array(pids),
            "camid": np.array(cams), "split": np.array(splits, dtype=object),
            "path": np.array([f"/v/{n}/{f}.jpg" for n, f in zip(names, frames)], dtype=object),
            "embedding": np.array(emb, dtype=np.float32), "trial": np.array(trial) if trials > 1 else None}


def pooled_by_loop(cols: dict, pool: str, frames: str) -> dict:
    """A tracklet per (trial, split, name), its frames sorted by frame, torchreid's sample
    (evenly:N) or all of them, then torch.mean / torch.max as torchreid's video engine pools."""
    import torch

    trial = cols["trial"] if cols["trial"] is not None else np.zeros(len(cols["pid"]), int)
    keys = sorted({(int(t), s, n) for t, s, n in zip(trial, cols["split"], cols["tracklet"])})
    out = {"path": [], "pid": [], "camid": [], "split": [], "trial": [], "embedding": []}
    for t, s, n in keys:
        rows = [i for i in range(len(trial)) if (trial[i], cols["split"][i], cols["tracklet"][i]) == (t, s, n)]
        rows.sort(key=lambda i: cols["frame"][i])
        count = frames_count(frames)
        if count:
            rows = [rows[k] for k in evenly_indices(np.array([len(rows)]), count)[0]]
        feats = torch.from_numpy(cols["embedding"][rows])
        out["embedding"].append((feats.mean(0) if pool == "mean" else feats.max(0)[0]).numpy())
        for name, value in (("path", n), ("pid", cols["pid"][rows[0]]), ("camid", cols["camid"][rows[0]]),
                            ("split", s), ("trial", t)):
            out[name].append(value)
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("pool,frames", [("mean", "all"), ("max", "all"), ("mean", "evenly:3"), ("max", "evenly:4")])
def test_pooling_equals_a_loop_over_tracklets(pool, frames):
    cols = video_columns(seed=1, trials=2)
    ours = pool_tracklets(cols, pool, frames)
    ref = pooled_by_loop(cols, pool, frames)
    order = np.lexsort((ours["path"].astype(str), ours["split"].astype(str), ours["trial"]))
    assert len(ours["path"]) == len(ref["path"]) == 2 * 17
    for name in ("path", "pid", "camid", "split", "trial"):
        assert np.array_equal(ours[name][order], ref[name]), name
    assert np.allclose(ours["embedding"][order], ref["embedding"], atol=1e-6)
    expected_frames = frames_count(frames)
    assert (ours["frames"] == expected_frames).all() if expected_frames else ours["frames"].sum() == len(cols["pid"])


def test_a_video_cell_scores_as_torchreid_scores_the_pooled_tracklets():
    cols = video_columns(seed=2)
    spec = EvalSpec(normalize=False, max_rank=10)
    variants = (EvalVariant("max", dataclasses.replace(spec, pool="max")),
                EvalVariant("evenly2", dataclasses.replace(spec, frames="evenly:2", normalize=True)))
    scored = protocol.score(cols, Protocol(), spec, variants=variants)
    for block, (pool, frames, normalize) in ((scored.main, ("mean", "all", False)),
                                             (scored.variants["max"], ("max", "all", False)),
                                             (scored.variants["evenly2"], ("mean", "evenly:2", True))):
        ref = pooled_by_loop(cols, pool, frames)
        q, g = ref["split"] == "query", ref["split"] == "gallery"
        mAP, mINP, cmc = torchreid_metrics(ref["embedding"][q], ref["embedding"][g], ref["pid"][q], ref["pid"][g],
                                           ref["camid"][q], ref["camid"][g], normalize=normalize, max_rank=10)
        assert block.mAP == pytest.approx(mAP, abs=1e-9) and block.mINP == pytest.approx(mINP, abs=1e-9)
        assert np.allclose(block.cmc, cmc, atol=1e-9)
        assert (block.num_query, block.num_gallery) == (5, 12)  # tracklets, not frames
    assert scored.pooling == {"pool": "mean", "frames": "all"}
    assert scored.variants["evenly2"].scoring["frames"] == "evenly:2"
    assert sorted(scored.main.per_query["path"]) == [f"{p:04d}q" for p in range(1, 6)]  # each query a tracklet


def test_a_tracklet_of_two_people_is_named():
    cols = video_columns()
    cols["pid"][np.flatnonzero(cols["tracklet"] == "0003g1")[0]] = 4
    with pytest.raises(EvaluationError, match="tracklet '0003g1': its frames have different pids"):
        protocol.score(cols, Protocol(), EvalSpec())


def test_embed_frames_keeps_exactly_what_evenly_pools():
    cols = video_columns(seed=3, trials=2)
    keep = selected_rows(cols, "evenly:3")
    lengths = pool_tracklets(cols, "mean", "all")["frames"]
    assert keep.sum() == np.minimum(lengths, 3).sum()  # a short tracklet's repeats are one row
    kept = {k: (v[keep] if v is not None else None) for k, v in cols.items()}
    for pool in ("mean", "max"):
        a, b = pool_tracklets(cols, pool, "evenly:3"), pool_tracklets(kept, pool, "evenly:3")
        assert np.array_equal(a["path"], b["path"]) and np.allclose(a["embedding"], b["embedding"])
    assert selected_rows(cols, "all").all()


def test_pooling_defaults_keep_old_eval_hashes():
    assert EvalSpec(pool="mean", frames="all").hash_fields() == EvalSpec().hash_fields()
    assert "pool" not in EvalSpec().hash_fields() and "frames" not in EvalSpec().hash_fields()
    assert EvalSpec(pool="max").hash_fields()["pool"] == "max"
    assert EvalSpec(frames="evenly:15").hash_fields()["frames"] == "evenly:15"


# -- the cost side: on MARS's tiny copy, through the planner and the embedding stages -----------


def _mars_cell(tmp_path, crops, embed_frames="all", limit=None):
    """A MARS tiny copy whose frames are real JPEGs, except the frames named in ``bad``."""
    from pipeline_helpers import dummy_model

    from raybench.datasets import load_manifest, mars
    from raybench.pipeline import plan as planning

    root = mars.tiny_copy(tmp_path).root
    for frame in (root / "mars" / "bbox_test").rglob("*.jpg"):
        if frame.name not in BAD:
            frame.write_bytes(crops[0].read_bytes())
    spec = parse_dataset({"name": "mars-tiny", "adapter": "mars", "root": str(root), "embed_frames": embed_frames},
                         "test")
    data = planning.load_images(spec, load_manifest, limit=limit)
    return planning.Cell(dummy_model("m", 3), data, planning.EMBED, "k")


#: one frame of pid 1's query tracklet, and the only frame of pid 2's gallery tracklet
BAD = ("0001C1T0001F002.jpg", "0002C5T0003F001.jpg")


def test_unreadable_frames_name_their_tracklets_and_progress_counts_tracklets(tmp_path, crops):
    from test_pipeline_units import _embed, _file

    from raybench.pipeline.collect import CellBuffer, finish, video_record
    from raybench.pipeline.parts import Parts
    from raybench.rundir.store import RunStore

    cell = _mars_cell(tmp_path, crops)
    assert cell.data.video == {"tracklets": 6, "frames": 12, "embed_frames": "all", "frames_in_copy": 12}
    buffer, parts = CellBuffer(cell), Parts.open(RunStore.open(tmp_path / "run"), [cell])
    assert _file(buffer, _embed(cell, list(range(6)), parts)) == 6
    first = buffer.take_tracklets()
    assert _file(buffer, _embed(cell, list(range(6, 12)), parts)) == 6
    assert first + buffer.take_tracklets() == 6 and buffer.take_tracklets() == 0
    rows, skipped, failure = finish(buffer, "skip")
    assert failure is None and sorted(p.rsplit("/", 1)[1] for p in skipped) == sorted(BAD)
    record = video_record(buffer)
    assert record["partial"] == {"0001C1T0001": "2 of 3 frames"} and record["partial_count"] == 1
    assert record["skipped"] == ["0002C5T0003"] and record["skipped_count"] == 1
    assert rows.num_rows == 10 and "0002C5T0003" not in rows.column("tracklet").to_pylist()


def test_embed_frames_and_limit_keep_whole_tracklets(tmp_path, crops):
    cell = _mars_cell(tmp_path, crops, embed_frames="evenly:1")
    table = cell.data.manifest
    assert cell.data.video == {"tracklets": 6, "frames": 6, "embed_frames": "evenly:1", "frames_in_copy": 12}
    assert table.column("frame").to_pylist() == [0] * 6  # evenly:1 reads a tracklet's first frame
    limited = _mars_cell(tmp_path / "l", crops, limit=1).data.manifest
    by_tracklet = {}
    for row in limited.to_pylist():
        by_tracklet.setdefault(row["tracklet"], []).append(row["frame"])
    full = {}
    for row in _mars_cell(tmp_path / "f", crops).data.manifest.to_pylist():
        full.setdefault(row["tracklet"], []).append(row["frame"])
    assert {t: full[t] for t in by_tracklet} == by_tracklet  # every kept tracklet has all its frames
    assert {r["pid"] for r in limited.to_pylist() if r["split"] == "query"} == {1}


def test_embed_frames_on_an_image_dataset_fails_its_cells(tmp_path):
    from pipeline_helpers import make_market

    from raybench.datasets import load_manifest
    from raybench.pipeline import plan as planning

    spec = parse_dataset({"name": "m", "adapter": "market1501", "root": str(make_market(tmp_path, ids=2)),
                          "embed_frames": "evenly:4"}, "test")
    assert planning.load_images(spec, load_manifest).error == \
        "m: embed_frames (evenly:4) applies to video datasets; this one has no tracklets"


def test_progress_line_counts_frames_and_tracklets():
    from raybench.pipeline.progress import Progress

    lines = []
    progress = Progress(2, 0, 500, echo=lines.append, interval=0, clock=lambda: 0.0, tracklets_total=40,
                        frames_total=500)
    progress.start_model("m")
    progress.add_images(120, tracklets=9)
    assert lines[-1] == "cells 0/2 | m: frames 120/500, tracklets 9/40 | - img/s | ETA -"


def test_rehearsal_counts_a_video_cell_in_frames():
    from raybench.bench.rehearse import eval_images
    from raybench.catalog import load_dataset_catalog

    catalog = load_dataset_catalog()
    assert eval_images(catalog["mars"]) == (657709, "eval_images")
    evenly = dataclasses.replace(catalog["mars"], embed_frames="evenly:15")
    assert eval_images(evenly) == (15 * (1980 + 9330), "at most 15 frames x query + gallery tracklets (embed_frames)")
    duke = eval_images(catalog["dukemtmc-videoreid"])
    assert duke[0] == 445764 + round(445764 / 2636 * 702) and "estimate" in duke[1]


def test_published_video_counts_are_checked_in_tracklets():
    from raybench.datasets.manifest import compare_stats, make_manifest

    table = make_manifest([{"path": f"/f{i}.jpg", "pid": 1, "camid": 0, "split": "query", "tracklet": f"t{i // 2}",
                            "frame": i % 2} for i in range(4)])
    assert compare_stats(table, {"query": {"images": 4, "tracklets": 3}}) == ["query tracklets: 2 (published 3)"]
    assert pa.types.is_string(table.schema.field("tracklet").type)


def test_report_has_a_video_table_and_rank_lists_of_tracklet_strips(tmp_path, crops):
    """A committed video cell (the store's writer), scored by the reducer's own function, then
    the report: the video table states pooling, counts and the variant; the rank list shows
    each tracklet as a strip of its frames."""
    from raybench.pipeline.reducer import CellJob, evaluate_cell
    from raybench.report.build import ReportOptions, build_report
    from raybench.rundir.records import CellMarker
    from raybench.rundir.store import RunStore, embedding_table

    cell = _mars_cell(tmp_path / "data", crops)
    data, store = cell.data, RunStore.open(tmp_path / "run")
    rng = np.random.default_rng(0)
    unique = rng.standard_normal((len(data.paths), 4)).astype(np.float32)
    marker = CellMarker(key="k", model="m", dataset=data.name, spec_hash="s", manifest_hash=data.hash, dim=4,
                        rows=data.manifest.num_rows, video=data.video)
    marker = store.write_embeddings(data.name, "m", embedding_table(data.manifest, unique[data.index]), marker)
    job = CellJob(model="m", dataset=data.spec, paradigm="baseline", spec_hash="s", cell_key="k",
                  manifest_hash=data.hash, eval_hash="e", marker=marker)
    spec = EvalSpec(max_rank=5)
    result = evaluate_cell(store, job, spec, variants=(EvalVariant("max", dataclasses.replace(spec, pool="max")),))
    assert result.ok and result.video == data.video and result.num_query == 3
    report = build_report(tmp_path / "run", ReportOptions(ranklist_queries=2, bootstraps=20))
    md = (report.out / "results.md").read_text()
    assert "## Video ReID: tracklets" in md and "Variants' pooling: `max` max of all frames." in md
    line = next(x for x in md.splitlines() if x.startswith("| m | mars-tiny |"))
    assert line == (f"| m | mars-tiny | mean of all frames | {result.num_valid_query} / 3 | 3 | 12 | "
                    f"{100 * result.mAP:.1f} | {100 * result.cmc[0]:.1f} | {100 * result.variants['max'].mAP:.1f} | - |")
    page = (report.out / "ranklists" / "mars-tiny__m.html").read_text()
    strips = page.split("<figure class='")[1:]
    assert strips and all("strip'" in s.split(">")[0] for s in strips)
    query = strips[0]
    # 0001C1T0001: its 3 frames, the unreadable one (BAD) said to be so
    assert query.startswith("query strip") and query.count("<img ") == 2 and "image not found: 0001C1T0001F002" in query
    assert "Tracklets pooled by mean over all frames" in page and "gallery tracklets" in page


def test_a_person_folder_is_read_by_its_number_or_named():
    from raybench.datasets.video import numbered
    from raybench.errors import DatasetError

    assert numbered("person_0012", "person_", "prid2011", "LAYOUT") == 12
    with pytest.raises(DatasetError, match=r"prid2011: person folder 'person_x1' is not named person_<number>\. "
                                           r"Expected layout: LAYOUT"):
        numbered("person_x1", "person_", "prid2011", "LAYOUT")
