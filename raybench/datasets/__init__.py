"""Datasets: one adapter per dataset turns a user's copy into a manifest (pyarrow.Table).

Each dataset module registers one ``Adapter`` (its ``ADAPTER``): how to parse a copy, the
layout it expects (for messages) and, for a dataset made on first use instead of found on
disk (synthetic), how to generate it. ADAPTERS maps names to lazy ``"module:attr"`` targets,
so reading and validating specs imports no adapter (`raybench list datasets` imports only the
generated ones, to label them); a spec's adapter may also be a ``"module:attr"`` string naming
an Adapter of its own.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from raybench.errors import DatasetError, RaybenchError, SpecError
from raybench.registry import Registry, import_target

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from raybench.specs import DatasetSpec


@dataclass(frozen=True)
class Adapter:
    """What a dataset module registers in ``ADAPTERS``.

    parse(root, **options) -> manifest (see manifest.py for the columns); the options are the
    spec's ``options``. layout: the expected layout of a copy, quoted in error messages.
    synthesize(spec) -> root: for a generated dataset, builds the data once (cached) and
    returns its folder; None for a dataset the user brings. captions(root, **options) -> the
    caption table (manifest.CAPTION_SCHEMA) for a dataset with text queries; None otherwise.
    A dataset with captions may have a manifest without image queries (the captions are).
    """

    parse: Callable[..., "pa.Table"]
    layout: str = ""
    synthesize: Callable[["DatasetSpec"], Path] | None = None
    captions: Callable[..., "pa.Table"] | None = None


ADAPTERS: Registry[Adapter] = Registry("dataset adapter")
for _name, _module in (
    ("market1501", "market1501"),
    ("dukemtmcreid", "dukemtmc"),
    ("msmt17", "msmt17"),
    ("cuhk03", "cuhk03"),
    ("grid", "grid"),
    ("celebreid", "celebreid"),
    ("pku", "pku"),
    ("last", "last"),
    ("iustreid", "iustreid"),
    ("folder", "folder"),
    ("synthetic", "synthetic"),
    ("cuhkpedes", "cuhkpedes"),
    ("icfgpedes", "icfgpedes"),
    ("rstpreid", "rstpreid"),
):
    ADAPTERS.register(_name, f"raybench.datasets.{_module}:ADAPTER")
del _name, _module


def get_adapter(name: str) -> Adapter:
    """A registered adapter, or a ``"module:attr"`` target naming one outside the package."""
    if ":" in name and name not in ADAPTERS:
        try:
            adapter = import_target(name)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"dataset adapter {name!r} cannot be imported: {exc}") from None
        if not isinstance(adapter, Adapter):
            raise SpecError(f"dataset adapter {name!r} is a {type(adapter).__name__}, not a "
                            "raybench.datasets.Adapter(parse=..., layout=...)")
        return adapter
    return ADAPTERS.get(name)


def resolve_root(spec: "DatasetSpec") -> Path:
    """Where ``spec``'s copy lives: its own root (from the matrix or --root); else, for a
    generated dataset, the cache folder it is generated into on first use; else
    $RAYBENCH_DATA/<layout_dir> (or $RAYBENCH_DATA itself when that folder is absent, so
    the adapter can find a copy under another canonical name, e.g. MSMT17_V2)."""
    if spec.root:
        return Path(spec.root).expanduser()
    adapter = get_adapter(spec.adapter)
    if adapter.synthesize is not None:
        return adapter.synthesize(spec)
    from raybench.paths import data_dir

    data = data_dir()
    if data is None:
        raise DatasetError(
            f"{spec.name}: no root given and $RAYBENCH_DATA is not set. Set RAYBENCH_DATA to the folder "
            f"holding {spec.layout_dir or 'the dataset'}/, or give the copy's folder as `root:` in the matrix "
            f"(`--root` for `raybench datasets info`)." + (f" Expected layout: {adapter.layout}" if adapter.layout else "")
        )
    folder = data / spec.layout_dir if spec.layout_dir else data
    return folder if folder.exists() or not data.is_dir() else data


def is_generated(spec: "DatasetSpec") -> bool:
    """Whether ``spec``'s data is generated on first use rather than found on disk."""
    return get_adapter(spec.adapter).synthesize is not None


def load_manifest(spec: "DatasetSpec") -> "pa.Table":
    """The validated manifest of ``spec``'s copy: never an empty or half-valid table."""
    from raybench.datasets.manifest import validate_manifest

    adapter = get_adapter(spec.adapter)
    table = _read(spec, adapter, adapter.parse)
    return validate_manifest(table, spec.name, adapter.layout, trials=spec.protocol.trials,
                             captioned=adapter.captions is not None)


def has_captions(spec: "DatasetSpec") -> bool:
    """Whether ``spec``'s dataset has captions (text queries)."""
    return get_adapter(spec.adapter).captions is not None


def load_captions(spec: "DatasetSpec") -> "pa.Table":
    """The validated caption table of ``spec``'s copy, checked against its manifest."""
    from raybench.datasets.manifest import validate_captions

    adapter = get_adapter(spec.adapter)
    if adapter.captions is None:
        raise DatasetError(f"{spec.name}: adapter {spec.adapter!r} has no captions (not a text-to-person dataset)")
    return validate_captions(_read(spec, adapter, adapter.captions), load_manifest(spec), spec.name, adapter.layout)


def _read(spec: "DatasetSpec", adapter: Adapter, reader: Callable[..., "pa.Table"]) -> "pa.Table":
    """``reader(root, **options)`` on ``spec``'s copy; a copy the reader cannot read is a
    DatasetError that says where and what was expected."""
    root = resolve_root(spec)
    options = dict(spec.options)
    try:
        inspect.signature(reader).bind(root, **options)
    except TypeError as exc:
        raise SpecError(f"dataset {spec.name}: options {sorted(options)} do not fit adapter {spec.adapter!r} ({exc})") from None
    try:
        return reader(root, **options)
    except RaybenchError:
        raise
    except (OSError, UnicodeError, ValueError) as exc:
        # An adapter that did not foresee a file being a folder, unreadable or not text:
        # still the user's copy at fault, so one line that says where and what was expected.
        raise DatasetError(
            f"{spec.name}: cannot read the copy at {root} ({type(exc).__name__}: {exc}). "
            f"Expected layout: {adapter.layout or 'see the adapter ' + repr(spec.adapter)}"
        ) from exc
