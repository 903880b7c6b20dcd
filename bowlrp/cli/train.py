"""Command line: train a model on images on disk and save it.

    bowlrp-train --config voc_fisher --data VOCdevkit/VOC2007 --classes horse --out voc_horse.pkl
    python -m bowlrp.train --config polygons_hik --data photos/ --out m.pkl

``--data`` is a PASCAL VOC root, a folder with one sub-folder per class, or a
CSV list (``path,label[,label...]``); ``--format`` is detected when omitted.
Prints a one-line summary (images, descriptors sampled, feature size,
training accuracy, time) and writes the model atomically (``bowlrp.model_files.save``)
with its config and the data set's description inside.

Before any data is read, ``--out`` is checked (``bowlrp.training.locked_output``):
an existing file is replaced only with ``--overwrite``; a directory, a symbolic
link or a missing or unwritable folder are refused (exit code 2, one line); and
a lock beside it (``.<name>.lock``, removed at exit) refuses a second run with
the same ``--out`` while this one trains. SIGTERM stops a run the way Ctrl-C
does (parallel workers stopped, nothing written; exit code 143, Ctrl-C 130).

On Dask (``bowlrp.runs.train_dask``)::

    bowlrp-train --config voc_fisher --data VOCdevkit/VOC2007 --classes horse --out voc_horse.pkl --workers 2
    bowlrp-train ... --out /shared/voc_horse.pkl --scheduler tcp://host:8786 --store /shared/horse.zarr

``--workers N`` starts a local cluster of N processes, ``--scheduler`` joins a
running one (its workers must reach the images and the store). Images are
described and encoded as tasks that write their features into a training
store, ``<out>.features.zarr`` beside ``--out`` or ``--store DIR``: a run that is
stopped or killed keeps it, and the next run with the same config and data
resumes from it; a successful run removes it (``--keep-store`` keeps it). The
model is the one ``--n-jobs`` (the no-Dask spelling: joblib on this machine) trains.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._args import ArgumentParser, CLIError, import_work, positive_int, work_attribute

if TYPE_CHECKING:  # imported by import_work once the arguments are parsed (fast --help)
    from .._utils.signals import Terminated, deferred_signals, interrupt_behind, terminate_as_interrupt
    from .._utils.validation import display_path
    from ..config import resolve_config_path
    from ..datasets.voc import read_dataset
    from ..runs.distributed import check_local_workers
    from ..runs.train_dask import ROWS_PER_BLOCK, DaskStages, default_store
    from ..training import locked_output, save_model, train
    from ._common import run_command

#: what a run uses, imported after the arguments are parsed: module -> names
WORK = {
    "bowlrp._utils.signals": ("Terminated", "deferred_signals", "interrupt_behind", "terminate_as_interrupt"),
    "bowlrp._utils.validation": ("display_path",),
    "bowlrp.config": ("resolve_config_path",),
    "bowlrp.datasets.voc": ("read_dataset",),
    "bowlrp.runs.distributed": ("check_local_workers",),
    "bowlrp.runs.train_dask": ("ROWS_PER_BLOCK", "DaskStages", "default_store"),
    "bowlrp.training": ("locked_output", "save_model", "train"),
    "bowlrp.cli._common": ("run_command",),
}


def __getattr__(name: str):
    return work_attribute(globals(), WORK, name)


#: exit codes of a run stopped by Ctrl-C (SIGINT) and by SIGTERM (128 + the signal's number)
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="bowlrp-train",
        description="Train a bowlrp model (BoW / Fisher vectors + kernel SVM) on a data set on disk.",
    )
    ap.add_argument(
        "--config",
        "-c",
        required=True,
        help="pipeline config: a YAML file, or the name of a shipped one (e.g. voc_fisher)",
    )
    ap.add_argument(
        "--data",
        "-d",
        required=True,
        help="VOC root (…/VOCdevkit/VOC2007), folder of class folders, or CSV list",
    )
    ap.add_argument(
        "--format", choices=["voc", "folder", "csv"], default=None, help="data set layout (default: detected)"
    )
    ap.add_argument("--split", default=None, help="VOC split (default: trainval)")
    ap.add_argument(
        "--classes",
        default=None,
        help="comma-separated classes (default: all); one class gives a binary model",
    )
    ap.add_argument("--max-images", type=int, default=None, help="train on at most this many images")
    ap.add_argument(
        "--n-jobs", type=int, default=None, help="images processed in parallel on this machine (joblib)"
    )
    ap.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="train on a local Dask cluster of N processes (features in a store, see --store)",
    )
    ap.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="train on a running Dask scheduler (tcp://host:8786); its workers must reach "
        "the images and the store",
    )
    ap.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help="with --workers/--scheduler: the training store of the features "
        "(default: <out>.features.zarr beside --out); a rerun resumes from it",
    )
    ap.add_argument(
        "--images-per-task",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --workers/--scheduler: images each encoding task describes and writes (default 4)",
    )
    ap.add_argument(
        "--keep-store",
        action="store_true",
        help="with --workers/--scheduler: keep the training store after a successful run",
    )
    ap.add_argument("--out", "-o", required=True, help="model file to write (e.g. voc_horse.pkl)")
    ap.add_argument("--overwrite", action="store_true", help="replace the --out file if it exists")
    ap.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept CSV rows, VOC images and linked class folders or images that lead outside "
        "the data set's folder (trusted data only)",
    )
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


def resolve_config(text: str) -> Path:
    """A config path from a file name or the name of a config shipped with bowlrp."""
    return resolve_config_path(text)


def run(args: argparse.Namespace) -> dict:
    """Check and lock ``--out``, read the data, train, write the model; the summary.

    ``args.written`` is the model file once it is complete (set with signals
    deferred, so an interrupt reports truthfully whether the file was written).
    """
    import_work(globals(), WORK)  # when run() is called without main()
    if args.max_images is not None and args.max_images < 2:
        raise ValueError(f"--max-images must be at least 2, got {args.max_images}")
    config = resolve_config(args.config)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    overwrite = getattr(args, "overwrite", False)
    stages = _stages(args)
    args.written = None
    with locked_output(args.out, overwrite, "bowlrp-train") as out:  # before any data is read
        dataset = read_dataset(
            args.data, args.format, args.split, classes, allow_outside_root=args.allow_outside_root
        )
        pipe, summary = train(
            dataset,
            config,
            classes,
            args.max_images,
            args.n_jobs,
            args.quiet,
            report=_stage_printer(args),
            stages=stages,
        )
        with deferred_signals():  # the model file is replaced whole, and args.written says so
            args.written = save_model(pipe, out, overwrite)
    summary["model"] = str(args.written)
    return summary


def _stages(args):
    """None (train here, ``--n-jobs``) or the Dask stages of ``--workers`` / ``--scheduler``."""
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    store, keep = getattr(args, "store", None), getattr(args, "keep_store", False)
    per_task = getattr(args, "images_per_task", None)
    if workers is None and scheduler is None:
        if store is not None or keep or per_task is not None:
            raise CLIError("--store, --keep-store and --images-per-task go with --workers or --scheduler")
        return None
    if workers is not None and scheduler is not None:
        raise CLIError("--workers and --scheduler exclude each other")
    if args.n_jobs is not None:
        raise CLIError("--n-jobs is the no-Dask spelling; drop it with --workers / --scheduler")
    if workers is not None:
        check_local_workers(workers)  # before any data is read: one line, exit code 2
    return DaskStages(
        workers=workers,
        scheduler=scheduler,
        store=store if store is not None else default_store(args.out),
        keep_store=keep,
        rows_per_block=per_task or ROWS_PER_BLOCK,
        progress=not args.quiet,
    ).check()


def _stage_printer(args):
    """Prints each training stage's message on stderr (nothing with --quiet)."""
    if args.quiet:
        return lambda message: None
    return lambda message: print(f"[bowlrp-train] {message}", file=sys.stderr, flush=True)


def _train_and_report(args) -> int:
    try:
        with terminate_as_interrupt():
            s = run(args)
            print(
                f"trained {s['mode']} model of {', '.join(s['classes'])} on {s['images']} images: "
                f"{sum(s['descriptors_sampled'])} descriptors sampled, {s['feature_size']} features, "
                f"training accuracy {s['training_accuracy']:.3f}, {s['total_s']:.1f} s -> {s['model']}"
            )
            if not args.quiet:
                print(json.dumps(s), file=sys.stderr)
    except KeyboardInterrupt as exc:
        return _report_interrupt(args, exc)
    except Exception as exc:
        interrupt = interrupt_behind(exc)  # joblib's clean-up can fail after a signal lands in it
        if interrupt is None:
            raise
        return _report_interrupt(args, interrupt)
    return 0


def _report_interrupt(args, exc: KeyboardInterrupt) -> int:
    """One line saying whether the model was written; exit code 130 (Ctrl-C) or 143 (SIGTERM)."""
    terminated = isinstance(exc, Terminated)
    written = getattr(args, "written", None)
    what = "after writing " + display_path(written) if written else "(nothing was written)"
    print(f"bowlrp-train: {'terminated' if terminated else 'interrupted'} {what}", file=sys.stderr)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run ``bowlrp-train``; the arguments are parsed before the work is imported."""
    args = build_parser().parse_args(argv)
    import_work(globals(), WORK)
    return run_command("bowlrp-train", _train_and_report, args, "interrupted (nothing was written)")


if __name__ == "__main__":
    raise SystemExit(main())
