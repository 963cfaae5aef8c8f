"""Images far larger than their dataset's usual crops: named once, before they are embedded.

A ReID crop is a few kB (Market-1501's median is about 5 kB); a full camera frame or a
mislabelled photo left in a crop folder is megabytes. It decodes slowly and, resized to the
model's input, is rarely a person. The rule is cheap (one ``stat`` per image, no decoding):
a file at least ``FACTOR`` times its dataset's median file size and over ``FLOOR`` bytes.
Only local paths are checked; images on object storage are not listed here.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

FACTOR = 16
FLOOR = 1 << 20  # 1 MiB: under it, nothing is slow to decode whatever the median
NAMED = 3


def oversize(paths: Sequence[str], factor: int = FACTOR, floor: int = FLOOR) -> tuple[list[tuple[str, int]], int]:
    """([(path, bytes)] of the oversize files, largest first; the median file size)."""
    import numpy as np

    sizes = []
    for path in paths:
        if "://" in path:
            return [], 0
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:  # missing or unreadable: the decode stage names it
            sizes.append(-1)
    known = np.array([s for s in sizes if s >= 0])
    if not len(known):
        return [], 0
    median = int(np.median(known))
    limit = max(factor * median, floor)
    big = sorted(((p, s) for p, s in zip(paths, sizes) if s > limit), key=lambda item: -item[1])
    return big, median


def oversize_warnings(datasets: Iterable) -> list[str]:
    """One warning line per dataset (a DatasetImages) with oversize images, naming the first."""
    lines = []
    for data in datasets:
        big, median = oversize(data.paths)
        if not big:
            continue
        named = ", ".join(f"{path} ({_size(size)})" for path, size in big[:NAMED])
        more = f" and {len(big) - NAMED:,} more" if len(big) > NAMED else ""
        lines.append(f"warning: {data.name}: {len(big):,} image(s) far larger than its usual crops "
                     f"(over {FACTOR}x its median file of {_size(median)}): {named}{more}")
    return lines


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"
