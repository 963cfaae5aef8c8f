"""Flat YAML or JSON mappings -> frozen dataclasses, driven by the dataclasses' own fields.

A file key is one field: its type is the field's annotation, its default the field's default,
and what else it needs is declared beside it with ``key(...)`` (a ``dataclasses.field`` with
metadata): allowed ``choices``, a ``check``, a ``parse`` hook for special syntax. So a new key
is one edit, and every reader gives the same one-line errors: the file, the key, the allowed
values, and a close name for a misspelt key.

Specs (YAML, raybench.specs): unknown keys are refused, and ``null`` means the default::

    @dataclass(frozen=True)
    class EvalSpec:
        distance: str = key("euclidean", choices=("euclidean", "cosine"))
        max_rank: int = key(50, check=at_least(1))

    read(EvalSpec, {"distanse": "cosine"}, "m.yaml: eval")
    # SpecError: m.yaml: eval: unknown key 'distanse' (did you mean 'distance'?); allowed keys: distance, max_rank

Run files (JSON, raybench.rundir): unknown keys are ignored (a newer raybench may add some), a
field takes ``null`` only where its annotation allows None, and errors are the caller's::

    RUN_FILE = Style(error=RunFileError, refuse_unknown=False, null_is_default=False,
                     mapping="a JSON object", top="<top>", type_names={float: "int or float"})

    @dataclass(frozen=True)
    class Marker:
        rows: int = key(check=count)
        embed_seconds: float = key(0.0, check=seconds)
        num_params: int | None = key(None, check=count)

    read(Marker, {"rows": -1}, "x/_SUCCESS", style=RUN_FILE)
    # RunFileError: x/_SUCCESS: field 'rows': must be a count >= 0, got -1

Types come from the annotations (``typing.get_type_hints``, so ``from __future__ import
annotations`` is fine): str, int, float (an int is accepted), bool (never taken for an int),
``X | None``, ``tuple[...]`` from a list, ``Mapping``/``dict``, ``Any``, and nested dataclasses,
read recursively (over the base's nested value, key by key). ``base``: an entry the mapping
overrides key by key (an inline matrix entry over its catalog entry); ``given``: fields the
caller sets that are no file keys (``source``); ``parsers``: hooks that need the caller's
context (a matrix's models are looked up in the catalog). A class may define
``_check(self, fail)`` for rules across fields; the reader calls it once the object is built.

``Fields`` takes keys one by one from a mapping whose keys are data rather than a fixed set
(the study's reference table): the same checks and messages, written out by hand.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Iterable, Mapping, NoReturn

from raybench.errors import SpecError

_META = "raybench.schema"
#: Key.absent when the field states no file default of its own (MISSING would end a dataclass's defaults)
_NONE = object()
#: The method a dataclass may define for rules across its fields: ``_check(self, fail)``, where
#: ``fail(field, reason)`` raises (``field`` "" for a rule about the whole mapping).
CHECK_METHOD = "_check"


class Reason(str):
    """Why a value was refused. A plain str to the error callback; ``kind`` ("missing" or
    "unknown" for a key absent or not allowed, else "value") lets a style word those two its
    own way (specs: ``missing key 'x'``, run files: ``field 'x': missing``)."""

    def __new__(cls, text: str, kind: str = "value"):
        reason = super().__new__(cls, text)
        reason.kind = kind
        return reason


def spec_error(where: str, field: str, reason: str) -> SpecError:
    """The wording of a spec file's errors: ``where: key 'x' <reason>``, ``where: missing key 'x'
    (...)``, ``where: unknown key 'x' (did you mean ...?); allowed keys: ...``."""
    kind = getattr(reason, "kind", "value")
    if kind != "value":  # the reason starts with its kind: "missing (found ...)"
        return SpecError(f"{where}: {kind} key {field!r}{reason[len(kind):]}")
    return SpecError(f"{where}: key {field!r} {reason}" if field else f"{where}: {reason}")


@dataclass(frozen=True)
class Style:
    """How one kind of file is read.

    error: (where, field, reason) -> the exception to raise. refuse_unknown: a key no field
    reads is an error (specs) or ignored (run files). null_is_default: a key given as null
    takes the default (YAML's ``key:`` with nothing after it), else null is a value, valid only
    where the annotation allows None. mapping and top: how an error about a value that is not a
    mapping names it. type_names: how a type is named in "must be ..." (run files: a float
    field "must be int or float")."""

    error: Callable[[str, str, str], Exception] = spec_error
    refuse_unknown: bool = True
    null_is_default: bool = True
    mapping: str = "a mapping"
    top: str = ""
    type_names: Mapping[type, str] = dataclasses.field(default_factory=dict)


SPEC = Style()


# ---------------------------------------------------------------------------------------------
# Declaring keys


@dataclass(frozen=True)
class Group:
    """One file key that sets several fields (eval's ``aqe: true | false | {k, alpha, times}``
    sets aqe_k, aqe_alpha and aqe_times). ``parse(value, slot)`` returns those fields' values;
    ``slot.base`` holds their values without the key."""

    name: str
    parse: Callable[[Any, "Slot"], Mapping[str, Any]]


@dataclass(frozen=True)
class Key:
    """What a field declares about its file key (see ``key``)."""

    choices: tuple | Callable[[], Iterable] | None = None
    check: Callable[[Any], str | None] | None = None
    parse: Callable[[Any, "Slot"], Any] | None = None
    name: str | None = None
    absent: Any = _NONE
    default_from: Callable[[Mapping[str, Any]], Any] | None = None
    group: Group | None = None
    read: bool = True

    def allowed(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices)


def key(default: Any = MISSING, *, default_factory: Any = MISSING, choices=None, check=None, parse=None,
        name: str | None = None, absent: Any = MISSING, default_from=None, group: Group | None = None,
        read: bool = True, hash: bool | None = None, compare: bool = True, repr: bool = True) -> Any:
    """A dataclass field and its file key.

    choices: the allowed values (or a function giving them, for a registry's names).
    check: value -> None, or why the value is wrong ("must be at least 1, got 0").
    parse: (file value, Slot) -> field value, for a syntax the annotation does not say
    (``size: 224`` for (224, 224)); it replaces the conversion by annotation.
    name: the file key, where it is not the field's name.
    absent: the value when the file leaves the key out, where it is not the constructor's
    default (ModelSpec(weights=...) must be given, a models.yaml entry may leave it out; a run
    file written before a field existed may mean an older value than the default).
    default_from: the value when the key is left out, from the fields read before it.
    group: a Group: this field is set by that one key, with the group's other fields.
    read=False: no file key; the caller gives the value (``read(..., given=...)``) or the
    default holds.
    """
    meta = Key(choices=choices, check=check, parse=parse, name=name, absent=_NONE if absent is MISSING else absent,
               default_from=default_from, group=group, read=read)
    return dataclasses.field(default=default, default_factory=default_factory, hash=hash, compare=compare,
                             repr=repr, metadata={_META: meta})


def _meta(field: dataclasses.Field) -> Key:
    return field.metadata.get(_META) or Key()


# Checks: value -> None, or the reason it is refused. None values are never checked (a field
# takes None only where its annotation allows it).


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be at least {low}, got {v!r}"


def positive(v: float) -> str | None:
    return None if v > 0 else f"must be positive, got {v!r}"


def fraction(v: float) -> str | None:
    return None if math.isfinite(v) and 0.0 <= v <= 1.0 else f"must be a fraction in [0, 1], got {v!r}"


def count(v: int) -> str | None:
    return None if v >= 0 else f"must be a count >= 0, got {v!r}"


def seconds(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else f"must be seconds >= 0, got {v!r}"


def merge_over_base(value: Any, slot: "Slot") -> dict:
    """A parse hook for ``options``: the mapping's keys over the base entry's, key by key, so an
    inline entry adds or changes options and never drops one."""
    return {**(slot.base or {}), **slot.coerce(value)}


# ---------------------------------------------------------------------------------------------
# Reading


def read(cls: type, data: Any, where: str, *, base: Any = None, given: Mapping[str, Any] | None = None,
         parsers: Mapping[str, Callable[[Any, "Slot"], Any]] | None = None, style: Style = SPEC):
    """An instance of the dataclass ``cls`` from the mapping ``data``; ``where`` starts every
    error message (the file, and the entry in it). ``base``: a ``cls`` instance or a mapping of
    field values that the keys of ``data`` override; ``given``: fields that are no file keys;
    ``parsers``: per-call parse hooks by field name, over the fields' own."""
    return _Reader(where, style).read(cls, data, base, given or {}, parsers or {})


@dataclass(frozen=True)
class Slot:
    """One key as a parse hook sees it: ``base`` is the field's value without the key (the
    base entry's, else the field's default; MISSING when required), ``values`` the fields read
    before it."""

    reader: "_Reader"
    key: str
    hint: Any
    base: Any
    values: Mapping[str, Any]

    @property
    def where(self) -> str:
        """Where a nested mapping's errors start: ``m.yaml: model 'x': preprocess``."""
        return f"{self.reader.where}: {self.key}"

    def fail(self, reason: str) -> NoReturn:
        self.reader.fail(self.key, reason)

    def expect(self, value: Any, *kinds: type) -> Any:
        """``value`` when it is one of ``kinds`` (an int passes for float, a bool never for int)."""
        if not any(_fits(value, kind) for kind in kinds):
            self.fail(f"must be {self.reader.names(kinds)}, got {value!r}")
        return value

    def coerce(self, value: Any, hint: Any = None) -> Any:
        """``value`` converted by the field's annotation (or ``hint``), as without a hook."""
        return self.reader.coerce(value, self.hint if hint is None else hint, self)

    def read(self, cls: type, data: Any, base: Any = None, where: str | None = None):
        """A nested dataclass from ``data``, its errors under this key."""
        return _Reader(where or self.where, self.reader.style).read(cls, data, base, {}, {})


class _Reader:
    def __init__(self, where: str, style: Style):
        self.where, self.style = where, style

    def fail(self, field: str, reason: str) -> NoReturn:
        raise self.style.error(self.where, field, reason)

    def names(self, hints: Iterable[Any]) -> str:
        return " or ".join(dict.fromkeys(self.name(h) for h in hints))

    def name(self, hint: Any) -> str:
        """How "must be ..." names a type: str, int, float, bool, null, list, dict."""
        origin = typing.get_origin(hint) or hint
        if origin in self.style.type_names:
            return self.style.type_names[origin]
        if hint is type(None) or hint is None:
            return "null"
        if origin in (tuple, list) or _is_sequence(origin):
            return "list"
        if _is_mapping(origin) or dataclasses.is_dataclass(origin):
            return "dict"
        if _is_union(hint):
            return self.names(typing.get_args(hint))
        return getattr(origin, "__name__", str(origin))

    def read(self, cls: type, data: Any, base: Any, given: Mapping[str, Any], parsers: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            self.fail(self.style.top, f"expected {self.style.mapping}, got {type(data).__name__}")
        hints = _hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        stray = (set(given) | set(parsers)) - {f.name for f in fields}
        if stray:  # a caller's mistake, not the file's
            raise TypeError(f"{cls.__name__} has no field {sorted(stray)[0]!r} (given or parsed by the caller)")
        known = _file_keys(fields, given)
        bases = _field_values(base)
        values: dict[str, Any] = {}
        groups: set[str] = set()
        for field in fields:
            meta = _meta(field)
            if field.name in given:
                values[field.name] = given[field.name]
            elif meta.group is not None:
                if meta.group.name not in groups:  # the group's first field reads it for all
                    groups.add(meta.group.name)
                    values.update(self._group(meta.group, fields, data, bases, values))
            elif meta.read:
                value = self._field(field, meta, hints[field.name], data, bases, values, parsers, known)
                if value is not MISSING:
                    values[field.name] = value
        if self.style.refuse_unknown:
            self._refuse_unknown(data, known)
        obj = cls(**values)
        check = getattr(obj, CHECK_METHOD, None)
        if check is not None:
            check(self.fail)
        return obj

    def _field(self, field, meta: Key, hint, data, bases, values, parsers, known) -> Any:
        file_key = meta.name or field.name
        fallback = _fallback(field, meta, bases, values)
        value = data.get(file_key, MISSING)
        if value is MISSING or value is None and self.style.null_is_default and fallback is not MISSING:
            if fallback is MISSING:
                self.fail(file_key, Reason("missing" + _typo_of(file_key, data, known), "missing"))
            return fallback
        slot = Slot(self, file_key, hint, fallback, values)
        parse = parsers.get(field.name) or meta.parse
        value = parse(value, slot) if parse else self.coerce(value, hint, slot)
        if value is not None and meta.choices is not None and value not in meta.allowed():
            self.fail(file_key, f"is {value!r}; allowed: {', '.join(map(str, meta.allowed()))}")
        reason = meta.check(value) if value is not None and meta.check else None
        if reason:
            self.fail(file_key, reason)
        return value

    def _group(self, group: Group, fields, data, bases, values) -> dict[str, Any]:
        members = [f for f in fields if _meta(f).group == group]
        base = {f.name: _fallback(f, _meta(f), bases, values) for f in members}
        value = data.get(group.name)
        if value is None:  # a group's fields all have defaults: absent and null keep them
            return base
        return group.parse(value, Slot(self, group.name, None, base, values))

    def _refuse_unknown(self, data: Mapping, known: list[str]) -> None:
        extra = sorted(set(data) - set(known), key=str)
        if extra:
            close = difflib.get_close_matches(str(extra[0]), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(extra[0], Reason(f"unknown{hint}; allowed keys: {', '.join(sorted(known))}", "unknown"))

    def coerce(self, value: Any, hint: Any, slot: Slot) -> Any:
        """``value`` as the annotation ``hint`` says; a mismatch fails at ``slot``'s key."""
        options = typing.get_args(hint) if _is_union(hint) else (hint,)
        if value is None and type(None) in options:
            return None
        for option in options:
            if _fits(value, option):
                return self._convert(value, option, slot)
        slot.fail(f"must be {self.name(hint)}, got {value!r}")

    def _convert(self, value: Any, hint: Any, slot: Slot) -> Any:
        origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
        if hint is float:
            return float(value)
        if dataclasses.is_dataclass(origin):
            base = slot.base if dataclasses.is_dataclass(slot.base) else None
            return slot.read(origin, value, base)
        if _is_mapping(origin):
            return dict(value)
        if origin is tuple or _is_sequence(origin):
            return self._items(value, args, slot)
        return value

    def _items(self, value: list, args: tuple, slot: Slot) -> tuple:
        """A list as ``tuple[X, ...]`` or ``tuple[X, Y, Z]`` says."""
        if not args:
            return tuple(value)
        fixed = not (len(args) == 2 and args[1] is Ellipsis)
        items = args if fixed else (args[0],) * len(value)
        if (fixed and len(value) != len(args)) or not all(_fits(v, a) for v, a in zip(value, items)):
            size = f"{len(args)} " if fixed else ""
            slot.fail(f"must be a list of {size}{_plural(items[0] if items else args[0])}, got {value!r}")
        return tuple(self._convert(v, a, slot) for v, a in zip(value, items))


@functools.lru_cache(maxsize=256)
def _hints(cls: type) -> dict[str, Any]:
    """A class's resolved annotations. Cached: evaluating them (strings, under ``from __future__
    import annotations``) was the reader's main cost, and a class's annotations never change."""
    return typing.get_type_hints(cls)


def _fallback(field: dataclasses.Field, meta: Key, bases: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
    """A field's value when its key is absent: the base's, else the declared default."""
    if field.name in bases:
        return bases[field.name]
    if meta.absent is not _NONE:
        return meta.absent
    if meta.default_from is not None:
        return meta.default_from(values)
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING


def _file_keys(fields: list[dataclasses.Field], given: Mapping[str, Any]) -> list[str]:
    keys: list[str] = []
    for field in fields:
        meta = _meta(field)
        name = meta.group.name if meta.group else meta.name or field.name
        if meta.read and field.name not in given and name not in keys:
            keys.append(name)
    return keys


def _field_values(base: Any) -> Mapping[str, Any]:
    if base is None:
        return {}
    if dataclasses.is_dataclass(base):
        return {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return base


def _typo_of(key: str, data: Mapping, known: list[str]) -> str:
    """A hint when the mapping holds a misspelling of a required key (`model:` for `models:`)."""
    others = [k for k in data if isinstance(k, str) and k not in known]
    close = difflib.get_close_matches(key, others, n=1)
    return f" (found {close[0]!r}: a misspelling of {key!r}?)" if close else ""


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _is_mapping(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _is_sequence(origin: Any) -> bool:
    return origin in (list, collections.abc.Sequence)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value``'s shape is the annotation's (its items are checked when converted)."""
    origin = typing.get_origin(hint) or hint
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if _is_union(hint):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple or _is_sequence(origin):
        return isinstance(value, (list, tuple))
    if _is_mapping(origin) or dataclasses.is_dataclass(origin):
        return isinstance(value, Mapping)
    return isinstance(value, origin)


_PLURALS = {float: "numbers", int: "integers", str: "strings", bool: "booleans"}


def _plural(hint: Any) -> str:
    return _PLURALS.get(hint, "items")


# ---------------------------------------------------------------------------------------------
# Key by key


class Fields:
    """Takes typed keys out of one mapping by hand, for a file whose keys are data (a table's
    labels) rather than a dataclass's fields; errors as ``read`` words them."""

    def __init__(self, data: Any, where: str, style: Style = SPEC):
        self._reader = _Reader(where, style)
        if not isinstance(data, Mapping):
            self._reader.fail(style.top, f"expected {style.mapping}, got {type(data).__name__}")
        self.data, self.where, self._seen = data, where, []

    def take(self, key: str, kinds: type | tuple[type, ...], default: Any = MISSING, choices=None):
        """``key``'s value, one of ``kinds`` (an int passes for float); ``default`` when absent
        or null; the allowed ``choices``."""
        self._seen.append(key)
        if key not in self.data or self.data[key] is None and default is not MISSING:
            if default is MISSING:
                self._reader.fail(key, Reason("missing" + _typo_of(key, self.data, self._seen), "missing"))
            return default
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        slot = Slot(self._reader, key, None, default, {})
        value = slot.expect(self.data[key], *kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if choices is not None and value not in choices:
            slot.fail(f"is {value!r}; allowed: {', '.join(map(str, choices))}")
        return value

    def done(self) -> None:
        """Refuse a key nothing took."""
        self._reader._refuse_unknown(self.data, self._seen)
