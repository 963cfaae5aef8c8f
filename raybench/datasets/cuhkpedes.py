"""CUHK-PEDES: person search with natural language description.

Reference: Li et al. Person Search with Natural Language Description. CVPR 2017.
URL: https://github.com/ShuangLI59/Person-Search-with-Natural-Language-Description
(the dataset is released by its authors on request, for non-commercial research).

Published statistics: 13,003 identities, 40,206 images, 80,440 captions (about two per
image). Test split: 1,000 ids, 3,074 images, 6,156 captions (IRRA, CVPR 2023; a few
images have more than two captions, so captions are not exactly twice the images).

Layout: CUHK-PEDES/{imgs/<source>/<image>, reid_raw.json}; reid_raw.json is a list of
{"file_path": "CUHK01/0363004.png", "id": 1, "split": "train|val|test", "captions": [...],
"processed_tokens": [...]} with file_path relative to imgs/. The JSON's id is the pid (IRRA
scores with it; it shifts train ids only, to start at 0). See pedes.py for what raybench
reads: the test (or val) images as the gallery, their captions as the text queries.
"""

from __future__ import annotations

from raybench.datasets import Adapter
from raybench.datasets.pedes import CaptionJson

LAYOUT = "CUHK-PEDES/{imgs/CUHK01/0363004.png, reid_raw.json (file_path, id, captions, split)}"
PACKAGE = CaptionJson(dataset="cuhkpedes", names=("CUHK-PEDES",), annotations=("reid_raw.json",),
                      path_key="file_path", layout=LAYOUT)

ADAPTER = Adapter(parse=PACKAGE.parse, layout=LAYOUT, captions=PACKAGE.captions)
