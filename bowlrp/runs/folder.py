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
``<id>_relevance.npy`` (H x W float64, raw) and ``<id>.json`` (the names are
:mod:`.folder_layout`'s), staged as hidden temporaries and renamed into place
together, the JSON last.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import image as pictures
from .._utils.atomic import TEMP_SUFFIX, atomic_write_bytes, file_mode, leftover_temporaries, temporary_prefix
from .._utils.lock import FolderLock
from .._utils.signals import deferred_signals
from .._utils.validation import as_float_image, display_path
from .folder_layout import (
    RECORD_VERSION,
    RUN_FILE,
    check_outputs_are_ours,
    is_complete,
    is_own_record,
    output_paths,
    read_record,
)
from .inputs import ImageInput
from .step import RunCounts, SettingsMismatch, explain_image, failure_message


def is_done(out: Path, item: ImageInput, key: dict) -> bool:
    """True when ``item``'s outputs are complete and were made with ``key`` (model + settings)."""
    paths = output_paths(out, item.id)
    record = read_record(paths["json"])
    if not is_own_record(record, item.id) or record.get("run_key") != key or not is_complete(record):
        return False
    return all(paths[k].is_file() for k in ("relevance",)) and (
        key.get("deferred_pictures") or all(paths[k].is_file() for k in ("heatmap", "overlay"))
    )


@dataclass(kw_only=True)
class RunSummary(RunCounts):
    """What a batch run did; written to ``run.json`` in the output folder."""

    out: str

    def as_dict(self) -> dict:
        return {
            "format": "bowlrp-explain-run",
            "version": RECORD_VERSION,
            "status": self.status,
            "out": self.out,
            "run_key": self.run_key,
            "total": self.total,
            "explained": len(self.explained),
            "skipped": len(self.skipped),
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }


def _write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode("utf-8"))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _check_folder(out: Path, key: dict, overwrite: bool) -> None:
    previous = read_record(out / RUN_FILE)
    if previous is None or overwrite:
        return
    if previous.get("run_key") != key:
        old, new = previous.get("run_key") or {}, key
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise SettingsMismatch(
            f"{display_path(out)} holds results of another run (differs in {', '.join(changed)}); "
            "choose another output folder, or pass overwrite (--overwrite) to replace them"
        )


def check_run_folder(out, key: dict, overwrite: bool = False) -> None:
    """Refuse at once an output folder that holds another run's results (before a model is read).

    Only the entries of ``key`` are compared (the settings known before the model is
    loaded, such as ``model_sha256``, ``rules``, ``tile``); :func:`explain_to_folder`
    compares the whole key again.

    Raises
    ------
    SettingsMismatch
        ``out/run.json`` records other values for an entry of ``key`` and not ``overwrite``.
    """
    previous = read_record(Path(out) / RUN_FILE)
    if previous is None or overwrite or not isinstance(previous.get("run_key"), dict):
        return
    _check_folder(Path(out), {**previous["run_key"], **key}, overwrite)


def picture_bytes(image, heatmap: np.ndarray, scale: float, colormap: str) -> tuple[bytes, bytes]:
    """PNG bytes of the heatmap (with a ticked colour bar) and of the overlay of one image."""
    shown = np.clip(heatmap / scale, -1, 1) if scale > 0 else np.zeros_like(heatmap)
    heat = pictures.with_colorbar(pictures.colorize(shown, colormap) / 255.0, colormap, scale)
    over = pictures.overlay(image, heatmap, colormap, scale=scale)
    return pictures.encode_png(heat), pictures.encode_png(over)


def write_pictures(paths: dict[str, Path], image, heatmap: np.ndarray, scale: float, colormap: str) -> None:
    """The heatmap and overlay PNGs of one image, each written atomically."""
    heat, over = picture_bytes(image, heatmap, scale, colormap)
    atomic_write_bytes(paths["heatmap"], heat)
    atomic_write_bytes(paths["overlay"], over)


FLAT_WARNING = (
    "the image is flat (a single value in every channel, no gradients): every flat image gets the "
    "same score, and its heatmap says nothing about its content"
)


def is_flat(image: np.ndarray) -> bool:
    """True for an image with one value in every channel (all grey, black or white): no
    descriptor sees a gradient, so the model scores every such image the same."""
    image = np.asarray(image)
    return bool(
        image.size == 0
        or np.all(image.reshape(-1, *image.shape[2:]) == image.reshape(-1, *image.shape[2:])[0])
    )


def publish(files: dict[Path, bytes], claim: tuple[Path, bytes] | None = None) -> None:
    """Write several files as one result: all staged as hidden temporaries, then renamed in order.

    ``claim`` (the record's path and a claim record, ``"complete": false``) is
    renamed into place before everything else: from then on the files belong to
    bowlrp (:func:`bowlrp.runs.folder_layout.check_outputs_are_ours`). The last
    file (the record) appears last. Ctrl-C and SIGTERM are held back
    at the Python level while the files are staged and renamed, whichever thread
    the kernel delivers them to, and act right after
    (:func:`bowlrp._utils.signals.deferred_signals`), so they never leave a
    temporary or a partial result; an exception while staging removes the
    temporaries; a kill leaves only hidden ``.<name>.bowlrp-*.tmp`` files, which the
    next run into the folder removes.
    """
    with deferred_signals():
        staged: list[tuple[str, Path]] = []
        items = ([claim] if claim is not None else []) + list(files.items())
        try:
            for path, data in items:
                fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
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


def explain_to_folder(
    model,
    inputs: Sequence[ImageInput],
    out,
    *,
    run_key: dict,
    explain_kwargs: dict | None = None,
    colormap: str = "bwr",
    normalize: str = "image",
    percentile: float | None = 99.5,
    overwrite: bool = False,
    extra: dict | None = None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    store=None,
) -> RunSummary:
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
    store : bowlrp.runs.store.RelevanceStore or None
        A second output of the same loop: each image's record is also written
        into this store (opened and locked by the caller); an image counts as
        done only when it is done in both.

    Returns
    -------
    RunSummary
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = {
        **run_key,
        "deferred_pictures": normalize == "global",
        "normalize": normalize,
        "percentile": percentile,
        "colormap": colormap,
    }
    say = report or (lambda line: None)
    summary = RunSummary(out=str(out), run_key=key, total=len(inputs))
    started = time.perf_counter()
    with FolderLock(out, "bowlrp-explain"):
        # temporaries of this run's files that a run killed mid-write left (we hold the lock);
        # nothing else under `out` is touched
        ours = [out / RUN_FILE, *(p for item in inputs for p in output_paths(out, item.id).values())]
        for stale in leftover_temporaries(ours):
            stale.unlink(missing_ok=True)
        _check_folder(out, key, overwrite)
        _write_json(out / RUN_FILE, summary.as_dict())
        try:
            bar = tqdm(inputs, desc="explaining", unit="image", disable=not progress, file=sys.stderr)
            for item in bar:
                paths = output_paths(out, item.id)
                if not overwrite and is_done(out, item, key) and (store is None or store.is_done(item.id)):
                    summary.skipped.append(item.id)
                    say(f"{display_path(item.path)}: done before, skipped")
                    continue
                try:
                    check_outputs_are_ours(paths, item.id)  # a user's photo.json is never replaced
                    paths["json"].parent.mkdir(parents=True, exist_ok=True)
                    image, (e,) = explain_image(model, item, explain_kwargs)
                    files = {paths["relevance"]: _npy_bytes(e.heatmap)}
                    scale = pictures.display_scale(e.heatmap, percentile)
                    if normalize == "image":
                        files[paths["heatmap"]], files[paths["overlay"]] = picture_bytes(
                            image, e.heatmap, scale, colormap
                        )
                    entered = e.score - e.bias_relevance - e.residual
                    flat = is_flat(image)
                    record = {
                        **e.summary(),
                        **(extra or {}),
                        "image": display_path(item.path),
                        "id": item.id,
                        "run_key": key,
                        "heatmap_max_abs": float(np.abs(e.heatmap).max()),
                        "display_scale": scale,
                        "absorbed_fraction": float(e.absorbed / entered) if entered else 0.0,
                        "flat_image": flat,
                        "complete": True,
                    }
                    if flat:
                        record["warning"] = FLAT_WARNING
                        say(f"{display_path(item.path)}: {FLAT_WARNING}")
                    files[paths["json"]] = json.dumps(record, indent=2, default=str).encode("utf-8")
                    claim = {
                        "id": item.id,
                        "image": display_path(item.path),
                        "run_key": key,
                        "complete": False,
                    }
                    # the claim first, then the three files, the record last
                    publish(files, claim=(paths["json"], json.dumps(claim).encode("utf-8")))
                    if store is not None:
                        store.write(item, [e], model_hash=str(key.get("model_sha256", "")))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:
                    message = failure_message(item, exc)
                    if store is not None:
                        store.write_failure(item, message)
                    summary.failed.append({"image": display_path(item.path), "id": item.id, "error": message})
                    say(f"error: {message}")
                    continue
                summary.explained.append(item.id)
                say(
                    f"{display_path(item.path)}: target={e.target} score={e.score:+.4f} "
                    f"bias={e.bias_relevance:+.4f} residual={e.residual:+.2e} -> "
                    f"{display_path(paths['heatmap'])}"
                )
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
    done = [i for i in inputs if is_done(out, i, key)]
    samples = []  # at most ~100k values per map, so the scale costs bounded memory
    for item in done:
        values = np.abs(np.load(output_paths(out, item.id)["relevance"], allow_pickle=False)).ravel()
        samples.append(values[:: max(1, values.size // 100_000)])
    scale = pictures.display_scale(samples, percentile)
    del samples
    for item in done:
        paths = output_paths(out, item.id)
        heatmap = np.load(paths["relevance"], allow_pickle=False)
        write_pictures(paths, as_float_image(item.path), heatmap, scale, colormap)
