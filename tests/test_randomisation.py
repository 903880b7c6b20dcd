"""Randomisation sanity checks (issue 26): layers, similarity measures, the checks, the figure."""

import copy

import cv2
import numpy as np
import pytest
from scipy import ndimage

from bowlrp import KernelSVC, Pipeline
from bowlrp.datasets.polygons import generate, tile_dataset
from bowlrp.descriptors import DenseSIFT
from bowlrp.encoding import FisherVector, GMMVocabulary, HardAssignment, KMeansVocabulary, RankMapping
from bowlrp.evaluation.randomisation import (
    data_randomisation_check,
    model_layers,
    plot_randomisation,
    random_logit_check,
    randomisation_check,
    randomised_models,
)
from bowlrp.evaluation.similarity import (
    SIMILARITY_NAMES,
    hog_features,
    hog_similarity,
    pearson,
    rank_features,
    similarity_function,
    spearman,
    spearman_signed,
    ssim,
)

skimage = pytest.importorskip("skimage", reason="SSIM / HOG need scikit-image ([compare] extra)")


# -- plain-NumPy references -----------------------------------------------------
def _average_ranks(x):
    """Ranks 1..n with ties given the mean of the ranks they span (slow, plain Python)."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = np.empty(len(x))
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson_reference(u, v):
    u = np.asarray(u, float) - np.mean(u)
    v = np.asarray(v, float) - np.mean(v)
    return float(np.sum(u * v) / np.sqrt(np.sum(u * u) * np.sum(v * v)))


def _spearman_reference(a, b):
    return _pearson_reference(_average_ranks(list(a.ravel())), _average_ranks(list(b.ravel())))


def test_spearman_matches_a_rank_based_reference_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(5):
        # many exact zeros and repeated values, as in relevance maps with empty regions
        a = rng.normal(size=(9, 11)) * (rng.random((9, 11)) < 0.5)
        b = np.round(a + rng.normal(scale=0.7, size=a.shape), 1) * (rng.random(a.shape) < 0.6)
        assert spearman_signed(a, b) == pytest.approx(_spearman_reference(a, b), abs=1e-12)
        assert spearman(a, b) == pytest.approx(_spearman_reference(np.abs(a), np.abs(b)), abs=1e-12)
    a = rng.normal(size=(6, 6))
    assert spearman_signed(a, a**3) == pytest.approx(1.0)  # monotone maps rank alike
    assert spearman_signed(a, -a) == pytest.approx(-1.0)
    assert spearman(a, -a) == pytest.approx(1.0)


def test_constant_maps_have_defined_similarities():
    zero, a = np.zeros((8, 8)), np.arange(64.0).reshape(8, 8)
    for f in (spearman, spearman_signed, hog_similarity):
        assert f(zero, zero) == 1.0
        assert f(zero, a) == 0.0 and f(a, zero) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        spearman(a, a[:4])
    with pytest.raises(ValueError, match="NaN"):
        spearman(a, np.full_like(a, np.nan))


def test_hog_similarity_is_the_pearson_correlation_of_hog_features():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(32, 40)), rng.normal(size=(32, 40))
    b[:16] = a[:16]  # half shared, so the correlation is neither 0 nor 1
    fa, fb = hog_features(a), hog_features(b)
    assert fa.shape == fb.shape and fa.size > 1
    value = hog_similarity(a, b)
    assert value == pytest.approx(_pearson_reference(fa, fb), abs=1e-12)
    assert 0.05 < value < 0.99
    assert pearson(fa, fa) == pytest.approx(1.0)
    # the features are scikit-image's HOG of |R| / max|R|
    from skimage.feature import hog  # the reference implementation

    expected = hog(np.abs(a) / np.abs(a).max(), 9, (8, 8), (2, 2), feature_vector=True)
    np.testing.assert_allclose(fa, expected)


def test_ssim_is_scikit_image_on_unit_magnitudes():
    from skimage.metrics import structural_similarity  # the reference implementation

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 24)), rng.normal(size=(20, 24))
    b[:10] = 3 * a[:10]
    expected = structural_similarity(
        np.abs(a) / np.abs(a).max(), np.abs(b) / np.abs(b).max(), win_size=7, data_range=1.0
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, -5 * a) == pytest.approx(1.0)  # scale and sign of R are not structure
    assert ssim(a, b) < 0.9


# -- the fast measures against their plain library calls ------------------------------
def _old_unit(a):
    m = np.abs(np.asarray(a, dtype=np.float64))
    return m / m.max() if m.max() > 0 else m


def _old_hog(a):
    """The HOG features as they were computed before (one scikit-image call per map)."""
    from skimage.feature import hog  # the reference implementation

    cell = min(8, min(a.shape) // 2)
    return hog(_old_unit(a), orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))


def _old_measure(name, a, b):
    """Each measure as it was computed before: SciPy's rankdata, scikit-image's SSIM and HOG."""
    from scipy.stats import rankdata  # the reference implementation
    from skimage.metrics import structural_similarity  # the reference implementation

    def pearson_or_fixed(u, v):
        cu, cv = np.all(u == u[0]), np.all(v == v[0])
        if cu or cv:
            return 1.0 if cu and cv else 0.0
        return float(np.clip(np.corrcoef(u, v)[0, 1], -1, 1))

    if name == "spearman":
        return pearson_or_fixed(rankdata(np.abs(a).ravel()), rankdata(np.abs(b).ravel()))
    if name == "spearman-signed":
        return pearson_or_fixed(rankdata(a.ravel()), rankdata(b.ravel()))
    if name == "ssim":
        side = min(a.shape)
        window = min(7, side if side % 2 else side - 1)
        return float(structural_similarity(_old_unit(a), _old_unit(b), win_size=window, data_range=1.0))
    return pearson_or_fixed(_old_hog(a), _old_hog(b))


def _map_pairs(rng):
    """Maps of many shapes (odd and even HOG cells, windows under 7), with ties, zeros, a
    constant and an identical partner, and a map compared with itself scaled."""
    for shape in [(102, 102), (40, 48), (33, 17), (16, 16), (15, 14), (11, 13), (10, 10), (7, 9), (5, 6)]:
        for k in range(4):
            a = rng.normal(size=shape) * (rng.random(shape) < 0.7)
            b = np.round(a + rng.normal(scale=rng.random(), size=shape), 1) * (rng.random(shape) < 0.6)
            b = [b, np.zeros(shape), a.copy(), -3 * a][k]
            yield a, b


def test_the_fast_measures_are_the_library_calls_they_replace():
    """Ranks, SSIM statistics and the HOG kernel against SciPy / scikit-image, to 1e-12."""
    from scipy.stats import rankdata  # the reference implementation

    rng = np.random.default_rng(11)
    checked = 0
    for a, b in _map_pairs(rng):
        np.testing.assert_array_equal(rank_features(a), rankdata(a.ravel()))
        np.testing.assert_allclose(hog_features(a), _old_hog(a), rtol=0, atol=1e-12)
        for name in SIMILARITY_NAMES:
            if name == "hog" and min(a.shape) < 4:
                continue
            f = similarity_function(name)
            new = f(a, b)
            assert new == pytest.approx(_old_measure(name, a, b), abs=1e-12), (name, a.shape)
            # as the check computes it: the features of each map once, then compared
            assert f.compare(f.features(a), f.features(b)) == new
            checked += 1
    assert checked > 100


def test_a_check_reports_what_the_plain_measures_say_of_its_maps(polygons):
    """The measures a randomisation check reports are the plain library calls on its kept maps."""
    model, test = polygons
    r = randomisation_check(model, test[:3], "lrp", mode="independent", verbose=False, n_maps=3)
    assert set(r.measures) == set(SIMILARITY_NAMES) and len(r.maps) == 3
    for i, maps in enumerate(r.maps):
        for layer in range(len(r.layers)):
            for name, values in r.measures.items():
                expected = _old_measure(name, maps[0], maps[layer + 1])
                assert values[layer, i] == pytest.approx(expected, abs=1e-12), (name, layer, i)


# -- models -------------------------------------------------------------------------
def _sobel(model, images, targets):
    """An "explainer" that never looks at the model: the image's edge magnitude."""
    return [np.hypot(ndimage.sobel(im, 0), ndimage.sobel(im, 1)) for im in images]


@pytest.fixture(scope="module")
def polygons():
    """A small polygons-vs-circles model: two SIFT scales, k-means words, HIK, lp-norm MKL."""
    train, y = tile_dataset(generate(0, 2))

    def channel(name, size):
        words = KMeansVocabulary(16, max_descriptors=2000, algorithm="full", random_state=0)
        return (
            name,
            DenseSIFT(bin_sizes=[size], steps=size, rotate=True, backend="opencv"),
            RankMapping(words),
        )

    model = Pipeline([channel("s2", 6), channel("s3", 9)], KernelSVC("hik", C=10, mkl_norm=2), random_state=0)
    model.fit(train, y)
    test, _ = tile_dataset(generate(1, 1))
    return model, test[:8]


@pytest.fixture(scope="module")
def fisher(stripes_blobs):
    """A Fisher-vector model with a GMM and PCA (the vocabulary and PCA layers)."""
    train, y, test, _ = stripes_blobs
    model = Pipeline(
        [
            (
                "fv",
                DenseSIFT(bin_sizes=[4], steps=6, backend="opencv"),
                FisherVector(GMMVocabulary(4, pca_components=8, random_state=0)),
            )
        ],
        KernelSVC("linear"),
        random_state=0,
    ).fit(train[:8] + train[-8:], np.concatenate([y[:8], y[-8:]]))
    return model


def _stripes(rng, vertical, n=48):
    period = rng.integers(3, 6)
    img = (np.arange(n) // period % 2)[None, :] * 0.8 * np.ones((n, 1))
    return np.clip((img if vertical else img.T) + rng.normal(0, 0.05, (n, n)), 0, 1)


def _blobs(rng, n=48):
    yy, xx = np.mgrid[:n, :n]
    img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) for cy, cx in rng.integers(4, n - 4, (3, 2)))
    return np.clip(img / img.max() * 0.8 + rng.normal(0, 0.05, img.shape), 0, 1)


@pytest.fixture(scope="module")
def three_classes():
    """Blobs, horizontal and vertical stripes (SIFT not rotated): a three-class model."""
    rng = np.random.default_rng(5)
    images = [_blobs(rng) for _ in range(10)] + [_stripes(rng, False) for _ in range(10)]
    images += [_stripes(rng, True) for _ in range(10)]
    y = np.repeat(["blobs", "horizontal", "vertical"], 10)
    model = Pipeline(
        [("c", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), HardAssignment(8, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    ).fit(images, y)
    test = [_blobs(rng), _stripes(rng, False), _stripes(rng, True), _stripes(rng, False)]
    return model, images, y, test


def _fitted_state(model):
    clf = model.classifier_
    out = [
        clf.dual_coef_.copy(),
        clf.intercept_.copy(),
        clf.kernel_weights_.copy(),
        clf.candidate_decisions_.copy(),
    ]
    for enc in model.encoders_:
        v = enc.vocabulary_
        out += [
            np.array(getattr(v, a))
            for a in ("cluster_centers_", "means_", "covariances_", "weights_")
            if hasattr(v, a)
        ]
    return out


# -- the randomised models --------------------------------------------------------------
def test_randomised_models_are_valid_copies_and_leave_the_model_alone(polygons):
    model, test = polygons
    before = _fitted_state(model)
    assert [layer.name for layer in model_layers(model)] == ["svm", "mkl", "vocabulary"]
    cascading = randomised_models(model, "cascading", random_state=4)
    independent = randomised_models(model, "independent", random_state=4)
    for a, b in zip(before, _fitted_state(model)):
        np.testing.assert_array_equal(a, b)  # the user's model is untouched
    clf = model.classifier_
    for (_, m), (_, one) in zip(cascading, independent):
        m.check_fitted()
        one.check_fitted()
        assert m is not model and m.classifier_ is not clf
        r = m.classifier_
        assert r.dual_coef_.shape == clf.dual_coef_.shape
        # permuted, not redrawn: the same multiset of coefficients
        np.testing.assert_allclose(np.sort(r.dual_coef_, axis=1), np.sort(clf.dual_coef_, axis=1))
        assert not np.array_equal(r.dual_coef_, clf.dual_coef_)
        # the Taylor candidates' decisions are those of the randomised expansion
        points = np.vstack([r.reference_X_, r.support_vectors_])
        np.testing.assert_allclose(r.candidate_decisions_[:, 0], r.decision_function(points))
    # independent: each layer alone; the draw of a layer is the same in both modes
    svm_only, mkl_only, vocab_only = (m for _, m in independent)
    np.testing.assert_array_equal(svm_only.classifier_.dual_coef_, cascading[0][1].classifier_.dual_coef_)
    np.testing.assert_array_equal(svm_only.classifier_.kernel_weights_, clf.kernel_weights_)
    assert not np.allclose(mkl_only.classifier_.kernel_weights_, clf.kernel_weights_)
    assert mkl_only.classifier_.kernel_weights_.sum() == pytest.approx(clf.kernel_weights_.sum())
    np.testing.assert_array_equal(mkl_only.classifier_.dual_coef_, clf.dual_coef_)
    for enc, new, last in zip(model.encoders_, vocab_only.encoders_, cascading[-1][1].encoders_):
        centers, drawn = enc.vocabulary_.cluster_centers_, new.vocabulary_.cluster_centers_
        assert drawn.shape == centers.shape and not np.allclose(drawn, centers)
        np.testing.assert_array_equal(drawn, last.vocabulary_.cluster_centers_)
        # the new words are training descriptors from the vocabulary's reservoir
        reservoir = enc.vocabulary_.reservoir_.astype(np.float64)
        nearest = ((drawn[:, None, :] - reservoir[None]) ** 2).sum(-1).min(axis=1)
        assert nearest.max() < 1e-6
    assert vocab_only.classifier_ is not clf
    np.testing.assert_array_equal(vocab_only.classifier_.dual_coef_, clf.dual_coef_)


def test_words_without_a_reservoir_are_permuted_per_coordinate(polygons):
    model = copy.deepcopy(polygons[0])
    for enc in model.encoders_:
        enc.vocabulary_.reservoir_ = enc.vocabulary_.reservoir_[:3]  # fewer rows than words
    _, (_, _), (_, vocab) = randomised_models(model, "independent", random_state=1)
    for enc, new in zip(model.encoders_, vocab.encoders_):
        c0, c1 = enc.vocabulary_.cluster_centers_, new.vocabulary_.cluster_centers_
        np.testing.assert_array_equal(np.sort(c1, axis=0), np.sort(c0, axis=0))  # each column permuted
        assert not np.array_equal(c1, c0)
    vocab.check_fitted()


def test_gmm_and_pca_layers_are_randomised_within_their_own_family(fisher):
    model = fisher
    assert [layer.name for layer in model_layers(model)] == ["svm", "vocabulary", "pca"]
    (_, svm), (_, vocab), (_, pca) = randomised_models(model, "independent", random_state=0)
    v0, v1 = model.encoders_[0].vocabulary_, vocab.encoders_[0].vocabulary_
    np.testing.assert_allclose(np.sort(v1.weights_), np.sort(v0.weights_))  # priors permuted
    np.testing.assert_allclose(np.sort(v1.covariances_, axis=0), np.sort(v0.covariances_, axis=0))
    assert v1.means_.shape == v0.means_.shape and not np.allclose(v1.means_, v0.means_)
    p0 = v0.pca_
    p1 = pca.encoders_[0].vocabulary_.pca_
    assert p1.components_.shape == p0.components_.shape
    np.testing.assert_allclose(p1.components_ @ p1.components_.T, np.eye(p0.components_.shape[0]), atol=1e-12)
    assert not np.allclose(np.abs(p1.components_), np.abs(p0.components_))
    np.testing.assert_array_equal(p1.mean_, p0.mean_)
    for m in (svm, vocab, pca):
        m.check_fitted()
    # a linear model compressed to one weight vector: its weights are permuted instead
    compressed = copy.deepcopy(model)
    compressed.classifier_.compress_linear()
    (_, svm), *_ = randomised_models(compressed, "independent", random_state=0)
    w0, w1 = compressed.classifier_.support_vectors_, svm.classifier_.support_vectors_
    np.testing.assert_allclose(np.sort(w1, axis=1), np.sort(w0, axis=1))
    assert not np.allclose(w1, w0)
    svm.check_fitted()


# -- the checks -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cascading(polygons):
    """The edge detector and LRP on the same randomised models (built once)."""
    model, test = polygons
    return randomisation_check(model, test, [_sobel, "lrp"], mode="cascading", verbose=False)


def test_an_edge_detector_fails_and_lrp_passes_model_randomisation(polygons, cascading):
    """Issue 26, done when: a model-independent explainer fails, LRP passes (cascading)."""
    _, test = polygons
    edges, lrp = cascading
    assert edges.explainer == "_sobel" and lrp.explainer == "lrp"
    assert edges.layers == lrp.layers == ["svm", "mkl", "vocabulary"]
    assert edges.similarity.shape == (3, len(test))
    for name, values in edges.measures.items():
        assert np.all(values > 0.99), name  # near 1 at every layer, on every measure
        assert not edges.passed_by_measure[name]
    assert not edges.passed and "fails" in edges.verdict()
    assert lrp.passed, lrp.verdict()
    assert lrp.mean()[-1] < 0.5 and "passes" in lrp.verdict()
    assert lrp.passed_by_measure["spearman-signed"], lrp.verdict("spearman-signed")
    # cost: (layers + 1) explanations per image, the maps of a few images kept
    assert lrp.n_explanations == 4 * len(test)
    assert len(lrp.maps) == 4 and lrp.maps[0].shape == (4, *test[0].shape)
    summary = lrp.to_dict()
    assert summary["passed"] and len(summary["measures"]["ssim"]["mean"]) == 3


def test_models_are_built_once_per_layer_not_per_image(polygons):
    model, test = polygons
    seen = []

    def counting(m, images, targets):
        seen.append((id(m), len(images), list(targets)))
        return _sobel(m, images, targets)

    result = randomisation_check(model, test[:3], counting, mode="independent", verbose=False)
    assert len(seen) == len(result.layers) + 1  # one call per model, every image in it
    assert len({s[0] for s in seen}) == len(seen) and all(s[1] == 3 for s in seen)
    assert all(s[2] == seen[0][2] for s in seen)  # the same targets for every model
    assert seen[0][2] == list(model.predict(test[:3]))  # None: the original's predictions
    seen.clear()
    randomisation_check(model, test[:2], counting, target=1, verbose=False)
    assert all(s[2] == [1, 1] for s in seen)
    assert not result.passed and "svm" in result.verdict()


def test_a_bad_explainer_gets_a_one_line_error(polygons):
    model, test = polygons
    with pytest.raises(ValueError, match="returned 1 maps for 2 images"):
        randomisation_check(model, test[:2], lambda m, i, t: [np.zeros((102, 102))], verbose=False)
    with pytest.raises(ValueError, match="map of shape"):
        randomisation_check(model, test[:2], lambda m, i, t: [np.zeros((5, 5))] * 2, verbose=False)
    with pytest.raises(ValueError, match="unknown explainer"):
        randomisation_check(model, test[:2], "gradcam", verbose=False)
    with pytest.raises(ValueError, match="mode"):
        randomisation_check(model, test[:2], "lrp", mode="sideways", verbose=False)
    with pytest.raises(ValueError, match="more than two classes"):
        random_logit_check(model, test[:2], verbose=False)


def test_data_randomisation_and_random_logit_on_a_three_class_model(three_classes):
    model, train, y, test = three_classes
    edges, lrp = data_randomisation_check(model, train, y, test, [_sobel, "lrp"], verbose=False)
    assert edges.layers == lrp.layers == ["labels"] and not edges.passed
    np.testing.assert_allclose(edges.similarity, 1.0)
    assert lrp.similarity.shape == (1, len(test)) and np.all(np.abs(lrp.similarity) <= 1)
    assert lrp.n_explanations == 2 * len(test)
    assert lrp.mean("spearman-signed")[0] < 0.99  # the refitted model explains differently
    edges, logit = random_logit_check(model, test, [_sobel, "lrp"], verbose=False)
    assert not edges.passed
    assert logit.targets == list(model.predict(test))
    assert all(o != t for o, t in zip(logit.other_targets, logit.targets))
    assert set(logit.other_targets) <= set(model.classes_)
    for i, other in enumerate(logit.other_targets):  # the maps compared are those of the other class
        np.testing.assert_array_equal(logit.maps[i][0], model.explain([test[i]])[0].heatmap)
        np.testing.assert_array_equal(logit.maps[i][1], model.explain([test[i]], target=other)[0].heatmap)


def test_the_figure_shows_curves_and_maps(cascading, tmp_path):
    result = cascading[1]
    path = tmp_path / "randomisation.png"
    data = plot_randomisation(result, path, n_images=2)
    assert path.read_bytes() == data
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[0] > 300 and picture.shape[1] > 500
    # the maps' red and blue (bwr) are drawn, not only the curves' axes
    b, g, r = (picture[..., k].astype(int) for k in range(3))
    assert np.sum((r > 200) & (b < 120)) > 100 and np.sum((b > 200) & (r < 120)) > 100
