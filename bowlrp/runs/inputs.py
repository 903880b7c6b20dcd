"""The images a run explains: file names, folders and glob patterns, each with a collision-free id."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._utils.validation import IMAGE_SUFFIXES, display_path
from ..exceptions import BowlrpError
from .folder_layout import is_written_picture


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
    specs: Sequence[str],
    recursive: bool = True,
    exclude: str | os.PathLike | None = None,
    *,
    written: Callable[[Path], bool] = is_written_picture,
    on_skip: Callable[[Path], None] | None = None,
) -> list[ImageInput]:
    """Image files from file names, directories and glob patterns, with collision-free ids.

    A name that exists is taken literally (``scan[1].png`` is a file, not a
    pattern); otherwise a name with ``*?[`` is a glob. Directories are searched
    recursively for image suffixes (hidden files skipped). Ids are paths
    relative to the common root of all inputs (each directory or glob prefix
    counts as a root), without the extension; when two inputs would share an
    id (``a.png`` and ``a.jpg``) the extension is kept in their ids.

    A file named on its own is always an input. A file found by searching a
    directory or matching a pattern is skipped when it lies below ``exclude``
    (the output folder) and ``written(path)`` says bowlrp wrote it there (by
    default a heatmap or overlay PNG with its bowlrp record beside it), so a
    rerun does not explain its own pictures while a user's photos below the
    output folder are still found.

    Parameters
    ----------
    specs : sequence of str
        File names, directories and glob patterns.
    recursive : bool
        Search directories recursively.
    exclude : path, optional
        The output folder of the run.
    written : callable, optional
        ``written(path) -> bool``: True for a file bowlrp wrote below ``exclude``.
    on_skip : callable, optional
        Called with each skipped file.

    Raises
    ------
    InputError
        An empty name, a missing file, an empty directory, a pattern that
        matches nothing, or only bowlrp's own outputs found (the message names them).
    """
    found: list[tuple[Path, Path, bool]] = []  # (file, its root, named on its own)
    for spec in specs:
        found += _expand(spec, recursive)
    skip = Path(exclude).resolve() if exclude is not None else None
    unique: dict[Path, Path] = {}
    skipped: list[Path] = []
    for q, root, named in found:
        resolved = q.resolve()
        if not named and skip is not None and resolved.is_relative_to(skip) and written(q):
            skipped.append(q)
            if on_skip is not None:
                on_skip(q)
            continue
        unique.setdefault(resolved, root.resolve())
    if not unique:
        raise InputError(_nothing_left(skipped, exclude))
    return _with_ids(unique)


def _expand(spec: str, recursive: bool) -> list[tuple[Path, Path, bool]]:
    """The files one name stands for: (file, its root, named on its own)."""
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
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise InputError(f"no images ({suffixes}) in directory {display_path(p)}")
        return [(q, p, False) for q in files]
    if p.exists():
        return [(p, p.parent, True)]
    if _magic(str(spec)):
        files = sorted(Path(q) for q in glob.glob(str(spec), recursive=True) if Path(q).is_file())
        if not files:
            raise InputError(f"no file matches {display_path(spec)!r}")
        return [(q, _static_prefix(str(spec)), False) for q in files]
    raise InputError(f"image file not found: {display_path(p)}")


def _nothing_left(skipped: list[Path], exclude) -> str:
    if not skipped:
        return "no images given"
    shown = ", ".join(display_path(q) for q in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    return (
        f"every image found ({len(skipped)}: {shown}) is a picture bowlrp wrote into the output "
        f"folder {display_path(exclude)}; name the images to explain, or choose another --out"
    )


def _with_ids(unique: dict[Path, Path]) -> list[ImageInput]:
    """Inputs (resolved file -> resolved root) with ids relative to the roots' common folder."""
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
