"""The output folder of ``bowlrp explain --out DIR``: its file names and records, in one place.

Per image ``<id>`` (the input's path relative to the common root, without its
extension): ``<id>_heatmap.png`` (colour-coded map with a ticked colour bar),
``<id>_overlay.png``, ``<id>_relevance.npy`` (H x W float64, raw) and ``<id>.json``
(the record: explained ``"target"``, ``"score"``, the ``"image"`` path, the
``"run_key"`` of model and settings, ...). ``run.json`` at the top records the run.

The record is also the claim on the other three files: an image's outputs are
bowlrp's to replace only when ``<id>.json`` is a bowlrp record of that id
(:func:`is_own_record`). Publishing renames a claim record
(``"complete": false``) into place first, then the three files, then the final
record, so a run killed between renames leaves files that a claim names (the
next run replaces them) and never a file bowlrp might mistake for a user's, or
the other way round (:func:`check_outputs_are_ours`).
The writer (:mod:`bowlrp.runs.folder`) and every reader (:mod:`bowlrp.spray.heatmap_files`)
take the names from here.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .._utils.validation import display_path
from ..exceptions import BowlrpError

HEATMAP_SUFFIX = "_heatmap.png"
OVERLAY_SUFFIX = "_overlay.png"
RELEVANCE_SUFFIX = "_relevance.npy"
RECORD_SUFFIX = ".json"
OUTPUT_SUFFIXES = (HEATMAP_SUFFIX, OVERLAY_SUFFIX, RELEVANCE_SUFFIX, RECORD_SUFFIX)
RUN_FILE = "run.json"
RECORD_VERSION = 1


def output_paths(out: Path, image_id: str) -> dict[str, Path]:
    """The four output files of one image id."""
    base = out / image_id
    return {
        "heatmap": base.parent / f"{base.name}{HEATMAP_SUFFIX}",
        "overlay": base.parent / f"{base.name}{OVERLAY_SUFFIX}",
        "relevance": base.parent / f"{base.name}{RELEVANCE_SUFFIX}",
        "json": base.parent / f"{base.name}{RECORD_SUFFIX}",
    }


class OutputConflict(BowlrpError, FileExistsError):
    """An output path of an image holds a file bowlrp did not write (or a link, or a folder)."""


def is_own_record(record: dict | None, image_id: str) -> bool:
    """True if ``record`` (a parsed ``<id>.json``) is bowlrp's record or claim for ``image_id``."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("run_key"), dict)
        and record.get("id", image_id) == image_id
    )


def is_complete(record: dict) -> bool:
    """False for a claim (``"complete": false``): the run writing it stopped before its record."""
    return record.get("complete", True) is True


def check_outputs_are_ours(paths: dict[str, Path], image_id: str) -> None:
    """Refuse to write an image whose output paths hold anything bowlrp did not write.

    Parameters
    ----------
    paths : dict
        :func:`output_paths` of the image.
    image_id : str

    Raises
    ------
    OutputConflict
        One line naming the first path that is a link, a folder or a special
        file, or that exists while ``<id>.json`` is not bowlrp's record of the
        image (a user's ``photo.json`` or ``photo_overlay.png`` beside the
        output of ``photo.png`` is never replaced).
    """
    ours = None
    for name in ("json", "relevance", "heatmap", "overlay"):
        path = paths[name]
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputConflict(
                f"cannot check {display_path(path)} ({exc.strerror}); choose another --out"
            ) from None
        if not stat.S_ISREG(mode):
            what = (
                "a symbolic link"
                if stat.S_ISLNK(mode)
                else "a folder"
                if stat.S_ISDIR(mode)
                else "not a file"
            )
            raise OutputConflict(
                f"{display_path(path)} is {what}, where bowlrp writes an output of {image_id!r}; "
                "move it away or choose another --out"
            )
        if ours is None:
            ours = is_own_record(read_record(paths["json"]), image_id)
        if not ours:
            raise OutputConflict(
                f"{display_path(path)} exists and was not written by bowlrp for {image_id!r} (no bowlrp "
                f"record {display_path(paths['json'].name)} names it); move it away or choose another --out"
            )


def is_written_picture(path: Path) -> bool:
    """True for a heatmap or overlay PNG that bowlrp wrote: ``<id>_heatmap.png`` or
    ``<id>_overlay.png`` with a bowlrp record (or claim) ``<id>.json`` beside it.

    Used to keep a run from explaining the pictures of an earlier run in its output
    folder; a user's ``beach_overlay.png`` with no record beside it is a photo.
    """
    path = Path(path)
    for suffix in (HEATMAP_SUFFIX, OVERLAY_SUFFIX):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            record_file = path.with_name(path.name[: -len(suffix)] + RECORD_SUFFIX)
            try:
                if not stat.S_ISREG(os.lstat(record_file).st_mode):  # a FIFO is never opened
                    return False
            except OSError:
                return False
            record = read_record(record_file)
            return isinstance(record, dict) and isinstance(record.get("run_key"), dict)
    return False


def record_path(relevance_path: Path) -> Path:
    """The record (``<id>.json``) beside a relevance map (``<id>_relevance.npy``)."""
    return relevance_path.with_name(relevance_path.name[: -len(RELEVANCE_SUFFIX)] + RECORD_SUFFIX)


def read_record(path: Path) -> dict | None:
    """A JSON record as a dict, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
