"""A finished training run is a model: ``<run>/model.yaml`` (one models.yaml-style entry)
beside its weights, loadable by the same loaders as every catalog model.

A matrix names it ``trained:<run>``, which parses to a reference (loader ``trained``, arch
``<run>``) without reading anything: the run may live only on the cluster's storage. Here,
where the model is built, the reference becomes the run's entry. ``<run>`` is a run name,
looked up as ``$RAYBENCH_TRAINED/<run>`` (default ``runs/train/<run>``), or a path to a run
folder or to its model.yaml. The entry's ``weights`` is an absolute path (so that model.yaml
can be pasted into a catalog or matrix); a run folder moved or copied to shared storage whole
is read with the file of that name beside its model.yaml, and a relative ``weights`` (runs
exported by older raybench) is relative to model.yaml. YAML only, no torch.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from raybench.derived.trained import MODEL_FILE, trained_reference
from raybench.errors import SpecError
from raybench.paths import trained_dir
from raybench.specs import ModelSpec, load_yaml, parse_entries, parse_model


def run_dir(name_or_path: str) -> Path:
    """A run folder from a run name or a path (the folder, or its model.yaml)."""
    path = Path(name_or_path).expanduser()
    if path.name == MODEL_FILE:
        return path.parent
    if path.is_dir() and (os.sep in name_or_path or not (trained_dir() / name_or_path).exists()):
        return path
    return trained_dir() / name_or_path


def run_spec(run: str) -> ModelSpec:
    """The ModelSpec a finished run wrote (its model.yaml), its weights the run folder's own."""
    folder = run_dir(run)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise SpecError(
            f"trained model {run!r}: no {path}. Train it first (`raybench train CONFIG --out {folder}`) "
            f"or set $RAYBENCH_TRAINED to the folder holding its run")
    entries = parse_entries(load_yaml(path), str(path), parse_model, "model")
    if len(entries) != 1:
        raise SpecError(f"{path}: expected exactly one model entry, found {len(entries)}")
    spec = next(iter(entries.values()))
    if spec.weights:
        spec = dataclasses.replace(spec, weights=_own_weights(folder, Path(spec.weights)))
    return spec


def _own_weights(folder: Path, weights: Path) -> str:
    """The weights file of the run in ``folder``: a relative path is relative to model.yaml; an
    absolute one that is not there (the folder was moved or copied whole since it was
    exported) is the file of the same name beside model.yaml, when that exists."""
    if not weights.is_absolute():
        return str((folder / weights).resolve())
    beside = folder / weights.name
    if not weights.exists() and beside.exists():
        return str(beside.resolve())
    return str(weights)


def resolve(reference: ModelSpec) -> ModelSpec:
    """The run's spec under the reference's name, with what the matrix entry set on top: its
    fields that differ from the bare ``trained:<run>`` reference replace the run's, and its
    options merge over the run's key by key (the rule of every inline entry)."""
    run = run_spec(reference.arch)
    bare = trained_reference(reference.arch)
    changed = {f.name: getattr(reference, f.name) for f in dataclasses.fields(ModelSpec)
               if f.name not in ("name", "options") and getattr(reference, f.name) != getattr(bare, f.name)}
    return dataclasses.replace(run, **changed, name=reference.name, options={**run.options, **reference.options})
