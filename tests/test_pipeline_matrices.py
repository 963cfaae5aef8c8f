"""The shipped matrices: every model sees the whole person crop (PROTOCOLS.md defect 8), and each
ViT works at the portrait input its matrix gives it."""

from __future__ import annotations

import pytest

from raybench.catalog import load_matrix

#: name -> spec: full holds paper's models (the same inputs: checked below) and more.
MODELS = {spec.name: spec for matrix in ("smoke", "full") for spec in load_matrix(matrix).models}


def test_paper_is_full_with_the_same_inputs():
    """A paper cell and a full cell of one model are the same cell (same spec hash)."""
    paper = load_matrix("paper").models
    assert all(MODELS[spec.name] == spec for spec in paper)


def test_ablation_scores_the_released_models_as_paper_does(tmp_path, monkeypatch):
    """The ablation's released and zero-shot cells are the paper/full cells (same spec), so the
    two matrices can share a run directory. Its trained:<run> models load as references
    without their runs (which may live on the cluster's storage only)."""
    monkeypatch.setenv("RAYBENCH_TRAINED", str(tmp_path))  # no run here
    models = load_matrix("ablation").models
    trained = [spec for spec in models if spec.loader == "trained"]
    hybrids = [spec for spec in models if spec.loader == "interpolate"]
    assert trained and hybrids and len(trained) + len(hybrids) < len(models)
    for spec in models:
        assert spec in trained or spec in hybrids or MODELS[spec.name] == spec, spec.name
    # the WiSE-FT curve starts at zero-shot CLIP at CLIP-ReID's input and ends at the trained run
    assert [s.options["alpha"] for s in hybrids] == [0, 0.25, 0.5, 0.75, 1]
    start, end = hybrids[0].options["members"]
    assert (start["arch"], start["weights"], end["loader"]) == ("ViT-B-16", "openai", "trained")
    assert start["preprocess"]["size"] == (256, 128)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_model_cuts_the_person_crop(name):
    """A 1:2 crop is squashed into a 2:1 portrait input, or letterboxed (pad): never centre-cropped
    to a square (which cuts its top and bottom quarters: head and feet)."""
    from raybench.models import resolve_preprocess

    pre = resolve_preprocess(MODELS[name])
    assert pre.resize_mode in ("squash", "pad") and pre.crop_pct == 1.0, pre
    height, width = pre.size
    assert pre.resize_mode == "pad" or height == 2 * width, f"{name}: {pre.size} distorts a 1:2 crop"


VITS = sorted(n for n, s in MODELS.items() if s.loader in ("openclip", "timm"))


@pytest.mark.parametrize("name", VITS)
def test_vits_build_at_their_matrix_input(name):
    """Real sizes on the meta device (no memory, no weights): the position grid follows the
    portrait input (open_clip's force_image_size, timm's set_input_size) and the declared dim
    comes out. transformers towers interpolate their grid per call (tested on tiny configs)."""
    import torch

    from raybench.models import build_embedder

    spec = MODELS[name]
    with torch.device("meta"):
        embedder = build_embedder(spec, device="meta", pretrained=False)
        out = embedder.features(torch.empty(2, 3, *spec.preprocess.size))
    assert tuple(out.shape) == (2, spec.dim)


def test_clothes_scores_the_papers_cells():
    """The clothes matrix is the study's 11 models at paper.yaml's inputs: its cells of a shared
    run directory are paper's (same spec hashes)."""
    assert load_matrix("clothes").models == load_matrix("paper").models
