"""Text queries through the whole pipeline: a text_smoke-like matrix (synthetic captions and a
CUHK-PEDES-layout copy of them x colour words, a tiny random open_clip CLIP and color-hist)
run with run_matrix on the session's local Ray. Caption embeddings are stored beside the
images and equal the model's own embed_text; the text-to-image metrics equal evaluate_t2i
recomputed here from the stored embeddings; a model without a text tower is an ok image cell
that says "no text tower"; a second run keeps every cell without embedding again; the report
has the text table, the heatmap and the caption rank lists."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest

from raybench.catalog import load_model_catalog
from raybench.rundir.records import CellResult
from raybench.rundir.store import RunStore
from raybench.specs import EvalSpec, MatrixSpec, parse_dataset, parse_model

SYNTH = {"ids": 10, "cams": 3, "images_per_id": 4, "domain": "a", "seed": 3}
MODELS = load_model_catalog()


def _clip():
    return parse_model({"name": "clip-tiny", "loader": "openclip", "arch": "raybench-tiny-ViT", "weights": None,
                        "paradigm": "language-aligned", "batch_size": 16, "preprocess": {"size": [64, 32]}}, "test")


def _pedes_copy(synth_root, out):
    """A CUHK-PEDES-layout copy of the synthetic test images and their captions."""
    records = json.loads((synth_root / "captions.json").read_text())
    entries = []
    for r in records:
        if r["split"] == "train":
            continue
        target = out / "imgs" / r["file_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(synth_root / r["file_path"], target)
        entries.append({"file_path": r["file_path"], "id": r["id"], "split": "test", "captions": r["captions"]})
    (out / "reid_raw.json").write_text(json.dumps(entries))
    return out


@pytest.fixture(scope="module")
def text_run(ray_local, tmp_path_factory):
    from raybench.datasets import resolve_root
    from raybench.pipeline.driver import RunOptions, run_matrix

    synth = parse_dataset({"name": "syn", "adapter": "synthetic", "protocol": {"camera_filter": True},
                           "options": SYNTH}, "test")
    tmp = tmp_path_factory.mktemp("text")
    pedes = parse_dataset({"name": "pedes", "adapter": "cuhkpedes", "protocol": {"camera_filter": False},
                           "root": str(_pedes_copy(resolve_root(synth), tmp / "CUHK-PEDES"))}, "test")
    spec = MatrixSpec("text-test", (MODELS["color-words"], _clip(), MODELS["color-hist"]), (synth, pedes),
                      EvalSpec(distance="cosine", max_rank=10))
    out = tmp / "run"
    lines: list[str] = []
    first = run_matrix(spec, str(out), RunOptions(), echo=lines.append)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("embeddings/*/*/attempt-*/*.parquet")}
    again: list[str] = []
    second = run_matrix(spec, str(out), RunOptions(), echo=again.append)
    return spec, out, first, second, stamps, again


def _result(out, dataset, model):
    return json.loads((out / "results" / dataset / f"{model}.json").read_text())


def test_text_cells_store_caption_embeddings_beside_the_images(text_run):
    from raybench.datasets import load_captions

    spec, out, first, *_ = text_run
    assert first.ok, first.failed
    store = RunStore.open(str(out))
    for data in spec.datasets:
        captions = load_captions(data)
        query = captions.filter(pc.equal(captions.column("split"), "query"))
        for model in ("color-words", "clip-tiny"):
            table = store.read_text_embeddings(data.name, model)
            assert table.column_names == ["caption", "pid", "path", "split", "embedding"]
            assert table.column("caption").to_pylist() == query.column("caption").to_pylist()
            assert table.column("pid").to_pylist() == query.column("pid").to_pylist()
            assert store.cell_marker(data.name, model).text_rows == query.num_rows > 0
        # color-hist has no text tower: nothing but its images
        assert store.cell_marker(data.name, "color-hist").text_rows is None
        files = store.cell_marker(data.name, "color-hist").files
        assert "manifest.parquet" in files and not [name for name in files if "text" in name or "caption" in name]


def test_stored_caption_embeddings_are_the_models_own(text_run):
    """The stream's row bookkeeping: each stored caption row is that caption's embed_text."""
    import torch

    from raybench.models import build_embedder

    spec, out, *_ = text_run
    table = RunStore.open(out).read_text_embeddings("syn", "clip-tiny")
    torch.manual_seed(0)  # as the embedding actors build a model without weights
    embedder = build_embedder(_clip(), device="cpu")
    captions = table.column("caption").to_pylist()
    stored = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(stored, embedder.embed_text(captions), rtol=1e-4, atol=1e-5)
    assert np.abs(stored[0] - stored[1:]).max() > 1e-3


@pytest.mark.parametrize("dataset", ["syn", "pedes"])
@pytest.mark.parametrize("model", ["color-words", "clip-tiny"])
def test_text_metrics_equal_evaluate_t2i_on_the_stored_embeddings(text_run, dataset, model):
    from raybench.eval.text import evaluate_t2i

    _, out, *_ = text_run
    store = RunStore.open(out)
    images = store.read_embeddings(dataset, model).to_pandas()
    images = images[images.split != "train"].drop_duplicates("path")
    captions = store.read_text_embeddings(dataset, model).to_pandas()
    img = np.stack(images.embedding.to_numpy()).astype(np.float64)
    txt = np.stack(captions.embedding.to_numpy()).astype(np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    expected = evaluate_t2i(txt @ img.T, captions.pid.to_numpy(), images.pid.to_numpy())
    result = _result(out, dataset, model)
    assert result["status"] == "ok" and result["text_status"] == "ok"
    text = CellResult.from_json(result).text
    assert (text.num_query, text.num_valid_query, text.num_gallery) == (len(captions), len(captions), len(images))
    for key in ("R1", "R5", "R10", "mAP", "mINP"):
        assert text.value(key) == pytest.approx(getattr(expected, key), abs=1e-6), key
    np.testing.assert_allclose(text.cmc, expected.cmc, atol=1e-6)
    np.testing.assert_allclose(text.per_query["ap"], expected.ap, atol=1e-6)


def test_colour_words_beat_chance_on_synthetic_captions(text_run):
    """The colour baseline's text side finds the described person far above chance (1 in 10 ids)."""
    _, out, *_ = text_run
    assert _result(out, "syn", "color-words")["text"]["cmc"][0] > 0.3


def test_no_text_tower_is_an_ok_image_cell(text_run):
    _, out, first, *_ = text_run
    for dataset in ("syn", "pedes"):
        result = _result(out, dataset, "color-hist")
        assert result["status"] == "ok" and result["text_status"] == "no text tower" and result["text"] is None
        assert result["mAP"] == pytest.approx(_result(out, dataset, "color-words")["mAP"])  # same images, same feature
    row = next(r for r in first.rows if (r["dataset"], r["model"]) == ("pedes", "color-hist"))
    assert row["status"] == "ok" and row["text"] == "no text tower" and "R1 (t2i)" not in row
    words = next(r for r in first.rows if (r["dataset"], r["model"]) == ("pedes", "color-words"))
    assert words["R1 (t2i)"] == _result(out, "pedes", "color-words")["text"]["cmc"][0]


def test_a_dataset_without_image_queries_is_scored_leave_one_out(text_run):
    """Every test image a query against the others; an identity with one image has no valid query."""
    from raybench.eval.rank import evaluate_features

    _, out, *_ = text_run
    result = _result(out, "pedes", "color-hist")
    assert result["i2i_rule"] == "leave-one-out" and _result(out, "syn", "color-hist")["i2i_rule"] is None
    table = RunStore.open(out).read_embeddings("pedes", "color-hist")
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    pids = table.column("pid").to_numpy()
    cams = np.arange(len(pids))  # each image its own camera: the filter drops the query itself only
    expected = evaluate_features(emb, emb, pids, pids, cams, cams, max_rank=10, camera_filter=True,
                                 distance="cosine", normalize=True)
    assert result["num_query"] == result["num_gallery"] == len(pids)
    assert result["mAP"] == pytest.approx(expected.mAP) and result["cmc"][0] == pytest.approx(expected.cmc[0])


def test_a_rerun_keeps_text_cells_without_embedding_again(text_run):
    _, out, first, second, stamps, again = text_run
    assert second.ok and {r["this_run"] for r in second.rows} == {"kept"}
    assert any("6 cells: 6 kept, 0 to run" in line for line in again)
    assert stamps and {p: p.stat().st_mtime_ns for p in out.glob("embeddings/*/*/attempt-*/*.parquet")} == stamps
    assert [(r.get("R1 (t2i)"), r["text"]) for r in second.rows] == [(r.get("R1 (t2i)"), r["text"]) for r in first.rows]


def test_the_report_shows_text_retrieval(text_run):
    from raybench.report.build import ReportOptions, build_report

    _, out, *_ = text_run
    report = build_report(out, ReportOptions(ranklist_queries=3))
    md = (report.out / "results.md").read_text()
    section = md.split("## Text-to-image retrieval")[1].split("\n## ")[0]
    words = CellResult.from_json(_result(out, "syn", "color-words")).text
    assert f"| color-words | {100 * words.cmc[0]:.1f} / {100 * words.cmc[4]:.1f} / {100 * words.cmc[9]:.1f} / " \
           f"{100 * words.mAP:.1f} |" in section
    assert "| color-hist | no text tower | no text tower |" in section
    assert (report.out / "heatmap_t2i_r1.png").is_file()
    page = (report.out / "ranklists" / "syn__color-words__text.html").read_text()
    captions = RunStore.open(out).read_text_embeddings("syn", "color-words").column("caption")
    assert sum(c in page for c in captions.to_pylist()) >= 3 and page.count("<figure") == 30
    rows = {(r["model"], r["dataset"]): r for r in json.loads((report.out / "results.json").read_text())}
    assert rows[("clip-tiny", "pedes")]["mAP (t2i)"] == _result(out, "pedes", "clip-tiny")["text"]["mAP"]
    assert rows[("clip-tiny", "pedes")]["text"]["t2i"]["R1"] == _result(out, "pedes", "clip-tiny")["text"]["cmc"][0]
    assert rows[("color-hist", "pedes")]["i2i_rule"] == "leave-one-out"


def test_image_models_on_captioned_datasets_show_no_text_table(tmp_path):
    """The smoke run (image models on synth-a/b, which carry captions) keeps its report: no
    text table unless some cell scored captions."""
    from raybench.metrics import Scores
    from raybench.report.build import block_sections
    from raybench.report.load import Cell, Run
    from raybench.report.tables import block_datasets

    def cell(dataset, text_status, text=None):
        return Cell("m", dataset, CellResult("m", dataset, "ok", mAP=0.5, mINP=0.5, cmc=(0.5,), num_query=2,
                                             num_valid_query=2, num_gallery=3, text_status=text_status, text=text))

    image_only = (cell("syn", "no text tower"), cell("market", None))
    run = Run(RunStore.open(tmp_path), None, image_only, ("m",), ("syn", "pedes", "market"))
    assert run.block_names() == [] and block_sections(run, []) == []
    scored = Scores(0.25, 0.25, (0.5, 1.0), 4, 4, 6)
    run = Run(RunStore.open(tmp_path), None, (*image_only, cell("pedes", "ok", scored)), ("m",),
              ("syn", "pedes", "market"))
    assert [name for _, name in run.block_names()] == ["t2i"] and block_datasets(run, "t2i") == ["pedes"]
    assert "| m | 50.0 / 100.0 / 100.0 / 25.0 |" in "\n".join(block_sections(run, []))


def test_a_model_with_no_caption_cell_is_built_without_its_text_tower():
    """Image-only runs of a CLIP build and hold the image tower only, as before captions."""
    from raybench.models import build_embedder, has_text_tower, without_text
    from raybench.models.base import embeds_text

    clip = without_text(_clip())
    assert clip.options["text"] is False and not has_text_tower(clip)
    assert not embeds_text(build_embedder(clip, device="cpu"))
    assert without_text(MODELS["osnet-x1_0-market"]) is MODELS["osnet-x1_0-market"]  # no text option to set


def test_eval_variants_leave_the_text_block_alone(text_run, tmp_path):
    """A caption cell (leave-one-out images) scored again by the reducer with eval variants: the
    text-to-image block and the main image numbers are the stored ones; only ``variants`` is new."""
    from raybench.pipeline.reducer import CellJob, evaluate_cell
    from raybench.rundir.store import RunStore
    from raybench.specs import EvalVariant

    spec, out, *_ = text_run
    store = RunStore.open(shutil.copytree(out, tmp_path / "run"))
    stored = _result(out, "pedes", "clip-tiny")
    pedes = next(d for d in spec.datasets if d.name == "pedes")
    job = CellJob(model="clip-tiny", dataset=pedes, paradigm="language-aligned", spec_hash=stored["spec_hash"],
                  cell_key=stored["cell_key"], manifest_hash=stored["manifest_hash"], eval_hash="x", text_status="ok")
    variants = (EvalVariant("rerank", EvalSpec(distance="cosine", max_rank=10, rerank=True)),
                EvalVariant("aqe", EvalSpec(distance="cosine", max_rank=10, aqe_k=3)))
    result = evaluate_cell(store, job, spec.eval, variants=variants)
    assert result.ok and result.text == CellResult.from_json(stored).text and result.text_status == "ok"
    assert (result.mAP, list(result.cmc), result.i2i_rule) == (stored["mAP"], stored["cmc"], "leave-one-out")
    assert list(result.variants) == ["rerank", "aqe"]
    assert all(v.num_valid_query == stored["num_valid_query"] for v in result.variants.values())
    assert result.variants["aqe"].mAP != pytest.approx(stored["mAP"], abs=1e-4)
