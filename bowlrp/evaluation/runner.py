"""Data-set evaluation: perturbation curves of many images and their AOPC (docs/math.md §4).

The library behind ``bowlrp-evaluate``: :func:`evaluate_images` runs region
perturbation or descriptor replacement for every image and method, serially,
into a resumable results folder, or into a Zarr relevance store on Dask, and
summarises the curves (mean curve, standard errors, AOPC).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._utils.atomic import atomic_write_bytes
from .._utils.csv_cells import csv_cell
from .._utils.lock import FolderLock
from .._utils.validation import as_float_image, display_path
from ..explanation import explain_trace
from ..model_files import load
from ..rules import parse_rule
from ..runs.distributed import ModelFile, as_inputs, dask_client, model_hash_of, run_on_store
from ..runs.folder_layout import is_written_picture
from ..runs.inputs import ImageInput, collect_inputs
from ..runs.step import failure_message
from ..runs.store import RelevanceStore, StoreError, open_for_evaluation, store_lock
from .baselines import compare_extra_available, explain_baseline
from .descriptors import descriptor_replacement
from .output_files import check_files_are_ours
from .perturbation import aopc, mean_and_stderr, occlusion_map, region_perturbation

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
# run when no methods are named (lrp-contribution costs ~20x a forward pass; ask for it by name)
DEFAULT_METHODS = tuple(m for m in ALL_METHODS if m != "lrp-contribution")
# peers through the optional [compare] extra (bowlrp.evaluation.baselines); asked for by name
PEER_METHODS = ("lime", "shap-partition", "kernel-shap")


@dataclass(frozen=True)
class EvaluationSettings:
    """Every setting besides the method list that changes a per-image result.

    Parameters
    ----------
    method : "region" (regions of ``block`` x ``block`` pixels replaced) or
        "descriptor" (``batch`` descriptors replaced by vocabulary draws per step)
    order : "morf" (most relevant first) or "lerf" (least relevant first)
    steps, repeats : perturbation steps per curve and noise repeats per image
    block : region side in pixels
    batch : descriptors replaced per step (descriptor method)
    perturbation : "uniform", "blur", "constant" or "flip" (region method)
    samples : model evaluations of lime, shap-partition and kernel-shap per image
    seed : each image's noise is seeded with :func:`image_seed` of this seed and the
        image's id, so an image gets the same curves whatever else is evaluated with it
    """

    method: str = "region"
    order: str = "morf"
    steps: int = 100
    repeats: int = 10
    block: int = 9
    batch: int = 100
    perturbation: str = "uniform"
    samples: int = 1000
    seed: int = 0


@dataclass
class EvaluationRun:
    """What :func:`evaluate_images` returns.

    Attributes
    ----------
    summary : dict
        ``{method: {"aopc", "aopc_stderr", "mean_curve", "stderr_curve",
        "mean_drop", "n_images", ...}}`` (empty when no image was evaluated).
    results : list of dict
        Per-image ``{"image", "id", "target", "score", "curves": {method:
        (repeats, steps + 1) list}, ...}`` of every finished image.
    n_inputs : int
        Number of input images (``len(results) < n_inputs``: some failed).
    failed : list of dict
        ``{"image", "id", "error"}`` of every image that failed in this run
        (folder mode; a store lists its failures itself).
    notes : list of str
        Remarks on the results, such as methods whose curves are identical
        (:func:`identical_curves_notes`); listed under ``"notes"`` in ``curves.json``.
    """

    summary: dict
    results: list[dict] = field(default_factory=list)
    n_inputs: int = 0
    failed: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


#: LRP rules that coincide when every contribution to a neuron has the same sign, as the
#: pooled values of a Bag-of-Words mapping (counts, ranks, soft assignments) are non-negative
SAME_SIGN_RULES = ("lrp-eps0", "lrp-ab21", "lrp-absz")


def passes_per_image(
    methods: Sequence[str], settings: EvaluationSettings, shape: tuple[int, int] | None = None
) -> int:
    """Model evaluations (perturbation steps, occlusion blocks) of one image, at most.

    Every method's curve costs ``steps`` passes per repeat (``steps`` capped by the
    number of ``block`` x ``block`` regions when ``shape`` is known); occlusion costs
    one pass per region more. The peers' own evaluations (``samples``) are not counted.

    Parameters
    ----------
    methods : sequence of str
    settings : EvaluationSettings
    shape : (height, width) or None
        The image's size (None: steps are not capped, occlusion is not counted).

    Returns
    -------
    int
    """
    s = settings
    blocks = None
    if shape is not None and s.method == "region":
        blocks = int(np.ceil(shape[0] / s.block) * np.ceil(shape[1] / s.block))
    steps = s.steps if blocks is None else min(s.steps, blocks)
    curves = [m for m in methods if s.method == "region" or (m != "occlusion" and m not in PEER_METHODS)]
    occlusion = blocks if blocks is not None and "occlusion" in curves else 0
    return len(curves) * steps * s.repeats + occlusion


def cost_line(n_images: int, methods: Sequence[str], settings: EvaluationSettings) -> str:
    """What a run will cost, in one line: images x methods x steps x repeats = passes."""
    s = settings
    curves = [m for m in methods if s.method == "region" or (m != "occlusion" and m not in PEER_METHODS)]
    total = n_images * passes_per_image(curves, s)
    extra = " (+ one per region for occlusion)" if s.method == "region" and "occlusion" in curves else ""
    return (
        f"{n_images} image(s) x {len(curves)} method(s) x {s.steps} steps x {s.repeats} repeats = "
        f"up to {total:,} model evaluations{extra}; --steps, --repeats and --methods make it cheaper"
    )


def identical_curves_notes(results: list[dict], methods: Sequence[str]) -> list[str]:
    """One note per group of methods whose curves are identical on every image.

    For a Bag-of-Words model, :data:`SAME_SIGN_RULES` give the same heatmap ordering
    (all pooled values are non-negative, so the rules differ in nothing they touch);
    the note says so, so equal rows of the AOPC table are not taken for a bug.
    """
    groups: list[list[str]] = []
    for m in methods:
        if not results or any(m not in r.get("curves", {}) for r in results):
            continue
        for g in groups:
            if all(np.array_equal(r["curves"][g[0]], r["curves"][m]) for r in results):
                g.append(m)
                break
        else:
            groups.append([m])
    notes = []
    for g in (g for g in groups if len(g) > 1):
        why = (
            "these rules differ only in how they treat negative contributions, and every pooled "
            "feature value of a Bag-of-Words model is non-negative, so they coincide"
            if set(g) <= set(SAME_SIGN_RULES)
            else "their heatmaps order the perturbed regions the same way"
        )
        notes.append(f"{', '.join(g)} gave identical curves: {why}")
    return notes


@dataclass(frozen=True)
class SeededInput(ImageInput):
    """An image and the seed of its noise (:func:`image_seed` of the run's seed and its id)."""

    seed: int = 0
    key: dict = field(default_factory=dict, compare=False, hash=False)


def check_methods(methods: Sequence[str], method: str = "region") -> list[str]:
    """The method list without duplicates; raises ValueError for unknown or empty lists.

    With ``method="descriptor"``, occlusion and the peers (region methods) are dropped.
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError(f"no method named; choose from {','.join(ALL_METHODS)}")
    unknown = [m for m in methods if m not in ALL_METHODS + PEER_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(ALL_METHODS + PEER_METHODS)}")
    if method == "descriptor":
        methods = [m for m in methods if m != "occlusion" and m not in PEER_METHODS]
        if not methods:
            raise ValueError(
                "occlusion, lime and shap are region methods; name another method for the descriptor method"
            )
    return methods


def result_key(settings: EvaluationSettings, model_hash: str, target) -> dict:
    """Everything besides the method list that changes a per-image result."""
    s = settings
    return {
        "model_sha256": model_hash,
        "method": s.method,
        "order": s.order,
        "samples": s.samples,
        "steps": s.steps,
        "repeats": s.repeats,
        "block": s.block,
        "batch": s.batch,
        "perturbation": s.perturbation,
        "target": None if target is None else str(target),
        "seed": s.seed,
    }


def image_seed(seed: int, image_id: str) -> int:
    """The seed of one image's noise: from the run's ``seed`` and the image's id, not its position.

    The first four bytes of the SHA-256 of ``"<seed>:<id>"`` (Python's ``hash`` is salted
    per process), so an image gets the same perturbations whatever else is in the list,
    in every process; a value in ``[0, 2**32)``, as every seeded generator accepts.

    Parameters
    ----------
    seed : int
        The run's seed (``EvaluationSettings.seed``, any integer).
    image_id : str
        The image's id (:class:`bowlrp.runs.inputs.ImageInput`).

    Returns
    -------
    int
    """
    digest = hashlib.sha256(f"{int(seed)}:{image_id}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "big")


def image_key(key: dict, image_id: str) -> dict:
    """The key of one image's result: the run's ``key`` (:func:`result_key`) and the image's seed.

    Stored with each per-image result (``--out/partial`` records and the store's
    ``evaluation`` group) and compared before a result is reused, so a result
    made with another seed (or by an older bowlrp, which seeded images by their
    position in the list) is recomputed.
    """
    return {**key, "image_seed": image_seed(key["seed"], image_id)}


def evaluate_image(
    model,
    path: Path,
    methods,
    settings: EvaluationSettings,
    target,
    seed: int,
    progress: Callable[[str, int, str], None] | None = None,
    plan: Callable[[int], None] | None = None,
) -> dict:
    """Curves ``(repeats, steps + 1)`` of every method for one image.

    ``progress(method, k, unit)`` is called as work is done (k steps or blocks);
    ``plan(n)`` once the image is read, with the model evaluations it will take
    (:func:`passes_per_image`), the total of the ``k``.
    Returns ``{"image", "target", "score", "curves": {method: list of lists},
    "costs": {peer: {"evaluations", "seconds"}}}``.
    """

    s = settings
    image = as_float_image(path)
    if plan is not None:
        plan(passes_per_image([m for m in methods if m not in PEER_METHODS], s, image.shape[:2]))
    trace = model.forward_one(image)
    base = explain_trace(model, trace, target)
    explanations = {
        m: explain_trace(model, trace, base.target, parse_rule(LRP_METHODS[m]))
        for m in methods
        if m in LRP_METHODS
    }
    out, costs = {}, {}
    for m in methods:
        if s.method == "region":
            n_blocks = int(np.ceil(image.shape[0] / s.block) * np.ceil(image.shape[1] / s.block))
            steps = min(s.steps, n_blocks)
            if m == "occlusion":
                heat = occlusion_map(
                    model,
                    image,
                    s.block,
                    s.perturbation,
                    seed,
                    base.target,
                    progress=progress and (lambda k, m=m: progress(m, k, "blocks")),
                )
            elif m in PEER_METHODS:
                peer = explain_baseline(m, model, image, base.target, s.samples, s.block, seed)
                heat = peer.heatmap
                costs[m] = {"evaluations": peer.evaluations, "seconds": peer.seconds}
            else:
                heat = explanations[m].heatmap if m in explanations else base.heatmap
            ordering = "random" if m == "random" else s.order
            r = region_perturbation(
                model,
                [image],
                [heat],
                (ordering,),
                s.block,
                steps,
                s.repeats,
                s.perturbation,
                seed,
                base.target,
                progress=progress and (lambda k, m=m: progress(m, k, "steps")),
            )
            out[m] = r.curves[ordering][0].tolist()
        else:
            if m == "occlusion" or m in PEER_METHODS:
                continue
            e = explanations.get(m, base)
            ordering = "random" if m == "random" else s.order
            r = descriptor_replacement(
                model,
                [image],
                [e],
                (ordering,),
                s.batch,
                s.steps,
                s.repeats,
                seed,
                base.target,
                progress=progress and (lambda k, m=m: progress(m, k, "steps")),
            )
            out[m] = r.curves[ordering][0].tolist()
    return {
        "image": display_path(path),
        "target": str(base.target),
        "score": base.score,
        "curves": out,
        "costs": costs,
    }


def summarise(results: list[dict], methods) -> dict:
    """Mean curve, standard errors and AOPC of each method over ``results`` (see :func:`evaluate_images`)."""
    summary = {}
    for m in methods:
        per_image = [np.array(r["curves"][m]) for r in results if m in r["curves"]]
        if not per_image:
            continue
        L = min(c.shape[1] for c in per_image)
        curves = np.stack([c[:, :L] for c in per_image])  # (images, repeats, L)
        drops = curves[..., :1] - curves
        mean_curve = curves.mean(axis=(0, 1))
        per_image_curve = curves.mean(axis=1)
        stderr = (
            per_image_curve.std(axis=0, ddof=1) / np.sqrt(len(per_image))
            if len(per_image) > 1
            else curves[0].std(axis=0, ddof=1) / np.sqrt(curves.shape[1])
            if curves.shape[1] > 1
            else np.zeros(L)
        )
        a, s = mean_and_stderr(aopc(curves))
        summary[m] = {
            "aopc": a,
            "aopc_stderr": s,
            "mean_curve": mean_curve.tolist(),
            "stderr_curve": np.nan_to_num(stderr).tolist(),
            "mean_drop": drops.mean(axis=(0, 1)).tolist(),
            "n_images": len(per_image),
        }
    return summary


def summarise_with_costs(results: list[dict], methods) -> dict:
    """:func:`summarise` plus the cost of the peers (model evaluations and seconds per image)."""
    summary = summarise(results, methods)
    for m in PEER_METHODS:
        c = [r["costs"][m] for r in results if m in r.get("costs", {})]
        if c and m in summary:
            summary[m]["evaluations_per_image"] = float(np.mean([x["evaluations"] for x in c]))
            summary[m]["seconds_per_image"] = float(np.mean([x["seconds"] for x in c]))
    return summary


def _atomic_json(path: Path, data) -> None:
    atomic_write_bytes(path, json.dumps(data, default=str).encode("utf-8"))


SUMMARY_FILES = ("curves.json", "curves.csv", "aopc.csv", "curves.png")


def check_summary_files_are_ours(out: Path) -> None:
    """Refuse an output folder whose summary file names hold files bowlrp did not write.

    The summary files (:data:`SUMMARY_FILES`) are bowlrp's to replace only when
    ``curves.json`` is an evaluation record (``"settings"`` and ``"methods"``);
    a link or a folder in their place is refused too. Checked before any image
    is evaluated.

    Raises
    ------
    FileExistsError
        One line naming the file.
    """
    check_files_are_ours(
        out,
        SUMMARY_FILES,
        "curves.json",
        lambda data: {"settings", "methods"} <= set(data),
        "bowlrp-evaluate",
        " its summary",
        "evaluation record curves.json",
    )


def write_outputs(
    out: Path,
    summary: dict,
    settings: EvaluationSettings,
    record: Mapping | None = None,
    failed: Sequence[Mapping] = (),
    notes: Sequence[str] = (),
) -> None:
    """Write ``curves.json``, ``curves.csv``, ``aopc.csv`` and ``curves.png`` into ``out`` (atomically).

    ``record`` is what ``curves.json`` lists under ``"settings"`` (default:
    ``settings``); ``failed`` (``{"image", "id", "error"}`` per image that
    failed) under ``"failed"``; ``notes`` (:func:`identical_curves_notes`) under
    ``"notes"``. Text cells of the CSVs are quoted against formula injection (:func:`csv_cell`).
    """
    import matplotlib  # with pyplot below: the Agg backend first, only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen before pyplot loads

    out = Path(out)
    _atomic_json(
        out / "curves.json",
        {
            "settings": dict(asdict(settings) if record is None else record),
            "methods": summary,
            "failed": [dict(f) for f in failed],
            "notes": list(notes),
        },
    )
    for name, rows in (
        (
            "curves.csv",
            [
                (m, k, v, s)
                for m, d in summary.items()
                for k, (v, s) in enumerate(zip(d["mean_curve"], d["stderr_curve"]))
            ],
        ),
        ("aopc.csv", [(m, d["aopc"], d["aopc_stderr"], d["n_images"]) for m, d in summary.items()]),
    ):
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(
            ["method", "step", "mean_f", "stderr"]
            if name == "curves.csv"
            else ["method", "aopc", "stderr", "n_images"]
        )
        w.writerows([csv_cell(v) for v in row] for row in rows)
        atomic_write_bytes(out / name, text.getvalue().encode("utf-8"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, d in sorted(summary.items(), key=lambda kv: -kv[1]["aopc"]):
        mean, se = np.array(d["mean_curve"]), np.array(d["stderr_curve"])
        ks = np.arange(mean.size)
        ax.plot(ks, mean, label=f"{m} (AOPC {d['aopc']:.3f})")
        ax.fill_between(ks, mean - se, mean + se, alpha=0.2)
    unit = (
        f"{settings.block}x{settings.block} regions"
        if settings.method == "region"
        else f"batches of {settings.batch} descriptors"
    )
    order = "least relevant first" if settings.order == "lerf" else "most relevant first"
    ax.set_xlabel(f"perturbation step ({unit}, {order})")
    ax.set_ylabel("f(x) of the explained class")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(out / "curves.png", buffer.getvalue())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _partial_name(image_id: str) -> str:
    digest = hashlib.sha256(image_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{_safe(image_id)[-80:]}_{digest}.json"


def _evaluate_task(
    model_ref, batch, location: str, methods, settings: EvaluationSettings, target
) -> list[dict]:
    """A Dask task (and the serial step): curves of each SeededInput into the store."""

    store = RelevanceStore.open(location, "r+")
    model = model_ref.load() if isinstance(model_ref, ModelFile) else model_ref
    statuses = []
    for item in batch:
        seed = item.seed
        started = time.perf_counter()
        try:
            result = evaluate_image(model, item.path, methods, settings, target, seed)
            result["seed"] = seed
            result["key"] = item.key
            store.write_curves(item, result)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            message = failure_message(item, exc)
            store.write_curves_failure(item, message)
            statuses.append({"id": item.id, "status": "failed", "error": message})
            continue
        statuses.append({"id": item.id, "status": "explained", "seconds": time.perf_counter() - started})
    return statuses


def evaluate_to_store(
    inputs: Sequence[ImageInput],
    model,
    location: str,
    methods,
    settings: EvaluationSettings,
    target,
    key: dict,
    *,
    model_file=None,
    trusted: bool = False,
    trust: Sequence[str] = (),
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> list[dict]:
    """Per-image curves into the store at ``location`` (serially or on Dask); returns every
    finished result (of earlier runs too)."""

    if workers is not None and scheduler is not None:
        raise ValueError("workers and scheduler exclude each other")
    say = report or (lambda line: None)
    with (
        dask_client(workers, scheduler) as client,  # before the store: an unreachable scheduler leaves none
        store_lock(location, "bowlrp-evaluate"),
    ):
        store = open_for_evaluation(location, key, overwrite=overwrite)
        keys = {item.id: image_key(key, item.id) for item in inputs}

        def finished(item) -> dict | None:
            try:
                done = store.curves(item.id, methods)
            except StoreError:  # a record that is not what bowlrp writes: evaluated again, replaced
                return None
            return done if done is not None and done.get("key") == keys[item.id] else None

        todo = [
            SeededInput(item.path, item.id, keys[item.id]["image_seed"], keys[item.id])
            for item in inputs
            if finished(item) is None
        ]
        distributed = workers is not None or scheduler is not None
        model_ref = (
            ModelFile(str(Path(model_file).resolve()), key["model_sha256"], bool(trusted), tuple(trust))
            if distributed and model_file is not None
            else model
        )

        def one(item):
            return _evaluate_task(model, [item], location, methods, settings, target)[0]

        def said(status):
            if status["status"] != "explained":
                say(f"error: {status['error']}")

        run_on_store(
            todo,
            _evaluate_task,
            (model_ref, location, methods, settings, target),
            one,
            workers=workers,
            scheduler=scheduler,
            client=client,
            progress=progress,
            desc="evaluating",
            on_status=said,
            on_lost=lambda item, line: store.write_curves_failure(item, line),
        )
        results = [r for r in (finished(item) for item in inputs) if r is not None]
        if results:
            store.root[EVALUATION_GROUP].update_attributes({"n_images": len(results)})
    return results


def _evaluate_to_folder(
    inputs: Sequence[ImageInput],
    model,
    out: Path | None,
    methods,
    settings: EvaluationSettings,
    target,
    key: dict,
    *,
    progress: bool,
    report: Callable[[str], None],
) -> tuple[list[dict], list[dict]]:
    """Serially; with ``out``, each result is kept in ``out/partial`` (atomically) and reused.

    An image that fails is reported in one line (``report("error: ...")``) and
    the run goes on; returns the results and ``{"image", "id", "error"}`` per failure.
    """
    partial = None if out is None else out / "partial"
    results, failed = [], []
    images_bar = tqdm(
        inputs, desc="images", unit="image", file=sys.stderr, disable=not progress or len(inputs) < 2
    )
    for item in images_bar:
        item_key = image_key(key, item.id)
        record_path = None if partial is None else partial / _partial_name(item.id)
        done = None
        if record_path is not None and record_path.is_file():
            try:
                done = json.loads(record_path.read_bytes())
                if not isinstance(done, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                report(
                    f"warning: {display_path(record_path)} is unreadable "
                    f"({str(exc).splitlines()[0]}); recomputing it"
                )
                done = None
        if (
            done is not None
            and done.get("key") == item_key
            and done.get("id") == item.id
            and set(done.get("curves", {})) >= set(methods)
        ):
            results.append(done)
            continue
        bar = tqdm(
            total=None, desc=f"{item.id}", unit="pass", file=sys.stderr, leave=False, disable=not progress
        )

        def step(method, k, unit, bar=bar):
            bar.set_postfix_str(method, refresh=False)
            bar.update(k)

        def plan(n, bar=bar):
            bar.total = n
            bar.refresh()

        seed = item_key["image_seed"]
        try:
            result = evaluate_image(model, item.path, methods, settings, target, seed, step, plan)
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on (Ctrl-C and SIGTERM stop it)
            message = failure_message(item, exc)
            report(f"error: {message}")
            failed.append({"image": display_path(item.path), "id": display_path(item.id), "error": message})
            continue
        finally:
            bar.close()
        result.update({"key": item_key, "id": item.id, "seed": seed})
        if record_path is not None:
            _atomic_json(record_path, result)
        results.append(result)
    return results, failed


def is_evaluation_output(path: Path) -> bool:
    """True for a picture bowlrp wrote: ``curves.png`` beside its ``curves.json``, or an
    explanation's heatmap or overlay (:func:`bowlrp.runs.folder_layout.is_written_picture`)."""
    path = Path(path)
    if path.name == "curves.png":
        return (path.parent / "curves.json").is_file()
    return is_written_picture(path)


def _named_inputs(images, out: Path | None):
    """Inputs from names (bowlrp's own pictures below ``out`` left out), or ``images`` as given."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    images = list(images)
    if images and not all(isinstance(i, ImageInput) for i in images):
        images = collect_inputs([str(i) for i in images], exclude=out, written=is_evaluation_output)
    return images


def evaluate_images(
    images,
    model,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    settings: EvaluationSettings | None = None,
    target=None,
    out: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    model_file: str | os.PathLike | None = None,
    trusted: bool = False,
    trust: Sequence[str] = (),
    model_hash: str | None = None,
    record: Mapping | None = None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    announce_cost: bool = False,
) -> EvaluationRun:
    r"""Perturbation curves of every image and method, and their AOPC (``bowlrp-evaluate``).

    For each image and method, perturbs in the order the method gives (most
    relevant first, or least with ``order="lerf"``) and records the score
    ``f(x^(k))`` of the explained class after each step ``k = 0..L``:
    regions of ``block`` x ``block`` pixels replaced by noise (``method=
    "region"``) or ``batch`` descriptors replaced by draws from the vocabulary
    (``"descriptor"``); ``repeats`` noise draws per image. The summary holds
    the area over the perturbation curve (docs/math.md §4)

    .. math::

        \mathrm{AOPC} = \frac{1}{L + 1} \Big\langle \sum_{k=0}^{L}
                        f(x^{(0)}) - f(x^{(k)}) \Big\rangle_{p(x)},

    averaged over repeats and images (standard error over images; over
    repeats for one image), the mean curve and its standard error per step.

    Parameters
    ----------
    images : list of ImageInput, or file / folder / glob names (:func:`bowlrp.runs.inputs.collect_inputs`)
    model : fitted Pipeline, or a model file path (loaded with ``trusted`` / ``trust``
        as :func:`bowlrp.model_files.load`)
    methods : sequence of str
        Subset of :data:`ALL_METHODS` and :data:`PEER_METHODS` (the peers need
        the ``[compare]`` extra).
    settings : EvaluationSettings or None
        Steps, repeats, block, perturbation, ... (None: the defaults).
    target : label or None
        Class explained in every image (None: each image's predicted class).
    out : path or None
        Write ``curves.json``, ``curves.csv``, ``aopc.csv`` and ``curves.png``
        here; the pictures bowlrp wrote below it are never inputs found by a
        folder or pattern (:func:`is_evaluation_output`), so a rerun does not evaluate
        them. Without ``store``, per-image results are kept in ``out/partial``
        (atomically; reused on a rerun with the same model, settings and
        image seed, :func:`image_key`) and the folder is locked for the run.
    store : path or fsspec URL or None
        Keep per-image curves in this Zarr relevance store (needed for
        ``workers`` / ``scheduler``); images that fail are recorded there and
        the run goes on.
    workers : int or None
        With ``store``: a LocalCluster of N processes, 1 thread each.
    scheduler : str or None
        With ``store``: address of a running Dask scheduler (``tcp://host:8786``).
    overwrite : bool
        With ``store``: replace curves made with another model or other settings.
    model_file : path or None
        The file ``model`` was loaded from: its SHA-256 identifies the model
        and Dask workers load it themselves (else the Pipeline is sent to them).
    model_hash : str or None
        Identifies the model in result keys (default: from ``model_file`` or
        a content hash of ``model``).
    record : mapping or None
        What ``curves.json`` lists under ``"settings"`` (default: ``settings``).
    progress : bool
        tqdm progress bars on stderr.
    report : callable or None
        Called with one line per warning or failed image.
    announce_cost : bool
        Report :func:`cost_line` once the run starts (after the output folder's lock
        is taken: a refused run says only why).

    Returns
    -------
    EvaluationRun
        ``.summary`` ``{method: {"aopc", "aopc_stderr", "mean_curve",
        "stderr_curve", "mean_drop", "n_images"}}``, ``.results`` (per image)
        and ``.n_inputs``.

    Raises
    ------
    ValueError
        Unknown methods, ``workers`` or ``scheduler`` without ``store``, or
        (with ``store`` or ``out``) no image evaluated at all. Otherwise an
        image that fails is reported through ``report`` and the run goes on
        (``EvaluationRun.failed``; listed under ``"failed"`` in ``curves.json``).
    """
    settings = EvaluationSettings() if settings is None else settings
    methods = check_methods(methods, settings.method)
    if any(m in PEER_METHODS for m in methods):
        if not compare_extra_available():
            raise ValueError(
                'lime, shap-partition and kernel-shap need the [compare] extra: pip install "bowlrp[compare]"'
            )
    if store is None and (workers is not None or scheduler is not None):
        raise ValueError("workers and scheduler need a store")
    say = report or (lambda line: None)
    if isinstance(model, (str, os.PathLike)):
        model_file = model
        model = load(model, trusted=True) if trusted else load(model, trusted=list(trust) or False)
    if model_hash is None:
        model_hash = model_hash_of(model if model_file is None else model_file)
    out = None if out is None else Path(out)
    if out is not None:
        check_summary_files_are_ours(out)  # before any work: a user's curves.png is never replaced
    inputs = as_inputs(_named_inputs(images, out))
    key = result_key(settings, model_hash, target)

    def start() -> None:
        if announce_cost:
            say(cost_line(len(inputs), methods, settings))

    if store is not None:
        start()
        results = evaluate_to_store(
            inputs,
            model,
            os.fspath(store),
            methods,
            settings,
            target,
            key,
            model_file=model_file,
            trusted=trusted,
            trust=trust,
            workers=workers,
            scheduler=scheduler,
            overwrite=overwrite,
            progress=progress,
            report=say,
        )
        if not results:
            raise ValueError("no image could be evaluated (see the errors above)")
        summary = summarise_with_costs(results, methods)
        notes = _noted(results, methods, say)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_outputs(out, summary, settings, record, notes=notes)
        return EvaluationRun(summary, results, len(inputs), notes=notes)
    if out is None:
        start()
        results, failed = _evaluate_to_folder(
            inputs, model, None, methods, settings, target, key, progress=progress, report=say
        )
        notes = _noted(results, methods, say)
        return EvaluationRun(summarise_with_costs(results, methods), results, len(inputs), failed, notes)

    (out / "partial").mkdir(parents=True, exist_ok=True)
    with FolderLock(out, "bowlrp-evaluate"):
        start()
        results, failed = _evaluate_to_folder(
            inputs, model, out, methods, settings, target, key, progress=progress, report=say
        )
        if not results and failed:
            raise ValueError(
                f"no image could be evaluated ({len(failed)} failed, see the errors above); "
                "check the images and the model"
            )
        summary = summarise_with_costs(results, methods)
        notes = _noted(results, methods, say)
        write_outputs(out, summary, settings, record, failed, notes)
    return EvaluationRun(summary, results, len(inputs), failed, notes)


def _noted(results: list[dict], methods, say: Callable[[str], None]) -> list[str]:
    """:func:`identical_curves_notes`, each also said once through ``say`` (``note: ...``)."""
    notes = identical_curves_notes(results, methods)
    for note in notes:
        say(f"note: {note}")
    return notes
