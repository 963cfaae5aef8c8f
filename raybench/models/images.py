"""Decode an image and resize it to a model's input, as uint8 pixels, with PIL.

This is the CPU stage of the pipeline: it runs once per (dataset, ``Preprocess.pixel_key``)
whatever the model, and hands the Embedder uint8 [H, W, 3] arrays. Mean/std normalisation
happens later, once, inside ``Embedder.embed``: no normalised tensor ever goes back through
PIL (the study's ``ToPILImage()``-on-normalised-tensors defect cannot happen here).

Each resize mode reproduces, pixel for pixel, what the libraries' own eval transforms do on a
PIL image (torchvision's ``Resize`` on a PIL image is ``PIL.Image.resize``):

- ``squash``: ``Resize((H, W))``, as torchreid, CLIP-ReID, open_clip's squash mode and the HF
  SigLIP processors.
- ``shortest_crop``: ``Resize(S) + CenterCrop(S)``, as open_clip's ``shortest`` mode and
  timm's eval transform for square targets. For non-square targets the image is scaled to cover
  H x W (the long side truncated like torchvision) and centre-cropped.
- ``pad``: letterbox: fit inside H x W keeping the aspect ratio, fill the rest with the mean
  colour (a mean-coloured border is zero after normalisation, and nothing of the person is cut).

``crop_pct`` < 1 first resizes to ``floor(H / crop_pct) x floor(W / crop_pct)`` (squash) or
covers it (shortest_crop), then centre-crops H x W: timm's eval transform with its crop_pct, and
the HF processors' "resize the shortest edge to 256, crop 224" (crop_pct 0.875). Where the crop
margin is odd, torchvision's CenterCrop rounds the offset (``crop_offset: round``) and
transformers' processors floor it (``crop_offset: floor``); each is reproduced exactly.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from raybench.errors import ImageError
from raybench.specs import Preprocess

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def load_pixels(path: str | Path, preprocess: Preprocess) -> np.ndarray:
    """The image at ``path`` as the model's input pixels: uint8 [H, W, 3].

    Raises ImageError naming the path when the file is missing or cannot be decoded.
    """
    return resize_pixels(_decode(path, str(path)), preprocess)


def load_pixels_bytes(data: bytes, preprocess: Preprocess, name: str = "<bytes>") -> np.ndarray:
    """As ``load_pixels``, from the encoded file's bytes; ``name`` goes into errors."""
    return resize_pixels(_decode(io.BytesIO(data), name), preprocess)


def _decode(source, label: str) -> Image.Image:
    """RGB, decoded the way torchvision's and torchreid's loaders do (``convert("RGB")``)."""
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageError(label, "file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if _empty(source):  # PIL says "cannot identify image file", which hides the cause
            raise ImageError(label, "empty file (0 bytes)") from None
        raise ImageError(label, str(exc) or type(exc).__name__) from None


def _empty(source) -> bool:
    """Whether the file (a path or a BytesIO) has no bytes; asked only after a decode failed."""
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes == 0
    try:
        return os.stat(source).st_size == 0
    except OSError:
        return False


def resize_pixels(image: Image.Image, preprocess: Preprocess) -> np.ndarray:
    """An RGB PIL image resized per ``preprocess``: uint8 [H, W, 3]."""
    resample = _RESAMPLE[preprocess.interpolation]
    if preprocess.resize_mode == "pad":
        out = _letterbox(image, preprocess, resample)
    else:
        height, width = preprocess.size
        scale_h, scale_w = (math.floor(v / preprocess.crop_pct) for v in preprocess.size)  # timm's rounding
        if preprocess.resize_mode == "squash":
            resized = image.resize((scale_w, scale_h), resample)
        else:
            resized = image.resize(_cover_size(image.size, scale_h, scale_w), resample)
        out = _center_crop(resized, height, width, preprocess.crop_offset)
    return np.array(out, dtype=np.uint8)  # writable: torch.from_numpy warns on read-only arrays


def _cover_size(size: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """(w, h) that covers height x width keeping the aspect ratio; torchvision's rounding."""
    w, h = size
    if width * h >= height * w:  # width binds: it becomes exactly `width`
        return width, int(width * h / w)
    return int(height * w / h), height


def _center_crop(image: Image.Image, height: int, width: int, offset: str = "round") -> Image.Image:
    """A centre crop of an image never smaller than the crop (a no-op when it fits exactly).

    ``round``: torchvision's CenterCrop, ``int(round(margin / 2))``; ``floor``: transformers'
    ``center_crop``, ``margin // 2``. They differ by a pixel when the margin is 3 mod 4.
    """
    w, h = image.size
    if (w, h) == (width, height):
        return image
    if offset == "floor":
        top, left = (h - height) // 2, (w - width) // 2
    else:
        top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def _letterbox(image: Image.Image, preprocess: Preprocess, resample) -> Image.Image:
    height, width = preprocess.size
    w, h = image.size
    scale = min(height / h, width / w)
    new_w, new_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    fill = tuple(int(round(m * 255)) for m in preprocess.mean)
    canvas = Image.new("RGB", (width, height), fill)
    canvas.paste(image.resize((new_w, new_h), resample), ((width - new_w) // 2, (height - new_h) // 2))
    return canvas
