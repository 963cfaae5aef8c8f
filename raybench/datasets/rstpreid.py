"""RSTPReid: real scenarios text-based person re-identification, built on MSMT17.

Reference: Zhu et al. DSSL: Deep Surroundings-person Separation Learning for Text-based
Person Retrieval. ACM MM 2021 (arXiv:2109.05534).
URL: https://github.com/NjtechCVLab/RSTPReid-Dataset (download link and terms there; its
images are MSMT17's, so MSMT17's research-only terms apply too).

Published statistics (``PUBLISHED``: the test split, per DSSL and IRRA): 4,101 identities,
20,505 images (5 per identity, from 15 cameras), 2 captions per image. Train 3,701 ids /
18,505 images; val 200 ids / 1,000 images.

Layout: RSTPReid/{imgs/<image>.jpg, data_captions.json}; the JSON is a list of
{"img_path": "3903_c14_0007.jpg", "id": 3903, "split": "train|val|test", "captions": [...]}.
See pedes.py for what raybench reads.
"""

from __future__ import annotations

from pathlib import Path

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.pedes import CaptionJson

LAYOUT = "RSTPReid/{imgs/3903_c14_0007.jpg, data_captions.json (img_path, id, captions, split)}"
PACKAGE = CaptionJson(dataset="rstpreid", names=("RSTPReid",), annotations=("data_captions.json",),
                      path_key="img_path", layout=LAYOUT)
PUBLISHED = Published({"gallery": {"images": 1000, "ids": 200},
                       "captions": {"captions": 2000, "ids": 200, "images": 1000}},
                      source="Zhu et al. ACM MM 2021 (DSSL); IRRA (CVPR 2023)", options={"subset": "test"})


def tiny_copy(folder: Path, subset: str = "test") -> TinyCopy:
    entries = [("0000_c5_0015.jpg", 0, "train", ["a man", "a man in black"]),
               ("3701_c14_0007.jpg", 3701, "val", ["a woman in red", "red coat"]),
               ("3901_c1_0011.jpg", 3901, "test", ["a man in a white shirt", "white shirt, jeans"]),
               ("3901_c7_0030.jpg", 3901, "test", ["white shirt", "jeans and a white shirt"]),
               ("3902_c3_0002.jpg", 3902, "test", ["a girl with a pink umbrella", "pink umbrella"])]
    PACKAGE.write_copy(folder, entries)
    test = subset == "test"  # three test images of two ids; one val image
    splits = {"train": (0, 0, 0), "query": (0, 0, 0), "gallery": (3, 2, 3) if test else (1, 1, 1)}
    row = {("gallery", "3901_c7_0030.jpg"): (3901, 1)} if test else {("gallery", "3701_c14_0007.jpg"): (3701, 0)}
    return TinyCopy(folder, {"subset": subset}, splits=splits, rows=row)


def tiny_copy_val(folder: Path) -> TinyCopy:
    return tiny_copy(folder, "val")


ADAPTER = Adapter(parse=PACKAGE.parse, layout=LAYOUT, captions=PACKAGE.captions, published=(PUBLISHED,),
                  tiny_copies=(tiny_copy, tiny_copy_val))
