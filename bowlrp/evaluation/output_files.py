"""Refusing an output folder whose file names hold files a command did not write.

One helper for ``bowlrp-evaluate``'s summary files (:mod:`bowlrp.evaluation.runner`)
and the evaluation suite's report files (:mod:`bowlrp.evaluation.suite_report`):
the files are the command's to replace only when its record file beside them is
one of its records; a link or a folder in their place is refused too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .._utils.validation import display_path


def read_record(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(path.read_bytes()) if path.is_file() and not path.is_symlink() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_files_are_ours(
    out: str | os.PathLike,
    names: Iterable[str],
    record: str,
    is_ours: Callable[[dict], bool],
    writer: str,
    where: str,
    record_words: str,
) -> None:
    """Refuse ``out`` when one of ``names`` holds a file that ``writer`` did not write.

    Parameters
    ----------
    out : path
        The output folder (need not exist).
    names : iterable of str
        The file names the command writes into ``out``.
    record : str
        The name of the record file among them (``curves.json``, ``suite.json``).
    is_ours : callable
        ``is_ours(record_data) -> bool``: the record's JSON object is the command's.
    writer : str
        Who writes the files, for the message (``"bowlrp-evaluate"``).
    where : str
        Words after "where {writer} writes" (``" its summary"`` or ``""``).
    record_words : str
        How the record is named in the message (``"evaluation record curves.json"``).

    Raises
    ------
    FileExistsError
        One line naming the file and what to do.
    """
    out = Path(out)
    ours = None
    for name in names:
        path = out / name
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or not path.is_file():
            raise FileExistsError(
                f"{display_path(path)} is not a regular file, where {writer} writes{where}; "
                "move it away or choose another --out"
            )
        if ours is None:
            data = read_record(out / record)
            ours = data is not None and bool(is_ours(data))
        if not ours:
            raise FileExistsError(
                f"{display_path(path)} exists and was not written by {writer} (no {record_words} "
                "beside it); move it away or choose another --out"
            )
