"""``loader: interpolate`` in a matrix: the weights of two models of one architecture mixed as
(1 - alpha) * first + alpha * second (WiSE-FT).

raybench.catalog expands an entry into one model per alpha (interpolation_spec); each model's
spec holds both members' specs and its alpha in ``options``, so its hash covers both members'
weights and an embedding actor builds it without a catalog (raybench.models.interpolate).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from raybench.errors import SpecError
from raybench.specs import INTERPOLATE, PARADIGMS, ModelSpec
from raybench.specs.schema import Slot, key, positive, read

#: A member's fields that never change its embeddings, left out of the interpolation's spec
#: (and so of its hash), as ModelSpec.spec_hash leaves them out of a model's.
_MEMBER_DROPPED = ("batch_size", "description")


def _two_models(value: Any, slot: Slot) -> tuple[Any, Any]:
    if len(slot.expect(value, list)) != 2:
        slot.fail(f"must list exactly two models (start, end), got {len(value)}")
    return tuple(value)


def _alphas(value: Any, slot: Slot) -> tuple[float, ...]:
    slot.expect(value, float, list)
    values = value if isinstance(value, list) else [value]
    if not values:
        slot.fail("is an empty list")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            slot.fail(f"takes numbers in [0, 1] (0: the first model, 1: the second), got {v!r}")
    alphas = tuple(float(v) for v in values)
    if len(set(alphas)) < len(alphas):
        slot.fail(f"lists {alphas} with a value twice")
    return alphas


@dataclass(frozen=True)
class Interpolation:
    """A matrix's ``loader: interpolate`` entry, before its two members are looked up."""

    name: str
    #: as the matrix gives them (key ``models``): names, ``trained:<run>`` or inline mappings
    members: tuple[Any, Any] = key(name="models", parse=_two_models)
    alphas: tuple[float, ...] = key(name="alpha", parse=_alphas)  # 0: the first member, 1: the second
    paradigm: str = key("hybrid", choices=PARADIGMS)
    batch_size: int | None = key(None, check=positive)  # None: the first member's
    description: str = ""
    loader: str = key(INTERPOLATE, choices=(INTERPOLATE,))  # the key that makes the entry one


def parse_interpolation(data: Any, where: str) -> Interpolation:
    """An Interpolation from YAML: ``models`` lists exactly two models (start, end), ``alpha`` is
    a number or a list of numbers in [0, 1]."""
    return read(Interpolation, data, where)


def is_interpolation(item: Any) -> bool:
    """Whether a matrix's model entry is an interpolation."""
    return isinstance(item, Mapping) and item.get("loader") == INTERPOLATE


def alpha_name(name: str, alpha: float) -> str:
    """``<name>@<alpha>``: osnet-wise@0.25, osnet-wise@0, osnet-wise@1."""
    text = repr(float(alpha))
    return f"{name}@{text.removesuffix('.0')}"


def interpolation_spec(entry: Interpolation, alpha: float, members: tuple[ModelSpec, ModelSpec]) -> ModelSpec:
    """The model ``entry`` gives at ``alpha`` (see with_members); its preprocessing is the
    members' (resolved by the loader, which checks that they agree)."""
    first, second = members
    spec = ModelSpec(
        name=alpha_name(entry.name, alpha),
        loader=INTERPOLATE,
        arch=first.arch,
        weights=None,
        paradigm=entry.paradigm,
        batch_size=entry.batch_size or first.batch_size,
        options={"alpha": alpha},
        description=entry.description or f"{first.name} -> {second.name} at alpha {alpha:g}",
    )
    return with_members(spec, members)


def with_members(spec: ModelSpec, members: tuple[ModelSpec, ModelSpec]) -> ModelSpec:
    """An interpolation's spec holding ``members``: their specs in ``options`` (so its hash
    covers both members' weights and an actor builds it without a catalog), and the first
    member's arch, dim, precision and flip, since it runs the first member's forward."""
    first = members[0]
    return dataclasses.replace(spec, arch=first.arch, dim=first.dim, precision=first.precision, flip=first.flip,
                               options={**spec.options, "members": [member_record(m) for m in members]})


def member_record(spec: ModelSpec) -> dict:
    """A member as an interpolation's options hold it: its spec as plain data."""
    record = dataclasses.asdict(spec)
    for name in _MEMBER_DROPPED:
        record.pop(name)
    return record


def interpolation_members(spec: ModelSpec) -> tuple[ModelSpec, ModelSpec]:
    """The two members of an interpolation's spec (the inverse of member_record)."""
    members = spec.options.get("members")
    if not (isinstance(members, (list, tuple)) and len(members) == 2):
        raise SpecError(f"model {spec.name!r}: option 'members' must hold exactly two model specs")
    return tuple(read(ModelSpec, m, f"model {spec.name!r}: option 'members'[{i}]") for i, m in enumerate(members))
