"""Streamed diagonal-GMM EM and mixed-precision log-likelihoods (issue 29), against
scikit-learn's ``GaussianMixture`` and plain-NumPy references."""

import contextlib
import warnings

import numba
import numpy as np
import pytest
from sklearn.cluster import kmeans_plusplus
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from bowlrp import GMMVocabulary, load, save
from bowlrp.encoding import gmm, vocabulary
from bowlrp.encoding.gmm import (
    em_chunk_sums,
    float32_bound,
    kmeans_plusplus_start,
    log_likelihood_terms,
    mixed_posteriors,
    square_features,
    streamed_em,
    using_estep,
)

# Equality to scikit-learn from the same start: relative, on every fitted parameter. Both run
# scikit-learn's updates in float64 on the same (float32-representable) data; they differ by
# summation order and by responsibilities below exp(-45) (dropped here), measured ~1e-13.
EM_RTOL = 1e-9


def mixture_data(n=3000, dim=6, k=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (k, dim))
    scales = rng.uniform(0.3, 1.5, (k, dim))
    z = rng.integers(0, k, n)
    return (centres[z] + rng.standard_normal((n, dim)) * scales[z]).astype(np.float32)


def assert_same_fit(fit, gm):
    assert fit.n_iter == gm.n_iter_ and fit.converged == gm.converged_
    np.testing.assert_allclose(fit.means, gm.means_, rtol=EM_RTOL, atol=EM_RTOL * np.abs(gm.means_).max())
    np.testing.assert_allclose(fit.covariances, gm.covariances_, rtol=EM_RTOL)
    np.testing.assert_allclose(fit.weights, gm.weights_, rtol=EM_RTOL)
    assert fit.lower_bound == pytest.approx(gm.lower_bound_, rel=EM_RTOL)


def test_streamed_em_equals_sklearn_from_its_kmeans_plusplus_start():
    X = mixture_data()
    start = kmeans_plusplus_start(X, 8, 1e-6, random_state=0)
    fit = streamed_em(X, *start, max_iter=100, chunk_size=700)  # ragged last chunk
    gm = GaussianMixture(
        8, covariance_type="diag", reg_covar=1e-6, random_state=0, init_params="k-means++"
    ).fit(X.astype(np.float64))
    assert_same_fit(fit, gm)


def test_kmeans_plusplus_start_takes_sklearns_seeds():
    """The column-major float64 copy picks scikit-learn's seeds (its distances are the same bits)."""
    X = mixture_data(n=20000, dim=16, k=32, seed=15)
    means, covariances, weights = kmeans_plusplus_start(X, 32, 1e-6, random_state=3)
    centres, _ = kmeans_plusplus(X.astype(np.float64), 32, random_state=np.random.RandomState(3))
    nk = 1.0 + 10 * np.finfo(np.float64).eps
    np.testing.assert_array_equal(means, centres / nk)
    np.testing.assert_array_equal(covariances, centres * centres / nk - means**2 + 1e-6)
    np.testing.assert_array_equal(weights, np.full(32, nk / len(X)))


def test_streamed_em_equals_sklearn_from_a_given_start():
    X = mixture_data(n=2000, dim=5, k=6, seed=1)
    rng = np.random.default_rng(2)
    means = X[rng.choice(len(X), 6, replace=False)].astype(np.float64)
    variances = rng.uniform(0.5, 2.0, (6, 5))
    weights = rng.dirichlet(np.ones(6))
    fit = streamed_em(X, means, variances, weights, max_iter=7, tol=0.0, chunk_size=512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 7 iterations, on purpose
        gm = GaussianMixture(
            6,
            covariance_type="diag",
            reg_covar=1e-6,
            max_iter=7,
            tol=0.0,
            means_init=means,
            weights_init=weights,
            precisions_init=1.0 / variances,
        ).fit(X.astype(np.float64))
    assert_same_fit(fit, gm)


def numpy_em_step(X, means, variances, weights, reg=1e-6):
    """One EM iteration in plain NumPy (dense responsibilities, every entry)."""
    log_norm, r_sum, rx, rxx = numpy_chunk_sums(X, means, variances, weights)
    nk = r_sum + 10 * np.finfo(float).eps
    mu = rx / nk[:, None]
    var = rxx / nk[:, None] - mu**2 + reg
    return mu, var, nk / nk.sum(), log_norm / len(X)


def test_one_streamed_iteration_equals_plain_numpy():
    X = mixture_data(n=900, dim=4, k=5, seed=3)
    X64 = X.astype(np.float64)
    means, variances, weights = X64[:5].copy(), np.ones((5, 4)), np.full(5, 0.2)
    fit = streamed_em(X, means, variances, weights, max_iter=1, chunk_size=256)
    mu, var, w, bound = numpy_em_step(X64, means, variances, weights)
    np.testing.assert_allclose(fit.means, mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.covariances, var, rtol=1e-9)
    np.testing.assert_allclose(fit.weights, w, rtol=1e-9)
    assert fit.lower_bound == pytest.approx(bound, rel=1e-9)


def test_streamed_em_is_reproducible_across_thread_counts(monkeypatch):
    """Numba's thread count (the blocks computed at once) and the process's BLAS threads: same bits."""
    monkeypatch.setattr(gmm, "EM_BLOCK", 128)  # 8 blocks per chunk of 1000
    X = mixture_data(n=4000, dim=6, k=8, seed=4)
    start = kmeans_plusplus_start(X, 8, 1e-6, random_state=0)
    before = numba.get_num_threads()
    fits = []
    try:
        for threads, blas in ((1, 1), (min(2, numba.config.NUMBA_NUM_THREADS), 2)):
            numba.set_num_threads(threads)
            with threadpool_limits(blas, user_api="blas"):
                fits.append(streamed_em(X, *start, max_iter=5, chunk_size=1000))
    finally:
        numba.set_num_threads(before)
    a, b = fits
    for x, y in ((a.means, b.means), (a.covariances, b.covariances), (a.weights, b.weights)):
        np.testing.assert_array_equal(x, y)


def numpy_chunk_sums(X, means, variances, weights):
    """The E-step sums of ``em_chunk_sums`` in plain NumPy: every entry, dense, float64."""
    log_p = (
        np.log(weights)
        - 0.5 * np.log(2 * np.pi * variances).sum(1)
        - 0.5 * (((X[:, None, :] - means[None]) ** 2) / variances[None]).sum(2)
    )
    top = log_p.max(1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(log_p - top).sum(1))
    r = np.exp(log_p - lse[:, None])
    return lse.sum(), r.sum(0), r.T @ X, r.T @ (X * X)


def test_chunk_sums_equal_plain_numpy_for_any_threads_and_blas_threads(monkeypatch):
    """Blocks of 300 rows (ragged last one); 1, 2, 3 block threads; the process at 1 and 2 BLAS
    threads: the sums are the plain-NumPy ones, and the same bits every time (OpenBLAS's own
    products differ in the last bits between 1 and 2 threads at these shapes)."""
    monkeypatch.setattr(gmm, "EM_BLOCK", 300)
    X = mixture_data(n=2000, dim=24, k=48, seed=12)
    X64 = X.astype(np.float64)
    rng = np.random.default_rng(13)
    means = X64[rng.choice(len(X), 48, replace=False)]
    variances = rng.uniform(0.5, 4.0, (48, 24))
    weights = rng.dirichlet(np.ones(48))
    W, const = log_likelihood_terms(means, variances, weights)
    ref = numpy_chunk_sums(X64, means, variances, weights)
    runs = []
    for blas in (1, 2):
        with threadpool_limits(blas, user_api="blas"):
            runs += [em_chunk_sums(X, W, const, threads=t) for t in (1, 2, 3)]
    assert ref[0] == pytest.approx(runs[0][0], rel=1e-12)
    for got, want in zip(runs[0][1:], ref[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())
    for other in runs[1:]:
        assert other[0] == runs[0][0]
        for a, b in zip(other[1:], runs[0][1:]):
            np.testing.assert_array_equal(a, b)


def test_responsibilities_kernel_equals_plain_numpy():
    """Softmax rows in place (entries below exp(-45) of the row's largest set to 0), log-sum."""
    rng = np.random.default_rng(14)
    values = rng.normal(0.0, 30.0, (200, 37))
    values[5] = -1e300  # a row far below zero: its own maximum still counts
    values[6, 3] = 1e3  # a row dominated by one entry
    top = values.max(1, keepdims=True)
    e = np.exp(values - top)
    ref = np.where(values >= top - gmm.EM_MARGIN, e / e.sum(1, keepdims=True), 0.0)
    lse = (top[:, 0] + np.log(e.sum(1))).sum()
    out = values.copy()
    assert gmm._responsibilities(out, gmm.EM_MARGIN) == pytest.approx(lse, rel=1e-14)
    np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-300)
    assert (out == 0).any() and np.allclose(out.sum(1), 1.0, rtol=1e-14, atol=0)


def hard_case(seed=5, n=400, dim=10, k=24):
    """Offsets far from the means (big log-likelihoods, float32 cancellation), spread variances."""
    rng = np.random.default_rng(seed)
    means = rng.normal(20.0, 3.0, (k, dim))
    variances = rng.uniform(0.05, 4.0, (k, dim))
    weights = rng.dirichlet(np.ones(k))
    data = means[rng.integers(0, k, n)] + rng.normal(0, 1.5, (n, dim))
    return data, means, variances, weights


def test_float32_error_bound_holds():
    data, means, variances, weights = hard_case()
    W, _ = log_likelihood_terms(means, variances, weights)
    f = square_features(data)
    error = np.abs((f.astype(np.float32) @ W.astype(np.float32)).astype(np.float64) - f @ W)
    assert error.max() > 0  # the case does round
    assert np.all(error <= float32_bound(f, W)[:, None])


def numpy_thresholded_posteriors(data, means, variances, weights, threshold):
    log_p = (
        np.log(weights)
        - 0.5 * np.log(2 * np.pi * variances).sum(1)
        - 0.5 * (((data[:, None, :] - means[None]) ** 2) / variances[None]).sum(2)
    )
    p = np.exp(log_p - log_p.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return np.where(p >= threshold, p, 0.0)


@pytest.mark.parametrize("seed", [7, 8])
def test_mixed_posteriors_equal_plain_numpy(seed):
    data, means, variances, weights = hard_case(seed=seed)
    data[3] = 1e22  # float32 overflows ([l^2] = 1e44): this row is recomputed in float64
    W, const = log_likelihood_terms(means, variances, weights)
    indptr, indices, values = mixed_posteriors(square_features(data), W, const, 1e-6, slots=4)
    dense = np.zeros((len(data), len(weights)))
    dense[np.repeat(np.arange(len(data)), np.diff(indptr)), indices] = values
    ref = numpy_thresholded_posteriors(data, means, variances, weights, 1e-6)
    np.testing.assert_allclose(dense, ref, rtol=1e-9, atol=0)  # ref is exact in the dense sense
    assert (np.diff(indptr) > 4).any()  # some rows overflowed their slots


def test_gmm_vocabulary_streams_large_fits_with_the_same_attributes(monkeypatch, tmp_path):
    X = mixture_data(n=2500, dim=6, k=8, seed=9)
    streamed = GMMVocabulary(8, pca_components=4, backend="streamed", random_state=0).fit(X)
    monkeypatch.setattr(vocabulary, "STREAM_ABOVE", 100)  # "sklearn" streams above 100 pairs
    auto = GMMVocabulary(8, pca_components=4, random_state=0).fit(X)
    for name in ("means_", "covariances_", "weights_", "n_iter_"):
        np.testing.assert_array_equal(getattr(auto, name), getattr(streamed, name))
    auto.check_fitted()
    assert auto.means_.dtype == auto.covariances_.dtype == auto.weights_.dtype == np.float64
    back = load(save(auto, tmp_path / "gmm.skops"))
    np.testing.assert_array_equal(back.transform(X[:50]), auto.transform(X[:50]))
    # the same fit as scikit-learn's GaussianMixture on the float32-rounded projection
    proj = auto.project(X).astype(np.float32).astype(np.float64)
    gm = GaussianMixture(
        8, covariance_type="diag", reg_covar=1e-6, random_state=0, init_params="k-means++"
    ).fit(proj)
    np.testing.assert_allclose(auto.means_, gm.means_, rtol=1e-9, atol=1e-9)
    assert auto.n_iter_ == gm.n_iter_


def test_streamed_em_refuses_a_collapsed_component():
    X = mixture_data(n=300, dim=3, k=3, seed=10)
    means, variances, weights = X[:3].astype(np.float64), np.ones((3, 3)), np.full(3, 1 / 3)
    variances[1, 2] = -1.0
    with pytest.raises(ValueError, match="collapsed"):
        streamed_em(X, means, variances, weights, max_iter=2)


def test_the_estep_hook_reaches_the_vocabulary_fit_and_changes_nothing():
    """``using_estep`` puts a hook under ``GMMVocabulary.fit``; the chunks' sums are added in order."""
    X = mixture_data(n=2500, dim=6, k=8, seed=11)
    seen = []

    @contextlib.contextmanager
    def reversed_order(chunks):  # computes the chunks last to first, hands them back in order
        seen.append(len(chunks))

        def run(W, const):
            return [em_chunk_sums(c, W, const) for c in chunks[::-1]][::-1]

        yield run

    plain = GMMVocabulary(8, pca_components=4, backend="streamed", random_state=0).fit(X)
    with using_estep(reversed_order):
        hooked = GMMVocabulary(8, pca_components=4, backend="streamed", random_state=0).fit(X)
    assert seen == [1]  # 2500 rows: one chunk of EM_CHUNK
    for name in ("means_", "covariances_", "weights_", "n_iter_"):
        np.testing.assert_array_equal(getattr(hooked, name), getattr(plain, name))
    # chunks of 300 rows: the hook sees them all, and the fit is the serial one's bits
    start = kmeans_plusplus_start(X, 8, 1e-6, random_state=0)
    a = streamed_em(X, *start, max_iter=4, tol=0.0, chunk_size=300)
    b = streamed_em(X, *start, max_iter=4, tol=0.0, chunk_size=300, estep=reversed_order)
    assert seen == [1, 9]
    for x, y in ((a.means, b.means), (a.covariances, b.covariances), (a.weights, b.weights)):
        np.testing.assert_array_equal(x, y)

    # a hook that drops a chunk is refused, not averaged over
    @contextlib.contextmanager
    def lossy(chunks):
        yield lambda W, const: [em_chunk_sums(c, W, const) for c in chunks[1:]]

    with pytest.raises(RuntimeError, match="8 of 9 chunks"):
        streamed_em(X, *start, max_iter=2, chunk_size=300, estep=lossy)
