"""`raybench report` on a small run directory made by the real pipeline (conftest's real_run):
every file, files that read well, damaged files named, and the same report from a URI.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REAL_RUN_DATASETS, REAL_RUN_FAILED, REAL_RUN_MODELS

from raybench.cli import cli

MODELS, DATASETS, FAILED = REAL_RUN_MODELS, REAL_RUN_DATASETS, REAL_RUN_FAILED


@pytest.fixture(scope="module")
def stored_run(real_run) -> Path:
    return real_run


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["report", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_json_prints_one_row_per_cell(stored_run):
    rows = json.loads(invoke(str(stored_run), "--format", "json", "--no-ranklists").stdout)
    assert len(rows) == len(MODELS) * len(DATASETS)
    by_cell = {(r["model"], r["dataset"]): r for r in rows}
    failed = by_cell[FAILED]
    assert failed["status"] == "failed" and "all-black image" in failed["error"] and failed["mAP"] is None
    stored = json.loads((stored_run / "results" / "alpha" / "color-hist.json").read_text())
    row = by_cell[("color-hist", "alpha")]
    assert row["mAP"] == stored["mAP"] and row["mINP"] == stored["mINP"] and row["cmc"] == stored["cmc"]
    assert row["R1"] == stored["cmc"][0]
    assert row["mAP_ci_lo"] <= row["mAP"] <= row["mAP_ci_hi"]
    assert by_cell[("color-hist", "beta")]["num_trials"] == 1


@pytest.fixture(scope="module")
def report(stored_run, tmp_path_factory):
    from raybench.report.build import ReportOptions, build_report

    reference = tmp_path_factory.mktemp("ref") / "reference.yaml"
    reference.write_text(REFERENCE)
    return build_report(stored_run, ReportOptions(paper=reference, ranklist_queries=4, bootstraps=200))


# A study that reports two of our cells: one close to ours, one far, with a defect to cite.
REFERENCE = """
source: {title: A study, arxiv: "0000.00000", code: https://example.org, grade: secondary}
metric: mAP
unit: percent
gap_points: 2.0
models:
  Study-CLIP: {raybench: [clip-fake], defects: [1]}
  Study-Colour: {raybench: [color-hist]}
datasets:
  Alpha: {raybench: alpha}
  Beta: {raybench: beta}
mAP:
  Study-CLIP: {Alpha: 10.0, Beta: 5.0}
  Study-Colour: {Alpha: 3.0}
defects:
  1: pixels wrapped around
"""


def test_report_writes_every_file(report):
    out = report.out
    names = {p.relative_to(out).as_posix() for p in report.files}
    expected = {"results.md", "results.csv", "results.json", "heatmap_map.png", "heatmap_rank1.png",
                "domain_map.png", "tradeoff_map.png", "paper.md", "paper.csv", "ranklists/index.html"}
    pages = {f"ranklists/{d}__{m}.html" for m in MODELS for d in DATASETS if (m, d) != FAILED}
    assert names == expected | pages
    assert all((out / n).is_file() and (out / n).stat().st_size > 0 for n in names)
    md = (out / "results.md").read_text()
    assert "all-black image" in md and "failed [1]" in md
    cells = len(MODELS) * len(DATASETS)
    assert f"{cells} cells ({cells - 1} ok, 1 failed) of {len(MODELS)} models" in md
    for paradigm in ("supervised", "language-aligned", "baseline"):
        assert f"**{paradigm}**" in md
    assert md.index("**supervised**") < md.index("**language-aligned**") < md.index("**baseline**")
    assert "![mAP" in md and "(paper.md)" in md
    commit = json.loads(Path(report.run.store.path("run.json")).read_text())["git"]["commit"]
    assert f"git `{commit[:12]}`" in md and "embedded on `cpu`" in md


def test_csv_round_trips(report):
    from raybench.report.tables import COLUMNS, read_csv

    back = read_csv(report.out / "results.csv")
    assert back == [{k: row[k] for k in COLUMNS} for row in report.rows]
    assert json.loads((report.out / "results.json").read_text()) == report.rows
    assert {row["camera_filter"] for row in back if row["status"] == "ok"} == {True}  # a bool, not "true"


def test_heatmap_is_a_png_of_the_expected_size(report):
    from PIL import Image

    from raybench.report.plots import heatmap_pixels

    for name in ("heatmap_map.png", "heatmap_rank1.png"):
        with Image.open(report.out / name) as im:
            assert im.format == "PNG"
            assert im.size == heatmap_pixels(len(MODELS), len(DATASETS))
            pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank canvas


def test_ranklist_pages_embed_their_images(report, stored_run):
    from PIL import Image

    from raybench.report.rankhtml import THUMB

    page = (report.out / "ranklists" / "beta__osnet-tiny-alpha.html").read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    assert len(sources) == 4 * 11  # 4 sampled queries, each with its top 10
    for src in set(sources):
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.size[0] <= THUMB[0] and im.size[1] <= THUMB[1]
    assert page.count("class='hit'") + page.count("class='miss'") == 40
    assert page.count("class='hit'") > 0 and "pid " in page and "cam " in page
    index = (report.out / "ranklists" / "index.html").read_text()
    for href in re.findall(r"href='([^']+)'", index):
        assert (report.out / "ranklists" / href).is_file()


def test_ranklist_marks_true_matches_and_drops_same_camera(stored_run):
    """The page's ranking, checked against a brute-force one on the stored embeddings."""
    from raybench.report.load import load_run
    from raybench.report.ranklist import load_embeddings, sample_lines

    run = load_run(stored_run)
    cell = run.cell("color-hist", "alpha")
    meta, emb = load_embeddings(run.store, "alpha", "color-hist")
    lines, _, g_idx = sample_lines(cell, meta, emb, n_queries=6, seed=0)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for line in lines:
        allowed = [g for g in g_idx if not (meta["pid"][g] == meta["pid"][line.query]
                                            and meta["camid"][g] == meta["camid"][line.query])]
        dist = lambda g: np.sum((unit[g] - unit[line.query]) ** 2)  # noqa: E731
        expected = sorted(allowed, key=dist)[:10]
        assert set(line.top) <= set(allowed)  # same identity under the same camera: never shown
        # the same ranking up to ties (colour histograms of flat crops tie often)
        np.testing.assert_allclose([dist(g) for g in line.top], [dist(g) for g in expected], atol=1e-5)


def test_ranklist_says_which_eval_steps_its_plain_distances_leave_out(stored_run):
    from raybench.report.load import Cell, load_run
    from raybench.report.ranklist import cell_page, load_embeddings

    run = load_run(stored_run)
    cell = run.cell("color-hist", "alpha")
    meta, emb = load_embeddings(run.store, "alpha", "color-hist")
    assert "Metrics used" not in cell_page(cell, meta, emb, n_queries=1, seed=0)
    protocol = {**cell.result.protocol, "rerank": True, "aqe_k": 5}
    page = cell_page(Cell(cell.model, cell.dataset, dataclasses.replace(cell.result, protocol=protocol)), meta, emb, 1, 0)
    assert "Metrics used query expansion and re-ranking; this page does not." in page


def test_paper_diff_on_a_hand_built_case(report):
    rows = {(r["model"], r["dataset"]): r for r in report.rows}
    lines = {(p["model"], p["dataset"]): p for p in report.paper_rows}
    assert set(lines) == {("clip-fake", "alpha"), ("clip-fake", "beta"), ("color-hist", "alpha")}
    clip = lines[("clip-fake", "alpha")]
    assert clip["ours"] == round(100 * rows[("clip-fake", "alpha")]["mAP"], 2)
    assert clip["diff"] == round(100 * rows[("clip-fake", "alpha")]["mAP"] - 10.0, 2)
    assert clip["theirs"] == 10.0 and clip["paper_model"] == "Study-CLIP"
    assert "defect 1: pixels wrapped around" in clip["note"]
    assert lines[("clip-fake", "beta")]["ours"] is None and "failed" in lines[("clip-fake", "beta")]["note"]
    assert "not explained" in lines[("color-hist", "alpha")]["note"]
    md = (report.out / "paper.md").read_text()
    assert "secondary" in md and f"{clip['diff']:+.2f}" in md


def test_paper_agreement_within_gap(tmp_path):
    from raybench.report.paper import compare, load_reference

    ref_path = tmp_path / "ref.yaml"
    ref_path.write_text(REFERENCE)
    from raybench.report.load import Cell
    from raybench.rundir.records import CellResult

    result = CellResult("clip-fake", "alpha", "ok", mAP=0.111, mINP=0.1, cmc=(0.2,), num_query=5,
                        num_valid_query=5, num_gallery=9)
    cell = Cell("clip-fake", "alpha", result, intervals={"main": {"mAP": (0.1, 0.12)}})
    (line,) = compare([cell], load_reference(ref_path))
    assert line["diff"] == 1.1 and line["note"].startswith("agrees within 2")
    assert line["ours_ci"] == "[10.00, 12.00]"


def test_shipped_paper_reference_loads():
    from raybench.report.paper import load_reference

    ref = load_reference()
    assert ref.source["grade"] in ("primary", "secondary")
    # every published value is a percentage, and every model x dataset of the paper matrix that
    # the study reports is there (the comparison would silently skip a missing one)
    assert all(0 <= v <= 100 for _, _, v in ref.values.values())
    from raybench.catalog import load_matrix

    paper = load_matrix("paper")
    covered = {(m, d) for m, d in ref.values}
    assert {m.name for m in paper.models} <= {m for m, _ in covered}
    assert {d.name for d in paper.datasets} & {d for _, d in covered}
    cited = {d for ds in ref.exposure.values() for d in ds}
    assert cited <= set(ref.defects)


def test_paper_reference_names_are_catalog_names():
    """A misspelt raybench name in the reference would silently drop its cells from paper.md."""
    from raybench.catalog import load_dataset_catalog, load_model_catalog
    from raybench.report.paper import load_reference

    ref = load_reference()
    models, datasets = set(load_model_catalog()), set(load_dataset_catalog())
    assert {m for m, _ in ref.values} <= models and {d for _, d in ref.values} <= datasets
    assert set(ref.exposure) <= models | datasets


@pytest.fixture(scope="module")
def damaged_report(stored_run, tmp_path_factory):
    """The stored run with one cell's embeddings truncated and one cell scored with the classic
    CUHK03 metric."""
    from raybench.report.build import ReportOptions, build_report

    run = _copy(stored_run, tmp_path_factory.mktemp("damaged"))
    part = sorted((run / "embeddings" / "alpha" / "color-hist").glob("attempt-*/part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    result = run / "results" / "alpha" / "osnet-tiny-alpha.json"
    data = json.loads(result.read_text())
    data["protocol"]["cuhk03_metric"] = True
    result.write_text(json.dumps(data))
    return build_report(run, ReportOptions(paper=Path("/nonexistent.yaml"), ranklist_queries=2, bootstraps=100))


def test_unreadable_embeddings_cost_only_their_rank_list(damaged_report):
    pages = {p.name for p in damaged_report.files if p.parent.name == "ranklists"}
    assert "alpha__color-hist.html" not in pages and "alpha__osnet-tiny-alpha.html" in pages
    (note,) = [n for n in damaged_report.notes if "color-hist x alpha" in n]
    assert "could not be read" in note and "delete that folder" in note
    assert "No rank list for color-hist x alpha" in (damaged_report.out / "results.md").read_text()
    # and the console says so, naming the truncated file
    run = damaged_report.run.store.root
    out = invoke(run, "--bootstraps", "100", "--queries", "1", "--out", f"{run}/report2").output
    (part,) = [p for p in (Path(run) / "embeddings" / "alpha" / "color-hist").glob("attempt-*/part-*.parquet")
               if p.stat().st_size == 100]
    assert "No rank list for color-hist x alpha" in out and f"alpha/color-hist/{part.parent.name}/{part.name}" in out


def test_classic_cuhk03_rank1_has_no_query_bootstrap_interval(damaged_report):
    rows = {(r["model"], r["dataset"]): r for r in damaged_report.rows}
    sampled, plain = rows[("osnet-tiny-alpha", "alpha")], rows[("color-hist", "alpha")]
    assert sampled["R1_ci_lo"] is None and sampled["R1_ci_hi"] is None
    assert sampled["mAP_ci_lo"] <= sampled["mAP"] <= sampled["mAP_ci_hi"]
    assert plain["R1_ci_lo"] is not None
    assert any("classic CUHK03" in n and "osnet-tiny-alpha x alpha" in n for n in damaged_report.notes)


def _copy(run: Path, root: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, root / "run", ignore=shutil.ignore_patterns("report")))


def test_in_domain_is_what_the_run_recorded(stored_run):
    from raybench.report.domain import trained_on
    from raybench.report.load import load_run

    run = load_run(stored_run)
    assert trained_on(run, "osnet-tiny-alpha") == "alpha"  # options.trained_on, recorded in run.json
    assert run.model_spec("osnet-tiny-alpha")["trained_on"] == "alpha"
    assert trained_on(run, "color-hist") is None and run.model_spec("color-hist")["trained_on"] is None


def test_in_domain_from_the_name_convention_is_resolved_from_the_catalog():
    from pipeline_helpers import dummy_model

    from raybench.catalog import trained_on

    supervised = lambda name: dataclasses.replace(dummy_model(name), paradigm="supervised")  # noqa: E731
    assert trained_on(supervised("osnet-x0_25-alpha"), ["alpha1501", "beta"]) == "alpha1501"
    # a training set outside the run, found in the dataset catalog: every cell is cross-domain
    assert trained_on(supervised("osnet-x0_25-msmt17"), ["alpha1501"]) == "msmt17"
    assert trained_on(dummy_model("osnet-x0_25-msmt17"), ["msmt17"]) is None  # not supervised


@pytest.mark.parametrize("damage, reason", [
    ('"mAP": 1.7', "field 'mAP': must be a fraction in [0, 1], got 1.7"),
    ('"mAP": "high"', "field 'mAP': must be int or float, got 'high'"),
    (None, "field 'cmc': missing"),
    ("{not json", "not valid JSON"),
])
def test_invalid_results_are_marked_with_file_and_reason(stored_run, tmp_path, damage, reason):
    """A damaged result is an `invalid` cell naming its file and field; every other part of
    the report is still written, and a deleted result shows as missing."""
    from raybench.report.build import ReportOptions, build_report

    run = _copy(stored_run, tmp_path)
    target = run / "results" / "alpha" / "color-hist.json"
    data = json.loads(target.read_text())
    if damage is None:
        del data["cmc"]
        target.write_text(json.dumps(data))
    elif damage.startswith("{"):
        target.write_text(damage)
    else:
        target.write_text(re.sub(r'"mAP": [0-9.e-]+', damage, json.dumps(data)))
    (run / "results" / "beta" / "color-hist.json").unlink()
    report = build_report(run, ReportOptions(paper=Path("/nonexistent.yaml"), ranklists=False, bootstraps=100))
    rows = {(r["model"], r["dataset"]): r for r in report.rows}
    bad = rows[("color-hist", "alpha")]
    assert bad["status"] == "invalid" and str(target) in bad["error"] and reason in bad["error"]
    assert bad["mAP"] is None  # never shown as 170.0
    assert rows[("color-hist", "beta")]["status"] == "missing"
    assert rows[("osnet-tiny-alpha", "alpha")]["status"] == "ok"
    names = {p.name for p in report.files}
    assert {"results.md", "results.csv", "results.json", "heatmap_map.png"} <= names
    assert reason in (report.out / "results.md").read_text()


def test_a_file_uri_gives_the_same_report_as_the_path(stored_run, tmp_path):
    plain = invoke(str(stored_run), "--format", "json", "--no-ranklists", "--out", str(tmp_path / "a")).stdout
    uri = invoke(f"file://{stored_run}", "--format", "json", "--no-ranklists", "--out", str(tmp_path / "b")).stdout
    assert json.loads(uri) == json.loads(plain)
    assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()
    md = (tmp_path / "a" / "results.md").read_text()  # the same, but for where the run was read from
    assert (tmp_path / "b" / "results.md").read_text() == md.replace(f"`{stored_run}`", f"`file://{stored_run}`")


def test_a_run_on_object_storage_gets_its_report_uploaded(stored_run):
    """A run directory on a filesystem that is not this machine's (pyarrow's in-memory mock, as
    s3:// would be): the report reads it through the store and uploads <run>/report."""
    from pyarrow import fs as pafs

    from raybench.report.build import ReportOptions, build_report
    from raybench.rundir.store import RunStore

    remote = RunStore(pafs._MockFileSystem(), "bucket/run", "mock://bucket/run")
    pafs.copy_files(str(stored_run), remote.path(""), source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=remote.fs)
    report = build_report(remote, ReportOptions(paper=Path("/nonexistent.yaml"), ranklist_queries=2, bootstraps=100))
    assert report.uploaded_to == "mock://bucket/run/report"
    assert remote.fs.get_file_info(remote.path("report", "results.md")).size == (report.out / "results.md").stat().st_size
    pages = [p.name for p in report.files if p.parent.name == "ranklists"]
    assert "alpha__color-hist.html" in pages  # the rank lists read the embeddings through the store too
    assert remote.exists("report/ranklists/alpha__color-hist.html")


def test_not_a_run_directory_is_one_line(tmp_path, capsys):
    from raybench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no results" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_run_folder_the_report_cannot_write_suggests_out(stored_run, tmp_path, capsys):
    from raybench.cli import main

    run = _copy(stored_run, tmp_path)
    (run / "report").write_text("a file where the report folder would go")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(run), "--no-ranklists"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write the report to {run}/report" in err
    assert f"raybench report {run} --out DIR" in err


def test_ranklist_cameras_are_the_file_names_cameras(report):
    """Manifests hold camid 0-based; the page shows the camera the file is named with
    (Market's ``0002_c1s6_...`` is camera 1, not 0)."""
    page = (report.out / "ranklists" / "beta__osnet-tiny-alpha.html").read_text()
    figures = re.findall(r"title='([^']+)'>.*?<figcaption>(.*?)</figcaption>", page)
    assert len(figures) == 4 * 11
    for path, caption in figures:
        named = re.search(r"_c(\d+)", Path(path).name)
        shown = re.search(r"cam (\d+)", caption)
        assert named and shown, (path, caption)
        assert shown.group(1) == named.group(1), (path, caption)


def test_ranklist_shows_no_camera_for_datasets_without_cameras():
    from raybench.report.ranklist import camera_label

    assert camera_label(0) == "cam 1"
    assert camera_label(5, cameras=False) == ""


def test_domain_plot_value_labels_never_sit_under_the_legend(tmp_path):
    """Tall bars keep their value labels visible wherever they stand: the legend sits above the
    axes, over no bar."""
    from raybench.report.plots import _domain_panel, _pyplot

    plt = _pyplot()
    datasets = ["market1501", "dukemtmc", "msmt17", "cuhk03"]
    values = {"market1501": 0.35, "dukemtmc": 0.97, "msmt17": 0.95, "cuhk03": 0.99}
    from raybench.report.load import Cell
    from raybench.rundir.records import CellResult

    by_cell = {("m", d): Cell("m", d, CellResult("m", d, "ok", mAP=v, mINP=v, cmc=(v,), num_query=1, num_valid_query=1,
                                                  num_gallery=1), intervals={"main": {"mAP": (v - 0.01, min(1.0, v + 0.01))}})
               for d, v in values.items()}
    fig, ax = plt.subplots(figsize=(3.2, 3.8), layout="constrained")
    _domain_panel(ax, "m", "market1501", datasets, by_cell)
    fig.savefig(tmp_path / "panel.png")
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [t for t in ax.texts if re.fullmatch(r"\d+\.\d", t.get_text())]
    assert len(labels) == 4
    for text in labels:
        assert not legend.overlaps(text.get_window_extent(renderer)), text.get_text()
    assert not legend.overlaps(ax.title.get_window_extent(renderer))
    plt.close(fig)


def test_results_md_counts_skipped_images_and_marks_shared_stream_seconds(stored_run, tmp_path):
    """Images left out by ``on_bad_image: skip`` are counted with their first paths, and the
    seconds of a cell that shared its embedding stream carry a mark and a footnote."""
    from raybench.report.build import ReportOptions, build_report

    run = _copy(stored_run, tmp_path)
    target = run / "results" / "alpha" / "color-hist.json"
    data = json.loads(target.read_text())
    data["skipped_images"] = [f"/data/alpha/query/000{i}_c1s1_01.jpg" for i in range(5)]
    data["stream_cells"] = 2
    target.write_text(json.dumps(data))
    for other in (run / "results").glob("*/*.json"):  # results written before stream_cells existed
        if other != target:
            old = json.loads(other.read_text())
            old.pop("stream_cells", None)
            other.write_text(json.dumps(old))
    report = build_report(run, ReportOptions(paper=Path("/nonexistent.yaml"), ranklists=False, bootstraps=100))
    text = (report.out / "results.md").read_text()
    assert len(re.findall(r"\d\.\d\* \|", text)) == 1
    assert ("- alpha x color-hist: 5 skipped image(s): /data/alpha/query/0000_c1s1_01.jpg, "
            "/data/alpha/query/0001_c1s1_01.jpg, /data/alpha/query/0002_c1s1_01.jpg and 2 more") in text
    assert text.count("skipped image(s)") == 1  # only the cell that skipped some
    assert f"{data['seconds']:.1f}* |" in text
    assert "* embedded in one stream with other datasets of the same model" in text
    rows = {(r["model"], r["dataset"]): r for r in report.rows}
    assert rows[("color-hist", "alpha")]["stream_cells"] == 2
    assert rows[("color-hist", "beta")]["stream_cells"] == 1


def test_tradeoff_points_and_hybrids_table_come_from_the_run(report, stored_run):
    """The fusion (hybrid) inherits its supervised member's training set: on alpha's panel
    beside that member and the models trained on nothing; clip-fake, with no scored cross
    cell, has no point. Every number is the run's own result file."""
    from raybench.report.load import load_run
    from raybench.report.tradeoff import pareto, points

    results = {(m, d): json.loads((stored_run / "results" / d / f"{m}.json").read_text())
               for m in MODELS for d in DATASETS if (m, d) != FAILED}
    panels = points(load_run(stored_run))
    assert list(panels) == ["alpha"]
    panel = {p.model: p for p in panels["alpha"]}
    assert set(panel) == {"osnet-tiny-alpha", "osnet-color", "color-hist"}
    for model, p in panel.items():
        assert (p.in_domain, p.cross, p.cross_datasets) == (results[(model, "alpha")]["mAP"],
                                                             results[(model, "beta")]["mAP"], 1)
    assert panel["osnet-color"].paradigm == "hybrid"
    front = {p.model for p in pareto(panels["alpha"])}
    dominated = {m for m, p in panel.items()
                 if any(q.in_domain >= p.in_domain and q.cross >= p.cross and q is not p for q in panel.values())}
    assert front == set(panel) - dominated and front

    md = (report.out / "results.md").read_text()
    fused = panel["osnet-color"]
    line = next(line for line in md.splitlines() if line.startswith("| osnet-color | fusion, weights 1:1 | alpha |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3:5] == [f"{100 * fused.in_domain:.1f}", f"{100 * fused.cross:.1f}"]
    member = panel["osnet-tiny-alpha"]
    assert f"osnet-tiny-alpha ({100 * member.in_domain:.1f} / {100 * member.cross:.1f})" in cells[7]


def test_pareto_front_on_a_hand_worked_case():
    from raybench.report.tradeoff import Point, pareto

    def p(name, x, y):
        return Point(name, "hybrid", x, y, 1)

    pts = [p("a", 0.9, 0.1), p("b", 0.5, 0.5), p("c", 0.4, 0.4), p("d", 0.1, 0.9), p("e", 0.5, 0.3), p("f", 0.1, 0.9)]
    # c and e are dominated by b; d and f tie (neither dominates the other)
    assert [q.model for q in pareto(pts)] == ["d", "f", "b", "a"]


def test_a_rerun_with_eval_variants_rescores_stored_embeddings_into_column_groups(stored_run, tmp_path, monkeypatch):
    """The real run, copied, run again with three eval variants: no embedding stream starts and
    the main figures stay; every finished cell gains the variants' metrics, equal to torchreid's
    from its stored embeddings (AQE through the per-row reference); the report built from the
    run directory shows each variant as its own column group after the main figures (a cell
    scored before the variants shows none), so do the live table's rows and columns, and a plan
    of the same matrix keeps every cell."""
    from conftest import real_run_matrix
    from eval_references import torchreid_metrics

    from raybench.commands.run import table_columns
    from raybench.datasets import load_manifest
    from raybench.pipeline import driver, plan
    from raybench.pipeline.driver import RunOptions, run_matrix
    from raybench.report.build import ReportOptions, build_report
    from raybench.report.tables import read_csv
    from raybench.rundir.store import RunStore, embedding_matrix
    from raybench.specs import parse_eval_variants

    run = _copy(stored_run, tmp_path)
    finished = real_run_matrix(stored_run.parent).select(models=["osnet-tiny-alpha", "color-hist"])
    variants = parse_eval_variants([{"name": "rerank", "rerank": True}, {"name": "aqe", "aqe": {"k": 5, "alpha": 3.0}},
                                    {"name": "raw", "normalize": False}], "test", finished.eval)
    spec = dataclasses.replace(finished, eval_variants=variants)
    stamps = {p: p.stat().st_mtime_ns for p in (run / "embeddings").rglob("*")}
    before = {p.relative_to(run).as_posix(): json.loads(p.read_text()) for p in (run / "results").rglob("*.json")}

    def no_embedding(*args, **kwargs):
        raise AssertionError("an embedding stream started")

    monkeypatch.setattr(driver, "embedding_stream", no_embedding)
    summary = run_matrix(spec, str(run), RunOptions(), echo=lambda _: None)
    plan_states = [(c["model"], c["state"]) for c in json.loads((run / "run.json").read_text())["plan"]]
    assert summary.ok and [s for _, s in plan_states] == ["evaluate"] * 6  # the fusion osnet-color too
    assert {m for m, _ in plan_states} == {"osnet-tiny-alpha", "color-hist", "osnet-color"}
    assert {p: p.stat().st_mtime_ns for p in (run / "embeddings").rglob("*")} == stamps

    store = RunStore.open(run)
    for model in ("osnet-tiny-alpha", "color-hist"):
        for dataset in DATASETS:
            result = json.loads((run / "results" / dataset / f"{model}.json").read_text())
            old = before[f"results/{dataset}/{model}.json"]
            assert [result[k] for k in ("mAP", "mINP", "cmc")] == [old[k] for k in ("mAP", "mINP", "cmc")]
            main = {k: old["protocol"][k] for k in ("distance", "normalize", "rerank", "max_rank")}
            assert result["variants"]["aqe"]["scoring"] == {**main, "aqe_k": 5, "aqe_alpha": 3.0, "aqe_times": 1}
            assert list(result["variants"]) == ["rerank", "aqe", "raw"]
            if model == "color-hist":
                # Identical histograms (equal crops) tie in distance, and torchreid's unstable
                # argsort orders ties as it happens to (raybench: by gallery index, rank.py):
                # only the tie-free model's cells can equal torchreid's numbers.
                continue
            table = store.read_embeddings(dataset, model)
            emb, split = embedding_matrix(table), table.column("split").to_numpy(zero_copy_only=False)
            pid, cam = table.column("pid").to_numpy(), table.column("camid").to_numpy()
            q, g = split == "query", split == "gallery"
            args = (emb[q], emb[g], pid[q], pid[g], cam[q], cam[g])
            expected = {"rerank": torchreid_metrics(*args, max_rank=10, rerank=(20, 6, 0.3)),
                        "aqe": torchreid_metrics(*args, max_rank=10, aqe=(5, 3.0, 1)),
                        "raw": torchreid_metrics(*args, max_rank=10, normalize=False)}
            for name, (m_ap, m_inp, cmc) in expected.items():
                got = result["variants"][name]
                assert got["mAP"] == pytest.approx(m_ap, abs=1e-6), (model, dataset, name)
                assert got["mINP"] == pytest.approx(m_inp, abs=1e-6)
                np.testing.assert_allclose(got["cmc"], cmc, atol=1e-6)
                assert abs(got["mAP"] - result["mAP"]) > 1e-3  # the variant changes the scores
    rows = {(r["model"], r["dataset"]): r for r in summary.rows}
    assert rows[("color-hist", "beta")]["mAP (aqe)"] == json.loads(
        (run / "results/beta/color-hist.json").read_text())["variants"]["aqe"]["mAP"]
    columns = table_columns(summary.rows)
    assert columns.index("mINP") < columns.index("mAP (rerank)") < columns.index("mAP (raw)") < columns.index("queries")

    report = build_report(run, ReportOptions(ranklists=False, bootstraps=100))
    md = (report.out / "results.md").read_text()
    assert md.index("## mAP / Rank-1") < md.index("## Eval variants")
    assert "### `rerank`: rerank true, rerank_k1 20, rerank_k2 6, rerank_lambda 0.3" in md
    assert "### `aqe`: aqe_k 5, aqe_alpha 3.0, aqe_times 1" in md and "### `raw`: normalize false" in md
    assert md.index("### `rerank`") < md.index("### `aqe`") < md.index("### `raw`") < md.index("## Details")
    aqe = md[md.index("### `aqe`"):md.index("### `raw`")]
    result = json.loads((run / "results/beta/color-hist.json").read_text())["variants"]["aqe"]
    line = next(line for line in aqe.splitlines() if line.startswith("| color-hist | "))
    assert re.search(rf"\| {100 * result['mAP']:.1f} \[[\d.]+, [\d.]+\] / {100 * result['cmc'][0]:.1f} \[[\d.]+, [\d.]+\], "
                     r"vs main [+-]\d+\.\d \[-?[\d.]+, -?[\d.]+\]\*? \|$", line), line
    csv_rows = {(r["model"], r["dataset"]): r for r in read_csv(report.out / "results.csv")}
    json_rows = {(r["model"], r["dataset"]): r for r in json.loads((report.out / "results.json").read_text())}
    assert list(next(iter(csv_rows.values())))[:5] == ["model", "dataset", "paradigm", "status", "mAP"]
    for (model, dataset), row in csv_rows.items():
        result = json.loads((run / "results" / dataset / f"{model}.json").read_text())
        if model == "clip-fake":  # scored before the variants (and not in this run's matrix): none
            assert all(row[f"{m} ({v})"] is None for v in ("rerank", "aqe", "raw") for m in ("mAP", "R1", "mINP"))
            continue
        for name, scored in result["variants"].items():
            assert row[f"mAP ({name})"] == json_rows[(model, dataset)][f"mAP ({name})"] == scored["mAP"]
            assert row[f"R1 ({name})"] == scored["cmc"][0] and row[f"R5 ({name})"] == scored["cmc"][4]
            assert row[f"mINP ({name})"] == scored["mINP"]
        assert row["mAP"] == result["mAP"]

    datasets = {d.name: plan.load_images(d, load_manifest) for d in spec.datasets}
    assert {c.state for c in plan.plan_cells(spec, datasets, store, force=False)} == {"done"}
    assert {c.state for c in plan.plan_cells(finished, datasets, store, force=False)} == {"evaluate"}
