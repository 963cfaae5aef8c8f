"""``color``: a weight-free classic baseline: colour histograms over horizontal stripes.

Each image (default 128 x 64, squashed) is cut into ``stripes`` horizontal bands (head,
torso, legs, ...); each band gives one histogram per HSV channel with ``bins`` bins, normalised
to sum 1 and square-rooted, so that the Euclidean distance between two features is the
Hellinger distance between their histograms. Feature size: stripes x 3 x bins (6 x 3 x 16 =
288 by default). numpy only: it runs anywhere, without torch or a GPU, and gives the floor any
learned model should clear. Mean/std of the preprocess are not used (only the pad colour).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from raybench.errors import SpecError
from raybench.models.base import Loader, NumpyEmbedder, check_pixels, small_person_preprocess
from raybench.specs import ModelSpec, Preprocess


class StripeHistogram(NumpyEmbedder):
    """The Embedder of the ``color`` family."""

    def __init__(self, spec: ModelSpec, preprocess: Preprocess):
        super().__init__(spec, preprocess)
        self.stripes = int(spec.options.get("stripes", 6))
        self.bins = int(spec.options.get("bins", 16))
        if not (1 <= self.stripes <= preprocess.size[0] and 1 <= self.bins <= 256):
            raise SpecError(f"model {spec.name!r}: need 1 <= stripes <= image height and 1 <= bins <= 256")
        self.dim = self.stripes * 3 * self.bins
        if spec.dim is not None and spec.dim != self.dim:
            raise SpecError(f"model {spec.name!r}: declares dim {spec.dim}, but stripes x 3 x bins = {self.dim}")

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        check_pixels(pixels, self.preprocess)
        n, height = pixels.shape[0], pixels.shape[1]
        hsv = np.stack([np.asarray(Image.fromarray(p).convert("HSV")) for p in pixels]) if n else pixels
        bins = (hsv.astype(np.int64) * self.bins) >> 8  # [N, H, W, 3] in 0..bins-1
        stripe = (np.arange(height) * self.stripes // height)[None, :, None, None]
        image = np.arange(n)[:, None, None, None]
        channel = np.arange(3)[None, None, None, :]
        index = ((image * self.stripes + stripe) * 3 + channel) * self.bins + bins
        counts = np.bincount(index.ravel(), minlength=n * self.dim).reshape(n, self.stripes, 3, self.bins)
        hist = counts / counts.sum(axis=3, keepdims=True)
        return np.sqrt(hist).reshape(n, self.dim).astype(np.float32)

    def __repr__(self) -> str:
        return f"StripeHistogram({self.spec.name!r}, stripes={self.stripes}, bins={self.bins})"


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None = None, pretrained: bool = True):
    return StripeHistogram(spec, preprocess)


LOADER = Loader(build=build, default_preprocess=small_person_preprocess, options=("stripes", "bins"))
