"""SpRAy over a folder of heatmaps, and the browsable report (HTML page, CSV, JSON, PNGs).

:func:`analyse_heatmaps` runs :class:`~bowlrp.spray.SpRAy` per explained class
(maps are streamed from disk and pooled one at a time, so memory stays at
``n * grid^2`` numbers); :func:`write_report` writes into a directory:

- ``index.html``: one self-contained page (no network; pictures beside it);
- ``clusters.csv``: image, heatmap, class, cluster, t-SNE x/y per map;
- ``spectrum.json``: parameters, per-class eigenvalues, eigengap, cluster sizes, ranking,
  and the records that were skipped;
- ``spectrum_<i>.png``, ``tsne_<i>.png``, ``cluster_<i>_<c>_mean.png``,
  ``cluster_<i>_<c>_examples.png`` per class ``i`` and cluster ``c``,
  ``ranking.png`` when there are several classes.

Given ``on_skip``, a bad record (unreadable file, missing arrays, NaN values,
an image that cannot be read) is left out, or drawn without its image, and
reported; the analysis goes on with the others. Text cells of the CSV that a
spreadsheet would run as a formula are quoted (:func:`csv_cell`).
"""

from __future__ import annotations

import csv
import html
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from matplotlib import colormaps
from tqdm.auto import tqdm

from .._utils.csv_cells import csv_cell
from .._utils.validation import as_float_image, display_path
from ..exceptions import BowlrpError
from ..image import colorize, overlay, write_png
from .distributed import pool_on_dask, pool_records_on_dask
from .heatmap_files import (
    HeatmapFileError,
    HeatmapRecord,
    OnSkip,
    SkippedRecord,
    attach_images,
    is_utf8,
    load_map,
    skip_or_raise,
)
from .spectral import SpRAy, common_shape, normalize_pooled, pool_maps, ranking

MIN_MAPS = 3
TILE = 96  # pixel height of an example in the strips


@dataclass
class ClassAnalysis:
    """SpRAy of one explained class.

    Attributes
    ----------
    target : str
    records : list of HeatmapRecord, in the order of ``spray.labels_``
    spray : fitted SpRAy
    """

    target: str
    records: list[HeatmapRecord]
    spray: SpRAy
    pooled: np.ndarray = field(repr=False)


def _progress(iterable, desc, total=None, disable=False):
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        file=sys.stderr,
        leave=False,
        disable=disable or (total is not None and total < 20),
    )


def pool_records(
    records: list[HeatmapRecord], grid: int, quiet: bool = False, on_skip: OnSkip | None = None
) -> tuple[np.ndarray, tuple[int, int], list[HeatmapRecord]]:
    """Pooled maps (n, grid, grid) read one at a time, the common shape, and the records read.

    Without ``on_skip`` the first unreadable map raises; with it, the record
    is reported and left out (the pooled maps follow the returned records).
    """
    shape = common_shape(r.shape for r in records)
    pooled = np.empty((len(records), grid, grid))
    kept = []
    for r in _progress(records, "reading heatmaps", len(records), quiet):
        try:
            pooled[len(kept)] = pool_maps([load_map(r)], grid, shape)[0]
        except HeatmapFileError as exc:
            skip_or_raise(on_skip, r.npy, exc)
            continue
        kept.append(r)
    if len(kept) < len(records) and kept:
        shape = common_shape(r.shape for r in kept)
        if shape != common_shape(r.shape for r in records):  # the most common shape changed: pool again
            pooled[: len(kept)] = np.stack([pool_maps([load_map(r)], grid, shape)[0] for r in kept])
    return pooled[: len(kept)], shape, kept


def _no_class_error(skipped: dict[str, int], where: str = "") -> HeatmapFileError:
    counts = ", ".join(f"{t!r}: {n}" for t, n in skipped.items()) or "no readable maps"
    return HeatmapFileError(
        f"SpRAy needs at least {MIN_MAPS} heatmaps of one explained class; found {counts}{where}"
    )


def analyse_heatmaps(
    groups: dict[str, list[HeatmapRecord]],
    params: dict | None = None,
    quiet: bool = False,
    on_skip: OnSkip | None = None,
    client=None,
) -> tuple[list[ClassAnalysis], dict[str, int]]:
    """Run SpRAy per class.

    Parameters
    ----------
    groups : dict target -> records
    params : SpRAy parameters
    quiet : bool
        No progress bars.
    on_skip : callable or None
        Called with a :class:`~bowlrp.spray.heatmap_files.SkippedRecord` per
        map that cannot be read, which is left out (None: it raises).
    client : distributed.Client or None
        Read and pool the maps in blocks, and build the graph and the analyses,
        as Dask tasks (:mod:`bowlrp.spray.distributed`); the same result.

    Returns
    -------
    analyses : list of ClassAnalysis (classes with at least 3 maps)
    skipped : dict target -> number of maps, for classes with fewer

    Raises
    ------
    HeatmapFileError
        When no class has 3 maps or more.
    """
    params = dict(params or {})
    analyses, skipped = [], {}
    for target, records in groups.items():
        if len(records) < MIN_MAPS:
            skipped[target] = len(records)
            continue
        sp = SpRAy(**params)
        if client is None:
            pooled, shape, records = pool_records(records, sp.grid, quiet, on_skip)
        else:
            pooled, shape, records = pool_records_on_dask(client, records, sp.grid, quiet, on_skip)
        if len(records) < MIN_MAPS:
            skipped[target] = len(records)
            continue
        sp.fit_pooled(pooled, shape, client=client)
        analyses.append(ClassAnalysis(target, records, sp, pooled))
    if not analyses:
        raise _no_class_error(skipped)
    return analyses, skipped


def store_records(store, targets=None, on_skip: OnSkip | None = None) -> dict[str, list[HeatmapRecord]]:
    """The finished records of a relevance store per target, each read once to check it.

    A record whose arrays or attributes are missing or inconsistent is reported
    through ``on_skip`` and left out (None: it raises).

    Parameters
    ----------
    store : RelevanceStore (``bowlrp.runs.store.open``)
    targets : list of str or None
        Classes to keep (default: every target in the store, in order of first appearance).
    on_skip : callable or None

    Returns
    -------
    dict target -> records (each with its ``pooled`` map on the store's grid)
    """
    try:
        ids = store.ids()
    except Exception as exc:  # noqa: BLE001 - the store's own index is unreadable: nothing to go on
        raise HeatmapFileError(
            f"cannot list the records of {display_path(store.location)}: {exc}; "
            "write the store again with bowlrp-explain --store"
        ) from None
    wanted = None if targets is None else [str(t) for t in targets]
    groups: dict[str, list[HeatmapRecord]] = {t: [] for t in wanted or []}
    for image_id in ids:
        name = store.heatmap_location(image_id).rsplit("/", 1)[0]
        try:
            # the heatmaps' shapes and codecs are checked, their values read one map at a time when
            # needed: thousands of records never sit in memory together
            rec = store.record(image_id, heatmaps=False)
            names = [str(t) for t in rec.targets]
            pooled = rec.pooled
            shape = (int(rec.meta["shape"][0]), int(rec.meta["shape"][1])) if "shape" in rec.meta else None
            if shape is None:
                shape = store.heatmap(image_id, 0).shape
            if not all(is_utf8(t) for t in [image_id, str(rec.path), *names]):
                raise HeatmapFileError(
                    f"{name}: its id, path or targets are not valid UTF-8; explain it again"
                )
        except Exception as exc:  # noqa: BLE001 - a corrupt record is reported and left out
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not isinstance(exc, (HeatmapFileError, BowlrpError)):  # bowlrp's own name the record
                message = f"{name}: unreadable record ({type(exc).__name__}: {message}); explain it again"
            skip_or_raise(on_skip, image_id, HeatmapFileError(message))
            continue
        for i, target in enumerate(names):
            if wanted is not None and target not in wanted:
                continue
            groups.setdefault(target, []).append(
                HeatmapRecord(
                    npy=PurePosixPath(store.heatmap_location(image_id)),
                    json=None,
                    stem=image_id,
                    target=target,
                    meta={**rec.meta, "image": rec.path},
                    shape=shape,
                    loader=lambda image_id=image_id, i=i: store.heatmap(image_id, i),
                    pooled=np.asarray(pooled[i], dtype=np.float64),
                )
            )
    return groups


def analyse_store(
    store,
    params: dict | None = None,
    targets=None,
    quiet: bool = False,
    on_skip: OnSkip | None = None,
    images=None,
    client=None,
) -> tuple[list[ClassAnalysis], dict[str, int]]:
    """Run SpRAy per class on the maps of a relevance store (:mod:`bowlrp.runs.store`).

    The store's pooled maps are used as they are when ``params["grid"]`` is
    the store's grid (or not given); otherwise each heatmap is read and
    sum-pooled onto the requested grid. Store maps are pooled in their own
    shape (every cell holds the relevance of the pixels it covers), not
    resized to a common shape first as :func:`analyse_heatmaps` does.

    Parameters
    ----------
    store : RelevanceStore (``bowlrp.runs.store.open``)
    params : SpRAy parameters
    targets : list of str or None
        Classes to analyse (default: every target in the store).
    quiet : bool
        No progress bars.
    on_skip : callable or None
        Called with a :class:`~bowlrp.spray.heatmap_files.SkippedRecord` per
        corrupt record (or record without an image under ``images``), which is
        left out (None: it raises).
    images : path or None
        Folder of the explained images: each record's image is looked up
        there (:func:`~bowlrp.spray.heatmap_files.attach_images`) before the analysis.
    client : distributed.Client or None
        Pool on another grid, build the graph and the analyses as Dask tasks; the
        workers open the store by its location (a path or URL they reach).
    """
    params = dict(params or {})
    grid = params.get("grid") or store.grid
    params["grid"] = grid
    analyses, skipped = [], {}
    for target, records in store_records(store, targets, on_skip).items():
        if images is not None:
            records = attach_images(records, images, on_skip)
        if grid != store.grid and client is not None:
            pooled, records = pool_on_dask(
                client, records, grid, None, location=str(store.location), on_skip=on_skip, quiet=quiet
            )
        elif grid != store.grid:
            pooled, kept = [], []
            for r in _progress(records, "pooling heatmaps", len(records), quiet):
                try:
                    pooled.append(pool_maps([load_map(r)], grid, r.shape)[0])
                except HeatmapFileError as exc:
                    skip_or_raise(on_skip, r.stem, exc)
                    continue
                kept.append(r)
            records = kept
        else:
            pooled = [r.pooled for r in records]
        if len(records) < MIN_MAPS:
            skipped[target] = len(records)
            continue
        pooled = np.stack(pooled)
        sp = SpRAy(**params)
        sp.fit_pooled(pooled, common_shape(r.shape for r in records), client=client)
        analyses.append(ClassAnalysis(target, records, sp, pooled))
    if not analyses:
        raise _no_class_error(skipped, f" in {display_path(store.location)}")
    return analyses, skipped


def ranking_table(analyses: list[ClassAnalysis], n_shown: int = 5) -> list[dict]:
    """Classes ordered by ``lambda_2`` ascending (see :func:`bowlrp.spray.rank_classes`)."""
    return ranking({a.target: a.spray for a in analyses}, n_shown)


# -- pictures ------------------------------------------------------------------
def _figure(width=4.2, height=3.2):
    import matplotlib  # with pyplot below: the Agg backend first, only when a figure is drawn

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen before pyplot loads

    return plt, plt.subplots(figsize=(width, height), dpi=100)


def plot_spectrum(path: Path, sp: SpRAy, title: str) -> None:
    """Eigenvalues against their index, the eigengap marked by a dashed line."""
    plt, (fig, ax) = _figure()
    ev = sp.eigenvalues_
    idx = np.arange(1, len(ev) + 1)
    ax.plot(idx, ev, "o-", color="#333333")
    k = sp.n_clusters_
    if k < len(ev):
        ax.axvline(k + 0.5, color="#d62728", ls="--", lw=1.5)
        ax.annotate(
            f"eigengap after $\\lambda_{{{k}}}$\n(gap {sp.eigengap_:.3f})",
            xy=(k + 0.5, (ev[k - 1] + ev[k]) / 2),
            xytext=(8, 0),
            textcoords="offset points",
            color="#d62728",
            fontsize=9,
            va="center",
        )
    ax.set_xticks(idx)
    ax.set_xlabel("index i")
    ax.set_ylabel(r"eigenvalue $\lambda_i$ of $L_{sym}$")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _cluster_colors(k: int):
    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def plot_embedding(path: Path, sp: SpRAy, title: str) -> None:
    """t-SNE coordinates coloured by cluster."""
    plt, (fig, ax) = _figure()
    colors = _cluster_colors(sp.n_clusters_)
    emb = sp.embedding_
    size = 18 if len(emb) < 500 else 5
    for c in range(sp.n_clusters_):
        pts = emb[sp.labels_ == c]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=size,
            color=colors[c],
            label=f"cluster {c} ({len(pts)})",
            edgecolors="none",
        )
    ax.legend(fontsize=8, markerscale=1.5, loc="best", framealpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_ranking(path: Path, table: list[dict]) -> None:
    """Bar chart of the smallest eigenvalues per class in ranking order (thesis Fig. 6.5)."""
    n_shown = max(len(r["eigenvalues"]) for r in table)
    plt, (fig, ax) = _figure(max(4.2, 0.55 * len(table) * n_shown / 3 + 1.5), 3.0)
    width = 0.8 / n_shown
    x = np.arange(len(table))
    for j in range(n_shown):
        vals = [r["eigenvalues"][j] if j < len(r["eigenvalues"]) else np.nan for r in table]
        ax.bar(x + (j - (n_shown - 1) / 2) * width, vals, width, label=f"$\\lambda_{{{j + 1}}}$")
    ax.set_xticks(x)
    ax.set_xticklabels(
        [str(r["class"]) for r in table],
        rotation=30 if len(table) > 6 else 0,
        ha="right" if len(table) > 6 else "center",
    )
    ax.set_ylabel("eigenvalue")
    ax.set_title(r"smallest eigenvalues per class (ranked by $\lambda_2$)", fontsize=10)
    top = np.nanmax([v for r in table for v in r["eigenvalues"]] + [1e-3])
    ax.set_ylim(0, top * 1.3)
    ax.legend(fontsize=8, ncol=min(n_shown, 5), loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _signed_rgb(values: np.ndarray) -> np.ndarray:
    scale = float(np.abs(values).max())
    return colorize(values / scale if scale > 0 else values, "bwr")


def mean_map_picture(cluster_map: np.ndarray, side: int = 120) -> np.ndarray:
    """The mean pooled map of a cluster, coloured (bwr, 0 white), upscaled without smoothing."""
    rgb = _signed_rgb(cluster_map)
    return cv2.resize(rgb, (side, side), interpolation=cv2.INTER_NEAREST)


def example_picture(record: HeatmapRecord) -> np.ndarray:
    """One example: the heatmap over its image (or the heatmap alone), ``TILE`` pixels high."""

    m = load_map(record)
    scale = float(np.abs(m).max())
    h = m / scale if scale > 0 else m
    if record.image is not None:
        img = as_float_image(record.image)
        if img.shape[:2] != m.shape:
            raise HeatmapFileError(
                f"image {record.image} is {img.shape[1]}x{img.shape[0]} pixels but "
                f"its heatmap {record.npy} is {m.shape[1]}x{m.shape[0]}"
            )
        pic = (overlay(img, h, "bwr", scale=1.0) * 255).round().astype(np.uint8)
    else:
        pic = colorize(h, "bwr")
    width = max(1, round(pic.shape[1] * TILE / pic.shape[0]))
    return cv2.resize(pic, (width, TILE), interpolation=cv2.INTER_AREA)


def _example_or_heatmap(record: HeatmapRecord, on_skip: OnSkip | None) -> np.ndarray:
    """:func:`example_picture`; with ``on_skip``, a picture that fails is reported and drawn
    from the heatmap alone (or as a grey tile when the heatmap cannot be read either)."""
    try:
        return example_picture(record)
    except Exception as exc:  # noqa: BLE001 - one bad picture never costs the report
        if on_skip is None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        skip_or_raise(on_skip, record.image or record.npy, exc, stage="picture")
    try:
        return example_picture(HeatmapRecord(**{**vars(record), "image": None}))
    except Exception:  # noqa: BLE001 - already reported above
        return np.full((TILE, TILE, 3), 200, np.uint8)


def representative(X: np.ndarray, labels: np.ndarray, cluster: int, k: int) -> np.ndarray:
    """Indices of the ``k`` members of ``cluster`` nearest its mean (most typical first)."""
    members = np.flatnonzero(labels == cluster)
    centre = X[members].mean(axis=0)
    order = np.argsort(((X[members] - centre) ** 2).sum(axis=1), kind="stable")
    return members[order[:k]]


def strip(pictures: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Pictures side by side on white, separated by ``gap`` pixels."""
    parts = []
    for p in pictures:
        parts += [p, np.full((p.shape[0], gap, 3), 255, np.uint8)]
    return np.hstack(parts[:-1])


def _num(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def _plain_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


MAX_CLUSTERS_SHOWN = 12  # a clustering with more clusters shows its largest ones (and says so)


def _cluster_rows(out: Path, prefix: str, labels, X, a: ClassAnalysis, grid: int, n_examples: int, picture):
    """Table rows (HTML) of one clustering: size, share, mean pooled map, most typical examples.

    Writes ``<prefix>_<c>_mean.png`` and ``<prefix>_<c>_examples.png`` per cluster
    ``c`` shown (the ``MAX_CLUSTERS_SHOWN`` largest; noise, label -1, as one line).
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    n = len(labels)
    rows = []
    for c in range(min(k, MAX_CLUSTERS_SHOWN)):
        mean = X[labels == c].mean(axis=0).reshape(grid, grid)
        _save_rgb(out / f"{prefix}_{c}_mean.png", mean_map_picture(mean))
        picks = representative(X, labels, c, n_examples)
        _save_rgb(out / f"{prefix}_{c}_examples.png", strip([picture(j) for j in picks]))
        names = ", ".join(html.escape(a.records[j].stem) for j in picks)
        rows.append(f"""<tr><td class="num">{c}</td><td class="num">{sizes[c]}</td>
<td class="num">{100 * sizes[c] / n:.1f}&nbsp;%</td>
<td><img class="mean" src="{prefix}_{c}_mean.png" alt="mean pooled relevance of cluster {c}"></td>
<td><img class="strip" src="{prefix}_{c}_examples.png" alt="examples of cluster {c}">
<div class="names">{names}</div></td></tr>""")
    if k > MAX_CLUSTERS_SHOWN:
        rest = int(sizes[MAX_CLUSTERS_SHOWN:].sum())
        rows.append(
            f'<tr><td colspan="5">{k - MAX_CLUSTERS_SHOWN} smaller clusters ({rest} maps) not drawn</td></tr>'
        )
    noise = int((labels < 0).sum())
    if noise:
        rows.append(
            f'<tr><td class="num">noise</td><td class="num">{noise}</td>'
            f'<td class="num">{100 * noise / n:.1f}&nbsp;%</td><td colspan="2">maps in no cluster</td></tr>'
        )
    return rows


def _selector_html(i: int, panels: list[tuple[str, str, list[str]]], n_maps: int, grid: int) -> str:
    """A drop-down between clusterings and one table per clustering (the first shown; others hidden)."""
    options = "".join(
        f'<option value="{j}">{html.escape(name)} &mdash; {html.escape(about)}</option>'
        for j, (name, about, _) in enumerate(panels)
    )
    head = (
        f"<tr><th>cluster</th><th>maps</th><th>share</th><th>mean relevance (pooled {grid}&times;{grid})"
        "</th><th>most typical examples (relevance over the image)</th></tr>"
    )
    tables = "".join(
        f'<div class="panel" data-panel="{j}"{" hidden" if j else ""}>'
        f'<p class="about">{html.escape(name)}: {html.escape(about)}</p>'
        f'<table class="clusters">{head}{"".join(rows)}</table></div>'
        for j, (name, about, rows) in enumerate(panels)
    )
    chooser = (
        f'<p class="choose"><label for="clustering-{i}">Clustering ({len(panels)}): </label>'
        f'<select id="clustering-{i}" onchange="showClustering(this)">{options}</select></p>'
        if len(panels) > 1
        else ""
    )
    return chooser + tables


# -- files ---------------------------------------------------------------------
def _save_rgb(path: Path, rgb: np.ndarray) -> None:
    write_png(path, rgb)


def _image_name(r: HeatmapRecord) -> str:
    if r.image is not None:
        return str(r.image)
    value = r.meta.get("image")
    return str(value) if value else r.stem


def _skipped_html(records: list[SkippedRecord]) -> str:
    if not records:
        return ""
    items = "".join(
        f"<li><code>{html.escape(s.record)}</code>: {html.escape(s.reason)}"
        f"{' (drawn without its image)' if s.stage == 'picture' else ''}</li>"
        for s in records
    )
    n_left_out = sum(s.stage == "record" for s in records)
    return (
        f'<details class="warn" open><summary>{n_left_out} record(s) left out, '
        f"{len(records) - n_left_out} example(s) drawn without their image</summary>"
        f"<ul>{items}</ul></details>"
    )


def write_report(
    out: Path,
    analyses: list[ClassAnalysis],
    skipped: dict[str, int] | None = None,
    n_examples: int = 8,
    source: str = "",
    quiet: bool = False,
    skipped_records: list[SkippedRecord] | None = None,
    on_skip: OnSkip | None = None,
) -> Path:
    """Write the page, CSV, JSON and pictures into the directory ``out`` (which must exist).

    Parameters
    ----------
    out : path
    analyses : list of ClassAnalysis
    skipped : dict target -> number of maps
        Classes left out for having too few maps.
    n_examples : int
        Examples per cluster in the strips.
    source : str
        Where the heatmaps came from (shown on the page).
    quiet : bool
        No progress bars.
    skipped_records : list of SkippedRecord or None
        Records left out before the analysis, listed in ``spectrum.json`` and
        on the page; examples drawn without their image are added to it.
    on_skip : callable or None
        Called for each example whose image cannot be drawn (it is drawn
        from its heatmap alone); None: such an example raises.

    Returns
    -------
    Path
        The path of ``index.html``.
    """
    out = Path(out)
    skipped = dict(skipped or {})
    problems = list(skipped_records or [])

    def picture_problem(s: SkippedRecord) -> None:
        problems.append(s)
        if on_skip is not None:
            on_skip(s)

    table = ranking_table(analyses)
    order = {r["class"]: r["rank"] for r in table}
    ordered = sorted(analyses, key=lambda a: order[a.target])
    params = ordered[0].spray.get_params()
    with open(out / "clusters.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "heatmap", "class", "cluster", "tsne_x", "tsne_y"])
        for a in ordered:
            emb = a.spray.embedding_
            for j, r in enumerate(a.records):
                x, y = (f"{emb[j, 0]:.6g}", f"{emb[j, 1]:.6g}") if emb is not None else ("", "")
                w.writerow(
                    [csv_cell(_image_name(r)), csv_cell(r.npy.as_posix()), csv_cell(a.target)]
                    + [int(a.spray.labels_[j]), x, y]
                )
    with open(out / "clusterings.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "heatmap", "class", "clustering", "k", "cluster"])
        for a in ordered:
            for name, labels in getattr(a.spray, "clusterings_", {}).items():
                k = a.spray.clustering_k_[name]
                for j, r in enumerate(a.records):
                    w.writerow(
                        [csv_cell(_image_name(r)), csv_cell(r.npy.as_posix()), csv_cell(a.target), name, k]
                        + [int(labels[j])]
                    )
    sections = []
    classes_json = []
    for i, a in enumerate(_progress(ordered, "writing report", len(ordered), quiet)):
        sp = a.spray
        title = f"class {a.target}: {len(a.records)} maps"
        plot_spectrum(out / f"spectrum_{i}.png", sp, title)
        if sp.embedding_ is not None:
            plot_embedding(out / f"tsne_{i}.png", sp, f"t-SNE, coloured by cluster ({sp.n_clusters_})")
        X = normalize_pooled(a.pooled, sp.normalize)
        sizes = np.bincount(sp.labels_, minlength=sp.n_clusters_)
        pictures: dict[int, np.ndarray] = {}  # one picture per map, shared by every clustering

        def picture(j: int, a=a, pictures=pictures) -> np.ndarray:
            if j not in pictures:
                pictures[j] = _example_or_heatmap(a.records[j], on_skip and picture_problem)
            return pictures[j]

        rows = _cluster_rows(out, f"cluster_{i}", sp.labels_, X, a, sp.grid, n_examples, picture)
        panels = [
            (
                f"eigengap: spectral-k{sp.n_clusters_} (labels_)",
                f"{sp.n_clusters_} clusters, eigengap {sp.eigengap_:.4f}",
                rows,
            )
        ]
        others = getattr(sp, "clusterings_", {})
        for j, (name, labels) in enumerate(others.items()):
            k = sp.clustering_k_[name]
            score, gap = sp.clustering_scores_[name], sp.clustering_eigengaps_[name]
            noise = int((labels < 0).sum())
            about = (
                f"{k} cluster{'s' if k != 1 else ''}, silhouette {_num(score)}, "
                f"eigengap at {k}: {_num(gap)}" + (f", {noise} maps noise" if noise else "")
            )
            panel_rows = _cluster_rows(out, f"clustering_{i}_{j}", labels, X, a, sp.grid, n_examples, picture)
            panels.append((name, about, panel_rows))
        selector = _selector_html(i, panels, len(a.records), sp.grid)
        ev = ", ".join(f"{v:.4f}" for v in sp.eigenvalues_)
        tsne = (
            f'<img src="tsne_{i}.png" alt="t-SNE embedding of class {html.escape(a.target)}">'
            if sp.embedding_ is not None
            else "<p>(t-SNE embedding not computed)</p>"
        )
        sections.append(f"""<section id="class-{i}">
<h2>Class {html.escape(a.target)} <span class="sub">rank {order[a.target]} &middot; {len(a.records)} maps
&middot; {sp.n_clusters_} cluster{"s" if sp.n_clusters_ != 1 else ""}
&middot; eigengap {sp.eigengap_:.4f} &middot; k-NN k = {sp.n_neighbors_}</span></h2>
<div class="figs"><img src="spectrum_{i}.png" alt="eigenvalue spectrum of class {html.escape(a.target)}">
{tsne}</div>
<p class="ev">Smallest eigenvalues: {ev}</p>
{selector}</section>""")
        classes_json.append(
            {
                "class": a.target,
                "n_maps": len(a.records),
                "eigenvalues": [float(v) for v in sp.eigenvalues_],
                "n_clusters": sp.n_clusters_,
                "eigengap": sp.eigengap_,
                "cluster_sizes": [int(s) for s in sizes],
                "n_neighbors": sp.n_neighbors_,
                "shape": list(sp.shape_) if sp.shape_ else None,
                "clusterings": {
                    name: {
                        "k": sp.clustering_k_[name],
                        "silhouette": _plain_float(sp.clustering_scores_[name]),
                        "eigengap": _plain_float(sp.clustering_eigengaps_[name]),
                        "cluster_sizes": [int(v) for v in np.bincount(labels[labels >= 0])],
                        "noise": int((labels < 0).sum()),
                    }
                    for name, labels in getattr(sp, "clusterings_", {}).items()
                },
            }
        )
    ranking_html = ""
    if len(table) > 1:
        plot_ranking(out / "ranking.png", table)
        index_of = {a.target: i for i, a in enumerate(ordered)}
        trs = "".join(
            f'<tr><td class="num">{r["rank"]}</td><td><a href="#class-{index_of[r["class"]]}">'
            f'{html.escape(str(r["class"]))}</a></td><td class="num">{r["n_maps"]}</td>'
            f'<td class="num">{r["lambda_2"]:.4f}</td><td class="num">{r["n_clusters"]}</td>'
            f'<td class="num">{r["eigengap"]:.4f}</td>'
            f"<td>{', '.join(f'{v:.3f}' for v in r['eigenvalues'])}</td></tr>"
            for r in table
        )
        ranking_html = f"""<section><h2>Classes ranked by separate strategies</h2>
<p>A small &lambda;<sub>2</sub> means the class's relevance maps split into nearly disconnected
groups: look at the first classes first.</p>
<table class="ranking"><tr><th>rank</th><th>class</th><th>maps</th><th>&lambda;<sub>2</sub></th>
<th>clusters</th><th>eigengap</th><th>smallest eigenvalues</th></tr>{trs}</table>
<img src="ranking.png" alt="smallest eigenvalues per class"></section>"""
    skipped_html = ""
    if skipped:
        items = ", ".join(f"{html.escape(t)} ({n} map{'s' if n != 1 else ''})" for t, n in skipped.items())
        skipped_html = f'<p class="warn">Skipped (fewer than {MIN_MAPS} maps): {items}</p>'
    (out / "spectrum.json").write_text(
        json.dumps(
            {
                "source": source,
                "parameters": params,
                "classes": classes_json,
                "ranking": table,
                "skipped": skipped,
                "skipped_records": [asdict(p) for p in problems],
            },
            indent=2,
            default=str,
        )
    )
    par = ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "embedding")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SpRAy report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em 2em; color: #222; max-width: 1400px; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }}
h2 {{ font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }}
.sub {{ font-weight: normal; color: #666; font-size: 0.85em; }}
.figs img {{ margin-right: 1em; border: 1px solid #eee; }}
table {{ border-collapse: collapse; margin: 0.6em 0; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; vertical-align: middle; }}
th {{ background: #f4f4f4; font-weight: 600; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
img.mean {{ width: 120px; height: 120px; image-rendering: pixelated; border: 1px solid #ccc; }}
img.strip {{ height: {TILE}px; max-width: 100%; object-fit: contain; object-position: left; }}
.names {{ font-size: 0.75em; color: #777; max-width: 1100px; }}
.ev, .meta {{ font-size: 0.85em; color: #555; }}
.warn {{ color: #a15c00; }}
.choose {{ margin: 0.8em 0 0.3em; font-size: 0.95em; }}
.choose select {{ font-size: 0.95em; padding: 2px 4px; }}
.panel[hidden] {{ display: none; }}
.about {{ color: #555; font-size: 0.85em; margin-left: 0.6em; }}
</style>
<script>
function showClustering(sel) {{
  const box = sel.closest("section");
  box.querySelectorAll(".panel").forEach(p => {{ p.hidden = p.dataset.panel !== sel.value; }});
}}
</script></head><body>
<h1>Spectral Relevance Analysis</h1>
<p class="meta">Heatmaps: {html.escape(source)} &middot; parameters: {html.escape(par)}<br>
Files: <a href="clusters.csv">clusters.csv</a> (cluster and t-SNE position of every map),
<a href="spectrum.json">spectrum.json</a> (eigenvalues, eigengaps, ranking, every clustering's
numbers), <a href="clusterings.csv">clusterings.csv</a> (every clustering of every map).
Colours: red = evidence for the class, blue = against, white = none.</p>
{ranking_html}{skipped_html}{_skipped_html(problems)}{"".join(sections)}
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8", errors="backslashreplace")
    return out / "index.html"
