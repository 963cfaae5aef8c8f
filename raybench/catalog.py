"""The catalogs and the names in them: configs/models.yaml and datasets.yaml, the matrices,
and the one rule that turns a config's name or path into its file.

raybench.specs says what a spec is and how YAML becomes one; this module says where specs
come from: which file a name means, which catalog entry a matrix names, and whether a
loader or adapter is registered (so a typo fails when the matrix is read, not on a Ray
worker halfway through a run). A ``trained:<run>`` model stays a reference here
(raybench.derived.trained): the run is read where the model is built (raybench.models.trained).
A matrix's ``loader: interpolate`` entry becomes one model per alpha here (resolve_models),
its two members looked up in the matrix first, then in the catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping

from raybench.derived.interpolation import (
    Interpolation,
    interpolation_members,
    interpolation_spec,
    is_interpolation,
    parse_interpolation,
)
from raybench.derived.trained import TRAINED, TRAINED_FIXED, TRAINED_PREFIX, trained_reference
from raybench.errors import RaybenchError, SpecError, UnknownNameError
from raybench.paths import configs_dir
from raybench.specs import (
    INTERPOLATE,
    DatasetSpec,
    MatrixSpec,
    ModelSpec,
    load_yaml,
    parse_dataset,
    parse_entries,
    parse_model,
)
from raybench.specs.schema import Slot, read

YAML_SUFFIXES = (".yaml", ".yml")


# ---------------------------------------------------------------------------------------------
# Config files by name or path


def find_config(name_or_path: str | Path, folder: Path, what: str) -> Path:
    """A config file from its name (``folder/NAME.yaml``) or a path to it.

    A YAML suffix or an existing file means a path, which must exist; anything else is a name,
    and an unknown one lists the folder's names, the closest first.
    """
    path = Path(name_or_path).expanduser()
    if path.suffix in YAML_SUFFIXES or path.is_file():
        if not path.is_file():
            raise SpecError(f"{path}: {what} file not found")
        return path
    return catalog_get(config_files(folder), str(name_or_path), f"{what} (in {folder})")


def config_files(folder: Path) -> dict[str, Path]:
    """NAME -> folder/NAME.yaml, sorted by name."""
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def matrices_dir() -> Path:
    return configs_dir() / "matrices"


def train_configs_dir() -> Path:
    return configs_dir() / "train"


def catalog_get(catalog: Mapping[str, Any], name: str, kind: str):
    """Look a name up in a catalog; an unknown name suggests close ones."""
    try:
        return catalog[name]
    except KeyError:
        raise UnknownNameError(kind, name, catalog) from None


# ---------------------------------------------------------------------------------------------
# The model and dataset catalogs


def load_model_catalog(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """configs/models.yaml (or ``path``): name -> ModelSpec."""
    path = Path(path) if path else configs_dir() / "models.yaml"
    return parse_entries(load_yaml(path), str(path), _checked(parse_model), "model")


def load_dataset_catalog(path: str | Path | None = None) -> dict[str, DatasetSpec]:
    """configs/datasets.yaml (or ``path``): name -> DatasetSpec."""
    path = Path(path) if path else configs_dir() / "datasets.yaml"
    return parse_entries(load_yaml(path), str(path), _checked(parse_dataset), "dataset")


def check_registered(spec: ModelSpec | DatasetSpec, where: str) -> None:
    """A spec's loader (model) or adapter (dataset) must be registered; a "module:attr" target
    is taken on trust, and ``trained`` (a training run) is resolved where the model is built."""
    if isinstance(spec, ModelSpec):
        from raybench.models import LOADERS as known

        key, value, also = "loader", spec.loader, (TRAINED,)
    else:
        from raybench.datasets import ADAPTERS as known

        key, value, also = "adapter", spec.adapter, ()
    if ":" in value or value in known or value in also:
        return
    import difflib

    close = difflib.get_close_matches(value, known.names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(f"{where}: key {key!r} is {value!r}{hint}; allowed: {', '.join(known.names())}, "
                    "or a 'module:attr' target")


def _checked(parse):
    """``parse`` followed by check_registered."""
    def parse_and_check(data: Any, where: str, base=None):
        spec = parse(data, where, base)
        check_registered(spec, where)
        return spec

    return parse_and_check


# ---------------------------------------------------------------------------------------------
# Matrices


def load_matrix(
    name_or_path: str,
    models: Mapping[str, ModelSpec] | None = None,
    datasets: Mapping[str, DatasetSpec] | None = None,
) -> MatrixSpec:
    """A matrix YAML: models and datasets by catalog name, or inline mappings (which may
    name a catalog entry and override some of its keys; see resolve_entry)."""
    path = find_config(name_or_path, matrices_dir(), "matrix")
    models = load_model_catalog() if models is None else models
    datasets = load_dataset_catalog() if datasets is None else datasets

    def model_items(items: Any, slot: Slot) -> tuple[ModelSpec, ...]:
        return resolve_models(slot.expect(items, list), models, slot.where)

    def dataset_items(items: Any, slot: Slot) -> tuple[DatasetSpec, ...]:
        return tuple(resolve_entry(item, datasets, f"{slot.where}[{i}]", "dataset")
                     for i, item in enumerate(slot.expect(items, list)))

    return read(MatrixSpec, load_yaml(path), str(path), base={"name": path.stem}, given={"source": str(path)},
                parsers={"models": model_items, "datasets": dataset_items})


def resolve_models(items: list, catalog: Mapping[str, ModelSpec], where: str) -> tuple[ModelSpec, ...]:
    """A matrix's models, in order. A ``loader: interpolate`` entry becomes one model per alpha
    (expand_interpolation), its members looked up among the matrix's other models first, then
    in the catalog."""
    entries = [parse_interpolation(item, f"{where}[{i}]") if is_interpolation(item) else None
               for i, item in enumerate(items)]
    plain = {i: resolve_entry(item, catalog, f"{where}[{i}]", "model")
             for i, (item, entry) in enumerate(zip(items, entries)) if entry is None}
    lookup = {**catalog, **{spec.name: spec for spec in plain.values()}}
    out: list[ModelSpec] = []
    for i, entry in enumerate(entries):
        if entry is None:
            out.append(plain[i])
        else:
            out += expand_interpolation(entry, lookup, f"{where}[{i}]",
                                        exclude=[e.name for e in entries if e is not None])
    return tuple(out)


def expand_interpolation(entry: Interpolation, lookup: Mapping[str, ModelSpec], where: str,
                         exclude: Collection[str] = ()) -> list[ModelSpec]:
    """An interpolation's models, one per alpha (derived.interpolation.interpolation_spec).
    Each member is resolved as a matrix entry is (resolve_entry: a name in ``lookup``,
    ``trained:<run>``, or a mapping); ``exclude``: names of interpolations, which cannot be
    members."""
    members = []
    for j, item in enumerate(entry.members):
        at = f"{where}: models[{j}]"
        name = item.get("name") if isinstance(item, Mapping) else item
        if name in exclude or is_interpolation(item):
            raise SpecError(f"{at}: {name!r} is an interpolation; a member must be a model of its own")
        try:
            members.append(resolve_entry(item, lookup, at, "model"))
        except UnknownNameError as exc:
            raise SpecError(f"{at}: {exc}") from None
    return [interpolation_spec(entry, alpha, tuple(members)) for alpha in entry.alphas]


def resolve_entry(item: Any, catalog: Mapping[str, Any], where: str, kind: str):
    """One model or dataset of a matrix (or a training config's dataset): a catalog name, or
    a mapping. A mapping that names a catalog entry overrides the keys it gives; its
    ``options`` merge over the entry's key by key. A model named ``trained:<run>`` is a
    reference to that run (nothing is read here), and a mapping may override its keys
    but loader, arch and weights."""
    parse = _checked(parse_model if kind == "model" else parse_dataset)
    name = item.get("name") if isinstance(item, Mapping) else item
    if not isinstance(name, str):
        raise SpecError(f"{where}: expected a {kind} name or a mapping with a 'name' key, got {item!r}")
    if kind == "model" and name.startswith(TRAINED_PREFIX):
        base = trained_reference(name)
        if isinstance(item, str):
            return base
        fixed = sorted(set(item) & set(TRAINED_FIXED))
        if fixed:
            raise SpecError(f"{where}: key {fixed[0]!r}: a {TRAINED_PREFIX}<run> model takes its "
                            f"{', '.join(TRAINED_FIXED)} from the run")
        return parse({**item, "name": base.name}, where, base)
    if isinstance(item, str):
        return catalog_get(catalog, item, kind)
    return parse(item, where, catalog.get(name))
def trained_on(model: ModelSpec, datasets: list[str], catalog: list[str] | None = None) -> str | None:
    """The dataset a supervised model's weights were trained on, or None.

    From, in order: the spec's ``options.trained_on``; else ``named_training_set`` among the
    run's ``datasets`` and the catalog's (``catalog``: its dataset names, read here when not
    given). Models of the other paradigms have no in-domain dataset, except an interpolation:
    its in-domain dataset is that of its first member that has one (its supervised member).
    """
    if model.loader == INTERPOLATE:
        return hybrid_training_set(trained_on(m, datasets, catalog) for m in interpolation_members(model))
    if model.paradigm != "supervised":
        return None
    named = (model.options or {}).get("trained_on")
    if named:
        return str(named)
    if catalog is None:
        catalog = catalog_dataset_names()
    return named_training_set(model.name, [*datasets, *catalog])


def hybrid_training_set(member_sets) -> str | None:
    """A hybrid's (interpolation's, fusion's) in-domain dataset: that of its first member that
    has one (its supervised member), from the members' training sets in member order."""
    return next((home for home in member_sets if home), None)


def catalog_dataset_names() -> list[str]:
    """The dataset catalog's names, or none when it cannot be read."""
    try:
        return list(load_dataset_catalog())
    except RaybenchError:
        return []


def named_training_set(model: str, datasets: list[str]) -> str | None:
    """The name convention ``<arch>-<dataset>``: the last dash-separated part of the model's
    name starts exactly one of ``datasets`` (osnet-x1_0-market -> market1501,
    clipreid-vit-b16-msmt17 -> msmt17), or starts several of which one begins all the others (a
    dataset and its variants: market1501 and market1501-500k -> market1501); None otherwise.
    No I/O."""
    token = model.rsplit("-", 1)[-1].lower()
    matches = [d for d in dict.fromkeys(datasets) if len(token) >= 4 and d.lower().startswith(token)]
    base = [d for d in matches if all(m.lower().startswith(d.lower()) for m in matches)]
    return base[0] if len(base) == 1 else None


