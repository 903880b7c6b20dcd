import numpy as np
import pytest

from bowlrp.classifier import kernels as K


def reference_gram(name, X, Y, sigma=None):
    out = np.zeros((len(X), len(Y)))
    for i, x in enumerate(X):
        for j, y in enumerate(Y):
            s = x + y
            safe = np.where(s == 0, 1, s)
            if name == "linear":
                out[i, j] = x @ y
            elif name == "hik":
                out[i, j] = np.minimum(x, y).sum()
            elif name == "chi2":
                out[i, j] = np.sum(np.where(s == 0, 0, 2 * x * y / safe))
            elif name == "hellinger":
                out[i, j] = np.sqrt(x * y).sum()
            elif name == "exp_chi2":
                out[i, j] = np.exp(-sigma * np.sum(np.where(s == 0, 0, (x - y) ** 2 / safe)))
            elif name == "rbf":
                out[i, j] = np.exp(-np.sum((x - y) ** 2) / sigma**2)
    return out


@pytest.mark.parametrize("name", ["linear", "hik", "chi2", "hellinger", "exp_chi2", "rbf"])
def test_gram_equals_reference(name):
    rng = np.random.default_rng(0)
    X = rng.random((13, 7)) * (rng.random((13, 7)) > 0.3)
    Y = rng.random((9, 7)) * (rng.random((9, 7)) > 0.3)
    k = K.make_kernel(name).fit(X)
    sigma = getattr(k, "sigma_", None)
    np.testing.assert_allclose(k.gram(X, Y), reference_gram(name, X, Y, sigma), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["linear", "hik", "chi2", "hellinger"])
def test_dimension_terms_sum_to_the_expansion(name):
    rng = np.random.default_rng(1)
    S = rng.random((20, 6)) * (rng.random((20, 6)) > 0.2)
    coef = rng.normal(size=20)
    x = rng.random(6) * (rng.random(6) > 0.2)
    k = K.make_kernel(name).fit(S)
    assert k.decomposable
    T = k.dimension_terms(S, coef, x)
    assert np.isclose(T.sum(), coef @ k.gram(S, x[None])[:, 0], rtol=1e-12)


@pytest.mark.parametrize("name", ["linear", "exp_chi2", "rbf"])
def test_gradient_equals_finite_differences(name):
    rng = np.random.default_rng(2)
    S = rng.random((15, 5)) + 0.1
    coef = rng.normal(size=15)
    x = rng.random(5) + 0.1
    k = K.make_kernel(name).fit(S)
    g = k.gradient(S, coef, x)
    h = 1e-6
    fd = np.array(
        [
            (coef @ k.gram(S, (x + h * e)[None])[:, 0] - coef @ k.gram(S, (x - h * e)[None])[:, 0]) / (2 * h)
            for e in np.eye(5)
        ]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_exp_chi2_gradient_at_zero_bins_uses_the_limit():
    S = np.array([[0.0, 0.5]])
    k = K.ExponentialChi2(sigma=0.7).fit(S)
    g = k.gradient(S, np.ones(1), np.array([0.0, 0.5]))
    assert np.isclose(g[0], -0.7)  # 0/0 := 0 in 4 s^2/(s+x)^2 - 1


def test_histogram_kernels_reject_negative_features():
    with pytest.raises(ValueError, match="non-negative"):
        K.HistogramIntersection().gram(np.array([[-1.0, 2.0]]))


def test_unknown_kernel_name():
    with pytest.raises(ValueError, match="unknown kernel"):
        K.make_kernel("polynomial")
