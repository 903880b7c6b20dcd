"""Visual inspection: normal textured parts and parts with small planted defects, generated from a seed.

A normal part is a grey ``size x size`` image of a knurled metal surface: two
crossed sinusoidal gratings (period 7.9–8.1 pixels, orientation jittered by up to 1 degree),
fine noise and a slow illumination gradient. An anomalous part is a normal
part with one defect at a random position away from the border:

* ``scratch``: a bright line 2 pixels wide, 28–44 pixels long, at a random angle;
* ``spot``: a dark stain (soft-edged ellipse, radii 4–7 pixels) the texture shows through;
* ``missing``: a missing piece, an irregular polygon (radius 8–12 pixels) where the
  surface is gone and the dark flat ground shows.

Every :class:`Part` carries the defect's mask (pixels the defect changed,
from the anti-aliased drawing), its kind, centre and size; the mask of a
normal part is empty. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

KINDS = ("scratch", "spot", "missing")
_SS = 4  # supersampling of the drawings


@dataclass
class Part:
    """One generated part.

    Attributes
    ----------
    image : ndarray (H, W) float64 in [0, 1]
    mask : ndarray (H, W) bool, the defect's pixels (all False for a normal part)
    kind : "normal", "scratch", "spot" or "missing"
    defect : dict
        ``{"center": [row, col], "size": float, "angle": float}`` (empty for a normal part).
    """

    image: np.ndarray
    mask: np.ndarray
    kind: str
    defect: dict = field(default_factory=dict)

    @property
    def anomalous(self) -> bool:
        return self.kind != "normal"


def render_surface(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A defect-free knurled surface, (size, size) float64 in [0, 1]."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    period = rng.uniform(7.9, 8.1)
    base_angle = np.deg2rad(45.0 + rng.uniform(-1, 1))
    img = np.full((size, size), rng.uniform(0.45, 0.55))
    for angle in (base_angle, base_angle + np.pi / 2):
        phase = rng.uniform(0, 2 * np.pi)
        img += 0.12 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    g = rng.normal(size=2) * 0.06 / size
    img += g[0] * (yy - size / 2) + g[1] * (xx - size / 2)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), 0.8)
    img += 0.03 * fine / (fine.std() + 1e-12)
    return np.clip(img, 0.0, 1.0)


def _draw(size: int, draw) -> np.ndarray:
    """Coverage in [0, 1] of a shape drawn (white on black) by ``draw(canvas, scale)`` at 4x."""
    canvas = np.zeros((size * _SS, size * _SS), np.uint8)
    draw(canvas, _SS)
    small = cv2.resize(canvas.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
    return small.astype(np.float64)


def _center(rng, size, margin):
    return rng.uniform(margin, size - margin, 2)


def _scratch(rng, img):
    size = img.shape[0]
    c = _center(rng, size, 24)
    length = rng.uniform(28, 44)
    angle = rng.uniform(0, np.pi)
    d = np.array([np.sin(angle), np.cos(angle)]) * length / 2
    p0, p1 = c - d, c + d

    def draw(canvas, s):
        pts = [(int(round(p[1] * s)), int(round(p[0] * s))) for p in (p0, p1)]
        cv2.line(canvas, pts[0], pts[1], 255, thickness=int(round(2.0 * s)), lineType=cv2.LINE_AA)

    cover = _draw(size, draw)
    out = img * (1 - cover) + cover * rng.uniform(0.9, 1.0)
    return out, cover, {"center": c.tolist(), "size": float(length), "angle": float(angle)}


def _spot(rng, img):
    size = img.shape[0]
    c = _center(rng, size, 14)
    radii = rng.uniform(4, 7, 2)
    angle = rng.uniform(0, 180)

    def draw(canvas, s):
        cv2.ellipse(
            canvas,
            (int(round(c[1] * s)), int(round(c[0] * s))),
            (int(round(radii[1] * s)), int(round(radii[0] * s))),
            angle,
            0,
            360,
            255,
            -1,
            lineType=cv2.LINE_AA,
        )

    cover = _draw(size, draw)
    soft = cv2.GaussianBlur(cover, (0, 0), 1.0)
    darkness = rng.uniform(0.65, 0.8)
    out = img * (1 - darkness * soft)
    return out, soft, {"center": c.tolist(), "size": float(radii.mean()), "angle": float(np.deg2rad(angle))}


def _missing(rng, img):
    size = img.shape[0]
    c = _center(rng, size, 16)
    n = int(rng.integers(5, 8))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(8, 12) * rng.uniform(0.7, 1.0, n)
    pts = np.column_stack([c[0] + r * np.sin(t), c[1] + r * np.cos(t)])

    def draw(canvas, s):
        poly = np.round(pts[:, ::-1] * s).astype(np.int32)
        cv2.fillPoly(canvas, [poly], 255, lineType=cv2.LINE_AA)

    cover = _draw(size, draw)
    ground = rng.uniform(0.05, 0.12)
    out = img * (1 - cover) + cover * ground
    return out, cover, {"center": c.tolist(), "size": float(r.mean()), "angle": 0.0}


_DEFECTS = {"scratch": _scratch, "spot": _spot, "missing": _missing}


def plant_defect(rng: np.random.Generator, image: np.ndarray, kind: str) -> Part:
    """A copy of ``image`` with one defect of ``kind``; mask = pixels covered at least a quarter."""
    if kind not in _DEFECTS:
        raise ValueError(f"unknown defect kind {kind!r}; use one of {KINDS}")
    out, cover, info = _DEFECTS[kind](rng, np.asarray(image, dtype=np.float64))
    return Part(np.clip(out, 0.0, 1.0), cover >= 0.25, kind, info)


def generate(seed: int, n_normal: int, n_anomalous: int = 0, size: int = 96, kinds=KINDS) -> list[Part]:
    """``n_normal`` normal parts, then ``n_anomalous`` defective ones (kinds in turn).

    Reproducible from ``seed``; the two groups use independent streams, so
    asking for more anomalies does not change the normal parts.
    """
    if size < 48:
        raise ValueError(f"parts need size >= 48 pixels, got {size}")
    for k in kinds:
        if k not in _DEFECTS:
            raise ValueError(f"unknown defect kind {k!r}; use one of {KINDS}")
    normal_seq, anomal_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(normal_seq)
    parts = [Part(render_surface(rng, size), np.zeros((size, size), bool), "normal") for _ in range(n_normal)]
    rng = np.random.default_rng(anomal_seq)
    for i in range(n_anomalous):
        parts.append(plant_defect(rng, render_surface(rng, size), kinds[i % len(kinds)]))
    return parts


def normal_patches(parts, nearest: bool = True):
    """A region-perturbation callable that repairs a block with normal surface.

    For :func:`bowlrp.evaluation.region_perturbation`: removing a region of a
    part means repairing it, so removing the defect first should lower the
    anomaly score fastest. With ``nearest`` the block is replaced by the
    most similar same-size crop (least squared difference, ``cv2.matchTemplate``)
    of the given normal parts, which keeps the grating in phase and changes
    normal blocks little; otherwise by a crop at a random position.
    ``parts``: normal :class:`Part` objects or images.
    """
    images = [np.ascontiguousarray(getattr(p, "image", p), dtype=np.float32) for p in parts]
    if not images:
        raise ValueError("normal_patches needs at least one normal part")

    def perturb(block, rng, original):
        h, w = block.shape[:2]
        if nearest:
            best = (np.inf, 0, 0, 0)
            templ = np.ascontiguousarray(block, dtype=np.float32)
            for i, src in enumerate(images):
                cost = cv2.matchTemplate(src, templ, cv2.TM_SQDIFF)
                r, c = np.unravel_index(int(np.argmin(cost)), cost.shape)
                if cost[r, c] < best[0]:
                    best = (float(cost[r, c]), i, int(r), int(c))
            _, i, r, c = best
        else:
            i = int(rng.integers(len(images)))
            r = int(rng.integers(images[i].shape[0] - h + 1))
            c = int(rng.integers(images[i].shape[1] - w + 1))
        return images[i][r : r + h, c : c + w].astype(np.float64).reshape(block.shape)

    return perturb


__all__ = ["KINDS", "Part", "generate", "normal_patches", "plant_defect", "render_surface"]
