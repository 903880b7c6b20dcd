"""Explanations as matplotlib pictures, PNG bytes and one-line reprs (issue 25, item 2)."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bowlrp import plotting  # noqa: E402
from bowlrp.explanation import Explanation  # noqa: E402
from bowlrp.rules import AlphaBeta, Flat  # noqa: E402


def _explanation(shape=(60, 80)):
    """An explanation-like object with a raw map of a BoW explanation's magnitude (~1e-5)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    heatmap = 3e-5 * np.exp(-((rows - 20) ** 2 + (cols - 30) ** 2) / 80) - 1e-6
    return SimpleNamespace(
        target=np.str_("cat"),
        score=0.6491,
        heatmap=heatmap,
        bias_relevance=0.13,
        absorbed=0.0,
        rules={"classifier": AlphaBeta(2, 1), "descriptors": None, "pixels": Flat()},
    )


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("kind", ["heatmap", "overlay", "triplet"])
def test_plot_returns_axes_titled_with_target_and_score(kind):
    e = _explanation()
    image = np.full(e.heatmap.shape, 0.5)
    ax = plotting.plot_explanation(e, kind=kind, image=image)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert "cat" in ax.get_title() and "+0.649" in ax.get_title()
    assert "np.str_" not in ax.get_title()
    shown = ax.get_images()[0].get_array()
    assert shown.shape[0] == 60 and np.ptp(np.asarray(shown, dtype=float)) > 0.3  # not blank
    assert len(ax.figure.axes) == 2  # the picture and its colour bar


def test_plot_into_given_axes_without_title_or_colorbar():
    fig, axes = plt.subplots(1, 2)
    ax = plotting.plot_explanation(
        _explanation(), ax=axes[1], title=False, colorbar=False, colormap="coldnhot"
    )
    assert ax is axes[1] and ax.get_title() == "" and len(fig.axes) == 2
    assert plotting.plot_explanation(_explanation(), ax=axes[0], title="ε = 0").get_title() == "ε = 0"


@pytest.mark.parametrize("kind", ["overlay", "triplet"])
def test_plot_over_the_image_needs_the_image(kind):
    with pytest.raises(ValueError, match=f'kind="{kind}".*image='):
        plotting.plot_explanation(_explanation(), kind=kind)


def test_plot_refuses_unknown_kind_and_colormap_naming_the_options():
    with pytest.raises(ValueError, match="heatmap, overlay, triplet"):
        plotting.plot_explanation(_explanation(), kind="bars")
    with pytest.raises(ValueError, match="unknown colormap 'hots'.*bwr.*seismic.*coldnhot"):
        plotting.plot_explanation(_explanation(), colormap="hots")


def test_png_bytes_for_repr_png():
    data = plotting.explanation_png(_explanation())
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert plt.get_fignums() == []  # no pyplot figure left open (a notebook would show it twice)


def test_repr_is_one_short_line_without_arrays():
    text = plotting.explanation_repr(_explanation())
    assert text.startswith("SimpleNamespace(target='cat', score=0.649, heatmap=(60, 80), sum=")
    assert "bias=0.13" in text and "AlphaBeta(alpha=2, beta=1)" in text and "Flat()" in text
    assert len(text) < 200 and "\n" not in text and "[" not in text and "np.str_" not in text


def _real(e) -> Explanation:
    return Explanation(
        score=e.score,
        target=e.target,
        heatmap=e.heatmap,
        channels=[],
        bias_relevance=e.bias_relevance,
        residual=0.0,
        absorbed=e.absorbed,
        rules=e.rules,
    )


def test_explanation_methods_call_plotting():
    e = _real(_explanation())
    assert repr(e) == plotting.explanation_repr(e) and repr(e).startswith("Explanation(target='cat'")
    assert len(repr(e)) < 200 and "[" not in repr(e)
    assert e._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = e.plot(kind="overlay", image=np.full(e.heatmap.shape, 0.5))
    assert "cat" in ax.get_title()
