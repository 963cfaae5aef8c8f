"""CLIP-ReID checkpoints: a synthetic checkpoint bearing exactly the keys of CLIP-ReID's
ViT-B-16 ``build_transformer.state_dict()`` (model/make_model_clipreid.py, model/clip/model.py),
at a tiny size, loads onto open_clip's tower and gives the feature of CLIP-ReID's own eval
forward, re-implemented here from its source."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raybench.errors import WeightsUnavailableError
from raybench.models import build_embedder
from raybench.models.clipreid import load_checkpoint
from raybench.specs import ModelSpec, Preprocess

TINY = dict(width=64, layers=2, heads=2, embed=32, patch=16, text_width=32, text_layers=1, classes=5)
SIZE = (64, 32)


def clipreid_state_dict(width, layers, heads, embed, patch, text_width, text_layers, classes, grid, make=torch.randn):
    """Every key of CLIP-ReID's ViT build_transformer (no SIE), in its own names and shapes."""
    state = {
        "classifier.weight": make(classes, width),
        "classifier_proj.weight": make(classes, embed),
        **_bn("bottleneck", width, make),
        **_bn("bottleneck_proj", embed, make),
        "image_encoder.class_embedding": make(width),
        "image_encoder.positional_embedding": make(grid[0] * grid[1] + 1, width),
        "image_encoder.proj": make(width, embed),
        "image_encoder.conv1.weight": make(width, 3, patch, patch),
        **_ln("image_encoder.ln_pre", width, make),
        **_blocks("image_encoder.transformer", width, layers, make),
        **_ln("image_encoder.ln_post", width, make),
        "prompt_learner.cls_ctx": make(classes, 4, text_width),
        "prompt_learner.token_prefix": make(1, 5, text_width),
        "prompt_learner.token_suffix": make(1, 77 - 5 - 4, text_width),
        **_blocks("text_encoder.transformer", text_width, text_layers, make),
        "text_encoder.positional_embedding": make(77, text_width),
        **_ln("text_encoder.ln_final", text_width, make),
        "text_encoder.text_projection": make(text_width, embed),
    }
    return {k: v * 0.1 if v.is_floating_point() and k.endswith(("weight", "proj", "embedding")) and "bottleneck" not in k
            else v for k, v in state.items()}


def _bn(prefix, n, make):
    return {f"{prefix}.weight": 1 + 0.1 * make(n), f"{prefix}.bias": 0.1 * make(n),
            f"{prefix}.running_mean": 0.1 * make(n), f"{prefix}.running_var": 1 + make(n).abs(),
            f"{prefix}.num_batches_tracked": torch.full_like(make(1)[0], 100, dtype=torch.long)}


def _ln(prefix, n, make):
    return {f"{prefix}.weight": 1 + 0.1 * make(n), f"{prefix}.bias": 0.1 * make(n)}


def _blocks(prefix, width, layers, make):
    out = {}
    for i in range(layers):
        p = f"{prefix}.resblocks.{i}"
        out.update({
            f"{p}.attn.in_proj_weight": make(3 * width, width), f"{p}.attn.in_proj_bias": make(3 * width),
            f"{p}.attn.out_proj.weight": make(width, width), f"{p}.attn.out_proj.bias": make(width),
            **_ln(f"{p}.ln_1", width, make),
            f"{p}.mlp.c_fc.weight": make(4 * width, width), f"{p}.mlp.c_fc.bias": make(4 * width),
            f"{p}.mlp.c_proj.weight": make(width, 4 * width), f"{p}.mlp.c_proj.bias": make(width),
            **_ln(f"{p}.ln_2", width, make),
        })
    return out


def clipreid_reference(state, x, heads, stride, neck_feat):
    """CLIP-ReID's VisionTransformer.forward (cv_emb None) + build_transformer eval branch."""
    s = {k.removeprefix("image_encoder."): v for k, v in state.items()}
    width = s["class_embedding"].shape[0]
    x = F.conv2d(x, s["conv1.weight"], stride=stride)
    x = x.reshape(x.shape[0], width, -1).permute(0, 2, 1)
    x = torch.cat([s["class_embedding"] + torch.zeros(x.shape[0], 1, width), x], dim=1)
    x = F.layer_norm(x + s["positional_embedding"], (width,), s["ln_pre.weight"], s["ln_pre.bias"])
    x = x.permute(1, 0, 2)  # NLD -> LND, as CLIP's nn.MultiheadAttention expects
    i = 0
    while f"transformer.resblocks.{i}.ln_1.weight" in s:
        p = f"transformer.resblocks.{i}."
        attn = torch.nn.MultiheadAttention(width, heads)
        attn.load_state_dict({k.removeprefix(p + "attn."): v for k, v in s.items() if k.startswith(p + "attn.")})
        h = F.layer_norm(x, (width,), s[p + "ln_1.weight"], s[p + "ln_1.bias"])
        x = x + attn(h, h, h, need_weights=False)[0]
        h = F.layer_norm(x, (width,), s[p + "ln_2.weight"], s[p + "ln_2.bias"])
        h = F.linear(h, s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + F.linear(h, s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"])
        i += 1
    x12 = F.layer_norm(x.permute(1, 0, 2), (width,), s["ln_post.weight"], s["ln_post.bias"])
    img_feature, img_feature_proj = x12[:, 0], (x12 @ s["proj"])[:, 0]
    if neck_feat == "after":
        img_feature = _batch_norm(img_feature, state, "bottleneck")
        img_feature_proj = _batch_norm(img_feature_proj, state, "bottleneck_proj")
    return torch.cat([img_feature, img_feature_proj], dim=1)


def _batch_norm(x, state, name):
    return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                        state[f"{name}.bias"], training=False)


def spec_for(path, **options):
    return ModelSpec(name="clipreid-test", loader="clipreid", arch="raybench-tiny-ViT", weights=str(path),
                     paradigm="supervised", preprocess=Preprocess(size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3),
                     options=options)


def grid_for(stride):
    return ((SIZE[0] - 16) // stride + 1, (SIZE[1] - 16) // stride + 1)


@pytest.mark.parametrize("neck_feat, stride, wrapped", [("before", 16, False), ("after", 16, True),
                                                        ("before", 12, False)])
def test_clipreid_feature_equals_clipreid_forward(tmp_path, neck_feat, stride, wrapped):
    torch.manual_seed(0)
    state = clipreid_state_dict(**TINY, grid=grid_for(stride))
    path = tmp_path / "ViT-B-16_60.pth"
    saved = {"state_dict": {f"module.{k}": v for k, v in state.items()}} if wrapped else state
    torch.save(saved, path)
    embedder = build_embedder(spec_for(path, neck_feat=neck_feat, stride=stride), device="cpu")
    pixels = np.random.default_rng(0).integers(0, 256, (3, *SIZE, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        expected = clipreid_reference(state, x, TINY["heads"], stride, neck_feat)
    got = embedder.embed(pixels)
    assert got.shape == (3, TINY["width"] + TINY["embed"]) == tuple(expected.shape)
    assert np.abs(got - expected.numpy()).max() < 1e-5


def test_real_vit_b16_checkpoint_keys_fit_the_tower():
    """The real ViT-B-16 key set and shapes at 256 x 128 (meta tensors: no memory)."""
    from raybench.models.clipreid import _tower

    real = dict(width=768, layers=12, heads=12, embed=512, patch=16, text_width=512, text_layers=12, classes=1041)
    state = clipreid_state_dict(**real, grid=(16, 8), make=lambda *shape: torch.empty(*shape, device="meta"))
    spec = ModelSpec(name="clipreid-vit-b16-msmt17", loader="clipreid", arch="ViT-B-16", weights=None,
                     paradigm="supervised", preprocess=Preprocess(size=(256, 128)))
    with torch.device("meta"):
        tower = _tower(spec, spec.preprocess, "meta")
        load_checkpoint(tower, state, spec)  # raises on any missing, unexpected or mis-shaped key


def test_a_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
    state = clipreid_state_dict(**TINY, grid=grid_for(16))
    del state["image_encoder.ln_post.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsUnavailableError, match="1 missing.*ln_post.weight"):
        build_embedder(spec_for(tmp_path / "bad.pth"), device="cpu")
    torch.save(clipreid_state_dict(**TINY, grid=grid_for(12)), tmp_path / "olp.pth")  # an OLP checkpoint
    with pytest.raises(WeightsUnavailableError, match="mis-shaped.*positional_embedding"):
        build_embedder(spec_for(tmp_path / "olp.pth"), device="cpu")  # without stride: 12


def test_sie_camera_embedding_is_ignored(tmp_path):
    """cv_embed needs each image's camera index, which a pixels-only embedder does not have."""
    state = clipreid_state_dict(**TINY, grid=grid_for(16))
    torch.save(state, tmp_path / "plain.pth")
    torch.save({**state, "cv_embed": torch.randn(6, TINY["width"])}, tmp_path / "sie.pth")
    pixels = np.random.default_rng(1).integers(0, 256, (2, *SIZE, 3), dtype=np.uint8)
    plain, sie = (build_embedder(spec_for(tmp_path / f"{n}.pth"), device="cpu") for n in ("plain", "sie"))
    assert np.array_equal(plain.embed(pixels), sie.embed(pixels))
