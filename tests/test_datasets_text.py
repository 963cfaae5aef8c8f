"""Text-to-person datasets: caption tables from the real JSON shapes, validated against the
manifest, and `datasets check` against the published caption counts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raybench.catalog import load_dataset_catalog
from raybench.datasets import cuhkpedes, get_adapter, has_captions, icfgpedes, load_captions, load_manifest, rstpreid
from raybench.datasets import published_stats
from raybench.datasets.check import check_one
from raybench.datasets.manifest import CAPTION_SCHEMA, caption_stats, make_captions, validate_captions
from raybench.errors import DatasetError
from raybench.specs import DatasetSpec

TEXT = {"cuhkpedes": cuhkpedes.tiny_copy, "icfgpedes": icfgpedes.tiny_copy, "rstpreid": rstpreid.tiny_copy}


@pytest.mark.parametrize("adapter", sorted(TEXT))
def test_captions_are_the_test_entries_captions_in_json_order(adapter, tmp_path):
    tiny = TEXT[adapter](tmp_path)
    root, options = tiny.root, tiny.options
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
    cuhkpedes.tiny_copy(tmp_path)
    spec = dataclasses.replace(load_dataset_catalog()["cuhk-pedes"], root=str(tmp_path))
    assert has_captions(spec) and not has_captions(load_dataset_catalog()["market1501"])
    captions = load_captions(spec)
    # ids 5 (two images, five captions) and 6 (one image, two captions); train and val unread
    assert caption_stats(captions) == {"captions": 7, "ids": 2, "images": 3}
    manifest = load_manifest(spec)
    assert set(manifest.column("split").to_pylist()) == {"gallery"}
    assert sorted(manifest.column("pid").to_pylist()) == [5, 5, 6]


def test_datasets_check_compares_caption_counts(tmp_path):
    cuhkpedes.tiny_copy(tmp_path)
    spec = load_dataset_catalog()["cuhk-pedes"]
    row = check_one(spec, tmp_path)
    assert row["status"] == "differs"
    assert "gallery images: 3 (published 3074)" in row["detail"]
    small = dataclasses.replace(spec, stats={"gallery": {"images": 3, "ids": 2},
                                             "captions": {"captions": 7, "ids": 2, "images": 3}})
    assert check_one(small, tmp_path) == {"dataset": "cuhk-pedes", "folder": str(tmp_path / "CUHK-PEDES"), "status": "ok",
                                          "detail": "3 manifest rows and 7 captions match the published statistics"}
    off = dataclasses.replace(small, stats={**small.stats, "captions": {"captions": 6, "ids": 2}})
    assert check_one(off, tmp_path)["detail"] == "query captions: 7 (published 6)"
    more = dataclasses.replace(small, stats={**small.stats, "captions": {"ids": 3, "images": 4}})
    assert check_one(more, tmp_path)["detail"] == "caption ids: 2 (published 3); captioned images: 3 (published 4)"
    assert check_one(spec, tmp_path / "elsewhere")["status"] == "missing"


def test_published_test_counts_are_in_the_catalog():
    catalog = load_dataset_catalog()
    stats = {name: published_stats(catalog[name]) for name in ("cuhk-pedes", "icfg-pedes", "rstpreid")}
    counts = {name: (s["gallery"]["images"], s["captions"]["captions"], s["captions"]["ids"]) for name, s in stats.items()}
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
    entries = [list(e) for e in cuhkpedes.TINY_ENTRIES]
    base = cuhkpedes.PACKAGE.write_copy(tmp_path, [tuple(e) for e in entries])
    records = json.loads((base / "reid_raw.json").read_text())
    if problem == "missing image":
        (base / "imgs" / cuhkpedes.TINY_ENTRIES[4][0]).unlink()
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


# ---------------------------------------------------------------------------------------------
# Synthetic captions: written from what was drawn, offline


SYNTH = {"ids": 8, "cams": 3, "images_per_id": 4, "domain": "a", "seed": 2, "distractors": 3, "junk": 2}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from raybench.datasets.synthetic import generate

    return generate(tmp_path_factory.mktemp("synth") / "s", workers=1, **SYNTH)


def test_synthetic_captions_cover_every_person_image_and_validate(synth_root):
    spec = DatasetSpec(name="synth-text", adapter="synthetic", layout_dir="", root=str(synth_root), options=SYNTH)
    captions = load_captions(spec)
    manifest = load_manifest(spec)
    persons = {r["path"]: (r["pid"], r["split"]) for r in manifest.to_pylist() if r["pid"] > 0}
    got = {r["path"]: (r["pid"], r["split"]) for r in captions.to_pylist()}
    assert captions.num_rows == len(got) == SYNTH["ids"] * SYNTH["images_per_id"]  # one per person image
    assert got == {path: (pid, "train" if split == "train" else "query") for path, (pid, split) in persons.items()}
    assert caption_stats(captions)["images"] == sum(s != "train" for _, s in persons.values())


def test_synthetic_captions_name_what_was_drawn(synth_root):
    from raybench.datasets.synthcaption import colour_name
    from raybench.datasets.synthdraw import DOMAINS, identity_params

    accessories = {"backpack": 0, "handbag": 1, "scarf": 2, "hat": 3}  # their colours in acc_colour
    lower = ("trousers", "shorts", "skirt")
    sleeves = set()
    for record in json.loads((synth_root / "captions.json").read_text()):
        ident = identity_params(SYNTH["seed"], DOMAINS["a"], record["id"])
        [caption] = record["captions"]
        sleeve = "long" if ident["long_sleeves"] else "short"
        assert f"{colour_name(ident['upper'])} {sleeve}-sleeved top" in caption
        assert f"{colour_name(ident['lower'])} {lower[int(ident['lower_type'])]}" in caption
        assert f"{'long' if ident['long_hair'] else 'short'} " in caption.split(" hair")[0][-20:]
        for key, index in accessories.items():
            drawn = f"a {colour_name(ident['acc_colour'][index])} {key}" in caption
            assert drawn == bool(ident[key]) == (f" {key}" in caption), (key, caption)
        sleeves.add(sleeve)
    assert sleeves == {"long", "short"}  # the copy holds both, so the check above is not vacuous


@pytest.mark.parametrize("rgb,name", [((180, 40, 40), "red"), ((40, 60, 120), "navy"), ((235, 235, 230), "white"),
                                      ((30, 30, 35), "black"), ((60, 120, 60), "green"), ((240, 140, 50), "orange")])
def test_palette_colours_get_their_names(rgb, name):
    from raybench.datasets.synthcaption import colour_name

    jitter = np.random.default_rng(0).normal(0, 10, 3)  # synthdraw jitters each colour (sigma 14)
    assert colour_name(rgb) == colour_name(np.asarray(rgb) + jitter) == name


def test_a_synthetic_copy_without_captions_says_so(synth_root, tmp_path):
    import shutil

    from raybench.datasets.synthetic import captions

    copy = shutil.copytree(synth_root, tmp_path / "old")
    (copy / "captions.json").unlink()
    with pytest.raises(DatasetError, match="has no captions.json"):
        captions(copy)


def test_datasets_info_counts_the_captions(tmp_path):
    from click.testing import CliRunner

    from raybench.cli import cli as main

    rstpreid.tiny_copy(tmp_path)
    args = ["datasets", "info", "rstpreid", "--root", str(tmp_path)]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0, text.output
    assert "query captions: 6 of 2 ids, written for 3 images" in text.output
    info = json.loads(CliRunner().invoke(main, args + ["--json"]).output)
    assert info["captions"] == {"captions": 6, "ids": 2, "images": 3}
    assert info["splits"]["gallery"] == {"images": 3, "ids": 2, "cameras": 3} and info["splits"]["query"]["images"] == 0
