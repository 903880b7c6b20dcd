"""``bowlrp-spray``: Spectral Relevance Analysis over the heatmaps of ``bowlrp-explain``.

    bowlrp-spray --heatmaps heatmaps/ --images photos/ --out report/
    python -m bowlrp.spray --heatmaps heatmaps/ --out report/ --clusters 3

Reads every ``*_relevance.npy`` under ``--heatmaps`` (recursively) with the
``.json`` beside it, groups the maps by the explained target, runs SpRAy per
class and writes ``index.html``, ``clusters.csv``, ``spectrum.json`` and the
pictures into ``--out``. The report appears complete or not at all: it is
built in a hidden temporary directory beside ``--out`` and renamed into place.

A bad record (unreadable or corrupt files, missing arrays, a name that is not
UTF-8, an image outside ``--images``) is skipped with one line on stderr and
listed in the report; the others are analysed. Exit code 0: every record was
used; 1: the report was written but some records were skipped (as
``bowlrp-explain`` does when some images fail); 2: nothing could be analysed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ._args import SPRAY_NORMALIZE, ArgumentParser, CLIError, import_work, work_attribute

if TYPE_CHECKING:  # imported by import_work once the arguments are parsed (fast --help)
    from .._utils.validation import display_path
    from ..runs import open_store
    from ..spray.heatmap_files import (
        SkippedRecord,
        attach_images,
        attach_recorded_images,
        find_heatmaps,
        group_by_target,
    )
    from ..spray.report import analyse_heatmaps, analyse_store, write_report
    from ._common import run_command

#: what a run uses, imported after the arguments are parsed: module -> names
WORK = {
    "bowlrp._utils.validation": ("display_path",),
    "bowlrp.runs": ("open_store",),
    "bowlrp.spray.heatmap_files": (
        "SkippedRecord",
        "attach_images",
        "attach_recorded_images",
        "find_heatmaps",
        "group_by_target",
    ),
    "bowlrp.spray.report": ("analyse_heatmaps", "analyse_store", "write_report"),
    "bowlrp.cli._common": ("run_command",),
}

__all__ = ["CLIError", "build_parser", "main", "run"]


def __getattr__(name: str):
    return work_attribute(globals(), WORK, name)


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="bowlrp-spray",
        description="Spectral Relevance Analysis (SpRAy): cluster the relevance maps written by "
        "bowlrp-explain --out DIR to find the strategies a model uses, per class.",
        epilog="Either --heatmaps DIR (bowlrp-explain --out) or --store OUT.zarr "
        "(bowlrp-explain --store; its pooled maps are used when --grid is the store's).",
    )
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--heatmaps", metavar="DIR", help="directory written by bowlrp-explain --out (searched recursively)"
    )
    source.add_argument(
        "--store", metavar="OUT.zarr", help="relevance store written by bowlrp-explain --store (path or URL)"
    )
    ap.add_argument(
        "--target",
        "-t",
        action="append",
        default=[],
        help="with --store: class to analyse (repeatable; default: every target)",
    )
    ap.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="directory of the explained images (overlays in the example strips); with --store "
        "the images the store records are used when it is not given",
    )
    ap.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="DIR",
        help="report directory to create (must not exist or be empty)",
    )
    ap.add_argument(
        "--grid",
        type=int,
        default=None,
        help="pooling grid side (default 20; with --store: the store's grid)",
    )
    default_norm = SPRAY_NORMALIZE
    ap.add_argument(
        "--normalize",
        choices=["l1", "l2", "none"],
        default=default_norm,
        help=f"per-map normalisation of the pooled maps (default {default_norm})",
    )
    ap.add_argument("--neighbors", type=int, default=None, help="k of the k-NN graph (default ceil(ln n))")
    ap.add_argument("--eigenvalues", type=int, default=10, help="eigenvalues computed (default 10)")
    ap.add_argument("--clusters", default="eigengap", help="'eigengap' (default) or a number of clusters")
    ap.add_argument("--perplexity", type=float, default=7.0, help="t-SNE perplexity (default 7)")
    ap.add_argument(
        "--early-exaggeration", type=float, default=6.0, help="t-SNE early exaggeration (default 6)"
    )
    ap.add_argument("--examples", type=int, default=8, help="example images per cluster (default 8)")
    ap.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


def _spray_params(args) -> dict:
    if args.clusters == "eigengap":
        clusters = "eigengap"
    else:
        try:
            clusters = int(args.clusters)
        except ValueError:
            raise CLIError(
                f"--clusters must be 'eigengap' or a positive number, got {args.clusters!r}"
            ) from None
        if clusters < 1:
            raise CLIError(f"--clusters must be positive, got {clusters}")
    for name in ("grid", "eigenvalues", "examples"):
        if getattr(args, name) is not None and getattr(args, name) < (2 if name == "eigenvalues" else 1):
            raise CLIError(f"--{name} is too small: {getattr(args, name)}")
    if args.neighbors is not None and args.neighbors < 1:
        raise CLIError(f"--neighbors must be positive, got {args.neighbors}")
    if args.perplexity <= 0 or args.early_exaggeration <= 0:
        raise CLIError("--perplexity and --early-exaggeration must be positive")
    return {
        "grid": args.grid,
        "normalize": None if args.normalize == "none" else args.normalize,
        "n_neighbors": args.neighbors,
        "n_eigenvalues": args.eigenvalues,
        "n_clusters": clusters,
        "perplexity": args.perplexity,
        "early_exaggeration": args.early_exaggeration,
        "random_state": args.random_state,
    }


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CLIError(f"--out {out} exists and is not an empty directory; choose a new one")


def _draw_over_recorded_images(analyses, quiet: bool) -> None:
    """Examples over the images the store records; one line when some cannot be read."""
    records = [r for a in analyses for r in a.records if r.image is None]
    found = attach_recorded_images(records)
    if found < len(records) and not quiet:
        print(
            f"bowlrp-spray: {len(records) - found} of the {len(records)} images the store records "
            "are missing or unreadable; their examples are bare heatmaps (--images DIR names their folder)",
            file=sys.stderr,
        )


def run(args) -> int:
    import_work(globals(), WORK)  # when run() is called without main()
    params = _spray_params(args)
    out = Path(args.out)
    _check_out(out)
    problems: list[SkippedRecord] = []

    def on_skip(record: SkippedRecord) -> None:
        if record in problems:  # a store record of several classes is looked at once per class
            return
        problems.append(record)
        print(f"bowlrp-spray: {record.line()}", file=sys.stderr)

    if args.store is not None:
        st = open_store(args.store)
        analyses, skipped = analyse_store(
            st, params, args.target or None, quiet=args.quiet, on_skip=on_skip, images=args.images
        )
        if args.images is None:
            _draw_over_recorded_images(analyses, args.quiet)
    else:
        if args.target:
            raise CLIError("--target selects classes of a --store; --heatmaps analyses every class")
        params["grid"] = params["grid"] or 20
        records = find_heatmaps(args.heatmaps, on_skip)
        if args.images is not None:
            records = attach_images(records, args.images, on_skip)
        groups = group_by_target(records)
        analyses, skipped = analyse_heatmaps(groups, params, quiet=args.quiet, on_skip=on_skip)
    for target, n in skipped.items():
        print(
            f"bowlrp-spray: skipping class {display_path(target)!r}: {n} map(s), need at least 3",
            file=sys.stderr,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_report(
            tmp,
            analyses,
            skipped,
            args.examples,
            source=display_path(args.heatmaps or args.store),
            quiet=args.quiet,
            skipped_records=list(problems),
            on_skip=on_skip,
        )
        _check_out(out)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for a in analyses:
        sizes = ", ".join(str(int((a.spray.labels_ == c).sum())) for c in range(a.spray.n_clusters_))
        print(
            f"class {a.target}: {len(a.records)} maps, {a.spray.n_clusters_} clusters ({sizes}), "
            f"eigengap {a.spray.eigengap_:.4f}"
        )
    print(f"report: {display_path(out / 'index.html')}")
    if problems:
        print(
            f"bowlrp-spray: {len(problems)} record(s) skipped or drawn without their image "
            "(listed in the report); exit code 1",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``bowlrp-spray``; the arguments are parsed before the work is imported."""
    args = build_parser().parse_args(argv)
    import_work(globals(), WORK)
    return run_command("bowlrp-spray", run, args)


if __name__ == "__main__":
    sys.exit(main())
