"""Why a cell failed, as a small typed value rather than a string to parse.

The kind decides what else fails with the cell: a model that cannot load (or a stream that
breaks as a whole) fails every unfinished cell of that model; a batch the model cannot embed,
or an unreadable image under ``on_bad_image: fail``, fails only its own cell. The kind is
recorded in the result JSON (``error_kind``) beside the message.
"""

from __future__ import annotations

from dataclasses import dataclass

LOAD = "load"  # the model could not be built, or its preprocessing resolved
BATCH = "batch"  # a batch could not be embedded
IMAGE = "image"  # unreadable images (on_bad_image: fail)
STREAM = "stream"  # the embedding stream broke as a whole, or ended short
DATASET = "dataset"  # the dataset's manifest could not be loaded
SCORING = "scoring"  # the embeddings could not be scored
MEMBER = "member"  # a fusion whose member model failed on the dataset (the member's reason follows)
FUSION = "fusion"  # the members' stored embeddings could not be fused
DISTRACTOR = "distractors"  # the dataset's distractor set could not be embedded (its reason follows)
KINDS = (LOAD, BATCH, IMAGE, STREAM, DATASET, SCORING, MEMBER, FUSION, DISTRACTOR)


@dataclass(frozen=True)
class Failure:
    kind: str  # one of KINDS
    message: str

    @property
    def model_wide(self) -> bool:
        """Whether every unfinished cell of the model fails with it."""
        return self.kind in (LOAD, STREAM)

    def __str__(self) -> str:
        return self.message


def load_failure(model: str, text: str) -> Failure:
    """A model that failed to load; its name once, even where the error's own text starts with it."""
    return Failure(LOAD, f"model {model} failed to load: {text.removeprefix(f'model {model!r}: ')}")


def error_text(exc: BaseException) -> str:
    """An exception as one line: raybench's own errors as they are, others with their type."""
    from raybench.errors import RaybenchError

    return str(exc) if isinstance(exc, RaybenchError) else f"{type(exc).__name__}: {exc}"
