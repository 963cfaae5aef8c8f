"""A dataset spec: its adapter and options, where the user's copy lives, and how it is scored."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

from raybench.specs.evaluation import frames_rule
from raybench.specs.schema import Slot, at_least, count, key, merge_over_base, read

#: A setting's rule (raybench.eval.clothes): which same-identity gallery items are true matches.
SETTING_RULES = ("standard", "cc", "sc")
#: The rules that read the manifest's ``clothes`` column.
CLOTHES_RULES = ("cc", "sc")
AP_RULES = ("step", "trapezoid")  # how a query's AP is taken (raybench.eval.rank)
#: A setting's name becomes a block name and a column suffix ("mAP (cc)").
SETTING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Setting:
    """One scoring setting of a dataset (``protocol: {settings: [...]}``): a rule, and the
    queries and gallery it applies to. A setting is scored from the cell's stored embeddings
    and reported as a block of its result (``settings: {name: block}``).

    rule: ``standard`` (same identity, another camera), ``cc`` (and another outfit) or ``sc``
    (and the same outfit); cc and sc need the manifest's ``clothes`` column.
    query_cameras / gallery_cameras: keep only queries / gallery images under these cameras
    (camids, 0-based, as the manifest holds them); empty keeps all (PRCC's camera-B queries
    against camera A; VC-Clothes' cameras 2 and 3).
    single_shot: > 0: that many seeded draws of one gallery image per identity (PRCC's
    single-shot protocol), scored as trials: their mean, and their spread.
    seed: the draws' seed.
    """

    name: str
    rule: str = key("standard", choices=SETTING_RULES)
    query_cameras: tuple[int, ...] = ()
    gallery_cameras: tuple[int, ...] = ()
    single_shot: int = key(0, check=count)
    seed: int = 0

    def _check(self, fail) -> None:
        if not SETTING_NAME.fullmatch(self.name) or self.name in ("main", "t2i"):
            fail("name", f"is {self.name!r}: a word of letters, digits, '_', '.' or '-' (not 'main' or 't2i')")

    def stated(self) -> dict[str, Any]:
        """The setting as results state it (its block's ``scoring``): the rule, and what else it sets."""
        out = {"rule": self.rule}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name not in ("name", "rule") and getattr(self, f.name) not in ((), 0)})
        if self.single_shot:
            out["seed"] = self.seed
        for name in ("query_cameras", "gallery_cameras"):
            if name in out:
                out[name] = list(out[name])
        return out


def _settings(value: Any, slot: Slot) -> tuple[Setting, ...]:
    """``settings:`` a list of rule names (``[standard, cc, sc]``: each named after its rule) or
    of mappings (``{name: sc, rule: standard, query_cameras: [1], gallery_cameras: [0]}``)."""
    items = slot.expect(value, list)
    out: list[Setting] = []
    for i, item in enumerate(items):
        data = {"name": item, "rule": item} if isinstance(item, str) else item
        setting = slot.read(Setting, data, where=f"{slot.where}[{i}]")
        if any(s.name == setting.name for s in out):
            slot.fail(f"lists setting {setting.name!r} twice")
        out.append(setting)
    return tuple(out)


#: Protocol fields added after eval hashes were first written: an eval hash reads them only
#: where they differ from these defaults, so a dataset that does not use them keeps its hash.
_LATER_FIELDS = {"settings": (), "headline": "", "ap": "step", "follows": ""}


@dataclass(frozen=True)
class Protocol:
    """How a dataset is scored.

    settings: named scoring settings (``Setting``: standard, clothes-changing, same-clothes,
    each on its queries and gallery), every one a block of the result; ``headline``: the one
    that is also the result's main block (default: the first). ap: how a query's AP is taken
    (raybench.eval.rank: ``step``, torchreid's; ``trapezoid``, open-reid-era code's). follows:
    whose evaluation code this protocol reproduces, stated in every result (Celeb-reID's
    official protocol says so here).
    """

    camera_filter: bool = True  # drop same-pid same-camera gallery items per query
    cuhk03_metric: bool = False  # the classic single-shot CUHK03 CMC
    trials: int = key(1, check=at_least(1))  # > 1: published splits, reported as mean and spread
    settings: tuple[Setting, ...] = key((), parse=_settings)
    headline: str = ""
    ap: str = key("step", choices=AP_RULES)
    follows: str = ""

    def _check(self, fail) -> None:
        names = [s.name for s in self.settings]
        if self.headline and self.headline not in names:
            fail("headline", f"is {self.headline!r}, not one of the settings ({', '.join(names) or 'none'})")
        if self.cuhk03_metric and self.settings:
            fail("settings", "the classic CUHK03 metric has no settings; score them Market-style")

    @property
    def headline_setting(self) -> Setting | None:
        """The setting that is the main block (None without settings)."""
        if not self.settings:
            return None
        return next(s for s in self.settings if s.name == (self.headline or self.settings[0].name))

    def hash_fields(self) -> dict[str, Any]:
        """The fields an eval hash reads: the later ones only where they are set, so a protocol
        without them hashes as it did before they existed (finished cells stay fresh)."""
        fields = dataclasses.asdict(self)
        for name, default in _LATER_FIELDS.items():
            if fields[name] == default:
                fields.pop(name)
        return fields


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset adapter, its options, where the user's copy lives, and how it is scored."""

    name: str
    adapter: str
    layout_dir: str = key(absent="")  # canonical folder name under $RAYBENCH_DATA
    root: str | None = None
    protocol: Protocol = Protocol()
    options: Mapping[str, Any] = key(default_factory=dict, hash=False, parse=merge_over_base)
    stats: Mapping[str, Any] = key(default_factory=dict, hash=False)  # published statistics
    description: str = ""
    #: a video dataset: embed only the frames that ``frames: evenly:N`` pools (all: every frame)
    embed_frames: str = key("all", check=frames_rule)
    #: a folder of images (or a CSV of their paths) that join the gallery as identities no query
    #: has (raybench.datasets.distractors); a relative path is relative to the dataset's root
    distractors: str | None = None


def parse_dataset(data: Any, where: str, base: DatasetSpec | None = None) -> DatasetSpec:
    """A DatasetSpec from a YAML mapping; with ``base`` (a catalog entry) keys override it, its
    ``protocol`` key by key and its ``options`` merged under the entry's."""
    return read(DatasetSpec, data, where, base=base)
