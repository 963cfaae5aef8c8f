"""CUHK-PEDES: person search with natural language description.

Reference: Li et al. Person Search with Natural Language Description. CVPR 2017.
URL: https://github.com/ShuangLI59/Person-Search-with-Natural-Language-Description
(the dataset is released by its authors on request, for non-commercial research).

Published statistics (``PUBLISHED``: the test split, as IRRA, CVPR 2023, reports it):
13,003 identities, 40,206 images, 80,440 captions (about two per image; a few images have
more than two, so captions are not exactly twice the images).

Layout: CUHK-PEDES/{imgs/<source>/<image>, reid_raw.json}; reid_raw.json is a list of
{"file_path": "CUHK01/0363004.png", "id": 1, "split": "train|val|test", "captions": [...],
"processed_tokens": [...]} with file_path relative to imgs/. The JSON's id is the pid (IRRA
scores with it; it shifts train ids only, to start at 0). See pedes.py for what raybench
reads: the test (or val) images as the gallery, their captions as the text queries.
"""

from __future__ import annotations

from pathlib import Path

from raybench.datasets import Adapter, Published, TinyCopy
from raybench.datasets.pedes import CaptionJson

LAYOUT = "CUHK-PEDES/{imgs/CUHK01/0363004.png, reid_raw.json (file_path, id, captions, split)}"
PACKAGE = CaptionJson(dataset="cuhkpedes", names=("CUHK-PEDES",), annotations=("reid_raw.json",),
                      path_key="file_path", layout=LAYOUT)
PUBLISHED = Published({"gallery": {"images": 3074, "ids": 1000},
                       "captions": {"captions": 6156, "ids": 1000, "images": 3074}},
                      source="Li et al. CVPR 2017; test split as IRRA (Jiang and Ye, CVPR 2023) reports it",
                      options={"subset": "test"})

# (path, id, split, captions) of a tiny copy: ids from 1, a val split, an image with three
# captions, an identity with one image; train and val images must not be read.
TINY_ENTRIES = [
    ("CUHK01/0001001.png", 1, "train", ["a man in a black coat", "black coat, grey trousers"]),
    ("CUHK03/2_10_1.jpg", 7, "val", ["a girl in a red dress", "red dress"]),
    ("CUHK01/0005001.png", 5, "test", ["a woman with a blue bag", "blue bag, white shirt"]),
    ("Market/0005_c2s1_000101_01.jpg", 5, "test", ["she wears a white shirt", "white shirt", "blue shoulder bag"]),
    ("test_query/p6_s1.jpg", 6, "test", ["a boy in green shorts", "green shorts and sandals"]),
]


def tiny_copy(folder: Path) -> TinyCopy:
    PACKAGE.write_copy(folder, TINY_ENTRIES)
    return TinyCopy(folder, splits={"train": (0, 0, 0), "query": (0, 0, 0), "gallery": (3, 2, 3)},
                    rows={("gallery", "p6_s1.jpg"): (6, 2)})


ADAPTER = Adapter(parse=PACKAGE.parse, layout=LAYOUT, captions=PACKAGE.captions, published=(PUBLISHED,),
                  tiny_copies=(tiny_copy,))
