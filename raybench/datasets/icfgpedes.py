"""ICFG-PEDES: identity-centric fine-grained text-based person retrieval, built on MSMT17.

Reference: Ding et al. Semantically Self-Aligned Network for Text-to-Image Part-aware Person
Re-identification. arXiv:2107.12666 (2021).
URL: https://github.com/zifyloo/SSAN (obtained from the authors under the terms stated
there; its images are MSMT17's, so MSMT17's research-only terms apply too).

Published statistics: 4,102 identities, 54,522 images, one caption each. Train 3,102 ids /
34,674 images; test 1,000 ids / 19,848 images / 19,848 captions (SSAN; IRRA; IRRA's loader
docstring splits the test images as 4,855 + 14,993). There is no val split.

Layout: ICFG-PEDES/{imgs/{train,test}/<pid>/<image>, ICFG-PEDES.json}; the JSON is a list of
{"file_path": "test/0001/0001_....jpg", "id": 1, "split": "train|test", "captions": [...]}.
(IRRA reads ICFG-PEDES.json; its README spells it ICFG_PEDES.json: either is accepted.)
See pedes.py for what raybench reads.
"""

from __future__ import annotations

from raybench.datasets import Adapter
from raybench.datasets.pedes import CaptionJson

LAYOUT = "ICFG-PEDES/{imgs/test/0001/0001_....jpg, ICFG-PEDES.json (file_path, id, captions, split)}"
PACKAGE = CaptionJson(dataset="icfgpedes", names=("ICFG-PEDES",), annotations=("ICFG-PEDES.json", "ICFG_PEDES.json"),
                      path_key="file_path", layout=LAYOUT)

ADAPTER = Adapter(parse=PACKAGE.parse, layout=LAYOUT, captions=PACKAGE.captions)
