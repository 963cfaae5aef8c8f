"""Datasets: one adapter per dataset turns a user's copy into a manifest (pyarrow.Table).

Each dataset module registers one ``Adapter`` (its ``ADAPTER``): how to parse a copy, the
layout it expects (for messages), for a dataset made on first use instead of found on disk
(synthetic) how to generate it, and what the rest of raybench needs to know of the dataset:
its published statistics (`raybench datasets check`, `raybench list datasets`, the
rehearsal's image counts), the typical size of its crops (the rehearsal's synthetic crops)
and how to write a tiny copy in its real layout (the tests parse every one). Adding a dataset
is its module, its line in ADAPTERS and its catalog entry (docs/extending.md).

ADAPTERS maps names to lazy ``"module:attr"`` targets, so reading and validating specs imports
no adapter; a spec's adapter may also be a ``"module:attr"`` string naming an Adapter of its own.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from raybench.errors import DatasetError, RaybenchError, SpecError
from raybench.registry import Registry, import_target

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from raybench.specs import DatasetSpec


#: Per split (train, query, gallery): (images, ids, cameras), and tracklets for a video dataset,
#: as manifest.split_stats counts them.
SplitCounts = Mapping[str, tuple[int, int, int]]


@dataclass(frozen=True)
class Published:
    """A dataset's published statistics, which `raybench datasets check` compares a copy with.

    counts: per split (``train``, ``query``, ``gallery``) ``{images, ids, cameras}``, and
    optionally ``images`` (unique images in the copy), ``eval_images`` (unique query + gallery
    images) and ``captions`` (``{captions, ids, images}`` of the text queries); pid 0
    distractors count as one id, as torchreid counts them; a dataset with trials is checked in
    every trial. Numbers nobody publishes are left out rather than guessed (the keys and rules
    of a catalog entry's own ``stats:``). source: where the numbers come from. options: the
    adapter options they hold for (CUHK03's labeled and detected boxes differ); an option
    left out of a spec takes its parse default.
    """

    counts: Mapping[str, Any]
    source: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TinyCopy:
    """A tiny copy of a dataset in its real layout (empty files or small images with the real
    names, small annotation files with the real structure), as an adapter's ``tiny_copies``
    write it, and what parsing it must give.

    root: what to pass to ``parse``; options: parse's options. splits: per split (images, ids,
    cameras), or a list of those, one per trial; None where the copy's counts are not fixed
    here (a generated dataset); a video dataset's add its tracklets, (images, ids, cameras,
    tracklets). rows: some rows, (split, file name) -> (pid, camid); clothes: some rows'
    clothes keys, (split, file name) -> key (a clothes-changing dataset).
    """

    root: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    splits: SplitCounts | Sequence[SplitCounts] | None = None
    rows: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    clothes: Mapping[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Adapter:
    """What a dataset module registers in ``ADAPTERS``.

    parse(root, **options) -> manifest (see manifest.py for the columns); the options are the
    spec's ``options``. layout: the expected layout of a copy, quoted in error messages.
    synthesize(spec) -> root: for a generated dataset, builds the data once (cached) and
    returns its folder; None for a dataset the user brings. captions(root, **options) -> the
    caption table (manifest.CAPTION_SCHEMA) for a dataset with text queries; None otherwise.
    A dataset with captions may have a manifest without image queries (the captions are).

    published: the dataset's published statistics, one ``Published`` per set of options they
    hold for. crop: the typical (height, width) of its images, for synthetic crops of the same
    decoding cost (`raybench rehearse`); None where unknown (the rehearsal's default). tiny_copies:
    functions ``(folder) -> TinyCopy`` that write a tiny copy in the real layout under
    ``folder`` (the tests parse each one; one per naming or layout variant worth covering).
    naming: the dataset's file naming, group 1 the pid and group 2 the 1-based camera, where it
    has one: a distractor set's cameras are read with it (raybench.datasets.distractors).
    """

    parse: Callable[..., "pa.Table"]
    layout: str = ""
    synthesize: Callable[["DatasetSpec"], Path] | None = None
    captions: Callable[..., "pa.Table"] | None = None
    published: tuple[Published, ...] = ()
    crop: tuple[int, int] | None = None
    tiny_copies: tuple[Callable[[Path], TinyCopy], ...] = ()
    naming: "re.Pattern | None" = None

    def published_for(self, options: Mapping[str, Any]) -> Published | None:
        """The statistics published for a copy parsed with ``options``, if any."""
        defaults = {name: p.default for name, p in inspect.signature(self.parse).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        given = {**defaults, **options}
        return next((p for p in self.published if all(given.get(k) == v for k, v in p.options.items())), None)


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
    ("ltcc", "ltcc"),
    ("prcc", "prcc"),
    ("vcclothes", "vcclothes"),
    ("deepchange", "deepchange"),
    ("folder", "folder"),
    ("synthetic", "synthetic"),
    ("cuhkpedes", "cuhkpedes"),
    ("icfgpedes", "icfgpedes"),
    ("rstpreid", "rstpreid"),
    ("mars", "mars"),
    ("ilidsvid", "ilidsvid"),
    ("prid2011", "prid2011"),
    ("dukemtmc-videoreid", "dukevideo"),
    ("synthetic-video", "synthvideo"),
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


def published_stats(spec: "DatasetSpec") -> Mapping[str, Any]:
    """What ``spec``'s copy is checked against: the entry's own ``stats`` (a dataset of the
    user's), else what its adapter publishes for its options (with ``source``); {} if none. An
    entry's ``distractors`` ({images: N}, its distractor set's count) is checked beside either
    and replaces nothing."""
    own = {k: v for k, v in spec.stats.items() if k != DISTRACTOR_STATS}
    extra = {DISTRACTOR_STATS: spec.stats[DISTRACTOR_STATS]} if DISTRACTOR_STATS in spec.stats else {}
    if own:
        return {**own, **extra}
    published = get_adapter(spec.adapter).published_for(spec.options)
    return {**published.counts, "source": published.source, **extra} if published else extra


#: The key of a catalog entry's ``stats`` that counts its distractor set (datasets/distractors.py).
DISTRACTOR_STATS = "distractors"


def is_generated(spec: "DatasetSpec") -> bool:
    """Whether ``spec``'s data is generated on first use rather than found on disk."""
    return get_adapter(spec.adapter).synthesize is not None


def load_manifest(spec: "DatasetSpec") -> "pa.Table":
    """The validated manifest of ``spec``'s copy: never an empty or half-valid table."""
    from raybench.datasets.manifest import check_settings, validate_manifest

    adapter = get_adapter(spec.adapter)
    table = _read(spec, adapter, adapter.parse)
    table = validate_manifest(table, spec.name, adapter.layout, trials=spec.protocol.trials,
                              captioned=adapter.captions is not None)
    check_settings(table, spec.name, spec.protocol.settings, spec.adapter)
    return table


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
