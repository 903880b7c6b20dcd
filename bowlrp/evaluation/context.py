"""Context ratio (thesis 4.4) and PASCAL VOC annotation files.

    mu = mean_{q outside the boxes} R+_q  /  mean_{p inside} R+_p

with ``R+ = max(R, 0)``: above 1 the model finds more positive evidence per
pixel in the context than on the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import BowlrpError


class AnnotationError(BowlrpError, ValueError):
    """An annotation file is missing or malformed."""


@dataclass
class VOCObject:
    name: str
    box: tuple[int, int, int, int]   # (row0, row1, col0, col1), 0-based, end exclusive
    difficult: bool = False
    truncated: bool = False


@dataclass
class VOCAnnotation:
    filename: str
    size: tuple[int, int, int]       # (height, width, depth)
    objects: list[VOCObject]

    def boxes(self, name: str | None = None, include_difficult: bool = True) -> list:
        """Boxes of the objects of class ``name`` (all objects if None)."""
        return [o.box for o in self.objects
                if (name is None or o.name == name) and (include_difficult or not o.difficult)]


def _text(node, tag: str, path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise AnnotationError(f"{path}: <{tag}> is missing")
    return child.text.strip()


def read_voc_annotation(path) -> VOCAnnotation:
    """Read a PASCAL VOC XML annotation (``Annotations/*.xml``) safely (defusedxml).

    VOC boxes are 1-based and inclusive (``xmin..xmax``); they are returned
    as 0-based half-open pixel ranges ``(row0, row1, col0, col1)``.
    """
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise AnnotationError(f"{path} is not a valid VOC annotation ({exc})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    try:
        shape = (int(_text(size, "height", path)), int(_text(size, "width", path)),
                 int(_text(size, "depth", path)) if size.find("depth") is not None else 3) \
            if size is not None else (0, 0, 0)
        objects = []
        for obj in root.findall("object"):
            box = obj.find("bndbox")
            if box is None:
                raise AnnotationError(f"{path}: an <object> has no <bndbox>")
            xmin, ymin, xmax, ymax = (float(_text(box, t, path)) for t in ("xmin", "ymin", "xmax", "ymax"))
            if xmax < xmin or ymax < ymin:
                raise AnnotationError(f"{path}: box ({xmin}, {ymin}, {xmax}, {ymax}) is empty")
            objects.append(VOCObject(
                name=_text(obj, "name", path),
                box=(int(round(ymin)) - 1, int(round(ymax)), int(round(xmin)) - 1, int(round(xmax))),
                difficult=(obj.findtext("difficult") or "0").strip() == "1",
                truncated=(obj.findtext("truncated") or "0").strip() == "1",
            ))
    except ValueError as exc:
        if isinstance(exc, AnnotationError):
            raise
        raise AnnotationError(f"{path}: a number could not be read ({exc})") from None
    filename = root.findtext("filename") or path.with_suffix(".jpg").name
    return VOCAnnotation(filename.strip(), shape, objects)


def box_mask(shape: tuple[int, int], boxes) -> np.ndarray:
    """Boolean (H, W) mask of the union of boxes (row0, row1, col0, col1), clipped."""
    mask = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        mask[max(0, r0):max(0, r1), max(0, c0):max(0, c1)] = True
    return mask


def context_ratio(heatmap: np.ndarray, boxes) -> float:
    """``mean R+ outside / mean R+ inside`` the boxes; nan without pixels inside or outside."""
    heat = np.maximum(np.asarray(heatmap, dtype=np.float64), 0.0)
    inside = box_mask(heat.shape, boxes)
    if not inside.any() or inside.all():
        return float("nan")
    mean_in = heat[inside].mean()
    mean_out = heat[~inside].mean()
    if mean_in == 0:
        return float("inf") if mean_out > 0 else float("nan")
    return float(mean_out / mean_in)


def context_ratios(heatmaps, annotations, classes) -> dict:
    """Per-image ratios and per-class means for heatmaps explaining ``classes[i]``."""
    per_image = []
    for heat, ann, cls in zip(heatmaps, annotations, classes):
        boxes = ann.boxes(str(cls))
        per_image.append(context_ratio(heat, boxes) if boxes else float("nan"))
    per_class = {}
    for cls in sorted({str(c) for c in classes}):
        vals = np.array([v for v, c in zip(per_image, classes) if str(c) == cls and np.isfinite(v)])
        per_class[cls] = float(vals.mean()) if vals.size else float("nan")
    return {"per_image": per_image, "per_class": per_class}
