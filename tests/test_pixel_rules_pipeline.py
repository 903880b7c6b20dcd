"""The contribution rule inside the relevance pass: conservation with every projection
(float64, exact kernels), words encoders per descriptor, Fisher vectors per dimension."""

import numpy as np
import pytest

from bowlrp import DenseSIFT, FisherVector, GMMVocabulary, RankMapping
from bowlrp.classifier.svm import KernelSVC
from bowlrp.exceptions import RuleError
from bowlrp.explanation import explain_trace
from bowlrp.pipeline import Pipeline
from bowlrp.rules import Contribution, Epsilon

PROJECTIONS = [
    Contribution(),
    Contribution("window"),
    Contribution("gradient"),
    Contribution(through_blur=False),
    Contribution(per_dimension=None),
    Contribution(per_dimension=True),
]


@pytest.fixture(scope="module")
def models(stripes_blobs):
    train, y, test, _ = stripes_blobs
    sift = DenseSIFT(bin_sizes=[4, 6], steps=5, rotate=True, backend="opencv")
    rank = Pipeline([("s", sift, RankMapping(16, random_state=0))], KernelSVC("hik"), random_state=0).fit(
        train[::2], y[::2]
    )
    fisher = Pipeline(
        [("s", sift, FisherVector(GMMVocabulary(4, pca_components=8, random_state=0)))],
        KernelSVC("linear"),
        random_state=0,
    ).fit(train[::2], y[::2])
    return {"rank": rank, "fisher": fisher}, test


@pytest.mark.parametrize(
    "name,rule",
    [
        (name, rule)
        for name in ("rank", "fisher")
        for rule in PROJECTIONS
        # words encoders: no per-dimension form without Neon (test_words_encoder_has_no_per_dimension_form)
        if not (name == "rank" and rule.per_dimension)
    ],
    ids=repr,
)
def test_conservation_with_every_projection(models, name, rule):
    pipes, test = models
    p = pipes[name]
    for image in (test[0], test[-1][:37, :45]):  # the crop clips supports at the border
        trace = p.forward_one(image)
        e = explain_trace(p, trace, None, {"pixels": rule, "descriptors": Epsilon(0.0)})
        c = e.conservation()
        scale = abs(c["score"]) + abs(c["bias"])
        assert abs(c["pixels"] - c["descriptors"]) <= 1e-9 * scale
        assert abs(c["pixels"] + c["bias"] + e.residual - c["score"]) <= 1e-9 * scale
        assert e.heatmap.shape == image.shape[:2]


def test_fisher_per_dimension_differs_from_per_descriptor(models):
    pipes, test = models
    trace = pipes["fisher"].forward_one(test[0])
    per_dim = explain_trace(pipes["fisher"], trace, None, Contribution(per_dimension=True)).heatmap
    auto = explain_trace(pipes["fisher"], trace, None, Contribution(per_dimension=None)).heatmap
    np.testing.assert_array_equal(auto, per_dim)  # None: the encoder's own form
    per_desc = explain_trace(pipes["fisher"], trace, None, Contribution()).heatmap  # the default
    assert not np.allclose(per_dim, per_desc)
    assert per_dim.sum() == pytest.approx(per_desc.sum(), rel=1e-9, abs=1e-12)


def test_words_encoder_has_no_per_dimension_form(models):
    pipes, test = models
    with pytest.raises(RuleError, match="per-dimension"):
        explain_trace(
            pipes["rank"], pipes["rank"].forward_one(test[0]), None, Contribution(per_dimension=True)
        )


def test_fisher_trace_projection_is_reused_by_the_pca_backward_pass(models, monkeypatch):
    """The PCA backward pass reads the trace's projected descriptors (one product fewer):
    they are the vocabulary's projection, and the heatmap equals the one projected again."""
    pipes, test = models
    p = pipes["fisher"]
    trace = p.forward_one(test[0])
    encoder, ct = p.encoders_[0], trace.channels[0]
    kept = encoder.projected_descriptors(ct.encoding)
    np.testing.assert_array_equal(kept, encoder.vocabulary_.project(ct.descriptors.data))
    reused = explain_trace(p, trace, None, Contribution(per_dimension=True)).heatmap
    monkeypatch.setattr(FisherVector, "projected_descriptors", lambda self, trace: None)
    again = explain_trace(p, trace, None, Contribution(per_dimension=True)).heatmap
    np.testing.assert_allclose(reused, again, rtol=0, atol=1e-12 * np.abs(again).max())
