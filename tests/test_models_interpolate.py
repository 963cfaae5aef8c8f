"""Weight interpolation (loader interpolate, WiSE-FT): the mixing rules on plain modules, tiny
pairs of every family it pairs (timm, open_clip, open_clip CLIP with CLIP-ReID) against weights
averaged by hand, and the real OSNet x0.25 checkpoints at alpha 0 and 1, which must give each
member's own embeddings bit for bit. (The Ray pipeline at alpha 0.3 against torchreid's own
evaluation: tests/test_pipeline_torchreid.py.)"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import MARKET_MINI, OSNET_DIR, needs_fixtures
from test_models_clipreid import SIZE, TINY, clipreid_state_dict
from torch import nn

from raybench.derived.interpolation import Interpolation, interpolation_spec
from raybench.errors import SpecError, WeightsUnavailableError
from raybench.models import build_embedder, check_model, has_text_tower, resolve_preprocess, tiny_spec
from raybench.models.base import embeds_text
from raybench.models.interpolate import mix, write
from raybench.specs import ModelSpec, Preprocess

CLIP_INPUT = Preprocess(size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
CAPTIONS = ["a person in a red top", "a man with a black backpack"]


def interpolations(first: ModelSpec, second: ModelSpec, *alphas: float) -> list[ModelSpec]:
    return [interpolation_spec(Interpolation("wise", (first.name, second.name), alphas), a, (first, second))
            for a in alphas]


def pixels(preprocess: Preprocess, n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *preprocess.size, 3), dtype=np.uint8)


def alone(spec: ModelSpec):
    """``spec`` built as an embedding actor builds it by itself (seeded when it has no weights)."""
    torch.manual_seed(0)
    return build_embedder(spec, device="cpu")


def by_hand(first, second, alpha: float) -> dict:
    """(1 - alpha) * first + alpha * second over two embedders' image towers' state dicts."""
    theirs = second.tower.state_dict()
    return {k: (1 - alpha) * v + alpha * theirs[k] if v.is_floating_point() else v
            for k, v in first.tower.state_dict().items()}


# --- the rules -----------------------------------------------------------------------------------


def _net(classes: int, inputs: int = 4) -> nn.Module:
    return nn.Sequential(OrderedDict(body=nn.Linear(inputs, 3), bn=nn.BatchNorm1d(3),
                                     classifier=nn.Linear(3, classes)))


def test_floats_mix_integer_buffers_stay_the_firsts_and_differing_heads_are_left_out():
    torch.manual_seed(0)
    first, second = _net(5), _net(7)
    first.bn.num_batches_tracked.fill_(10)
    second.bn.num_batches_tracked.fill_(99)
    for module in (first, second):  # parameters and buffers that differ, as trained BatchNorm's do
        for tensor in (module.bn.weight.data, module.bn.bias.data, module.bn.running_mean):
            tensor.normal_()
        module.bn.running_var.uniform_(0.5, 2)
    ours, theirs = first.state_dict(keep_vars=True), second.state_dict(keep_vars=True)
    before = {k: v.detach().clone() for k, v in ours.items()}
    write([(ours, mix(ours, theirs, 0.25, "image tower"))])
    for key in ("body.weight", "body.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        assert not torch.equal(before[key], theirs[key])
        torch.testing.assert_close(ours[key], 0.75 * before[key] + 0.25 * theirs[key], rtol=0, atol=1e-7)
    assert first.bn.num_batches_tracked.item() == 10
    assert torch.equal(first.classifier.weight, before["classifier.weight"])  # 5 vs 7 classes: left out
    assert isinstance(first.body.weight, nn.Parameter) and first.body.weight.data_ptr() == ours["body.weight"].data_ptr()
    # alpha 0 and 1 give each side exactly (torch.lerp), not up to rounding
    one = mix(before, theirs, 1.0, "x")
    assert all(torch.equal(v, theirs[k]) for k, v in one.items()) and "body.weight" in one
    zero = mix(before, theirs, 0.0, "x")
    assert all(torch.equal(v, before[k]) for k, v in zero.items()) and "bn.running_var" in zero


def test_a_head_only_one_side_has_is_left_out_but_any_other_mismatch_names_its_key():
    torch.manual_seed(0)
    headless = nn.Sequential(OrderedDict(body=nn.Linear(4, 3), bn=nn.BatchNorm1d(3))).state_dict()
    assert "classifier.weight" not in mix(_net(5).state_dict(), headless, 0.5, "image tower")
    with pytest.raises(SpecError, match=r"image tower key 'body.weight' has shape \[3, 4\] in a and \[3, 6\] in b"):
        mix(_net(5).state_dict(), _net(5, inputs=6).state_dict(), 0.5, "image tower", ("a", "b"))
    extra = {**headless, "extra.weight": torch.zeros(2)}
    with pytest.raises(SpecError, match=r"image tower key 'extra.weight' is in b only, not in a"):
        mix(headless, extra, 0.5, "image tower", ("a", "b"))
    halved = {**headless, "body.weight": headless["body.weight"].half()}
    with pytest.raises(SpecError, match=r"key 'body.weight' is torch.float32 in a and torch.float16 in b"):
        mix(headless, halved, 0.5, "image tower", ("a", "b"))


# --- tiny pairs of every family ------------------------------------------------------------------


def _timm(name: str, weights: str | None, depth: int = 2) -> ModelSpec:
    spec = tiny_spec(ModelSpec(name=name, loader="timm", arch="vit_small_patch16_224", weights=None,
                               paradigm="self-supervised"))
    kwargs = {**spec.options["model_kwargs"], "depth": depth}
    return dataclasses.replace(spec, name=name, weights=weights, options={"model_kwargs": kwargs})


def test_a_timm_pair_mixes_into_the_first_members_model(tmp_path):
    import timm
    from safetensors.torch import save_file

    first = _timm("vit-a", None)
    torch.manual_seed(1)  # the second: other weights, from a local file
    model = timm.create_model(first.arch, num_classes=0, **first.options["model_kwargs"])
    save_file(model.state_dict(), str(tmp_path / "b.safetensors"))
    second = _timm("vit-b", str(tmp_path / "b.safetensors"))
    a, b = alone(first), alone(second)
    start, middle, end = interpolations(first, second, 0.0, 0.4, 1.0)
    x = pixels(first.preprocess)
    torch.manual_seed(123)  # whatever the generator's state, a member without weights is seeded
    assert np.array_equal(build_embedder(start, device="cpu").embed(x), a.embed(x))
    assert np.array_equal(build_embedder(end, device="cpu").embed(x), b.embed(x))
    mixed = build_embedder(middle, device="cpu")
    assert (mixed.spec.name, mixed.paradigm, mixed.dim) == ("wise@0.4", "hybrid", a.dim)
    a.tower.load_state_dict(by_hand(a, b, 0.4))
    expected = a.embed(x)
    np.testing.assert_allclose(mixed.embed(x), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected - b.embed(x)).max() > 1e-2  # not either end

    deeper = _timm("vit-c", None, depth=3)
    with pytest.raises(SpecError, match=r"model 'wise@0.5': image tower key 'blocks.2.attn.proj.bias' is in vit-c only"):
        build_embedder(interpolations(first, deeper, 0.5)[0], device="cpu")


def _clip(name: str, weights: str | None = None, **options) -> ModelSpec:
    return ModelSpec(name=name, loader="openclip", arch="raybench-tiny-ViT", weights=weights, dim=32,
                     paradigm="language-aligned", preprocess=CLIP_INPUT, options={"quick_gelu": True, **options})


def test_zero_shot_clip_to_clipreid_mixes_the_image_tower_in_clips_forward(tmp_path):
    """The WiSE-FT curve from CLIP to CLIP-ReID: open_clip's CLIP and a CLIP-ReID checkpoint on
    the same open_clip arch and input. The feature is CLIP's projected embedding; CLIP-ReID has no
    text tower, so neither has the interpolation."""
    torch.manual_seed(1)
    torch.save(clipreid_state_dict(**TINY, grid=(SIZE[0] // 16, SIZE[1] // 16)), tmp_path / "clipreid.pth")
    clip = _clip("clip")
    reid = ModelSpec(name="reid", loader="clipreid", arch="raybench-tiny-ViT", weights=str(tmp_path / "clipreid.pth"),
                     paradigm="supervised", preprocess=CLIP_INPUT, dim=TINY["width"] + TINY["embed"])
    start, middle, end = interpolations(clip, reid, 0.0, 0.5, 1.0)
    assert has_text_tower(clip) and not has_text_tower(middle)
    x = pixels(CLIP_INPUT)
    a, b = alone(clip), alone(reid)
    built = build_embedder(start, device="cpu")
    assert np.array_equal(built.embed(x), a.embed(x)) and not embeds_text(built)
    with torch.no_grad():  # alpha 1: CLIP-ReID's weights, CLIP's feature (its projected half)
        tower = b.tower
        reid_projected = (tower.visual(b.to_input(x)) @ tower.proj).numpy()
    np.testing.assert_allclose(build_embedder(end, device="cpu").embed(x), reid_projected, rtol=1e-5, atol=1e-5)
    mixed = build_embedder(middle, device="cpu")
    theirs = {**b.tower.visual.state_dict(), "proj": b.tower.proj.detach()}
    a.tower.load_state_dict({k: 0.5 * v + 0.5 * theirs[k] for k, v in a.tower.state_dict().items()})
    np.testing.assert_allclose(mixed.embed(x), a.embed(x), rtol=1e-5, atol=1e-5)
    assert mixed.dim == 32 and mixed.num_params == a.num_params

    # the reverse pair runs CLIP-ReID's forward (the feature before and after the projection,
    # concatenated; 1280-d at ViT-B-16), and its alpha 0 is CLIP-ReID
    reverse = build_embedder(interpolations(reid, clip, 0.0)[0], device="cpu")
    assert reverse.dim == reid.dim == 96 and np.array_equal(reverse.embed(x), b.embed(x))
    # open_clip's default for weights without a tag is GELU; CLIP-ReID is QuickGELU
    gelu = _clip("clip-gelu", quick_gelu=False)
    with pytest.raises(SpecError, match=r"not the same architecture: clip-gelu has .*GELU.* where reid has .*QuickGELU"):
        build_embedder(interpolations(gelu, reid, 0.5)[0], device="cpu")
    # BN necks in the feature (neck_feat: after) exist in CLIP-ReID only
    necked = dataclasses.replace(reid, options={"neck_feat": "after"})
    with pytest.raises(SpecError, match=r"image tower key 'bottleneck.bias' is in reid only, not in clip"):
        build_embedder(interpolations(clip, necked, 0.5)[0], device="cpu")


def test_two_clips_mix_their_text_towers_too(tmp_path):
    import open_clip

    from raybench.models.openclip import register_tiny_configs

    register_tiny_configs()
    torch.manual_seed(1)
    model = open_clip.create_model("raybench-tiny-ViT", force_image_size=SIZE, force_quick_gelu=True)
    torch.save(model.state_dict(), tmp_path / "b.pt")
    first, second = _clip("clip-a"), _clip("clip-b", str(tmp_path / "b.pt"))
    start, end = interpolations(first, second, 0.0, 1.0)
    assert has_text_tower(end)
    x = pixels(CLIP_INPUT)
    for spec, member in ((start, first), (end, second)):
        built, own = build_embedder(spec, device="cpu"), alone(member)
        assert embeds_text(built)
        assert np.array_equal(built.embed(x), own.embed(x))
        assert np.array_equal(built.embed_text(CAPTIONS), own.embed_text(CAPTIONS))
    off = dataclasses.replace(end, options={**end.options, "text": False})  # the driver's image-only build
    assert not has_text_tower(off) and not embeds_text(build_embedder(off, device="cpu"))


def test_members_are_checked_as_models_of_their_own():
    osnet = ModelSpec(name="osnet", loader="torchreid", arch="osnet_x0_25", weights="/nowhere/osnet.pth",
                      paradigm="supervised")
    other = dataclasses.replace(osnet, name="wide", arch="osnet_x1_0", weights=None)
    with pytest.raises(SpecError, match=r"must share one architecture, got 'osnet_x0_25' \(osnet\) and 'osnet_x1_0'"):
        check_model(interpolations(osnet, other, 0.5)[0])
    with pytest.raises(WeightsUnavailableError, match=r"model 'osnet': weights file /nowhere/osnet.pth does not exist"):
        check_model(interpolations(osnet, dataclasses.replace(osnet, name="b", weights=None), 0.5)[0])
    squarer = dataclasses.replace(osnet, name="square", weights=None, preprocess=Preprocess(size=(128, 128)))
    with pytest.raises(SpecError, match=r"^model 'wise@0.5': its members see different inputs: size 256x128 "
                                        r"\(osnet\) vs 128x128 \(square\); state the same 'preprocess' on both$"):
        resolve_preprocess(interpolations(osnet, squarer, 0.5)[0])
    spec = interpolations(osnet, dataclasses.replace(osnet, name="b"), 0.5)[0]
    assert resolve_preprocess(spec) == Preprocess(size=(256, 128))  # torchreid's own, the members'
    bad = dataclasses.replace(spec, options={**spec.options, "alpha": 1.5})
    with pytest.raises(SpecError, match=r"option 'alpha' must be a number in \[0, 1\], got 1.5"):
        check_model(bad)


def test_tiny_interpolates_the_members_tiny_variants():
    from raybench.catalog import load_model_catalog

    catalog = load_model_catalog()
    reid = catalog["clipreid-vit-b16-msmt17"]
    clip = dataclasses.replace(catalog["clip-vit-b16"], preprocess=reid.preprocess)  # CLIP at CLIP-ReID's input
    for first, second in [(catalog["osnet-x0_25-market"], catalog["osnet-x0_25-msmt17"]), (clip, reid)]:
        spec = tiny_spec(interpolations(first, second, 0.5)[0])
        embedder = build_embedder(spec, device="cpu", pretrained=False)
        out = embedder.embed(pixels(embedder.preprocess))
        assert spec.name == "wise@0.5-tiny" and out.shape == (3, spec.dim) and np.isfinite(out).all()


# --- the real checkpoints -------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.skipif(not OSNET_DIR.is_dir(), reason=f"{OSNET_DIR} is absent")
def test_real_osnets_at_alpha_0_and_1_are_each_member_bit_for_bit():
    from raybench.models.images import load_pixels

    market, msmt = (ModelSpec(name=name, loader="torchreid", arch="osnet_x0_25", paradigm="supervised",
                              weights=str(OSNET_DIR / file), preprocess=Preprocess(size=(256, 128)))
                    for name, file in (("market", "osnet_x0_25_market1501.pth"), ("msmt", "osnet_x0_25_msmt17.pth")))
    crops = sorted((MARKET_MINI / "query").glob("*.jpg"))[:4]
    x = np.stack([load_pixels(p, market.preprocess) for p in crops])
    start, end = interpolations(market, msmt, 0.0, 1.0)
    for spec, member in ((start, market), (end, msmt)):
        built = build_embedder(spec, device="cpu")
        assert built.spec == spec and built.num_params == 201864
        assert np.array_equal(built.embed(x), build_embedder(member, device="cpu").embed(x))
    # the two checkpoints' BatchNorm counters differ; the interpolation keeps the first's
    state = torch.load(OSNET_DIR / "osnet_x0_25_msmt17.pth", map_location="cpu", weights_only=True)
    counters = {k for k, v in state.items() if k.endswith("num_batches_tracked")}
    first = torch.load(OSNET_DIR / "osnet_x0_25_market1501.pth", map_location="cpu", weights_only=True)
    ours = built.tower.state_dict()  # alpha 1: every float is MSMT17's, every counter Market's
    assert counters and all(not torch.equal(first[k], state[k]) for k in counters)
    assert all(torch.equal(ours[k], first[k]) for k in counters)


def test_members_that_see_different_inputs_are_refused_before_ray_in_one_line(tmp_path):
    """As an architecture mismatch is: before Ray starts (preflight), one line that names the
    keys that differ and each member's value, not a failed cell with two Preprocess(...) dumps."""
    import yaml

    from raybench.catalog import load_matrix
    from raybench.errors import RaybenchError
    from raybench.pipeline.preflight import preflight

    osnet = {"loader": "torchreid", "arch": "osnet_x0_25", "weights": None, "paradigm": "baseline"}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "datasets": ["synth-a"], "models": [
        {"name": "plain", **osnet},  # torchreid's own input: 256 x 128, ImageNet mean and std
        {"name": "square", **osnet, "preprocess": {"size": [128, 128], "mean": [0.5, 0.5, 0.5]}},
        {"name": "wise", "loader": "interpolate", "models": ["plain", "square"], "alpha": 0.5}]}))
    with pytest.raises(RaybenchError) as caught:
        preflight(load_matrix(str(path)))
    [line] = [line for line in str(caught.value).splitlines() if "wise@0.5" in line]
    assert line == ("  - model wise@0.5: its members see different inputs: size 256x128 (plain) vs 128x128 "
                    "(square), mean 0.485,0.456,0.406 (plain) vs 0.5,0.5,0.5 (square); "
                    "state the same 'preprocess' on both")
