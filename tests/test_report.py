"""`raybench report` on a small run directory built by hand: every file, and files that read well.

The run follows the result-JSON contract and the run-directory layout: three models x two
datasets, one failed cell, one dataset scored over two trials, tiny JPEG images, and an
embeddings Parquet per cell.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from raybench.cli import cli

MODELS = {  # name -> (paradigm, options)
    "osnet-tiny-alpha": ("supervised", {"trained_on": "alpha"}),
    "clip-fake": ("language-aligned", {}),
    "color-hist": ("baseline", {}),
}
DATASETS = {"alpha": 1, "beta": 2}  # name -> trials
FAILED = ("clip-fake", "beta", "CUDA out of memory while embedding beta; lower batch_size")
N_PIDS, DIM = 6, 8


def _images(root: Path, dataset: str) -> list[dict]:
    """Person-like tiny JPEGs: one query (camera 0) and two gallery images (cameras 1, 2) per id,
    plus a distractor (pid 0); the colour encodes the identity."""
    from PIL import Image

    rows = []
    folder = root / "data" / dataset
    folder.mkdir(parents=True)
    for pid in range(N_PIDS + 1):
        for cam, split in ((0, "query"), (1, "gallery"), (2, "gallery")):
            if pid == 0 and split == "query":
                continue
            path = folder / f"{pid:04d}_c{cam + 1}_{split}.jpg"
            colour = (60 + 25 * pid, 70 + 10 * cam, 150 - 15 * pid)  # no green or red: borders are
            Image.new("RGB", (32, 64), colour).save(path, quality=90)
            rows.append({"path": str(path), "pid": pid, "camid": cam, "split": split})
    return rows


def _write_embeddings(run: Path, dataset: str, model: str, rows: list[dict], trials: int, seed: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_PIDS + 1, DIM))
    table_rows = [dict(r, trial=t) for t in range(trials) for r in rows]
    emb = np.stack([centres[r["pid"]] + 0.8 * rng.normal(size=DIM) for r in table_rows]).astype(np.float32)
    columns = {
        "path": pa.array([r["path"] for r in table_rows], pa.string()),
        "pid": pa.array([r["pid"] for r in table_rows], pa.int32()),
        "camid": pa.array([r["camid"] for r in table_rows], pa.int32()),
        "split": pa.array([r["split"] for r in table_rows], pa.string()),
    }
    if trials > 1:
        columns["trial"] = pa.array([r["trial"] for r in table_rows], pa.int16())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), DIM)
    folder = run / "embeddings" / dataset / model
    folder.mkdir(parents=True)
    pq.write_table(pa.table(columns), folder / "part-00000.parquet")
    (folder / "_SUCCESS").write_text("")


def _result(model: str, dataset: str, trials: int, queries: list[dict], seed: int) -> dict:
    """A result JSON per the contract, with per-query numbers drawn at random."""
    paradigm = MODELS[model][0]
    base = {"model": model, "dataset": dataset, "paradigm": paradigm, "spec_hash": f"h-{model}",
            "num_params": 1000, "device": "cpu", "seconds": 1.5, "embed_seconds": 1.0, "eval_seconds": 0.5,
            "skipped_images": [],
            "protocol": {"camera_filter": True, "cuhk03_metric": False, "trials": trials,
                         "distance": "euclidean", "normalize": True, "rerank": False, "max_rank": 50}}
    if (model, dataset) == FAILED[:2]:
        return {**base, "status": "failed", "error": FAILED[2], "mAP": None, "mINP": None, "cmc": None,
                "trials": [], "spread": None, "per_query": None}
    rng = np.random.default_rng(seed)
    per_query = {"trial": [], "query": [], "path": [], "ap": [], "inp": [], "first_match": []}
    trial_rows = []
    for t in range(trials):
        first = rng.integers(1, 4, size=len(queries))
        ap = np.clip(1.0 / first + rng.normal(0, 0.05, size=len(queries)), 0.05, 1.0)
        per_query["trial"] += [t] * len(queries)
        per_query["query"] += list(range(len(queries)))
        per_query["path"] += [q["path"] for q in queries]
        per_query["ap"] += ap.tolist()
        per_query["inp"] += (ap * 0.8).tolist()
        per_query["first_match"] += first.tolist()
        cmc = [float(np.mean(first <= k)) for k in range(1, 2 * N_PIDS + 2)]
        trial_rows.append({"trial": t, "mAP": float(ap.mean()), "mINP": float(ap.mean() * 0.8), "cmc": cmc,
                           "num_query": len(queries), "num_valid_query": len(queries),
                           "num_gallery": 2 * N_PIDS + 2})
    cmc = np.mean([t["cmc"] for t in trial_rows], axis=0).tolist()
    maps = [t["mAP"] for t in trial_rows]
    spread = {"mAP_std": float(np.std(maps)), "rank1_std": float(np.std([t["cmc"][0] for t in trial_rows]))}
    return {**base, "status": "ok", "error": None, "mAP": float(np.mean(maps)),
            "mINP": float(np.mean([t["mINP"] for t in trial_rows])), "cmc": cmc,
            "num_query": len(queries), "num_valid_query": len(queries), "num_gallery": 2 * N_PIDS + 2,
            "trials": trial_rows, "spread": spread if trials > 1 else None, "per_query": per_query}


def make_run(root: Path) -> Path:
    """A stored run: run.json, embeddings and results for every cell but the failed one's embeddings."""
    run = root / "run"
    (run / "results").mkdir(parents=True)
    models = [{"name": m, "paradigm": p, "loader": "dummy", "arch": "x", "weights": None, "options": o}
              for m, (p, o) in MODELS.items()]
    (run / "run.json").write_text(json.dumps({
        "matrix": {"name": "handmade", "models": models, "datasets": [{"name": d} for d in DATASETS]},
        "git": {"commit": "0123456789abcdef", "dirty": False},
    }))
    for i, (dataset, trials) in enumerate(DATASETS.items()):
        rows = _images(root, dataset)
        queries = [r for r in rows if r["split"] == "query"]
        (run / "results" / dataset).mkdir()
        for j, model in enumerate(MODELS):
            result = _result(model, dataset, trials, queries, seed=10 * i + j)
            (run / "results" / dataset / f"{model}.json").write_text(json.dumps(result))
            if result["status"] == "ok":
                _write_embeddings(run, dataset, model, rows, trials, seed=10 * i + j)
    return run


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"))


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["report", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_json_prints_one_row_per_cell(stored_run):
    rows = json.loads(invoke(str(stored_run), "--format", "json", "--no-ranklists").stdout)
    assert len(rows) == len(MODELS) * len(DATASETS)
    by_cell = {(r["model"], r["dataset"]): r for r in rows}
    failed = by_cell[FAILED[:2]]
    assert failed["status"] == "failed" and failed["error"] == FAILED[2] and failed["mAP"] is None
    stored = json.loads((stored_run / "results" / "alpha" / "color-hist.json").read_text())
    row = by_cell[("color-hist", "alpha")]
    assert row["mAP"] == stored["mAP"] and row["mINP"] == stored["mINP"] and row["cmc"] == stored["cmc"]
    assert 0 <= row["mAP"] <= 1 and all(0 <= v <= 1 for v in row["cmc"])
    assert row["R1"] == stored["cmc"][0]
    assert row["mAP_ci_lo"] <= row["mAP"] <= row["mAP_ci_hi"]
    assert by_cell[("color-hist", "beta")]["num_trials"] == 2


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
                "domain_map.png", "paper.md", "paper.csv", "ranklists/index.html"}
    pages = {f"ranklists/{d}__{m}.html" for m in MODELS for d in DATASETS if (m, d) != FAILED[:2]}
    assert names == expected | pages
    assert all((out / n).is_file() and (out / n).stat().st_size > 0 for n in names)
    md = (out / "results.md").read_text()
    assert FAILED[2] in md and "failed [1]" in md
    cells = len(MODELS) * len(DATASETS)
    assert f"{cells} cells ({cells - 1} ok, 1 failed) of {len(MODELS)} models" in md
    for paradigm in ("supervised", "language-aligned", "baseline"):
        assert f"**{paradigm}**" in md
    assert md.index("**supervised**") < md.index("**language-aligned**") < md.index("**baseline**")
    assert "![mAP" in md and "(paper.md)" in md
    assert "git `0123456789ab`" in md and "embedded on `cpu`" in md


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

    from raybench.report.ranklist import THUMB

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

    cell = load_run(stored_run).cell("color-hist", "alpha")
    meta, emb = load_embeddings(sorted((stored_run / "embeddings" / "alpha" / "color-hist").glob("*.parquet")))
    lines, _, g_idx = sample_lines(cell, meta, emb, n_queries=6, seed=0)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for line in lines:
        allowed = [g for g in g_idx if not (meta["pid"][g] == meta["pid"][line.query]
                                            and meta["camid"][g] == meta["camid"][line.query])]
        expected = sorted(allowed, key=lambda g: np.sum((unit[g] - unit[line.query]) ** 2))[:10]
        assert list(line.top) == expected


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
    row = {"model": "clip-fake", "dataset": "alpha", "status": "ok", "mAP": 0.111,
           "mAP_ci_lo": 0.1, "mAP_ci_hi": 0.12}
    (line,) = compare([row], load_reference(ref_path))
    assert line["diff"] == 1.1 and line["note"].startswith("agrees within 2")


def test_shipped_paper_reference_loads():
    from raybench.report.paper import load_reference

    ref = load_reference()
    assert ref.source["grade"] in ("primary", "secondary")
    assert ref.values[("osnet-x1_0-market", "market1501")][2] == 83.57
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
def damaged_report(tmp_path_factory):
    """The stored run with one cell's embeddings truncated and one cell scored with the classic
    CUHK03 metric."""
    from raybench.report.build import ReportOptions, build_report

    run = make_run(tmp_path_factory.mktemp("damaged"))
    part = run / "embeddings" / "alpha" / "color-hist" / "part-00000.parquet"
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


def test_classic_cuhk03_rank1_has_no_query_bootstrap_interval(damaged_report):
    rows = {(r["model"], r["dataset"]): r for r in damaged_report.rows}
    sampled, plain = rows[("osnet-tiny-alpha", "alpha")], rows[("color-hist", "alpha")]
    assert sampled["R1_ci_lo"] is None and sampled["R1_ci_hi"] is None
    assert sampled["mAP_ci_lo"] <= sampled["mAP"] <= sampled["mAP_ci_hi"]
    assert plain["R1_ci_lo"] is not None
    assert any("classic CUHK03" in n and "osnet-tiny-alpha x alpha" in n for n in damaged_report.notes)


def test_in_domain_from_spec_and_name(stored_run, tmp_path):
    from raybench.report.load import load_run
    from raybench.report.domain import trained_on

    run = load_run(stored_run)
    assert trained_on(run, "osnet-tiny-alpha") == "alpha"
    assert trained_on(run, "color-hist") is None
    renamed = make_named_run(tmp_path)
    assert trained_on(load_run(renamed), "osnet-x0_25-alpha") == "alpha1501"
    # a training set outside the run, found in the dataset catalog: every cell is cross-domain
    assert trained_on(load_run(renamed), "osnet-x0_25-msmt17") == "msmt17"


def make_named_run(root: Path) -> Path:
    """A run without run.json whose supervised models are named after their training sets."""
    result = {"model": "osnet-x0_25-alpha", "dataset": "alpha1501", "paradigm": "supervised",
              "status": "ok", "error": None, "mAP": 0.5, "mINP": 0.3, "cmc": [0.6, 0.8]}
    for dataset in ("alpha1501", "beta"):
        (root / "results" / dataset).mkdir(parents=True)
        for model in ("osnet-x0_25-alpha", "osnet-x0_25-msmt17"):
            (root / "results" / dataset / f"{model}.json").write_text(
                json.dumps({**result, "model": model, "dataset": dataset}))
    return root


def test_missing_and_unreadable_cells_are_shown(tmp_path):
    from raybench.report.load import load_run

    (tmp_path / "results" / "alpha").mkdir(parents=True)
    (tmp_path / "results" / "alpha" / "m1.json").write_text("{not json")
    (tmp_path / "results" / "alpha" / ".tmp-0123.json").write_text("{")  # the store, mid-write
    (tmp_path / "run.json").write_text(json.dumps({"matrix": {"name": "x", "models": ["m1", "m2"],
                                                              "datasets": ["alpha"]}}))
    run = load_run(tmp_path)
    assert [c.model for c in run.cells] == ["m1", "m2"]
    assert run.cell("m1", "alpha").status == "failed" and "m1.json" in run.cell("m1", "alpha").error
    assert run.cell("m2", "alpha").status == "missing"


def test_not_a_run_directory_is_one_line(tmp_path, capsys):
    from raybench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no results" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
