"""configs/models.yaml against the libraries, without any weights.

Real sizes are built on PyTorch's meta device (shapes only: no memory, no compute), through
raybench's own loaders, so the declared dims and image-tower parameter counts are checked on
the real architectures. The hf entries are checked against their hub processor and model configs
in test_models_hf.py.
"""

import json
import subprocess
import sys

import pytest

from raybench.catalog import load_model_catalog
from raybench.models import LOADERS, build_embedder, get_loader
from raybench.specs import INTERPOLATE, PARADIGMS

CATALOG = load_model_catalog()
STUDY = [
    "clip-vit-b32", "clip-vit-b16", "clip-vit-l14", "siglip2-b16-256", "siglip2-b16-384", "dinov2-b14",
    "dinov2-l14", "pe-core-l14-336", "pe-spatial-s16-512", "osnet-x1_0-market", "clipreid-vit-b16-msmt17",
]
EXTRAS = [
    *(f"osnet-{w}-{d}" for w in ("x0_25", "x0_5", "x0_75", "x1_0") for d in ("market", "msmt17", "duke")),
    "dinov2-s14", "dinov2-g14", "siglip2-l16-256", "siglip2-so400m16-256", "pe-core-b16", "pe-core-g14-448",
    "color-hist",
]
#: The torch families whose models build from their library alone: an hf model reads its hub
#: config (``Loader.hub_preprocess``), checked in test_models_hf.py.
TORCH_FAMILIES = tuple(n for n in LOADERS.names() if not (get_loader(n).numpy_only or get_loader(n).hub_preprocess))
#: The libraries the families build with (``Loader.library``): never imported to list models.
LIBRARIES = tuple(sorted({get_loader(n).library for n in LOADERS.names()} - {None}))


def names(*loaders):
    return [n for n, s in CATALOG.items() if s.loader in loaders]


def unique_archs(*loaders):
    """One catalog name per (loader, arch, pooling, size): the OSNet weights share 4 archs."""
    seen = {}
    for name in names(*loaders):
        s = CATALOG[name]
        seen.setdefault((s.loader, s.arch, s.pooling, s.preprocess.size), name)
    return list(seen.values())


def test_catalog_has_the_study_and_the_extras():
    assert not [n for n in STUDY + EXTRAS if n not in CATALOG]
    # every family has a catalog model, but interpolate: a matrix entry that mixes two of them
    assert set(LOADERS.names()) - {INTERPOLATE} == {s.loader for s in CATALOG.values()}


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_entry_states_preprocess_dim_paradigm_params(name):
    spec = CATALOG[name]
    assert spec.preprocess is not None and spec.dim and spec.paradigm in PARADIGMS
    assert isinstance(spec.options.get("params"), int)
    get_loader(spec.loader).check_options(spec)


def test_supervised_models_name_their_training_set():
    from raybench.catalog import load_dataset_catalog

    datasets = load_dataset_catalog()
    for name, spec in CATALOG.items():
        if spec.paradigm == "supervised":
            assert spec.options.get("trained_on") in datasets, name
            assert name.rsplit("-", 1)[-1] in spec.options["trained_on"]


@pytest.mark.parametrize("name", [n for n, s in CATALOG.items() if not get_loader(s.loader).hub_preprocess])
def test_preprocess_is_the_weights_own(name):
    """(hf entries: against their hub processor configs, in test_models_hf.py)"""
    spec = CATALOG[name]
    assert spec.preprocess == get_loader(spec.loader).default_preprocess(spec)


@pytest.mark.parametrize("name", names("openclip"))
def test_open_clip_tags_and_hub_repos_are_open_clips(name):
    import open_clip

    spec = CATALOG[name]
    assert spec.weights in open_clip.list_pretrained_tags_by_model(spec.arch)
    assert spec.options["hf_hub"] == open_clip.get_pretrained_cfg(spec.arch, spec.weights)["hf_hub"]
    loader = get_loader("openclip")
    assert loader.source(spec) == loader.resolve_source(spec)


@pytest.mark.parametrize("name", names("timm"))
def test_timm_tags_and_hub_repos_are_timms(name):
    import timm

    spec = CATALOG[name]
    assert f"{spec.arch}.{spec.weights}" in timm.list_models(pretrained=True)
    loader = get_loader("timm")
    assert loader.source(spec) == loader.resolve_source(spec)


@pytest.mark.parametrize("name", unique_archs(*TORCH_FAMILIES))
def test_real_size_dim_and_params_on_meta_device(name):
    assert_real_size(CATALOG[name])


def assert_real_size(spec):
    """Built on the meta device at its declared input: the declared dim and parameter count."""
    import torch

    with torch.device("meta"):
        embedder = build_embedder(spec, device="meta", pretrained=False)
        out = embedder.features(torch.empty(2, 3, *spec.preprocess.size))
    assert tuple(out.shape) == (2, spec.dim)
    assert embedder.num_params == spec.options["params"]
    return embedder


def test_open_clip_tags_keep_their_quick_gelu():
    """open_clip 3 builds 'ViT-B-32' + 'openai' with plain GELU and only warns."""
    import torch
    from open_clip.transformer import QuickGELU

    with torch.device("meta"):
        embedder = build_embedder(CATALOG["clip-vit-b32"], device="meta", pretrained=False)
    assert isinstance(embedder.tower.transformer.resblocks[0].mlp.gelu, QuickGELU)


def test_list_models_json_without_torch():
    code = (
        "import sys\nfrom raybench.cli import main\n"
        "try:\n    main(['list', 'models', '--json'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {('torch', *LIBRARIES)!r} if m in sys.modules], file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(CATALOG)
    row = rows["osnet-x1_0-market"]
    assert row["input"] == [256, 128] and row["dim"] == 512 and row["params"] == 2169508
    assert row["cached"] is False and rows["color-hist"]["cached"] is None
