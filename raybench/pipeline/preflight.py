"""Checks made before Ray starts, on the machine that runs the driver: a typo in a weights
path or a dataset root, or the members of an interpolation that see different inputs, costs a
second, not a Ray start and a failed cell."""

from __future__ import annotations

from raybench.console import count
from raybench.errors import RaybenchError
from raybench.specs import MatrixSpec


def preflight(matrix: MatrixSpec, check_weights: bool = True) -> None:
    """Every model's local weights file (unless ``check_weights`` is False: random weights)
    and every dataset's root exist, and the members of each interpolation see the same input,
    checked on this machine before Ray starts; one RaybenchError lists every problem found. A
    dataset with scoring settings is also parsed here (a listing of names, seconds at most): its
    settings need labels a copy may lack (the clothes field of the names, PRCC's camera B or C
    folder), and a setting asked of a dataset without clothes labels is found before anything
    is embedded."""
    from raybench.datasets import get_adapter, is_generated, load_manifest, resolve_root
    from raybench.models import check_model

    problems = []
    for model in matrix.models:
        try:
            check_model(model, local_files=check_weights)
            mismatch = _interpolation_inputs(model)
            if mismatch:
                problems.append(f"model {model.name}: {mismatch}")
        except RaybenchError as exc:
            problems.append(f"model {model.name}: {exc}")
    for dataset in matrix.datasets:
        try:
            if is_generated(dataset):
                continue
            root = resolve_root(dataset)
            if not root.exists():
                layout = get_adapter(dataset.adapter).layout
                problems.append(f"dataset {dataset.name}: {root} does not exist"
                                + (f" (expected layout: {layout})" if layout else ""))
            elif dataset.protocol.settings:
                load_manifest(dataset)
        except RaybenchError as exc:
            problems.append(f"dataset {dataset.name}: {exc}")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise RaybenchError(f"{count(len(problems), 'problem')} found before starting Ray:\n{listing}\n"
                            "Fix them, or leave those models or datasets out with --models / --datasets.")


def _interpolation_inputs(model) -> str | None:
    """The line that says how an interpolation's members' inputs differ, else None."""
    from raybench.models import resolve_model
    from raybench.specs import INTERPOLATE

    if model.loader != INTERPOLATE:
        return None
    from raybench.models.interpolate import input_mismatch

    return input_mismatch(resolve_model(model))
