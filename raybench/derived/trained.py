"""``trained:<run>`` in a matrix: a finished `raybench train` run, as a reference.

Parsing never reads the run: it may live only on the cluster's storage.
raybench.models.resolve_model swaps in the run's own entry (its folder's model.yaml) where the
model is built, and the driver does so before it plans the cells.
"""

from __future__ import annotations

from pathlib import Path

from raybench.errors import SpecError
from raybench.specs import ModelSpec

#: How a matrix names a run.
TRAINED_PREFIX = "trained:"
#: The loader of such a reference.
TRAINED = "trained"
#: What an inline ``{name: trained:<run>, ...}`` entry may not set: the run decides them.
TRAINED_FIXED = ("loader", "arch", "weights")
#: A run folder's model: one models.yaml-style entry beside its weights (`raybench train` writes it).
MODEL_FILE = "model.yaml"


def trained_reference(ref: str) -> ModelSpec:
    """``trained:<run>`` -> ModelSpec(loader="trained", arch=<run>), named after the run folder.

    ``<run>`` is a run name or a path to a run folder or its model.yaml; the spec's name is the
    folder's name, so a matrix names the same model on every machine. The paradigm says what
    raybench's recipes train until the run's model.yaml replaces it.
    """
    run = ref.removeprefix(TRAINED_PREFIX)
    folder = Path(run)
    if folder.name == MODEL_FILE:
        folder = folder.parent
    if not folder.name:
        raise SpecError(f"{ref!r}: expected trained:<run name or run folder>")
    return ModelSpec(name=folder.name, loader=TRAINED, arch=run, weights=None, paradigm="supervised")
