"""The evaluation suite's outputs: ``suite.json``, ``suite.csv``, figures, a self-contained ``report.html``.

    write_suite_report(result, "eval/")   # after bowlrp.evaluation.suite.evaluate_suite

Files (every one written atomically, :mod:`bowlrp._utils.atomic`):

* ``suite.json``: :meth:`SuiteResult.to_dict` (every score with its direction,
  parameters, n, standard error, per-image values, the paired differences between
  methods, one sentence per metric, the randomisation verdicts);
* ``suite.csv``: one row per metric and method (family, metric, method, direction,
  mean, standard error, n, rank);
* ``suite_table.png``: the method x metric table coloured by rank (green best);
* ``road_curves.png``: ROAD MoRF and LeRF mean curves per method (± one standard error);
* ``randomisation_<method>.png``: per-layer similarity curves with the maps at each
  layer for a few images (:func:`~bowlrp.evaluation.randomisation.plot_randomisation`);
* ``report.html``: one sentence per metric (which method wins, by how many paired
  standard errors), the verdicts, the table and the figures inlined as base64.

The command refuses an output folder in which these names hold files the suite did
not write (:func:`check_suite_files_are_ours`), as ``bowlrp-evaluate`` does for its
summary files. :func:`evaluate_suite_into` is the suite into a folder: under the folder's lock,
resumable (finished parts kept in ``suite_parts/``, :mod:`bowlrp.evaluation.suite_parts`),
the report written at the end.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np

from .._utils.atomic import atomic_write_bytes
from .._utils.csv_cells import csv_cell
from .._utils.lock import FolderLock
from .._utils.validation import display_path
from ..runs.distributed import dask_client
from .explainers import explainer_name
from .output_files import check_files_are_ours, read_record
from .randomisation import plot_randomisation
from .suite import (
    FAMILIES,
    METRIC_WORDS,
    SCHEMA,
    SuiteResult,
    SuiteSettings,
    evaluate_suite,
    suite_fingerprint,
)
from .suite_parts import SuiteParts, SuiteSettingsChanged, describe_change

FIXED_FILES = ("suite.json", "suite.csv", "suite_table.png", "road_curves.png", "report.html")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def suite_files(methods) -> list[str]:
    """The names the suite writes into its output folder for these methods."""
    return [*FIXED_FILES, *(f"randomisation_{_safe(m)}.png" for m in methods)]


def check_suite_files_are_ours(out, methods) -> None:
    """Refuse an output folder whose suite file names hold files the suite did not write.

    The files are the suite's to replace only when ``suite.json`` is a suite record
    (its ``"schema"`` is :data:`~bowlrp.evaluation.suite.SCHEMA`); a link or a folder in
    their place is refused too. Checked before any image is evaluated (the helper
    :func:`~bowlrp.evaluation.output_files.check_files_are_ours` is ``bowlrp-evaluate``'s too).

    Raises
    ------
    FileExistsError
        One line naming the file and what to do.
    """
    check_files_are_ours(
        out,
        suite_files(methods),
        "suite.json",
        lambda data: data.get("schema") == SCHEMA,
        "the evaluation suite",
        "",
        "suite.json record",
    )


def evaluate_suite_into(
    out,
    model,
    images,
    *,
    methods=("lrp", "occlusion", "random"),
    families="all",
    masks=None,
    target=None,
    settings: SuiteSettings | None = None,
    n_jobs: int | None = None,
    client=None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    model_hash: str | None = None,
    record: dict | None = None,
    train_images=None,
    train_labels=None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    n_maps: int = 3,
) -> SuiteResult:
    """The suite into an output folder: locked, resumable, every report file written at the end.

    Takes the folder's lock (:class:`~bowlrp._utils.lock.FolderLock`, the one
    ``bowlrp-evaluate`` takes: two runs never write one folder), keeps every finished
    part in ``out/suite_parts`` (:mod:`bowlrp.evaluation.suite_parts`) so that a rerun
    with the same settings computes only what is missing, runs
    :func:`~bowlrp.evaluation.suite.evaluate_suite` and writes its report
    (:func:`write_suite_report`). Files the suite did not write are never removed or
    changed: the report's names are checked first (:func:`check_suite_files_are_ours`).

    Parameters
    ----------
    out : path
        The output folder (created if needed).
    model, images, methods, families, masks, target, settings, n_jobs, client, train_images,
    train_labels, progress, report
        As :func:`~bowlrp.evaluation.suite.evaluate_suite`.
    workers : int or None
        Run the parts on a new local Dask cluster of this many processes (one thread each;
        at most the usable cores), closed at the end.
    scheduler : str or None
        Run the parts on the running Dask scheduler at this address (``tcp://host:8786``).
        ``client``, ``workers``, ``scheduler`` and ``n_jobs`` exclude each other. The
        cluster is reached before the output folder is made: an unreachable scheduler is
        one line (:class:`~bowlrp.runs.distributed.SchedulerError`) and leaves nothing.
    overwrite : bool
        Replace the parts (and report) of a run with other settings in ``out``; without
        it such a folder is refused in one line.
    model_hash : str or None
        Identifies the model in the fingerprint (default: a content hash of ``model``;
        the command line gives the model file's SHA-256).
    record : dict or None
        What ``suite.json`` lists under ``"record"``.

    Raises
    ------
    SuiteSettingsChanged
        ``out`` holds the suite's results of other settings and ``overwrite`` is False.
    FileExistsError
        A report name or ``suite_parts`` holds something the suite did not write.
    LockedError
        Another run holds the folder.
    """
    out = Path(out)
    settings = settings or SuiteSettings()
    names = [explainer_name(m) for m in methods]
    if model_hash is None:
        model_hash = "joblib:" + joblib.hash(model)
    fingerprint = suite_fingerprint(model_hash, settings, target)
    given = [
        k
        for k, v in (("n_jobs", n_jobs), ("client", client), ("workers", workers), ("scheduler", scheduler))
        if v is not None
    ]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} exclude each other: give one way to spread the parts")
    check_suite_files_are_ours(out, names)  # a refused run answers before any folder is made
    with dask_client(workers, scheduler, client) as client:  # before the folder: see dask_client
        return _evaluate_suite_into(
            out,
            model,
            images,
            names,
            fingerprint,
            methods=methods,
            families=families,
            masks=masks,
            target=target,
            settings=settings,
            n_jobs=n_jobs,
            client=client,
            overwrite=overwrite,
            record=record,
            train_images=train_images,
            train_labels=train_labels,
            progress=progress,
            report=report,
            n_maps=n_maps,
        )


def _evaluate_suite_into(
    out: Path, model, images, names, fingerprint, *, overwrite, record, n_maps, **kwargs
) -> SuiteResult:
    """:func:`evaluate_suite_into` once the cluster (if any) is reached."""
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, "bowlrp-evaluate --suite"):
        check_suite_files_are_ours(out, names)  # again, now that nobody else writes here
        old = read_record(out / "suite.json")
        known = json.loads(json.dumps(fingerprint, default=str))
        if old is not None and old.get("fingerprint") and old["fingerprint"] != known and not overwrite:
            raise SuiteSettingsChanged(
                f"{display_path(out)} holds an evaluation-suite report made with other settings "
                f"({describe_change(old['fingerprint'], known)}); pass --overwrite to replace it, "
                "or choose another --out"
            )
        parts = SuiteParts.open(out, fingerprint, overwrite=overwrite)
        result = evaluate_suite(model, images, parts=parts, **kwargs)
        result.record = dict(record or {})
        result.fingerprint = parts.fingerprint
        write_suite_report(result, out, n_maps=n_maps)
    return result


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt  # pyplot after the Agg backend is chosen (see _pyplot)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib  # with pyplot below: the Agg backend first, only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen before pyplot loads

    return plt


def _ordered_metrics(result: SuiteResult) -> list[str]:
    order = {f: i for i, f in enumerate(FAMILIES)}
    known = list(METRIC_WORDS)
    return sorted(result.metrics, key=lambda m: (order[result.family(m)], known.index(m)))


def ranks(result: SuiteResult, metric: str) -> dict[str, int]:
    """Rank of each method on a metric, 1 = best (ties share the better rank)."""
    order = result.ranking(metric)
    means = {m: result.metrics[metric][m].mean for m in order}
    out, last, last_rank = {}, None, 0
    for i, m in enumerate(order):
        if last is None or not (means[m] == last or (np.isnan(means[m]) and np.isnan(last))):
            last_rank = i + 1
        out[m] = last_rank
        last = means[m]
    return out


def table_figure(result: SuiteResult) -> bytes:
    """The method x metric table, cells coloured by rank (green best, red worst), as PNG."""
    plt = _pyplot()
    metrics = _ordered_metrics(result)
    methods = result.methods
    R = np.array([[ranks(result, m)[k] for k in methods] for m in metrics], dtype=float)
    scale = (R - 1) / max(1, len(methods) - 1)
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(methods), 0.9 + 0.36 * len(metrics)))
    ax.imshow(scale, cmap="RdYlGn_r", vmin=-0.15, vmax=1.15, aspect="auto")
    for i, m in enumerate(metrics):
        for j, k in enumerate(methods):
            r = result.metrics[m][k]
            ax.text(j, i, f"{r.mean:.3g} ± {r.sem:.2g}", ha="center", va="center", fontsize=8)
    arrows = ["↑" if result.higher_is_better(m) else "↓" for m in metrics]
    ax.set_yticks(range(len(metrics)), [f"{m} {a}" for m, a in zip(metrics, arrows)], fontsize=8)
    ax.set_xticks(range(len(methods)), methods, fontsize=9)
    ax.xaxis.tick_top()
    ax.set_title(f"mean ± standard error over {result.n_images} images (green: best rank)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def road_figure(result: SuiteResult) -> bytes | None:
    """ROAD MoRF and LeRF mean curves per method, bands of one standard error, as PNG (None without ROAD)."""
    if "road_morf" not in result.metrics:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, order in zip(axes, ("morf", "lerf")):
        for method, r in result.metrics[f"road_{order}"].items():
            x = np.array([0.0, *r.params["fractions"]])
            c = r.curves
            n = np.isfinite(c).sum(axis=0)
            mean = np.nanmean(c, axis=0)
            se = np.where(n > 1, np.nanstd(c, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1)), 0.0)
            ax.plot(x, mean, marker="o", label=f"{method} ({r.mean:.3g} ± {r.sem:.2g})")
            ax.fill_between(x, mean - se, mean + se, alpha=0.2)
        first = "most" if order == "morf" else "least"
        ax.set_title(f"ROAD, {first} relevant removed first", fontsize=10)
        ax.set_xlabel("fraction of pixels removed (noisy linear imputation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("f(x) of the explained class")
    fig.tight_layout()
    return _png(fig)


def csv_bytes(result: SuiteResult) -> bytes:
    """``suite.csv``: family, metric, method, higher_is_better, mean, stderr, n, rank per row."""
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["family", "metric", "method", "higher_is_better", "mean", "stderr", "n", "rank"])
    for m in _ordered_metrics(result):
        rk = ranks(result, m)
        for k, r in result.metrics[m].items():
            row = [result.family(m), m, k, r.higher_is_better, r.mean, r.sem, r.n, rk[k]]
            w.writerow([csv_cell(v) for v in row])
    return text.getvalue().encode("utf-8")


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


#: list entries of the record the report shows in full up to this length (then the first few)
RECORD_SHOWN = 3


def record_words(record: dict) -> str:
    """The run's record in one line: ``key: value``; a list longer than :data:`RECORD_SHOWN`
    as its count and first entries (``images: 40, first: a.png, b.png, c.png, ...``; the
    whole list stays in ``suite.json``)."""
    out = []
    for key, value in record.items():
        if isinstance(value, (list, tuple)):
            shown = ", ".join(str(v) for v in value[:RECORD_SHOWN])
            if len(value) > RECORD_SHOWN:
                shown = f"{len(value)}, first: {shown}, ... (all in suite.json)"
            out.append(f"{key}: {shown or 'none'}")
        else:
            out.append(f"{key}: {json.dumps(value, default=str) if not isinstance(value, str) else value}")
    return "; ".join(out)


def html_report(result: SuiteResult, figures: dict[str, bytes]) -> str:
    """The self-contained report: sentences per metric, verdicts, the coloured table, figures inlined."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>bowlrp evaluation suite</title><style>",
        "body{font-family:sans-serif;max-width:1250px;margin:1em auto;color:#222}",
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}",
        "td.num{text-align:right;font-family:monospace}img{max-width:100%}li{margin:3px 0}",
        ".pass{color:#1a7f37}.fail{color:#b42318}.note{color:#666}</style></head><body>",
        f"<h1>How far to trust a heatmap: {e(', '.join(result.methods))}</h1>",
        f"<p>{result.n_images} images; families: {e(', '.join(result.families))}. Every method is scored "
        "on the same images; a lead is stated as the paired difference to the runner-up in units of its "
        "standard error (2 or more: clear).</p>",
    ]
    if result.record:
        parts.append(f"<p class='note'>{e(record_words(result.record))}</p>")
    for note in result.notes:
        parts.append(f"<p class='note'>Note: {e(note)}</p>")
    if result.randomisation or result.data_randomisation:
        parts.append("<h2>Sanity: does the map follow the model?</h2><ul>")
        for check in (result.randomisation, result.data_randomisation):
            for r in check.values():
                cls = "pass" if r.passed else "fail"
                parts.append(f"<li class='{cls}'>{e(r.verdict())}</li>")
        parts.append("</ul>")
    parts.append("<h2>Which method wins each metric</h2>")
    metrics = _ordered_metrics(result)
    for family in result.families:
        these = [m for m in metrics if result.family(m) == family]
        if these:
            parts.append(f"<h3>{e(family)}</h3><ul>")
            parts += [f"<li>{e(result.sentence(m))}</li>" for m in these]
            parts.append("</ul>")
    parts.append("<h2>Method × metric (green: best rank)</h2><table><tr><th>metric</th><th>better</th>")
    parts += [f"<th>{e(k)}</th>" for k in result.methods]
    parts.append("</tr>")
    colours = ["#b7e4c7", "#fff3b0", "#f8c4b4", "#f4a3a3"]
    for m in metrics:
        rk = ranks(result, m)
        parts.append(f"<tr><td>{e(m)}</td><td>{'higher' if result.higher_is_better(m) else 'lower'}</td>")
        for k in result.methods:
            r = result.metrics[m][k]
            worst = len(result.methods) - 1
            level = 0 if rk[k] == 1 else (len(colours) - 1 if rk[k] - 1 >= worst else 1)
            parts.append(
                f"<td class='num' style='background:{colours[level]}'>{r.mean:.3g} ± {r.sem:.2g}"
                f" <small>(n={r.n})</small></td>"
            )
        parts.append("</tr>")
    parts.append("</table>")
    for name, data in figures.items():
        parts.append(f"<h3>{e(name)}</h3>{_img(data, name)}")
    parts.append(
        "<p class='note'>Settings: "
        + e(json.dumps(result.settings.to_dict()))
        + "; seconds per family: "
        + e(json.dumps({k: round(v, 1) for k, v in result.seconds.items()}))
        + "</p></body></html>"
    )
    return "\n".join(parts)


def write_suite_report(result: SuiteResult, out, n_maps: int = 3) -> list[Path]:
    """Write every output of the suite into ``out`` (created if needed); returns the paths written.

    Raises
    ------
    FileExistsError
        ``out`` holds a file of one of the suite's names that the suite did not write.
    """
    out = Path(out)
    check_suite_files_are_ours(out, result.methods)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, data: bytes) -> None:
        atomic_write_bytes(out / name, data)
        written.append(out / name)

    figures: dict[str, bytes] = {}
    table = table_figure(result)
    figures["method × metric table"] = table
    road_png = road_figure(result)
    if road_png is not None:
        figures["ROAD curves"] = road_png
    for method, r in result.randomisation.items():
        figures[f"model randomisation: {method}"] = plot_randomisation(r, n_images=n_maps)
    put("suite.json", json.dumps(result.to_dict(), default=str, indent=1).encode("utf-8"))
    put("suite.csv", csv_bytes(result))
    put("suite_table.png", table)
    if road_png is not None:
        put("road_curves.png", road_png)
    for method in result.randomisation:
        put(f"randomisation_{_safe(method)}.png", figures[f"model randomisation: {method}"])
    put("report.html", html_report(result, figures).encode("utf-8"))
    return written
