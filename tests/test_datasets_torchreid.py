"""raybench's adapters read a copy exactly as torchreid's own dataset classes do.

torchreid wants its own folder layout under a root (market1501/Market-1501-v15.09.15/...),
so each test builds that layout in tmp with symlinks to the real fixture crops (Market-1501
mini, Duke and MSMT17 file names) or with the adapters' tiny copies (GRID, CUHK03),
parses it both ways and compares (path, pid, camid) for query and gallery. torchreid
relabels train identities to 0..N-1 and raybench keeps the dataset's own, so train is
compared as a partition: the same images grouped into the same identities, same cameras.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, MARKET_MINI, needs_fixtures
from raybench.datasets import cuhk03, get_adapter, grid

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def reid():
    pytest.importorskip("torchreid")
    from torchreid.reid.data.datasets import image

    return image


def link_all(sources, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        os.symlink(source, folder / Path(source).name)


def rows(table, split):
    return sorted((r["path"], r["pid"], r["camid"]) for r in table.to_pylist() if r["split"] == split)


def items(data):
    return sorted((str(path), int(pid), int(camid)) for path, pid, camid, *_ in data)


def partition(records):
    """Images grouped by identity, ignoring identity numbers: {frozenset((path, camid))}."""
    groups = defaultdict(set)
    for path, pid, camid in records:
        groups[pid].add((path, camid))
    return {frozenset(g) for g in groups.values()}


def assert_same(ours, theirs):
    assert rows(ours, "query") == items(theirs.query)
    assert rows(ours, "gallery") == items(theirs.gallery)
    assert partition(rows(ours, "train")) == partition(items(theirs.train))


@needs_fixtures
def test_market1501_fixture_matches_torchreid(reid, tmp_path):
    base = tmp_path / "market1501" / "Market-1501-v15.09.15"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        link_all(sorted((MARKET_MINI / split).iterdir()), base / split)
    theirs = reid.Market1501(root=str(tmp_path), verbose=False)
    ours = get_adapter("market1501").parse(tmp_path)
    assert_same(ours, theirs)
    assert len(rows(ours, "query")) == len(rows(ours, "gallery")) == len(rows(ours, "train")) == 32


@needs_fixtures
def test_duke_crops_match_torchreid(reid, tmp_path):
    crops = sorted((FIXTURES / "crops" / "dukemtmc").glob("*.jpg"))
    base = tmp_path / "dukemtmc-reid" / "DukeMTMC-reID"
    link_all(crops[:8], base / "bounding_box_train")
    link_all(crops[8:12], base / "query")
    link_all(crops[12:], base / "bounding_box_test")
    theirs = reid.DukeMTMCreID(root=str(tmp_path), verbose=False)
    ours = get_adapter("dukemtmcreid").parse(tmp_path / "dukemtmc-reid")
    assert_same(ours, theirs)
    assert {camid for _, _, camid in rows(ours, "gallery") + rows(ours, "query")} <= set(range(8))


@needs_fixtures
def test_msmt17_crops_and_lists_match_torchreid(reid, tmp_path):
    crops = sorted((FIXTURES / "crops" / "msmt17").glob("*.jpg"))
    base = tmp_path / "msmt17" / "MSMT17_V1"
    parts = {"list_train.txt": ("train", crops[:5]), "list_val.txt": ("train", crops[5:7]),
             "list_query.txt": ("test", crops[7:10]), "list_gallery.txt": ("test", crops[10:])}
    for list_name, (folder, files) in parts.items():
        lines = []
        for crop in files:
            pid = crop.name.split("_")[0]
            link_all([crop], base / folder / pid)
            lines.append(f"{pid}/{crop.name} {int(pid)}")
        (base / list_name).write_text("\n".join(lines) + "\n")
    theirs = reid.MSMT17(root=str(tmp_path), verbose=False)
    ours = get_adapter("msmt17").parse(tmp_path / "msmt17", with_val=False)  # torchreid leaves list_val out
    assert_same(ours, theirs)
    with_val = get_adapter("msmt17").parse(tmp_path / "msmt17")
    assert len(rows(with_val, "train")) == 7 and rows(with_val, "gallery") == rows(ours, "gallery")


def test_grid_partitions_match_torchreid(reid, tmp_path):
    # torchreid asserts the real partition size (125 of 250), so the fake has the real scale
    rng = np.random.default_rng(0)
    train_sets = [sorted(rng.permutation(np.arange(1, 251))[:125].tolist()) for _ in range(10)]
    grid.write_tree(tmp_path / "grid", persons=250, distractors=775, train_sets=train_sets)
    ours = get_adapter("grid").parse(tmp_path / "grid")
    for trial in (0, 7):
        theirs = reid.GRID(root=str(tmp_path), split_id=trial, verbose=False)
        table = ours.filter(ours.column("trial").to_numpy() == trial)
        assert_same(table, theirs)
        assert (len(rows(table, "query")), len(rows(table, "gallery")), len(rows(table, "train"))) == (125, 900, 250)


def test_cuhk03_new_protocol_matches_torchreid(reid, tmp_path, monkeypatch):
    pytest.importorskip("imageio")
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    cuhk03.tiny_copy(tmp_path)
    for variant in ("labeled", "detected"):
        theirs = reid.CUHK03(root=str(tmp_path), cuhk03_labeled=variant == "labeled", verbose=False)
        ours = get_adapter("cuhk03").parse(tmp_path, variant=variant)

        def by_name(records):
            return sorted((Path(p).name, pid, camid) for p, pid, camid in records)

        assert by_name(rows(ours, "query")) == by_name(items(theirs.query))
        assert by_name(rows(ours, "gallery")) == by_name(items(theirs.gallery))
        assert partition(by_name(rows(ours, "train"))) == partition(by_name(items(theirs.train)))
        # the pixels: torchreid's PNG and raybench's PNG of each image are the same
        theirs_dir = tmp_path / "cuhk03" / f"images_{variant}"
        for path, _, _ in rows(ours, "gallery"):
            assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(theirs_dir / Path(path).name)))
