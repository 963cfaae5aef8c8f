"""The field-driven reader (raybench.specs.schema): YAML specs refuse unknown keys and word
their errors as spec errors; run files (JSON) ignore unknown keys and raise the caller's error.
The specs' own messages, file by file: test_specs.py, test_catalog.py, test_train_units.py."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

import pytest

from raybench.errors import SpecError
from raybench.specs import EvalSpec, ModelSpec, Preprocess, parse_eval
from raybench.specs.schema import (
    Fields,
    Group,
    Slot,
    Style,
    at_least,
    count,
    fraction,
    key,
    merge_over_base,
    read,
    seconds,
)


@dataclass(frozen=True)
class Inner:
    size: int = key(8, check=at_least(1))
    mode: str = key("a", choices=("a", "b"))


def _pair(value: Any, slot: Slot) -> tuple[int, int]:
    """``pair: 3`` is (3, 3)."""
    return (value, value) if isinstance(value, int) else slot.coerce(value)


def _scale(value: Any, slot: Slot) -> dict[str, Any]:
    """``scale: true | {lo, hi}`` onto scale_lo and scale_hi."""
    slot.expect(value, bool, dict)
    if isinstance(value, bool):
        return {"scale_lo": 0.0 if value else slot.base["scale_lo"], "scale_hi": 1.0 if value else 0.0}
    return {"scale_lo": float(value.get("lo", 0.0)), "scale_hi": float(value.get("hi", 1.0))}


SCALE = Group("scale", _scale)


@dataclass(frozen=True)
class Entry:
    name: str
    tags: tuple[str, ...] = key(absent=())  # the constructor needs them; a file may leave them out
    count: int = key(default_from=lambda values: len(values["tags"]))
    kind: str = key(choices=lambda: ["x", "y"], absent="x")
    weight: float = 1.0
    pair: tuple[int, int] = key((1, 1), parse=_pair)
    limit: int | None = None
    on: bool = False
    inner: Inner = Inner()
    options: Mapping[str, Any] = key(default_factory=dict, parse=merge_over_base)
    scale_lo: float = key(0.0, group=SCALE)
    scale_hi: float = key(0.0, group=SCALE)
    source: str = key("<inline>", read=False)

    def _check(self, fail) -> None:
        if self.limit is not None and self.limit < self.count:
            fail("limit", f"is {self.limit}, below count {self.count}")


def test_types_defaults_and_hooks_come_from_the_fields():
    entry = read(Entry, {"name": "e", "weight": 2, "tags": ["a", "b"], "pair": 3, "limit": None, "on": True,
                         "inner": {"mode": "b"}, "options": {"k": 1}, "scale": True}, "f.yaml")
    assert entry == Entry(name="e", tags=("a", "b"), count=2, kind="x", weight=2.0, pair=(3, 3), on=True,
                          inner=Inner(mode="b"), options={"k": 1}, scale_lo=0.0, scale_hi=1.0)
    assert isinstance(entry.weight, float) and entry.tags == ("a", "b")
    # null is the default in YAML (``limit:`` with nothing after it), whatever the annotation
    assert read(Entry, {"name": "e", "weight": None}, "f.yaml").weight == 1.0


def test_a_base_entry_is_overridden_key_by_key_nested_mappings_and_options_included():
    base = read(Entry, {"name": "e", "tags": ["a"], "inner": {"size": 4, "mode": "b"}, "options": {"k": 1, "j": 2},
                        "scale": {"lo": 0.25, "hi": 0.5}}, "catalog.yaml")
    over = read(Entry, {"name": "e", "inner": {"size": 16}, "options": {"j": 3}}, "m.yaml", base=base)
    assert over.inner == Inner(size=16, mode="b")  # mode kept from the base's inner mapping
    assert over.options == {"k": 1, "j": 3}  # merged, never dropped
    assert (over.tags, over.count, over.scale_lo, over.scale_hi) == (("a",), 1, 0.25, 0.5)
    assert read(Entry, {}, "m.yaml", base={"name": "from-the-path"}).name == "from-the-path"
    assert read(Entry, {"name": "e"}, "m.yaml", given={"source": "m.yaml"}).source == "m.yaml"


@pytest.mark.parametrize("data, message", [
    ({"name": "e", "wieght": 2}, "f.yaml: unknown key 'wieght' (did you mean 'weight'?); allowed keys: count, "
                                 "inner, kind, limit, name, on, options, pair, scale, tags, weight"),
    ({"nmae": "e"}, "f.yaml: missing key 'name' (found 'nmae': a misspelling of 'name'?)"),
    ({"name": "e", "source": "x"}, "f.yaml: unknown key 'source'"),  # set by the caller, never by the file
    ({"name": 5}, "f.yaml: key 'name' must be str, got 5"),
    ({"name": "e", "limit": True}, "f.yaml: key 'limit' must be int or null, got True"),  # a bool is no int
    ({"name": "e", "weight": "heavy"}, "f.yaml: key 'weight' must be float, got 'heavy'"),
    ({"name": "e", "tags": "a"}, "f.yaml: key 'tags' must be list, got 'a'"),
    ({"name": "e", "tags": ["a", 1]}, "f.yaml: key 'tags' must be a list of strings, got ['a', 1]"),
    ({"name": "e", "pair": [1, 2, 3]}, "f.yaml: key 'pair' must be a list of 2 integers, got [1, 2, 3]"),
    ({"name": "e", "inner": {"size": 0}}, "f.yaml: inner: key 'size' must be at least 1, got 0"),
    ({"name": "e", "inner": {"mode": "c"}}, "f.yaml: inner: key 'mode' is 'c'; allowed: a, b"),
    ({"name": "e", "inner": {"sise": 2}}, "f.yaml: inner: unknown key 'sise' (did you mean 'size'?)"),
    ({"name": "e", "inner": [1]}, "f.yaml: key 'inner' must be dict, got [1]"),
    ({"name": "e", "kind": "z"}, "f.yaml: key 'kind' is 'z'; allowed: x, y"),
    ({"name": "e", "scale": 2}, "f.yaml: key 'scale' must be bool or dict, got 2"),
    ({"name": "e", "tags": ["a", "b"], "limit": 1}, "f.yaml: key 'limit' is 1, below count 2"),
    ([1, 2], "f.yaml: expected a mapping, got list"),
])
def test_spec_errors_are_one_line_and_name_file_key_and_allowed_values(data, message):
    with pytest.raises(SpecError, match="^" + re.escape(message)):
        read(Entry, data, "f.yaml")


def test_a_new_key_is_one_field():
    """The measure of the reader: a field added to a spec is read, defaulted, checked and
    suggested for a typo without another edit."""
    wider = dataclasses.make_dataclass("Wider", [("cross_camera", bool, key(False))], bases=(EvalSpec,), frozen=True)
    assert read(wider, {"cross_camera": True, "distance": "cosine"}, "m.yaml").cross_camera is True
    assert read(wider, {}, "m.yaml") == wider()
    with pytest.raises(SpecError, match=r"unknown key 'cross_camra' \(did you mean 'cross_camera'\?\)"):
        read(wider, {"cross_camra": True}, "m.yaml")


def test_the_eval_block_reads_aqe_as_one_key_for_three_fields():
    assert parse_eval({"aqe": True}, "e") == EvalSpec(aqe_k=5, aqe_alpha=3.0, aqe_times=1)
    assert parse_eval({"aqe": {"k": 3}}, "e", EvalSpec(aqe_k=7, aqe_alpha=1.0, aqe_times=2)) == \
        EvalSpec(aqe_k=3, aqe_alpha=1.0, aqe_times=2)
    assert parse_eval({"aqe": False}, "e", EvalSpec(aqe_k=7)) == EvalSpec()
    assert parse_eval({}, "e", EvalSpec(aqe_k=7)).aqe_k == 7
    with pytest.raises(SpecError, match=r"unknown key 'aqe_k' \(did you mean 'aqe'\?\)"):
        parse_eval({"aqe_k": 3}, "e")


def test_a_model_spec_round_trips_through_its_own_dict():
    """What an interpolation's options hold (dataclasses.asdict, tuples and all) reads back."""
    spec = ModelSpec(name="m", loader="timm", arch="x", weights=None, paradigm="baseline", dim=8,
                     preprocess=Preprocess(size=(256, 128), crop_pct=0.875), options={"a": [1]})
    assert read(ModelSpec, dataclasses.asdict(spec), "record") == spec


# --- run files ---------------------------------------------------------------------------------


class FileError(Exception):
    """A run file's error, as raybench.rundir.records.RunFileError takes it."""

    def __init__(self, where: str, field: str, reason: str):
        super().__init__(f"{where}: field {field!r}: {reason}")


RUN_FILE = Style(error=FileError, refuse_unknown=False, null_is_default=False, mapping="a JSON object",
                 top="<top>", type_names={float: "int or float"})


@dataclass(frozen=True)
class Marker:
    model: str
    rows: int = key(check=count)
    mAP: float | None = key(None, check=fraction)
    embed_seconds: float = key(0.0, check=seconds)
    error: str | None = None
    files: Mapping[str, int] = key(default_factory=dict)


def test_run_files_ignore_unknown_keys_and_take_null_only_where_the_annotation_does():
    marker = read(Marker, {"model": "m", "rows": 3, "mAP": 1, "error": None, "added_later": 1}, "x", style=RUN_FILE)
    assert marker == Marker(model="m", rows=3, mAP=1.0)
    assert isinstance(marker.mAP, float) and marker.files == {}


@pytest.mark.parametrize("data, message", [
    ({"model": "m"}, "x/_SUCCESS: field 'rows': missing"),
    ({"model": "m", "rows": -1}, "x/_SUCCESS: field 'rows': must be a count >= 0, got -1"),
    ({"model": "m", "rows": 1, "mAP": 1.5}, "x/_SUCCESS: field 'mAP': must be a fraction in [0, 1], got 1.5"),
    ({"model": "m", "rows": 1, "mAP": "high"}, "x/_SUCCESS: field 'mAP': must be int or float or null, got 'high'"),
    ({"model": "m", "rows": 1, "embed_seconds": None}, "x/_SUCCESS: field 'embed_seconds': must be int or float, "
                                                       "got None"),
    ({"model": "m", "rows": 1, "embed_seconds": -2.0}, "x/_SUCCESS: field 'embed_seconds': must be seconds >= 0"),
    ({"model": None, "rows": 1}, "x/_SUCCESS: field 'model': must be str, got None"),
    ([], "x/_SUCCESS: field '<top>': expected a JSON object, got list"),
])
def test_run_file_errors_go_through_the_callers_error(data, message):
    with pytest.raises(FileError, match="^" + re.escape(message)):
        read(Marker, data, "x/_SUCCESS", style=RUN_FILE)


# --- key by key ----------------------------------------------------------------------------------


def test_fields_by_hand_word_their_errors_as_the_reader_does():
    f = Fields({"metric": "mAP", "gap": 2, "labels": {"a": 1}}, "ref.yaml")
    assert (f.take("metric", str), f.take("gap", float), f.take("labels", dict), f.take("unit", str, "%")) == \
        ("mAP", 2.0, {"a": 1}, "%")
    f.done()
    with pytest.raises(SpecError, match=r"^ref.yaml: key 'gap' must be str or null, got 2$"):
        Fields({"gap": 2}, "ref.yaml").take("gap", (str, type(None)))
    with pytest.raises(SpecError, match=r"^ref.yaml: missing key 'metric' \(found 'metrc': a misspelling"):
        Fields({"metrc": 1}, "ref.yaml").take("metric", str)
    g = Fields({"metric": "mAP", "metrik": 1}, "ref.yaml")
    g.take("metric", str, choices=("mAP", "R1"))
    with pytest.raises(SpecError, match=r"^ref.yaml: unknown key 'metrik' \(did you mean 'metric'\?\); allowed keys: metric$"):
        g.done()


def test_a_caller_naming_a_field_that_does_not_exist_is_a_bug_not_a_file_error():
    with pytest.raises(TypeError, match="Entry has no field 'sorce'"):
        read(Entry, {"name": "e"}, "f.yaml", given={"sorce": "x"})
