"""``bowlrp-spray``: Spectral Relevance Analysis over the heatmaps of ``bowlrp-explain``.

    bowlrp-spray --heatmaps heatmaps/ --images photos/ --out report/
    python -m bowlrp.spray --heatmaps heatmaps/ --out report/ --clusters 3
    bowlrp-spray --heatmaps heatmaps/ --out report/ --export-virelay project/ --model m.skops
    virelay project/project.yaml        # ViRelAy (pip install 'bowlrp[virelay]')
    bowlrp-spray --store out.zarr --out report/ --workers 2     # on a local Dask cluster

Reads every ``*_relevance.npy`` under ``--heatmaps`` (recursively) with the
``.json`` beside it, groups the maps by the explained target, runs SpRAy per
class and writes ``index.html``, ``clusters.csv``, ``spectrum.json`` and the
pictures into ``--out``. The report appears complete or not at all: it is
built in a hidden temporary directory beside ``--out`` and renamed into place.
``--export-virelay DIR`` also writes the analyses as a ViRelAy project
(:mod:`bowlrp.spray.virelay`), labelled with the class names of ``--model``
when it is given; ``DIR`` must be new, empty, or an earlier export (replaced).

A bad record (unreadable or corrupt files, missing arrays, a name that is not
UTF-8, an image outside ``--images``) is skipped with one line on stderr and
listed in the report; the others are analysed. Exit code 0: every record was
used; 1: the report was written but some records were skipped (as
``bowlrp-explain`` does when some images fail); 2: nothing could be analysed.

``--workers N`` (a local Dask cluster) or ``--scheduler ADDRESS`` reads and
pools the maps on the workers in blocks, builds the k-NN graph in row blocks
and runs the clusterings and t-SNE as tasks; the eigenvectors are solved in
this process (:mod:`bowlrp.spray.distributed`). The result is the same.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ._args import SPRAY_NORMALIZE, ArgumentParser, CLIError, import_work, positive_int, work_attribute

if TYPE_CHECKING:  # imported by import_work once the arguments are parsed (fast --help)
    from .._utils.validation import display_path
    from ..runs import open_store
    from ..runs.distributed import check_local_workers, dask_client
    from ..spray.analyses import CLUSTERINGS, EMBEDDINGS
    from ..spray.heatmap_files import (
        SkippedRecord,
        attach_images,
        attach_recorded_images,
        find_heatmaps,
        group_by_target,
    )
    from ..spray.report import analyse_heatmaps, analyse_store, write_report
    from ..spray.virelay import check_destination, export_virelay, require_h5py
    from ._common import load_pipeline, run_command

#: what a run uses, imported after the arguments are parsed: module -> names
WORK = {
    "bowlrp._utils.validation": ("display_path",),
    "bowlrp.runs": ("open_store",),
    "bowlrp.runs.distributed": ("check_local_workers", "dask_client"),
    "bowlrp.spray.analyses": ("CLUSTERINGS", "EMBEDDINGS"),
    "bowlrp.spray.heatmap_files": (
        "SkippedRecord",
        "attach_images",
        "attach_recorded_images",
        "find_heatmaps",
        "group_by_target",
    ),
    "bowlrp.spray.report": ("analyse_heatmaps", "analyse_store", "write_report"),
    "bowlrp.spray.virelay": ("check_destination", "export_virelay", "require_h5py"),
    "bowlrp.cli._common": ("load_pipeline", "run_command"),
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
    ap.add_argument(
        "--clusterings",
        default="spectral,kmeans,agglomerative,hdbscan",
        help="clustering families per class, comma-separated: spectral, kmeans, agglomerative, "
        "hdbscan, dbscan; 'none': only the eigengap's (default %(default)s)",
    )
    ap.add_argument(
        "--k-range",
        nargs=2,
        type=int,
        default=[2, 10],
        metavar=("LOW", "HIGH"),
        help="k of the spectral, kmeans and agglomerative clusterings (default 2 10)",
    )
    ap.add_argument(
        "--embeddings",
        default="spectral,tsne",
        help="embeddings per class, comma-separated: spectral, tsne, umap (umap needs "
        "bowlrp[spray]); 'none': no embedding (default %(default)s)",
    )
    ap.add_argument(
        "--tsne",
        choices=["auto", "sklearn", "opentsne"],
        default="auto",
        help="t-SNE implementation (default auto: openTSNE from 2,000 maps when installed)",
    )
    ap.add_argument(
        "--min-cluster-size",
        type=int,
        default=None,
        help="HDBSCAN's smallest cluster (default max(5, n/100))",
    )
    ap.add_argument(
        "--dbscan-eps", type=float, default=None, help="DBSCAN radius (default: median k-NN distance)"
    )
    ap.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="stage cache (HDF5 files keyed by the maps' hash and the parameters, never pickles); a "
        "rerun with other clustering parameters reuses the eigenvectors. Keep it outside --out",
    )
    ap.add_argument("--examples", type=int, default=8, help="example images per cluster (default 8)")
    ap.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    ap.add_argument(
        "--export-virelay",
        metavar="DIR",
        default=None,
        help="also write the analyses as a ViRelAy project into DIR (new, empty, or an earlier "
        "export, which is replaced); open it with: virelay DIR/project.yaml",
    )
    ap.add_argument(
        "--model",
        "-m",
        metavar="FILE",
        default=None,
        help="with --export-virelay: the explained model (bowlrp.save), whose classes and class "
        "names label the project (default: the analysed classes)",
    )
    ap.add_argument(
        "--max-side",
        type=int,
        default=256,
        help="with --export-virelay: larger images and maps are scaled down to this side (default 256)",
    )
    ap.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="read and pool the maps, build the k-NN graph (in row blocks), the clusterings and t-SNE "
        "on a local Dask cluster of N processes; the eigenvectors are solved here",
    )
    ap.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="the same on a running Dask scheduler (tcp://host:8786); its workers must reach the "
        "heatmaps or the store by the same path",
    )
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
    clusterings = _names(args.clusterings, CLUSTERINGS, "--clusterings")
    embeddings = _names(args.embeddings, EMBEDDINGS, "--embeddings")
    low, high = args.k_range
    if not 2 <= low <= high:
        raise CLIError(f"--k-range needs 2 <= LOW <= HIGH, got {low} {high}")
    if args.min_cluster_size is not None and args.min_cluster_size < 2:
        raise CLIError(f"--min-cluster-size must be at least 2, got {args.min_cluster_size}")
    if args.dbscan_eps is not None and not args.dbscan_eps > 0:
        raise CLIError(f"--dbscan-eps must be positive, got {args.dbscan_eps}")
    if args.cache is not None and Path(args.out).resolve() in Path(args.cache).resolve().parents:
        raise CLIError(
            "--cache inside --out: the report folder is made new each run; keep the cache beside it"
        )
    return {
        "clusterings": clusterings,
        "k_range": (low, high),
        "embeddings": embeddings,
        "tsne_backend": args.tsne,
        "min_cluster_size": args.min_cluster_size,
        "dbscan_eps": args.dbscan_eps,
        "cache": args.cache,
        "grid": args.grid,
        "normalize": None if args.normalize == "none" else args.normalize,
        "n_neighbors": args.neighbors,
        "n_eigenvalues": args.eigenvalues,
        "n_clusters": clusters,
        "perplexity": args.perplexity,
        "early_exaggeration": args.early_exaggeration,
        "random_state": args.random_state,
    }


def _names(text: str, allowed: tuple, flag: str) -> tuple:
    """A comma-separated list of names from ``allowed`` ('none': empty), or a one-line error."""
    if text.strip().lower() == "none":
        return ()
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise CLIError(
            f"{flag}: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(allowed)} or none"
        )
    return names


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CLIError(f"--out {out} exists and is not an empty directory; choose a new one")


def _check_virelay(args, out: Path):
    """The model whose classes label the ViRelAy project (or None); the destination checked first."""
    if args.export_virelay is None:
        if args.model is not None:
            raise CLIError("--model labels a ViRelAy project: give --export-virelay DIR with it")
        return None
    if args.max_side < 1:
        raise CLIError(f"--max-side must be positive, got {args.max_side}")
    if Path(args.export_virelay).resolve() == out.resolve():
        raise CLIError("--export-virelay and --out name the same directory; give the project its own")
    check_destination(args.export_virelay)
    require_h5py()
    return None if args.model is None else load_pipeline(args.model)


def _last_part(path) -> str:
    """What ViRelAy's page shows of a path: its last part."""
    return display_path(Path(path).name or path)


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
    model = _check_virelay(args, out)
    if args.workers is not None and args.scheduler is not None:
        raise CLIError("--workers and --scheduler exclude each other")
    if args.workers is not None:
        try:
            check_local_workers(args.workers)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    with dask_client(args.workers, args.scheduler) as client:
        return _run(args, params, out, model, client)


def _run(args, params: dict, out: Path, model, client) -> int:
    problems: list[SkippedRecord] = []

    def on_skip(record: SkippedRecord) -> None:
        if record in problems:  # a store record of several classes is looked at once per class
            return
        problems.append(record)
        print(f"bowlrp-spray: {record.line()}", file=sys.stderr)

    if args.store is not None:
        st = open_store(args.store)
        analyses, skipped = analyse_store(
            st, params, args.target or None, args.quiet, on_skip, args.images, client=client
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
        analyses, skipped = analyse_heatmaps(groups, params, args.quiet, on_skip, client=client)
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
    if args.export_virelay is not None:
        source = _last_part(args.heatmaps or args.store)
        with warnings.catch_warnings(record=True) as caught:  # one line each, as the program's own
            warnings.simplefilter("always", UserWarning)
            project = export_virelay(
                analyses,
                args.export_virelay,
                labels=None if model is None else list(model.classes_),
                class_names=None if model is None else model.class_names_,
                project_name=f"bowlrp SpRAy: {source}",
                model_name=_last_part(args.model) if args.model else "bowlrp model",
                dataset_name=_last_part(args.images) if args.images else source,
                max_side=args.max_side,
                quiet=args.quiet,
                on_skip=on_skip,
            )
        for w in caught:
            print(f"bowlrp-spray: {w.message}", file=sys.stderr)
        print(
            f"ViRelAy project: {display_path(project.project)} ({project.n_samples} maps; "
            f"open it with: virelay {display_path(project.project)})"
        )
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
