"""The evaluation suite: every family of checks, every explainer, the same images, paired statistics.

    result = evaluate_suite(model, images, methods=("lrp", "occlusion", "random"),
                            families=("faithfulness", "sanity", "localisation"), masks=masks)
    result.sentence("road_morf")   # which method wins, by how many paired standard errors
    result.to_dict()               # what suite.json holds (bowlrp.evaluation.suite_report)

Each method's maps are explained once per image and shared by the metrics that
take maps (faithfulness, localisation, complexity); the sanity check and the
robustness metrics explain again (randomised models, perturbed images). The
families and their metrics (docs/evaluation.md):

* ``faithfulness``: ROAD MoRF and LeRF and the area between
  (:func:`~bowlrp.evaluation.road.road`), pixel flipping MoRF, IROF,
  faithfulness correlation, region-perturbation AOPC MoRF and LeRF and the area
  between (:mod:`bowlrp.evaluation.faithfulness`);
* ``sanity``: the cascading model-randomisation check
  (:func:`~bowlrp.evaluation.randomisation.randomisation_check`); its metric is
  the similarity of the fully randomised model's map to the original
  (``randomisation_similarity``, lower is better), its verdict the check's own;
  with ``train_images`` and ``train_labels``, the data-randomisation check too;
* ``localisation`` (needs ``masks``): relevance mass and rank accuracy, pointing
  game, AUC, context ratio (:mod:`bowlrp.evaluation.localisation`);
* ``complexity``: sparseness and complexity (:mod:`bowlrp.evaluation.complexity`);
* ``robustness``: max-sensitivity and local Lipschitz estimate
  (:mod:`bowlrp.evaluation.robustness`).

**Paired comparison.** All methods are scored on the same images, so two methods
are compared by the mean and standard error of their per-image differences
(:meth:`MetricResult.paired_difference`), which removes the images' own spread.
The *winner* of a metric is the method with the best mean in the metric's
direction; its lead over the runner-up is stated in paired standard errors,
``z = |mean(d)| / se(d)``; ``z >= 2`` is called a clear lead.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from tqdm.auto import tqdm

from .._utils.threads import single_threaded
from .._utils.validation import as_float_image, as_image_list, display_path, read_image
from ..datasets.polygons import load_scene
from ..datasets.voc_annotations import read_voc_annotation
from .complexity import COMPLEXITY_METRICS
from .explainers import Explainer, explain_maps, explainer_name, resolve_targets
from .faithfulness import area_between, faithfulness_correlation, irof, pixel_flipping, region_morf_lerf
from .localisation import LOCALISATION_METRICS, as_masks
from .randomisation import (
    DEFAULT_THRESHOLD,
    NAMED_EXPLAINERS,
    RandomisationResult,
    compare_variants,
    layer_seeds,
    randomised_models,
    resolve_explainer,
)
from .results import MetricResult
from .road import road
from .robustness import robustness
from .suite_parts import SuiteParts, array_digest, pack, safe_method, unpack

#: the families of checks, in the order the report lists them
FAMILIES = ("faithfulness", "sanity", "localisation", "complexity", "robustness")
SCHEMA = "bowlrp.evaluation-suite/1"
#: a lead of at least this many paired standard errors is called clear
CLEAR_LEAD = 2.0

#: every metric of the suite: name -> (family, words for the report)
METRIC_WORDS = {
    "road_morf": ("faithfulness", "ROAD, most relevant first (area under the score curve)"),
    "road_lerf": ("faithfulness", "ROAD, least relevant first"),
    "road_area_between": ("faithfulness", "ROAD, area between LeRF and MoRF"),
    "pixel_flipping_morf": ("faithfulness", "pixel flipping, most relevant first"),
    "irof": ("faithfulness", "IROF (superpixels removed, area over the curve)"),
    "faithfulness_correlation": ("faithfulness", "faithfulness correlation"),
    "aopc_morf": ("faithfulness", "region perturbation AOPC, most relevant first"),
    "aopc_lerf": ("faithfulness", "region perturbation AOPC, least relevant first"),
    "aopc_area_between": ("faithfulness", "region perturbation, AOPC MoRF minus LeRF"),
    "randomisation_similarity": (
        "sanity",
        "similarity (Spearman of |R|) of the fully randomised model's map to the original",
    ),
    "data_randomisation_similarity": (
        "sanity",
        "similarity of the label-permuted model's map to the original",
    ),
    "relevance_mass_accuracy": ("localisation", "relevance mass accuracy (positive relevance in the mask)"),
    "relevance_rank_accuracy": ("localisation", "relevance rank accuracy"),
    "pointing_game": ("localisation", "pointing game"),
    "localisation_auc": ("localisation", "ROC AUC of the map for the mask"),
    "context_ratio": ("localisation", "context ratio (relevance outside / inside the mask)"),
    "sparseness": ("complexity", "sparseness (Gini index of |R|)"),
    "complexity": ("complexity", "complexity (entropy of |R|)"),
    "max_sensitivity": ("robustness", "max-sensitivity under small noise"),
    "local_lipschitz": ("robustness", "local Lipschitz estimate"),
}


@dataclass(frozen=True)
class SuiteSettings:
    """Every setting of the suite that changes a number (recorded in ``suite.json``).

    Attributes
    ----------
    road_fractions : fractions of pixels ROAD removes (:func:`~bowlrp.evaluation.road.road`)
    flip_steps : pixel-flipping steps over all pixels
    irof_segments : SLIC's ``n_segments`` for IROF
    correlation_runs, correlation_subset : faithfulness correlation's subsets and their size
        (the size is capped at a quarter of the smallest image's pixels)
    block, region_steps : region perturbation's block side and steps (also occlusion's block)
    robustness_samples, robustness_radius : perturbed copies per image and their noise half-width
    randomisation_mode : "cascading" or "independent"
    similarity : the randomisation check's measure
    seed : seeds every draw
    """

    road_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    flip_steps: int = 20
    irof_segments: int = 30
    correlation_runs: int = 30
    correlation_subset: int = 224
    block: int = 9
    region_steps: int = 20
    robustness_samples: int = 5
    robustness_radius: float = 0.02
    randomisation_mode: str = "cascading"
    similarity: str = "spearman"
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["road_fractions"] = list(self.road_fractions)
        return d


@dataclass
class SuiteResult:
    """Every score of every method on the same images.

    Attributes
    ----------
    methods : list of str
    families : list of str
        The families evaluated (localisation is left out without masks).
    metrics : dict of str -> dict of str -> MetricResult
        Metric name -> method -> result (values per image, direction, parameters).
    randomisation : dict of str -> RandomisationResult
        Method -> the model-randomisation check (``sanity``); ``data_randomisation`` likewise.
    settings : SuiteSettings
    n_images : int
    seconds : dict of str -> float
        Time of the work per family (and ``"explain"`` for the shared maps), added up over
        its parts (per image and method, in whichever process ran them, now or in the run
        that kept them); ``"<family> (cpu)"`` the CPU time of the same parts (a measure that
        a loaded machine does not inflate); ``"wall"`` the wall time of the call.
    notes : list of str
        What was left out and why.
    record : dict
        What the command line records of the run (model file, images, masks).
    fingerprint : dict
        :func:`suite_fingerprint` of a resumable run (empty otherwise); ``suite.json``
        keeps it, and a run with another one into the same folder is refused.
    """

    methods: list[str]
    families: list[str]
    metrics: dict[str, dict[str, MetricResult]]
    randomisation: dict[str, RandomisationResult] = field(default_factory=dict)
    data_randomisation: dict[str, RandomisationResult] = field(default_factory=dict)
    settings: SuiteSettings = field(default_factory=SuiteSettings)
    n_images: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)

    def family(self, metric: str) -> str:
        return METRIC_WORDS[metric][0]

    def higher_is_better(self, metric: str) -> bool:
        return next(iter(self.metrics[metric].values())).higher_is_better

    def ranking(self, metric: str) -> list[str]:
        """Methods from best to worst by mean (NaN means last)."""
        sign = 1.0 if self.higher_is_better(metric) else -1.0
        results = self.metrics[metric]

        def key(m):
            v = results[m].mean
            return (not np.isfinite(v), -sign * v if np.isfinite(v) else 0.0)

        return sorted(results, key=key)

    def paired(self, metric: str) -> dict[tuple[str, str], tuple[float, float, int]]:
        """``(a, b) -> (mean, se, n)`` of ``a - b`` per image, for every ordered pair of methods."""
        results = self.metrics[metric]
        return {(a, b): results[a].paired_difference(results[b]) for a in results for b in results if a != b}

    def lead(self, metric: str) -> dict | None:
        """The winner, the runner-up and the winner's paired lead (None with fewer than two methods).

        Returns
        -------
        dict
            ``winner``, ``runner_up``, ``difference`` (winner minus runner-up, in the
            metric's units), ``stderr``, ``n``, ``z`` (``|difference| / stderr``, inf when
            the standard error is 0 and the difference is not).
        """
        order = self.ranking(metric)
        if len(order) < 2:
            return None
        a, b = order[0], order[1]
        d, se, n = self.metrics[metric][a].paired_difference(self.metrics[metric][b])
        if not np.isfinite(d):
            z = float("nan")
        elif se > 0:
            z = abs(d) / se
        else:
            z = float("inf") if d != 0 else 0.0
        return {"winner": a, "runner_up": b, "difference": d, "stderr": se, "n": n, "z": z}

    def sentence(self, metric: str) -> str:
        """One sentence: which method wins the metric and by how many paired standard errors."""
        words = METRIC_WORDS[metric][1]
        direction = "higher" if self.higher_is_better(metric) else "lower"
        head = f"{words} ({direction} is better)"
        lead = self.lead(metric)
        if lead is None:
            r = next(iter(self.metrics[metric].values()))
            return (
                f"{head}: {r.method} scores {r.mean:.3g} ± {r.sem:.2g} (n = {r.n}); nothing to compare with."
            )
        if lead["n"] < 2 or not np.isfinite(lead["z"]) and not np.isinf(lead["z"]):
            return (
                f"{head}: {lead['winner']} has the best mean, but too few images "
                f"(n = {lead['n']}) score both it and {lead['runner_up']} to compare them."
            )
        means = self.metrics[metric]
        if lead["difference"] == 0:
            every = "on every image" if lead["stderr"] == 0 else "on average"
            return (
                f"{head}: {lead['winner']} and {lead['runner_up']} tie {every} "
                f"({means[lead['winner']].mean:.3g}; paired difference 0 ± {lead['stderr']:.2g}, "
                f"n = {lead['n']})."
            )
        z = lead["z"]
        size = "clearly" if z >= CLEAR_LEAD else "not clearly"
        return (
            f"{head}: {lead['winner']} wins ({means[lead['winner']].mean:.3g} vs "
            f"{means[lead['runner_up']].mean:.3g}), {size} ahead of {lead['runner_up']}: paired "
            f"difference {lead['difference']:+.3g} ± {lead['stderr']:.2g}, "
            f"{z:.1f} paired standard errors (n = {lead['n']})."
        )

    def verdicts(self) -> dict[str, str]:
        """The randomisation checks' verdicts in words, per method (and per check)."""
        out = {m: r.verdict() for m, r in self.randomisation.items()}
        out.update({f"{m} (data)": r.verdict() for m, r in self.data_randomisation.items()})
        return out

    def to_dict(self) -> dict:
        """What ``suite.json`` holds: settings, every score, paired differences, sentences, verdicts."""
        metrics = {}
        for name, results in self.metrics.items():
            lead = self.lead(name)
            metrics[name] = {
                "family": self.family(name),
                "description": METRIC_WORDS[name][1],
                "higher_is_better": self.higher_is_better(name),
                "ranking": self.ranking(name),
                "lead": lead,
                "sentence": self.sentence(name),
                "methods": {m: r.to_dict() for m, r in results.items()},
                "paired_differences": {
                    f"{a} - {b}": {"mean": d, "stderr": se, "n": n}
                    for (a, b), (d, se, n) in self.paired(name).items()
                },
            }
        return {
            "schema": SCHEMA,
            "settings": self.settings.to_dict(),
            "record": dict(self.record),
            "fingerprint": dict(self.fingerprint),
            "methods": list(self.methods),
            "families": list(self.families),
            "n_images": self.n_images,
            "seconds": dict(self.seconds),
            "notes": list(self.notes),
            "metrics": metrics,
            "randomisation": {m: r.to_dict() for m, r in self.randomisation.items()},
            "data_randomisation": {m: r.to_dict() for m, r in self.data_randomisation.items()},
        }


def _sanity_explainer(method: Explainer, settings: SuiteSettings):
    """What the randomisation check gets: a name it knows, else a callable over :func:`explain_maps`."""
    if callable(method) or method in NAMED_EXPLAINERS:
        return method

    def explain(model, images, targets):
        return [explain_maps(model, [im], method, t, settings.seed)[0] for im, t in zip(images, targets)]

    explain.__name__ = method
    return explain


def _check_families(families) -> list[str]:
    families = [families] if isinstance(families, str) else list(families)
    if "all" in families:
        families = list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown families {unknown}; choose from {list(FAMILIES)} or 'all'")
    return [f for f in FAMILIES if f in families]


def suite_fingerprint(model_hash: str, settings: SuiteSettings, target=None) -> dict:
    """Everything besides the images, methods and families that changes a number of the suite.

    The key a resumable run (:class:`~bowlrp.evaluation.suite_parts.SuiteParts`) is refused
    or resumed by: the model's hash, every setting, the target asked for.
    """
    return {
        "schema": SCHEMA,
        "model_sha256": str(model_hash),
        "settings": settings.to_dict(),
        "target": None if target is None else str(target),
    }


@dataclass
class _Task:
    """One part of the work: a family of one image for one method (run in any process)."""

    family: str
    index: int
    name: str
    method: Explainer
    image: np.ndarray
    target: object
    digest: str
    key: dict
    settings: SuiteSettings
    heat: np.ndarray | None = None
    subset: int = 0
    keep_maps: bool = False


def _run_task(model, task: _Task, shared: tuple | None = None) -> tuple[str, int, str, bytes]:
    """Compute one part and return it packed (:func:`~bowlrp.evaluation.suite_parts.pack`).

    The one function every executor runs (this process, loky, Dask); the process that
    called :func:`_run_tasks` keeps the part. ``shared`` holds what the sanity parts
    share, ``(variants, data_variant)``: the randomised models (``(layer, model)`` pairs)
    and the label-permuted model or None; Dask sends it to each worker once.

    The seeds of every draw come from ``settings.seed`` (and, for the random map, the
    image's bytes), never from the process or the image's position, so any process
    computes the same part.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    s, im, t = task.settings, task.image, task.target
    # one BLAS and Numba thread in every process: a threaded long dot product may sum in
    # another order, and the numbers must not depend on n_jobs (processes are the parallelism)
    with single_threaded():
        if task.family == "maps":
            result = explain_maps(model, [im], task.method, t, s.seed)[0]
        elif task.family == "faithfulness":
            result = _faithfulness_one(model, im, t, task.heat, s, task.subset, task.name)
        elif task.family == "robustness":
            found = robustness(
                model,
                [im],
                task.method,
                t,
                samples=s.robustness_samples,
                radius=s.robustness_radius,
                seed=s.seed,
            )
            result = [found["max_sensitivity"], found["local_lipschitz"]]
        elif task.family == "sanity":
            result = _sanity_one(model, task, *shared)
        else:  # pragma: no cover - the families are fixed above
            raise ValueError(f"not a kept family: {task.family}")
    data = {"result": result, "seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}
    return task.family, task.index, task.name, pack(task.key, data)


def _sanity_one(model, task: _Task, variants: list, data_variant) -> dict:
    """The randomisation checks of one image and one method: similarity per layer, maps if kept."""
    s = task.settings
    explainer = resolve_explainer(_sanity_explainer(task.method, s), s.seed)
    out = {}
    checks = [(s.randomisation_mode, [(layer, m, [task.target]) for layer, m in variants])]
    if data_variant is not None:
        checks.append(("data", [("labels", data_variant, [task.target])]))
    for check, pairs in checks:
        [r] = compare_variants(
            check,
            [explainer],
            model,
            [task.image],
            [task.target],
            pairs,
            s.similarity,
            DEFAULT_THRESHOLD,
            1 if task.keep_maps else 0,
            False,
            time.perf_counter(),
            None,
            (s.similarity,),
        )
        out[check] = {
            "layers": list(r.layers),
            "similarity_name": r.similarity_name,
            "threshold": r.threshold,
            "measures": {m: v[:, 0].copy() for m, v in r.measures.items()},
            "maps": r.maps[0] if r.maps else None,
            "n_explanations": r.n_explanations,
            "seconds": r.seconds,
        }
    return out


class SuitePartLost(RuntimeError):
    """A part could not be computed on the Dask cluster: its worker died more often than the
    scheduler allows (one line; the finished parts are kept, a rerun resumes)."""


def _run_tasks(
    model, tasks: list[_Task], parts, n_jobs: int | None, bar, client=None, shared: tuple | None = None
) -> list[tuple]:
    """Every task: in this process (``n_jobs`` None or 1), over ``n_jobs`` loky processes, or as
    Dask tasks on ``client``. Each part is kept in ``parts`` (atomically, by this process) as
    it arrives, so an interrupted run keeps every part that was finished."""
    if not tasks:
        return []
    out = []

    def arrived(item: tuple) -> None:
        family, i, name, blob = item
        if parts is not None:
            parts.write(family, tasks_by_index[(family, i, name)].digest, name, blob)
        out.append(item)
        bar.update(1)

    tasks_by_index = {(t.family, t.index, t.name): t for t in tasks}

    def needs(task: _Task):  # only the sanity parts read the randomised models
        return shared if task.family == "sanity" else None

    if client is not None:
        _run_on_dask(client, model, tasks, shared, arrived)
    elif n_jobs in (None, 1) or len(tasks) < 2:
        for task in tasks:
            arrived(_run_task(model, task, needs(task)))
    else:  # each part is computed by whichever process is free; results come back as they finish
        found = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)(
            delayed(_run_task)(model, task, needs(task)) for task in tasks
        )
        for item in found:
            arrived(item)
    return out


def _the_value(value):
    """A Dask task that returns its argument (data the scheduler can make again if lost)."""
    return value


def _run_on_dask(client, model, tasks: list[_Task], shared: tuple | None, arrived) -> None:
    """The parts as Dask tasks of :func:`_run_task`; ``arrived(item)`` as each one finishes.

    The model and ``shared`` (the randomised models) are sent once, as the results of
    tasks (:func:`_the_value`) the parts depend on, so each worker fetches them once; each
    part carries its image (and map). The workers need neither the output folder nor the
    model file. A worker that dies loses the part it was computing, which the scheduler
    runs again on another worker, and the copies of the models it held, which the
    scheduler can make again from those tasks (scattered data cannot be: once Dask's
    memory manager has dropped the other replicas, its loss would cancel every part). A
    part that fails raises here, after the pending ones are cancelled (the finished ones
    are kept).
    """
    from distributed import as_completed  # dask.distributed: ~0.6 s to import, only for clusters
    from distributed.client import FutureCancelledError  # as above
    from distributed.scheduler import KilledWorker  # as above

    run = uuid.uuid4().hex[:8]
    with warnings.catch_warnings():  # "Sending large graph": the models, once per run, on purpose
        warnings.filterwarnings("ignore", message=".*[Ll]arge graph", category=UserWarning)
        model_ref = client.submit(_the_value, model, key=f"bowlrp-suite-{run}-model", pure=False)
        shared_ref = None
        if shared is not None and any(t.family == "sanity" for t in tasks):
            shared_ref = client.submit(_the_value, shared, key=f"bowlrp-suite-{run}-shared", pure=False)
    futures = {
        client.submit(
            _run_task,
            model_ref,
            task,
            shared_ref if task.family == "sanity" else None,
            key=f"bowlrp-suite-{run}-{task.family}-{task.index}-{safe_method(task.name)}",
            pure=False,
        ): task
        for task in tasks
    }
    try:
        for future in as_completed(futures):
            task = futures.pop(future)
            try:
                item = future.result()
            except (KilledWorker, FutureCancelledError) as exc:
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SuitePartLost(
                    f"the {task.family} part of image {task.index} for {task.name} was lost on the Dask "
                    f"cluster ({detail[:160]}); run the same command again to resume (finished parts "
                    "are kept)"
                ) from None
            future.release()
            arrived(item)
    finally:
        for future in futures:
            future.cancel()
        model_ref.release()
        if shared_ref is not None:
            shared_ref.release()


def evaluate_suite(
    model,
    images,
    methods: Sequence[Explainer] = ("lrp", "occlusion", "random"),
    families: Sequence[str] | str = FAMILIES,
    masks=None,
    target=None,
    settings: SuiteSettings | None = None,
    train_images=None,
    train_labels=None,
    random_state: int | None = None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    n_jobs: int | None = None,
    parts: SuiteParts | None = None,
    client=None,
) -> SuiteResult:
    """Evaluate several explainers on the same images with every family of checks.

    Parameters
    ----------
    model : fitted Pipeline
    images : list of images (arrays (H, W) / (H, W, 3) or paths), n of them
    methods : sequence of method names or callables
        Names of :data:`~bowlrp.evaluation.explainers.METHOD_NAMES`, or
        ``explainer(model, images, targets) -> list of (H, W) maps``.
    families : sequence of str or "all"
        Any of :data:`FAMILIES`.
    masks : list of n (H, W) boolean masks or lists of boxes ``(row0, row1, col0, col1)``, or None
        The ground truth of ``localisation`` (left out, with a note, when None).
    target : class label or None
        None explains each image's predicted class.
    settings : SuiteSettings or None
    train_images, train_labels : the model's training data, or None
        With them the sanity family adds the data-randomisation check (one refit).
    random_state : int or None
        Overrides ``settings.seed`` when given.
    progress : bool
        A tqdm bar over images x families x methods.
    report : callable or None
        Called with one line as each stage starts and ends.
    n_jobs : int or None
        Processes the per-image work is spread over (joblib's loky; None or 1: this
        process). The numbers do not depend on it: every part is seeded from
        ``settings.seed`` (and the random map from the image's bytes), never from the
        process or the image's position. A callable method must then be picklable
        (cloudpickle: closures and lambdas are).
    client : distributed.Client or None
        Run the parts as Dask tasks on this client's cluster instead (not closed here;
        excludes ``n_jobs``). The same parts and the same numbers as ``n_jobs=1``: the
        part function is the same, only the executor differs. The model and the
        randomised models are sent once per run (as tasks the parts depend on), each
        part carries its image; the workers need neither the model file nor the output
        folder, and the parts are kept by this process as they arrive. A worker that
        dies loses only the part it was computing (the scheduler runs it again elsewhere).
    parts : SuiteParts or None
        Keep every finished part (per image, family and method) there and reuse the
        parts an earlier run of the same fingerprint finished
        (:mod:`bowlrp.evaluation.suite_parts`; :func:`bowlrp.evaluation.suite_report.evaluate_suite_into`
        opens it under the output folder's lock).

    Returns
    -------
    SuiteResult

    Notes
    -----
    Cost per image and method, in model evaluations ``E`` (an LRP map costs about
    one; occlusion about ``(H / block) * (W / block)``): the shared map ``E``;
    faithfulness ``2 len(road_fractions) + flip_steps + S_irof + correlation_runs
    + 2 region_steps``; sanity ``layers + 1`` maps; robustness ``samples + 1`` maps;
    localisation and complexity none. The randomised models are built once per run
    (not per image) and sent to the processes with the work.

    The work is split into parts: each method's map of each image first, then the
    faithfulness, sanity and robustness parts of every image and method (faithfulness
    reads the maps); localisation and complexity are computed from the maps here.
    ``seconds`` adds up the time of the parts (computed now or by the run that kept
    them), so it is the work's cost whatever ``n_jobs``; ``seconds["wall"]`` is this
    call's wall time.
    """
    started = time.perf_counter()
    settings = settings or SuiteSettings()
    if random_state is not None:
        settings = SuiteSettings(**{**asdict(settings), "seed": int(random_state)})
    seed = settings.seed
    families = _check_families(families)
    methods = list(methods)
    if not methods:
        raise ValueError("no methods to evaluate")
    names = [explainer_name(m) for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods must have distinct names, got {names}")
    imgs = [as_float_image(im) for im in images]
    if not imgs:
        raise ValueError("no images to evaluate")
    if n_jobs is not None and n_jobs != -1 and int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be a positive number of processes (or -1, or None), got {n_jobs}")
    if client is not None and n_jobs is not None:
        raise ValueError("n_jobs and client exclude each other: processes on this machine, or a Dask cluster")
    say = report or (lambda line: None)
    notes: list[str] = []
    if "localisation" in families and masks is None:
        families.remove("localisation")
        notes.append("localisation left out: no masks or boxes given")
    if masks is not None:
        masks = as_masks(masks, [im.shape[:2] for im in imgs])
    with_data = "sanity" in families and train_images is not None and train_labels is not None
    targets = resolve_targets(model, imgs, target)
    digests = [array_digest(im) for im in imgs]
    target_words = [str(t) for t in targets]
    smallest = min(im.shape[0] * im.shape[1] for im in imgs)
    subset = max(1, min(settings.correlation_subset, smallest // 4))
    need_maps = any(f in families for f in ("faithfulness", "localisation", "complexity"))
    kept_families = [f for f in ("faithfulness", "sanity", "robustness") if f in families]
    free_families = [f for f in ("localisation", "complexity") if f in families]
    train_digest = None
    if with_data:
        train_digest = hashlib.sha256(
            b"".join(array_digest(as_float_image(im)).encode() for im in train_images)
            + array_digest(np.asarray(train_labels)).encode()
        ).hexdigest()[:16]

    def key(family: str, i: int, name: str) -> dict:
        k = {"family": family, "image": digests[i], "method": name, "target": target_words[i]}
        if family == "faithfulness":
            k["correlation_subset"] = subset
        if family == "sanity":
            k["train"] = train_digest
        return k

    def task_key(family: str, i: int, name: str) -> dict:
        """The key a part is packed with (with the fingerprint's digest in a resumable run)."""
        return key(family, i, name) if parts is None else parts.full_key(key(family, i, name))

    def stored(family: str, i: int, name: str, need_kept_maps: bool = False):
        if parts is None:
            return None
        data = parts.read(family, digests[i], name, key(family, i, name))
        if data is not None and need_kept_maps:
            sanity = data["result"][settings.randomisation_mode]
            if sanity["maps"] is None:
                return None
        return data

    total = len(imgs) * len(names) * (int(need_maps) + len(kept_families) + len(free_families))
    bar = tqdm(total=total, desc="suite (images x families x methods)", unit="part", disable=not progress)
    if parts is not None:
        expected = [
            parts.path(f, d, n) for f in ("maps", *kept_families) for d in set(digests) for n in names
        ]
        swept = parts.sweep(expected)
        if swept:
            say(f"removed {len(swept)} unfinished part file(s) of an interrupted run")
    done: dict[tuple[str, int, str], dict] = {}

    def collect(found) -> None:
        for family, i, name, blob in found:
            done[(family, i, name)] = unpack(blob)[1]

    # phase 1: each method's map of each image (shared by faithfulness, localisation, complexity)
    maps: dict[str, list[np.ndarray]] = {}
    if need_maps:
        todo = []
        for i, (im, t) in enumerate(zip(imgs, targets)):
            for m, name in zip(methods, names):
                data = stored("maps", i, name)
                if data is None:
                    todo.append(
                        _Task("maps", i, name, m, im, t, digests[i], task_key("maps", i, name), settings)
                    )
                else:
                    done[("maps", i, name)] = data
                    bar.update(1)
        say(f"explain: {len(todo)} map(s) to make, {len(imgs) * len(names) - len(todo)} kept")
        collect(_run_tasks(model, todo, parts, n_jobs, bar, client))
        maps = {name: [done[("maps", i, name)]["result"] for i in range(len(imgs))] for name in names}

    # phase 2: faithfulness, sanity and robustness of every image and method, in any order
    variants = data_variant = None
    todo = []
    for family in kept_families:
        for i, (im, t) in enumerate(zip(imgs, targets)):
            for m, name in zip(methods, names):
                keep = family == "sanity" and i < N_KEPT_MAPS
                data = stored(family, i, name, keep)
                if data is not None:
                    done[(family, i, name)] = data
                    bar.update(1)
                    continue
                task = _Task(family, i, name, m, im, t, digests[i], task_key(family, i, name), settings)
                if family == "faithfulness":
                    task.heat, task.subset = maps[name][i], subset
                elif family == "sanity":
                    if variants is None:  # built once per run, only when some sanity part is missing
                        variants = randomised_models(model, settings.randomisation_mode, seed)
                        data_variant = (
                            _data_variant(model, train_images, train_labels, seed) if with_data else None
                        )
                    task.keep_maps = keep
                todo.append(task)
    if kept_families:
        say(
            f"{', '.join(kept_families)}: {len(todo)} part(s) to compute, "
            f"{len(imgs) * len(names) * len(kept_families) - len(todo)} kept"
        )
    shared = None if variants is None else (variants, data_variant)
    collect(_run_tasks(model, todo, parts, n_jobs, bar, client, shared))

    # the results, family by family, method by method, images in their order
    seconds: dict[str, float] = {}
    metrics: dict[str, dict[str, MetricResult]] = {}

    def add(result: MetricResult, method: str) -> None:
        if result.method != method:
            result = MetricResult(
                result.name, result.values, result.higher_is_better, result.params, method, result.curves
            )
        metrics.setdefault(result.name, {})[method] = result

    def cost(family: str, label: str) -> None:
        found = [done[k] for k in done if k[0] == family]
        seconds[label] = float(sum(d["seconds"] for d in found))
        seconds[f"{label} (cpu)"] = float(sum(d["cpu"] for d in found))

    if need_maps:
        cost("maps", "explain")
    randomisation: dict[str, RandomisationResult] = {}
    data_randomisation: dict[str, RandomisationResult] = {}
    for family in families:
        if family in kept_families:
            cost(family, family)
        t0, c0 = time.perf_counter(), time.process_time()
        if family == "faithfulness":
            for name in names:
                found: dict[str, list[MetricResult]] = {}
                for i in range(len(imgs)):
                    for r in done[("faithfulness", i, name)]["result"]:
                        found.setdefault(r.name, []).append(r)
                joined = {k: _join(v, name) for k, v in found.items()}
                joined["road_area_between"] = area_between(joined["road_morf"], joined["road_lerf"])
                for r in joined.values():
                    add(r, name)
        elif family in ("localisation", "complexity"):
            table = LOCALISATION_METRICS if family == "localisation" else COMPLEXITY_METRICS
            for name in names:
                for fn in table.values():
                    add(
                        fn(maps[name], masks, method=name)
                        if family == "localisation"
                        else fn(maps[name], method=name),
                        name,
                    )
                bar.update(len(imgs))
            seconds[family] = time.perf_counter() - t0
            seconds[f"{family} (cpu)"] = time.process_time() - c0
        elif family == "robustness":
            for name in names:
                per_image = [done[("robustness", i, name)]["result"] for i in range(len(imgs))]
                for k, metric in enumerate(("max_sensitivity", "local_lipschitz")):
                    parts_k = [p[k] for p in per_image]
                    add(
                        MetricResult(
                            metric,
                            np.concatenate([p.values for p in parts_k]),
                            parts_k[0].higher_is_better,
                            parts_k[0].params,
                            name,
                            np.concatenate([p.curves for p in parts_k]),
                        ),
                        name,
                    )
        elif family == "sanity":
            for name in names:
                per_image = [done[("sanity", i, name)]["result"] for i in range(len(imgs))]
                randomisation[name] = _merge_checks(
                    settings.randomisation_mode,
                    name,
                    [p[settings.randomisation_mode] for p in per_image],
                    imgs,
                    targets,
                )
                add(_last_layer(randomisation[name], "randomisation_similarity"), name)
                if with_data:
                    data_randomisation[name] = _merge_checks(
                        "data", name, [p["data"] for p in per_image], imgs, targets
                    )
                    add(_last_layer(data_randomisation[name], "data_randomisation_similarity"), name)
            if not with_data:
                notes.append("data randomisation left out: no training images and labels given")
        say(f"{family}: {len(names)} method(s) on {len(imgs)} image(s), {seconds[family]:.1f} s of work")
    bar.close()
    seconds["wall"] = time.perf_counter() - started
    result = SuiteResult(
        methods=names,
        families=families,
        metrics=metrics,
        settings=settings,
        n_images=len(imgs),
        seconds=seconds,
        notes=notes,
    )
    result.randomisation, result.data_randomisation = randomisation, data_randomisation
    return result


#: images whose maps at every randomised layer are kept for the sanity figures
N_KEPT_MAPS = 4


def _data_variant(model, train_images, train_labels, seed: int):
    """The model refitted on permuted labels (as :func:`data_randomisation_check` draws them)."""
    y = np.asarray(train_labels)
    train = as_image_list(train_images)
    if len(train) != len(y):
        raise ValueError(f"{len(train)} training images but {len(y)} labels")
    rng = np.random.default_rng(layer_seeds(seed, 1)[0])
    return clone(model).fit(train, y[rng.permutation(len(y))])


def _merge_checks(check: str, name: str, per_image: list[dict], imgs, targets) -> RandomisationResult:
    """One :class:`RandomisationResult` over all images from the per-image parts (images in order)."""
    first = per_image[0]
    measures = {m: np.stack([p["measures"][m] for p in per_image], axis=1) for m in first["measures"]}
    kept = [p["maps"] for p in per_image[:N_KEPT_MAPS] if p["maps"] is not None]
    return RandomisationResult(
        check=check,
        explainer=name,
        layers=list(first["layers"]),
        similarity_name=first["similarity_name"],
        measures=measures,
        threshold=float(first["threshold"]),
        targets=list(targets),
        maps=kept,
        images=list(imgs[: len(kept)]),
        n_explanations=int(sum(p["n_explanations"] for p in per_image)),
        seconds=float(sum(p["seconds"] for p in per_image)),
    )


def _last_layer(r: RandomisationResult, name: str) -> MetricResult:
    """The similarity of the last randomised model's maps to the originals, per image (lower is better)."""
    params = {"check": r.check, "layers": list(r.layers), "similarity": r.similarity_name, "passed": r.passed}
    return MetricResult(name, r.similarity[-1], False, params, r.explainer)


def _faithfulness_one(
    model, im, t, heat, settings: SuiteSettings, subset: int, name: str
) -> list[MetricResult]:
    """Every faithfulness metric of one image's map (``road_area_between`` is made when joining)."""
    seed = settings.seed
    one = [
        road(model, [im], target=t, maps=[heat], order=order, fractions=settings.road_fractions, seed=seed)
        for order in ("morf", "lerf")
    ]
    one.append(pixel_flipping(model, [im], target=t, maps=[heat], steps=settings.flip_steps, seed=seed))
    one.append(irof(model, [im], target=t, maps=[heat], n_segments=settings.irof_segments, seed=seed))
    one.append(
        faithfulness_correlation(
            model, [im], target=t, maps=[heat], runs=settings.correlation_runs, subset_size=subset, seed=seed
        )
    )
    one.extend(
        region_morf_lerf(
            model, [im], target=t, maps=[heat], block=settings.block, steps=settings.region_steps, seed=seed
        ).values()
    )
    return one


def _join(parts: list[MetricResult], method: str) -> MetricResult:
    """One result over all images from per-image results (curves NaN-padded to one width)."""
    curves = None
    if all(p.curves is not None for p in parts):
        rows = [np.asarray(p.curves, dtype=np.float64) for p in parts]
        if all(r.shape[1:] == rows[0].shape[1:] for r in rows):
            curves = np.concatenate(rows)
        elif all(r.ndim == 2 for r in rows):
            width = max(r.shape[1] for r in rows)
            curves = np.full((sum(len(r) for r in rows), width), np.nan)
            k = 0
            for r in rows:
                curves[k : k + len(r), : r.shape[1]] = r
                k += len(r)
    p0 = parts[0]
    params = {k: v for k, v in p0.params.items() if k != "accuracy"}
    if "accuracy" in p0.params:  # ROAD's share of images still positive, over all images
        params["accuracy"] = np.nanmean([p.params["accuracy"] for p in parts], axis=0).tolist()
    values = np.concatenate([p.values for p in parts])
    return MetricResult(p0.name, values, p0.higher_is_better, params, method, curves)


#: where ``bowlrp-evaluate --suite --masks`` finds the ground truth of each image ``<stem>.png``
MASK_SOURCES = {
    "files": "<stem>_mask.png beside the image (non-zero pixels are the object)",
    "polygons": "a polygons scene (save_scenes): <stem>_mask.png and <stem>.json, the polygons' pixels",
    "shortcut": "the shortcut data (save_samples): the stamp's box from <prefix>_labels.csv beside the image",
    "voc:DIR": "PASCAL VOC boxes from DIR/<stem>.xml (of the target class if given, else every object)",
}


def is_mask_file(path) -> bool:
    """True for a ground-truth mask file of :data:`MASK_SOURCES` (``*_mask.png``), never an input image."""
    return Path(path).name.endswith("_mask.png")


def read_masks(paths, source: str, target_name: str | None = None) -> list[np.ndarray | list]:
    """The ground truth of each image file from a data set: masks or lists of boxes (:func:`as_masks`).

    Parameters
    ----------
    paths : sequence of image paths
    source : a key of :data:`MASK_SOURCES` (``"voc:DIR"`` with the annotations' folder)
    target_name : str or None
        VOC: keep the boxes of this class only.

    Raises
    ------
    ValueError
        One line naming the file that is missing or unreadable and what to give instead.
    """
    paths = [Path(p) for p in paths]
    out: list = []
    if source == "shortcut":
        tables: dict[Path, dict] = {}
        for p in paths:
            if p.parent not in tables:
                rows = {}
                for table in sorted(p.parent.glob("*_labels.csv")):
                    with open(table, newline="") as fh:
                        for row in csv.DictReader(fh):
                            rows[row["file"]] = json.loads(row["box"])
                tables[p.parent] = rows
            box = tables[p.parent].get(p.name)
            if box is None:
                raise ValueError(
                    f"{display_path(p)} is not listed in a *_labels.csv beside it (save_samples writes one); "
                    "give --masks files or another source"
                )
            r0, c0, r1, c1 = (int(v) for v in box)
            out.append([(r0, r1, c0, c1)])
        return out
    if source.startswith("voc:"):
        folder = Path(source[4:])
        for p in paths:
            xml = folder / f"{p.stem}.xml"
            if not xml.is_file():
                raise ValueError(f"no VOC annotation {display_path(xml)} for {display_path(p)}")
            out.append(read_voc_annotation(xml).boxes(target_name))
        return out
    if source not in ("files", "polygons"):
        raise ValueError(f"unknown mask source {source!r}; use one of {list(MASK_SOURCES)}")
    for p in paths:
        mask_path = p.with_name(f"{p.stem}_mask.png")
        if not mask_path.is_file():
            raise ValueError(f"no mask {display_path(mask_path)} for {display_path(p)}")
        if source == "files":
            out.append(
                np.asarray(read_image(mask_path)).reshape(read_image(mask_path).shape[:2] + (-1,)).any(-1)
            )
        else:
            scene = load_scene(p)
            out.append(np.isin(scene.mask, sorted(scene.polygon_ids())))
    return out
