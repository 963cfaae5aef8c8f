"""Text-to-person datasets: caption tables from the real JSON shapes, validated against the
manifest, and `datasets check` against the published caption counts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pytest

from raybench.catalog import load_dataset_catalog
from raybench.datasets import get_adapter, has_captions, load_captions, load_manifest
from raybench.datasets.check import check_one
from raybench.datasets.manifest import CAPTION_SCHEMA, caption_stats, make_captions, validate_captions
from raybench.errors import DatasetError
from test_datasets import PEDES_ENTRIES, caption_copy, fake_cuhkpedes, fake_icfgpedes, fake_rstpreid

TEXT = {"cuhkpedes": fake_cuhkpedes, "icfgpedes": fake_icfgpedes, "rstpreid": fake_rstpreid}


@pytest.mark.parametrize("adapter", sorted(TEXT))
def test_captions_are_the_test_entries_captions_in_json_order(adapter, tmp_path):
    root, options, _, _ = TEXT[adapter](tmp_path)
    read = get_adapter(adapter)
    captions = read.captions(root, **options)
    assert captions.schema.equals(CAPTION_SCHEMA)
    annotation = next(p for p in Path(tmp_path).rglob("*.json"))
    key = "img_path" if adapter == "rstpreid" else "file_path"
    expected = [(c, r["id"], r[key]) for r in json.loads(annotation.read_text()) if r["split"] == "test" for c in r["captions"]]
    got = [(r["caption"], r["pid"], Path(r["path"]).relative_to(annotation.parent / "imgs").as_posix())
           for r in captions.to_pylist()]
    assert got == expected
    assert set(captions.column("split").to_pylist()) == {"query"}
    validate_captions(captions, read.parse(root, **options), adapter)


def test_cuhkpedes_counts_and_the_spec_loader(tmp_path):
    fake_cuhkpedes(tmp_path)
    spec = dataclasses.replace(load_dataset_catalog()["cuhk-pedes"], root=str(tmp_path))
    assert has_captions(spec) and not has_captions(load_dataset_catalog()["market1501"])
    captions = load_captions(spec)
    # ids 5 (two images, five captions) and 6 (one image, two captions); train and val unread
    assert caption_stats(captions) == {"captions": 7, "ids": 2, "images": 3}
    manifest = load_manifest(spec)
    assert set(manifest.column("split").to_pylist()) == {"gallery"}
    assert sorted(manifest.column("pid").to_pylist()) == [5, 5, 6]


def test_datasets_check_compares_caption_counts(tmp_path):
    fake_cuhkpedes(tmp_path)
    spec = load_dataset_catalog()["cuhk-pedes"]
    row = check_one(spec, tmp_path)
    assert row["status"] == "differs"
    assert "gallery images: 3 (published 3074)" in row["detail"]
    small = dataclasses.replace(spec, stats={"gallery": {"images": 3, "ids": 2},
                                             "captions": {"captions": 7, "ids": 2, "images": 3}})
    assert check_one(small, tmp_path) == {"dataset": "cuhk-pedes", "folder": str(tmp_path / "CUHK-PEDES"), "status": "ok",
                                          "detail": "3 manifest rows and 7 captions match the published statistics"}
    off = dataclasses.replace(small, stats={**small.stats, "captions": {"captions": 6, "ids": 2}})
    assert check_one(off, tmp_path)["detail"] == "query captions captions: 7 (published 6)"
    assert check_one(spec, tmp_path / "elsewhere")["status"] == "missing"


def test_published_test_counts_are_in_the_catalog():
    catalog = load_dataset_catalog()
    counts = {name: (catalog[name].stats["gallery"]["images"], catalog[name].stats["captions"]["captions"],
                     catalog[name].stats["captions"]["ids"]) for name in ("cuhk-pedes", "icfg-pedes", "rstpreid")}
    assert counts == {"cuhk-pedes": (3074, 6156, 1000), "icfg-pedes": (19848, 19848, 1000), "rstpreid": (1000, 2000, 200)}
    assert all(catalog[name].protocol.camera_filter is False for name in counts)


@pytest.mark.parametrize("problem,message", [
    ("missing image", "1 of the 3 test images listed in reid_raw.json are missing"),
    ("no id", "entry 2 of reid_raw.json has no 'id'"),
    ("caption string", "'captions' must be a list of strings"),
    ("no test split", "has no 'test' entries"),
    ("not json", "is not valid JSON"),
    ("two ids", "is listed with ids 5 and 9"),
])
def test_bad_copies_say_what_is_wrong(problem, message, tmp_path):
    entries = [list(e) for e in PEDES_ENTRIES]
    base = caption_copy(tmp_path, "CUHK-PEDES", "reid_raw.json", "file_path", [tuple(e) for e in entries])
    records = json.loads((base / "reid_raw.json").read_text())
    if problem == "missing image":
        (base / "imgs" / PEDES_ENTRIES[4][0]).unlink()
    elif problem == "no id":
        del records[2]["id"]
    elif problem == "caption string":
        records[3]["captions"] = "a single string"
    elif problem == "no test split":
        records = [r for r in records if r["split"] != "test"]
    elif problem == "two ids":
        records.append({**records[2], "id": 9})
    text = "[{" if problem == "not json" else json.dumps(records)
    (base / "reid_raw.json").write_text(text)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        get_adapter("cuhkpedes").parse(tmp_path)


def test_a_copy_without_its_json_is_malformed_not_missing(tmp_path):
    (tmp_path / "RSTPReid" / "imgs").mkdir(parents=True)
    row = check_one(load_dataset_catalog()["rstpreid"], tmp_path)
    assert row["status"] == "malformed" and "data_captions.json" in row["detail"]


def _manifest(rows):
    from raybench.datasets.manifest import make_manifest

    return make_manifest([{"path": p, "pid": pid, "camid": 0, "split": s} for p, pid, s in rows])


@pytest.mark.parametrize("caption,message", [
    (("a man", 1, "/x/train.jpg", "query"), "not an evaluated image"),
    (("a man", 2, "/x/a.jpg", "query"), "has pid 2, the image has pid 1"),
    (("  ", 1, "/x/a.jpg", "query"), "an empty caption"),
    (("a man", 1, "/x/a.jpg", "gallery"), "unknown caption split 'gallery'"),
    (("a man", 1, "/x/train.jpg", "train"), "no query captions"),
])
def test_validate_captions_rejects(caption, message):
    manifest = _manifest([("/x/a.jpg", 1, "gallery"), ("/x/train.jpg", 1, "train")])
    text, pid, path, split = caption
    with pytest.raises(DatasetError, match=message):
        validate_captions(make_captions([{"caption": text, "pid": pid, "path": path, "split": split}]), manifest, "d")
    wrong = pa.table({"caption": ["a man"], "pid": [1], "path": ["/x/a.jpg"], "split": ["query"]})  # pid int64
    with pytest.raises(DatasetError, match="caption table schema"):
        validate_captions(wrong, manifest, "d")


def test_image_only_adapters_have_no_captions(tmp_path):
    spec = load_dataset_catalog()["market1501"]
    with pytest.raises(DatasetError, match="has no captions"):
        load_captions(dataclasses.replace(spec, root=str(tmp_path)))
