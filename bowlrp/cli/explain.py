"""Command line: explain images with a saved bowlrp model.

    python -m bowlrp.explain --image x.jpg --model voc_horse.pkl [--target horse]
    bowlrp-explain --image photos/ --model m.pkl --rule epsilon=1 --out heatmaps/

Images are explained one at a time and each image's files are written as soon
as it is done (atomically): ``<id>_heatmap.png`` (with a colour bar in
relevance units), ``<id>_overlay.png``, ``<id>_relevance.npy`` (H x W float64,
raw relevance) and ``<id>.json`` (score, target, bias relevance, residual,
absorbed share, rules, model hash). ``<id>`` is the image's path relative to
the inputs' common folder, without extension, so outputs mirror the input
tree and never collide. ``run.json`` summarises the run and lists failures.
A failed image is reported in one line and the run goes on (exit code 1 at
the end); bad arguments or model files stop at once (exit code 2). A rerun
skips images already explained with the same model and settings.

With ``--store OUT.zarr`` the maps go into one Zarr relevance store instead
(``bowlrp.runs.store``; several ``--target`` per forward pass), serially or on Dask
with ``--workers N`` (a local cluster) or ``--scheduler tcp://host:8786``::

    bowlrp-explain --images photos/ --model m.skops --store out.zarr --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING

from ._args import (
    COLORMAPS,
    DEFAULT_PERCENTILE,
    ArgumentParser,
    CLIError,
    import_work,
    percentile_arg,
    positive_int,
    work_attribute,
)

if TYPE_CHECKING:  # imported by import_work once the arguments are parsed (fast --help)
    from tqdm.auto import tqdm

    from .._utils.validation import display_path
    from ..explanation import check_tiling
    from ..model_files import file_hash
    from ..rules import parse_rule
    from ..runs.distributed import check_local_workers, explain_to_store, store_run_key
    from ..runs.folder import check_run_folder, explain_to_folder
    from ..runs.inputs import collect_inputs
    from ..runs.store import RelevanceStore, store_lock
    from ._common import load_pipeline, resolve_target, run_command

#: what a run uses, imported after the arguments are parsed: module -> names
WORK = {
    "tqdm.auto": ("tqdm",),
    "bowlrp._utils.validation": ("display_path",),
    "bowlrp.explanation": ("check_tiling",),
    "bowlrp.model_files": ("file_hash",),
    "bowlrp.rules": ("parse_rule",),
    "bowlrp.runs.distributed": ("check_local_workers", "explain_to_store", "store_run_key"),
    "bowlrp.runs.folder": ("check_run_folder", "explain_to_folder"),
    "bowlrp.runs.inputs": ("collect_inputs",),
    "bowlrp.runs.store": ("RelevanceStore", "store_lock"),
    "bowlrp.cli._common": ("load_pipeline", "resolve_target", "run_command"),
}

# re-exported for older imports
__all__ = ["CLIError", "build_parser", "load_pipeline", "main", "resolve_target", "run_command"]


def __getattr__(name: str):
    return work_attribute(globals(), WORK, name)


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="bowlrp-explain",
        description="Explain the predictions of a bowlrp model pixel by pixel (LRP).",
        epilog="Rules (as in the README): epsilon=E, epsilon=E,relative, alphabeta=A,B, absz, wta, "
        "contribution, integrated, integrated=N, neuralized, neuralized-gi, neuralized=hybrid,ETA, "
        "flat, siftbins, decomposition, decomposition=spread, taylor; or Python style "
        "'Epsilon(1.0)'. Example: --rule epsilon=0.1,relative --rule siftbins",
    )
    ap.add_argument(
        "--image",
        "--images",
        "-i",
        nargs="+",
        required=True,
        help="image files, directories (searched recursively) or quoted glob patterns",
    )
    ap.add_argument("--model", "-m", required=True, help="model file written by bowlrp.save")
    ap.add_argument(
        "--target",
        "-t",
        action="append",
        default=[],
        help="class name or index to explain (default: the predicted class); "
        "repeatable with --store: one heatmap per target from one forward pass",
    )
    ap.add_argument("--rule", action="append", default=[], help="LRP rule (repeatable)")
    ap.add_argument("--tile", type=positive_int, default=None, help="explain as tiles of this side")
    ap.add_argument("--stride", type=positive_int, default=None, help="tile stride (default: --tile)")
    ap.add_argument("--colormap", default="bwr", choices=COLORMAPS, help="colour map (default bwr)")
    ap.add_argument(
        "--normalize",
        choices=["image", "global"],
        default="image",
        help="display scale per image or shared by all images (default image)",
    )
    ap.add_argument(
        "--clip",
        type=percentile_arg,
        default=DEFAULT_PERCENTILE,
        metavar="PERCENTILE",
        help="the |R| percentile shown at full colour (default 99.5; 'max' = no clipping)",
    )
    ap.add_argument(
        "--out", "-o", default=None, help="output directory (default: . when no --store is given)"
    )
    ap.add_argument(
        "--store",
        default=None,
        metavar="OUT.zarr",
        help="write a Zarr relevance store (a path or an fsspec URL) instead of files",
    )
    ap.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --store: explain on a local Dask cluster of N processes",
    )
    ap.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="with --store: explain on a running Dask scheduler (tcp://host:8786)",
    )
    ap.add_argument(
        "--grid",
        type=positive_int,
        default=32,
        help="with --store: side of the pooled maps kept for SpRAy (default 32)",
    )
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of an earlier run made with another model or settings",
    )
    ap.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TYPE",
        help="allow this extra type in a skops model file (repeatable)",
    )
    ap.add_argument(
        "--trusted", action="store_true", help="allow loading a pickle model file (can run arbitrary code!)"
    )
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no per-image lines")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


def run(args) -> int:
    import_work(globals(), WORK)  # when run() is called without main()
    rules = [parse_rule(r) for r in args.rule] or None
    if args.stride is not None and args.tile is None:
        raise CLIError("--stride needs --tile")
    if args.tile is not None:
        check_tiling(args.tile, args.stride)  # before any image is read: one line, exit code 2
    if args.store is not None and (args.out is None or args.workers or args.scheduler):
        return run_store(args, rules)
    if args.workers is not None or args.scheduler is not None:
        raise CLIError("--workers and --scheduler need --store OUT.zarr")
    if len(args.target) > 1:
        raise CLIError("several --target need --store OUT.zarr (folder output holds one map per image)")
    args.out = "." if args.out is None else args.out
    inputs = _collect(args, args.image, args.out)
    known = {  # what the run key holds before the model is read: a refused run answers at once
        "model_sha256": file_hash(args.model),
        "rules": [repr(r) for r in rules or []],
        "tile": args.tile,
        "stride": args.stride,
    }
    check_run_folder(args.out, known, args.overwrite)
    model = load_pipeline(args.model, args.trusted, args.trust)
    target = resolve_target(model, args.target[0] if args.target else None)
    run_key = {
        "model_sha256": known["model_sha256"],
        "target": None if target is None else str(target),
        "rules": known["rules"],
        "tile": args.tile,
        "stride": args.stride,
    }

    report = _reporter(args)
    with contextlib.ExitStack() as stack:
        store = None
        if args.store is not None:  # files and a store from one loop (serial)
            stack.enter_context(store_lock(args.store, "bowlrp-explain"))
            store = RelevanceStore.create(
                args.store,
                store_run_key(run_key["model_sha256"], target, rules, args.tile, args.stride),
                grid=args.grid,
                overwrite=args.overwrite,
            )
        summary = _to_folder(args, model, inputs, run_key, target, rules, report, store)
    if summary.failed:
        print(
            f"bowlrp-explain: {len(summary.failed)} of {summary.total} images failed "
            f"(listed in {display_path(args.out)}/run.json)",
            file=sys.stderr,
        )
        return 1
    return 0


def _collect(args, specs, out):
    """The inputs; one line on stderr when pictures of an earlier run below ``out`` are left out."""
    skipped = []
    inputs = collect_inputs(specs, exclude=out, on_skip=skipped.append)
    if skipped and not args.quiet:
        print(
            f"bowlrp-explain: left out {len(skipped)} picture(s) that bowlrp wrote into "
            f"{display_path(out)} (e.g. {display_path(skipped[0])}); name them to explain them",
            file=sys.stderr,
        )
    return inputs


def _to_folder(args, model, inputs, run_key, target, rules, report, store):
    return explain_to_folder(
        model,
        inputs,
        args.out,
        run_key=run_key,
        explain_kwargs={"target": target, "rules": rules, "tile": args.tile, "stride": args.stride},
        colormap=args.colormap,
        normalize=args.normalize,
        percentile=args.clip,
        overwrite=args.overwrite,
        extra={"model": display_path(args.model), "model_sha256": run_key["model_sha256"]},
        progress=not args.quiet and len(inputs) > 1,
        report=report,
        store=store,
    )


def _reporter(args):
    def report(line: str) -> None:
        if not args.quiet or line.startswith("error:"):
            try:
                tqdm.write(line, file=sys.stderr if line.startswith("error:") else sys.stdout)
            except BrokenPipeError:  # a reader such as `| head` went away: keep working silently
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                args.quiet = True

    return report


def run_store(args, rules) -> int:
    """``--store``: explain into a Zarr relevance store, serially or on Dask (bowlrp.runs.distributed)."""
    if args.out is not None:
        raise CLIError("--out with --store runs in one process; drop --workers / --scheduler")
    if args.workers is not None and args.scheduler is not None:
        raise CLIError("--workers and --scheduler exclude each other")
    if args.workers is not None:
        check_local_workers(args.workers)  # before the model is read: one line, exit code 2
    if args.normalize != "image":
        raise CLIError("--normalize global applies to --out pictures, not to a store")
    model = load_pipeline(args.model, args.trusted, args.trust)  # fail early, resolve targets
    targets = [resolve_target(model, t) for t in args.target] or None
    inputs = collect_inputs(args.image, exclude=args.store if "://" not in args.store else None)
    summary = explain_to_store(
        inputs,
        args.model if args.workers or args.scheduler else model,
        args.store,
        targets=targets,
        rules=rules,
        tile=args.tile,
        stride=args.stride,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet and len(inputs) > 1,
        overwrite=args.overwrite,
        grid=args.grid,
        trusted=args.trusted,
        trust=args.trust,
        model_hash=file_hash_of(args.model),
        report=_reporter(args),
    )
    if not args.quiet:
        print(
            f"{display_path(args.store)}: {len(summary.explained)} explained, "
            f"{len(summary.skipped)} done before, {len(summary.failed)} failed "
            f"({summary.seconds:.1f} s)"
        )
    if summary.failed:
        print(
            f"bowlrp-explain: {len(summary.failed)} of {summary.total} images failed "
            f"(bowlrp.runs.store.open({args.store!r}).failures() lists them)",
            file=sys.stderr,
        )
        return 1
    return 0


def file_hash_of(path) -> str:
    return file_hash(path)


def main(argv=None) -> int:
    """Run ``bowlrp-explain``; the arguments are parsed before the work is imported."""
    args = build_parser().parse_args(argv)
    import_work(globals(), WORK)
    return run_command("bowlrp-explain", run, args)


if __name__ == "__main__":
    sys.exit(main())
