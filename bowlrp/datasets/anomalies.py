"""Generated anomaly kinds with defect masks, for choosing and checking anomaly detectors.

Every kind pairs normal images with anomalous ones of the same domain, each with
the defect's mask (pixels the defect changed, from an anti-aliased drawing at 4x,
covered at least a quarter), drawn from a seed:

* ``inspection``: knurled parts (:mod:`bowlrp.datasets.inspection`, 96 x 96) with a
  scratch, a spot or a missing piece (size ``"mixed"``: their own size ranges);
* on *natural-looking* backgrounds (160 x 160: 1/f noise, whose power spectrum
  falls like natural images', with a slow illumination gradient and soft blobs):

  - ``stamp``: a square patch of another texture (a grating, a checkerboard or
    fine noise), hard-edged, pasted at a random position;
  - ``shape``: a small geometric defect (a disc, a triangle, a ring or a cross)
    in a contrasting grey level;
  - ``crack``: a thin dark crack, a random walk with one branch
    (:data:`HELD_OUT`: kept out of every choice of the shipped ``anomaly`` config,
    used only for its final number).

Sizes (natural kinds): ``"small"`` and ``"large"``, the defect's area (stamp, shape)
or length (crack) scaled so that the mask covers about 2 % / 5 % of the image for
stamps and shapes (cracks are thin: about 0.5 % / 1 %). Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import inspection

NATURAL_KINDS = ("stamp", "shape", "crack")
KINDS = ("inspection", *NATURAL_KINDS)
SIZES = ("small", "large")
#: the kind held out from every choice of the shipped ``anomaly`` config
HELD_OUT = "crack"
NATURAL_SIZE = 160
_SS = 4
#: area share of the defect's square / shape for each size
_AREA = {"small": 0.02, "large": 0.05}
#: crack length as a fraction of the image side
_LENGTH = {"small": 0.45, "large": 0.9}


@dataclass
class Sample:
    """One generated image.

    Attributes
    ----------
    image : ndarray (H, W) float64 in [0, 1]
    mask : ndarray (H, W) bool, the defect's pixels (all False for a normal image)
    kind : "normal" or the anomaly kind
    size : the size name ("small", "large", "mixed"; "" for a normal image)
    """

    image: np.ndarray
    mask: np.ndarray
    kind: str
    size: str = ""

    @property
    def anomalous(self) -> bool:
        return self.kind != "normal"


def natural_background(rng: np.random.Generator, size: int = NATURAL_SIZE) -> np.ndarray:
    """A natural-looking grey image (size, size) float64 in [0, 1].

    1/f^beta noise (amplitude spectrum ``f^(-beta/2)``, beta in [1.8, 2.4]), scaled to a
    standard deviation of 0.08–0.14 around a mean of 0.4–0.6, plus a slow gradient and
    two to four soft blobs.
    """
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = 1.0
    beta = rng.uniform(1.8, 2.4)
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) * f ** (-beta / 2)
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(size, size))
    img = rng.uniform(0.4, 0.6) + noise / (noise.std() + 1e-12) * rng.uniform(0.08, 0.14)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    g = rng.normal(size=2) * 0.08
    img += g[0] * yy + g[1] * xx
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(-0.4, 0.4, 2)
        r = rng.uniform(0.08, 0.2)
        img += rng.uniform(-0.1, 0.1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(img, 0.0, 1.0)


def _cover(size: int, draw) -> np.ndarray:
    """Coverage in [0, 1] of a shape drawn (255 on 0) by ``draw(canvas, scale)`` at 4x."""
    canvas = np.zeros((size * _SS, size * _SS), np.uint8)
    draw(canvas, _SS)
    return cv2.resize(canvas.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA).astype(
        np.float64
    )


def _texture(rng, side: int) -> np.ndarray:
    """A (side, side) patch of another texture: grating, checkerboard or fine noise."""
    yy, xx = np.mgrid[:side, :side].astype(np.float64)
    choice = int(rng.integers(3))
    if choice == 0:
        period, angle = rng.uniform(3.0, 6.0), rng.uniform(0, np.pi)
        t = 0.5 + 0.35 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    elif choice == 1:
        cell = int(rng.integers(3, 6))
        t = np.where(((yy // cell) + (xx // cell)) % 2 == 0, 0.2, 0.8)
    else:
        t = np.clip(0.5 + 0.25 * rng.normal(size=(side, side)), 0, 1)
    return t


def _stamp(rng, img, size_name):
    size = img.shape[0]
    side = int(round(np.sqrt(_AREA[size_name]) * size))
    r0, c0 = (int(v) for v in rng.integers(4, size - side - 4, 2))
    out = img.copy()
    out[r0 : r0 + side, c0 : c0 + side] = _texture(rng, side)
    mask = np.zeros(img.shape, bool)
    mask[r0 : r0 + side, c0 : c0 + side] = True
    return out, mask


def _shape(rng, img, size_name):
    size = img.shape[0]
    area = _AREA[size_name] * size * size
    form = ("disc", "triangle", "ring", "cross")[int(rng.integers(4))]
    r = {
        "disc": np.sqrt(area / np.pi),
        "triangle": np.sqrt(area / 1.3),
        "ring": np.sqrt(area / (np.pi * 0.64)),
    }
    radius = r.get(form, np.sqrt(area / 1.2))
    cy, cx = rng.uniform(radius + 4, size - radius - 4, 2)
    angle = rng.uniform(0, 2 * np.pi)

    def draw(canvas, s):
        c = (int(cx * s), int(cy * s))
        if form == "disc":
            cv2.circle(canvas, c, int(radius * s), 255, -1)
        elif form == "ring":
            cv2.circle(canvas, c, int(radius * 0.8 * s), 255, int(radius * 0.4 * s))
        elif form == "triangle":
            a = angle + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
            pts = np.stack([cx + radius * np.cos(a), cy + radius * np.sin(a)], axis=1) * s
            cv2.fillPoly(canvas, [pts.astype(np.int32)], 255)
        else:
            w = radius * 0.35
            for a in (angle, angle + np.pi / 2):
                d = np.array([np.cos(a), np.sin(a)]) * radius
                p0 = ((cx - d[0]) * s, (cy - d[1]) * s)
                p1 = ((cx + d[0]) * s, (cy + d[1]) * s)
                cv2.line(
                    canvas, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 255, max(1, int(w * s))
                )

    cover = _cover(size, draw)
    local = img[cover > 0.25].mean() if np.any(cover > 0.25) else img.mean()
    level = float(np.clip(local + rng.choice([-1, 1]) * rng.uniform(0.25, 0.4), 0.02, 0.98))
    return img * (1 - cover) + level * cover, cover >= 0.25


def _crack(rng, img, size_name):
    size = img.shape[0]
    length = _LENGTH[size_name] * size
    n = 24
    step = length / n

    def walk(start, heading, steps):
        pts = [np.asarray(start, float)]
        for _ in range(steps):
            heading += rng.normal(0, 0.35)
            nxt = pts[-1] + step * np.array([np.cos(heading), np.sin(heading)])
            pts.append(np.clip(nxt, 3, size - 4))
        return np.array(pts), heading

    start = rng.uniform(size * 0.25, size * 0.75, 2)
    main, _ = walk(start, rng.uniform(0, 2 * np.pi), n)
    k = int(rng.integers(n // 4, 3 * n // 4))
    branch, _ = walk(main[k], rng.uniform(0, 2 * np.pi), n // 3)
    width = rng.uniform(1.2, 2.0)

    def draw(canvas, s):
        for pts, w in ((main, width), (branch, width * 0.7)):
            cv2.polylines(canvas, [(pts[:, ::-1] * s).astype(np.int32)], False, 255, max(1, int(w * s)))

    cover = _cover(size, draw)
    level = rng.uniform(0.03, 0.12)
    return img * (1 - cover) + level * cover, cover >= 0.25


_DEFECTS = {"stamp": _stamp, "shape": _shape, "crack": _crack}


def generate(kind: str, seed: int, n_normal: int, n_anomalous: int = 0, size: str = "small") -> list[Sample]:
    """``n_normal`` normal images, then ``n_anomalous`` anomalous ones of ``kind`` and ``size``.

    Reproducible from ``seed``; normal and anomalous images use independent streams,
    and the normal images of the natural kinds do not depend on the kind (one detector
    fitted on them serves every natural kind).

    Parameters
    ----------
    kind : one of :data:`KINDS`
    seed : int
    n_normal, n_anomalous : int
    size : "small" or "large" (ignored for ``inspection``, whose defects have their own sizes)

    Returns
    -------
    list of Sample
    """
    if kind not in KINDS:
        raise ValueError(f"unknown anomaly kind {kind!r}; use one of {KINDS}")
    if kind != "inspection" and size not in SIZES:
        raise ValueError(f"unknown size {size!r}; use one of {SIZES}")
    if kind == "inspection":
        parts = inspection.generate(seed, n_normal, n_anomalous)
        return [
            Sample(
                p.image, p.mask, "normal" if not p.anomalous else "inspection", "mixed" if p.anomalous else ""
            )
            for p in parts
        ]
    normal_seq, anomal_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(normal_seq)
    empty = np.zeros((NATURAL_SIZE, NATURAL_SIZE), bool)
    out = [Sample(natural_background(rng), empty.copy(), "normal") for _ in range(n_normal)]
    key = (NATURAL_KINDS.index(kind), SIZES.index(size))
    rng = np.random.default_rng(np.random.SeedSequence(anomal_seq.entropy, spawn_key=(1, *key)))
    for _ in range(n_anomalous):
        image, mask = _DEFECTS[kind](rng, natural_background(rng), size)
        out.append(Sample(np.clip(image, 0.0, 1.0), mask, kind, size))
    return out


__all__ = ["HELD_OUT", "KINDS", "NATURAL_KINDS", "SIZES", "Sample", "generate", "natural_background"]
