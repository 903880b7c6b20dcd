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
the pictures bowlrp wrote below it are never inputs. Each image's noise is seeded
from ``--seed`` and the image's id, so an image's curves do not depend on the
other images given.

Cost: every method draws --repeats curves of --steps model evaluations per image
(occlusion one more per region); the run prints its total before it starts, and
--steps 20 --repeats 3 gives a quick first look.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._args import (
    ALL_METHODS,
    DEFAULT_METHODS,
    PEER_METHODS,
    ArgumentParser,
    CLIError,
    import_work,
    positive_int,
    work_attribute,
)

if TYPE_CHECKING:  # imported by import_work once the arguments are parsed (fast --help)
    from .._utils.validation import display_path
    from ..evaluation.baselines import compare_extra_available
    from ..evaluation.runner import (
        EvaluationSettings,
        check_summary_files_are_ours,
        evaluate_images,
        is_evaluation_output,
    )
    from ..runs.distributed import check_local_workers
    from ..runs.inputs import collect_inputs
    from ._common import load_pipeline, resolve_target, run_command

#: what a run uses, imported after the arguments are parsed: module -> names
WORK = {
    "bowlrp._utils.validation": ("display_path",),
    "bowlrp.evaluation.baselines": ("compare_extra_available",),
    "bowlrp.evaluation.runner": (
        "EvaluationSettings",
        "check_summary_files_are_ours",
        "evaluate_images",
        "is_evaluation_output",
    ),
    "bowlrp.runs.distributed": ("check_local_workers",),
    "bowlrp.runs.inputs": ("collect_inputs",),
    "bowlrp.cli._common": ("load_pipeline", "resolve_target", "run_command"),
}


def __getattr__(name: str):
    return work_attribute(globals(), WORK, name)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; an option's default after its help (none for flags and unset)."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == []
        if unset or action.default == argparse.SUPPRESS or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="bowlrp-evaluate", description=__doc__, formatter_class=_HelpFormatter)
    ap.add_argument("--model", "-m", required=True, help="model file written by bowlrp.save")
    ap.add_argument(
        "--images", "-i", nargs="+", required=True, help="image files, glob patterns (quoted) or directories"
    )
    ap.add_argument(
        "--method",
        choices=["region", "descriptor"],
        default="region",
        help="perturb regions of pixels, or replace descriptors by vocabulary draws",
    )
    ap.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated subset of {','.join(ALL_METHODS + PEER_METHODS)}; each costs "
        "steps x repeats model evaluations per image",
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
        help="most relevant first (morf) or least relevant first (lerf)",
    )
    ap.add_argument(
        "--steps",
        type=positive_int,
        default=100,
        help="perturbation steps per curve (regions or descriptor batches replaced; capped by the "
        "number of regions)",
    )
    ap.add_argument(
        "--repeats",
        type=positive_int,
        default=10,
        help="noise draws per image and method (each a whole curve); AOPC is their mean",
    )
    ap.add_argument("--block", type=positive_int, default=9, help="region side in pixels (--method region)")
    ap.add_argument(
        "--batch", type=positive_int, default=100, help="descriptors replaced per step (--method descriptor)"
    )
    ap.add_argument(
        "--perturbation",
        default="uniform",
        choices=["uniform", "blur", "constant", "flip"],
        help="what replaces a region",
    )
    ap.add_argument("--target", default=None, help="class name or index (default: predicted)")
    ap.add_argument(
        "--seed", type=int, default=0, help="seed of the noise (each image's from it and the image's id)"
    )
    ap.add_argument(
        "--out",
        "-o",
        default="evaluation",
        help="folder of curves.json, curves.csv, aopc.csv, curves.png and partial/ (per-image results)",
    )
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
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bars, no cost line")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
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
    import_work(globals(), WORK)  # when run() is called without main()
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
    inputs = collect_inputs(args.images, exclude=args.out, written=is_evaluation_output)
    settings = settings_from_args(args)
    if args.store is not None and args.workers is not None and args.scheduler is not None:
        raise CLIError("--workers and --scheduler exclude each other")
    if args.workers is not None:
        check_local_workers(args.workers)  # before the model is read: one line, exit code 2
    check_summary_files_are_ours(Path(args.out))  # a refused run answers before the model is read
    model = load_pipeline(args.model, args.trusted, args.trust)
    target = resolve_target(model, args.target)
    record = {k: v for k, v in vars(args).items() if k not in ("debug",)}
    if args.store is not None:
        record["_n_inputs"] = len(inputs)  # as curves.json has always listed it for store runs
    out = Path(args.out)
    evaluation = evaluate_images(
        inputs,
        model,
        methods=methods,
        settings=settings,
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
        announce_cost=not args.quiet,  # once the run starts (a refused run says only why)
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
    """Run ``bowlrp-evaluate``; the arguments are parsed before the work is imported."""
    args = build_parser().parse_args(argv)
    import_work(globals(), WORK)
    return run_command(
        "bowlrp-evaluate", run, args, "interrupted (finished images are kept; run again to resume)"
    )


if __name__ == "__main__":
    sys.exit(main())
