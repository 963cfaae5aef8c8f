"""A finished training run becomes a model: ``<out>/model.yaml`` (one models.yaml-style entry)
beside its weights, loadable by the same loaders as every catalog model.

A matrix names it ``trained:<run>``; raybench.models.trained reads it back where the model is
built. The entry's ``weights`` is an absolute path, so that the entry works wherever it is
pasted (configs/models.yaml, a matrix), as the README suggests; a run folder moved or copied
whole to shared storage still loads as ``trained:<folder>``, which finds its weights beside
model.yaml (raybench.models.trained.run_spec).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from raybench.derived.trained import MODEL_FILE
from raybench.paths import trained_dir

if TYPE_CHECKING:  # pragma: no cover
    from raybench.train.config import TrainConfig


def default_out(name: str) -> Path:
    """Where `raybench train` writes a run by default: where ``trained:<name>`` looks for it."""
    return trained_dir() / name


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
    weights = fields.get("weights")
    if weights and not Path(weights).is_absolute():  # the recipe wrote it into ``out``
        fields["weights"] = str((out / weights).resolve())
    fields.setdefault("options", {})
    fields["options"] = {**fields["options"], "trained_on": cfg.dataset.name}
    path = out / MODEL_FILE
    path.write_text(yaml.safe_dump({cfg.name: fields}, sort_keys=False))
    return path


def export_run(cfg: "TrainConfig", checkpoint_dir: str | Path, out: Path) -> Path | None:
    """Turn the final checkpoint into the run's model; returns model.yaml (None: no image model)."""
    from raybench.train.loop import load_state
    from raybench.train import RECIPES

    state, info = load_state(checkpoint_dir)
    entry = RECIPES.get(cfg.recipe).export(cfg, state, info, out)
    return write_model_entry(cfg, entry, out, info) if entry is not None else None
