"""A finished training run is a model: ``<out>/model.yaml`` (one models.yaml-style entry) beside
its weights, loadable by the same loaders as every catalog model.

Matrices name it ``trained:<run>``: ``<run>`` is a run name, looked up as
``$RAYBENCH_TRAINED/<run>`` (default ``runs/train/<run>``, the default --out of
``raybench train``), or a path to a run folder or to its model.yaml. The entry's ``weights``
is relative to model.yaml, so a run folder can be moved or copied to shared storage whole.

No torch here: resolving ``trained:<run>`` in a matrix reads YAML only.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from raybench.errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from raybench.specs import ModelSpec
    from raybench.train.config import TrainConfig

PREFIX = "trained:"
MODEL_FILE = "model.yaml"
TRAINED_ENV = "RAYBENCH_TRAINED"


def trained_root() -> Path:
    """Where run folders live by default: $RAYBENCH_TRAINED, else runs/train (relative to cwd,
    like `raybench run`'s runs/<matrix>)."""
    return Path(os.environ.get(TRAINED_ENV, "runs/train"))


def default_out(name: str) -> Path:
    return trained_root() / name


def run_dir(name_or_path: str) -> Path:
    """A run folder from a run name or a path (the folder, or its model.yaml)."""
    path = Path(name_or_path).expanduser()
    if path.name == MODEL_FILE:
        return path.parent
    if path.is_dir() and (os.sep in name_or_path or not (trained_root() / name_or_path).exists()):
        return path
    return trained_root() / name_or_path


def trained_model_spec(name: str) -> "ModelSpec":
    """The ModelSpec of a finished run (``trained:<name>`` in a matrix, prefix optional)."""
    from raybench.specs import load_model_catalog

    name = name.removeprefix(PREFIX)
    folder = run_dir(name)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise SpecError(
            f"trained model {name!r}: no {path}. Train it first (`raybench train CONFIG --out {folder}`) "
            f"or set ${TRAINED_ENV} to the folder holding its run")
    catalog = load_model_catalog(path)
    if len(catalog) != 1:
        raise SpecError(f"{path}: expected exactly one model entry, found {len(catalog)}")
    spec = next(iter(catalog.values()))
    if spec.weights and not Path(spec.weights).is_absolute():
        spec = dataclasses.replace(spec, weights=str((folder / spec.weights).resolve()))
    return spec


def write_model_entry(cfg: "TrainConfig", entry: Mapping[str, Any], out: Path, info: Mapping[str, Any]) -> Path:
    """``out/model.yaml``: the recipe's entry + the training preprocessing + provenance."""
    import yaml

    pre = dataclasses.asdict(cfg.model.preprocess)
    pre = {k: list(v) if isinstance(v, tuple) else v for k, v in pre.items()}
    fields = {
        **entry,
        "preprocess": pre,
        "description": (f"{cfg.recipe} trained by raybench on {cfg.dataset.name} train "
                        f"({info.get('num_classes')} ids, {info.get('epoch', -1) + 1} epochs; config {cfg.source})"),
    }
    fields.setdefault("options", {})
    fields["options"] = {**fields["options"], "trained_on": cfg.dataset.name}
    path = out / MODEL_FILE
    path.write_text(yaml.safe_dump({cfg.name: fields}, sort_keys=False))
    return path


def export_run(cfg: "TrainConfig", checkpoint_dir: str | Path, out: Path) -> Path | None:
    """Turn the final checkpoint into the run's model; returns model.yaml (None: no image model)."""
    from raybench.train.loop import load_state
    from raybench.train.recipe import RECIPES

    state, info = load_state(checkpoint_dir)
    entry = RECIPES.get(cfg.recipe).export(cfg, state, info, out)
    return write_model_entry(cfg, entry, out, info) if entry is not None else None
