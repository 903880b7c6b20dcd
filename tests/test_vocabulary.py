import numpy as np
import pytest

from bowlrp import GMMVocabulary, KMeansVocabulary
from bowlrp.encoding.vocabulary import posteriors, sample_descriptors

from .conftest import needs_vlfeat, random_descriptors


def test_sampling_caps_and_is_seeded():
    rng = np.random.default_rng(0)
    sets = [random_descriptors(rng, n=500) for _ in range(4)]
    a = sample_descriptors(sets, 300, random_state=1)
    b = sample_descriptors(sets, 300, random_state=1)
    assert a.shape == (300, 8) and np.array_equal(a, b)


def test_kmeans_vocabulary_with_pca():
    rng = np.random.default_rng(0)
    sets = [random_descriptors(rng, n=400, dim=10) for _ in range(3)]
    v = KMeansVocabulary(n_words=16, pca_components=4, random_state=0).fit(sets)
    assert v.cluster_centers_.shape == (16, 4)
    proj = v.project(sets[0].data)
    assert proj.shape == (400, 4)
    np.testing.assert_allclose(proj, v.pca_.transform(sets[0].data.astype(np.float64)), atol=1e-10)
    assert v.predict(sets[0].data).shape == (400,)


def test_gmm_vocabulary_posteriors_match_sklearn():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(m, 1.0, (300, 3)) for m in (-3, 0, 3)])
    v = GMMVocabulary(n_components=3, random_state=0).fit(X)
    gm = GaussianMixture(
        3, covariance_type="diag", random_state=0, reg_covar=1e-6, init_params="k-means++"
    ).fit(X)
    np.testing.assert_allclose(
        posteriors(X, v.means_, v.covariances_, v.weights_), gm.predict_proba(X), atol=1e-8
    )


def test_too_few_descriptors_for_the_vocabulary():
    with pytest.raises(ValueError, match="exceeds"):
        KMeansVocabulary(n_words=50).fit(np.random.default_rng(0).random((20, 3)))


@needs_vlfeat
def test_gmm_vlfeat_backend_fits():
    X = np.random.default_rng(0).normal(size=(2000, 4))
    v = GMMVocabulary(n_components=4, backend="vlfeat").fit(X)
    assert v.means_.shape == (4, 4) and np.isclose(v.weights_.sum(), 1)


def test_randomise_projection_gives_an_orthonormal_frame_of_the_same_shape_and_keeps_the_mean():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(300, 12))
    vocabulary = GMMVocabulary(3, pca_components=5, random_state=0).fit(data)
    mean, before = vocabulary.pca_.mean_.copy(), vocabulary.pca_.components_.copy()
    assert vocabulary.has_projection and vocabulary.randomise_projection(np.random.default_rng(1))
    after = vocabulary.pca_.components_
    assert after.shape == before.shape and after.flags.c_contiguous
    np.testing.assert_allclose(after @ after.T, np.eye(5), atol=1e-12)  # orthonormal rows
    assert np.abs(after - before).max() > 0.1
    np.testing.assert_array_equal(vocabulary.pca_.mean_, mean)
    vocabulary.check_fitted()
    plain = GMMVocabulary(3, random_state=0).fit(data)
    assert not plain.has_projection and not plain.randomise_projection(np.random.default_rng(1))
