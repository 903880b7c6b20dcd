"""Safe model files: skops format, version and kind checks, no silent unpickling.

``save(model, "voc_horse.pkl")`` writes the skops (zip) format under the name
the user chose; ``load`` reads it without executing code: only types from
bowlrp, NumPy, SciPy and scikit-learn are accepted. A real pickle file is
loaded only with ``trusted=True`` (and a warning).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import warnings
from pathlib import Path

from ._version import __version__
from .exceptions import ModelFileError

FORMAT = "bowlrp-model"
_SAFE_PREFIXES = ("bowlrp.", "numpy.", "scipy.", "sklearn.", "builtins.", "collections.")


def _major_minor(version: str) -> tuple[int, int]:
    parts = str(version).split(".")
    return int(parts[0]), int(parts[1])


def save(model, path) -> Path:
    """Write ``model`` (fitted Pipeline or estimator) to ``path`` atomically, skops format."""
    import skops.io as sio

    path = Path(path)
    payload = {
        "format": FORMAT,
        "bowlrp_version": __version__,
        "kind": type(model).__name__,
        "config": getattr(model, "config", None),
        "model": model,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        sio.dump(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_hash(path) -> str:
    """SHA-256 of a file (identifies the model an explanation came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(path, trusted: bool = False):
    """Load a model written by :func:`save`.

    Parameters
    ----------
    path : str or Path
    trusted : bool
        Allow loading a real pickle file (it can execute arbitrary code), and
        types outside bowlrp/NumPy/SciPy/scikit-learn in a skops file.

    Raises
    ------
    ModelFileError
        Missing file, not a bowlrp model, untrusted pickle or content,
        or written by an incompatible bowlrp version.
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK":
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:
            raise ModelFileError(f"{path} is not a bowlrp model file ({exc})") from None
        unsafe = [t for t in untrusted if not t.startswith(_SAFE_PREFIXES)]
        if unsafe and not trusted:
            raise ModelFileError(
                f"{path} contains types bowlrp does not trust ({', '.join(unsafe[:3])}); "
                "pass trusted=True only if you trust its source"
            )
        try:
            payload = sio.load(path, trusted=untrusted)
        except Exception as exc:
            raise ModelFileError(f"{path} could not be read as a bowlrp model ({exc})") from None
    elif head[:1] == b"\x80":
        if not trusted:
            raise ModelFileError(
                f"{path} is a pickle file, which can run arbitrary code when loaded; "
                "re-save it with bowlrp.save, or load(..., trusted=True) if you trust its source"
            )
        warnings.warn(f"unpickling {path}: only do this for files you trust", stacklevel=2)
        with open(path, "rb") as fh:
            payload = pickle.load(fh)  # noqa: S301 - explicit trusted=True
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            return payload
    else:
        raise ModelFileError(f"{path} is not a bowlrp model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a bowlrp model file (no bowlrp header)")
    version = payload.get("bowlrp_version", "?")
    try:
        compatible = _major_minor(version) == _major_minor(__version__)
    except (ValueError, IndexError):
        compatible = False
    if not compatible:
        raise ModelFileError(
            f"{path} was written by bowlrp {version}; this is bowlrp {__version__}: "
            f"retrain the model or install bowlrp=={version}"
        )
    return payload["model"]


def model_info(path) -> dict:
    """Header of a model file (format, version, kind, config) without the model."""
    import skops.io as sio

    payload = sio.load(Path(path), trusted=sio.get_untrusted_types(file=Path(path)))
    return {k: v for k, v in payload.items() if k != "model"}
