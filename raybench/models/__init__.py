"""Model loaders: one module per library family, each turning a ModelSpec into an Embedder.

``LOADERS`` names the families; entries are lazy, so that listing models or resolving a
spec never imports torch or a model library until a model is built. A spec's ``loader`` may
also be a ``"module:attr"`` string naming a ``Loader`` outside the package, or ``trained``:
a reference to a finished training run (``trained:<run>`` in a matrix), which
``resolve_model`` turns into the run's own spec where the model is built (trained.py).
``interpolate`` mixes the weights of two models of one architecture (interpolate.py).

Everything the pipeline and the run record need of a family it declares in its ``Loader``
(numpy-only, library, versioned packages, how its specs resolve): adding a family is its
module, its line in ``LOADERS`` and its catalog entries (docs/extending.md). This module reaches
the families only through ``LOADERS``' lazy targets, never by importing them, so a family
module may import this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raybench.registry import Registry, import_target

if TYPE_CHECKING:  # pragma: no cover
    from raybench.models.base import Embedder, Loader
    from raybench.specs import ModelSpec, Preprocess

LOADERS: Registry["Loader"] = Registry("model loader")
for _family in ("openclip", "timm", "hf", "torchreid", "clipreid", "color", "dummy", "interpolate"):
    LOADERS.register(_family, f"raybench.models.{_family}:LOADER")
del _family


def get_loader(name: str) -> "Loader":
    """A registered family, or a ``"module:attr"`` target."""
    return import_target(name) if ":" in name else LOADERS.get(name)


def resolve_model(spec: "ModelSpec") -> "ModelSpec":
    """The spec to build: a ``trained`` reference becomes its run's entry (read here, on the
    machine that builds the model); a registered family's spec is what its ``Loader.resolve``
    makes of it (an interpolation holds its members so resolved); any other spec is itself."""
    from raybench.derived.trained import TRAINED

    if spec.loader == TRAINED:
        from raybench.models.trained import resolve

        return resolve(spec)
    # a "module:attr" loader is imported where its model is built, never to plan a run
    return LOADERS.get(spec.loader).resolve(spec) if spec.loader in LOADERS else spec


def numpy_only(spec: "ModelSpec") -> bool:
    """Whether ``spec``'s model is built without torch (``Loader.numpy_only``)."""
    return get_loader(resolve_model(spec).loader).numpy_only


def versioned_packages() -> tuple[str, ...]:
    """The distributions the registered families declare (``Loader.versioned``), each once,
    in family name order: what run.json records besides raybench's own dependencies."""
    found = (package for name in LOADERS.names() for package in LOADERS.get(name).versioned)
    return tuple(dict.fromkeys(found))


def resolve_preprocess(spec: "ModelSpec", random_weights: bool = False) -> "Preprocess":
    """The spec's preprocessing, else the weights' own (from the library's config, no weights).

    ``random_weights``: nothing may be downloaded, so a family that reads the weights' own
    preprocessing from a hub config (``Loader.hub_preprocess``) needs the spec's stated one."""
    from raybench.errors import SpecError

    spec = resolve_model(spec)
    if spec.preprocess:
        return spec.preprocess
    loader = get_loader(spec.loader)
    for member in loader.members(spec):  # each member obeys the rule below
        resolve_preprocess(member, random_weights)
    if random_weights and loader.hub_preprocess:
        raise SpecError(f"model {spec.name!r}: --random-weights needs its preprocessing stated in the catalog "
                        f"('preprocess:' in its entry): loader {spec.loader!r} would read it from the hub config "
                        "of the weights, which random weights never download")
    return loader.default_preprocess(spec)


def check_model(spec: "ModelSpec", local_files: bool = True) -> None:
    """What can be found wrong without building the model or importing its library: options
    its family refuses and, with ``local_files``, a local weights file that does not exist
    (where this process sees the files the embedding actors will)."""
    from pathlib import Path

    from raybench.errors import WeightsUnavailableError

    spec = resolve_model(spec)
    loader = get_loader(spec.loader)
    loader.check_options(spec)
    for member in loader.members(spec):
        check_model(member, local_files)
    source = loader.source(spec) if local_files and spec.weights else None
    if source is not None and source.kind == "local" and not Path(source.location).exists():
        raise WeightsUnavailableError(f"model {spec.name!r}: weights file {source.location} does not exist")


def tiny_spec(spec: "ModelSpec") -> "ModelSpec":
    """A small model of ``spec``'s family and code path with random weights (its family's
    ``Loader.tiny``): what the tests and CPU benchmarks build in place of a catalog model."""
    return get_loader(spec.loader).tiny(spec)


def build_embedder(spec: "ModelSpec", device: str | None = None, pretrained: bool = True,
                   preprocess: "Preprocess | None" = None) -> "Embedder":
    """Build the model once (per actor). ``device`` defaults to CUDA when present, else CPU;
    ``pretrained=False`` gives the same architecture with random weights and no download;
    ``preprocess``: one already resolved (``resolve_preprocess``), so it is resolved once."""
    spec = resolve_model(spec)
    loader = get_loader(spec.loader)
    loader.check_options(spec)
    return loader.build(spec, preprocess or resolve_preprocess(spec), device, pretrained)


def has_text_tower(spec: "ModelSpec") -> bool:
    """Whether ``spec``'s model embeds captions (its family's ``Loader.text``), without
    building it; a spec the family cannot read has none (its cells fail on the image side)."""
    from raybench.errors import RaybenchError

    try:
        return bool(get_loader(spec.loader).text(resolve_model(spec)))
    except RaybenchError:
        return False


def without_text(spec: "ModelSpec") -> "ModelSpec":
    """``spec`` built without its text tower (option ``text: false``) where it has one; a model
    without one is itself."""
    from dataclasses import replace

    if not has_text_tower(spec):
        return spec
    return replace(spec, options={**spec.options, "text": False})
