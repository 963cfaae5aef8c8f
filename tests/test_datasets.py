"""Every dataset adapter parses a fake copy with the real file naming, and bad copies fail clearly.

The fake trees (empty files with real names, small .mat files with the real key structure)
are each adapter's own tiny copies (``Adapter.tiny_copies``), so a registered adapter is
covered here without an edit; test_datasets_torchreid.py parses some of the same trees with
torchreid's own dataset classes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from raybench.catalog import load_dataset_catalog
from raybench.datasets import ADAPTERS, Adapter, get_adapter, is_generated, load_manifest, published_stats, resolve_root
from raybench.datasets import celebreid, cuhk03, dukemtmc, grid, last, market1501, msmt17, pku
from raybench.datasets import folder as custom
from raybench.datasets.common import DatasetNotFoundError, touch
from raybench.datasets.manifest import compare_stats, split_stats, validate_manifest
from raybench.errors import DatasetError, SpecError
from raybench.specs import DatasetSpec, Protocol


# Tiny copies: each adapter writes its own (Adapter.tiny_copies), in the real naming and layout
CASES = [(name, build) for name in ADAPTERS.names() for build in get_adapter(name).tiny_copies]


@pytest.mark.parametrize("name", sorted(ADAPTERS.names()))
def test_every_registered_adapter_writes_a_tiny_copy(name):
    assert get_adapter(name).tiny_copies, f"adapter {name!r} declares no tiny copy (Adapter.tiny_copies)"


@pytest.mark.parametrize("name", sorted(ADAPTERS.names()))
def test_every_adapter_is_one_adapter_that_states_its_layout(name):
    adapter = get_adapter(name)
    assert isinstance(adapter, Adapter) and callable(adapter.parse)
    assert "/" in adapter.layout, adapter.layout  # a path shape, quoted by every error about a copy
    generated = adapter.synthesize is not None
    assert generated == name.startswith("synthetic")  # only the synthetic data is made, not found


def test_a_target_that_names_no_adapter_is_a_spec_error():
    spec = DatasetSpec(name="mine", adapter="test_datasets:_parse_that_trips", layout_dir="", root=".")
    with pytest.raises(SpecError, match="'test_datasets:_parse_that_trips' is a function, not a raybench.datasets.Adapter"):
        load_manifest(spec)
    assert not is_generated(dataclasses.replace(spec, adapter="test_datasets:adapter_that_trips"))


@pytest.mark.parametrize("adapter,build", CASES, ids=[f"{name}-{b.__name__}" for name, b in CASES])
def test_adapter_parses_fake_tree(adapter, build, tmp_path):
    tiny = build(tmp_path)
    expected, checks = tiny.splits, tiny.rows
    table = get_adapter(adapter).parse(tiny.root, **tiny.options)
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
    clothes = {(r["split"], Path(r["path"]).name): r.get("clothes") for r in rows}
    for key, value in tiny.clothes.items():
        assert clothes[key] == value, key


def test_market_keeps_distractors_and_parent_or_folder_roots_agree(tmp_path):
    root = market1501.tiny_copy(tmp_path).root
    from_parent = get_adapter("market1501").parse(root)
    from_folder = get_adapter("market1501").parse(root / "Market-1501-v15.09.15")
    assert from_parent.equals(from_folder)
    gallery = [r for r in from_parent.to_pylist() if r["split"] == "gallery"]
    assert [r["pid"] for r in gallery].count(0) == 1 and not any(r["path"].endswith("Thumbs.db") for r in gallery)


STUDY_CASES = [(name, build) for name, build in CASES if name not in ("folder", "synthetic", "synthetic-video")]


@pytest.mark.parametrize("adapter,build", STUDY_CASES, ids=[f"{name}-{b.__name__}" for name, b in STUDY_CASES])
def test_root_may_be_the_canonical_folder_or_its_parent(adapter, build, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    tiny = build(copy)
    root, options = tiny.root, tiny.options
    [canonical] = [p for p in copy.iterdir() if p.is_dir()]
    assert root in (copy, canonical)
    assert get_adapter(adapter).parse(copy, **options).equals(get_adapter(adapter).parse(canonical, **options))


def test_torchreid_style_nesting_is_found(tmp_path):
    market1501.tiny_copy(tmp_path / "market1501")
    assert get_adapter("market1501").parse(tmp_path).num_rows == 9


def test_grid_trials_follow_the_partitions(tmp_path):
    tiny = grid.tiny_copy(tmp_path)
    base, options = tiny.root, tiny.options
    table = get_adapter("grid").parse(base, **options)
    assert sorted(set(table.column("trial").to_pylist())) == [0, 1, 2]
    for trial, train_ids in enumerate([{1, 2, 3, 4}, {5, 6, 7, 8}, {2, 4, 6, 8}]):
        rows = [r for r in table.to_pylist() if r["trial"] == trial]
        assert {r["pid"] for r in rows if r["split"] == "train"} == train_ids
        assert {r["pid"] for r in rows if r["split"] == "query"} == set(range(1, 9)) - train_ids
        assert all(r["split"] != "query" for r in rows if r["pid"] == 0)
        assert all(Path(r["path"]).parent.name == "probe" for r in rows if r["split"] == "query")


def test_celeb_and_last_give_every_image_its_own_camera(tmp_path):
    for adapter, build in (("celebreid", celebreid.tiny_copy), ("last", last.tiny_copy)):
        tiny = build(tmp_path / adapter)
        camids = get_adapter(adapter).parse(tiny.root, **tiny.options).column("camid").to_pylist()
        assert len(set(camids)) == len(camids)
    catalog = load_dataset_catalog()
    for name in ("celebreid", "last-test", "last-val"):
        assert catalog[name].protocol.camera_filter is False


def test_pku_split_is_seeded_and_independent_of_file_order(tmp_path, monkeypatch):
    import raybench.datasets.pku as pku

    root = pku.tiny_copy(tmp_path).root
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
    tiny = cuhk03.tiny_copy(tmp_path / "data")
    root, options = tiny.root, tiny.options
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
    builders = {"market1501": market1501.tiny_copy, "dukemtmcreid": dukemtmc.tiny_copy,
                "celebreid": celebreid.tiny_copy, "pku": pku.tiny_copy}
    builders[adapter](tmp_path)
    touch(tmp_path / folder, name)
    root = tmp_path if adapter != "dukemtmcreid" else tmp_path / "DukeMTMC-reID"
    with pytest.raises(DatasetError, match=f"'{name}'.*naming convention"):
        get_adapter(adapter).parse(root)


def test_msmt17_bad_list_line_and_missing_image(tmp_path):
    root = msmt17.tiny_copy(tmp_path).root
    query = root / "MSMT17_V1" / "list_query.txt"
    query.write_text(query.read_text() + "0009/0009_x.jpg 9\n")
    with pytest.raises(DatasetError, match="list_query.txt:3"):
        get_adapter("msmt17").parse(root)
    query.write_text("0009/0009_000_01_0113morning_0001_0.jpg 9\n")
    with pytest.raises(DatasetError, match="1 images listed in list_query.txt are missing"):
        get_adapter("msmt17").parse(root)


@pytest.mark.parametrize("drop", ["query_idx", "filelist"])
def test_cuhk03_config_missing_a_key(drop, tmp_path):
    tiny = cuhk03.tiny_copy(tmp_path)
    root, options = tiny.root, tiny.options
    cuhk03.write_config(root / "cuhk03" / "cuhk03_new_protocol_config_labeled.mat", cuhk03.image_names(cuhk03.TINY_PAIRS),
                        drop=drop)
    with pytest.raises(DatasetError, match=f"no key '{drop}'"):
        get_adapter("cuhk03").parse(root, **options)


def test_cuhk03_raw_mat_missing_a_variant(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    root = cuhk03.tiny_copy(tmp_path).root
    cuhk03.write_raw(root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat", cuhk03.TINY_PAIRS, with_keys=("labeled",))
    with pytest.raises(DatasetError, match="no key 'detected'"):
        get_adapter("cuhk03").parse(root, variant="detected")
    assert not list((tmp_path / "cache" / "cuhk03").glob("images_detected*")), "a failed extraction leaves nothing"
    with pytest.raises(DatasetError, match="variant 'both'"):
        get_adapter("cuhk03").parse(root, variant="both")


def test_grid_mat_missing_the_partitions(tmp_path):
    base = grid.tiny_copy(tmp_path).root
    grid.write_partitions(base / "features_and_partitions.mat", [[1, 2]], key="trainIdx")
    with pytest.raises(DatasetError, match="no key 'trainIdxAll'"):
        get_adapter("grid").parse(base)
    grid.write_partitions(base / "features_and_partitions.mat", [[1, 2]] * 3)
    with pytest.raises(DatasetError, match="holds 3 partitions, the protocol asks for 10"):
        get_adapter("grid").parse(base)


def test_folder_csv_errors(tmp_path):
    path = custom.tiny_copy_csv(tmp_path).root
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
    path = custom.tiny_copy_csv(tmp_path).root
    path.write_text("path,pid,camid,split,trial\nimg/a.jpg,1,0,query,0\nimg/b.jpg,1,1,gallery,\n")
    spec = DatasetSpec(name="mine", adapter="folder", layout_dir="", root=str(path))
    with pytest.raises(DatasetError, match="list.csv:3: pid, camid \\(and trial\\) must be integers"):
        load_manifest(spec)
    path.write_text("path,pid,camid,split,trial\nimg/a.jpg,1,0,query,1\nimg/b.jpg,1,1,gallery,1\n")
    assert load_manifest(spec).column("trial").to_pylist() == [1, 1]


def test_folder_pattern_that_is_not_a_regex_is_a_clear_error(tmp_path):
    root = custom.tiny_copy(tmp_path).root
    spec = DatasetSpec(name="mine", adapter="folder", layout_dir="", root=str(root),
                       options={"pattern": "([-\\d]+_c(\\d+)"})
    with pytest.raises(DatasetError, match="is not a regular expression"):
        load_manifest(spec)


def test_folder_csv_that_is_not_utf8_is_a_clear_error_and_not_a_crash_of_the_run(tmp_path):
    from raybench.pipeline.plan import load_images

    path = custom.tiny_copy_csv(tmp_path).root
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
    root = market1501.tiny_copy(tmp_path).root
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
    base = grid.tiny_copy(tmp_path).root
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
    msmt17.tiny_copy_v2(tmp_path)
    assert load_manifest(spec).num_rows == 9
    (tmp_path / "MSMT17_V1").mkdir()
    assert resolve_root(spec) == tmp_path / "MSMT17_V1"


def test_catalog_entries_have_registered_adapters_and_options_that_fit():
    import inspect

    for name, spec in load_dataset_catalog().items():
        parse = get_adapter(spec.adapter).parse
        inspect.signature(parse).bind(Path("."), **spec.options)
        assert spec.description, name
        if not spec.adapter.startswith("synthetic"):
            assert spec.layout_dir and published_stats(spec).get("source"), name
    catalog = load_dataset_catalog()
    assert catalog["grid"].protocol.trials == 10
    assert catalog["cuhk03-labeled"].protocol.cuhk03_metric is False
    assert catalog["cuhk03-detected"].options == {"variant": "detected"}


def test_compare_stats_reports_each_difference(tmp_path):
    root = market1501.tiny_copy(tmp_path).root
    table = get_adapter("market1501").parse(root)
    assert compare_stats(table, {"query": {"images": 3, "ids": 2}, "images": 9}) == []
    assert compare_stats(table, {"query": {"images": 3368}, "eval_images": 7}) == [
        "query images: 3 (published 3368)", "eval_images: 6 (published 7)"]


def test_regexes_in_errors_read_as_written_not_double_escaped(tmp_path):
    """A pattern in an error is the one in the YAML or the adapter, backslashes single."""
    market1501.tiny_copy(tmp_path)
    touch(tmp_path / "Market-1501-v15.09.15/query", "person1.jpg")
    with pytest.raises(DatasetError) as caught:
        get_adapter("market1501").parse(tmp_path)
    assert r"naming convention '^([-\d]+)_c(\d)'" in str(caught.value)
    assert "\\\\" not in str(caught.value)

    root = custom.tiny_copy(tmp_path / "folder").root
    for pattern, reason in [(r"([-\d]+_c(\d+)", "is not a regular expression"),
                            (r"([-\d]+)_c\d+", "needs two groups")]:
        spec = DatasetSpec(name="mine", adapter="folder", layout_dir="", root=str(root),
                           options={"pattern": pattern})
        with pytest.raises(DatasetError) as caught:
            load_manifest(spec)
        assert f"pattern '{pattern}' {reason}" in str(caught.value)
