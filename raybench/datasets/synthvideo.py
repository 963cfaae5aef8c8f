"""Synthetic video ReID in MARS's layout: drawn people walking through short tracklets.

No download, no licence: the catalog entry synth-video is generated into the cache on first use
(datasets/cache.py) and parsed by the MARS adapter (mars.py), so a video run offline exercises
the same parser, manifest and pooling as MARS itself. The people are synthetic.py's (the same
identities, cameras and domains, drawn by synthdraw.py); a tracklet is one person in one camera
over ``min_frames``..``max_frames`` consecutive frames, whose pose moves from frame to frame
(synthdraw.walk_params: a sideways drift, slow changes of scale, arm swing and stride, the
background sliding behind).

The split follows MARS: identities are split (seeded) into train and test; each person is seen
by 2..C cameras and has ``tracklets_per_id`` tracklets, spread over them; for a test person,
the first tracklet in each of up to ``tracklets_per_id // 2`` of its cameras is a query, the rest
gallery tracklets. ``distractors`` adds gallery tracklets of people seen once (pid 0), ``junk``
background-only tracklets (pid -1, dropped by the parser as MARS's junk is). synth.json beside
mars/ holds the parameters.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from raybench.datasets import Adapter, TinyCopy, synthetic
from raybench.datasets.mars import frame_name, write_info
from raybench.datasets.synthetic import check_config, render_people

LAYOUT = "mars/{bbox_train,bbox_test}/0001/0001C1T0001F001.jpg + mars/info/ + synth.json"
#: Bump whenever the drawing changes what a seed produces (part of the cache folder's name).
DRAW_VERSION = 1
#: Frames rendered at a time (bounds the memory of one draw).
CHUNK = 256
WHAT = "synthetic video dataset"


@dataclass(frozen=True)
class VideoConfig:
    ids: int = 24
    cams: int = 4
    tracklets_per_id: int = 4
    min_frames: int = 4
    max_frames: int = 12
    domain: str = "a"
    seed: int = 0
    distractors: int = 0
    junk: int = 0
    height: int = 128
    width: int = 64
    train_fraction: float = 0.5

    def __post_init__(self):
        check_config(WHAT, self, [
            (2 <= self.cams <= 6, "cams must be 2..6 (MARS naming)"),
            (self.tracklets_per_id >= 2, "tracklets_per_id must be at least 2 (queries need gallery matches)"),
            (1 <= self.min_frames <= self.max_frames <= 999, "need 1 <= min_frames <= max_frames <= 999")])


@dataclass(frozen=True)
class Planned:
    """One tracklet to draw: who (identity key; 0 for junk), pid, 0-based camera, side (train or
    test), its number among its pid's tracklets, its frame count, and whether it is a query."""

    key: int
    pid: int
    cam: int
    side: str
    number: int
    frames: int
    query: bool = False


def plan(cfg: VideoConfig) -> list[Planned]:
    """Every tracklet of the dataset, in the order they are written (module docstring)."""
    from raybench.datasets.synthdraw import DOMAINS

    code = DOMAINS[cfg.domain].code
    pids = np.arange(1, cfg.ids + 1)
    test = set(np.random.default_rng([cfg.seed, code, 15]).permutation(pids)[round(cfg.ids * cfg.train_fraction):])
    out = []
    for pid in pids.tolist():
        rng = np.random.default_rng([cfg.seed, code, 16, pid])
        seen_by = rng.permutation(cfg.cams)[: rng.integers(2, cfg.cams + 1)]
        cams = seen_by[np.arange(cfg.tracklets_per_id) % len(seen_by)].tolist()
        query_cams = set(seen_by[: cfg.tracklets_per_id // 2].tolist()) if pid in test else set()
        lengths = rng.integers(cfg.min_frames, cfg.max_frames + 1, cfg.tracklets_per_id).tolist()
        for number, (cam, length) in enumerate(zip(cams, lengths), 1):
            query = cam in query_cams
            query_cams.discard(cam)  # one query per camera: the camera's first tracklet
            out.append(Planned(pid, pid, cam, "test" if pid in test else "train", number, length, query))
    rng = np.random.default_rng([cfg.seed, code, 17])
    for j in range(cfg.distractors + cfg.junk):
        distractor = j < cfg.distractors
        out.append(Planned(1_000_000 + j, 0 if distractor else -1, int(rng.integers(cfg.cams)), "test",
                           j + 1 if distractor else j - cfg.distractors + 1,
                           int(rng.integers(cfg.min_frames, cfg.max_frames + 1))))
    return out


def write_dataset(cfg: VideoConfig, out: Path) -> dict:
    """Render and write the dataset into ``out`` (an existing, empty folder): out/mars/..."""
    from PIL import Image

    from raybench.datasets import synthdraw as draw

    domain = draw.DOMAINS[cfg.domain]
    tracklets = plan(cfg)
    base = out / "mars"
    frames = []  # (path, identity key, camera, pose, shows a person)
    names: dict[str, list[list[str]]] = {"train": [], "test": []}
    for index, t in enumerate(tracklets):
        walk = draw.walk_params(cfg.seed, domain, 2_000_000 + index, t.frames)
        names[t.side].append([frame_name(t.pid, t.cam + 1, t.number, f + 1) for f in range(t.frames)])
        folder = base / f"bbox_{t.side}" / names[t.side][-1][0][:4]
        folder.mkdir(parents=True, exist_ok=True)
        for f, name in enumerate(names[t.side][-1]):
            frames.append((folder / name, t.key, t.cam, {k: v[f] for k, v in walk.items()}, t.pid >= 0))
    quality = {cam: int(draw.camera_params(cfg.seed, domain, cam)["quality"]) for cam in range(cfg.cams)}
    for i in range(0, len(frames), CHUNK):
        chunk = frames[i:i + CHUNK]
        images = render_people(cfg, np.array([c[1] for c in chunk]), np.array([c[2] for c in chunk]),
                               [c[3] for c in chunk], np.array([c[4] for c in chunk]))
        for (path, _, cam, _, _), image in zip(chunk, images):
            Image.fromarray(image).save(path, quality=quality[cam])
    test = [t for t in tracklets if t.side == "test"]
    write_info(base, names["train"], names["test"], [i for i, t in enumerate(test) if t.query])
    summary = {"params": dataclasses.asdict(cfg), "draw_version": DRAW_VERSION, "frames": len(frames),
               "tracklets": {"train": len(names["train"]), "query": sum(t.query for t in test),
                             "gallery": sum(not t.query and t.pid >= 0 for t in test)}}
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def config(params: dict) -> VideoConfig:
    return synthetic.config(params, VideoConfig, WHAT)


def materialize(spec) -> Path:
    """The cache folder of a catalog entry such as synth-video, generated on first use."""
    return synthetic.cached(spec, config(dict(spec.options)), {"draw_version": DRAW_VERSION}, write_dataset)


def parse(root: Path, **params) -> pa.Table:
    """A generated copy (MARS's parser); with ``params``, synth.json must agree with them."""
    from raybench.datasets.mars import parse as parse_mars

    if params:
        synthetic.check_written(Path(root), config(params), WHAT)
    return parse_mars(root)


def tiny_copy(folder: Path) -> TinyCopy:
    """A small generated copy (its counts are the generator's, not fixed here)."""
    from raybench.datasets.cache import build_once

    params = {"ids": 4, "cams": 3, "tracklets_per_id": 3, "min_frames": 1, "max_frames": 3, "seed": 2,
              "distractors": 1, "junk": 1, "height": 32, "width": 16}
    root = build_once(folder / "synth-video", lambda tmp: write_dataset(config(params), tmp))
    return TinyCopy(root, params)


ADAPTER = Adapter(parse=parse, layout=LAYOUT, synthesize=materialize, tiny_copies=(tiny_copy,))
