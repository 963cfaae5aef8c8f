"""A worked example of a model loader family (docs/extending.md): stripe colours.

Each image (squashed to 128 x 64) is cut into ``stripes`` horizontal bands; the feature is the
mean colour of each band, in [0, 1]: 3 x stripes numbers. No weights, numpy only. Named in a
matrix or catalog entry as ``loader: docs.examples.stripes:LOADER`` (a "module:attr" target,
importable from the project root and by every Ray worker), or registered under a name by a
line in raybench/models/__init__.py.
"""

from __future__ import annotations

import numpy as np

from raybench.errors import SpecError
from raybench.models.base import Loader, NumpyEmbedder, check_pixels, small_person_preprocess
from raybench.specs import ModelSpec, Preprocess


class StripeColours(NumpyEmbedder):
    """The Embedder: built once per actor, then ``embed`` per batch."""

    def __init__(self, spec: ModelSpec, preprocess: Preprocess):
        super().__init__(spec, preprocess)  # spec, preprocess, paradigm; no parameters, on the CPU
        self.stripes = int(spec.options.get("stripes", 6))
        if not 1 <= self.stripes <= preprocess.size[0]:
            raise SpecError(f"model {spec.name!r}: need 1 <= stripes <= image height ({preprocess.size[0]})")
        self.dim = 3 * self.stripes

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3], resized per ``preprocess`` -> float32 [N, 3 x stripes]."""
        check_pixels(pixels, self.preprocess)
        bands = np.array_split(pixels, self.stripes, axis=1)  # along the height: head to feet
        means = np.concatenate([band.mean(axis=(1, 2), dtype=np.float64) for band in bands], axis=1)
        return (means / 255).astype(np.float32)  # summed in float64: exact means, whatever the size


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None = None, pretrained: bool = True):
    return StripeColours(spec, preprocess)  # weight-free: ``pretrained`` and ``device`` change nothing


LOADER = Loader(
    build=build,
    default_preprocess=small_person_preprocess,  # 128 x 64, squashed: the classic hand-crafted input
    options=("stripes",),
    numpy_only=True,  # its actors never import torch; ``flip`` is refused
)
