"""Explanations drawn with matplotlib: ``Explanation.plot``, ``_repr_png_`` and ``__repr__``.

Every function takes an explanation-like object with ``heatmap`` (H, W) raw
relevance, ``score`` and ``target`` (and, for :func:`explanation_repr`,
optionally ``bias_relevance``, ``absorbed``, ``residual`` and ``rules``), so this
module does not import :mod:`bowlrp.explanation`. The pictures are the ones of
:mod:`bowlrp.image`, scaled as the CLI's PNGs (``clip``: the ``--clip``
percentile; ``None`` or ``"max"``: ``max |R|``). matplotlib is imported when a
picture is drawn, not with this module.
"""

from __future__ import annotations

import io

import numpy as np

from . import image as pictures
from ._utils.validation import plain_value

KINDS = ("heatmap", "overlay", "triplet")
_TRIPLET_PANELS = "heatmap | heatmap on edges | positive relevance"


def explanation_title(explanation) -> str:
    """``"cat: f(x) = +0.649"``: the target and its score, a panel's title."""
    name = getattr(explanation, "target_name", None)
    shown = plain_value(explanation.target) if name is None else name
    return f"{shown}: f(x) = {float(explanation.score):+.3g}"


def explanation_picture(
    explanation,
    kind: str = "heatmap",
    image=None,
    colormap: str = "bwr",
    clip: float | str | None = pictures.DEFAULT_PERCENTILE,
) -> tuple[np.ndarray, float]:
    """The RGB picture of one explanation and its display scale.

    Parameters
    ----------
    explanation : object with ``heatmap`` (H, W)
    kind : {"heatmap", "overlay", "triplet"}
    image : ndarray (H, W) or (H, W, 3), path, or None
        The explained image; needed for ``"overlay"`` and ``"triplet"``.
    colormap : str
        One of :data:`bowlrp.image.COLORMAPS` (e.g. ``"bwr"``, ``"seismic"``,
        ``"coldnhot"``, ``"fire"``) or a matplotlib name.
    clip : float in (0, 100], ``"max"`` or None
        Percentile of ``|R|`` drawn at full colour (the CLI's ``--clip``).

    Returns
    -------
    (ndarray (H, W', 3) float in [0, 1], float)
        ``W' = W`` except for ``"triplet"`` (``3 W + 8``); the relevance ``s`` drawn at full colour.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    pictures.check_colormap(colormap)
    heatmap = np.asarray(explanation.heatmap, dtype=np.float64)
    _, scale = pictures.display_values(heatmap, clip)
    if kind == "heatmap":
        return pictures.heatmap_picture(heatmap, colormap, scale=scale), scale
    if image is None:
        raise ValueError(f'kind="{kind}" draws over the explained image: pass image=<the image explained>')
    if kind == "overlay":
        return pictures.overlay(image, heatmap, colormap, scale=scale), scale
    return pictures.triplet(image, heatmap, colormap, scale=scale), scale


def _colorbar(ax, colormap: str, scale: float) -> None:
    """A matplotlib colour bar beside ``ax`` in relevance units (``-s .. +s``, or ``0 .. s``)."""
    from matplotlib.cm import ScalarMappable  # heavy: only when plotting
    from matplotlib.colors import ListedColormap, Normalize  # heavy: only when plotting

    top = scale if scale > 0 else 1.0
    bottom = -top if pictures.is_signed(colormap) else 0.0
    mappable = ScalarMappable(Normalize(bottom, top), ListedColormap(pictures.colormap_table(colormap)))
    bar = ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("relevance" if scale > 0 else "relevance (all zero)", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def draw_explanation(
    ax,
    explanation,
    kind: str = "heatmap",
    image=None,
    colormap: str = "bwr",
    clip: float | str | None = pictures.DEFAULT_PERCENTILE,
    title: bool | str = True,
    colorbar: bool = True,
):
    """Draw one explanation into an existing matplotlib Axes (see :func:`plot_explanation`)."""
    picture, scale = explanation_picture(explanation, kind, image, colormap, clip)
    ax.imshow(picture, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if kind == "triplet":
        ax.set_xlabel(_TRIPLET_PANELS, fontsize=8)
    if title:
        ax.set_title(title if isinstance(title, str) else explanation_title(explanation), fontsize=10)
    if colorbar:
        _colorbar(ax, colormap, scale)
    return ax


def _figure_size(kind: str) -> tuple[float, float]:
    """Inches of a figure holding one explanation picture of ``kind`` and its colour bar."""
    return (9.0 if kind == "triplet" else 4.2, 3.6)


def plot_explanation(
    explanation,
    ax=None,
    kind: str = "heatmap",
    image=None,
    colormap: str = "bwr",
    clip: float | str | None = pictures.DEFAULT_PERCENTILE,
    title: bool | str = True,
    colorbar: bool = True,
):
    """Plot an explanation's raw relevance with matplotlib, scaled as the CLI's PNGs.

    Parameters
    ----------
    explanation : object with ``heatmap`` (H, W), ``score`` and ``target``
        An :class:`bowlrp.Explanation`.
    ax : matplotlib Axes or None
        None: a new figure of one Axes (``matplotlib.pyplot.subplots``).
    kind : {"heatmap", "overlay", "triplet"}
        ``"heatmap"``: the coloured relevance; ``"overlay"``: blended over
        ``image`` by ``|R|``; ``"triplet"``: the papers' row heatmap | heatmap on
        the image's edges | image where relevance is positive, as one picture in ``ax``.
    image : ndarray (H, W) or (H, W, 3), path, or None
        The explained image; required for ``"overlay"`` and ``"triplet"`` (ValueError otherwise).
    colormap : str
        ``"bwr"`` (default), ``"seismic"``, ``"coldnhot"`` (black-fire-red), ``"fire"``
        (positive only), ... (:data:`bowlrp.image.COLORMAPS`).
    clip : float in (0, 100], ``"max"`` or None
        Percentile of ``|R|`` drawn at full colour (default 99.5, the CLI's ``--clip``).
    title : bool or str
        True: ``"<target>: f(x) = <score>"``; a string: that title; False: none.
    colorbar : bool
        A colour bar in relevance units beside the picture.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into (for every ``kind``; ``ax.figure`` is its figure).
    """
    if ax is None:
        import matplotlib.pyplot as plt  # heavy: only when plotting

        _, ax = plt.subplots(figsize=_figure_size(kind), layout="constrained")
    return draw_explanation(ax, explanation, kind, image, colormap, clip, title, colorbar)


def explanation_png(
    explanation,
    kind: str = "heatmap",
    image=None,
    colormap: str = "bwr",
    clip: float | str | None = pictures.DEFAULT_PERCENTILE,
    dpi: int = 80,
) -> bytes:
    """PNG bytes of :func:`plot_explanation`'s picture (for ``Explanation._repr_png_``).

    Drawn on a matplotlib ``Figure`` of its own (no pyplot state), so a notebook
    shows it once and no figure is left open.

    Returns
    -------
    bytes
        Starting with the PNG signature ``b"\\x89PNG\\r\\n\\x1a\\n"``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy: only when plotting
    from matplotlib.figure import Figure  # heavy: only when plotting

    fig = Figure(figsize=_figure_size(kind), layout="constrained")
    FigureCanvasAgg(fig)
    draw_explanation(fig.add_subplot(), explanation, kind, image, colormap, clip)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _number(value) -> str:
    return "None" if value is None else f"{float(value):.3g}"


def _rules_text(rules, limit: int = 60) -> str:
    """``"Epsilon(epsilon=0.0, relative=False), Flat()"``: the rules set, cut to ``limit`` characters."""
    if not rules:
        return "default"
    items = rules.values() if isinstance(rules, dict) else rules
    text = ", ".join(repr(r) for r in items if r is not None) or "default"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explanation_repr(explanation) -> str:
    """One short line, no array: ``Explanation(target='cat', score=0.649, heatmap=(160, 240), ...)``.

    Shows the target, ``f(x)``, the heatmap's shape, its sum, the bias relevance,
    what was absorbed and the rules (cut to 60 characters).
    """
    heatmap = np.asarray(explanation.heatmap)
    parts = [
        f"target={plain_value(explanation.target)!r}",
        f"score={_number(explanation.score)}",
        f"heatmap={tuple(int(n) for n in heatmap.shape)}",
        f"sum={_number(heatmap.sum())}",
    ]
    for name, label in (("bias_relevance", "bias"), ("absorbed", "absorbed")):
        value = getattr(explanation, name, None)
        if value is not None:
            parts.append(f"{label}={_number(value)}")
    rules = getattr(explanation, "rules", None)
    if rules is not None:
        parts.append(f"rules=<{_rules_text(rules)}>")
    return f"{type(explanation).__name__}({', '.join(parts)})"
