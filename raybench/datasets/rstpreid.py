"""RSTPReid: real scenarios text-based person re-identification, built on MSMT17.

Reference: Zhu et al. DSSL: Deep Surroundings-person Separation Learning for Text-based
Person Retrieval. ACM MM 2021 (arXiv:2109.05534).
URL: https://github.com/NjtechCVLab/RSTPReid-Dataset (download link and terms there; its
images are MSMT17's, so MSMT17's research-only terms apply too).

Published statistics: 4,101 identities, 20,505 images (5 per identity, from 15 cameras),
2 captions per image. Train 3,701 ids / 18,505 images; val 200 ids / 1,000 images; test
200 ids / 1,000 images / 2,000 captions (DSSL; IRRA).

Layout: RSTPReid/{imgs/<image>.jpg, data_captions.json}; the JSON is a list of
{"img_path": "3903_c14_0007.jpg", "id": 3903, "split": "train|val|test", "captions": [...]}.
See pedes.py for what raybench reads.
"""

from __future__ import annotations

from raybench.datasets import Adapter
from raybench.datasets.pedes import CaptionJson

LAYOUT = "RSTPReid/{imgs/3903_c14_0007.jpg, data_captions.json (img_path, id, captions, split)}"
PACKAGE = CaptionJson(dataset="rstpreid", names=("RSTPReid",), annotations=("data_captions.json",),
                      path_key="img_path", layout=LAYOUT)

ADAPTER = Adapter(parse=PACKAGE.parse, layout=LAYOUT, captions=PACKAGE.captions)
