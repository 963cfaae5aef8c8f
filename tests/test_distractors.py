"""Distractor sets (raybench.datasets.distractors): read from a folder or a CSV, named by their
content, their cameras read with the dataset's naming; planned as one cell per model however
many datasets name them (raybench.pipeline.plan); checked by `raybench datasets check`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pipeline_helpers import dummy_model, make_market, market_dataset, matrix

from raybench.datasets import load_manifest
from raybench.datasets.check import check_one
from raybench.datasets.common import touch
from raybench.datasets.distractors import cameras, load_distractors, set_name
from raybench.datasets.limit import limit_distractors
from raybench.datasets.market1501 import PATTERN
from raybench.errors import DatasetError
from raybench.pipeline import plan as planning
from raybench.rundir.store import RunStore
from raybench.specs import parse_dataset

MARKET_NAMES = ("0000_c1s1_000001_00.jpg", "0000_c6s2_000002_01.jpg", "-1_c3s1_000003_00.jpg")


def distractor_folder(root):
    """Market-named images in nested folders, a name that is not Market's, a stray file."""
    touch(root / "images", MARKET_NAMES[0], f"more/{MARKET_NAMES[1]}", f"more/{MARKET_NAMES[2]}", "frame.png",
          "notes.txt")
    return root / "images"


def test_a_folder_is_read_recursively_and_named_by_its_content(tmp_path):
    folder = distractor_folder(tmp_path / "copy")
    relative = parse_dataset({"name": "a", "adapter": "market1501", "root": str(tmp_path / "copy"),
                              "distractors": "images"}, "t")
    absolute = dataclasses.replace(relative, name="b", distractors=str(folder))
    table = load_distractors(relative)
    assert [p.rsplit("/", 1)[1] for p in table.column("path").to_pylist()] == \
        [MARKET_NAMES[0], "frame.png", MARKET_NAMES[2], MARKET_NAMES[1]]  # by path
    assert set(table.column("split").to_pylist()) == {"gallery"} and set(table.column("pid").to_pylist()) == {0}
    name = set_name(table)
    assert name == set_name(load_distractors(absolute)) and name.startswith("distractors-")
    (folder / MARKET_NAMES[0]).write_bytes(b"x")  # one image changed (its size): another set
    assert set_name(load_distractors(relative)) != name
    np.testing.assert_array_equal(cameras(table.column("path").to_pylist(), PATTERN), [0, -1, 2, 5])


def test_a_csv_lists_the_images_and_bad_input_is_one_clear_error(tmp_path):
    touch(tmp_path / "img", "a.jpg", "b.jpg")
    (tmp_path / "list.csv").write_text(f"path,note\nimg/b.jpg,x\n{tmp_path / 'img' / 'a.jpg'},y\n")
    spec = parse_dataset({"name": "c", "adapter": "folder", "root": str(tmp_path), "distractors": "list.csv"}, "t")
    assert [p.rsplit("/", 1)[1] for p in load_distractors(spec).column("path").to_pylist()] == ["a.jpg", "b.jpg"]
    (tmp_path / "list.csv").write_text("path\nimg/gone.jpg\n")
    with pytest.raises(DatasetError, match=r"list.csv:2: distractor image .*gone.jpg does not exist"):
        load_distractors(spec)
    (tmp_path / "list.csv").write_text("file\nimg/a.jpg\n")
    with pytest.raises(DatasetError, match="no 'path' column"):
        load_distractors(spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_distractors(dataclasses.replace(spec, distractors="empty"))
    with pytest.raises(DatasetError, match="not a folder or a .csv"):
        load_distractors(dataclasses.replace(spec, distractors="missing"))


def test_limit_keeps_the_same_share_of_a_set(tmp_path):
    touch(tmp_path / "d", *(f"{i:05d}.jpg" for i in range(3000)))
    spec = parse_dataset({"name": "c", "adapter": "folder", "root": str(tmp_path), "distractors": "d"}, "t")
    table = load_distractors(spec)
    kept = limit_distractors(table, 75)  # 75 of a typical 750 query identities: a tenth
    assert 240 < kept.num_rows < 360 and limit_distractors(table, 75).equals(kept)


def test_two_datasets_naming_one_folder_share_one_cell_per_model(tmp_path):
    root = make_market(tmp_path / "mkt", ids=3)
    extra = distractor_folder(tmp_path / "extra")
    specs = [dataclasses.replace(market_dataset(name, root), distractors=str(extra)) for name in ("a", "b")]
    loaded = {s.name: planning.load_images(s, load_manifest) for s in specs}
    datasets = planning.attach_distractors(loaded)
    assert datasets["a"].distractors is datasets["b"].distractors
    models = [dummy_model("m1"), dummy_model("m2")]
    store = RunStore.open(tmp_path / "run")
    cells = planning.plan_cells(matrix(models, specs), datasets, store, False)
    sets = [c for c in cells if c.kind == planning.DISTRACTORS]
    assert [(c.model.name, c.state) for c in sets] == [("m1", "embed"), ("m2", "embed")]
    by_model = {c.model.name: c for c in sets}
    for cell in cells:
        if cell.kind == planning.DATASET:
            assert cell.distractors is by_model[cell.model.name]
    groups = planning.group_by_model(cells)
    assert [[c.data.name for c in group] for _, group in groups] == [[sets[0].data.name, "a", "b"]] * 2
    spec = specs[0]
    assert planning.eval_hash(spec, matrix(models, specs).eval) != \
        planning.eval_hash(spec, matrix(models, specs).eval, distractors=sets[0].key)
    # a folder that cannot be read fails its set's cells and the datasets that name it, at once
    gone = dataclasses.replace(specs[0], distractors=str(tmp_path / "nowhere"))
    failed = planning.plan_cells(matrix(models[:1], [gone]),
                                 planning.attach_distractors({"a": dataclasses.replace(loaded["a"], spec=gone)}),
                                 store, False)
    assert [(c.kind, c.state) for c in failed] == [("dataset", "failed"), ("distractors", "failed")]
    assert "nowhere" in failed[0].reason


def test_datasets_check_counts_the_set(tmp_path):
    make_market(tmp_path / "mkt", ids=3)
    distractor_folder(tmp_path / "mkt")
    spec = parse_dataset({"name": "m", "adapter": "folder", "root": str(tmp_path / "mkt"), "distractors": "images",
                          "stats": {"distractors": {"images": 500000}}}, "t")
    row = check_one(spec, tmp_path)
    assert row["distractors"] == {"images": 4, "named": 3, "published": 500000}
    assert (row["status"], row["detail"]) == ("differs", "distractors: 4 images (published 500000)")


def test_distractor_rows_join_every_trials_gallery():
    """eval.protocol: rows of trial ALL_TRIALS (a distractor set joined to a dataset with
    published splits) are in each trial's gallery, as if each trial listed them."""
    from raybench.eval import evaluate_features
    from raybench.eval.protocol import ALL_TRIALS, DISTRACTOR_PID, score
    from raybench.specs import EvalSpec, Protocol

    rng = np.random.default_rng(2)
    n, extra = 40, 25
    emb = rng.standard_normal((2 * n + extra, 8)).astype(np.float32)
    pid = np.concatenate([np.tile(rng.integers(1, 6, n), 2), np.full(extra, DISTRACTOR_PID)])
    camid = rng.integers(0, 3, len(pid))
    split = np.array((["query"] * 10 + ["gallery"] * (n - 10)) * 2 + ["gallery"] * extra, dtype=object)
    trial = np.concatenate([np.zeros(n, int), np.ones(n, int), np.full(extra, ALL_TRIALS)])
    cols = {"path": np.array([f"{i}.jpg" for i in range(len(pid))], dtype=object), "pid": pid, "camid": camid,
            "split": split, "trial": trial, "embedding": emb}
    scored = score(cols, Protocol(trials=2), EvalSpec(max_rank=5))
    for t, got in enumerate(scored.main.trials):
        rows = np.flatnonzero(trial == t)
        q, g = rows[:10], np.concatenate([rows[10:], np.arange(2 * n, 2 * n + extra)])
        ref = evaluate_features(emb[q], emb[g], pid[q], pid[g], camid[q], camid[g], device="cpu", max_rank=5)
        assert (got["mAP"], got["num_gallery"]) == (ref.mAP, n - 10 + extra)
