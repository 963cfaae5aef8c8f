"""Weight interpolation (WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot models",
CVPR 2022): the model whose every floating-point tensor, parameters and buffers alike, is
``(1 - alpha) * first + alpha * second`` for two models of one library architecture.

A matrix writes one entry (``loader: interpolate``, two ``models``, one or more ``alpha``),
which raybench.catalog expands into one spec per alpha; each spec holds both members' specs
and its alpha in ``options`` (raybench.derived.interpolation.interpolation_spec), so its hash
covers both members' weights and the embedding actor builds it without a catalog. Here, in that
actor:

- each member is built by its own family (``build_embedder``), seeded ``torch.manual_seed(0)``
  first when it has no weights (as EmbedWorker seeds a model built alone), so alpha 0 is the
  first member bit for bit and alpha 1 the second's weights in the first member's forward;
- their image towers, as their libraries name them (``Loader.tower_weights``: CLIP-ReID gives
  open_clip's VisionTransformer with its projection put back, so zero-shot CLIP and a CLIP-ReID
  checkpoint of the same arch pair up), are mixed and written into the first member's model,
  which is returned under the interpolation's name; the second is freed. Text towers are mixed
  too when both members have one, else the interpolation has none;
- integer buffers (BatchNorm's counters) stay the first member's; a training classifier
  (``HEADS``) whose shape differs, or that only one member has, is left out, since it never
  enters the embedding; any other key or shape mismatch, or layers that differ (GELU against
  QuickGELU, another stride), is an error naming it.

The feature is the first member's: for [CLIP, CLIP-ReID] the 512-d projected embedding
(at alpha 1, CLIP-ReID's projected half), for [CLIP-ReID, CLIP] CLIP-ReID's 1280-d feature
(with ``neck_feat: before``; its BN necks exist in CLIP-ReID only, so ``after`` pairs with
CLIP-ReID only).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from raybench.derived.interpolation import interpolation_members, with_members
from raybench.errors import SpecError
from raybench.models.base import Loader, default_device
from raybench.specs import INTERPOLATE, ModelSpec, Preprocess

#: Top-level modules of training classifiers (torchreid's and CLIP-ReID's, timm's head): sized
#: by the training identities and never part of the embedding.
HEADS = ("classifier", "classifier_proj", "head")


def members(spec: ModelSpec) -> tuple[ModelSpec, ModelSpec]:
    """The two members, checked: an alpha in [0, 1], one architecture, no nested interpolation."""
    alpha = spec.options.get("alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise SpecError(f"model {spec.name!r}: option 'alpha' must be a number in [0, 1], got {alpha!r}")
    first, second = interpolation_members(spec)
    for member in (first, second):
        if member.loader == INTERPOLATE:
            raise SpecError(f"model {spec.name!r}: member {member.name!r} is an interpolation itself")
    if first.arch != second.arch:
        raise SpecError(f"model {spec.name!r}: its members must share one architecture, got {first.arch!r} "
                        f"({first.name}) and {second.arch!r} ({second.name})")
    return first, second


def resolve(spec: ModelSpec) -> ModelSpec:
    """The spec with its members resolved (``trained:<run>`` references become their runs'
    specs), so cell keys and run.json hold the runs' own weights."""
    from raybench.models import resolve_model

    return with_members(spec, tuple(resolve_model(m) for m in interpolation_members(spec)))


def default_preprocess(spec: ModelSpec) -> Preprocess:
    """The members' preprocessing, which must be one and the same."""
    from raybench.models import resolve_preprocess

    (first, a), (second, b) = ((m, resolve_preprocess(m)) for m in members(spec))
    if a != b:
        raise SpecError(f"model {spec.name!r}: {_differing_inputs((first.name, a), (second.name, b))}")
    return a


def input_mismatch(spec: ModelSpec) -> str | None:
    """Why the members of ``spec`` (a resolved interpolation) cannot be mixed because they see
    different inputs, in one line naming the keys that differ; None when they agree or when a
    member's input is known only from its weights' hub config (checked where the model is
    built). Offline and without building anything: what preflight checks before Ray starts."""
    from raybench.models import get_loader

    known = []
    for member in members(spec):
        loader = get_loader(member.loader)
        if member.preprocess is None and (loader.hub_preprocess or loader.members(member)):
            return None
        known.append((member.name, member.preprocess or loader.default_preprocess(member)))
    (_, a), (_, b) = known
    return None if a == b else _differing_inputs(*known)


def _differing_inputs(first: tuple[str, Preprocess], second: tuple[str, Preprocess]) -> str:
    """'its members see different inputs: size 256x128 (a) vs 128x128 (b), ...; state ...'."""
    (name_a, a), (name_b, b) = first, second
    keys = [f.name for f in dataclasses.fields(Preprocess) if getattr(a, f.name) != getattr(b, f.name)]
    shown = ", ".join(f"{key} {_value(key, getattr(a, key))} ({name_a}) vs {_value(key, getattr(b, key))} ({name_b})"
                      for key in keys)
    return f"its members see different inputs: {shown}; state the same 'preprocess' on both"


def _value(key: str, value: Any) -> str:
    if isinstance(value, tuple):
        return ("x" if key == "size" else ",").join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def has_text(spec: ModelSpec) -> bool:
    """A text tower when both members have one, unless option ``text`` is false."""
    from raybench.models import has_text_tower

    return bool(spec.options.get("text", True)) and all(has_text_tower(m) for m in members(spec))


def tiny(spec: ModelSpec) -> ModelSpec:
    """The interpolation of the members' tiny variants."""
    from raybench.models import tiny_spec

    return with_members(dataclasses.replace(spec, name=f"{spec.name}-tiny"),
                        tuple(tiny_spec(m) for m in members(spec)))


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None, pretrained: bool = True):
    from raybench.models import without_text

    text = has_text(spec)
    first, second = (m if text else without_text(m) for m in members(spec))
    device = device or default_device()
    host = _build_member(first, preprocess, device, pretrained)
    other = _build_member(second, preprocess, device, pretrained)
    try:
        write(_mixed(host, other, first, second, spec.options["alpha"], text))
    except SpecError as exc:
        raise SpecError(f"model {spec.name!r}: {exc}") from None
    finally:
        del other
        _free(device)
    host.spec, host.paradigm = spec, spec.paradigm
    return host


def _mixed(host, other, first: ModelSpec, second: ModelSpec, alpha: float, text: bool) -> list[tuple[dict, dict]]:
    """[(the host's live tensors, their mixed values)]: the image towers', and the text
    towers' when ``text``; checks that the members are one architecture."""
    from raybench.models import get_loader

    names = (first.name, second.name)
    for member, built in ((first, host), (second, other)):
        if getattr(built, "tower", None) is None:
            raise SpecError(f"member {member.name!r} (loader {member.loader!r}) has no weights to interpolate")
    module, weights = get_loader(first.loader).tower_weights(host)
    other_module, other_weights = get_loader(second.loader).tower_weights(other)
    parts = [(weights, mix(weights, other_weights, alpha, "image tower", names))]
    same_layers(module, other_module, names)
    if text:
        weights, other_weights = text_weights(host), text_weights(other)
        parts.append((weights, mix(weights, other_weights, alpha, "text tower", names)))
        same_layers(host.text_modules, other.text_modules, names)
    return parts


def _build_member(member: ModelSpec, preprocess: Preprocess, device: str, pretrained: bool):
    import torch

    from raybench.models import build_embedder

    if member.weights is None or not pretrained:
        torch.manual_seed(0)  # as EmbedWorker seeds a model without weights: the one built alone
    return build_embedder(member, device=device, pretrained=pretrained, preprocess=preprocess)


def mix(first: dict, second: dict, alpha: float, what: str, names=("first", "second")) -> dict:
    """{key: (1 - alpha) * first[key] + alpha * second[key]} for the floating-point tensors of
    two state dicts; integer tensors are left out (they stay the first's), and so are the
    training classifiers (``HEADS``) that differ or that one side lacks. ``torch.lerp`` makes
    alpha 0 and 1 each side exactly. Any other mismatch is a SpecError naming the key."""
    import torch

    out = {}
    for key in sorted(first.keys() | second.keys()):
        a, b = first.get(key), second.get(key)
        head = key.split(".", 1)[0] in HEADS
        if a is None or b is None:
            if head:
                continue
            raise SpecError(f"{what} key {key!r} is in {names[0 if b is None else 1]} only, not in "
                            f"{names[1 if b is None else 0]}: not the same architecture")
        if a.shape != b.shape:
            if head:
                continue
            raise SpecError(f"{what} key {key!r} has shape {list(a.shape)} in {names[0]} and "
                            f"{list(b.shape)} in {names[1]}")
        if a.dtype != b.dtype:
            raise SpecError(f"{what} key {key!r} is {a.dtype} in {names[0]} and {b.dtype} in {names[1]}")
        if a.is_floating_point():
            with torch.no_grad():
                out[key] = torch.lerp(a.detach(), b.detach().to(a.device), float(alpha))
    return out


def write(parts: list[tuple[dict, dict]]) -> None:
    """Copy each (live tensors, new values) pair's values in, after every value is computed:
    tensors that two names share (tied weights) are written twice with the same value."""
    import torch

    with torch.no_grad():
        for weights, values in parts:
            for key, value in values.items():
                weights[key].copy_(value)


def text_weights(embedder: Any) -> dict:
    """The text modules' tensors by name, without those of the image tower (open_clip's text
    modules are the whole CLIP model)."""
    image = {id(t) for t in embedder.tower.state_dict(keep_vars=True).values()}
    return {k: v for k, v in embedder.text_modules.state_dict(keep_vars=True).items() if id(v) not in image}


def same_layers(first: Any, second: Any, names=("first", "second")) -> None:
    """The two modules print the same layers (activations, strides, sizes): the state dicts
    alone do not tell GELU from QuickGELU."""
    pairs = itertools.zip_longest(repr(first).splitlines(), repr(second).splitlines(), fillvalue="(nothing)")
    for a, b in pairs:
        if a != b:
            raise SpecError(f"not the same architecture: {names[0]} has {a.strip()!r} where {names[1]} "
                            f"has {b.strip()!r}")


def _free(device: str) -> None:
    """Give the second member's GPU memory back before the first starts embedding (on the CPU,
    dropping the last reference frees it: a full collection costs more than it finds)."""
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


LOADER = Loader(
    build=build,
    default_preprocess=default_preprocess,
    options=("members", "alpha", "text"),
    tiny=tiny,
    text=has_text,
    members=members,
    resolve=resolve,
)
