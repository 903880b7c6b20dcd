"""Explain many images into a folder: streaming, atomic, collision-free, resumable.

One image is in memory at a time. Its outputs are written as soon as it is
explained, each file atomically, the JSON record last: an image counts as done
only when its JSON exists and records the same model hash and settings. A
failed image is reported in one line, recorded in ``run.json`` and the run
goes on. A rerun with the same model and settings skips finished images; a
run with another model or other settings into a folder that holds results
is refused (unless ``overwrite``), so one result never silently replaces
another. Output names mirror the input paths relative to their common root,
so ``d1/a.png`` and ``d2/a.png`` cannot collide.

Per image ``<id>``: ``<id>_heatmap.png``, ``<id>_overlay.png``,
``<id>_relevance.npy`` (H x W float64, raw) and ``<id>.json``, staged as
hidden temporaries and renamed into place together, the JSON last.
"""

from __future__ import annotations

import glob
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_bytes, leftover_temporaries
from ._lock import FolderLock
from ._validation import display_path
from .exceptions import BowlrpError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}
OUTPUT_SUFFIXES = ("_heatmap.png", "_overlay.png", "_relevance.npy", ".json")
RUN_FILE = "run.json"
RECORD_VERSION = 1


class InputError(BowlrpError, ValueError):
    """The images to process could not be found or named."""


class SettingsMismatch(BowlrpError, ValueError):
    """An output folder holds results made with another model or other settings."""


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


def collect_inputs(specs: Sequence[str], recursive: bool = True,
                   exclude: str | os.PathLike | None = None) -> list[ImageInput]:
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
            files = sorted(q for q in walker if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in q.relative_to(p).parts))
            if not files:
                raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in directory "
                                 f"{display_path(p)}")
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


def output_paths(out: Path, image_id: str) -> dict[str, Path]:
    """The four output files of one image id."""
    base = out / image_id
    return {
        "heatmap": base.parent / f"{base.name}_heatmap.png",
        "overlay": base.parent / f"{base.name}_overlay.png",
        "relevance": base.parent / f"{base.name}_relevance.npy",
        "json": base.parent / f"{base.name}.json",
    }


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_done(out: Path, item: ImageInput, key: dict) -> bool:
    """True when ``item``'s outputs are complete and were made with ``key`` (model + settings)."""
    paths = output_paths(out, item.id)
    record = _read_json(paths["json"])
    if record is None or record.get("run_key") != key:
        return False
    return all(paths[k].is_file() for k in ("relevance",)) and (
        key.get("deferred_pictures") or all(paths[k].is_file() for k in ("heatmap", "overlay")))


@dataclass(kw_only=True)
class RunCounts:
    """What a run over many images did: the ids explained, skipped and failed, its status."""

    run_key: dict
    total: int = 0
    explained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    status: str = "running"
    seconds: float = 0.0


@dataclass(kw_only=True)
class RunSummary(RunCounts):
    """What a batch run did; written to ``run.json`` in the output folder."""

    out: str

    def as_dict(self) -> dict:
        return {"format": "bowlrp-explain-run", "version": RECORD_VERSION, "status": self.status,
                "out": self.out, "run_key": self.run_key, "total": self.total,
                "explained": len(self.explained), "skipped": len(self.skipped),
                "failed": self.failed, "seconds": round(self.seconds, 3)}


def _write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode("utf-8"))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _check_folder(out: Path, key: dict, overwrite: bool) -> None:
    previous = _read_json(out / RUN_FILE)
    if previous is None or overwrite:
        return
    if previous.get("run_key") != key:
        old, new = previous.get("run_key") or {}, key
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise SettingsMismatch(
            f"{display_path(out)} holds results of another run (differs in {', '.join(changed)}); "
            "choose another output folder, or pass overwrite (--overwrite) to replace them")


def picture_bytes(image, heatmap: np.ndarray, scale: float, colormap: str) -> tuple[bytes, bytes]:
    """PNG bytes of the heatmap (with a ticked colour bar) and of the overlay of one image."""
    from . import image as pictures

    shown = np.clip(heatmap / scale, -1, 1) if scale > 0 else np.zeros_like(heatmap)
    heat = pictures.with_colorbar(pictures.colorize(shown, colormap) / 255.0, colormap, scale)
    return pictures.encode_png(heat), pictures.encode_png(pictures.overlay(image, shown, colormap))


def write_pictures(paths: dict[str, Path], image, heatmap: np.ndarray, scale: float,
                   colormap: str) -> None:
    """The heatmap and overlay PNGs of one image, each written atomically."""
    heat, over = picture_bytes(image, heatmap, scale, colormap)
    atomic_write_bytes(paths["heatmap"], heat)
    atomic_write_bytes(paths["overlay"], over)


def publish(files: dict[Path, bytes]) -> None:
    """Write several files as one result: all staged as hidden temporaries, then renamed in order.

    The last file (the record) appears last. Ctrl-C and SIGTERM are held
    back while the files are staged and renamed (and act right after), so
    they never leave a temporary or a partial result; an exception while
    staging removes the temporaries; a kill leaves only hidden ``.tmp``
    files, which the next run removes.
    """
    import signal
    import tempfile

    from ._atomic import TEMP_SUFFIX, file_mode

    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        staged: list[tuple[str, Path]] = []
        try:
            for path, data in files.items():
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
                staged.append((tmp, path))
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                    os.chmod(fh.fileno(), file_mode())
        except BaseException:
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def explain_image(model, item: ImageInput, explain_kwargs: dict | None = None):
    """The per-image step every output shares: read one image and explain it.

    Used by :func:`explain_to_folder`, by the relevance store
    (:func:`bowlrp.store.explain_into_store`) and by the Dask tasks of
    :mod:`bowlrp.distributed`, so all of them produce the same numbers.

    Parameters
    ----------
    model : fitted Pipeline
    item : ImageInput
    explain_kwargs : dict
        Passed to ``model.explain`` (``target``, ``rules``, ``tile``, ``stride``);
        ``target`` may be a list of labels (one forward pass, one explanation each).

    Returns
    -------
    image : ndarray (H, W) float
    explanations : list of Explanation, one per target (one when ``target`` is not a list)
    """
    from ._validation import as_float_image

    image = as_float_image(item.path)
    result = model.explain([image], **(explain_kwargs or {}))[0]
    return image, list(result) if isinstance(result, list) else [result]


def failure_message(item: ImageInput, exc: BaseException) -> str:
    """One line naming the image and what went wrong."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not message.startswith(str(item.path)) and str(item.path) not in message:
        message = f"{display_path(item.path)}: {message}"
    return message


def explain_to_folder(model, inputs: Sequence[ImageInput], out, *, run_key: dict,
                      explain_kwargs: dict | None = None, colormap: str = "bwr",
                      normalize: str = "image", percentile: float | None = 99.5,
                      overwrite: bool = False, extra: dict | None = None,
                      progress: bool = True,
                      report: Callable[[str], None] | None = None, store=None) -> RunSummary:
    """Explain ``inputs`` one by one into ``out``; see the module docstring.

    Parameters
    ----------
    model : fitted Pipeline
    inputs : list of ImageInput (from :func:`collect_inputs`)
    out : folder (created); locked for the duration of the run
    run_key : dict
        Everything that changes a result (model hash, target, rules, tiles,
        display settings); stored in every record and compared on resume.
    explain_kwargs : dict
        Passed to ``model.explain`` (``target``, ``rules``, ``tile``, ``stride``).
    normalize : {"image", "global"}
        Display scale per image, or one scale for the whole set (pictures are
        then drawn after all images are explained, from the saved maps).
    percentile : float or None
        Display clipping, see :func:`bowlrp.image.display_scale`.
    report : callable(str) or None
        Receives one line per image (done, skipped or failed).
    store : bowlrp.store.RelevanceStore or None
        A second output of the same loop: each image's record is also written
        into this store (opened and locked by the caller); an image counts as
        done only when it is done in both.

    Returns
    -------
    RunSummary
    """
    from tqdm.auto import tqdm

    from .image import display_scale

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = {**run_key, "deferred_pictures": normalize == "global", "normalize": normalize,
           "percentile": percentile, "colormap": colormap}
    say = report or (lambda line: None)
    summary = RunSummary(out=str(out), run_key=key, total=len(inputs))
    started = time.perf_counter()
    with FolderLock(out, "bowlrp-explain"):
        for stale in leftover_temporaries(out):  # from a run killed mid-write; we hold the lock
            stale.unlink(missing_ok=True)
        _check_folder(out, key, overwrite)
        _write_json(out / RUN_FILE, summary.as_dict())
        try:
            bar = tqdm(inputs, desc="explaining", unit="image", disable=not progress,
                       file=sys.stderr)
            for item in bar:
                paths = output_paths(out, item.id)
                if not overwrite and is_done(out, item, key) and (store is None or
                                                                  store.is_done(item.id)):
                    summary.skipped.append(item.id)
                    say(f"{display_path(item.path)}: done before, skipped")
                    continue
                try:
                    paths["json"].parent.mkdir(parents=True, exist_ok=True)
                    image, (e,) = explain_image(model, item, explain_kwargs)
                    files = {paths["relevance"]: _npy_bytes(e.heatmap)}
                    scale = display_scale(e.heatmap, percentile)
                    if normalize == "image":
                        files[paths["heatmap"]], files[paths["overlay"]] = picture_bytes(
                            image, e.heatmap, scale, colormap)
                    entered = e.score - e.bias_relevance - e.residual
                    record = {
                        **e.summary(), **(extra or {}), "image": display_path(item.path),
                        "id": item.id, "run_key": key, "heatmap_max_abs": float(np.abs(e.heatmap).max()),
                        "display_scale": scale,
                        "absorbed_fraction": float(e.absorbed / entered) if entered else 0.0,
                    }
                    files[paths["json"]] = json.dumps(record, indent=2, default=str).encode("utf-8")
                    publish(files)  # the four files appear together, the record last
                    if store is not None:
                        store.write(item, [e], model_hash=str(key.get("model_sha256", "")))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:
                    message = failure_message(item, exc)
                    if store is not None:
                        store.write_failure(item, message)
                    summary.failed.append({"image": display_path(item.path), "id": item.id,
                                           "error": message})
                    say(f"error: {message}")
                    continue
                summary.explained.append(item.id)
                say(f"{display_path(item.path)}: target={e.target} score={e.score:+.4f} "
                    f"bias={e.bias_relevance:+.4f} residual={e.residual:+.2e} -> "
                    f"{display_path(paths['heatmap'])}")
            if normalize == "global":
                _draw_global(out, inputs, summary, key, percentile, colormap)
            summary.status = "failed" if summary.failed else "complete"
        except KeyboardInterrupt:
            summary.status = "interrupted"
            raise
        finally:
            summary.seconds = time.perf_counter() - started
            _write_json(out / RUN_FILE, summary.as_dict())
    return summary


def _draw_global(out: Path, inputs, summary: RunSummary, key: dict, percentile, colormap) -> None:
    """Second pass for ``normalize="global"``: one display scale over all finished maps."""
    from ._validation import as_float_image
    from .image import display_scale

    done = [i for i in inputs if is_done(out, i, key)]
    samples = []  # at most ~100k values per map, so the scale costs bounded memory
    for item in done:
        values = np.abs(np.load(output_paths(out, item.id)["relevance"], allow_pickle=False)).ravel()
        samples.append(values[:: max(1, values.size // 100_000)])
    scale = display_scale(samples, percentile)
    del samples
    for item in done:
        paths = output_paths(out, item.id)
        heatmap = np.load(paths["relevance"], allow_pickle=False)
        write_pictures(paths, as_float_image(item.path), heatmap, scale, colormap)
