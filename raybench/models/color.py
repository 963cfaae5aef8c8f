"""``color``: a weight-free classic baseline: colour histograms over horizontal stripes.

Each image (default 128 x 64, squashed) is cut into ``stripes`` horizontal bands (head,
torso, legs, ...). Each band gives a joint hue x saturation histogram (``hue_bins`` x
``sat_bins``) and a coarse value (brightness) histogram (``value_bins``), as the classic
hand-crafted ReID features do: clothing colour lives in hue and saturation, while brightness
mostly follows the camera's illumination, so it gets few bins. Each histogram is normalised
to sum 1 and square-rooted (the Euclidean distance between two features is then the Hellinger
distance between their histograms), and the whole vector has unit norm. Feature size:
stripes x (hue_bins x sat_bins + value_bins), 6 x (8 x 4 + 4) = 216 by default.

numpy only: it runs anywhere, without torch or a GPU, and gives the floor any learned model
should clear. Mean/std of the preprocess are not used (only as the pad colour). On the smoke
matrix's synthetic domains it scores mAP 0.45 (synth-a) and 0.31 (synth-b); a per-channel
16-bin variant scored 0.29 and 0.18, since its 16 brightness bins mostly encode the camera.

A free text side (option ``text: true``; the catalog's ``color-words``): a caption's colour
words become a histogram in the same space. A caption is cut into clauses (at commas and
"and"); a clause naming a garment or body part (top, trousers, hair, ...) puts the colours it
names into that part's stripes (head: the top sixth; upper body: down to 55% of the height;
lower body: the rest), each colour at the hue x saturation and value bins its reference RGB
(``COLOUR_WORDS``) falls in; a stripe no clause names stays uniform. Then the same square
root and unit norm as an image. Crude on purpose: it knows no grammar, and a real caption's
"light blue" or "khaki" is only as good as the table; it gives the text-to-image table a
floor that costs nothing and runs offline.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from raybench.errors import SpecError
from raybench.models.base import Loader, NumpyEmbedder, check_pixels, small_person_preprocess
from raybench.specs import ModelSpec, Preprocess

OPTIONS = {"stripes": 6, "hue_bins": 8, "sat_bins": 4, "value_bins": 4}
#: Reference RGB of the colour words a caption may use (synthcaption's names and a few more).
COLOUR_WORDS = {
    "black": (28, 28, 32), "white": (232, 232, 228), "grey": (128, 128, 132), "gray": (128, 128, 132),
    "dark grey": (62, 62, 70), "dark gray": (62, 62, 70), "navy": (38, 48, 100), "blue": (80, 135, 195),
    "light blue": (150, 190, 225), "dark blue": (30, 50, 120), "red": (180, 40, 40), "maroon": (110, 30, 40),
    "green": (60, 120, 60), "dark green": (45, 70, 55), "yellow": (228, 198, 60), "mustard": (190, 160, 60),
    "pink": (200, 120, 160), "brown": (110, 80, 55), "dark brown": (60, 40, 25), "orange": (238, 140, 50),
    "purple": (118, 64, 128), "beige": (172, 132, 92), "khaki": (170, 160, 110), "blond": (180, 150, 100),
    "blonde": (180, 150, 100),
}
#: Body part -> (top, bottom) fraction of the image height, and the words that name it.
PARTS = {
    "head": ((0.0, 1 / 6), ("hair", "hat", "cap", "helmet")),
    "upper": ((1 / 6, 0.55), ("top", "shirt", "t-shirt", "jacket", "coat", "sweater", "hoodie", "blouse",
                              "vest", "dress", "scarf", "backpack", "sleeved")),
    "lower": ((0.55, 1.0), ("trousers", "pants", "jeans", "shorts", "skirt", "shoes", "boots", "legs")),
}
_COLOUR_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, COLOUR_WORDS), key=len, reverse=True)) + r")\b")
_CLAUSES = re.compile(r",|;|\.|\band\b|\bwith\b")


class StripeHistogram(NumpyEmbedder):
    """The Embedder of the ``color`` family."""

    def __init__(self, spec: ModelSpec, preprocess: Preprocess):
        super().__init__(spec, preprocess)
        opts = {key: int(spec.options.get(key, default)) for key, default in OPTIONS.items()}
        self.stripes, self.hue_bins, self.sat_bins, self.value_bins = opts.values()
        if not 1 <= self.stripes <= preprocess.size[0]:
            raise SpecError(f"model {spec.name!r}: need 1 <= stripes <= image height ({preprocess.size[0]})")
        if not all(1 <= opts[k] <= 256 for k in ("hue_bins", "sat_bins", "value_bins")):
            raise SpecError(f"model {spec.name!r}: hue_bins, sat_bins and value_bins must be 1..256")
        self.joint = self.hue_bins * self.sat_bins
        self.dim = self.stripes * (self.joint + self.value_bins)
        if spec.dim is not None and spec.dim != self.dim:
            raise SpecError(f"model {spec.name!r}: declares dim {spec.dim}, but "
                            f"stripes x (hue_bins x sat_bins + value_bins) = {self.dim}")

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        check_pixels(pixels, self.preprocess)
        n, height = pixels.shape[0], pixels.shape[1]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        hsv = np.stack([np.asarray(Image.fromarray(p).convert("HSV")) for p in pixels]).astype(np.int64)
        hue, sat, value = ((hsv[..., c] * bins) >> 8 for c, bins in
                           enumerate((self.hue_bins, self.sat_bins, self.value_bins)))
        # one bin index per pixel: [image, stripe, joint hs bins | value bins]
        width = self.joint + self.value_bins
        base = (np.arange(n)[:, None, None] * self.stripes
                + (np.arange(height) * self.stripes // height)[None, :, None]) * width
        joint = base + hue * self.sat_bins + sat
        bright = base + self.joint + value
        counts = np.bincount(np.concatenate([joint.ravel(), bright.ravel()]),
                             minlength=n * self.stripes * width).reshape(n, self.stripes, width)
        hist = np.concatenate([
            counts[..., :self.joint] / counts[..., :self.joint].sum(-1, keepdims=True),
            counts[..., self.joint:] / counts[..., self.joint:].sum(-1, keepdims=True),
        ], axis=-1)
        feature = np.sqrt(hist).reshape(n, self.dim) / np.sqrt(2 * self.stripes)
        return feature.astype(np.float32)

    @property
    def has_text(self) -> bool:
        return bool(self.spec.options.get("text", False))

    def embed_text(self, captions: list[str]) -> np.ndarray:
        """Captions -> float32 [N, dim] in the image histograms' space (module docstring)."""
        if not self.has_text:
            raise SpecError(f"model {self.spec.name!r} has no text side (option text: true)")
        out = np.zeros((len(captions), self.dim), np.float32)
        for i, caption in enumerate(captions):
            out[i] = self._caption_feature(caption)
        return out

    def _caption_feature(self, caption: str) -> np.ndarray:
        width = self.joint + self.value_bins
        hist = np.zeros((self.stripes, width))
        for clause in _CLAUSES.split(caption.lower()):
            colours = _COLOUR_RE.findall(clause)
            words = set(re.findall(r"[a-z-]+", clause))
            for (top, bottom), names in PARTS.values():
                if not colours or not words.intersection(names):
                    continue
                rows = range(int(top * self.stripes), max(int(top * self.stripes) + 1, int(round(bottom * self.stripes))))
                for colour in colours:
                    hs, value = self._bins(COLOUR_WORDS[colour])
                    hist[list(rows), hs] += 1
                    hist[list(rows), self.joint + value] += 1
        empty = hist[:, :self.joint].sum(-1) == 0
        hist[empty] = 1.0  # a stripe no clause names: uniform
        hist = np.concatenate([hist[:, :self.joint] / hist[:, :self.joint].sum(-1, keepdims=True),
                               hist[:, self.joint:] / hist[:, self.joint:].sum(-1, keepdims=True)], axis=-1)
        return (np.sqrt(hist).reshape(self.dim) / np.sqrt(2 * self.stripes)).astype(np.float32)

    def _bins(self, rgb) -> tuple[int, int]:
        """The joint hue x saturation bin and the value bin of one colour, as ``embed`` bins a pixel."""
        h, s, v = (int(c) for c in np.asarray(Image.new("RGB", (1, 1), tuple(rgb)).convert("HSV")).reshape(3))
        return ((h * self.hue_bins) >> 8) * self.sat_bins + ((s * self.sat_bins) >> 8), (v * self.value_bins) >> 8

    def __repr__(self) -> str:
        return (f"StripeHistogram({self.spec.name!r}, stripes={self.stripes}, "
                f"hs={self.hue_bins}x{self.sat_bins}, value={self.value_bins})")


def build(spec: ModelSpec, preprocess: Preprocess, device: str | None = None, pretrained: bool = True):
    return StripeHistogram(spec, preprocess)


LOADER = Loader(build=build, default_preprocess=small_person_preprocess, options=(*OPTIONS, "text"),
                text=lambda spec: bool(spec.options.get("text", False)), numpy_only=True)
