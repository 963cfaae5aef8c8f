"""Decode an image and resize it to a model's input, as uint8 pixels, with PIL.

This is the CPU stage of the pipeline: it runs once per (dataset, ``Preprocess.pixel_key``)
whatever the model, and hands the Embedder uint8 [H, W, 3] arrays. Mean/std normalisation
happens later, once, inside ``Embedder.embed``: no normalised tensor ever goes back through
PIL (the study's ``ToPILImage()``-on-normalised-tensors defect cannot happen here).

Each resize mode reproduces, pixel for pixel, what the libraries' own eval transforms do on a
PIL image (torchvision's ``Resize`` on a PIL image is ``PIL.Image.resize``):

- ``squash``: ``Resize((H, W))``, as torchreid, CLIP-ReID and open_clip's squash mode.
- ``shortest_crop``: ``Resize(S) + CenterCrop(S)``, as open_clip's ``shortest`` mode and
  timm's eval transform with ``crop_pct=1`` for square targets. For non-square targets the
  image is scaled to cover H x W (the long side truncated like torchvision) and centre-cropped.
- ``pad``: letterbox: fit inside H x W keeping the aspect ratio, fill the rest with the mean
  colour (a mean-coloured border is zero after normalisation, and nothing of the person is cut).
"""

from __future__ import annotations

import io
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
        raise ImageError(label, str(exc) or type(exc).__name__) from None


def resize_pixels(image: Image.Image, preprocess: Preprocess) -> np.ndarray:
    """An RGB PIL image resized per ``preprocess``: uint8 [H, W, 3]."""
    resample = _RESAMPLE[preprocess.interpolation]
    height, width = preprocess.size
    if preprocess.resize_mode == "squash":
        out = image.resize((width, height), resample)
    elif preprocess.resize_mode == "shortest_crop":
        out = _center_crop(image.resize(_cover_size(image.size, height, width), resample), height, width)
    else:
        out = _letterbox(image, preprocess, resample)
    return np.array(out, dtype=np.uint8)  # writable: torch.from_numpy warns on read-only arrays


def _cover_size(size: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """(w, h) that covers height x width keeping the aspect ratio; torchvision's rounding."""
    w, h = size
    if width * h >= height * w:  # width binds: it becomes exactly `width`
        return width, int(width * h / w)
    return int(height * w / h), height


def _center_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    """torchvision's CenterCrop on a PIL image, which is never smaller than the crop here."""
    w, h = image.size
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
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
