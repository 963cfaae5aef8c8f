"""A matrix: models x datasets, one eval block, its eval variants and fused models.

Reading a matrix file needs the catalogs (a model may be a catalog name), so raybench.catalog
reads it, with the fields declared here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raybench.errors import UnknownNameError
from raybench.specs.dataset import DatasetSpec
from raybench.specs.evaluation import EvalSpec, EvalVariant, parse_eval_variants
from raybench.specs.model import ModelSpec
from raybench.specs.schema import Slot, key, read

BAD_IMAGE_POLICIES = ("fail", "skip")

#: The loader name a fusion's cells carry (FusionSpec.as_model): never built, see pipeline/fusion.py.
FUSION = "fusion"


def _two_or_more_names(of: tuple[str, ...]) -> str | None:
    if len(of) < 2 or len(set(of)) != len(of):
        return f"must list two or more different model names, got {list(of)!r}"
    return None


@dataclass(frozen=True)
class FusionSpec:
    """A fused model: per image, the concatenation of sqrt(w_i) * e_i / ||e_i||_2 over its
    members' stored embeddings (models of the same matrix), so that squared euclidean distance
    on fused vectors is the weighted sum of the members' cosine distances (times 2). Nothing is
    embedded again: the reducer fuses committed cells (raybench.pipeline.fusion)."""

    name: str
    of: tuple[str, ...] = key(check=_two_or_more_names)
    weights: tuple[float, ...] = key(default_from=lambda values: (1.0,) * len(values["of"]))
    description: str = ""

    def _check(self, fail) -> None:
        if len(self.weights) != len(self.of) or not all(w > 0 for w in self.weights):
            fail("weights", f"must be {len(self.of)} positive numbers (one per model of 'of'), "
                            f"got {list(self.weights)!r}")

    def as_model(self) -> ModelSpec:
        """The fusion as the ModelSpec its cells carry (paradigm "hybrid", loader "fusion"):
        its spec hash covers the members' names and weights; a cell key adds the members' keys."""
        return ModelSpec(name=self.name, loader=FUSION, arch="+".join(self.of), weights=None, paradigm="hybrid",
                         options={"of": list(self.of), "weights": list(self.weights)},
                         description=self.description or f"fusion of {', '.join(self.of)}")


def parse_fusion(data: Any, where: str, models: tuple[str, ...]) -> FusionSpec:
    """One entry of a matrix's ``fusions:``; ``models``: the matrix's model names."""
    spec = read(FusionSpec, data, where)
    for member in spec.of:
        if member not in models:
            raise UnknownNameError(f"model of this matrix ({where}: key 'of')", member, models)
    return spec


def _variants(value: Any, slot: Slot) -> tuple[EvalVariant, ...]:
    return parse_eval_variants(slot.expect(value, list), slot.where, slot.values["eval"])


def _fusions(value: Any, slot: Slot) -> tuple[FusionSpec, ...]:
    names = tuple(m.name for m in slot.values["models"])
    return tuple(parse_fusion(item, f"{slot.where}[{i}]", names) for i, item in enumerate(slot.expect(value, list)))


@dataclass(frozen=True)
class MatrixSpec:
    """A matrix file. Its models and datasets are catalog names or inline entries, which
    raybench.catalog.load_matrix resolves (its ``parsers``)."""

    name: str
    models: tuple[ModelSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    eval: EvalSpec = EvalSpec()
    eval_variants: tuple[EvalVariant, ...] = key((), parse=_variants)
    on_bad_image: str = key("fail", choices=BAD_IMAGE_POLICIES)
    source: str = key("<inline>", read=False)
    description: str = ""
    fusions: tuple[FusionSpec, ...] = key((), parse=_fusions)

    def _check(self, fail) -> None:
        names = [m.name for m in self.models]
        for fusion in self.fusions:
            if fusion.name in names:
                fail("", f"fusion {fusion.name!r} has the name of a model of this matrix")
        for kind, specs in (("model", self.models), ("dataset", self.datasets), ("fusion", self.fusions)):
            names = [s.name for s in specs]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                fail("", f"{kind} {sorted(dup)[0]!r} is listed twice")
            if not specs and kind != "fusion":
                fail(f"{kind}s", "is empty")
        settings = {s.name: d.name for d in self.datasets for s in d.protocol.settings}
        for variant in self.eval_variants:  # each names a block's columns ("mAP (cc)"): one block a name
            if variant.name in settings:
                fail("eval_variants", f"variant {variant.name!r} has the name of a scoring setting of dataset "
                                      f"{settings[variant.name]!r}; name it otherwise")

    def select(self, models: list[str] | None = None, datasets: list[str] | None = None) -> "MatrixSpec":
        """The sub-matrix with only the named models and datasets (unknown names raise).

        A fusion named in ``models`` brings its members; a fusion not named stays when all its
        members do."""
        fusions = self.fusions
        if models:
            by_name = {f.name: f for f in self.fusions}
            wanted = [m for m in models if m not in by_name]
            for member in (m for name in models if name in by_name for m in by_name[name].of):
                wanted += [] if member in wanted else [member]
            fusions = tuple(f for f in self.fusions if f.name in models or set(f.of) <= set(wanted))
            models = wanted
        return dataclasses.replace(
            self,
            models=_pick(self.models, models, "model in this matrix"),
            datasets=_pick(self.datasets, datasets, "dataset in this matrix"),
            fusions=fusions,
        )


def _pick(specs, names, kind):
    if not names:
        return specs
    by_name = {s.name: s for s in specs}
    for name in names:
        if name not in by_name:
            raise UnknownNameError(kind, name, by_name)
    return tuple(by_name[n] for n in names)

