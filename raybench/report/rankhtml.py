"""What the rank-list pages (ranklist.py, textrank.py) share: their style sheet, the base64
thumbnails, one bordered figure per image, and how they write text and percentages."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

TOP_K = 10
THUMB = (64, 128)  # width, height: person crops are about 1:2

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} .meta{color:#555;font-size:.9em;max-width:70em}
.row{display:flex;align-items:flex-start;gap:6px;margin:10px 0;padding:6px;border-bottom:1px solid #eee}
figure{margin:0;text-align:center;font-size:11px;line-height:1.25;width:72px}
figure img,figure .missing{width:64px;height:128px;object-fit:contain;display:block;margin:auto;
  border:4px solid #999;background:#f4f4f4}
figure .missing{font-size:9px;overflow:hidden;word-break:break-all;box-sizing:border-box;width:72px}
figure.query img{border-color:#333}
figure.hit img,figure.hit .missing{border-color:#2ca02c}
figure.miss img,figure.miss .missing{border-color:#d62728}
figure.strip{width:auto} figure.strip .frames{display:flex;gap:1px;justify-content:center}
figure.strip img,figure.strip .missing{width:32px;height:64px;border-width:3px}
.q{width:110px;flex:none;font-size:12px} .q figure.strip{width:auto}
.sep{width:2px;align-self:stretch;background:#ccc;margin:0 6px}
.warn{color:#b35900}
table{border-collapse:collapse} td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
"""


def figure(cls: str, path: str, caption: str, thumbs: Thumbs) -> str:
    return f"<figure class='{cls}'>{_image(path, thumbs)}<figcaption>{caption}</figcaption></figure>"


def _image(path: str, thumbs: Thumbs) -> str:
    src = thumbs.get(path)
    name = escape(Path(path).name)
    return (f"<img src='{src}' alt='{name}' title='{escape(path)}'>" if src
            else f"<div class='missing' title='{escape(path)}'>image not found: {name}</div>")


#: Frames a tracklet shows in a rank list (video datasets), spread evenly over it.
STRIP_FRAMES = 3


def strip(cls: str, frames: list[str], caption: str, thumbs: Thumbs) -> str:
    """A video tracklet as one bordered figure: ``STRIP_FRAMES`` of its frames (first, last and
    evenly between), side by side, over one caption."""
    if len(frames) > STRIP_FRAMES:
        frames = [frames[round(i * (len(frames) - 1) / (STRIP_FRAMES - 1))] for i in range(STRIP_FRAMES)]
    images = "".join(_image(path, thumbs) for path in frames)
    return f"<figure class='{cls} strip'><div class='frames'>{images}</div><figcaption>{caption}</figcaption></figure>"


class Thumbs:
    """Base64 JPEG thumbnails, each image encoded once per page."""

    def __init__(self):
        self._cache: dict[str, str | None] = {}

    def get(self, path: str) -> str | None:
        if path not in self._cache:
            self._cache[path] = _thumbnail(path)
        return self._cache[path]


def _thumbnail(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail(THUMB)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=70)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def pct(value: Any) -> str:
    """A fraction as "45.4%" (raybench.metrics.percent), "-" where there is none."""
    from raybench.metrics import percent

    return percent(value) + "%" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
