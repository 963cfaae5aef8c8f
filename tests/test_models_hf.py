"""transformers entries: each one's preprocessing is its hub processor's own, pixel for pixel,
and its declared dim, parameters and input size agree with the hub configs it names.

The hub is not reachable offline, so the files those entries name are written into a
huggingface_hub cache layout under a temporary RAYBENCH_WEIGHTS, with the published keys and
values, and raybench reads them through its own (offline, cached) path.
"""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from raybench.catalog import load_model_catalog
from raybench.models import build_embedder, get_loader
from raybench.models.hf import preprocess_from_processor, save_tiny
from raybench.models.images import load_pixels
from conftest import write_crops

from raybench.specs import ModelSpec
from test_models_catalog import assert_real_size

CATALOG = load_model_catalog()
HF_NAMES = [n for n, s in CATALOG.items() if s.loader == "hf"]

#: the hub repos' preprocessor_config.json and config.json (vision part), as published
HUB = {
    "facebook/dinov2-base": {
        "preprocessor_config.json": {
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "BitImageProcessor",
            "image_std": [0.229, 0.224, 0.225],
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": 256},
        },
        "config.json": {
            "architectures": ["Dinov2Model"], "hidden_act": "gelu", "hidden_size": 768, "image_size": 518,
            "layer_norm_eps": 1e-06, "layerscale_value": 1.0, "mlp_ratio": 4, "model_type": "dinov2",
            "num_attention_heads": 12, "num_channels": 3, "num_hidden_layers": 12, "patch_size": 14,
            "qkv_bias": True, "use_swiglu_ffn": False,
        },
    },
    "google/siglip2-base-patch16-256": {
        "preprocessor_config.json": {
            "do_convert_rgb": None,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "SiglipImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "processor_class": "SiglipProcessor",
            "resample": 2,
            "rescale_factor": 0.00392156862745098,
            "size": {"height": 256, "width": 256},
        },
        "config.json": {
            "architectures": ["SiglipModel"], "model_type": "siglip",
            "vision_config": {"hidden_size": 768, "image_size": 256, "intermediate_size": 3072,
                              "model_type": "siglip_vision_model", "num_attention_heads": 12,
                              "num_hidden_layers": 12, "patch_size": 16},
        },
    },
}
#: sizes whose crop margins after DINOv2's resize are 3 mod 4 (100x153 -> 256x391: 167
#: rows; 153x100 -> 391x256: 167 columns), where a floor and a rounded centre offset differ
SIZES = [(64, 128), (100, 153), (153, 100), (50, 131), (20, 30)]


@pytest.fixture
def hub_cache(monkeypatch, tmp_path):
    """The HUB files in huggingface_hub's cache layout, under RAYBENCH_WEIGHTS/hub."""
    monkeypatch.setenv("RAYBENCH_WEIGHTS", str(tmp_path))
    for repo, files in HUB.items():
        folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text("0" * 40)
        snapshot = folder / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        for name, content in files.items():
            (snapshot / name).write_text(json.dumps(content))
        (snapshot / "model.safetensors").write_bytes(b"")  # present, so the load runs offline; never read


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_crops(tmp_path_factory.mktemp("hf-images"), SIZES, seed=3)


def processor(folder):
    """transformers' own processor for a folder: the PIL backend, which resizes with PIL as
    raybench does (transformers 5 defaults to a torchvision backend with its own antialias)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(folder, backend="pil")


def normalised(pixels, pre):
    return ((pixels / 255.0 - np.array(pre.mean)) / np.array(pre.std)).transpose(0, 3, 1, 2)


def test_every_hf_entry_has_its_hub_files_here():
    assert HF_NAMES and all(CATALOG[n].weights in HUB and CATALOG[n].arch in HUB for n in HF_NAMES)


@pytest.mark.parametrize("name", HF_NAMES)
def test_hf_preprocess_is_the_processors_own(hub_cache, name):
    """The entry's preprocess (size included) is what its hub processor config maps to."""
    spec = CATALOG[name]
    assert spec.preprocess == get_loader("hf").default_preprocess(spec)


@pytest.mark.parametrize("repo", sorted(HUB))
def test_pixels_equal_the_hf_processor(tmp_path, images, repo):
    """raybench's uint8 pixels, normalised, equal the processor's pixel_values (PIL backend)."""
    cfg = HUB[repo]["preprocessor_config.json"]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    pre = preprocess_from_processor(cfg, repo)
    expected = processor(tmp_path)([Image.open(p) for p in images], return_tensors="np")["pixel_values"]
    ours = normalised(np.stack([load_pixels(p, pre) for p in images]), pre)
    assert ours.shape == expected.shape
    assert float(np.abs(ours - expected).max()) < 1e-5


@pytest.mark.parametrize("kind, repo", [("dinov2", "facebook/dinov2-base"), ("siglip", "google/siglip2-base-patch16-256")])
def test_hf_embedding_equals_processor_and_forward(tmp_path, images, kind, repo):
    """A tiny model saved with the real processor config: no preprocess in the spec, so raybench
    reads the folder's processor config; its embedding is transformers' processor + forward."""
    import torch
    import transformers

    folder = save_tiny(kind, tmp_path / kind)
    (folder / "preprocessor_config.json").write_text(json.dumps(HUB[repo]["preprocessor_config.json"]))
    spec = ModelSpec(name="t", loader="hf", arch=str(folder), weights=str(folder), paradigm="self-supervised")
    embedder = build_embedder(spec, device="cpu")
    pixels = np.stack([load_pixels(p, embedder.preprocess) for p in images])
    model = transformers.AutoModel.from_pretrained(folder).eval()
    inputs = processor(folder)([Image.open(p) for p in images], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, **({"interpolate_pos_encoding": True} if kind == "siglip" else {}))
    assert float(np.abs(embedder.embed(pixels) - out.pooler_output.numpy()).max()) < 1e-5


def test_processor_geometries_without_a_fixed_input_are_spec_errors():
    from raybench.errors import SpecError

    base = HUB["facebook/dinov2-base"]["preprocessor_config.json"]
    with pytest.raises(SpecError, match="keeps any aspect"):
        preprocess_from_processor({**base, "do_center_crop": False}, "m")
    with pytest.raises(SpecError, match="no raybench interpolation"):
        preprocess_from_processor({**base, "resample": 1}, "m")  # LANCZOS
    old_style = preprocess_from_processor({**base, "size": 256, "crop_size": 224}, "m")  # bare ints
    assert (old_style.size, old_style.resize_mode, old_style.crop_pct) == ((224, 224), "shortest_crop", 0.875)


@pytest.mark.parametrize("name", HF_NAMES)
def test_hf_real_sizes(hub_cache, name):
    """Built on the meta device from the hub config.json the entry names, through raybench's own
    loader: the declared dim and parameter count, and the declared input (the processor's, see
    above) runs through the real position grid (DINOv2's is 518 px, interpolated to 224)."""
    spec = CATALOG[name]
    patch = assert_real_size(spec).tower.config.patch_size
    assert all(v % patch == 0 for v in spec.preprocess.size)


def test_crop_offset_matters_for_the_sizes_above(images):
    """The DINOv2 geometry with torchvision's rounded offset differs on the 3-mod-4 margins: the
    floor offset above is needed, not incidental."""
    pre = preprocess_from_processor(HUB["facebook/dinov2-base"]["preprocessor_config.json"], "m")
    rounded = dataclasses.replace(pre, crop_offset="round")
    assert not np.array_equal(load_pixels(images[1], pre), load_pixels(images[1], rounded))
    assert not np.array_equal(load_pixels(images[2], pre), load_pixels(images[2], rounded))


@pytest.fixture
def no_processor_cached(hub_cache, tmp_path):
    """DINOv2's config and weights cached, its processor config not (what a weights-only fetch
    or transformers' own from_pretrained leaves); the entry states no preprocess."""
    repo = "facebook/dinov2-base"
    snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    (snapshot / "preprocessor_config.json").unlink()
    return dataclasses.replace(CATALOG["dinov2-b14-hf"], preprocess=None), snapshot


def test_without_preprocess_offline_is_the_weights_error(monkeypatch, no_processor_cached):
    """Listing and loading see the processor config as part of what must be fetched; offline,
    resolving the preprocess is the clear, bounded weights error (not 'state preprocess')."""
    from raybench.errors import WeightsUnavailableError
    from raybench.models import resolve_preprocess, weights

    spec, _ = no_processor_cached
    probes = []
    monkeypatch.setattr(weights, "reachable", lambda host, port=443, timeout=0: probes.append(host) or False)
    assert weights.cached_status(CATALOG["dinov2-b14-hf"]) is True  # states its preprocess: nothing more needed
    assert weights.cached_status(spec) is False
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_preprocess(spec)
    assert probes == ["huggingface.co"]  # one probe, no retry
    message = str(info.value)
    assert "model 'dinov2-b14-hf'" in message and "facebook/dinov2-base" in message
    assert "raybench models fetch dinov2-b14-hf" in message


def test_without_preprocess_the_processor_config_is_downloaded(monkeypatch, no_processor_cached):
    """Online, the hub's own processor config is fetched (huggingface_hub stood in for by a copy
    of the published file) and gives the same preprocess as the catalog states."""
    import huggingface_hub

    from raybench.models import resolve_preprocess, weights

    spec, snapshot = no_processor_cached
    fetched = []

    def hf_hub_download(repo, filename, cache_dir=None):
        fetched.append((repo, filename))
        (snapshot / filename).write_text(json.dumps(HUB[repo][filename]))
        return str(snapshot / filename)

    monkeypatch.setattr(weights, "reachable", lambda *a, **k: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    assert resolve_preprocess(spec) == CATALOG["dinov2-b14-hf"].preprocess
    assert fetched == [("facebook/dinov2-base", "preprocessor_config.json")]
    assert weights.cached_status(spec) is True


def test_fetch_caches_the_processor_config_with_the_weights(monkeypatch, no_processor_cached):
    import huggingface_hub

    from raybench.models import weights

    spec, snapshot = no_processor_cached
    (snapshot / "model.safetensors").unlink()
    patterns = []

    class Api:
        def list_repo_files(self, repo):
            return ["config.json", "model.safetensors", "preprocessor_config.json", "README.md"]

    def snapshot_download(repo, allow_patterns, cache_dir=None):
        patterns.extend(allow_patterns)
        return str(snapshot)

    monkeypatch.setattr(weights, "reachable", lambda *a, **k: True)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    weights.fetch(spec)
    assert sorted(patterns) == ["config.json", "model.safetensors", "preprocessor_config.json"]
