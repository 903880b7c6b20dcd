import numpy as np
import pytest

from bowlrp import (
    ColorQuantiles,
    DenseSIFT,
    Descriptors,
    FisherVector,
    GMMVocabulary,
    HardAssignment,
    RankMapping,
    SoftAssignment,
)
from bowlrp.classifier.kernels import RBF
from bowlrp.classifier.relevance import find_root
from bowlrp.classifier.svm import KernelSVC
from bowlrp.descriptors.geometry import sift_bin_geometry
from bowlrp.exceptions import RuleError
from bowlrp.explanation import tile_origins
from bowlrp.pipeline import Pipeline
from bowlrp.rules import (
    Contribution,
    Decomposition,
    Epsilon,
    Flat,
    Neuralized,
    SIFTBins,
    Taylor,
    WinnerTakeAll,
    integrated_gradient,
)

from .conftest import blobs, stripes

SIFT = DenseSIFT(bin_sizes=[4], steps=4, backend="opencv")


def _fit(encoder, kernel="hik", extractor=SIFT, data=None):
    train, y = data
    return Pipeline([("c", extractor, encoder)], KernelSVC(kernel), random_state=0).fit(train, y)


@pytest.fixture(scope="module")
def data(stripes_blobs):
    train, y, test, _ = stripes_blobs
    return (train, y), test


ENCODERS = {
    "hard": lambda: HardAssignment(16, random_state=0),
    "rank-pyramid": lambda: RankMapping(16, pyramid=((1, 1), (2, 2), (3, 1)), random_state=0),
    "rank-p3": lambda: RankMapping(16, pooling=3.0, random_state=0),
    "rank-max": lambda: RankMapping(16, pooling="max", random_state=0),
    "soft": lambda: SoftAssignment(16, beta=1e-4, pyramid=((1, 1), (2, 2)), random_state=0),
    "fisher": lambda: FisherVector(
        GMMVocabulary(4, pca_components=8, random_state=0),
        parts=("pi", "mu", "sigma"),
        pyramid=((1, 1), (2, 2)),
    ),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_conservation_at_every_stage(name, data):
    fit_data, test = data
    kernel = "linear" if name == "fisher" else "hik"
    p = _fit(ENCODERS[name](), kernel, data=fit_data)
    for image in test[:2] + [test[-1][:37, :45]]:  # the crop clips supports at the border
        e = p.explain([image])[0]
        c = e.conservation()
        f = p.decision_function([image])[0]
        assert np.isclose(abs(c["score"]), abs(f), rtol=1e-12)
        scale = abs(c["score"]) + abs(c["bias"])
        assert abs(c["dimensions"] + c["bias"] - c["score"]) <= 1e-9 * scale
        assert abs(c["descriptors"] - c["dimensions"]) <= 1e-9 * scale
        assert abs(c["pixels"] - c["descriptors"]) <= 1e-9 * scale
        assert e.residual == 0.0 and abs(e.absorbed) <= 1e-9 * scale
        d, R_l = e.descriptor_relevance["c"]
        assert isinstance(d, Descriptors) and R_l.shape == (len(d),)
        assert e.heatmap.shape == image.shape[:2] and e.heatmap.dtype == np.float64


def test_spread_bias_moves_it_into_the_dimensions(data):
    p = _fit(RankMapping(16, random_state=0), data=data[0])
    e = p.explain(data[1][:1], rules=Decomposition(bias="spread"))[0]
    assert e.bias_relevance == 0.0
    assert np.isclose(e.heatmap.sum(), e.score, rtol=1e-9)


def test_left_texture_positive_right_texture_negative(data):
    fit_data, _ = data
    p = _fit(RankMapping(32, random_state=0), data=fit_data)
    rng = np.random.default_rng(7)
    image = np.hstack([stripes(rng, 96)[:, :48], blobs(rng, 96)[:, 48:]])
    e = p.explain([image], target=1)[0]
    left, right = e.heatmap[:, :40].sum(), e.heatmap[:, 56:].sum()
    assert left > 0 > right, (left, right)
    swapped = p.explain([image], target=0)[0]
    np.testing.assert_allclose(swapped.heatmap, -e.heatmap, atol=1e-12)


def test_several_targets_share_one_forward_pass(data, monkeypatch):
    fit_data, test = data
    p = _fit(RankMapping(16, random_state=0), data=fit_data)
    calls = []
    original = p.forward_one
    monkeypatch.setattr(p, "forward_one", lambda im: calls.append(1) or original(im))
    both = p.explain(test[:2], target=[0, 1])
    assert len(calls) == 2 and len(both) == 2 and len(both[0]) == 2
    assert both[0][0].target == 0 and both[0][1].target == 1
    with pytest.raises(ValueError, match="unknown target"):
        p.explain(test[:1], target="horse")


def test_taylor_root_lies_on_segment_with_small_f():
    rng = np.random.default_rng(0)
    X = rng.random((120, 5))
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    clf = KernelSVC("rbf", C=5.0).fit(X, y)
    x = X[np.argmax(clf.decision_function(X))]
    rule = Taylor(tol=1e-7)
    task, sign = clf.task_and_sign(x)

    def g(P):
        return sign * clf.decision_function(P)

    root, dist, val = find_root(g, x, np.vstack([clf.reference_X_, clf.support_vectors_]), rule)
    assert abs(val) <= 1e-7 and np.isclose(np.linalg.norm(root - x), dist)
    out = clf.relevance(None, x, rule)
    assert abs(out.root_value) <= 1e-7
    total = out.relevance.sum() + out.bias + out.residual
    assert np.isclose(total, out.score, rtol=1e-12)
    # the root is on a segment from x to one of the candidates
    cands = np.vstack([clf.reference_X_, clf.support_vectors_])
    cands = cands[np.linalg.norm(cands - x, axis=1) > 0]
    gam = ((root - cands) @ (x - cands).T).diagonal() / np.einsum("ij,ij->i", x - cands, x - cands)
    on_line = np.linalg.norm(cands + gam[:, None] * (x - cands) - root, axis=1)
    assert on_line.min() < 1e-9


def test_taylor_residual_is_small_for_a_nearly_linear_model():
    rng = np.random.default_rng(1)
    X = rng.random((150, 4))
    y = (X @ [1.0, -1.0, 0.5, 0.0] > 0.2).astype(int)
    clf = KernelSVC(RBF(sigma=30.0), C=100.0).fit(X, y)
    for x in X[:10]:
        out = clf.relevance(None, x, Taylor(tol=1e-9))
        assert abs(out.residual) <= 1e-3 * abs(out.score) + 1e-6


def test_taylor_without_opposite_points_says_what_to_do():
    rng = np.random.default_rng(2)
    X = rng.random((60, 3))
    y = (X[:, 0] > 0.5).astype(int)
    clf = KernelSVC("rbf").fit(X, y)
    x = X[np.argmax(clf.decision_function(X))]
    same_side = X[clf.decision_function(X) > 0]
    with pytest.raises(RuleError, match="reference_points"):
        clf.relevance(None, x, Taylor(reference_points=same_side))


def test_exp_chi2_pipeline_uses_the_measured_default_and_taylor_on_request(data):
    p = _fit(RankMapping(16, random_state=0), kernel="exp_chi2", data=data[0])
    e = p.explain(data[1][:1])[0]  # the default chosen by make polygons-experiment
    assert e.rules["classifier"] == Neuralized("hybrid") and e.rules["pixels"] == Contribution()
    assert np.isclose(e.heatmap.sum() + e.bias_relevance + e.residual + e.absorbed, e.score)
    e = p.explain(data[1][:1], rules=integrated_gradient())[0]
    assert isinstance(e.rules["classifier"], Taylor) and e.rules["pixels"] == Flat()
    assert e.root_distance is not None and e.root_distance > 0
    assert np.isclose(e.heatmap.sum() + e.bias_relevance + e.residual + e.absorbed, e.score)
    with pytest.raises(RuleError, match="sum-decomposable"):
        p.explain(data[1][:1], rules=Decomposition())


def test_rules_are_checked_per_step(data):
    p = _fit(RankMapping(16, random_state=0), data=data[0])
    with pytest.raises(RuleError, match="does not support"):
        p.explain(data[1][:1], rules=WinnerTakeAll())
    with pytest.raises(RuleError, match="SIFTBins needs a Fisher-vector channel"):
        p.explain(data[1][:1], rules=SIFTBins())
    with pytest.raises(RuleError, match="unknown rule step"):
        p.explain(data[1][:1], rules={"pixel": Flat()})
    with pytest.raises(RuleError, match="not a bowlrp rule"):
        p.explain(data[1][:1], rules="epsilon")


def test_tiles_are_averaged_per_pixel(data):
    p = _fit(RankMapping(16, random_state=0), data=data[0])
    rng = np.random.default_rng(3)
    image = np.hstack([stripes(rng, 96), blobs(rng, 96)])
    e = p.explain([image], tile=64, stride=32)[0]
    assert e.heatmap.shape == image.shape
    assert tile_origins(96, 64, 32) == [0, 32]
    assert tile_origins(192, 64, 32) == [0, 32, 64, 96, 128]
    assert e.target == p.predict([image])[0]  # the whole image's predicted class
    # reassemble by hand: a weighted per-pixel mean, each tile weighted sin^2 (+ 0.05) per axis
    v = 0.05 + np.sin(np.pi * (np.arange(64) + 0.5) / 64) ** 2
    weight = v[:, None] * v[None, :]
    total = np.zeros(image.shape)
    count = np.zeros(image.shape)
    tiles = []
    for r in tile_origins(96, 64, 32):
        for c in tile_origins(192, 64, 32):
            t = p.explain([image[r : r + 64, c : c + 64]], target=e.target)[0]
            tiles.append(t)
            total[r : r + 64, c : c + 64] += weight * t.heatmap
            count[r : r + 64, c : c + 64] += weight
    np.testing.assert_allclose(e.heatmap, total / count, atol=1e-12)
    # what adds up: the means over tiles
    assert np.isclose(e.score, np.mean([t.score for t in tiles]), rtol=1e-12)
    assert np.isclose(e.extra["tile_relevance_sum"], np.mean([t.heatmap.sum() for t in tiles]), rtol=1e-12)
    assert np.isclose(e.extra["tile_relevance_sum"] + e.bias_relevance + e.absorbed + e.residual, e.score)
    assert np.isclose(e.extra["scene_score"], p.decision_function([image])[0] * (1 if e.target == 1 else -1))
    assert e.summary()["adds_up"].startswith("tile_relevance_sum + bias_relevance")


def test_two_channels_add_up(data):
    train, y = data[0]
    p = Pipeline(
        [
            ("sift", SIFT, RankMapping(16, random_state=0)),
            ("quant", ColorQuantiles(radius=5, step=4, color="grey"), RankMapping(8, random_state=0)),
        ],
        KernelSVC(["hik", "hik"], mkl_norm=2),
        random_state=0,
    ).fit(train, y)
    e = p.explain(data[1][:1])[0]
    np.testing.assert_allclose(sum(c.heatmap for c in e.channels), e.heatmap, atol=1e-14)
    assert np.isclose(e.heatmap.sum() + e.bias_relevance, e.score, rtol=1e-9)


def test_sift_bins_cover_the_nominal_patch():
    d = Descriptors(np.zeros((1, 128)), [[20.0, 30.0]], [8.0], [0.0], [0], [4.0], (50, 60))
    bins = sift_bin_geometry(d)
    union = np.zeros((50, 60), bool)
    for i in range(16):
        union |= bins.support_mask(i)
    assert union.sum() == 16 * 16 or union.sum() == 17 * 17  # 4 bins of 4 px per axis
    # relevance on bin (row 0, column 3) lands top-right of the centre only
    per_dim = np.zeros((1, 128))
    per_dim[0, (0 * 4 + 3) * 8] = 1.0
    from bowlrp.descriptors.pixel_rules import sift_bins

    hm = sift_bins(d, np.array([1.0]), per_dim)
    rows, cols = np.nonzero(hm)
    assert rows.max() < 20 and cols.min() > 30 and np.isclose(hm.sum(), 1.0)


def test_fisher_sift_bins_heatmap_conserves_and_is_finer(data):
    train, y = data[0]
    p = _fit(
        FisherVector(GMMVocabulary(4, pca_components=16, random_state=0)),
        kernel="linear",
        extractor=DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"),
        data=(train, y),
    )
    flat = p.explain(data[1][:1], rules=[Epsilon(0.0), Flat()])[0]
    fine = p.explain(data[1][:1], rules=[Epsilon(0.0), SIFTBins()])[0]
    assert np.isclose(fine.heatmap.sum(), flat.heatmap.sum(), rtol=1e-9)
    assert not np.allclose(fine.heatmap, flat.heatmap)


def test_pixel_rule_errors_name_the_channel(data):
    """The extractor decides which pixel rules it applies; the errors name the channel."""
    (train, y), test = data
    colour = [np.dstack([im, im[::-1], im[:, ::-1]]) for im in train]
    p = _fit(
        FisherVector(GMMVocabulary(2, random_state=0)),
        kernel="linear",
        extractor=ColorQuantiles(radius=4, step=6),
        data=(colour, y),
    )
    image = np.dstack([test[0], test[0][::-1], test[0][:, ::-1]])
    with pytest.raises(
        RuleError, match="channel 'c' .*ColorQuantiles does not implement the pixel rule SIFTBins"
    ):
        p.explain([image], rules=SIFTBins())
    # Contribution on a channel without a gradient model is the flat rule (documented)
    flat, contribution = p.explain([image])[0], p.explain([image], rules=Contribution())[0]
    np.testing.assert_array_equal(flat.heatmap, contribution.heatmap)
    bow = _fit(RankMapping(16, random_state=0), data=(train, y))
    with pytest.raises(
        RuleError,
        match=r"Contribution with per_dimension=True needs a Fisher-vector .*"
        r"per_dimension=False\)",
    ):
        bow.explain(test[:1], rules=Contribution(per_dimension=True))
