"""Command line: how faithful are the explanations of a bowlrp model? (docs/math.md §4)

    python -m bowlrp.evaluate --model M.pkl --images 'test/*.png' --method region \\
        --steps 100 --repeats 10 --out eval/

For every image and method, perturbs in the order the method gives (most
relevant first) and records ``f`` after each step: regions of ``--block``
pixels replaced by noise (``region``) or descriptors replaced by draws from
the vocabulary (``descriptor``). Methods: LRP with several rules, a random
order and (region only) occlusion. Writes ``curves.json``, ``curves.csv``,
``aopc.csv`` and ``curves.png`` into ``--out`` and prints the AOPC table.
Per-image results are kept in ``--out/partial`` (written atomically) with the
model hash and every setting that changes a result; an interrupted run resumes
where it stopped, and a result made with another model or other settings is
recomputed, never reused. The output folder is locked while a run writes it, and
files below it are never inputs. Each image's noise is seeded from ``--seed`` and
the image's id, so an image's curves do not depend on the other images given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._utils.validation import display_path
from ..evaluation.baselines import compare_extra_available
from ..evaluation.runner import (
    ALL_METHODS,
    DEFAULT_METHODS,
    PEER_METHODS,
    EvaluationSettings,
    evaluate_images,
)
from ..runs.distributed import check_local_workers
from ..runs.inputs import collect_inputs
from ._common import ArgumentParser, CLIError, load_pipeline, positive_int, resolve_target, run_command


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="bowlrp-evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", "-m", required=True, help="model file written by bowlrp.save")
    ap.add_argument(
        "--images", "-i", nargs="+", required=True, help="image files, glob patterns (quoted) or directories"
    )
    ap.add_argument("--method", choices=["region", "descriptor"], default="region")
    ap.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated subset of {','.join(ALL_METHODS + PEER_METHODS)} "
        f"(default: {','.join(DEFAULT_METHODS)})",
    )
    ap.add_argument(
        "--samples",
        type=positive_int,
        default=1000,
        help="model evaluations of lime, shap-partition and kernel-shap per image",
    )
    ap.add_argument(
        "--order",
        choices=["morf", "lerf"],
        default="morf",
        help="most relevant first (morf, default) or least relevant first (lerf)",
    )
    ap.add_argument("--steps", type=positive_int, default=100)
    ap.add_argument("--repeats", type=positive_int, default=10)
    ap.add_argument("--block", type=positive_int, default=9, help="region side in pixels")
    ap.add_argument("--batch", type=positive_int, default=100, help="descriptors replaced per step")
    ap.add_argument("--perturbation", default="uniform", choices=["uniform", "blur", "constant", "flip"])
    ap.add_argument("--target", default=None, help="class name or index (default: predicted)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", "-o", default="evaluation")
    ap.add_argument(
        "--store",
        default=None,
        metavar="OUT.zarr",
        help="keep per-image curves in this Zarr relevance store (path or URL) instead of "
        "--out/partial; needed for --workers / --scheduler",
    )
    ap.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --store: evaluate on a local Dask cluster of N processes",
    )
    ap.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="with --store: evaluate on a running Dask scheduler (tcp://host:8786)",
    )
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="with --store: replace curves made with another model or other settings",
    )
    ap.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TYPE",
        help="allow this extra type in a skops model file (repeatable)",
    )
    ap.add_argument("--trusted", action="store_true", help="allow a pickle model file (runs code!)")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    ap.add_argument("--debug", action="store_true")
    return ap


def settings_from_args(args) -> EvaluationSettings:
    """The :class:`~bowlrp.evaluation.runner.EvaluationSettings` named on the command line."""
    return EvaluationSettings(
        method=args.method,
        order=args.order,
        steps=args.steps,
        repeats=args.repeats,
        block=args.block,
        batch=args.batch,
        perturbation=args.perturbation,
        samples=args.samples,
        seed=args.seed,
    )


def run(args) -> int:
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    if not methods:
        raise CLIError(f"--methods names no method; choose from {','.join(ALL_METHODS)}")
    unknown = [m for m in methods if m not in ALL_METHODS + PEER_METHODS]
    if unknown:
        raise CLIError(f"unknown method(s) {unknown}; choose from {list(ALL_METHODS + PEER_METHODS)}")
    if args.method == "descriptor":
        methods = [m for m in methods if m != "occlusion" and m not in PEER_METHODS]
        if not methods:
            raise CLIError(
                "occlusion, lime and shap are region methods; name another method for --method descriptor"
            )
    if any(m in PEER_METHODS for m in methods):
        if not compare_extra_available():
            raise CLIError(
                'lime, shap-partition and kernel-shap need the [compare] extra: pip install "bowlrp[compare]"'
            )
    if args.store is None and (args.workers is not None or args.scheduler is not None):
        raise CLIError("--workers and --scheduler need --store OUT.zarr")
    inputs = collect_inputs(args.images, exclude=args.out)  # never its own curves.png
    model = load_pipeline(args.model, args.trusted, args.trust)
    target = resolve_target(model, args.target)
    if args.store is not None and args.workers is not None and args.scheduler is not None:
        raise CLIError("--workers and --scheduler exclude each other")
    if args.workers is not None:
        check_local_workers(args.workers)  # before the model is read: one line, exit code 2
    record = {k: v for k, v in vars(args).items() if k not in ("debug",)}
    if args.store is not None:
        record["_n_inputs"] = len(inputs)  # as curves.json has always listed it for store runs
    out = Path(args.out)
    evaluation = evaluate_images(
        inputs,
        model,
        methods=methods,
        settings=settings_from_args(args),
        target=target,
        out=out,
        store=args.store,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        model_file=args.model,
        trusted=args.trusted,
        trust=args.trust,
        record=record,
        progress=not args.quiet,
        report=lambda line: print(f"bowlrp-evaluate: {line}", file=sys.stderr),
    )
    _print_table(args, out, evaluation.results, evaluation.summary)
    if len(evaluation.results) < evaluation.n_inputs:  # some images failed: listed, the rest evaluated
        return 1
    return 0


def _print_table(args, out: Path, results: list[dict], summary: dict) -> None:
    order = "MoRF" if args.order == "morf" else "LeRF"
    print(
        f"AOPC ({order}) over {len(results)} image(s), {args.method} perturbation, {args.steps} "
        f"steps, {args.repeats} repeats (MoRF: higher = more faithful; LeRF: lower):"
    )
    for m, d in sorted(summary.items(), key=lambda kv: -kv[1]["aopc"]):
        cost = (
            f"   ({d['evaluations_per_image']:.0f} evaluations, {d['seconds_per_image']:.1f} s per image)"
            if "seconds_per_image" in d
            else ""
        )
        print(f"  {m:16s} {d['aopc']:+.5f} +- {d['aopc_stderr']:.5f}{cost}")
    print(f"wrote {display_path(out / 'curves.json')}, curves.csv, aopc.csv, curves.png")


def main(argv=None) -> int:
    return run_command(
        "bowlrp-evaluate",
        run,
        build_parser().parse_args(argv),
        "interrupted (finished images are kept; run again to resume)",
    )


if __name__ == "__main__":
    sys.exit(main())
