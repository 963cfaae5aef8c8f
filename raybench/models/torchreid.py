"""torchreid models (OSNet and the rest of its zoo): the pooled feature torchreid evaluates.

arch is a torchreid model name (``osnet_x1_0``); weights a model-zoo URL (Google Drive,
fetched with gdown into ``raybench.paths.weights_dir()``) or a local checkpoint. The model is
built with ``torchreid.models.build_model(pretrained=False)`` (no ImageNet download), the
checkpoint loaded with ``torch.load(weights_only=True)``, and the training classifier (sized
for the training identities) dropped: in eval mode torchreid models return the feature before
it, which is what torchreid's own evaluation ranks. Features are not L2-normalised here (the
evaluation normalises per its spec; the study ranked raw OSNet features by dot product).

Default preprocessing is torchreid's test transform: Resize((256, 128)) (bilinear),
ToTensor, ImageNet mean/std.
"""

from __future__ import annotations

from raybench.errors import SpecError
from raybench.models.base import Loader, TorchEmbedder, tiny_variant
from raybench.models.weights import check_state_dict, file_source, load_state_dict, local_file
from raybench.specs import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Preprocess


def default_preprocess(spec: ModelSpec) -> Preprocess:
    return Preprocess(size=(256, 128), mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear",
                      resize_mode="squash")


def source(spec: ModelSpec):
    return file_source(spec, "torchreid")


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None, pretrained: bool = True):
    import torch
    import torchreid

    try:
        model = torchreid.models.build_model(spec.arch, num_classes=1, pretrained=False, use_gpu=False)
    except KeyError:
        raise SpecError(f"model {spec.name!r}: {unknown_arch(spec.arch, torchreid.models)}") from None
    if pretrained and spec.weights:
        src = source(spec)
        if src is None:
            raise SpecError(f"model {spec.name!r}: torchreid weights must be a URL or a file path, got {spec.weights!r}")
        load_backbone(model, load_state_dict(local_file(spec, src)), spec)
    model.classifier = torch.nn.Identity()  # unused in eval mode; not part of the image tower
    return TorchEmbedder(spec, preprocess, model, device)


def unknown_arch(arch: str, models) -> str:
    """The message for an arch torchreid does not have, with the closest names it does have."""
    import difflib

    known = sorted(getattr(models, "__model_factory", {}))
    close = difflib.get_close_matches(arch, known, n=3)
    hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"torchreid has: {', '.join(known)}"
    return f"unknown torchreid model {arch!r}; {hint}"


def load_backbone(model, state: dict, spec: ModelSpec) -> None:
    """Every backbone key must match (shapes included); only the classifier may differ."""
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    check_state_dict(own, state, spec, f"torchreid {spec.arch!r}")
    model.load_state_dict(state, strict=False)


def tiny(spec: ModelSpec) -> ModelSpec:
    """torchreid's smallest OSNet."""
    return tiny_variant(spec, arch="osnet_x0_25")


LOADER = Loader(build=build, default_preprocess=default_preprocess, source=source, tiny=tiny, library="torchreid",
                versioned=("torchreid",))
