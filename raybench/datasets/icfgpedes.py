"""ICFG-PEDES: identity-centric fine-grained text-based person retrieval, built on MSMT17.

Reference: Ding et al. Semantically Self-Aligned Network for Text-to-Image Part-aware Person
Re-identification. arXiv:2107.12666 (2021).
URL: https://github.com/zifyloo/SSAN (obtained from the authors under the terms stated
there; its images are MSMT17's, so MSMT17's research-only terms apply too).

Published statistics (``PUBLISHED``: the test split, per SSAN and IRRA; IRRA's loader
docstring splits the test images as 4,855 + 14,993): 4,102 identities, 54,522 images, one
caption each; train 3,102 ids / 34,674 images. There is no val split.

Layout: ICFG-PEDES/{imgs/{train,test}/<pid>/<image>, ICFG-PEDES.json}; the JSON is a list of
{"file_path": "test/0001/0001_....jpg", "id": 1, "split": "train|test", "captions": [...]}.
(IRRA reads ICFG-PEDES.json; its README spells it ICFG_PEDES.json: either is accepted.)
See pedes.py for what raybench reads.
"""

from __future__ import annotations

from pathlib import Path

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.pedes import CaptionJson

LAYOUT = "ICFG-PEDES/{imgs/test/0001/0001_....jpg, ICFG-PEDES.json (file_path, id, captions, split)}"
PACKAGE = CaptionJson(dataset="icfgpedes", names=("ICFG-PEDES",), annotations=("ICFG-PEDES.json", "ICFG_PEDES.json"),
                      path_key="file_path", layout=LAYOUT)
PUBLISHED = Published({"gallery": {"images": 19848, "ids": 1000},
                       "captions": {"captions": 19848, "ids": 1000, "images": 19848}},
                      source="Ding et al. arXiv:2107.12666 (SSAN); IRRA (CVPR 2023)", options={"subset": "test"})


def tiny_copy(folder: Path) -> TinyCopy:
    """The annotation under the spelling of IRRA's README (its loader reads ICFG-PEDES.json)."""
    entries = [("train/0001/0001_002_01_0303morning_0030_1.jpg", 1, "train", ["a man in a black coat"]),
               ("test/3103/3103_001_05_0303morning_0011_0.jpg", 3103, "test", ["a woman in a long beige coat"]),
               ("test/3103/3103_014_03_0303noon_0002_1.jpg", 3103, "test", ["beige coat and a black bag"]),
               ("test/3104/3104_007_01_0303afternoon_0135_0.jpg", 3104, "test", ["a man in a blue jacket"])]
    base = PACKAGE.write_copy(folder, entries, annotation="ICFG_PEDES.json")
    return TinyCopy(base, splits={"train": (0, 0, 0), "query": (0, 0, 0), "gallery": (3, 2, 3)},
                    rows={("gallery", "3104_007_01_0303afternoon_0135_0.jpg"): (3104, 2)})


ADAPTER = Adapter(parse=PACKAGE.parse, layout=LAYOUT, captions=PACKAGE.captions, published=(PUBLISHED,),
                  tiny_copies=(tiny_copy,))
