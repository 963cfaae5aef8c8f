"""`raybench list datasets`, `raybench datasets info|check|synth`, through raybench.cli.main.

In-process (main() with captured output) to stay fast on two shared cores; one test runs the
real `python -m raybench` entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dataclasses import dataclass

from conftest import MARKET_MINI, needs_fixtures
from raybench.datasets import cuhk03, grid, market1501, msmt17


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def raybench(capsys):
    from raybench.cli import main

    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@needs_fixtures
def test_info_on_the_market_fixture(raybench):
    command = [sys.executable, "-m", "raybench", "datasets", "info", "market1501", "--root", str(MARKET_MINI), "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert set(info) == {"dataset", "root", "splits"} and info["dataset"] == "market1501"
    assert info["splits"] == {split: {"images": 32, "ids": 16, "cameras": 6} for split in ("query", "gallery", "train")}
    text = raybench("datasets", "info", "market1501", "--root", str(MARKET_MINI)).stdout
    assert "query    32      16   6" in text and "cameras overall: 6" in text


def test_info_describes_the_first_trial_of_grid(raybench, tmp_path):
    base = grid.write_tree(tmp_path, persons=8, distractors=3, train_sets=[[1, 2, 3, 4], [5, 6, 7, 8]] * 5)
    info = json.loads(raybench("datasets", "info", "grid", "--root", str(base), "--json").stdout)
    assert info["splits"]["query"] == {"images": 4, "ids": 4, "cameras": 4}
    assert info["splits"]["gallery"] == {"images": 7, "ids": 5, "cameras": 6}
    assert "trial 0 of 10 published splits" in raybench("datasets", "info", "grid", "--root", str(base)).stdout
    grid.tiny_copy(tmp_path / "three")  # 3 partitions where the protocol asks for 10
    assert_clean_error(raybench("datasets", "info", "grid", "--root", str(tmp_path / "three")),
                       "holds 3 partitions, the protocol asks for 10")


def test_info_bad_input_is_one_line_without_traceback(raybench, tmp_path):
    assert_clean_error(raybench("datasets", "info", "market1501", "--root", str(tmp_path / "nope")),
                       "does not exist", "Expected layout")
    assert_clean_error(raybench("datasets", "info", "market1501", "--root", str(tmp_path)), "Expected layout")
    assert_clean_error(raybench("datasets", "info", "market150", "--root", str(tmp_path)), "Did you mean 'market1501'")


def spoil(fake, relative: str, content: bytes | None):
    """A builder of ``fake``'s copy with the file at ``relative`` (below the root it returns)
    replaced by ``content``, or by a folder when ``content`` is None."""
    def build(tmp):
        root = fake(tmp).root
        path = root / relative
        path.unlink()
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        return root

    return build


def cuhk03_raw_of_another_shape(tmp):
    import h5py

    root = cuhk03.tiny_copy(tmp).root
    with h5py.File(root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat", "w") as mat:
        mat["labeled"] = [[1, 2]]  # numbers where the release holds references
    return root


MALFORMED = {  # case: (dataset, builder, fragments of the one-line error)
    "grid_mat_garbage": ("grid", spoil(grid.tiny_copy, "features_and_partitions.mat", b"garbage"),
                         ["features_and_partitions.mat as a MATLAB v5 file", "underground_reid/"]),
    "cuhk03_config_garbage": ("cuhk03-labeled", spoil(cuhk03.tiny_copy, "cuhk03/cuhk03_new_protocol_config_labeled.mat",
                                                      b"garbage"),
                              ["config_labeled.mat as a MATLAB v5 file", "Expected layout: cuhk03/"]),
    "cuhk03_raw_of_another_shape": ("cuhk03-labeled", cuhk03_raw_of_another_shape,
                                    ["cuhk-03.mat['labeled'] is not laid out as in the release", "references"]),
    "msmt_list_not_utf8": ("msmt17", spoil(msmt17.tiny_copy, "MSMT17_V1/list_query.txt", b"\xff\xfe0000/0000_000_10.jpg 0\n"),
                           ["list_query.txt is not UTF-8 text", "Expected layout: MSMT17_V1/"]),
    "msmt_list_is_a_folder": ("msmt17", spoil(msmt17.tiny_copy, "MSMT17_V1/list_gallery.txt", None),
                              ["list_gallery.txt is unreadable", "Expected layout: MSMT17_V1/"]),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_are_one_line_without_traceback(raybench, case, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    name, build, fragments = MALFORMED[case]
    assert_clean_error(raybench("datasets", "info", name, "--root", str(build(tmp_path))), *fragments)


def test_list_datasets_json(raybench):
    result = raybench("list", "datasets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    study = {"market1501", "dukemtmcreid", "msmt17", "cuhk03-labeled", "cuhk03-detected", "grid", "celebreid",
             "pku", "last-test", "last-val", "iustreid"}
    assert study | {"synth-a", "synth-b"} <= set(rows)
    assert rows["grid"]["trials"] == 10 and rows["celebreid"]["camera_filter"] is False
    assert rows["synth-a"]["folder"] == "(generated)" and rows["market1501"]["folder"] == "Market-1501-v15.09.15"
    # the published statistics, as each adapter declares them for the entry's options
    assert rows["cuhk03-labeled"]["stats"]["gallery"] == {"images": 5328, "ids": 700}
    assert rows["cuhk03-detected"]["stats"]["gallery"] == {"images": 5332, "ids": 700}
    assert rows["last-val"]["stats"]["eval_images"] == 21379 and rows["synth-a"]["stats"] is None
    table = raybench("list", "datasets").stdout
    assert "query 3,368, gallery 15,913, train 12,936" in table and "gallery 3,074, 6,156 captions" in table


def test_check_reports_present_missing_and_differing_copies(raybench, tmp_path):
    market1501.tiny_copy(tmp_path)  # a tiny Market copy: present, differs from the published numbers
    msmt17.tiny_copy(tmp_path)
    (tmp_path / "Celeb-reID").mkdir()  # present but empty: malformed
    result = raybench("datasets", "check", "--root", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    status = {row["dataset"]: row for row in json.loads(result.stdout)}
    assert status["market1501"]["status"] == "differs"
    assert "train images: 3 (published 12936)" in status["market1501"]["detail"]
    assert status["msmt17"]["status"] == "differs"
    assert status["celebreid"]["status"] == "malformed"
    assert status["grid"]["status"] == "missing" and "underground_reid" in status["grid"]["detail"]
    assert "synth-a" not in status
    table = raybench("datasets", "check", "--root", str(tmp_path)).stdout
    assert "market1501" in table and "missing" in table


def test_check_reports_the_other_copies_when_some_are_malformed(raybench, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    market1501.tiny_copy(data)
    for case in ("grid_mat_garbage", "msmt_list_not_utf8", "cuhk03_raw_of_another_shape"):
        MALFORMED[case][1](data)
    result = raybench("datasets", "check", "--root", str(data), "--json")
    assert result.returncode == 0, result.stderr
    status = {row["dataset"]: row for row in json.loads(result.stdout)}
    assert status["market1501"]["status"] == "differs" and status["celebreid"]["status"] == "missing"
    for name, fragment in (("grid", "MATLAB v5"), ("msmt17", "not UTF-8"), ("cuhk03-labeled", "not laid out"),
                           ("cuhk03-detected", "cuhk-03.mat")):
        assert status[name]["status"] == "malformed" and fragment in status[name]["detail"], status[name]


def test_check_looks_for_a_custom_entry_at_its_own_root(tmp_path):
    from raybench.datasets.check import check_all
    from raybench.specs import DatasetSpec

    market1501.tiny_copy(tmp_path / "elsewhere")
    (tmp_path / "data").mkdir()
    mine = DatasetSpec(name="my-cameras", adapter="folder", layout_dir="",
                       root=str(tmp_path / "elsewhere" / "Market-1501-v15.09.15"))
    [row] = check_all(tmp_path / "data", {"my-cameras": mine})
    assert row["status"] == "ok" and row["folder"] == mine.root, row  # not "malformed" for data/ lacking query/


def test_a_custom_catalog_entry_as_the_readme_adds_it(raybench, tmp_path, monkeypatch):
    """README's "Adding a model or a dataset": a folder entry with its own root in configs/datasets.yaml is
    listed with that root, described by info without --root, and checked there."""
    market1501.tiny_copy(tmp_path / "copy")
    root = tmp_path / "copy" / "Market-1501-v15.09.15"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "datasets.yaml").write_text(
        f"my-cameras:\n  adapter: folder\n  root: {root}\n  protocol: {{camera_filter: true}}\n")
    monkeypatch.setenv("RAYBENCH_CONFIGS", str(tmp_path / "configs"))
    [row] = json.loads(raybench("list", "datasets", "--json").stdout)
    assert row["folder"] == str(root), row
    info = json.loads(raybench("datasets", "info", "my-cameras", "--json").stdout)
    assert info["splits"]["gallery"] == {"images": 3, "ids": 3, "cameras": 3}
    [check] = json.loads(raybench("datasets", "check", "--root", str(tmp_path), "--json").stdout)
    assert check["status"] == "ok" and check["folder"] == str(root), check


def test_check_without_a_data_folder_says_what_to_do(raybench, monkeypatch):
    monkeypatch.delenv("RAYBENCH_DATA", raising=False)
    assert_clean_error(raybench("datasets", "check"), "RAYBENCH_DATA")


def test_synth_writes_and_refuses_to_overwrite(raybench, tmp_path):
    out = tmp_path / "s"
    result = raybench("datasets", "synth", "--out", str(out), "--ids", "6", "--cams", "3", "--images-per-id", "4",
                      "--domain", "b", "--seed", "2", "--junk", "1")
    assert result.returncode == 0, result.stderr
    assert "wrote 25 images" in result.stdout
    assert len(list((out / "bounding_box_train").glob("*.jpg"))) == 12
    info = json.loads(raybench("datasets", "info", "market1501", "--root", str(out), "--json").stdout)
    assert info["splits"]["train"] == {"images": 12, "ids": 3, "cameras": 3}  # the Market-1501 layout
    assert_clean_error(raybench("datasets", "info", "synth-a", "--root", str(out)),
                       "generated with cams=3, the spec asks for cams=5")
    assert_clean_error(raybench("datasets", "synth", "--out", str(out)), "not an empty folder")
    assert_clean_error(raybench("datasets", "synth", "--out", str(tmp_path / "t"), "--domain", "z"), "Known: a, b")


@pytest.mark.parametrize("name", ["synth-a", "synth-b"])
def test_catalog_synthetic_entries_generate_on_first_use(raybench, name, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    result = raybench("datasets", "info", name, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["root"].startswith(str(tmp_path / "synth" / name))
    assert info["splits"]["train"]["ids"] == 24 and info["splits"]["gallery"]["ids"] == 25  # 24 + distractors
