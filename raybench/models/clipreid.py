"""CLIP-ReID checkpoints (Li et al., AAAI 2023, github.com/Syliz517/CLIP-ReID) on open_clip's
ViT-B-16 image tower.

Checkpoint format: ``build_transformer.state_dict()`` of model/make_model_clipreid.py, a
plain state dict (``module.`` prefixes are stripped, as its ``load_param`` does):

- ``image_encoder.*``: CLIP's VisionTransformer (model/clip/model.py): ``conv1.weight``,
  ``class_embedding``, ``positional_embedding`` [h*w + 1, 768] (already resized to the 16 x 8
  grid of 256 x 128 inputs), ``ln_pre.*``, ``transformer.resblocks.{i}.{ln_1, attn.in_proj_*,
  attn.out_proj.*, ln_2, mlp.c_fc, mlp.c_proj}.*``, ``ln_post.*``, ``proj`` [768, 512]. These are
  open_clip's VisionTransformer names one for one (QuickGELU, as OpenAI's CLIP).
- ``bottleneck.*`` [768] and ``bottleneck_proj.*`` [512]: the BNNecks (BatchNorm1d).
- ignored: ``classifier.weight`` and ``classifier_proj.weight`` (training identities),
  ``prompt_learner.*`` and ``text_encoder.*`` (the text side, used in training only), and
  ``cv_embed`` (SIE camera/view embedding, present only in SIE checkpoints).

Feature (``build_transformer.forward`` in eval mode): ``img_feature`` = the CLS token after
``ln_post`` (768-d, before the projection) and ``img_feature_proj`` = ``img_feature @ proj``
(512-d). With TEST.NECK_FEAT 'before', the setting of the released configs
(configs/person/vit_clipreid.yml), the feature is ``cat([img_feature, img_feature_proj])``,
1280-d, taken BEFORE the BN necks; option ``neck_feat: after`` gives
``cat([bottleneck(img_feature), bottleneck_proj(img_feature_proj)])`` instead.

SIE: the camera embedding needs each image's camera index at embedding time, which a
pixels-only Embedder does not have (and another dataset's camera indices mean nothing to it),
so ``cv_embed`` is not applied. The released ViT-CLIP-ReID checkpoints were trained without SIE
and are unaffected; SIE-OLP checkpoints embed without their camera term (option ``stride: 12``
gives their overlapping patches).

Text: none ("no text tower" on caption datasets). The checkpoints do keep ``text_encoder.*``,
but it is OpenAI CLIP's text transformer, frozen in training and fed learned prompts; the
feature raybench scores is the 1280-d concatenation above (or its BN-necked form), which is not
in the text tower's 512-d space. Scoring captions against the projected half alone would be a
new model, not the released one, so raybench does not do it.

Interpolation (``loader: interpolate``, WiSE-FT): ``tower_weights`` gives the image tower as
open_clip's CLIP holds it (``proj`` back inside the VisionTransformer), so an open_clip CLIP of
the same arch at this input (QuickGELU, 256 x 128, mean/std 0.5) and a CLIP-ReID checkpoint
interpolate key for key.

Preprocessing: INPUT.SIZE_TEST [256, 128] with torchvision's Resize (bilinear squash) and
PIXEL_MEAN/STD 0.5, as vit_clipreid.yml.
"""

from __future__ import annotations

from raybench.errors import SpecError
from raybench.models.base import Loader, TorchEmbedder, default_device, tiny_variant
from raybench.models.openclip import model_config
from raybench.models.weights import check_state_dict, file_source, load_state_dict, local_file
from raybench.specs import ModelSpec, Preprocess

NECK_FEATS = ("before", "after")
IGNORED_PREFIXES = ("classifier.", "classifier_proj.", "prompt_learner.", "text_encoder.", "cv_embed")


def default_preprocess(spec: ModelSpec) -> Preprocess:
    return Preprocess(size=(256, 128), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear",
                      resize_mode="squash")


def source(spec: ModelSpec):
    return file_source(spec, "clipreid")


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None, pretrained: bool = True):
    neck_feat = spec.options.get("neck_feat", "before")
    if neck_feat not in NECK_FEATS:
        raise SpecError(f"model {spec.name!r}: option neck_feat must be one of {', '.join(NECK_FEATS)}")
    device = device or default_device()
    tower = _tower(spec, preprocess, device)
    if pretrained and spec.weights:
        src = source(spec)
        if src is None:
            raise SpecError(f"model {spec.name!r}: CLIP-ReID weights must be a URL or a file path")
        load_checkpoint(tower, load_state_dict(local_file(spec, src)), spec)

    def forward(x):
        import torch

        feat = tower.visual(x)
        feat_proj = feat @ tower.proj
        if neck_feat == "after":
            feat, feat_proj = tower.bottleneck(feat), tower.bottleneck_proj(feat_proj)
        return torch.cat([feat, feat_proj], dim=1)

    return TorchEmbedder(spec, preprocess, tower, device, forward=forward)


def _tower(spec: ModelSpec, preprocess: Preprocess, device: str):
    """open_clip's image tower (QuickGELU, at the input size) with the projection taken out,
    so that the feature before it can be read, plus the two BN necks."""
    import open_clip
    from torch import nn

    if model_config(spec.arch) is None:
        raise SpecError(f"model {spec.name!r}: unknown open_clip model {spec.arch!r}")
    model = open_clip.create_model(spec.arch, pretrained=None, force_quick_gelu=True, device=device,
                                   force_image_size=preprocess.size, pretrained_text=False)
    visual = model.visual
    if not hasattr(visual, "positional_embedding"):
        raise SpecError(f"model {spec.name!r}: CLIP-ReID needs an open_clip ViT, not {spec.arch!r}")
    _set_stride(visual, int(spec.options.get("stride", visual.conv1.stride[0])), preprocess.size)
    tower = nn.Module()
    tower.visual, tower.proj = visual, visual.proj
    visual.proj = None
    width, proj_dim = tower.proj.shape
    tower.bottleneck, tower.bottleneck_proj = nn.BatchNorm1d(width), nn.BatchNorm1d(proj_dim)
    return tower


def _set_stride(visual, stride: int, size: tuple[int, int]) -> None:
    """Overlapping patches (CLIP-ReID's STRIDE_SIZE): conv stride and a matching token grid."""
    import torch
    from torch import nn

    patch = visual.conv1.kernel_size[0]
    if stride == visual.conv1.stride[0]:
        return
    grid = ((size[0] - patch) // stride + 1, (size[1] - patch) // stride + 1)
    visual.conv1.stride = (stride, stride)
    visual.grid_size = grid
    width = visual.positional_embedding.shape[1]
    visual.positional_embedding = nn.Parameter(width ** -0.5 * torch.randn(grid[0] * grid[1] + 1, width))


def load_checkpoint(tower, state: dict, spec: ModelSpec) -> None:
    """Map CLIP-ReID's keys onto the tower; every image-side key must be there, shaped right."""
    mapped = {}
    for key, value in state.items():
        if key.startswith("image_encoder."):
            name = key.removeprefix("image_encoder.")
            mapped["proj" if name == "proj" else f"visual.{name}"] = value
        elif key.startswith(("bottleneck.", "bottleneck_proj.")):
            mapped[key] = value
        elif not key.startswith(IGNORED_PREFIXES):
            mapped[key] = value  # reported as unexpected below
    grid = tuple(tower.visual.grid_size)
    check_state_dict(tower.state_dict(), mapped, spec, f"CLIP-ReID {spec.arch} with a {grid} token grid")
    tower.load_state_dict(mapped, strict=True)


def tower_weights(embedder):
    """open_clip's VisionTransformer with its projection put back, as open_clip's CLIP of the
    same arch holds it (so the two interpolate), plus the BN necks where they make the feature
    (``neck_feat: after``)."""
    tower = embedder.tower
    weights = {**tower.visual.state_dict(keep_vars=True), "proj": tower.proj}
    if embedder.spec.options.get("neck_feat", "before") == "after":
        weights.update({k: v for k, v in tower.state_dict(keep_vars=True).items() if k.startswith("bottleneck")})
    return tower.visual, weights


def tiny(spec: ModelSpec) -> ModelSpec:
    """CLIP-ReID on openclip's tiny ViT (width 64, projection 32: a 96-d feature)."""
    return tiny_variant(spec, arch="raybench-tiny-ViT", dim=64 + 32)


LOADER = Loader(build=build, default_preprocess=default_preprocess, source=source,
                options=("neck_feat", "stride"), tiny=tiny, tower_weights=tower_weights,
                library="open_clip", versioned=("open_clip_torch",))
