"""A generated data set in the PASCAL VOC layout (nothing is downloaded).

Scenes of VOC-like sizes (500 x 375 or 375 x 500 by default) with a textured
background and one to three drawn objects of a few classes (``disc``,
``square``, ``triangle``, ``star``), each of its own colour family and with
a texture of its own (or, with ``classes=CLASSES_20``, twenty classes as in
VOC: five shapes times four colour families), written as::

    root/JPEGImages/<id>.jpg
    root/Annotations/<id>.xml                  (VOC XML, 1-based inclusive boxes)
    root/ImageSets/Main/<split>.txt            (trainval, test)
    root/ImageSets/Main/<class>_<split>.txt    (<id> 1 | -1 | 0)

Objects smaller than ``difficult_area`` of the image are marked difficult;
an image whose only objects of a class are difficult gets label 0 for that
class, as in VOC. Everything follows from one seed.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
from tqdm.auto import tqdm

CLASSES = ("disc", "square", "triangle", "star")

#: class name -> (shape, OpenCV hue 0..179, stripe period in pixels) of its objects
STYLES: dict[str, tuple[str, int, int]] = {
    "disc": ("disc", 0, 7),
    "square": ("square", 60, 5),
    "triangle": ("triangle", 110, 9),
    "star": ("star", 150, 4),
}
_COLOURS = (("red", 0, 7), ("green", 60, 5), ("blue", 110, 9), ("magenta", 150, 4))
_SHAPES = ("disc", "square", "triangle", "star", "hexagon")
STYLES.update({f"{c}-{s}": (s, hue, period) for c, hue, period in _COLOURS for s in _SHAPES})

#: Twenty classes, as many as PASCAL VOC: five shapes x four colour families, each colour
#: family with its own stripe period (so the classes differ in grey level too).
CLASSES_20 = tuple(f"{c}-{s}" for c, _, _ in _COLOURS for s in _SHAPES)


def _background(rng, height, width) -> np.ndarray:
    """BGR uint8 background: a smooth colour gradient plus blurred noise."""
    base = rng.uniform(60, 190, 3)
    ramp = np.linspace(-1, 1, width)[None, :, None] * rng.uniform(-30, 30, 3)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), 3)
    noise = noise / (np.abs(noise).max() + 1e-9) * 35
    return np.clip(base + ramp + noise, 0, 255).astype(np.uint8)


def _polygon(kind, center, radius, angle) -> np.ndarray:
    cy, cx = center
    if kind == "square":
        t = angle + np.arange(4) * np.pi / 2 + np.pi / 4
        r = np.full(4, radius)
    elif kind == "hexagon":
        t = angle + np.arange(6) * np.pi / 3
        r = np.full(6, radius)
    elif kind == "triangle":
        t = angle + np.arange(3) * 2 * np.pi / 3
        r = np.full(3, radius)
    else:  # star
        t = angle + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)]).round().astype(np.int32)


def _draw(rng, image, name, center, radius) -> tuple[int, int, int, int]:
    """Draw one object of class ``name``; its box (row0, row1, col0, col1), 0-based half-open, clipped."""
    h, w = image.shape[:2]
    shape, base_hue, period = STYLES[name]
    mask = np.zeros((h, w), np.uint8)
    if shape == "disc":
        cv2.circle(mask, (int(center[1]), int(center[0])), int(radius), 255, -1, cv2.LINE_AA)
    else:
        cv2.fillPoly(mask, [_polygon(shape, center, radius, rng.uniform(0, 2 * np.pi))], 255, cv2.LINE_AA)
    hue = (base_hue + rng.integers(-8, 9)) % 180
    hsv = np.array([[[hue, rng.integers(150, 255), rng.integers(120, 240)]]], np.uint8)
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    texture = 1 + 0.25 * np.sign(np.sin((xx + yy) * np.pi / period))[..., None]
    alpha = (mask.astype(np.float32) / 255)[..., None]
    image[:] = np.clip((1 - alpha) * image + alpha * colour * texture, 0, 255).astype(np.uint8)
    rows, cols = np.nonzero(mask > 127)
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def render(
    rng: np.random.Generator, height: int, width: int, classes=CLASSES, difficult_area: float = 0.004
) -> tuple[np.ndarray, list[dict]]:
    """One scene: BGR uint8 image and its objects ``{name, box, difficult, truncated}``."""
    image = _background(rng, height, width)
    objects = []
    side = min(height, width)
    for _ in range(rng.integers(1, 4)):
        kind = str(rng.choice(classes))
        small = rng.random() < 0.1
        radius = side * (rng.uniform(0.03, 0.05) if small else rng.uniform(0.1, 0.25))
        center = (rng.uniform(0.05, 0.95) * height, rng.uniform(0.05, 0.95) * width)
        r0, r1, c0, c1 = _draw(rng, image, kind, center, radius)
        truncated = (
            center[0] - radius < 0
            or center[0] + radius > height
            or center[1] - radius < 0
            or center[1] + radius > width
        )
        area = (r1 - r0) * (c1 - c0) / (height * width)
        objects.append(
            {
                "name": kind,
                "box": (r0, r1, c0, c1),
                "difficult": bool(area < difficult_area),
                "truncated": bool(truncated),
            }
        )
    return image, objects


def annotation_xml(image_id: str, shape, objects) -> str:
    """VOC XML for one image (boxes 1-based, inclusive)."""
    h, w = shape[:2]
    parts = [
        f"<annotation>\n  <folder>VOCLike</folder>\n  <filename>{escape(image_id)}.jpg</filename>",
        f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>",
        "  <segmented>0</segmented>",
    ]
    for o in objects:
        r0, r1, c0, c1 = o["box"]
        parts.append(
            f"  <object>\n    <name>{escape(o['name'])}</name>\n    <pose>Unspecified</pose>\n"
            f"    <truncated>{int(o['truncated'])}</truncated>\n"
            f"    <difficult>{int(o['difficult'])}</difficult>\n"
            f"    <bndbox>\n      <xmin>{c0 + 1}</xmin>\n      <ymin>{r0 + 1}</ymin>\n"
            f"      <xmax>{c1}</xmax>\n      <ymax>{r1}</ymax>\n    </bndbox>\n  </object>"
        )
    parts.append("</annotation>\n")
    return "\n".join(parts)


def class_label(objects, name: str) -> int:
    """VOC image label: 1 (a non-difficult object), 0 (only difficult ones), -1 (none)."""
    kinds = [o["difficult"] for o in objects if o["name"] == name]
    if not kinds:
        return -1
    return 0 if all(kinds) else 1


def make_voc_like(
    root,
    n_trainval: int = 40,
    n_test: int = 40,
    seed: int = 0,
    size: tuple[int, int] = (375, 500),
    classes=CLASSES,
    quality: int = 90,
    progress: bool = False,
) -> Path:
    """Write a VOC-format data set under ``root`` (created); returns ``root``.

    Parameters
    ----------
    n_trainval, n_test : int
        Images per split (ids ``000001`` ...; the test ids follow the trainval ids).
    size : (height, width)
        Landscape size; about a quarter of the images are portrait (swapped), as in VOC.
    quality : int
        JPEG quality.

    Every class gets at least one positive image per split (the first images
    are drawn with a forced class each).
    """
    root = Path(root)
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"trainval": [], "test": []}
    labels: dict = {s: {c: [] for c in classes} for s in splits}
    order = [("trainval", k) for k in range(n_trainval)] + [("test", k) for k in range(n_test)]
    for number, (split, k) in enumerate(tqdm(order, desc="generating", disable=not progress), 1):
        image_id = f"{number:06d}"
        h, w = size if rng.random() < 0.75 else size[::-1]
        forced = (classes[k],) if k < len(classes) else classes
        image, objects = render(rng, h, w, classes)
        if k < len(classes) and not any(o["name"] == forced[0] and not o["difficult"] for o in objects):
            r = min(h, w) * 0.2
            center = (rng.uniform(r, h - r), rng.uniform(r, w - r))
            box = _draw(rng, image, forced[0], center, r)
            objects.append({"name": forced[0], "box": box, "difficult": False, "truncated": False})
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        (root / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, image.shape, objects))
        splits[split].append(image_id)
        for c in classes:
            labels[split][c].append((image_id, class_label(objects, c)))
    main = root / "ImageSets" / "Main"
    for split, ids in splits.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c in classes:
            (main / f"{c}_{split}.txt").write_text("".join(f"{i} {v:2d}\n" for i, v in labels[split][c]))
    return root


__all__ = ["CLASSES", "CLASSES_20", "STYLES", "annotation_xml", "class_label", "make_voc_like", "render"]
