"""Procedural person crops, drawn with numpy for whole batches at once.

What makes two crops the same person is the identity: clothing colours from the domain's
palette (colours repeat across people, as black coats do), a pattern on the upper body,
sleeve and lower-garment type, body proportions, hair, and accessories (backpack, hat,
handbag, scarf). What makes two crops of a person differ is the camera: background,
illumination gain and colour cast, scale, the side people face (pose flip), blur, partial
occlusion and sensor noise, plus per-image jitter of position, stance and arm swing. A
domain fixes the ranges all of these are drawn from, so two domains differ the way two
camera networks do (outdoor daylight vs indoor artificial light).

Clothes changes: an outfit (``outfit_params``) is what a person can change, the garments,
their colours and pattern, shoes and accessories; body proportions, skin and hair stay. A
person's outfit 0 is the one ``identity_params`` drew; ``dressed`` puts a person in any outfit.

Every draw comes from a generator seeded by (seed, domain, what, key), never from a shared
stream, so an image is the same whichever process draws it and in whichever batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Domain:
    """Ranges that one camera network draws its cameras and people from."""

    name: str
    code: int  # part of every seed, so the two domains hold different people
    clothing: tuple[tuple[int, int, int], ...]  # garment palette; earlier colours more frequent
    walls: tuple[tuple[int, int, int], ...]
    grounds: tuple[tuple[int, int, int], ...]
    gain: tuple[float, float]  # camera illumination gain
    cast: float  # largest per-channel colour cast of a camera
    blur: tuple[float, float]  # Gaussian sigma in pixels, per camera
    scale: tuple[float, float]  # person height / crop height, per camera
    occlusion: tuple[float, float]  # probability that an occluder covers part of a crop
    noise: tuple[float, float]  # sensor noise sigma (0-255 scale)
    accessories: float  # probability of each accessory
    quality: tuple[int, int]  # JPEG quality, per camera


DOMAINS = {
    "a": Domain(
        name="a", code=1,
        clothing=((30, 30, 35), (235, 235, 230), (40, 60, 120), (120, 120, 125), (180, 40, 40),
                  (60, 120, 60), (230, 200, 60), (200, 120, 160), (90, 160, 210), (150, 100, 60),
                  (240, 140, 50), (110, 60, 140)),
        walls=((158, 160, 152), (146, 148, 140), (170, 172, 164), (152, 156, 146)),
        grounds=((112, 112, 106), (122, 120, 112), (104, 106, 100)),
        gain=(0.95, 1.08), cast=0.03, blur=(0.0, 0.7), scale=(0.86, 0.96),
        occlusion=(0.0, 0.15), noise=(1.5, 4.0), accessories=0.35, quality=(88, 96),
    ),
    "b": Domain(
        name="b", code=2,
        clothing=((25, 25, 30), (200, 200, 195), (35, 40, 75), (110, 30, 40), (95, 75, 60), (70, 100, 150),
                  (45, 70, 55), (190, 160, 60), (60, 60, 70), (130, 70, 110), (140, 140, 145), (170, 130, 90)),
        walls=((166, 160, 146), (154, 148, 135), (176, 170, 156), (160, 155, 142)),
        grounds=((130, 125, 115), (120, 116, 108), (140, 134, 122)),
        gain=(0.72, 0.85), cast=0.03, blur=(0.4, 1.1), scale=(0.8, 0.93),
        occlusion=(0.05, 0.2), noise=(3.0, 6.0), accessories=0.5, quality=(70, 85),
    ),
}


def _rng(seed: int, domain: Domain, what: int, key: int) -> np.random.Generator:
    return np.random.default_rng([seed, domain.code, what, key])


def _pick(rng, palette, size=None, jitter=14.0):
    """Colours from a palette (earlier entries more frequent), with a little jitter."""
    weights = 1.0 / (1.0 + np.arange(len(palette)) * 0.25)
    index = rng.choice(len(palette), size=size, p=weights / weights.sum())
    colour = np.asarray(palette, np.float32)[index]
    return np.clip(colour + rng.normal(0, jitter, np.shape(colour)), 0, 255)


def identity_params(seed: int, domain: Domain, key: int) -> dict:
    """Who the person is: the same in every camera."""
    rng = _rng(seed, domain, 1, key)
    upper, lower = _pick(rng, domain.clothing), _pick(rng, domain.clothing)
    acc = rng.random(4) < domain.accessories
    return {
        "height": rng.uniform(0.92, 1.04), "head": rng.uniform(0.062, 0.078),
        "shoulder": rng.uniform(0.27, 0.36), "torso": rng.uniform(0.29, 0.35), "leg": rng.uniform(0.095, 0.12),
        "skin": np.array([225, 190, 160], np.float32) * rng.uniform(0.45, 1.0),
        "hair": _pick(rng, ((20, 15, 10), (60, 40, 25), (110, 80, 50), (180, 150, 100), (90, 90, 90))),
        "long_hair": rng.random() < 0.35,
        "upper": upper, "second": _pick(rng, domain.clothing), "pattern": rng.integers(0, 5),
        "period": rng.integers(3, 8), "long_sleeves": rng.random() < 0.6,
        "lower": lower, "lower_type": rng.choice(3, p=[0.65, 0.15, 0.2]), "shoes": _pick(rng, domain.clothing[:4]),
        "backpack": acc[0], "hat": acc[1], "handbag": acc[2], "scarf": acc[3],
        "acc_colour": _pick(rng, domain.clothing, size=4),
    }


def outfit_params(seed: int, domain: Domain, key: int, outfit: int) -> dict:
    """Outfit ``outfit`` (>= 1) of a person: garments and accessories drawn as identity_params
    draws them, from a stream of the person's own (what 5, key, outfit)."""
    rng = np.random.default_rng([seed, domain.code, 5, key, outfit])
    acc = rng.random(4) < domain.accessories
    return {
        "upper": _pick(rng, domain.clothing), "second": _pick(rng, domain.clothing), "pattern": rng.integers(0, 5),
        "period": rng.integers(3, 8), "long_sleeves": rng.random() < 0.6,
        "lower": _pick(rng, domain.clothing), "lower_type": rng.choice(3, p=[0.65, 0.15, 0.2]),
        "shoes": _pick(rng, domain.clothing[:4]),
        "backpack": acc[0], "hat": acc[1], "handbag": acc[2], "scarf": acc[3],
        "acc_colour": _pick(rng, domain.clothing, size=4),
    }


def dressed(seed: int, domain: Domain, key: int, outfit: int = 0) -> dict:
    """A person (identity_params) in their outfit ``outfit``: 0 is the one they were drawn in."""
    person = identity_params(seed, domain, key)
    return person if outfit == 0 else {**person, **outfit_params(seed, domain, key, outfit)}


def camera_params(seed: int, domain: Domain, cam: int) -> dict:
    """What a camera does to everyone it sees."""
    rng = _rng(seed, domain, 2, cam)
    return {
        "wall": _pick(rng, domain.walls, jitter=6), "ground": _pick(rng, domain.grounds, jitter=6),
        "horizon": rng.uniform(0.5, 0.8), "texture": rng.integers(0, 3), "contrast": rng.uniform(0.03, 0.12),
        "tex_period": rng.uniform(5, 16), "pole": rng.random() < 0.5, "pole_x": rng.uniform(0.05, 0.95),
        "pole_colour": _pick(rng, domain.grounds, jitter=30),
        "gain": rng.uniform(*domain.gain), "cast": 1 + rng.uniform(-domain.cast, domain.cast, 3),
        "gamma": rng.uniform(0.93, 1.07), "blur": rng.uniform(*domain.blur),
        "scale": rng.uniform(*domain.scale), "face_right": rng.uniform(0.15, 0.85),
        "occlusion": rng.uniform(*domain.occlusion), "noise": rng.uniform(*domain.noise),
        "occluder": _pick(rng, domain.walls + domain.grounds, jitter=25),
        "quality": rng.integers(domain.quality[0], domain.quality[1] + 1),
    }


def pose_params(seed: int, domain: Domain, key: int, count: int) -> dict:
    """Per-image jitter for the ``count`` images of one identity (drawn all at once, so an
    image's jitter does not depend on which batch renders it)."""
    rng = _rng(seed, domain, 3, key)
    return {
        "u_dir": rng.random(count), "scale": rng.normal(1, 0.035, count), "dx": rng.normal(0, 2.5, count),
        "dy": rng.normal(0, 2.0, count), "stance": rng.uniform(0, 0.07, count), "swing": rng.normal(0, 0.025, count),
        "light": rng.normal(1, 0.06, count), "u_occ": rng.random(count), "occ_kind": rng.integers(0, 2, count),
        "occ_size": rng.uniform(0.2, 0.45, count), "occ_side": rng.integers(0, 2, count),
        "bg_shift": rng.uniform(0, 50, count), "noise_tile": rng.integers(0, 1 << 30, count),
    }


def walk_params(seed: int, domain: Domain, key: int, frames: int) -> dict:
    """Per-frame poses of one tracklet (``key``): a person walking through a camera's view, as
    a video ReID tracker crops them. One ``pose_params`` draw sets the tracklet's look (which way
    they face, occlusion, light); from frame to frame the person drifts sideways and a little up
    or down, grows or shrinks slowly (walking towards or away from the camera), swings the arms
    and opens and closes the stride on a walking cycle, and the background slides behind them.
    Every value is a [frames] array, seeded by (seed, domain, key) alone."""
    start = pose_params(seed, domain, key, 1)
    rng = _rng(seed, domain, 5, key)
    t = np.arange(frames, dtype=np.float64)
    cycle = 2 * np.pi * t / rng.uniform(6.0, 12.0) + rng.uniform(0, 2 * np.pi)
    step = rng.normal(0, 0.5)  # pixels per frame, sideways
    out = {k: np.repeat(v, frames) for k, v in start.items()}
    out["dx"] = np.clip(start["dx"] + step * t + rng.normal(0, 0.4, frames), -6, 6)
    out["dy"] = start["dy"] + rng.normal(0, 0.3, frames)
    out["scale"] = start["scale"] * (1 + rng.normal(0, 0.003) * t)
    out["swing"] = 0.035 * np.sin(cycle)
    out["stance"] = 0.035 * (1 + np.sin(cycle))
    out["bg_shift"] = np.clip(start["bg_shift"] - 2 * step * t, 0, SHIFT)
    out["noise_tile"] = rng.integers(0, 1 << 30, frames)
    return out


class Canvas:
    """A batch of N label maps [N, H, W]: each pixel names the layer (a flat colour per image)
    painted there last; 0 is the background. Painting labels instead of colours keeps every
    full-size operation on one byte per pixel; colours are gathered once at the end."""

    def __init__(self, n: int, height: int, width: int):
        self.n, self.h, self.w = n, height, width
        self.y = np.arange(height, dtype=np.float32)[None, :, None]
        self.x = np.arange(width, dtype=np.float32)[None, None, :]
        self.labels = np.zeros((n, height, width), np.uint8)
        self.colours = [np.zeros((n, 3), np.float32)]

    @staticmethod
    def col(values) -> np.ndarray:
        """A per-image scalar as [N, 1, 1] for broadcasting against pixel grids."""
        return np.asarray(values, np.float32).reshape(-1, 1, 1)

    def rect(self, x0, x1, y0, y1) -> np.ndarray:
        c = self.col
        return ((self.x >= c(x0)) & (self.x < c(x1))) & ((self.y >= c(y0)) & (self.y < c(y1)))

    def ellipse(self, cx, cy, rx, ry) -> np.ndarray:
        c = self.col
        return ((self.x - c(cx)) / c(rx)) ** 2 + ((self.y - c(cy)) / c(ry)) ** 2 <= 1

    def paint(self, mask: np.ndarray, colour, where=None) -> None:
        """A new layer of ``colour`` ([N, 3]) where ``mask`` and the per-image flag ``where`` hold."""
        if where is not None and not np.all(where):
            mask = mask & self.col(where).astype(bool)
        self.colours.append(np.asarray(colour, np.float32).reshape(self.n, 3))
        np.copyto(self.labels, len(self.colours) - 1, where=mask)

    def compose(self, background: np.ndarray) -> np.ndarray:
        layers = len(self.colours)
        palette = np.stack(self.colours, axis=1).reshape(-1, 3)  # [N * layers, 3]
        index = self.labels + (np.arange(self.n, dtype=np.int32) * layers)[:, None, None]
        image = np.take(palette, index, axis=0)
        np.copyto(image, background, where=(self.labels == 0)[..., None])
        return image


def stack(dicts: list[dict]) -> dict:
    return {k: np.stack([np.asarray(d[k]) for d in dicts]) for k in dicts[0]}


def render(ident: dict, cameras: list[dict], cam_index: np.ndarray, pose: dict, height: int, width: int,
           person: np.ndarray, noise_bank: np.ndarray) -> np.ndarray:
    """Draw N crops. ``ident`` and ``pose`` are dicts of per-image arrays, ``cameras`` the
    distinct cameras' params and ``cam_index`` each image's camera among them; ``person``
    says which crops show a person (junk crops are background only). uint8 [N, H, W, 3]."""
    cam = stack(cameras)
    per_image = {k: v[cam_index] for k, v in cam.items()}
    cv = Canvas(len(person), height, width)
    _person(cv, ident, per_image, pose, person)
    _occluder(cv, per_image, pose)
    image = cv.compose(_background(cameras, cam_index, pose, height, width))
    return _camera_effects(image, cam, cam_index, pose, noise_bank)


SHIFT = 64  # the background is drawn wider and each crop sees a window of it


def _background(cameras: list[dict], cam_index: np.ndarray, pose: dict, height: int, width: int) -> np.ndarray:
    """Each camera's static scene (wall texture, ground, maybe a pole), cut at a per-image offset."""
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width + SHIFT, dtype=np.float32)[None, :]
    scenes = []
    for cam in cameras:
        period = cam["tex_period"]
        textures = (
            np.sin(2 * np.pi * x / (period * 2.5)) + 0 * y,
            np.sign(np.sin(2 * np.pi * y / period)) * np.sign(np.sin(2 * np.pi * (x + (y // period) * 4) / (3 * period))),
            np.sin(x * 1.7 + y * 0.9) * np.sin(x * 0.35 - y * 1.3),
        )
        wall = cam["wall"] * (1 + cam["contrast"] * textures[int(cam["texture"])])[..., None]
        depth = np.clip((y - cam["horizon"] * height) / height, 0, 1)
        ground = cam["ground"] * (0.85 + 0.3 * depth + 0 * x)[..., None]
        scene = np.where((y < cam["horizon"] * height)[..., None], wall, ground)
        if cam["pole"]:
            scene[:, np.abs(x[0] - cam["pole_x"] * (width + SHIFT)) < 2.5] = cam["pole_colour"]
        scenes.append(scene.astype(np.float32))
    shift = np.clip(pose["bg_shift"], 0, SHIFT).astype(np.int64)
    out = np.empty((len(cam_index), height, width, 3), np.float32)
    for i, (c, s) in enumerate(zip(cam_index.tolist(), shift.tolist())):
        out[i] = scenes[c][:, s:s + width]
    return out


def _person(cv: Canvas, ident: dict, cam: dict, pose: dict, person: np.ndarray) -> None:
    c = cv.col
    body = cam["scale"] * ident["height"] * pose["scale"] * cv.h  # person height in pixels
    feet = cv.h * 0.97 + pose["dy"]
    top = feet - body
    cx = cv.w / 2 + pose["dx"]
    side = np.where(pose["u_dir"] < cam["face_right"], 1.0, -1.0)  # pose flip: which way they face
    head_r = ident["head"] * body
    shoulder_y = top + 2.1 * head_r
    hip_y = shoulder_y + ident["torso"] * body
    half = ident["shoulder"] * body / 2
    leg_w = ident["leg"] * body
    gap = pose["stance"] * body
    knee_y = hip_y + 0.5 * (feet - hip_y)
    shoe_y = feet - 0.035 * body
    acc = ident["acc_colour"]

    # behind the body: long hair, backpack (seen at the side people turn away from)
    cv.paint(cv.rect(cx - head_r, cx + head_r, top + head_r, shoulder_y + 0.08 * body), ident["hair"],
             where=person & ident["long_hair"])
    pack_x = cx - side * half * 0.75
    cv.paint(cv.rect(np.minimum(pack_x, pack_x - side * half * 0.55), np.maximum(pack_x, pack_x - side * half * 0.55),
                     shoulder_y + 0.02 * body, shoulder_y + 0.24 * body), acc[:, 0], where=person & ident["backpack"])
    # legs, then shorts (skin below the knee) or a skirt, then shoes
    legs = (cv.rect(cx - gap / 2 - leg_w, cx - gap / 2, hip_y, feet) | cv.rect(cx + gap / 2, cx + gap / 2 + leg_w, hip_y, feet))
    cv.paint(legs, ident["lower"], where=person)
    cv.paint(legs & (cv.y >= c(knee_y)), ident["skin"], where=person & (ident["lower_type"] == 1))
    flare = (cv.y - c(hip_y)) / c(knee_y - hip_y) * c(half * 0.5)
    skirt = (np.abs(cv.x - c(cx)) < c(half * 0.8) + flare) & (cv.y >= c(hip_y)) & (cv.y < c(knee_y + 0.05 * body))
    cv.paint(skirt, ident["lower"], where=person & (ident["lower_type"] == 2))
    cv.paint(legs & (cv.y >= c(shoe_y)), ident["shoes"], where=person)
    # torso with its pattern, arms, hands, a handbag
    taper = c(half) * (1 - 0.15 * np.clip((cv.y - c(shoulder_y)) / c(hip_y - shoulder_y), 0, 1))
    torso = (np.abs(cv.x - c(cx)) < taper) & ((cv.y >= c(shoulder_y)) & (cv.y < c(hip_y)))
    cv.paint(torso, ident["upper"], where=person)
    cv.paint(torso & _pattern(cv, ident, cx, shoulder_y, half, side), ident["second"], where=person)
    arm_w = 0.065 * body
    hand_y = shoulder_y + 0.36 * body
    sleeve_end = np.where(ident["long_sleeves"], hand_y - 0.04 * body, shoulder_y + 0.12 * body)
    for sign in (-1.0, 1.0):
        x0 = cx + sign * half + min(0.0, sign) * arm_w + sign * pose["swing"] * body
        cv.paint(cv.rect(x0, x0 + arm_w, shoulder_y + 0.01 * body, hand_y), ident["skin"], where=person)
        cv.paint(cv.rect(x0, x0 + arm_w, shoulder_y + 0.01 * body, sleeve_end), ident["upper"], where=person)
    bag_x = cx + side * (half + arm_w)
    cv.paint(cv.rect(bag_x - 0.06 * body, bag_x + 0.06 * body, hand_y - 0.02 * body, hand_y + 0.1 * body),
             acc[:, 1], where=person & ident["handbag"])
    # neck, scarf, head, hair, hat
    cv.paint(cv.rect(cx - 0.4 * head_r, cx + 0.4 * head_r, top + 1.6 * head_r, shoulder_y + 1), ident["skin"], where=person)
    cv.paint(cv.rect(cx - half * 0.6, cx + half * 0.6, shoulder_y - 0.2 * head_r, shoulder_y + 0.05 * body),
             acc[:, 2], where=person & ident["scarf"])
    head = cv.ellipse(cx + side * 0.1 * head_r, top + head_r, 0.82 * head_r, head_r)
    cv.paint(head, ident["skin"], where=person)
    cv.paint(head & (cv.y < c(top + head_r * 0.75)), ident["hair"], where=person)
    cv.paint(cv.rect(cx - 1.05 * head_r, cx + 1.05 * head_r, top - 0.25 * head_r, top + 0.55 * head_r),
             acc[:, 3], where=person & ident["hat"])


def _pattern(cv: Canvas, ident: dict, cx, shoulder_y, half, side) -> np.ndarray:
    """Where the secondary colour shows on the torso: 0 plain, 1 horizontal stripes,
    2 vertical stripes, 3 checks, 4 a logo on the chest (off-centre, on the facing side)."""
    c = cv.col
    period = c(ident["period"])
    kind = c(ident["pattern"])
    rows = np.floor((cv.y - c(shoulder_y)) / period) % 2 == 1  # [N, H, 1]
    cols = np.floor((cv.x - c(cx)) / period) % 2 == 1  # [N, 1, W]
    logo = cv.rect(cx + side * half * 0.3 - half * 0.3, cx + side * half * 0.3 + half * 0.3,
                   shoulder_y + half * 0.4, shoulder_y + half)
    return ((kind == 1) & rows) | ((kind == 2) & cols) | ((kind == 3) & (rows ^ cols)) | ((kind == 4) & logo)


def _occluder(cv: Canvas, cam: dict, pose: dict) -> None:
    """A car, bench or passer-by in front: a block over the bottom or one side of the crop."""
    c = cv.col
    size = pose["occ_size"]
    bottom = np.broadcast_to(cv.y >= c(cv.h * (1 - size)), cv.labels.shape)
    side = np.broadcast_to(np.where(c(pose["occ_side"]) == 0, cv.x < c(cv.w * size), cv.x >= c(cv.w * (1 - size))),
                           cv.labels.shape)
    mask = np.where(c(pose["occ_kind"]) == 0, bottom, side)
    cv.paint(mask, cam["occluder"], where=pose["u_occ"] < cam["occlusion"])


def _camera_effects(image: np.ndarray, cam: dict, cam_index: np.ndarray, pose: dict, noise_bank: np.ndarray) -> np.ndarray:
    """Gamma, gain and colour cast (one lookup table per camera), blur, per-image light, noise."""
    from scipy.ndimage import gaussian_filter

    levels = np.arange(256, dtype=np.float32) / 255.0
    luts = np.clip(levels[None, None, :] ** cam["gamma"][:, None, None] * cam["gain"][:, None, None]
                   * cam["cast"][:, :, None] * 255.0, 0, 255).astype(np.float32)  # [cams, 3, 256]
    pixels = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    for c, sigma in enumerate(cam["blur"]):
        selected = np.flatnonzero(cam_index == c)
        for channel in range(3):
            image[selected, ..., channel] = np.take(luts[c, channel], pixels[selected, ..., channel])
        if sigma >= 0.3 and selected.size:
            image[selected] = gaussian_filter(image[selected], sigma=(0, sigma, sigma, 0), mode="nearest")
    n, h, w, _ = image.shape
    tiles = noise_bank[pose["noise_tile"] % len(noise_bank), :h, :w]
    image *= pose["light"].astype(np.float32)[:, None, None, None]
    image += tiles * cam["noise"][cam_index].astype(np.float32)[:, None, None, None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def noise_bank(seed: int, domain: Domain, height: int, width: int, tiles: int = 32) -> np.ndarray:
    """Unit-variance noise tiles shared by a dataset; each image picks one by its own draw."""
    return _rng(seed, domain, 4, 0).standard_normal((tiles, height, width, 3)).astype(np.float32)
