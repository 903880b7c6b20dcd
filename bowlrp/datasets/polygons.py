"""Polygons versus round shapes (PLoS ONE 2015, Fig 6; thesis 2.4.3), generated from a seed.

A scene is a grey image with regular polygons (4 to 7 vertices) and round
shapes (circles and superellipses ``|x|^p + |y|^p <= r^p`` with ``p`` in
[1.8, 3]: round, and no one would call them polygons), scattered uniformly
without overlap over a generated background texture, with sizes, rotations
and grey levels varied. ``mask`` holds, per pixel, the id of the shape it
belongs to (0: background); ``shapes[id - 1]`` says whether it is a polygon.

Training samples are non-overlapping ``tile x tile`` crops, positive iff the
centre of mass of at least one polygon lies inside; held-out crops are
taken every ``stride`` pixels (:func:`overlapping_tiles`), and test images are
explained as overlapping tiles every ``stride`` pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .._utils.atomic import atomic_write_bytes
from .._utils.validation import read_image

TILE = 102
STRIDE = 34
_SUPERSAMPLE = 4


@dataclass
class Scene:
    """One generated image with its shapes.

    Attributes
    ----------
    image : ndarray (H, W) float64 in [0, 1]
    mask : ndarray (H, W) int32, shape id per pixel (0 background)
    shapes : list of dict
        ``{"id", "kind": "polygon"|"round", "vertices" (polygons) or "p" (round),
        "radius", "center": [row, col], "centroid": [row, col], "grey"}``
    """

    image: np.ndarray
    mask: np.ndarray
    shapes: list

    def polygon_ids(self) -> set[int]:
        return {s["id"] for s in self.shapes if s["kind"] == "polygon"}


def _background(rng, height, width) -> np.ndarray:
    base = rng.uniform(0.35, 0.65)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 25)
    coarse = coarse / (np.abs(coarse).max() + 1e-12) * 0.12
    fine = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1.5)
    fine = fine / (np.abs(fine).max() + 1e-12) * 0.06
    return base + coarse + fine


def _shape_points(kind, radius, angle, p, n_vertices, samples=720):
    if kind == "polygon":
        t = angle + np.arange(n_vertices) * 2 * np.pi / n_vertices
        return np.column_stack([radius * np.cos(t), radius * np.sin(t)])
    t = np.linspace(0, 2 * np.pi, samples, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = radius * np.sign(c) * np.abs(c) ** (2 / p)
    y = radius * np.sign(s) * np.abs(s) ** (2 / p)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.column_stack([x, y]) @ rot.T


def render_scene(
    rng: np.random.Generator,
    height: int = 510,
    width: int = 510,
    n_shapes: tuple[int, int] = (14, 22),
    radius: tuple[float, float] = (9.0, 24.0),
    polygon_share: float = 0.5,
    gap: float = 6.0,
) -> Scene:
    """Draw one scene. Shapes are anti-aliased (rendered at 4x and averaged down).

    Returns
    -------
    Scene
    """
    image = _background(rng, height, width)
    mask = np.zeros((height, width), dtype=np.int32)
    placed: list[tuple[float, float, float]] = []
    shapes = []
    target = int(rng.integers(n_shapes[0], n_shapes[1] + 1))
    tries = 0
    while len(shapes) < target and tries < 5000:
        tries += 1
        r = rng.uniform(*radius)
        cy, cx = rng.uniform(r + 2, height - r - 2), rng.uniform(r + 2, width - r - 2)
        if any(np.hypot(cy - y, cx - x) < r + q + gap for y, x, q in placed):
            continue
        placed.append((cy, cx, r))
        sid = len(shapes) + 1
        is_polygon = rng.random() < polygon_share
        angle = rng.uniform(0, 2 * np.pi)
        n_vertices = int(rng.integers(4, 8))
        p = float(rng.uniform(1.8, 3.0)) if rng.random() < 0.6 else 2.0
        pts = _shape_points("polygon" if is_polygon else "round", r, angle, p, n_vertices)
        big = np.zeros((int(2 * r + 6) * _SUPERSAMPLE,) * 2, dtype=np.uint8)
        off = r + 3
        scaled = ((pts + off) * _SUPERSAMPLE).astype(np.int32)  # (x, y) pairs
        cv2.fillPoly(big, [scaled], 1, lineType=cv2.LINE_8)
        h_small = big.shape[0] // _SUPERSAMPLE
        cover = big.reshape(h_small, _SUPERSAMPLE, h_small, _SUPERSAMPLE).mean(axis=(1, 3))
        r0, c0 = int(round(cy - off)), int(round(cx - off))
        r1, c1 = min(height, r0 + h_small), min(width, c0 + h_small)
        rs, cs = max(0, r0), max(0, c0)
        window = cover[rs - r0 : r1 - r0, cs - c0 : c1 - c0]
        local = image[rs:r1, cs:c1]
        bg_level = float(local.mean())
        level = float(np.clip(bg_level + rng.choice([-1, 1]) * rng.uniform(0.2, 0.4), 0.02, 0.98))
        image[rs:r1, cs:c1] = local * (1 - window) + level * window
        inside = window >= 0.5
        mask[rs:r1, cs:c1][inside] = sid
        rows, cols = np.nonzero(mask == sid)
        shapes.append(
            {
                "id": sid,
                "kind": "polygon" if is_polygon else "round",
                "vertices": n_vertices if is_polygon else None,
                "p": None if is_polygon else p,
                "radius": float(r),
                "center": [float(cy), float(cx)],
                "centroid": [float(rows.mean()), float(cols.mean())],
                "grey": level,
            }
        )
    noise = rng.normal(0, 0.01, image.shape)
    return Scene(np.clip(image + noise, 0.0, 1.0), mask, shapes)


def crop_label(scene: Scene, row: int, col: int, tile: int = TILE) -> int:
    """1 iff the centre of mass of at least one polygon lies inside the crop."""
    for s in scene.shapes:
        if s["kind"] != "polygon":
            continue
        cy, cx = s["centroid"]
        if row <= cy < row + tile and col <= cx < col + tile:
            return 1
    return 0


def training_crops(scene: Scene, tile: int = TILE):
    """Non-overlapping crops with labels: (list of (tile, tile) arrays, labels, origins)."""
    crops, labels, origins = [], [], []
    H, W = scene.image.shape
    for r in range(0, H - tile + 1, tile):
        for c in range(0, W - tile + 1, tile):
            crops.append(scene.image[r : r + tile, c : c + tile])
            labels.append(crop_label(scene, r, c, tile))
            origins.append((r, c))
    return crops, np.array(labels), origins


def tile_dataset(scenes: list[Scene], tile: int = TILE):
    """All non-overlapping crops of several scenes: (crops, labels)."""
    crops, labels = [], []
    for s in scenes:
        c, y, _ = training_crops(s, tile)
        crops += c
        labels.append(y)
    return crops, np.concatenate(labels)


def overlapping_tiles(scenes: list[Scene], tile: int = TILE, stride: int = STRIDE):
    """Crops every ``stride`` pixels of several scenes (the thesis' test protocol, 2.4.3).

    Returns (crops, labels, scene index of each crop); a crop is positive iff
    the centre of mass of at least one polygon lies inside it.
    """
    crops, labels, owner = [], [], []
    for k, s in enumerate(scenes):
        H, W = s.image.shape
        for r in range(0, H - tile + 1, stride):
            for c in range(0, W - tile + 1, stride):
                crops.append(s.image[r : r + tile, c : c + tile])
                labels.append(crop_label(s, r, c, tile))
                owner.append(k)
    return crops, np.array(labels, dtype=int), np.array(owner, dtype=int)


def generate(seed: int, n_images: int, height: int = 510, width: int = 510, **kw) -> list[Scene]:
    """``n_images`` scenes from one seed (scene i uses a child seed, so prefixes agree)."""
    children = np.random.SeedSequence(seed).spawn(n_images)
    return [render_scene(np.random.default_rng(s), height, width, **kw) for s in children]


def save_scenes(scenes: list[Scene], out_dir, prefix: str) -> list[Path]:
    """Write ``<prefix>_NNN.png`` (image), ``_mask.png`` (uint16 ids) and ``.json`` (shapes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(scenes):
        stem = out / f"{prefix}_{i:03d}"
        # encoded in memory, written atomically with Python I/O (any file name works)
        atomic_write_bytes(
            str(stem) + ".png", cv2.imencode(".png", np.round(s.image * 255).astype(np.uint8))[1]
        )
        atomic_write_bytes(str(stem) + "_mask.png", cv2.imencode(".png", s.mask.astype(np.uint16))[1])
        Path(str(stem) + ".json").write_text(json.dumps({"shapes": s.shapes}, indent=1))
        paths.append(Path(str(stem) + ".png"))
    return paths


def load_scene(image_path) -> Scene:
    """Read a scene written by :func:`save_scenes`."""
    image_path = Path(image_path)
    stem = image_path.with_suffix("")
    image = read_image(image_path) / 255.0
    mask = read_image(str(stem) + "_mask.png").astype(np.int32)
    shapes = json.loads(Path(str(stem) + ".json").read_text())["shapes"]
    return Scene(image, mask, shapes)
