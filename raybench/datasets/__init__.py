"""Datasets: one adapter per dataset turns a user's copy into a manifest (pyarrow.Table).

An adapter is ``parse(root: Path, **options) -> pa.Table`` (see manifest.py for the
columns). ADAPTERS maps names to lazy ``"module:attr"`` targets, so listing datasets imports
nothing; a spec's adapter may also be a ``"module:attr"`` string of its own. GENERATORS
holds the adapters whose data is made on first use (synthetic) instead of found on disk.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from raybench.errors import DatasetError, RaybenchError, SpecError
from raybench.registry import Registry, import_target

ADAPTERS: Registry[Callable] = Registry("dataset adapter")
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
):
    ADAPTERS.register(_name, f"raybench.datasets.{_module}:parse")

#: adapter -> "module:attr" of ``materialize(spec) -> Path``, which builds the data once.
GENERATORS: Registry[Callable] = Registry("dataset generator")
GENERATORS.register("synthetic", "raybench.datasets.synthetic:materialize")


def get_adapter(name: str) -> Callable:
    """A registered adapter, or a ``"module:attr"`` target for one outside the package."""
    if ":" in name and name not in ADAPTERS:
        try:
            return import_target(name)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"dataset adapter {name!r} cannot be imported: {exc}") from None
    return ADAPTERS.get(name)


def resolve_root(spec) -> Path:
    """Where ``spec``'s copy lives: its own root (from the matrix or --root); else, for a
    generated dataset, the cache folder it is generated into on first use; else
    $RAYBENCH_DATA/<layout_dir> (or $RAYBENCH_DATA itself when that folder is absent, so
    the adapter can find a copy under another canonical name, e.g. MSMT17_V2)."""
    if spec.root:
        return Path(spec.root).expanduser()
    if spec.adapter in GENERATORS:
        return GENERATORS.get(spec.adapter)(spec)
    from raybench.paths import data_dir

    data = data_dir()
    if data is None:
        raise DatasetError(
            f"{spec.name}: no root given and $RAYBENCH_DATA is not set. Set RAYBENCH_DATA to the folder "
            f"holding {spec.layout_dir or 'the dataset'}/, or give the copy's folder as `root:` in the matrix "
            f"(`--root` for `raybench datasets info`)." + (f" Expected layout: {layout_of(spec)}" if layout_of(spec) else "")
        )
    folder = data / spec.layout_dir if spec.layout_dir else data
    return folder if folder.exists() or not data.is_dir() else data


def load_manifest(spec) -> "pa.Table":  # noqa: F821 (pyarrow is imported lazily)
    """The validated manifest of ``spec``'s copy: never an empty or half-valid table."""
    from raybench.datasets.manifest import validate_manifest

    parse = get_adapter(spec.adapter)
    root = resolve_root(spec)
    options = dict(spec.options)
    try:
        inspect.signature(parse).bind(root, **options)
    except TypeError as exc:
        raise SpecError(f"dataset {spec.name}: options {sorted(options)} do not fit adapter {spec.adapter!r} ({exc})") from None
    try:
        table = parse(root, **options)
    except RaybenchError:
        raise
    except (OSError, UnicodeError, ValueError) as exc:
        # An adapter that did not foresee a file being a folder, unreadable or not text:
        # still the user's copy at fault, so one line that says where and what was expected.
        raise DatasetError(
            f"{spec.name}: cannot read the copy at {root} ({type(exc).__name__}: {exc}). "
            f"Expected layout: {layout_of(spec) or 'see the adapter ' + repr(spec.adapter)}"
        ) from exc
    return validate_manifest(table, spec.name, layout_of(spec), trials=spec.protocol.trials)


def layout_of(spec) -> str:
    """The adapter's description of the expected layout (its module's LAYOUT), for messages."""
    return getattr(inspect.getmodule(get_adapter(spec.adapter)), "LAYOUT", "")
