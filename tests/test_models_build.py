"""Every catalog model builds (a tiny stand-in of the same family, random weights) and embeds;
raybench's embedding equals each library's own preprocessing + forward (fp32, 1e-5); pixels
are normalised exactly once."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from raybench.catalog import load_model_catalog
from raybench.errors import SpecError
from raybench.models import build_embedder, get_loader, tiny_spec
from raybench.models.hf import save_tiny
from raybench.models.images import load_pixels
from raybench.models.openclip import register_tiny_configs
from raybench.specs import ModelSpec, Preprocess

CATALOG = load_model_catalog()
TOL = 1e-5
_BUILT = {}


def tiny_embedder(name):
    """Catalog entries that share a tiny stand-in (the 12 OSNets, ...) build it once."""
    spec = tiny_spec(CATALOG[name])
    key = (spec.loader, spec.arch, spec.pooling, spec.preprocess, repr(sorted(spec.options.items())))
    if key not in _BUILT:
        _BUILT[key] = build_embedder(spec, device="cpu", pretrained=False)
    return spec, _BUILT[key]


def random_pixels(preprocess, n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *preprocess.size, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_model_builds_and_returns_its_dim(name):
    spec, embedder = tiny_embedder(name)
    out = embedder.embed(random_pixels(spec.preprocess))
    assert out.dtype == np.float32 and out.shape == (3, spec.dim) and np.isfinite(out).all()
    assert embedder.dim == spec.dim and embedder.paradigm == CATALOG[name].paradigm
    tower = getattr(embedder, "tower", None)
    expected = sum(p.numel() for p in tower.parameters()) if tower is not None else 0
    assert embedder.num_params == expected and (expected > 0 or get_loader(spec.loader).numpy_only)


def test_tiny_open_clip_architectures_build_in_a_fresh_process():
    """A Ray actor or a new `raybench run` has registered nothing beforehand: the openclip and
    clipreid builders find raybench's tiny open_clip architecture by themselves (a trained
    CLIP-ReID smoke model names it in its model.yaml)."""
    code = (
        "from raybench.models import build_embedder\n"
        "from raybench.specs import ModelSpec, Preprocess\n"
        "for loader in ('openclip', 'clipreid'):\n"
        "    spec = ModelSpec(name='t', loader=loader, arch='raybench-tiny-ViT', weights=None, paradigm='baseline',\n"
        "                     preprocess=Preprocess(size=(64, 32)))\n"
        "    print(loader, build_embedder(spec, device='cpu').dim)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["openclip", "32", "clipreid", "96"]


# --- equality with each library's own path ------------------------------------------------------


def ours(spec, embedder, paths):
    return embedder.embed(np.stack([load_pixels(p, spec.preprocess) for p in paths]))


def torchvision_input(paths, preprocess, resize):
    """The reference path torchreid, CLIP-ReID and HF-style pipelines use: PIL -> Resize ->
    ToTensor -> Normalize, done by torchvision."""
    import torch
    from torchvision import transforms

    transform = transforms.Compose([resize, transforms.ToTensor(), transforms.Normalize(preprocess.mean, preprocess.std)])
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


def assert_close(a, b):
    b = b.detach().numpy() if hasattr(b, "detach") else b
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) < TOL


@pytest.mark.parametrize("arch, size, mode", [
    ("raybench-tiny-ViT", (32, 32), "shortest"),
    ("raybench-tiny-ViT", (64, 32), "squash"),  # a 1:2 input: open_clip resizes the position grid
    ("raybench-tiny-SigLIP", (64, 32), "squash"),  # timm tower: resized by timm's set_input_size
    ("raybench-tiny-PE", (64, 32), "squash"),  # PE-Core: timm's Eva with rope, its head as projection
])
def test_open_clip_equals_encode_image(crops, arch, size, mode):
    import open_clip
    import torch

    spec = ModelSpec(name="t", loader="openclip", arch=arch, weights=None, paradigm="language-aligned",
                     preprocess=Preprocess(size=size, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28),
                                           interpolation="bicubic",
                                           resize_mode={"shortest": "shortest_crop"}.get(mode, mode)))
    embedder = build_embedder(spec, device="cpu", pretrained=False)
    register_tiny_configs()  # for open_clip's own path; raybench's builder registers them itself
    model = open_clip.create_model(arch, force_image_size=size).eval()
    if hasattr(model.visual, "trunk"):
        model.visual.trunk.set_input_size(img_size=size)
    model.visual.load_state_dict(embedder.tower.state_dict())
    transform = open_clip.image_transform(size, is_train=False, mean=spec.preprocess.mean, std=spec.preprocess.std,
                                          resize_mode=mode, interpolation="bicubic")
    with torch.no_grad():
        expected = model.encode_image(torch.stack([transform(Image.open(p)) for p in crops]))
    assert_close(ours(spec, embedder, crops), expected)


@pytest.mark.parametrize("arch, pooling", [
    ("vit_small_patch14_dinov2", "cls"),
    ("vit_small_patch14_dinov2", "mean"),
    ("vit_small_patch14_dinov2", "both"),
    ("vit_pe_spatial_small_patch16_512", None),
    ("vit_pe_spatial_small_patch16_512", "mean"),  # the catalog's: raybench's pool == timm's own avg pool
])
def test_timm_equals_timm_forward(crops, arch, pooling):
    import timm
    import torch
    from timm.data import create_transform

    kwargs = {"depth": 2, "embed_dim": 96, "num_heads": 2}
    pre = Preprocess(size=(112, 56), interpolation="bicubic", resize_mode="squash")
    spec = ModelSpec(name="t", loader="timm", arch=arch, weights=None, paradigm="self-supervised", pooling=pooling,
                     preprocess=pre, options={"model_kwargs": kwargs})
    embedder = build_embedder(spec, device="cpu", pretrained=False)
    # timm's own: a model made at this input size, its eval transform (squash mode) and its forward
    # (pre-logits pooled features): DINOv2 with its CLS token, PE-Spatial with its default avg pool
    model = timm.create_model(arch, num_classes=0, img_size=pre.size,
                              global_pool="token" if "dinov2" in arch else None, **kwargs).eval()
    model.load_state_dict(embedder.tower.state_dict())
    transform = create_transform(input_size=(3, *pre.size), crop_pct=1.0, crop_mode="squash",
                                 interpolation="bicubic", mean=pre.mean, std=pre.std)
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in crops])
    with torch.no_grad():
        own = model(x)
        # DINOv2's patch mean after the final norm (its linear-eval convention; timm's avg pool
        # would norm after pooling instead)
        patch_mean = model.forward_features(x)[:, model.num_prefix_tokens:].mean(1)
    expected = {
        None: own,
        "cls": own,
        "mean": own if "pe_spatial" in arch else patch_mean,
        "both": torch.cat([own, patch_mean], 1),
    }[pooling]
    assert_close(ours(spec, embedder, crops), expected)


@pytest.mark.parametrize("kind, pooling, size", [("dinov2", "cls", (56, 28)), ("dinov2", "mean", (56, 28)),
                                                  ("dinov2", "both", (56, 28)), ("siglip", None, (64, 32))])
def test_hf_equals_transformers_forward(crops, tmp_path, kind, pooling, size):
    import torch
    import transformers
    from torchvision import transforms

    folder = save_tiny(kind, tmp_path / kind)
    pre = Preprocess(size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", resize_mode="squash")
    spec = ModelSpec(name="t", loader="hf", arch=str(folder), weights=str(folder), paradigm="self-supervised",
                     pooling=pooling, preprocess=pre)
    embedder = build_embedder(spec, device="cpu")  # loads the saved weights: the local-folder path
    model = transformers.AutoModel.from_pretrained(folder).eval()
    x = torchvision_input(crops, pre, transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC))
    with torch.no_grad():
        out = model(pixel_values=x, **({"interpolate_pos_encoding": True} if kind == "siglip" else {}))
    patch_mean = out.last_hidden_state[:, 1:].mean(1)  # DINOv2: one CLS token, no registers
    expected = {None: out.pooler_output, "cls": out.pooler_output, "mean": patch_mean,
                "both": torch.cat([out.pooler_output, patch_mean], 1)}[pooling]
    assert_close(ours(spec, embedder, crops), expected)


def test_torchreid_equals_torchreid_test_transform_and_forward(crops):
    import torch
    import torchreid

    spec = dataclasses.replace(CATALOG["osnet-x0_25-market"], weights=None)
    embedder = build_embedder(spec, device="cpu")
    model = torchreid.models.build_model("osnet_x0_25", num_classes=751, pretrained=False).eval()
    state = embedder.tower.state_dict()
    model.load_state_dict({**model.state_dict(), **state})
    _, transform = torchreid.data.transforms.build_transforms(256, 128)
    with torch.no_grad():
        expected = model(torch.stack([transform(Image.open(p).convert("RGB")) for p in crops]))
    assert_close(ours(spec, embedder, crops), expected)


def test_color_hist_equals_a_plain_per_stripe_histogram(crops):
    spec = CATALOG["color-hist"]
    embedder = build_embedder(spec)
    got = ours(spec, embedder, crops)
    assert got.shape[1] == spec.dim == 6 * (8 * 4 + 4)
    for path, feature in zip(crops, got):
        hsv = np.asarray(Image.fromarray(load_pixels(path, spec.preprocess)).convert("HSV"))
        parts = []
        rows = np.arange(128)
        for stripe in range(6):
            band = hsv[rows * 6 // 128 == stripe].reshape(-1, 3)
            joint, _, _ = np.histogram2d(band[:, 0], band[:, 1], bins=(8, 4), range=((0, 256), (0, 256)))
            value, _ = np.histogram(band[:, 2], bins=4, range=(0, 256))
            parts += [np.sqrt(joint.ravel() / joint.sum()), np.sqrt(value / value.sum())]
        expected = np.concatenate(parts) / np.sqrt(12)
        assert np.abs(expected - feature).max() < 1e-6
        assert abs(np.linalg.norm(feature) - 1) < 1e-5


# --- shared behaviour ---------------------------------------------------------------------------


def test_pixels_are_normalised_once_and_only_from_uint8():
    """The study pushed normalised tensors through ToPILImage (values wrap). Here the model's
    input is (uint8 / 255 - mean) / std of the very pixels given, and nothing else is accepted."""
    import torch

    spec, embedder = tiny_embedder("osnet-x0_25-market")
    pixels = random_pixels(spec.preprocess, n=2)
    seen = []
    hook = embedder.tower.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        embedder.embed(pixels)
    finally:
        hook.remove()
    mean, std = np.array(spec.preprocess.mean), np.array(spec.preprocess.std)
    expected = ((pixels / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    assert np.abs(seen[0].numpy() - expected).max() < 1e-5
    normalised = torch.from_numpy(expected).float().numpy()
    with pytest.raises(TypeError, match="uint8"):
        embedder.embed(normalised)
    with pytest.raises(ValueError, match="shape"):
        embedder.embed(pixels[:, :-1])


def first_of_each_family(numpy_only: bool) -> dict[str, str]:
    """The first catalog model of each family (the loader that builds it) that is, or is not,
    numpy-only (``Loader.numpy_only``): every family with a catalog model is covered."""
    first = {}
    for name, spec in CATALOG.items():
        if get_loader(spec.loader).numpy_only == numpy_only:
            first.setdefault(spec.loader, name)
    return first


TORCH_FAMILIES = first_of_each_family(numpy_only=False)


@pytest.mark.parametrize("loader", sorted(TORCH_FAMILIES))
def test_flip_averages_the_image_and_its_mirror_in_every_torch_family(loader):
    """A model with ``flip: true``, built by build_embedder with the plain model's weights,
    embeds each image as exactly the mean of the plain model's embeddings of it and of its
    mirror (the same float32 operations, so to the bit: a random tiny DINOv2's CLS feature moves
    by only ~4e-5 under a mirror, which a tolerance would not see)."""
    spec, plain = tiny_embedder(TORCH_FAMILIES[loader])
    assert spec.loader == loader and not spec.flip
    flipped = build_embedder(dataclasses.replace(spec, flip=True), device="cpu", pretrained=False)
    flipped.tower.load_state_dict(plain.tower.state_dict())
    pixels = random_pixels(spec.preprocess)
    mirrored = plain.embed(np.ascontiguousarray(pixels[:, :, ::-1]))
    assert not np.array_equal(mirrored, plain.embed(pixels))  # the mirror is another input
    np.testing.assert_array_equal(flipped.embed(pixels), (plain.embed(pixels) + mirrored) / 2)


@pytest.mark.parametrize("name", sorted(first_of_each_family(numpy_only=True).values()))
def test_flip_on_a_family_without_torch_is_refused(name):
    with pytest.raises(SpecError, match=f"loader '{CATALOG[name].loader}' computes its features without torch"):
        build_embedder(dataclasses.replace(CATALOG[name], flip=True), device="cpu")


def test_cpu_runs_fp32_whatever_the_precision():
    spec, embedder = tiny_embedder("dinov2-g14")  # bf16 in the catalog
    assert spec.precision == "bf16" and embedder._autocast is None


@pytest.mark.parametrize("precision, dtype", [("bf16", "bfloat16"), ("fp16", "float16"), ("fp32", "float32")])
def test_gpu_autocasts_by_spec(precision, dtype):
    """On CUDA the tower runs under autocast in the spec's dtype and embed still returns float32
    features close to the fp32 ones (runs on GPU machines only)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    spec, reference = tiny_embedder("dinov2-b14")
    embedder = build_embedder(dataclasses.replace(spec, precision=precision), device="cuda", pretrained=False)
    embedder.tower.load_state_dict(reference.tower.state_dict())
    seen = []
    qkv = embedder.tower.blocks[0].attn.qkv  # a Linear: autocast runs it in the low-precision dtype
    hook = qkv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        pixels = random_pixels(spec.preprocess)
        got = embedder.embed(pixels)
    finally:
        hook.remove()
    assert seen == [getattr(torch, dtype)] and got.dtype == np.float32
    expected = reference.embed(pixels)
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()


def test_declared_dim_is_checked():
    spec = dataclasses.replace(tiny_spec(CATALOG["clip-vit-b16"]), dim=33)
    embedder = build_embedder(spec, device="cpu", pretrained=False)
    with pytest.raises(SpecError, match="declares dim 33"):
        embedder.embed(random_pixels(spec.preprocess, n=1))


def test_a_misspelt_torchreid_arch_names_the_close_ones():
    spec = dataclasses.replace(CATALOG["osnet-x0_25-market"], arch="osnet_x025", weights=None)
    with pytest.raises(SpecError, match=r"unknown torchreid model 'osnet_x025'; did you mean 'osnet_x0_25'"):
        build_embedder(spec, device="cpu", pretrained=False)


def test_unknown_option_is_a_spec_error():
    with pytest.raises(SpecError, match="unknown option 'colour'"):
        build_embedder(dataclasses.replace(CATALOG["color-hist"], options={"colour": 1}))


@pytest.mark.parametrize("name", ["clip-vit-b16", "clipreid-vit-b16-msmt17", "osnet-x0_25-market", "color-hist"])
def test_pooling_is_refused_where_the_family_would_ignore_it(name):
    """Only timm and hf pool ViT tokens; elsewhere a stated pooling is an error, not a no-op."""
    spec = dataclasses.replace(CATALOG[name], pooling="mean")
    with pytest.raises(SpecError, match=f"loader {spec.loader!r} .* takes no 'pooling'"):
        build_embedder(spec, device="cpu", pretrained=False)


def test_a_loader_outside_the_package_by_module_attr():
    spec = dataclasses.replace(CATALOG["color-hist"], loader="raybench.models.color:LOADER")
    assert build_embedder(spec).embed(random_pixels(spec.preprocess, n=2)).shape == (2, spec.dim)


def test_timm_input_size_override_resizes_the_position_grid():
    spec = dataclasses.replace(tiny_spec(CATALOG["dinov2-b14"]), preprocess=Preprocess(size=(112, 56)))
    embedder = build_embedder(spec, device="cpu", pretrained=False)
    assert embedder.tower.pos_embed.shape[1] == 1 + 8 * 4
    assert embedder.embed(random_pixels(spec.preprocess, n=1)).shape == (1, spec.dim)
