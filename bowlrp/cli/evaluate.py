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

The evaluation suite (docs/evaluation.md) instead runs every family of checks on
the same images and writes suite.json, suite.csv, figures and a self-contained
report.html into --out:

    python -m bowlrp.evaluate --model M.pkl --images 'test/*.png' --suite all \
        --methods lrp,occlusion,random --masks shortcut --out suite/

--suite takes faithfulness, sanity, localisation, complexity, robustness or all
(repeatable); --masks says where each image's ground truth is for localisation
(files: <stem>_mask.png; polygons: a saved polygons scene; shortcut: the stamp's
box from the *_labels.csv beside the images; voc:DIR: DIR/<stem>.xml boxes).
--n-jobs N spreads the work over N processes, --workers N over a local Dask cluster
of N processes, --scheduler ADDRESS over a running Dask cluster (the same parts and
the same numbers as one process; the workers need neither the model file nor --out).
The suite locks --out while it runs and keeps every finished part (per image, family
and method) in --out/suite_parts: run the same command again after an interruption
and only what is missing is computed; a run with another model or other settings
into the same --out is refused unless --overwrite.
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
    from .._utils.parallel import usable_cores
    from .._utils.validation import display_path
    from ..evaluation.baselines import compare_extra_available
    from ..evaluation.explainers import METHOD_NAMES
    from ..evaluation.runner import (
        EvaluationSettings,
        check_summary_files_are_ours,
        evaluate_images,
        is_evaluation_output,
    )
    from ..evaluation.suite import SuiteSettings, is_mask_file, read_masks
    from ..evaluation.suite_report import check_suite_files_are_ours, evaluate_suite_into
    from ..runs.distributed import check_local_workers, model_hash_of
    from ..runs.inputs import collect_inputs
    from ._common import load_pipeline, resolve_target, run_command

#: the suite's families (:data:`bowlrp.evaluation.suite.FAMILIES`; equal, tested) and default methods
SUITE_FAMILIES = ("faithfulness", "sanity", "localisation", "complexity", "robustness")
SUITE_METHODS = ("lrp", "occlusion", "random")

#: what a run uses, imported after the arguments are parsed: module -> names
WORK = {
    "bowlrp._utils.parallel": ("usable_cores",),
    "bowlrp._utils.validation": ("display_path",),
    "bowlrp.evaluation.baselines": ("compare_extra_available",),
    "bowlrp.evaluation.runner": (
        "EvaluationSettings",
        "check_summary_files_are_ours",
        "evaluate_images",
        "is_evaluation_output",
    ),
    "bowlrp.evaluation.explainers": ("METHOD_NAMES",),
    "bowlrp.evaluation.suite": ("SuiteSettings", "is_mask_file", "read_masks"),
    "bowlrp.evaluation.suite_report": ("check_suite_files_are_ours", "evaluate_suite_into"),
    "bowlrp.runs.distributed": ("check_local_workers", "model_hash_of"),
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
        default=None,
        help=f"comma-separated subset of {','.join(ALL_METHODS + PEER_METHODS)}; each costs "
        f"steps x repeats model evaluations per image (default: {','.join(DEFAULT_METHODS)}; "
        f"with --suite: {','.join(SUITE_METHODS)}, and lrp, occlusion-blur are allowed too)",
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
        help="with --store (or --suite): evaluate on a local Dask cluster of N processes",
    )
    ap.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="with --store (or --suite): evaluate on a running Dask scheduler (tcp://host:8786)",
    )
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="with --store: replace curves made with another model or other settings; with --suite: "
        "replace the suite's results in --out made with another model or other settings",
    )
    ap.add_argument(
        "--suite",
        action="append",
        choices=[*SUITE_FAMILIES, "all"],
        default=None,
        help="run the evaluation suite's families of checks instead (repeatable) and write suite.json, "
        "suite.csv, figures and report.html into --out",
    )
    ap.add_argument(
        "--masks",
        default=None,
        metavar="SOURCE",
        help="with --suite: each image's ground truth for localisation: files, polygons, shortcut or "
        "voc:ANNOTATIONS_DIR",
    )
    ap.add_argument(
        "--n-jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --suite: spread the images over N processes (at most the usable cores; "
        "the numbers do not depend on N)",
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
    if args.suite:
        return run_suite(args)
    if args.masks is not None:
        raise CLIError("--masks is an input of --suite; add --suite localisation (or all)")
    if args.n_jobs is not None:
        raise CLIError("--n-jobs spreads the images of --suite; without it, use --store with --workers")
    if args.methods is None:
        args.methods = ",".join(DEFAULT_METHODS)
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
    record = {k: v for k, v in vars(args).items() if k not in ("debug", "suite", "masks")}
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


def run_suite(args) -> int:
    """``--suite``: every family asked for, on the same images, one report (bowlrp.evaluation.suite)."""
    families = list(dict.fromkeys(args.suite))
    text = args.methods if args.methods is not None else ",".join(SUITE_METHODS)
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown or not methods:
        raise CLIError(f"unknown method(s) {unknown} for --suite; choose from {list(METHOD_NAMES)}")
    if any(m in PEER_METHODS for m in methods) and not compare_extra_available():
        raise CLIError(
            'lime, shap-partition and kernel-shap need the [compare] extra: pip install "bowlrp[compare]"'
        )
    if args.store is not None:
        raise CLIError("--suite keeps its results in --out (suite_parts/): leave out --store")
    spread = [
        o
        for o, v in (("--n-jobs", args.n_jobs), ("--workers", args.workers), ("--scheduler", args.scheduler))
        if v is not None
    ]
    if len(spread) > 1:
        raise CLIError(f"{' and '.join(spread)} exclude each other: give one way to spread the parts")
    if args.workers is not None:
        check_local_workers(args.workers)  # before the model is read: one line, exit code 2
    n_jobs = args.n_jobs
    if n_jobs is not None and n_jobs > usable_cores():
        n_jobs = usable_cores()
        if not args.quiet:
            print(
                f"bowlrp-evaluate: --n-jobs {args.n_jobs}: this machine lets the run use {n_jobs} "
                f"core(s), so {n_jobs} process(es)",
                file=sys.stderr,
            )
    out = Path(args.out)
    inputs = collect_inputs(args.images, exclude=args.out, written=is_evaluation_output)
    inputs = [i for i in inputs if not is_mask_file(i.path)]  # ground truth, not images
    if not inputs:
        raise CLIError("no images left once the *_mask.png ground-truth files are set aside")
    check_suite_files_are_ours(out, methods)  # a refused run answers before the model is read
    model = load_pipeline(args.model, args.trusted, args.trust)
    target = resolve_target(model, args.target)
    paths = [i.path for i in inputs]
    masks = None
    if args.masks is not None:
        try:
            masks = read_masks(paths, args.masks, None if target is None else str(target))
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    say = (
        (lambda line: None)
        if args.quiet
        else (lambda line: print(f"bowlrp-evaluate: {line}", file=sys.stderr))
    )
    record = {
        "model": str(args.model),
        "images": [str(p) for p in paths],
        "target": None if target is None else str(target),
        "masks": args.masks,
    }
    result = evaluate_suite_into(
        out,
        model,
        paths,
        methods=methods,
        families=families,
        masks=masks,
        target=target,
        settings=SuiteSettings(block=args.block, seed=args.seed),
        n_jobs=n_jobs,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        model_hash=model_hash_of(args.model),
        record=record,
        progress=not args.quiet,
        report=say,
    )
    for metric in result.metrics:
        print(result.sentence(metric))
    for line in result.verdicts().values():
        print(line)
    print(f"wrote {display_path(out / 'report.html')}, suite.json, suite.csv and figures")
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
