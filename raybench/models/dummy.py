"""``dummy``: deterministic embeddings for pipeline tests, in microseconds, without torch.

The feature is a fixed random projection (seed 0) of the raw pixels, so equal images give
equal embeddings and similar images similar ones. Options:
- ``dim``: feature size (default: the spec's dim, else 32);
- ``fail_once``: a marker path; on its first batch, if the marker does not exist, the embedder
  creates it and kills its own process (``os._exit``), as a crashing GPU worker would, so that
  tests can check that the pipeline retries and loses nothing;
- ``sleep``: seconds to wait per batch (a slow model, for scheduling and resume tests);
- ``fail_on_black``: raise on a batch holding an all-black image, as a model that cannot embed
  one dataset's images would, so that tests can check that only that cell fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from raybench.models.base import Loader, NumpyEmbedder, check_pixels, small_person_preprocess
from raybench.specs import ModelSpec, Preprocess


class DummyEmbedder(NumpyEmbedder):
    def __init__(self, spec: ModelSpec, preprocess: Preprocess):
        super().__init__(spec, preprocess)
        self.dim = int(spec.options.get("dim", spec.dim or 32))
        self.fail_once = spec.options.get("fail_once")
        self.sleep = float(spec.options.get("sleep", 0))
        self.fail_on_black = bool(spec.options.get("fail_on_black", False))
        height, width = preprocess.size
        rng = np.random.default_rng(0)
        self._projection = (rng.standard_normal((height * width * 3, self.dim)) / np.sqrt(height * width * 3)).astype(np.float32)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        check_pixels(pixels, self.preprocess)
        if self.fail_once and not Path(self.fail_once).exists():
            Path(self.fail_once).touch()
            os._exit(1)
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail_on_black and (pixels.reshape(len(pixels), -1).max(axis=1) == 0).any():
            raise ValueError("an all-black image in the batch (dummy option fail_on_black)")
        flat = pixels.reshape(len(pixels), -1).astype(np.float32) / 255
        return flat @ self._projection


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None = None, pretrained: bool = True):
    return DummyEmbedder(spec, preprocess)


LOADER = Loader(build=build, default_preprocess=small_person_preprocess, options=("dim", "fail_once", "sleep", "fail_on_black"),
                numpy_only=True)
