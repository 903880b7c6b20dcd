"""Command line: explain images with a saved bowlrp model.

    python -m bowlrp.explain --image x.jpg --model voc_horse.pkl [--target horse]
    bowlrp-explain --image 'photos/*.jpg' --model m.pkl --rule epsilon=1 --out heatmaps/

For each image writes ``<stem>_heatmap.png``, ``<stem>_overlay.png``,
``<stem>_relevance.npy`` (H x W float64) and ``<stem>.json`` (score, target,
bias relevance, residual, rules, model hash) into ``--out`` and prints one
line. Every input is checked before anything is written; files appear only
complete (written to temporary names, then renamed).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


class CLIError(Exception):
    """An error reported as one line with a non-zero exit code."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bowlrp-explain",
        description="Explain the predictions of a bowlrp model pixel by pixel (LRP).",
        epilog="Rules: epsilon=E, alphabeta=A,B, absz, wta (max pooling), flat, siftbins, "
               "decomposition, taylor. Example: --rule epsilon=1 --rule siftbins",
    )
    ap.add_argument("--image", "-i", nargs="+", required=True,
                    help="image files, glob patterns (quote them) or directories")
    ap.add_argument("--model", "-m", required=True, help="model file written by bowlrp.save")
    ap.add_argument("--target", "-t", default=None,
                    help="class name or index to explain (default: the predicted class)")
    ap.add_argument("--rule", action="append", default=[], help="LRP rule (repeatable)")
    ap.add_argument("--tile", type=int, default=None, help="explain as tiles of this side")
    ap.add_argument("--stride", type=int, default=None, help="tile stride (default: --tile)")
    ap.add_argument("--colormap", default="bwr", help="bwr (default), seismic, jet, coolwarm")
    ap.add_argument("--normalize", choices=["image", "global"], default="image",
                    help="scale heatmaps by max |R| per image or over all images")
    ap.add_argument("--out", "-o", default=".", help="output directory (default: .)")
    ap.add_argument("--trusted", action="store_true",
                    help="allow loading a pickle model file (can run arbitrary code!)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


def expand_images(specs: list[str]) -> list[Path]:
    """Paths from file names, globs and directories, in order, without duplicates."""
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(f"no images in directory {p}")
        elif any(ch in spec for ch in "*?["):
            found = sorted(Path(q) for q in glob.glob(spec))
            if not found:
                raise CLIError(f"no file matches {spec!r}")
        else:
            if not p.exists():
                raise CLIError(f"image file not found: {p}")
            found = [p]
        out += [q for q in found if q not in out]
    return out


def load_pipeline(path, trusted: bool = False):
    """A fitted Pipeline from a model file (one-line errors for anything else)."""
    from ..io import load

    model = load(path, trusted=trusted)
    if not hasattr(model, "explain"):
        raise CLIError(f"{path} holds a {type(model).__name__}, not a bowlrp Pipeline")
    return model


def resolve_target(model, text):
    """A class label from a name or index given on the command line."""
    if text is None:
        return None
    classes = list(model.classes_)
    for c in classes:
        if str(c) == text:
            return c
    try:
        index = int(text)
    except ValueError:
        raise CLIError(f"unknown target {text!r}; classes are {[str(c) for c in classes]}") from None
    if not 0 <= index < len(classes):
        raise CLIError(f"target index {index} out of range; the model has {len(classes)} classes")
    return classes[index]


def _atomic_write(path: Path, write) -> Path:
    """Run ``write(temporary path)`` next to ``path``; return the temporary path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(out: Path, stem: str, image, explanation, heatmap_norm, colormap, extra) -> None:
    """All four files of one image, renamed into place only once all are written."""
    from .. import image as pictures

    def png(picture):
        return lambda tmp: pictures.write_png(tmp, picture)

    def npy(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, explanation.heatmap)

    summary = {**explanation.summary(), **extra}

    def js(tmp):
        Path(tmp).write_text(json.dumps(summary, indent=2, default=str))

    targets = {
        out / f"{stem}_heatmap.png": png(pictures.with_colorbar(
            pictures.colorize(heatmap_norm, colormap) / 255.0, colormap)),
        out / f"{stem}_overlay.png": png(pictures.overlay(image, heatmap_norm, colormap)),
        out / f"{stem}_relevance.npy": npy,
        out / f"{stem}.json": js,
    }
    temps = []
    try:
        for final, writer in targets.items():
            temps.append((_atomic_write(final, writer), final))
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in temps:
        os.replace(tmp, final)


def run(args) -> int:
    from tqdm.auto import tqdm

    from .. import image as pictures
    from .._validation import as_float_image
    from ..io import file_hash
    from ..rules import parse_rule

    rules = [parse_rule(r) for r in args.rule] or None
    if args.tile is not None and args.tile < 1 or args.stride is not None and args.stride < 1:
        raise CLIError("--tile and --stride must be positive")
    paths = expand_images(args.image)
    model = load_pipeline(args.model, args.trusted)
    target = resolve_target(model, args.target)
    images = [as_float_image(p) for p in paths]  # every image checked before any output
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_hash = file_hash(args.model)
    explanations = []
    for img in tqdm(images, desc="explaining", disable=len(paths) < 2, file=sys.stderr):
        e = model.explain([img], target=target, rules=rules, tile=args.tile, stride=args.stride)[0]
        explanations.append(e)
    normalized = pictures.normalize_heatmaps([e.heatmap for e in explanations], args.normalize)
    stems: dict[str, int] = {}
    for path, img, e, h in zip(paths, images, explanations, normalized):
        stem = path.stem
        if stem in stems:
            stems[stem] += 1
            stem = f"{stem}_{stems[stem]}"
        else:
            stems[stem] = 0
        extra = {"image": str(path), "model": str(args.model), "model_sha256": model_hash,
                 "normalize": args.normalize, "heatmap_max_abs": float(np.abs(e.heatmap).max())}
        write_outputs(out, stem, img, e, h, args.colormap, extra)
        print(f"{path}: target={e.target} score={e.score:+.4f} bias={e.bias_relevance:+.4f} "
              f"residual={e.residual:+.2e} -> {out / stem}_heatmap.png")
    return 0


def run_command(prog: str, run, args, interrupted: str = "interrupted") -> int:
    """Run a command; any error becomes one line on stderr and exit code 2 (--debug: raise)."""
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for people; --debug for the traceback
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    return run_command("bowlrp-explain", run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
