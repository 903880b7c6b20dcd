"""The images a run explains: file names, folders and glob patterns, each with a collision-free id."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._utils.validation import IMAGE_SUFFIXES, display_path
from ..exceptions import BowlrpError


class InputError(BowlrpError, ValueError):
    """The images to process could not be found or named."""


@dataclass(frozen=True)
class ImageInput:
    """An image file and the id its outputs are named by (relative path, no extension)."""

    path: Path
    id: str


def _magic(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _static_prefix(pattern: str) -> Path:
    parts = Path(pattern).parts
    keep = []
    for part in parts:
        if _magic(part):
            break
        keep.append(part)
    return Path(*keep) if keep else Path(".")


def collect_inputs(
    specs: Sequence[str], recursive: bool = True, exclude: str | os.PathLike | None = None
) -> list[ImageInput]:
    """Image files from file names, directories and glob patterns, with collision-free ids.

    A name that exists is taken literally (``scan[1].png`` is a file, not a
    pattern); otherwise a name with ``*?[`` is a glob. Directories are searched
    recursively for image suffixes (hidden files skipped). Ids are paths
    relative to the common root of all inputs (each directory or glob prefix
    counts as a root), without the extension; when two inputs would share an
    id (``a.png`` and ``a.jpg``) the extension is kept in their ids. Files
    below ``exclude`` (the output folder) are never inputs, so a rerun does
    not explain its own pictures.

    Raises
    ------
    InputError
        An empty name, a missing file, an empty directory, a pattern that
        matches nothing.
    """
    found: list[tuple[Path, Path]] = []  # (file, its root)
    for spec in specs:
        if not str(spec).strip():
            raise InputError("empty image name given; name a file, a directory or a quoted pattern")
        p = Path(spec)
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.iterdir()
            files = sorted(
                q
                for q in walker
                if q.is_file()
                and q.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            if not files:
                raise InputError(
                    f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in directory {display_path(p)}"
                )
            found += [(q, p) for q in files]
        elif p.exists():
            found.append((p, p.parent))
        elif _magic(str(spec)):
            files = sorted(Path(q) for q in glob.glob(str(spec), recursive=True) if Path(q).is_file())
            if not files:
                raise InputError(f"no file matches {display_path(spec)!r}")
            found += [(q, _static_prefix(str(spec))) for q in files]
        else:
            raise InputError(f"image file not found: {display_path(p)}")
    skip = Path(exclude).resolve() if exclude is not None else None
    unique: dict[Path, Path] = {}
    for q, root in found:
        resolved = q.resolve()
        if skip is not None and resolved.is_relative_to(skip) and root.resolve() != skip:
            continue
        unique.setdefault(resolved, root.resolve())
    if not unique:
        raise InputError("no images given")
    root = Path(os.path.commonpath([str(r) for r in unique.values()]))
    rel = {q: q.relative_to(root) if q.is_relative_to(root) else Path(q.name) for q in unique}
    stems: dict[str, int] = {}
    for r in rel.values():
        key = r.with_suffix("").as_posix()
        stems[key] = stems.get(key, 0) + 1
    out = []
    for q, r in rel.items():
        key = r.with_suffix("").as_posix()
        out.append(ImageInput(q, r.as_posix() if stems[key] > 1 else key))
    return out
