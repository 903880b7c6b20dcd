import numpy as np
import pytest
from sklearn.svm import SVC

from bowlrp.classifier import kernels as K
from bowlrp.classifier.svm import KernelSVC


def explicit_expansion(model, X):
    """f_t(x) = b_t + sum_u beta_tu sum_i a_ti k_u(s_i, x), computed naively."""
    F = np.zeros((len(X), model.n_tasks_))
    for t in range(model.n_tasks_):
        for n, x in enumerate(X):
            f = model.intercept_[t]
            for u, s in enumerate(model.channel_slices_):
                for i, sv in enumerate(model.support_vectors_):
                    k = model.kernels_[u].gram(sv[s][None], x[s][None])[0, 0]
                    f += model.kernel_weights_[t, u] * model.dual_coef_[t, i] * k
            F[n, t] = f
    return F


@pytest.mark.parametrize("kernel", ["hik", "chi2", "linear", "rbf", "exp_chi2", "hellinger"])
def test_binary_decision_equals_sklearn_and_explicit_expansion(kernel):
    rng = np.random.default_rng(0)
    X = rng.random((80, 6))
    y = (X[:, 0] > X[:, 1]).astype(int)
    Xt = rng.random((15, 6))
    model = KernelSVC(kernel, C=2.0).fit(X, y)
    k = K.make_kernel(kernel).fit(X)
    ref = SVC(kernel="precomputed", C=2.0).fit(k.gram(X), y)
    np.testing.assert_allclose(
        model.decision_function(Xt), ref.decision_function(k.gram(Xt, X)), rtol=1e-9, atol=1e-10
    )
    np.testing.assert_allclose(
        model.decision_function(Xt), explicit_expansion(model, Xt)[:, 0], rtol=1e-9, atol=1e-10
    )
    np.testing.assert_array_equal(model.predict(Xt), ref.predict(k.gram(Xt, X)))


def test_one_vs_rest_and_multilabel():
    rng = np.random.default_rng(1)
    X = rng.random((90, 4))
    y = np.argmax(X[:, :3], axis=1)
    model = KernelSVC("hik").fit(X, np.array(["a", "b", "c"])[y])
    F = model.decision_function(X)
    assert F.shape == (90, 3)
    np.testing.assert_allclose(F, explicit_expansion(model, X), rtol=1e-9, atol=1e-10)
    assert (model.predict(X) == np.array(["a", "b", "c"])[y]).mean() > 0.8
    Y = np.column_stack([X[:, 0] > 0.5, X[:, 1] > 0.5]).astype(int)
    ml = KernelSVC("rbf").fit(X, Y)
    assert ml.decision_function(X).shape == (90, 2)
    assert ml.predict(X).shape == (90, 2)
    assert (ml.predict(X) == Y).mean() > 0.8


@pytest.mark.parametrize("norm", [1, 2])
def test_mkl_gives_the_informative_kernel_most_weight(norm):
    rng = np.random.default_rng(2)
    informative = rng.random((150, 3))
    y = (informative.sum(1) > 1.5).astype(int)
    noise = rng.random((150, 20))
    X = np.hstack([informative, noise])
    model = KernelSVC(["rbf", "rbf"], channel_sizes=[3, 20], mkl_norm=norm).fit(X, y)
    beta = model.kernel_weights_[0]
    # l1 is sparse, l2 spreads the weight more evenly (Kloft et al. 2011)
    assert beta[0] > (3.0 if norm == 1 else 1.3) * beta[1], beta
    assert np.isclose(np.sum(beta**norm) ** (1 / norm), 1.0)
    np.testing.assert_allclose(
        model.decision_function(X), explicit_expansion(model, X)[:, 0], rtol=1e-9, atol=1e-10
    )
    uniform = KernelSVC(["rbf", "rbf"], channel_sizes=[3, 20]).fit(X, y)
    np.testing.assert_allclose(uniform.kernel_weights_[0], [0.5, 0.5])


def test_bad_fits():
    X = np.random.default_rng(3).random((10, 4))
    with pytest.raises(ValueError, match="at least 2 classes"):
        KernelSVC().fit(X, np.zeros(10))
    with pytest.raises(ValueError, match="channel_sizes"):
        KernelSVC(channel_sizes=[1, 2]).fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="kernels given"):
        KernelSVC(kernel=["hik"], channel_sizes=[2, 2]).fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="mkl_norm"):
        KernelSVC(mkl_norm="sparse").fit(X, np.arange(10) % 2)
