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
recomputed, never reused. The output folder is locked while a run writes it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_bytes
from ..batch import ImageInput, collect_inputs, display_path
from ._common import ArgumentParser, CLIError, load_pipeline, positive_int, resolve_target, run_command

EVALUATION_GROUP = "evaluation"
LRP_METHODS = {
    "lrp-eps0": "epsilon=0",
    "lrp-eps1": "epsilon=1",
    "lrp-eps100": "epsilon=100",
    "lrp-ab21": "alphabeta=2,1",
    "lrp-absz": "absz",
    "lrp-contribution": "contribution",
}
ALL_METHODS = (*LRP_METHODS, "random", "occlusion")
# run when --methods is not given (lrp-contribution costs ~20x a forward pass; ask for it by name)
DEFAULT_METHODS = tuple(m for m in ALL_METHODS if m != "lrp-contribution")
# peers through the optional [compare] extra (bowlrp.evaluation.baselines); asked for by name
PEER_METHODS = ("lime", "shap-partition", "kernel-shap")


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="bowlrp-evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", required=True, help="model file written by bowlrp.save")
    ap.add_argument("--images", "-i", nargs="+", required=True,
                    help="image files, glob patterns (quoted) or directories")
    ap.add_argument("--method", choices=["region", "descriptor"], default="region")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help=f"comma-separated subset of {','.join(ALL_METHODS + PEER_METHODS)} "
                         f"(default: {','.join(DEFAULT_METHODS)})")
    ap.add_argument("--samples", type=positive_int, default=1000,
                    help="model evaluations of lime, shap-partition and kernel-shap per image")
    ap.add_argument("--order", choices=["morf", "lerf"], default="morf",
                    help="most relevant first (morf, default) or least relevant first (lerf)")
    ap.add_argument("--steps", type=positive_int, default=100)
    ap.add_argument("--repeats", type=positive_int, default=10)
    ap.add_argument("--block", type=positive_int, default=9, help="region side in pixels")
    ap.add_argument("--batch", type=positive_int, default=100, help="descriptors replaced per step")
    ap.add_argument("--perturbation", default="uniform",
                    choices=["uniform", "blur", "constant", "flip"])
    ap.add_argument("--target", default=None, help="class name or index (default: predicted)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", "-o", default="evaluation")
    ap.add_argument("--store", default=None, metavar="OUT.zarr",
                    help="keep per-image curves in this Zarr relevance store (path or URL) instead of "
                         "--out/partial; needed for --workers / --scheduler")
    ap.add_argument("--workers", type=positive_int, default=None, metavar="N",
                    help="with --store: evaluate on a local Dask cluster of N processes")
    ap.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="with --store: evaluate on a running Dask scheduler (tcp://host:8786)")
    ap.add_argument("--overwrite", action="store_true",
                    help="with --store: replace curves made with another model or other settings")
    ap.add_argument("--trust", action="append", default=[], metavar="TYPE",
                    help="allow this extra type in a skops model file (repeatable)")
    ap.add_argument("--trusted", action="store_true", help="allow a pickle model file (runs code!)")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    ap.add_argument("--debug", action="store_true")
    return ap


def _atomic_json(path: Path, data) -> None:
    atomic_write_bytes(path, json.dumps(data, default=str).encode("utf-8"))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _partial_name(image_id: str) -> str:
    digest = hashlib.sha256(image_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{_safe(image_id)[-80:]}_{digest}.json"


def result_key(args, model_hash: str, target) -> dict:
    """Everything besides the method list that changes a per-image result."""
    return {"model_sha256": model_hash, "method": args.method, "order": args.order,
            "samples": args.samples,
            "steps": args.steps, "repeats": args.repeats, "block": args.block, "batch": args.batch,
            "perturbation": args.perturbation, "target": None if target is None else str(target),
            "seed": args.seed}


def evaluate_image(model, path: Path, methods, args, target, seed: int, progress=None) -> dict:
    """Curves (repeats, steps + 1) of every method for one image."""
    from .._validation import as_float_image
    from ..evaluation import descriptor_replacement, occlusion_map, region_perturbation
    from ..explanation import explain_trace
    from ..rules import parse_rule

    image = as_float_image(path)
    trace = model.forward_one(image)
    base = explain_trace(model, trace, target)
    explanations = {m: explain_trace(model, trace, base.target, parse_rule(LRP_METHODS[m]))
                    for m in methods if m in LRP_METHODS}
    out, costs = {}, {}
    for m in methods:
        if args.method == "region":
            n_blocks = int(np.ceil(image.shape[0] / args.block) * np.ceil(image.shape[1] / args.block))
            steps = min(args.steps, n_blocks)
            if m == "occlusion":
                heat = occlusion_map(model, image, args.block, args.perturbation, seed, base.target,
                                     progress=progress and (lambda k, m=m: progress(m, k, "blocks")))
            elif m in PEER_METHODS:
                from ..evaluation.baselines import explain_baseline

                peer = explain_baseline(m, model, image, base.target, args.samples, args.block, seed)
                heat = peer.heatmap
                costs[m] = {"evaluations": peer.evaluations, "seconds": peer.seconds}
            else:
                heat = explanations[m].heatmap if m in explanations else base.heatmap
            ordering = "random" if m == "random" else args.order
            r = region_perturbation(model, [image], [heat], (ordering,), args.block, steps,
                                    args.repeats, args.perturbation, seed, base.target,
                                    progress=progress and (lambda k, m=m: progress(m, k, "steps")))
            out[m] = r.curves[ordering][0].tolist()
        else:
            if m == "occlusion" or m in PEER_METHODS:
                continue
            e = explanations.get(m, base)
            ordering = "random" if m == "random" else args.order
            r = descriptor_replacement(model, [image], [e], (ordering,), args.batch, args.steps,
                                       args.repeats, seed, base.target,
                                       progress=progress and (lambda k, m=m: progress(m, k, "steps")))
            out[m] = r.curves[ordering][0].tolist()
    return {"image": display_path(path), "target": str(base.target), "score": base.score,
            "curves": out, "costs": costs}


def summarise(results: list[dict], methods) -> dict:
    from ..evaluation.perturbation import aopc, mean_and_stderr

    summary = {}
    for m in methods:
        per_image = [np.array(r["curves"][m]) for r in results if m in r["curves"]]
        if not per_image:
            continue
        L = min(c.shape[1] for c in per_image)
        curves = np.stack([c[:, :L] for c in per_image])           # (images, repeats, L)
        drops = curves[..., :1] - curves
        mean_curve = curves.mean(axis=(0, 1))
        per_image_curve = curves.mean(axis=1)
        stderr = (per_image_curve.std(axis=0, ddof=1) / np.sqrt(len(per_image))
                  if len(per_image) > 1 else curves[0].std(axis=0, ddof=1) / np.sqrt(curves.shape[1])
                  if curves.shape[1] > 1 else np.zeros(L))
        a, s = mean_and_stderr(aopc(curves))
        summary[m] = {"aopc": a, "aopc_stderr": s, "mean_curve": mean_curve.tolist(),
                      "stderr_curve": np.nan_to_num(stderr).tolist(),
                      "mean_drop": drops.mean(axis=(0, 1)).tolist(), "n_images": len(per_image)}
    return summary


def write_outputs(out: Path, summary: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _atomic_json(out / "curves.json", {"settings": {k: v for k, v in vars(args).items()
                                                    if k not in ("debug",)}, "methods": summary})
    for name, rows in (("curves.csv", [(m, k, v, s) for m, d in summary.items()
                                       for k, (v, s) in enumerate(zip(d["mean_curve"], d["stderr_curve"]))]),
                       ("aopc.csv", [(m, d["aopc"], d["aopc_stderr"], d["n_images"])
                                     for m, d in summary.items()])):
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(["method", "step", "mean_f", "stderr"] if name == "curves.csv"
                   else ["method", "aopc", "stderr", "n_images"])
        w.writerows(rows)
        atomic_write_bytes(out / name, text.getvalue().encode("utf-8"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, d in sorted(summary.items(), key=lambda kv: -kv[1]["aopc"]):
        mean, se = np.array(d["mean_curve"]), np.array(d["stderr_curve"])
        ks = np.arange(mean.size)
        ax.plot(ks, mean, label=f"{m} (AOPC {d['aopc']:.3f})")
        ax.fill_between(ks, mean - se, mean + se, alpha=0.2)
    unit = f"{args.block}x{args.block} regions" if args.method == "region" else \
        f"batches of {args.batch} descriptors"
    order = "least relevant first" if getattr(args, "order", "morf") == "lerf" else "most relevant first"
    ax.set_xlabel(f"perturbation step ({unit}, {order})")
    ax.set_ylabel("f(x) of the explained class")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(out / "curves.png", buffer.getvalue())


def run(args) -> int:
    from tqdm.auto import tqdm

    from .._lock import FolderLock
    from ..io import file_hash

    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    if not methods:
        raise CLIError(f"--methods names no method; choose from {','.join(ALL_METHODS)}")
    unknown = [m for m in methods if m not in ALL_METHODS + PEER_METHODS]
    if unknown:
        raise CLIError(f"unknown method(s) {unknown}; choose from {list(ALL_METHODS + PEER_METHODS)}")
    if args.method == "descriptor":
        methods = [m for m in methods if m != "occlusion" and m not in PEER_METHODS]
        if not methods:
            raise CLIError("occlusion, lime and shap are region methods; name another method for "
                           "--method descriptor")
    if any(m in PEER_METHODS for m in methods):
        from ..evaluation.baselines import compare_extra_available

        if not compare_extra_available():
            raise CLIError('lime, shap-partition and kernel-shap need the [compare] extra: '
                           'pip install "bowlrp[compare]"')
    if args.store is None and (args.workers is not None or args.scheduler is not None):
        raise CLIError("--workers and --scheduler need --store OUT.zarr")
    inputs = collect_inputs(args.images)
    model = load_pipeline(args.model, args.trusted, args.trust)
    target = resolve_target(model, args.target)
    key = result_key(args, file_hash(args.model), target)
    out = Path(args.out)
    if args.store is not None:
        results = evaluate_to_store(args, inputs, model, methods, target, key)
        return _finish(args, out, results, methods)
    partial = out / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    results = []
    quiet = args.quiet
    with FolderLock(out, "bowlrp-evaluate"):
        images_bar = tqdm(inputs, desc="images", unit="image", file=sys.stderr,
                          disable=quiet or len(inputs) < 2)
        for i, item in enumerate(images_bar):
            record_path = partial / _partial_name(item.id)
            done = None
            if record_path.is_file():
                try:
                    done = json.loads(record_path.read_bytes())
                    if not isinstance(done, dict):
                        raise ValueError("not a JSON object")
                except (OSError, ValueError) as exc:
                    print(f"bowlrp-evaluate: warning: {display_path(record_path)} is unreadable "
                          f"({str(exc).splitlines()[0]}); recomputing it", file=sys.stderr)
                    done = None
            if done is not None and done.get("key") == key and done.get("id") == item.id \
                    and set(done.get("curves", {})) >= set(methods):
                results.append(done)
                continue
            bar = tqdm(total=None, desc=f"{item.id}", unit="step", file=sys.stderr, leave=False,
                       disable=quiet)

            def progress(method, k, unit, bar=bar):
                bar.set_postfix_str(f"{method} ({unit})", refresh=False)
                bar.update(k)

            result = evaluate_image(model, item.path, methods, args, target, args.seed + i, progress)
            bar.close()
            result.update({"key": key, "id": item.id})
            _atomic_json(record_path, result)
            results.append(result)
        summary = _summary(out, results, methods, args)
    _print_table(args, out, results, summary)
    return 0


def _summary(out: Path, results: list[dict], methods, args) -> dict:
    summary = summarise(results, methods)
    for m in PEER_METHODS:  # cost of the peers: model evaluations and seconds per image
        c = [r["costs"][m] for r in results if m in r.get("costs", {})]
        if c and m in summary:
            summary[m]["evaluations_per_image"] = float(np.mean([x["evaluations"] for x in c]))
            summary[m]["seconds_per_image"] = float(np.mean([x["seconds"] for x in c]))
    write_outputs(out, summary, args)
    return summary


def _finish(args, out: Path, results: list[dict], methods) -> int:
    if not results:
        raise CLIError("no image could be evaluated (see the errors above)")
    out.mkdir(parents=True, exist_ok=True)
    summary = _summary(out, results, methods, args)
    _print_table(args, out, results, summary)
    return 1 if len(results) < args._n_inputs else 0


@dataclass(frozen=True)
class SeededInput(ImageInput):
    """An image and the seed of its noise (``--seed`` + its position among the inputs)."""

    seed: int = 0


def _evaluate_task(model_ref, batch, location: str, methods, args, target) -> list[dict]:
    """A Dask task (and the serial step): curves of each SeededInput into the store."""
    import time

    from ..batch import failure_message
    from ..distributed import ModelFile
    from ..store import RelevanceStore

    store = RelevanceStore.open(location, "r+")
    model = model_ref.load() if isinstance(model_ref, ModelFile) else model_ref
    statuses = []
    for item in batch:
        seed = item.seed
        started = time.perf_counter()
        try:
            result = evaluate_image(model, item.path, methods, args, target, seed)
            result["seed"] = seed
            store.write_curves(item, result)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            message = failure_message(item, exc)
            store.write_curves_failure(item, message)
            statuses.append({"id": item.id, "status": "failed", "error": message})
            continue
        statuses.append({"id": item.id, "status": "explained",
                         "seconds": time.perf_counter() - started})
    return statuses


def evaluate_to_store(args, inputs, model, methods, target, key) -> list[dict]:
    """Per-image curves into ``args.store`` (serially or on Dask); returns every finished result."""
    from ..distributed import ModelFile, run_on_store
    from ..store import open_for_evaluation, store_lock

    if args.workers is not None and args.scheduler is not None:
        raise CLIError("--workers and --scheduler exclude each other")
    location = args.store
    args._n_inputs = len(inputs)
    task_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if not k.startswith("_")})
    with store_lock(location, "bowlrp-evaluate"):
        store = open_for_evaluation(location, key, overwrite=args.overwrite)
        todo = [SeededInput(item.path, item.id, args.seed + i) for i, item in enumerate(inputs)
                if store.curves(item.id, methods) is None]
        distributed = args.workers is not None or args.scheduler is not None
        model_ref = ModelFile(str(Path(args.model).resolve()), key["model_sha256"], bool(args.trusted),
                              tuple(args.trust)) if distributed else model

        def one(item):
            return _evaluate_task(model, [item], location, methods, task_args, target)[0]

        def said(status):
            if status["status"] != "explained":
                print(f"bowlrp-evaluate: error: {status['error']}", file=sys.stderr)

        run_on_store(todo, _evaluate_task, (model_ref, location, methods, task_args, target), one,
                     workers=args.workers, scheduler=args.scheduler, progress=not args.quiet,
                     desc="evaluating", on_status=said,
                     on_lost=lambda item, line: store.write_curves_failure(item, line))
        results = [r for r in (store.curves(item.id, methods) for item in inputs) if r is not None]
        if results:
            store.root[EVALUATION_GROUP].update_attributes({"n_images": len(results)})
    return results


def _print_table(args, out: Path, results: list[dict], summary: dict) -> None:
    order = "MoRF" if args.order == "morf" else "LeRF"
    print(f"AOPC ({order}) over {len(results)} image(s), {args.method} perturbation, {args.steps} "
          f"steps, {args.repeats} repeats (MoRF: higher = more faithful; LeRF: lower):")
    for m, d in sorted(summary.items(), key=lambda kv: -kv[1]["aopc"]):
        cost = (f"   ({d['evaluations_per_image']:.0f} evaluations, {d['seconds_per_image']:.1f} s "
                "per image)" if "seconds_per_image" in d else "")
        print(f"  {m:16s} {d['aopc']:+.5f} +- {d['aopc_stderr']:.5f}{cost}")
    print(f"wrote {display_path(out / 'curves.json')}, curves.csv, aopc.csv, curves.png")


def main(argv=None) -> int:
    return run_command("bowlrp-evaluate", run, build_parser().parse_args(argv),
                       "interrupted (finished images are kept; run again to resume)")


if __name__ == "__main__":
    sys.exit(main())
