"""The evaluation suite's finished work, kept per image, family and method, so a run resumes.

    parts = SuiteParts.open("eval/", fingerprint, overwrite=False)
    parts.read("faithfulness", image_key, "lrp")     # None, or what an earlier run stored
    parts.write("faithfulness", image_key, "lrp", data)

Layout (every file written atomically, :mod:`bowlrp._utils.atomic`)::

    eval/suite_parts/settings.json                     the fingerprint of the run's settings
    eval/suite_parts/<image digest>/<family>.<method>.npz

A *part* is what one family computed for one image and one method: the shared map
(``maps``), the faithfulness metrics, the sanity checks or the robustness metrics
(localisation and complexity are computed from the maps, at no cost, and are not
kept). Its file holds a JSON header (the part's key and its results) and the arrays
of the results (:func:`pack`, :func:`unpack`; no pickle). A part is reused only when
its key equals the one the run asks for: the image's content digest, the family, the
method, the target, the fingerprint and the family's own inputs (the mask's digest,
the subset size, ...). Every result, computed now or reused, goes through
:func:`pack` and :func:`unpack`, so a resumed run reports exactly what an
uninterrupted one does.

**Fingerprint.** Everything that changes a number besides the images, methods and
families: the model's SHA-256, every :class:`~bowlrp.evaluation.suite.SuiteSettings`
field, the target asked for. ``settings.json`` holds it; a run with another
fingerprint into the same folder is refused in one line unless ``overwrite``, which
first removes the parts the suite wrote (by name; nothing else in the folder is
touched). Adding images, methods or families to a run keeps every finished part.
A user's callable explainer is known by its name: give it another name (or another
output folder) after changing its code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from .._utils.atomic import atomic_write_bytes, leftover_temporaries
from .._utils.validation import display_path
from .output_files import read_record
from .results import MetricResult

PARTS_DIR = "suite_parts"
SETTINGS_NAME = "settings.json"
PARTS_SCHEMA = "bowlrp.evaluation-suite-parts/1"
#: the families whose results are kept as parts (``maps``: each method's shared map)
PART_FAMILIES = ("maps", "faithfulness", "sanity", "robustness")
_DIGEST = re.compile(r"^[0-9a-f]{16}$")
_PART = re.compile(r"^(" + "|".join(PART_FAMILIES) + r")\.[A-Za-z0-9_.-]+\.npz$")


class SuiteSettingsChanged(ValueError):
    """The output folder holds suite results made with other settings (one line: which, what to do)."""


def array_digest(a) -> str:
    """16 hex digits of the SHA-256 of an array's dtype, shape and bytes (identifies an image or mask)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}:{a.shape}:".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def fingerprint_digest(fingerprint: dict) -> str:
    """16 hex digits of the SHA-256 of the fingerprint's canonical JSON (in every part's key)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def safe_method(method: str) -> str:
    """A file-name form of a method's name, unique per name (a short digest when characters were replaced)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", method)[:60]
    if safe != method:
        safe += "-" + hashlib.sha256(method.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return safe


# -- packing results into one npz file: a JSON header and named arrays -----------------
def _encode(obj, arrays: dict):
    if isinstance(obj, MetricResult):
        return {
            "__metric__": {
                "name": obj.name,
                "values": _encode(obj.values, arrays),
                "higher_is_better": bool(obj.higher_is_better),
                "params": _encode(obj.params, arrays),
                "method": obj.method,
                "curves": _encode(obj.curves, arrays),
            }
        }
    if isinstance(obj, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot keep a {type(obj).__name__} in a suite part")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return np.array(arrays[obj["__array__"]])
    if "__dict__" in obj:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}
    if "__metric__" in obj:
        m = obj["__metric__"]
        return MetricResult(
            m["name"],
            _decode(m["values"], arrays),
            bool(m["higher_is_better"]),
            _decode(m["params"], arrays),
            m["method"],
            _decode(m["curves"], arrays),
        )
    raise ValueError("not a suite part")


def pack(key: dict, data) -> bytes:
    """One part as ``.npz`` bytes: ``key`` and ``data`` (dicts, lists, numbers, strings, arrays,
    :class:`MetricResult`) in a JSON header, the arrays beside it. Floats round-trip exactly."""
    arrays: dict[str, np.ndarray] = {}
    header = json.dumps({"schema": PARTS_SCHEMA, "key": key, "data": _encode(data, arrays)})
    buffer = io.BytesIO()
    np.savez(buffer, __header__=np.array(header), **arrays)
    return buffer.getvalue()


def unpack(blob: bytes) -> tuple[dict, object]:
    """``(key, data)`` of :func:`pack`'s bytes.

    Raises
    ------
    ValueError
        Not a part (any malformed file: the caller computes the part again).
    """
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(str(arrays.pop("__header__")))
        if not isinstance(header, dict) or header.get("schema") != PARTS_SCHEMA:
            raise ValueError("not a suite part")
        return header["key"], _decode(header["data"], arrays)
    except (OSError, KeyError, TypeError, ValueError, EOFError) as exc:
        raise ValueError(f"not a suite part ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None


class SuiteParts:
    """The folder of an evaluation suite's parts (``out/suite_parts``), opened for one fingerprint.

    Use :meth:`open`; the caller holds the output folder's lock
    (:class:`bowlrp._utils.lock.FolderLock`) while it reads and writes parts.

    Attributes
    ----------
    folder : Path
        ``out/suite_parts``.
    fingerprint : dict
        The run's settings fingerprint (module docstring).
    tag : str
        :func:`fingerprint_digest` of it, in every part's key.
    """

    def __init__(self, folder: Path, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = dict(fingerprint)
        self.tag = fingerprint_digest(self.fingerprint)

    @classmethod
    def open(cls, out, fingerprint: dict, overwrite: bool = False) -> SuiteParts:
        """Open (or create) ``out/suite_parts`` for a run with ``fingerprint``.

        Raises
        ------
        SuiteSettingsChanged
            The folder holds parts of another fingerprint and ``overwrite`` is False.
        FileExistsError
            ``suite_parts`` (or a folder in it) is a link or a file, or a folder the suite
            did not make (no ``settings.json`` of its own in it).
        """
        out = Path(out)
        folder = out / PARTS_DIR
        record = folder / SETTINGS_NAME
        fingerprint = json.loads(json.dumps(fingerprint, default=str))  # as it reads back
        if os.path.lexists(folder):
            if folder.is_symlink() or not folder.is_dir():
                raise FileExistsError(
                    f"{display_path(folder)} is not a folder, where the evaluation suite keeps its "
                    "finished parts; move it away or choose another --out"
                )
            old = read_record(record)
            if old is None or old.get("schema") != PARTS_SCHEMA:
                if any(folder.iterdir()):
                    raise FileExistsError(
                        f"{display_path(folder)} was not made by the evaluation suite (no settings.json "
                        "record in it); move it away or choose another --out"
                    )
            elif old.get("fingerprint") != fingerprint:
                if not overwrite:
                    raise SuiteSettingsChanged(
                        f"{display_path(out)} holds evaluation-suite results made with other settings "
                        f"({describe_change(old.get('fingerprint'), fingerprint)}); "
                        "pass --overwrite to replace them, or choose another --out"
                    )
                cls(folder, old.get("fingerprint") or {}).remove_parts()
        folder.mkdir(parents=True, exist_ok=True)
        body = {"schema": PARTS_SCHEMA, "fingerprint": fingerprint}
        if read_record(record) != body:
            atomic_write_bytes(record, json.dumps(body, indent=1).encode("utf-8"))
        return cls(folder, fingerprint)

    def image_folder(self, image_digest: str) -> Path:
        if not _DIGEST.match(image_digest):
            raise ValueError(f"not an image digest: {image_digest!r}")
        return self.folder / image_digest

    def path(self, family: str, image_digest: str, method: str) -> Path:
        """Where the part of ``family`` for an image and a method is kept."""
        if family not in PART_FAMILIES:
            raise ValueError(f"not a kept family: {family!r}")
        return self.image_folder(image_digest) / f"{family}.{safe_method(method)}.npz"

    def full_key(self, key: dict) -> dict:
        """``key`` with the fingerprint's digest (what a stored part must match)."""
        return json.loads(json.dumps({**key, "fingerprint": self.tag}, default=str))

    def read(self, family: str, image_digest: str, method: str, key: dict) -> object | None:
        """The data of a stored part whose key is ``key`` (with the fingerprint), else None.

        A part that is missing, unreadable or of another key is None (computed again
        and replaced); a link in its place is refused.
        """
        path = self.path(family, image_digest, method)
        folder = path.parent
        if folder.is_symlink() or path.is_symlink():
            raise FileExistsError(
                f"{display_path(path if path.is_symlink() else folder)} is a symbolic link where the "
                "evaluation suite keeps a part; remove it or choose another --out"
            )
        try:
            blob = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        try:
            stored, data = unpack(blob)
        except ValueError:
            return None
        return data if stored == self.full_key(key) else None

    def write(self, family: str, image_digest: str, method: str, blob: bytes) -> Path:
        """Keep a part (``blob`` from :func:`pack` with :meth:`full_key`), atomically."""
        path = self.path(family, image_digest, method)
        if path.parent.is_symlink():
            raise FileExistsError(
                f"{display_path(path.parent)} is a symbolic link where the evaluation suite keeps its "
                "parts; remove it or choose another --out"
            )
        path.parent.mkdir(exist_ok=True)
        return atomic_write_bytes(path, blob)

    def sweep(self, expected: list[Path]) -> list[Path]:
        """Remove the temporaries an interrupted write of the ``expected`` parts left; returns them."""
        found = leftover_temporaries(expected)
        for p in found:
            p.unlink(missing_ok=True)
        return found

    def remove_parts(self) -> int:
        """Remove every part file (and temporary) the suite wrote here, by name; returns how many.

        Only ``<16 hex digits>/<family>.<method>.npz`` files, their temporaries, and the
        folders left empty by that, are removed; anything else stays.
        """
        removed = 0
        if not self.folder.is_dir() or self.folder.is_symlink():
            return 0
        for sub in sorted(self.folder.iterdir()):
            if not _DIGEST.match(sub.name) or sub.is_symlink() or not sub.is_dir():
                continue
            names = [sub / e.name for e in os.scandir(sub) if _PART.match(e.name)]
            for p in [*names, *leftover_temporaries(names)]:
                if p.is_file() and not p.is_symlink():
                    p.unlink()
                    removed += 1
            try:
                sub.rmdir()
            except OSError:  # something else is in it: kept
                pass
        return removed


def describe_change(old: dict | None, new: dict) -> str:
    """The fingerprint entries that differ, in words (``seed: 0 -> 1``), at most three."""
    if not isinstance(old, dict):
        return "an unreadable record"
    flat_old, flat_new = _flatten(old), _flatten(new)
    keys = [k for k in sorted(set(flat_old) | set(flat_new)) if flat_old.get(k) != flat_new.get(k)]
    shown = [f"{k}: {_short(flat_old.get(k))} -> {_short(flat_new.get(k))}" for k in keys[:3]]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 24 else text[:21] + "..."
