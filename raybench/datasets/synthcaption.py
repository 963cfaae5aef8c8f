"""Captions of synthetic persons, written from what synthdraw.py drew for them.

A caption names what the drawing shows of an identity and a reader could check in the crop:
the top's colour, sleeves and pattern, the lower garment and its colour, the hair, and each
accessory with its colour (backpack, handbag, hat, scarf). Colours are named by the nearest
entry of a small table (the drawn colours are a palette entry plus jitter). Two crops of one
person get the same facts in one of a few phrasings, chosen per image from a generator seeded
by (seed, domain, 8, frame): never from the streams the drawing uses, so the images do not
change when captions are written.
"""

from __future__ import annotations

import numpy as np

COLOURS = (
    ("black", (28, 28, 32)), ("white", (232, 232, 228)), ("grey", (128, 128, 132)), ("dark grey", (62, 62, 70)),
    ("navy", (38, 48, 100)), ("blue", (80, 135, 195)), ("red", (180, 40, 40)), ("maroon", (110, 30, 40)),
    ("green", (60, 120, 60)), ("dark green", (45, 70, 55)), ("yellow", (228, 198, 60)), ("mustard", (190, 160, 60)),
    ("pink", (200, 120, 160)), ("brown", (110, 80, 55)), ("orange", (238, 140, 50)), ("purple", (118, 64, 128)),
    ("beige", (172, 132, 92)),
)
HAIR = (("black", (20, 15, 10)), ("dark brown", (60, 40, 25)), ("brown", (110, 80, 50)), ("blond", (180, 150, 100)),
        ("grey", (90, 90, 90)))
LOWER = ("trousers", "shorts", "skirt")  # synthdraw's lower_type 0, 1, 2
PATTERN = ("", "{} horizontal stripes", "{} vertical stripes", "{} checks", "a {} logo")  # synthdraw's pattern 0..4
ACCESSORIES = (("backpack", 0, "carrying a {} backpack"), ("handbag", 1, "carrying a {} handbag"),
               ("scarf", 2, "wearing a {} scarf"), ("hat", 3, "wearing a {} hat"))  # index into acc_colour
OPENINGS = ("a person in {}", "someone wearing {}", "a pedestrian dressed in {}")


def colour_name(rgb, table=COLOURS) -> str:
    """The name of the nearest colour in ``table``."""
    rgb = np.asarray(rgb, np.float64)
    return min(table, key=lambda entry: float(((rgb - entry[1]) ** 2).sum()))[0]


def describe(ident: dict, rng: np.random.Generator) -> str:
    """One caption of an identity (synthdraw.identity_params), phrased by ``rng``."""
    top = f"a {colour_name(ident['upper'])} {'long' if ident['long_sleeves'] else 'short'}-sleeved top"
    pattern = int(ident["pattern"])
    if pattern:
        top += " with " + PATTERN[pattern].format(colour_name(ident["second"]))
    lower = LOWER[int(ident["lower_type"])]
    clothes = f"{top} and {'a ' if lower == 'skirt' else ''}{colour_name(ident['lower'])} {lower}"
    hair = f"{'long' if ident['long_hair'] else 'short'} {colour_name(ident['hair'], HAIR)} hair"
    extras = [phrase.format(colour_name(ident["acc_colour"][index]))
              for key, index, phrase in ACCESSORIES if ident[key]]
    opening = OPENINGS[int(rng.integers(len(OPENINGS)))].format(clothes)
    if rng.random() < 0.5:
        parts = [f"{opening}, with {hair}"] + extras
    else:
        parts = [f"{opening}"] + extras + [f"the person has {hair}"]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] + "."


def caption_rng(seed: int, code: int, frame: int) -> np.random.Generator:
    """The phrasing generator of one image (stream 8: the drawing uses 1..7)."""
    return np.random.default_rng([seed, code, 8, frame])
