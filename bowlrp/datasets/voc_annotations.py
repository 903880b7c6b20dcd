"""PASCAL VOC annotation files, checked when read.

:func:`read_voc_annotation` checks every number is finite, ``xmin <= xmax`` and
``ymin <= ymax``; a box reaching outside the image declared in ``<size>`` is
clipped to it with an :class:`AnnotationWarning` naming the file; a box with no
pixel left inside the image, a bogus declared encoding, a file larger than
``MAX_ANNOTATION_BYTES`` or any other decoding problem is an :class:`AnnotationError`
naming the file. XML is parsed with defusedxml: a document type declaration
(``<!DOCTYPE ...>``, with or without entities or an external ``SYSTEM`` reference)
is refused, as VOC annotations never have one.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import ParseError

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException, DTDForbidden

from .._utils.validation import display_path
from ..exceptions import BowlrpError


class AnnotationError(BowlrpError, ValueError):
    """An annotation file is missing or malformed, or boxes do not fit a heatmap."""


class AnnotationWarning(UserWarning):
    """A box was clipped to the image it annotates."""


#: Largest annotation file read (VOC files are about 1 KB).
MAX_ANNOTATION_BYTES = 16 << 20


@dataclass
class VOCObject:
    name: str
    box: tuple[int, int, int, int]  # (row0, row1, col0, col1), 0-based, end exclusive
    difficult: bool = False
    truncated: bool = False


@dataclass
class VOCAnnotation:
    filename: str
    size: tuple[int, int, int]  # (height, width, depth)
    objects: list[VOCObject]

    def boxes(self, name: str | None = None, include_difficult: bool = True) -> list:
        """Boxes of the objects of class ``name`` (all objects if None)."""
        return [
            o.box
            for o in self.objects
            if (name is None or o.name == name) and (include_difficult or not o.difficult)
        ]


def _text(node, tag: str, shown: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise AnnotationError(f"{shown}: <{tag}> is missing")
    return child.text.strip()


def _number(node, tag: str, shown: str) -> float:
    text = _text(node, tag, shown)
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{shown}: <{tag}> is not a number ({text[:40]!r})") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{shown}: <{tag}> is not a finite number ({text[:40]!r})")
    return value


def _size(root, shown: str) -> tuple[int, int, int]:
    size = root.find("size")
    if size is None:
        return (0, 0, 0)
    dims = []
    for tag in ("height", "width", "depth"):
        if tag == "depth" and size.find("depth") is None:
            dims.append(3)
            continue
        value = _number(size, tag, shown)
        if value != int(value) or value < 0 or value > 1_000_000:
            raise AnnotationError(f"{shown}: <{tag}> must be a whole number in [0, 1e6], got {value:g}")
        dims.append(int(value))
    return dims[0], dims[1], dims[2]


def _box(obj, shape, shown: str) -> tuple[int, int, int, int]:
    box = obj.find("bndbox")
    if box is None:
        raise AnnotationError(f"{shown}: an <object> has no <bndbox>")
    xmin, ymin, xmax, ymax = (_number(box, t, shown) for t in ("xmin", "ymin", "xmax", "ymax"))
    if xmax < xmin or ymax < ymin:
        raise AnnotationError(
            f"{shown}: box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) is empty "
            "(needs xmin <= xmax and ymin <= ymax)"
        )
    # 1-based inclusive -> 0-based half-open; clamp before int() so huge values stay small
    r0, r1 = (int(round(min(max(v, -1.0), 2e6))) for v in (ymin - 1, ymax))
    c0, c1 = (int(round(min(max(v, -1.0), 2e6))) for v in (xmin - 1, xmax))
    height, width = shape[0], shape[1]
    if height > 0 and width > 0:
        clipped = (max(r0, 0), min(r1, height), max(c0, 0), min(c1, width))
        if clipped != (r0, r1, c0, c1):
            if clipped[0] >= clipped[1] or clipped[2] >= clipped[3]:
                raise AnnotationError(
                    f"{shown}: box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) lies "
                    f"outside the {width} x {height} image"
                )
            warnings.warn(
                f"{shown}: box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) reaches outside the "
                f"{width} x {height} image; clipped to it",
                AnnotationWarning,
                stacklevel=3,
            )
        r0, r1, c0, c1 = clipped
    else:
        r0, c0 = max(r0, 0), max(c0, 0)
    if r0 >= r1 or c0 >= c1:
        raise AnnotationError(f"{shown}: box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) covers no pixel")
    return r0, r1, c0, c1


def read_voc_annotation(path) -> VOCAnnotation:
    """Read a PASCAL VOC XML annotation (``Annotations/*.xml``) safely (defusedxml).

    VOC boxes are 1-based and inclusive (``xmin..xmax``); they are returned
    as 0-based half-open pixel ranges ``(row0, row1, col0, col1)``, clipped to
    the image size given in ``<size>`` (with an :class:`AnnotationWarning`;
    without ``<size>``, only to non-negative coordinates).

    Raises
    ------
    AnnotationError
        One line naming the file: missing or oversized file, XML that is not
        well-formed, has a document type declaration (``<!DOCTYPE ...>``: any
        DTD is refused, internal or external, so no entity and no external
        reference is ever read), declares an unknown encoding or does not
        decode; missing fields; numbers that are not finite; boxes with
        ``xmax < xmin`` or ``ymax < ymin`` or without a pixel inside the image.
    """
    shown = display_path(path)
    path = Path(os.fsdecode(path))
    try:
        if not path.is_file():
            raise AnnotationError(f"annotation file not found: {shown}")
        if path.stat().st_size > MAX_ANNOTATION_BYTES:
            raise AnnotationError(
                f"{shown} is larger than {MAX_ANNOTATION_BYTES:,} bytes; not a VOC annotation"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"cannot read annotation file {shown}: {exc.strerror or exc}") from None
    try:
        root = ElementTree.fromstring(data, forbid_dtd=True)
    except DTDForbidden:
        raise AnnotationError(
            f"{shown} is not a valid VOC annotation: it has a <!DOCTYPE> declaration, "
            "which VOC annotations never have (remove it)"
        ) from None
    except (ParseError, DefusedXmlException, LookupError, UnicodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise AnnotationError(f"{shown} is not a valid VOC annotation ({reason})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{shown}: root element is <{str(root.tag)[:40]}>, expected <annotation>")
    shape = _size(root, shown)
    objects = []
    for obj in root.findall("object"):
        objects.append(
            VOCObject(
                name=_text(obj, "name", shown),
                box=_box(obj, shape, shown),
                difficult=(obj.findtext("difficult") or "0").strip() == "1",
                truncated=(obj.findtext("truncated") or "0").strip() == "1",
            )
        )
    filename = root.findtext("filename") or path.with_suffix(".jpg").name
    return VOCAnnotation(filename.strip(), shape, objects)
