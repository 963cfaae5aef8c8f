"""Every dataset adapter parses a fake copy with the real file naming, and bad copies fail clearly.

The fake trees (empty files with real names, small .mat files with the real key structure)
are built here and reused by test_datasets_torchreid.py, which parses the same trees with
torchreid's own dataset classes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from raybench.catalog import load_dataset_catalog
from raybench.datasets import ADAPTERS, Adapter, get_adapter, is_generated, load_manifest, resolve_root
from raybench.datasets.common import DatasetNotFoundError
from raybench.datasets.manifest import compare_stats, split_stats, validate_manifest
from raybench.errors import DatasetError, SpecError
from raybench.specs import DatasetSpec, Protocol


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


# ---------------------------------------------------------------------------------------------
# Fake trees: each returns (root to parse, adapter options, expected per-split (images, ids,
# cameras) -- a list per trial where there are trials --, {(split, file name): (pid, camid)})


def fake_market(tmp: Path):
    base = tmp / "Market-1501-v15.09.15"
    touch(base / "bounding_box_train", "0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077344_04.jpg")
    touch(base / "query", "0001_c1s1_001051_00.jpg", "0001_c5s1_001101_00.jpg", "0003_c6s1_000001_00.jpg")
    touch(base / "bounding_box_test", "0001_c2s1_000301_02.jpg", "0003_c4s2_000002_01.jpg",
          "0000_c3s1_000003_01.jpg", "-1_c1s1_000401_03.jpg", "-1_c2s1_000402_03.jpg", "Thumbs.db")
    expected = {"train": (3, 2, 3), "query": (3, 2, 3), "gallery": (3, 3, 3)}
    return tmp, {}, expected, {("query", "0003_c6s1_000001_00.jpg"): (3, 5), ("gallery", "0000_c3s1_000003_01.jpg"): (0, 2)}


def fake_duke(tmp: Path):
    base = tmp / "DukeMTMC-reID"
    touch(base / "bounding_box_train", "0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg")
    touch(base / "query", "0005_c2_f0046985.jpg", "0008_c8_f0000001.jpg")
    touch(base / "bounding_box_test", "0005_c1_f0045000.jpg", "0008_c7_f0000100.jpg", "4141_c8_f0022224.jpg")
    expected = {"train": (2, 1, 2), "query": (2, 2, 2), "gallery": (3, 3, 3)}
    return base, {}, expected, {("query", "0008_c8_f0000001.jpg"): (8, 7), ("gallery", "4141_c8_f0022224.jpg"): (4141, 7)}


def fake_iust(tmp: Path):
    base = tmp / "IUSTPersonReID"
    touch(base / "bounding_box_train", "0001_c1_s1_000151.jpg")
    touch(base / "query", "0002_c12_s1_000001.jpg", "0003_c3_s1_000002.jpg")
    touch(base / "bounding_box_test", "0002_c17_s1_000300.jpg", "0003_c1_s1_000400.jpg", "-1_c2_s1_000001.jpg")
    expected = {"train": (1, 1, 1), "query": (2, 2, 2), "gallery": (2, 2, 2)}
    return tmp, {}, expected, {("query", "0002_c12_s1_000001.jpg"): (2, 11), ("gallery", "0002_c17_s1_000300.jpg"): (2, 16)}


MSMT_TRAIN = {"0000_000_01_0303morning_0015_0.jpg": 0, "0000_001_15_0303noon_0016_1.jpg": 0,
              "0001_000_05_0303afternoon_0100_0.jpg": 1}
MSMT_VAL = {"0002_000_02_0303morning_0200_0.jpg": 2}
MSMT_QUERY = {"0000_000_10_0113morning_0001_0.jpg": 0, "0001_003_01_0113noon_0002_2_ex.jpg": 1}
MSMT_GALLERY = {"0000_004_03_0113morning_0003_0.jpg": 0, "0001_005_14_0114afternoon_0004_1.jpg": 1,
                "0001_006_07_0114noon_0005_3.jpg": 1}


def fake_msmt(tmp: Path, version: str = "MSMT17_V1"):
    train_dir, test_dir = ("train", "test") if version == "MSMT17_V1" else ("mask_train_v2", "mask_test_v2")
    base = tmp / version
    for folder, list_name, entries in ((train_dir, "list_train.txt", MSMT_TRAIN), (train_dir, "list_val.txt", MSMT_VAL),
                                       (test_dir, "list_query.txt", MSMT_QUERY), (test_dir, "list_gallery.txt", MSMT_GALLERY)):
        lines = []
        for name, pid in entries.items():
            relative = f"{name[:4]}/{name}"
            touch(base / folder, relative)
            lines.append(f"{relative} {pid}")
        (base / list_name).write_text("\n".join(lines) + "\n")
    expected = {"train": (4, 3, 4), "query": (2, 2, 2), "gallery": (3, 2, 3)}  # train: list_train + list_val
    return tmp, {}, expected, {("query", "0000_000_10_0113morning_0001_0.jpg"): (0, 9),
                               ("gallery", "0001_005_14_0114afternoon_0004_1.jpg"): (1, 13)}


def fake_msmt_v2(tmp: Path):
    return fake_msmt(tmp, "MSMT17_V2")


def write_cuhk03_raw(path: Path, pairs: list[list[int]], with_keys=("labeled", "detected")) -> None:
    """cuhk-03.mat as MATLAB v7.3 writes it: per variant a 1x5 (here 1xP) row of references
    to [10, persons] reference arrays, each to a [3, W, H] uint8 image or an empty placeholder."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as mat:
        counter = iter(range(10**6))

        def put(data):
            name = f"#refs#/{next(counter)}"
            mat.create_dataset(name, data=data)
            return mat[name].ref

        for variant in with_keys:
            top = np.empty((1, len(pairs)), dtype=h5py.ref_dtype)
            for pair, images_per_person in enumerate(pairs):
                cells = np.empty((10, len(images_per_person)), dtype=h5py.ref_dtype)
                for person, count in enumerate(images_per_person):
                    for column in range(10):
                        if column in _columns(count):
                            cells[column, person] = put(rng.integers(0, 255, (3, 8, 16), dtype=np.uint8))
                        else:
                            cells[column, person] = put(np.zeros(2, dtype=np.uint64))
                top[0, pair] = put(cells)
            mat.create_dataset(variant, data=top)
        sets = np.empty((1, 1), dtype=h5py.ref_dtype)
        sets[0, 0] = put(np.array([[1, 1]], dtype=np.float64).T)  # classic test split: pair 1, person 1
        mat.create_dataset("testsets", data=sets)


def _columns(count: int) -> list[int]:
    """Which of the 10 columns hold images: the first views first, then the second views."""
    return [0, 5, 1, 6, 2, 7, 3, 8, 4, 9][:count]


def cuhk03_names(pairs: list[list[int]]) -> list[str]:
    names = []
    for pair, persons in enumerate(pairs):
        for person, count in enumerate(persons):
            for column in sorted(_columns(count)):
                names.append(f"{pair + 1}_{person + 1:03d}_{1 if column < 5 else 2}_{column + 1:02d}.png")
    return names


CUHK_PAIRS = [[4, 4, 2], [4, 3]]  # 5 persons (2 pairs); images per person


def write_cuhk03_config(path: Path, names: list[str], drop: str | None = None) -> dict:
    """cuhk03_new_protocol_config_*.mat: filelist, labels, 1-based train/query/gallery indices.
    Persons 1-2 train; persons 3-5 test, one query per view."""
    from scipy.io import savemat

    labels = np.zeros(len(names))
    person_ids = {}
    for i, name in enumerate(names):
        person_ids.setdefault(name[:5], len(person_ids) + 1)
        labels[i] = person_ids[name[:5]]
    train = [i for i, lab in enumerate(labels) if lab <= 2]
    query, seen = [], set()
    for i, (name, lab) in enumerate(zip(names, labels)):
        view = name.split("_")[2]
        if lab > 2 and (lab, view) not in seen:
            seen.add((lab, view))
            query.append(i)
    gallery = [i for i, lab in enumerate(labels) if lab > 2 and i not in query]
    filelist = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        filelist[i, 0] = name
    data = {"filelist": filelist, "labels": labels[:, None], "train_idx": np.array(train)[:, None] + 1,
            "query_idx": np.array(query)[:, None] + 1, "gallery_idx": np.array(gallery)[:, None] + 1,
            "camId": np.array([int(n.split("_")[2]) for n in names])[:, None]}
    if drop:
        data.pop(drop)
    savemat(str(path), data)
    return {"train": len(train), "query": len(query), "gallery": len(gallery)}


def fake_cuhk03(tmp: Path, variant: str = "labeled"):
    base = tmp / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True)
    write_cuhk03_raw(base / "cuhk03_release" / "cuhk-03.mat", CUHK_PAIRS)
    names = cuhk03_names(CUHK_PAIRS)
    counts = {}
    for v in ("labeled", "detected"):
        counts = write_cuhk03_config(base / f"cuhk03_new_protocol_config_{v}.mat", names)
    # persons 3 (2 images: views 1, 2), 4 (4), 5 (3): 3 test ids, queries one per view
    expected = {"train": (counts["train"], 2, 2), "query": (counts["query"], 3, 2), "gallery": (counts["gallery"], 2, 2)}
    return tmp, {"variant": variant}, expected, {("query", "2_001_1_01.png"): (4, 0), ("gallery", "2_001_2_07.png"): (4, 1)}


def fake_cuhk03_detected(tmp: Path):
    return fake_cuhk03(tmp, "detected")


def write_grid_partitions(path: Path, train_sets: list[list[int]], key: str = "trainIdxAll") -> None:
    """features_and_partitions.mat: trainIdxAll is a 1xT cell of structs whose third field is
    the row of train identities (the field names are made up; the order is what counts)."""
    from scipy.io import savemat

    cells = np.empty((1, len(train_sets)), dtype=object)
    for t, ids in enumerate(train_sets):
        others = sorted(set(range(1, 251)) - set(ids))[:3]
        cells[0, t] = {"idx_probe": np.array([others]), "idx_gallery": np.array([others]),
                       "idx_train": np.array([ids], dtype=np.float64)}
    savemat(str(path), {key: cells, "featuresProbe": np.zeros((2, 2))})


def grid_tree(tmp: Path, persons: int, distractors: int, train_sets: list[list[int]]) -> Path:
    base = tmp / "underground_reid"
    for pid in range(1, persons + 1):
        cam = (pid - 1) % 8 + 1
        touch(base / "probe", f"{pid:04d}_{cam}_25004_107_32_106_221.jpeg")
        touch(base / "gallery", f"{pid:04d}_{cam % 8 + 1}_25020_200_40_100_200.jpeg")
    for j in range(distractors):
        touch(base / "gallery", f"0000_{j % 8 + 1}_{30000 + j}_10_20_30_40.jpeg")
    write_grid_partitions(base / "features_and_partitions.mat", train_sets)
    return base


def fake_grid(tmp: Path):
    base = grid_tree(tmp, persons=8, distractors=3, train_sets=[[1, 2, 3, 4], [5, 6, 7, 8], [2, 4, 6, 8]])
    expected = [  # per trial: (images, ids, cameras)
        {"train": (8, 4, 5), "query": (4, 4, 4), "gallery": (7, 5, 6)},
        {"train": (8, 4, 5), "query": (4, 4, 4), "gallery": (7, 5, 5)},
        {"train": (8, 4, 8), "query": (4, 4, 4), "gallery": (7, 5, 6)},
    ]
    return base, {"trials": 3}, expected, {("query", "0005_5_25004_107_32_106_221.jpeg"): (5, 4)}


def fake_celeb(tmp: Path):
    base = tmp / "Celeb-reID"
    touch(base / "train", "1_1_0.jpg", "1_2_0.jpg", "2_1_0.jpg")
    touch(base / "query", "3_1_0.jpg", "4_1_0.jpg")
    touch(base / "gallery", "3_1_1.jpg", "3_2_0.jpg", "4_2_0.jpg", "4_3_1.jpg")
    expected = {"train": (3, 2, 3), "query": (2, 2, 2), "gallery": (4, 2, 4)}
    return tmp, {}, expected, {}


def fake_pku(tmp: Path):
    base = tmp / "PKUv1a_128x48"
    touch(base, *(f"{pid:03d}_{cam}_{img}.png" for pid in range(1, 7) for cam in (1, 2) for img in range(1, 5)))
    expected = {"train": (24, 3, 2), "query": (6, 3, 2), "gallery": (18, 3, 2)}
    return tmp, {"seed": 0}, expected, {}


def fake_last(tmp: Path, subset: str = "test"):
    base = tmp / "last"
    touch(base / "train", "000001/000001_0_0.jpg", "000001/000001_1_0.jpg", "000002/000002_0_0.jpg")
    for sub, ids in (("val", (10, 11)), ("test", (20, 21, 22))):
        touch(base / sub / "query", *(f"{pid:06d}_0_0.jpg" for pid in ids))
        touch(base / sub / "gallery", *(f"{pid:06d}/{pid:06d}_{k}_1.jpg" for pid in ids for k in (1, 2)))
    expected = ({"train": (3, 2, 3), "query": (3, 3, 3), "gallery": (6, 3, 6)} if subset == "test"
                else {"train": (3, 2, 3), "query": (2, 2, 2), "gallery": (4, 2, 4)})
    return tmp, {"subset": subset}, expected, {}


def fake_last_val(tmp: Path):
    return fake_last(tmp, "val")


def fake_folder(tmp: Path):
    base = tmp / "mine"
    touch(base / "train", "0001_c1_a.jpg")
    touch(base / "query", "0002_c10_a.jpg", "0003_c2_a.jpg")
    touch(base / "gallery", "0002_c3_b.jpg", "0003_c1_b.jpg", "0000_c4_x.jpg", "-1_c1_x.jpg")
    expected = {"train": (1, 1, 1), "query": (2, 2, 2), "gallery": (3, 3, 3)}
    return base, {}, expected, {("query", "0002_c10_a.jpg"): (2, 9)}


def fake_folder_csv(tmp: Path):
    touch(tmp / "img", "a.jpg", "b.jpg", "c.jpg", "d.jpg", "junk.jpg")
    (tmp / "list.csv").write_text(
        "path,pid,camid,split\nimg/a.jpg,1,0,train\nimg/b.jpg,2,0,query\n"
        f"{tmp / 'img' / 'c.jpg'},2,1,gallery\nimg/d.jpg,0,2,gallery\nimg/junk.jpg,-1,1,gallery\n"
    )
    expected = {"train": (1, 1, 1), "query": (1, 1, 1), "gallery": (2, 2, 2)}
    return tmp / "list.csv", {}, expected, {("gallery", "d.jpg"): (0, 2)}


def fake_synthetic(tmp: Path):
    from raybench.datasets.synthetic import generate

    generate(tmp / "synth", ids=6, cams=3, images_per_id=4, domain="b", seed=5, distractors=2, junk=3, workers=1)
    params = {"ids": 6, "cams": 3, "images_per_id": 4, "domain": "b", "seed": 5, "distractors": 2, "junk": 3}
    return tmp / "synth", params, None, {}


def caption_copy(tmp: Path, folder: str, annotation: str, path_key: str, entries: list[tuple]) -> Path:
    """A text-to-person copy: folder/imgs/<path> (empty files) and the annotation JSON with the
    real field names; entries are (path, id, split, captions)."""
    import json

    base = tmp / folder
    touch(base / "imgs", *(path for path, _, _, _ in entries))
    records = [{path_key: path, "id": pid, "split": split, "captions": captions} for path, pid, split, captions in entries]
    (base / annotation).write_text(json.dumps(records))
    return base


# (path, id, split, captions) of a CUHK-PEDES-like copy: ids from 1, a val split, an image
# with three captions, an identity with one image; train and val images must not be read.
PEDES_ENTRIES = [
    ("CUHK01/0001001.png", 1, "train", ["a man in a black coat", "black coat, grey trousers"]),
    ("CUHK03/2_10_1.jpg", 7, "val", ["a girl in a red dress", "red dress"]),
    ("CUHK01/0005001.png", 5, "test", ["a woman with a blue bag", "blue bag, white shirt"]),
    ("Market/0005_c2s1_000101_01.jpg", 5, "test", ["she wears a white shirt", "white shirt", "blue shoulder bag"]),
    ("test_query/p6_s1.jpg", 6, "test", ["a boy in green shorts", "green shorts and sandals"]),
]


def fake_cuhkpedes(tmp: Path):
    caption_copy(tmp, "CUHK-PEDES", "reid_raw.json", "file_path", PEDES_ENTRIES)
    expected = {"train": (0, 0, 0), "query": (0, 0, 0), "gallery": (3, 2, 3)}
    return tmp, {}, expected, {("gallery", "p6_s1.jpg"): (6, 2)}


def fake_icfgpedes(tmp: Path):
    entries = [("train/0001/0001_002_01_0303morning_0030_1.jpg", 1, "train", ["a man in a black coat"]),
               ("test/3103/3103_001_05_0303morning_0011_0.jpg", 3103, "test", ["a woman in a long beige coat"]),
               ("test/3103/3103_014_03_0303noon_0002_1.jpg", 3103, "test", ["beige coat and a black bag"]),
               ("test/3104/3104_007_01_0303afternoon_0135_0.jpg", 3104, "test", ["a man in a blue jacket"])]
    # the spelling of IRRA's README (its loader reads ICFG-PEDES.json)
    base = caption_copy(tmp, "ICFG-PEDES", "ICFG_PEDES.json", "file_path", entries)
    expected = {"train": (0, 0, 0), "query": (0, 0, 0), "gallery": (3, 2, 3)}
    return base, {}, expected, {("gallery", "3104_007_01_0303afternoon_0135_0.jpg"): (3104, 2)}


def fake_rstpreid(tmp: Path, subset: str = "test"):
    entries = [("0000_c5_0015.jpg", 0, "train", ["a man", "a man in black"]),
               ("3701_c14_0007.jpg", 3701, "val", ["a woman in red", "red coat"]),
               ("3901_c1_0011.jpg", 3901, "test", ["a man in a white shirt", "white shirt, jeans"]),
               ("3901_c7_0030.jpg", 3901, "test", ["white shirt", "jeans and a white shirt"]),
               ("3902_c3_0002.jpg", 3902, "test", ["a girl with a pink umbrella", "pink umbrella"])]
    caption_copy(tmp, "RSTPReid", "data_captions.json", "img_path", entries)
    expected = ({"train": (0, 0, 0), "query": (0, 0, 0), "gallery": (3, 2, 3)} if subset == "test"
                else {"train": (0, 0, 0), "query": (0, 0, 0), "gallery": (1, 1, 1)})
    checks = {("gallery", "3901_c7_0030.jpg"): (3901, 1)} if subset == "test" else {("gallery", "3701_c14_0007.jpg"): (3701, 0)}
    return tmp, {"subset": subset}, expected, checks


def fake_rstpreid_val(tmp: Path):
    return fake_rstpreid(tmp, "val")


FAKES = {
    "market1501": [fake_market], "dukemtmcreid": [fake_duke], "iustreid": [fake_iust],
    "msmt17": [fake_msmt, fake_msmt_v2], "cuhk03": [fake_cuhk03, fake_cuhk03_detected], "grid": [fake_grid],
    "celebreid": [fake_celeb], "pku": [fake_pku], "last": [fake_last, fake_last_val],
    "folder": [fake_folder, fake_folder_csv], "synthetic": [fake_synthetic],
    "cuhkpedes": [fake_cuhkpedes], "icfgpedes": [fake_icfgpedes], "rstpreid": [fake_rstpreid, fake_rstpreid_val],
}
CASES = [(name, build) for name, builds in FAKES.items() for build in builds]


def test_every_registered_adapter_has_a_fake_tree():
    assert set(ADAPTERS.names()) == set(FAKES)


@pytest.mark.parametrize("name", sorted(ADAPTERS.names()))
def test_every_adapter_is_one_adapter_that_states_its_layout(name):
    adapter = get_adapter(name)
    assert isinstance(adapter, Adapter) and callable(adapter.parse)
    assert "/" in adapter.layout, adapter.layout  # a path shape, quoted by every error about a copy
    generated = adapter.synthesize is not None
    assert generated == (name == "synthetic")  # only the synthetic data is made, not found


def test_a_target_that_names_no_adapter_is_a_spec_error():
    spec = DatasetSpec(name="mine", adapter="test_datasets:_parse_that_trips", layout_dir="", root=".")
    with pytest.raises(SpecError, match="'test_datasets:_parse_that_trips' is a function, not a raybench.datasets.Adapter"):
        load_manifest(spec)
    assert not is_generated(dataclasses.replace(spec, adapter="test_datasets:adapter_that_trips"))


@pytest.mark.parametrize("adapter,build", CASES, ids=[b.__name__ for _, b in CASES])
def test_adapter_parses_fake_tree(adapter, build, tmp_path):
    root, options, expected, checks = build(tmp_path)
    table = get_adapter(adapter).parse(root, **options)
    validate_manifest(table, adapter, captioned=get_adapter(adapter).captions is not None)
    rows = table.to_pylist()
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).exists() for r in rows)
    assert all(r["pid"] >= 0 for r in rows), "junk (pid -1) must be dropped"
    for trial in sorted({r.get("trial") for r in rows}, key=lambda t: -1 if t is None else t):
        stats = split_stats(table, trial)
        want = expected[trial] if isinstance(expected, list) else expected
        if want is not None:
            assert {s: tuple(v.values()) for s, v in stats.items()} == want, f"trial {trial}"
    by_name = {(r["split"], Path(r["path"]).name): (r["pid"], r["camid"]) for r in rows}
    for key, value in checks.items():
        assert by_name[key] == value, key


def test_market_keeps_distractors_and_parent_or_folder_roots_agree(tmp_path):
    root, _, _, _ = fake_market(tmp_path)
    from_parent = get_adapter("market1501").parse(root)
    from_folder = get_adapter("market1501").parse(root / "Market-1501-v15.09.15")
    assert from_parent.equals(from_folder)
    gallery = [r for r in from_parent.to_pylist() if r["split"] == "gallery"]
    assert [r["pid"] for r in gallery].count(0) == 1 and not any(r["path"].endswith("Thumbs.db") for r in gallery)


STUDY_CASES = [(name, build) for name, build in CASES if name not in ("folder", "synthetic")]


@pytest.mark.parametrize("adapter,build", STUDY_CASES, ids=[b.__name__ for _, b in STUDY_CASES])
def test_root_may_be_the_canonical_folder_or_its_parent(adapter, build, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    root, options, _, _ = build(copy)
    [canonical] = [p for p in copy.iterdir() if p.is_dir()]
    assert root in (copy, canonical)
    assert get_adapter(adapter).parse(copy, **options).equals(get_adapter(adapter).parse(canonical, **options))


def test_torchreid_style_nesting_is_found(tmp_path):
    fake_market(tmp_path / "market1501")
    assert get_adapter("market1501").parse(tmp_path).num_rows == 9


def test_grid_trials_follow_the_partitions(tmp_path):
    base, options, _, _ = fake_grid(tmp_path)
    table = get_adapter("grid").parse(base, **options)
    assert sorted(set(table.column("trial").to_pylist())) == [0, 1, 2]
    for trial, train_ids in enumerate([{1, 2, 3, 4}, {5, 6, 7, 8}, {2, 4, 6, 8}]):
        rows = [r for r in table.to_pylist() if r["trial"] == trial]
        assert {r["pid"] for r in rows if r["split"] == "train"} == train_ids
        assert {r["pid"] for r in rows if r["split"] == "query"} == set(range(1, 9)) - train_ids
        assert all(r["split"] != "query" for r in rows if r["pid"] == 0)
        assert all(Path(r["path"]).parent.name == "probe" for r in rows if r["split"] == "query")


def test_celeb_and_last_give_every_image_its_own_camera(tmp_path):
    for adapter, build in (("celebreid", fake_celeb), ("last", fake_last)):
        root, options, _, _ = build(tmp_path / adapter)
        camids = get_adapter(adapter).parse(root, **options).column("camid").to_pylist()
        assert len(set(camids)) == len(camids)
    catalog = load_dataset_catalog()
    for name in ("celebreid", "last-test", "last-val"):
        assert catalog[name].protocol.camera_filter is False


def test_pku_split_is_seeded_and_independent_of_file_order(tmp_path, monkeypatch):
    import raybench.datasets.pku as pku

    root, _, _, _ = fake_pku(tmp_path)
    listed = pku.require_images

    def split(seed, order=None):
        # The file system's listing order, simulated: creating files in another order does
        # not change it on ext4 (hash order), so the listing itself is permuted here.
        monkeypatch.setattr(pku, "require_images", lambda *a, **k: [listed(*a, **k)[i] for i in order or range(48)])
        table = get_adapter("pku").parse(root, seed=seed)
        return table, {(Path(r["path"]).name, r["split"]) for r in table.to_pylist()}

    first, rows = split(0)
    for order in (list(range(48))[::-1], np.random.default_rng(1).permutation(48).tolist()):
        assert split(0, order)[0].equals(first)
    assert split(1)[1] != rows
    queries = [name for name, s in rows if s == "query"]
    assert sorted(n.split("_")[1] for n in queries) == ["1", "1", "1", "2", "2", "2"]  # one per camera


def test_cuhk03_extracts_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    root, options, _, _ = fake_cuhk03(tmp_path / "data")
    first = get_adapter("cuhk03").parse(root, **options)
    images = Path(first.column("path")[0].as_py()).parent
    assert images.is_relative_to(tmp_path / "cache") and len(list(images.glob("*.png"))) == 17
    stamp = images.stat().st_mtime_ns
    assert get_adapter("cuhk03").parse(root, **options).equals(first)
    assert images.stat().st_mtime_ns == stamp
    from PIL import Image

    assert Image.open(images / "1_001_1_01.png").size == (8, 16)  # W x H of the [3, W, H] cell


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors naming the expected layout, never an empty manifest


@pytest.mark.parametrize("adapter", sorted(ADAPTERS.names()))
def test_missing_root_is_a_clear_error(adapter, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        get_adapter(adapter).parse(tmp_path / "nowhere")


@pytest.mark.parametrize("adapter", sorted(ADAPTERS.names()))
def test_empty_folder_is_a_clear_error(adapter, tmp_path):
    with pytest.raises(DatasetError, match="[Ee]xpected"):
        get_adapter(adapter).parse(tmp_path)


@pytest.mark.parametrize("adapter,folder,name", [
    ("market1501", "Market-1501-v15.09.15/query", "person1.jpg"),
    ("dukemtmcreid", "DukeMTMC-reID/bounding_box_test", "0005-c2.jpg"),
    ("celebreid", "Celeb-reID/gallery", "x_y.jpg"),
    ("pku", "PKUv1a_128x48", "001-1-1.png"),
])
def test_names_that_do_not_match_are_named(adapter, folder, name, tmp_path):
    builders = {"market1501": fake_market, "dukemtmcreid": fake_duke, "celebreid": fake_celeb, "pku": fake_pku}
    builders[adapter](tmp_path)
    touch(tmp_path / folder, name)
    root = tmp_path if adapter != "dukemtmcreid" else tmp_path / "DukeMTMC-reID"
    with pytest.raises(DatasetError, match=f"'{name}'.*naming convention"):
        get_adapter(adapter).parse(root)


def test_msmt17_bad_list_line_and_missing_image(tmp_path):
    root, _, _, _ = fake_msmt(tmp_path)
    query = root / "MSMT17_V1" / "list_query.txt"
    query.write_text(query.read_text() + "0009/0009_x.jpg 9\n")
    with pytest.raises(DatasetError, match="list_query.txt:3"):
        get_adapter("msmt17").parse(root)
    query.write_text("0009/0009_000_01_0113morning_0001_0.jpg 9\n")
    with pytest.raises(DatasetError, match="1 images listed in list_query.txt are missing"):
        get_adapter("msmt17").parse(root)


@pytest.mark.parametrize("drop", ["query_idx", "filelist"])
def test_cuhk03_config_missing_a_key(drop, tmp_path):
    root, options, _, _ = fake_cuhk03(tmp_path)
    write_cuhk03_config(root / "cuhk03" / "cuhk03_new_protocol_config_labeled.mat", cuhk03_names(CUHK_PAIRS), drop=drop)
    with pytest.raises(DatasetError, match=f"no key '{drop}'"):
        get_adapter("cuhk03").parse(root, **options)


def test_cuhk03_raw_mat_missing_a_variant(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    root, _, _, _ = fake_cuhk03(tmp_path)
    write_cuhk03_raw(root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat", CUHK_PAIRS, with_keys=("labeled",))
    with pytest.raises(DatasetError, match="no key 'detected'"):
        get_adapter("cuhk03").parse(root, variant="detected")
    assert not list((tmp_path / "cache" / "cuhk03").glob("images_detected*")), "a failed extraction leaves nothing"
    with pytest.raises(DatasetError, match="variant 'both'"):
        get_adapter("cuhk03").parse(root, variant="both")


def test_grid_mat_missing_the_partitions(tmp_path):
    base, _, _, _ = fake_grid(tmp_path)
    write_grid_partitions(base / "features_and_partitions.mat", [[1, 2]], key="trainIdx")
    with pytest.raises(DatasetError, match="no key 'trainIdxAll'"):
        get_adapter("grid").parse(base)
    write_grid_partitions(base / "features_and_partitions.mat", [[1, 2]] * 3)
    with pytest.raises(DatasetError, match="holds 3 partitions, the protocol asks for 10"):
        get_adapter("grid").parse(base)


def test_folder_csv_errors(tmp_path):
    path, _, _, _ = fake_folder_csv(tmp_path)
    path.write_text("path,pid,split\nimg/a.jpg,1,train\n")
    with pytest.raises(DatasetError, match="no column 'camid'"):
        get_adapter("folder").parse(path)
    path.write_text("path,pid,camid,split\nimg/a.jpg,1,0,test\n")
    with pytest.raises(DatasetError, match="list.csv:2: split 'test'"):
        get_adapter("folder").parse(path)
    path.write_text("path,pid,camid,split\nimg/zzz.jpg,1,0,query\n")
    with pytest.raises(DatasetError, match="zzz.jpg does not exist"):
        get_adapter("folder").parse(path)


def test_folder_csv_trial_column_must_name_every_rows_trial(tmp_path):
    path, _, _, _ = fake_folder_csv(tmp_path)
    path.write_text("path,pid,camid,split,trial\nimg/a.jpg,1,0,query,0\nimg/b.jpg,1,1,gallery,\n")
    spec = DatasetSpec(name="mine", adapter="folder", layout_dir="", root=str(path))
    with pytest.raises(DatasetError, match="list.csv:3: pid, camid \\(and trial\\) must be integers"):
        load_manifest(spec)
    path.write_text("path,pid,camid,split,trial\nimg/a.jpg,1,0,query,1\nimg/b.jpg,1,1,gallery,1\n")
    assert load_manifest(spec).column("trial").to_pylist() == [1, 1]


def test_folder_pattern_that_is_not_a_regex_is_a_clear_error(tmp_path):
    root, _, _, _ = fake_folder(tmp_path)
    spec = DatasetSpec(name="mine", adapter="folder", layout_dir="", root=str(root),
                       options={"pattern": "([-\\d]+_c(\\d+)"})
    with pytest.raises(DatasetError, match="is not a regular expression"):
        load_manifest(spec)


def test_folder_csv_that_is_not_utf8_is_a_clear_error_and_not_a_crash_of_the_run(tmp_path):
    from raybench.pipeline.plan import load_images

    path, _, _, _ = fake_folder_csv(tmp_path)
    path.write_bytes(b"path,pid,camid,split\nimg/\xe9t\xe9.jpg,1,0,query\n")  # Latin-1, not UTF-8
    spec = DatasetSpec(name="mine", adapter="folder", layout_dir="", root=str(path))
    with pytest.raises(DatasetError, match="list.csv is not UTF-8 text.*Expected layout: a folder with"):
        load_manifest(spec)
    assert "not UTF-8" in load_images(spec, load_manifest).error  # the matrix goes on without it


def _parse_that_trips(root: Path, problem: str):
    """A parser that did not foresee its input going wrong."""
    if problem == "folder":
        (root / "list.txt").mkdir()
        (root / "list.txt").read_text()
    if problem == "encoding":
        b"\xff".decode("utf-8")
    raise ValueError("invalid literal for int() with base 10: 'x'")


#: an adapter outside the package, resolved as test_datasets:adapter_that_trips; no layout given
adapter_that_trips = Adapter(parse=_parse_that_trips)


@pytest.mark.parametrize("problem,error", [("folder", "IsADirectoryError"), ("encoding", "UnicodeDecodeError"),
                                           ("value", "ValueError")])
def test_load_manifest_turns_any_adapters_read_errors_into_a_dataset_error(problem, error, tmp_path):
    spec = DatasetSpec(name="mine", adapter="test_datasets:adapter_that_trips", layout_dir="", root=str(tmp_path),
                       options={"problem": problem})
    with pytest.raises(DatasetError, match=f"^mine: cannot read the copy at {tmp_path} \\({error}: .*"
                                           "Expected layout: see the adapter 'test_datasets:adapter_that_trips'"):
        load_manifest(spec)


def test_a_copy_without_gallery_images_is_never_passed_on(tmp_path):
    root, _, _, _ = fake_market(tmp_path)
    for path in (root / "Market-1501-v15.09.15" / "bounding_box_test").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="no images in .*bounding_box_test"):
        get_adapter("market1501").parse(root)
    touch(root / "Market-1501-v15.09.15" / "bounding_box_test", "-1_c1s1_000401_03.jpg")  # junk only
    spec = DatasetSpec(name="m", adapter="market1501", layout_dir="", root=str(root))
    with pytest.raises(DatasetError, match="no gallery images found"):
        load_manifest(spec)


# ---------------------------------------------------------------------------------------------
# Specs, roots and the catalog


def test_load_manifest_validates_trials_and_options(tmp_path):
    base, _, _, _ = fake_grid(tmp_path)
    spec = DatasetSpec(name="g", adapter="grid", layout_dir="", root=str(base), options={"trials": 3},
                       protocol=Protocol(trials=3))
    assert len(set(load_manifest(spec).column("trial").to_pylist())) == 3
    with pytest.raises(DatasetError, match="asks for trials 0..1"):
        load_manifest(dataclasses.replace(spec, protocol=Protocol(trials=2)))
    with pytest.raises(SpecError, match="do not fit adapter 'grid'"):
        load_manifest(dataclasses.replace(spec, options={"trails": 3}))


def test_resolve_root_uses_raybench_data(tmp_path, monkeypatch):
    spec = load_dataset_catalog()["msmt17"]
    monkeypatch.delenv("RAYBENCH_DATA", raising=False)
    with pytest.raises(DatasetError, match="RAYBENCH_DATA is not set") as info:
        resolve_root(spec)
    assert "`root:` in the matrix" in str(info.value)  # `raybench run` has no --root
    assert "Expected layout: MSMT17_V1/{train,test}/<pid>/" in str(info.value)
    monkeypatch.setenv("RAYBENCH_DATA", str(tmp_path))
    assert resolve_root(spec) == tmp_path  # MSMT17_V1 absent: the adapter looks for V2 under the data folder
    fake_msmt_v2(tmp_path)
    assert load_manifest(spec).num_rows == 9
    (tmp_path / "MSMT17_V1").mkdir()
    assert resolve_root(spec) == tmp_path / "MSMT17_V1"


def test_catalog_entries_have_registered_adapters_and_options_that_fit():
    import inspect

    for name, spec in load_dataset_catalog().items():
        parse = get_adapter(spec.adapter).parse
        inspect.signature(parse).bind(Path("."), **spec.options)
        assert spec.description, name
        if spec.adapter != "synthetic":
            assert spec.layout_dir and spec.stats.get("source"), name
    catalog = load_dataset_catalog()
    assert catalog["grid"].protocol.trials == 10
    assert catalog["cuhk03-labeled"].protocol.cuhk03_metric is False
    assert catalog["cuhk03-detected"].options == {"variant": "detected"}


def test_compare_stats_reports_each_difference(tmp_path):
    root, _, _, _ = fake_market(tmp_path)
    table = get_adapter("market1501").parse(root)
    assert compare_stats(table, {"query": {"images": 3, "ids": 2}, "images": 9}) == []
    assert compare_stats(table, {"query": {"images": 3368}, "eval_images": 7}) == [
        "query images: 3 (published 3368)", "eval_images: 6 (published 7)"]


def test_regexes_in_errors_read_as_written_not_double_escaped(tmp_path):
    """A pattern in an error is the one in the YAML or the adapter, backslashes single."""
    fake_market(tmp_path)
    touch(tmp_path / "Market-1501-v15.09.15/query", "person1.jpg")
    with pytest.raises(DatasetError) as caught:
        get_adapter("market1501").parse(tmp_path)
    assert r"naming convention '^([-\d]+)_c(\d)'" in str(caught.value)
    assert "\\\\" not in str(caught.value)

    root, _, _, _ = fake_folder(tmp_path / "folder")
    for pattern, reason in [(r"([-\d]+_c(\d+)", "is not a regular expression"),
                            (r"([-\d]+)_c\d+", "needs two groups")]:
        spec = DatasetSpec(name="mine", adapter="folder", layout_dir="", root=str(root),
                           options={"pattern": pattern})
        with pytest.raises(DatasetError) as caught:
            load_manifest(spec)
        assert f"pattern '{pattern}' {reason}" in str(caught.value)
