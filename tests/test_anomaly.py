"""One-class SVM and SVDD on feature vectors: solvers, decision functions, decompositions."""

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.svm import OneClassSVM
from sklearn.utils.estimator_checks import parametrize_with_checks

from bowlrp.classifier.anomaly import KernelSVDD, OneClassKernelSVM
from bowlrp.classifier.kernels import RBF, ExponentialChi2
from bowlrp.exceptions import RuleError
from bowlrp.rules import Decomposition, Taylor

# per-dimension kernels k_d(a, b) of the sum-decomposable kernels, for dense references
ELEMENTWISE = {
    "hik": np.minimum,
    "chi2": lambda a, b: np.where(a + b > 0, 2 * a * b / np.where(a + b > 0, a + b, 1), 0.0),
    "linear": np.multiply,
    "hellinger": lambda a, b: np.sqrt(a * b),
}


def _data(seed=0, n=50, V=12, normalise=False):
    rng = np.random.default_rng(seed)
    X = rng.random((n, V)) ** 2
    X[rng.random(X.shape) < 0.2] = 0.0
    if normalise:
        X /= X.sum(1, keepdims=True)
    T = rng.random((8, V)) ** 2
    return X, T


def _dense_gram(A, B, names, sizes, weights):
    """K[i, j] = sum_u beta_u sum_{d in u} k_d(A_id, B_jd) by broadcasting."""
    K = np.zeros((len(A), len(B)))
    start = 0
    for name, size, w in zip(names, sizes, weights):
        s = slice(start, start + size)
        K += w * ELEMENTWISE[name](A[:, None, s], B[None, :, s]).sum(-1)
        start += size
    return K


def _dense_svdd_terms(S, alpha, x, names, sizes, weights):
    """Eq. A.13 per dimension, by explicit broadcasting over i, j and d."""
    out = []
    start = 0
    for name, size, w in zip(names, sizes, weights):
        s = slice(start, start + size)
        kd = ELEMENTWISE[name]
        Ss, xs = S[:, s], x[s]
        self_term = kd(xs, xs)
        cross = (alpha[:, None] * kd(Ss, xs[None, :])).sum(0)
        pairs = alpha[:, None, None] * alpha[None, :, None] * kd(Ss[:, None, :], Ss[None, :, :])
        centre = pairs.sum((0, 1))
        out.append(w * (self_term - 2 * cross + centre))
        start += size
    return np.concatenate(out)


# -- one-class SVM ------------------------------------------------------------------


@pytest.mark.parametrize("nu", [0.05, 0.3])
def test_ocsvm_equals_sklearn_rbf(nu):
    X, T = _data(1)
    ours = OneClassKernelSVM(RBF(sigma=0.8), nu=nu, tol=1e-8).fit(X)
    ref = OneClassSVM(kernel="rbf", gamma=1 / 0.8**2, nu=nu, tol=1e-8).fit(X)
    for Z in (X, T):
        np.testing.assert_allclose(ours.decision_function(Z), ref.decision_function(Z), atol=1e-9)
        np.testing.assert_allclose(ours.score_samples(Z), ref.score_samples(Z), atol=1e-9)
        np.testing.assert_array_equal(ours.predict(Z), ref.predict(Z))
    np.testing.assert_allclose(ours.offset_, ref.offset_[0], atol=1e-12)


def test_ocsvm_equals_sklearn_precomputed_two_channels():
    X, T = _data(2)
    names, sizes, weights = ["hik", "chi2"], [5, 7], [0.3, 0.7]
    ours = OneClassKernelSVM(names, nu=0.2, channel_sizes=sizes, kernel_weights=weights).fit(X)
    ref = OneClassSVM(kernel="precomputed", nu=0.2, tol=1e-6).fit(_dense_gram(X, X, names, sizes, weights))
    np.testing.assert_allclose(
        ours.decision_function(T), ref.decision_function(_dense_gram(T, X, names, sizes, weights)), atol=1e-9
    )


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_ocsvm_decomposition_is_eq_A9_and_conserves(sign):
    X, T = _data(3)
    oc = OneClassKernelSVM("hik", nu=0.2).fit(X)
    alpha, S = oc.dual_coef_[0], oc.support_vectors_
    for x in T:
        out = oc.dimension_relevance(x, 0, sign, Decomposition())
        np.testing.assert_allclose(
            out.relevance, sign * (alpha[:, None] * np.minimum(S, x)).sum(0), rtol=1e-12, atol=1e-14
        )
        assert out.bias == pytest.approx(sign * -oc.offset_, abs=1e-15)
        f = sign * oc.decision_function(x[None])[0]
        assert abs(out.relevance.sum() + out.bias - f) <= 1e-9 * max(1.0, abs(f))


# -- SVDD solver ----------------------------------------------------------------------


def _svdd_objective(K):
    d = np.diag(K)
    return (lambda a: a @ K @ a - d @ a), (lambda a: 2 * K @ a - d)


@pytest.mark.parametrize("kernel,normalise", [("hik", False), ("linear", False), ("hik", True)])
def test_svdd_solves_tax_duin_dual(kernel, normalise):
    """Optimum equals SLSQP on the original dual; KKT conditions hold; r^2 from free SVs."""
    X, _ = _data(4, n=40, normalise=normalise)
    nu = 0.2
    det = KernelSVDD(kernel, nu=nu, tol=1e-10).fit(X)
    assert det.constant_self_kernel_ == (normalise and kernel == "hik")
    n = len(X)
    C = 1.0 / (nu * n)
    K = _dense_gram(X, X, [kernel], [X.shape[1]], [1.0])
    alpha = np.zeros(n)
    alpha[det.support_] = det.dual_coef_[0]
    assert alpha.sum() == pytest.approx(1.0, abs=1e-12)
    assert alpha.min() >= 0 and alpha.max() <= C + 1e-12
    obj, jac = _svdd_objective(K)
    ref = minimize(
        obj,
        np.full(n, 1.0 / n),
        jac=jac,
        bounds=[(0, C)] * n,
        method="SLSQP",
        constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1, "jac": lambda a: np.ones(n)}],
        options={"ftol": 1e-15, "maxiter": 2000},
    )
    assert ref.success
    assert obj(alpha) <= ref.fun + 1e-9
    dist = np.diag(K) - 2 * K @ alpha + alpha @ K @ alpha  # a(x_i), eq. A.11
    free = (alpha > 1e-9) & (alpha < C - 1e-9)
    assert free.any()
    np.testing.assert_allclose(dist[free], det.radius2_, atol=1e-7)
    assert np.all(dist[alpha <= 1e-12] <= det.radius2_ + 1e-7)  # inside: alpha = 0
    assert np.all(dist[alpha >= C - 1e-12] >= det.radius2_ - 1e-7)  # outside: alpha = C
    assert det.center_norm2_ == pytest.approx(alpha @ K @ alpha, rel=1e-12)


def test_svdd_with_constant_self_kernel_matches_ocsvm():
    """k(x, x) = 1 (RBF): SVDD and the one-class SVM share alpha and the inlier set."""
    X, T = _data(5)
    svdd = KernelSVDD(RBF(sigma=0.7), nu=0.25, tol=1e-10).fit(X)
    oc = OneClassKernelSVM(RBF(sigma=0.7), nu=0.25, tol=1e-10).fit(X)
    assert svdd.constant_self_kernel_
    np.testing.assert_array_equal(svdd.support_, oc.support_)
    # two libsvm runs (on K and on K - 1) agree to the solver's tolerance, not to rounding
    np.testing.assert_allclose(svdd.dual_coef_, oc.dual_coef_ / oc.dual_coef_.sum(), atol=1e-7)
    scale = 2.0 / oc.dual_coef_.sum()  # a(x) = 1 - 2 f_oc(x)/(nu n) + const
    np.testing.assert_allclose(svdd.decision_function(T), scale * oc.decision_function(T), atol=1e-6)


def test_svdd_C_parameter():
    X, _ = _data(6, n=30)
    a = KernelSVDD("hik", C=1.0 / (0.2 * 30), tol=1e-10).fit(X)
    b = KernelSVDD("hik", nu=0.2, tol=1e-10).fit(X)
    np.testing.assert_allclose(a.radius2_, b.radius2_, rtol=1e-12)
    hard = KernelSVDD("hik", C=1.0).fit(X)
    assert np.all(hard.decision_function(X) >= -1e-6)  # hard sphere: every sample inside
    with pytest.raises(ValueError, match="infeasible"):
        KernelSVDD("hik", C=0.01).fit(X)


# -- SVDD decision and decomposition against dense NumPy ------------------------------

CASES = [
    (["hik"], [12], [1.0]),
    (["chi2"], [12], [1.0]),
    (["linear"], [12], [1.0]),
    (["hik", "hellinger"], [5, 7], [0.25, 0.75]),
]


@pytest.mark.parametrize("names,sizes,weights", CASES)
def test_svdd_equals_dense_A11_A12_A13(names, sizes, weights):
    X, T = _data(7)
    kernel = names if len(names) > 1 else names[0]
    det = KernelSVDD(
        kernel,
        nu=0.2,
        channel_sizes=sizes if len(sizes) > 1 else None,
        kernel_weights=weights if len(weights) > 1 else None,
    ).fit(X)
    S, alpha = det.support_vectors_, det.dual_coef_[0]
    Kss = _dense_gram(S, S, names, sizes, weights)
    a_dense = (
        np.diag(_dense_gram(T, T, names, sizes, weights))
        - 2 * _dense_gram(T, S, names, sizes, weights) @ alpha
        + alpha @ Kss @ alpha
    )  # A.11
    np.testing.assert_allclose(
        -det.decision_function(T),
        a_dense - det.radius2_,  # A.12
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(det.score_samples(T), -a_dense, rtol=1e-10, atol=1e-12)
    for x, a_x in zip(T, a_dense):
        for sign in (-1.0, 1.0):
            out = det.dimension_relevance(x, 0, sign, Decomposition())
            dense = _dense_svdd_terms(S, alpha, x, names, sizes, weights)
            np.testing.assert_allclose(out.relevance, -sign * dense, rtol=1e-10, atol=1e-13)  # A.13
            assert out.bias == pytest.approx(sign * det.radius2_, rel=1e-15)
            g = sign * det.decision_function(x[None])[0]
            assert abs(out.relevance.sum() + out.bias - g) <= 1e-9 * max(1.0, abs(g))  # conservation
            assert out.score == pytest.approx(-sign * (a_x - det.radius2_), abs=1e-10)


def test_svdd_hik_terms_are_non_negative_squared_distances():
    X, T = _data(8)
    det = KernelSVDD("hik", nu=0.1).fit(X)
    for x in np.vstack([X[:10], T]):
        assert det.dimension_relevance(x).relevance.min() >= -1e-12


def test_spread_bias_and_relevance_check():
    X, T = _data(9)
    det = KernelSVDD("hik", nu=0.1).fit(X)
    out = det.dimension_relevance(T[0], 0, -1.0, Decomposition(bias="spread"))
    assert out.bias == 0.0
    assert out.relevance.sum() == pytest.approx(-det.decision_function(T[:1])[0], abs=1e-12)
    R = -det.decision_function(T[:1])[0]
    assert det.relevance(R, T[0]).score == pytest.approx(R)
    with pytest.raises(ValueError, match="not the explained score"):
        det.relevance(R + 1.0, T[0])


# -- Taylor for differentiable kernels ---------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: KernelSVDD(RBF(sigma=0.8), nu=0.2),
        lambda: KernelSVDD(ExponentialChi2(), nu=0.2),
        lambda: OneClassKernelSVM(RBF(sigma=0.8), nu=0.2),
    ],
)
def test_taylor_at_a_boundary_root_conserves(make):
    X, T = _data(10)
    det = make().fit(X)
    outliers = T[det.predict(T) == -1]
    assert len(outliers)
    for x in outliers[:3]:
        out = det.dimension_relevance(x, 0, -1.0, Taylor())
        assert abs(out.root_value) <= 1e-5  # the root is on the boundary
        assert det.decision_function(out.root[None])[0] == pytest.approx(0.0, abs=1e-5)
        total = out.relevance.sum() + out.bias + out.residual
        assert abs(total - out.score) <= 1e-9 * max(1.0, abs(out.score))
    with pytest.raises(RuleError, match="sum-decomposable"):
        det.dimension_relevance(outliers[0], 0, -1.0, Decomposition())


def test_taylor_on_decomposable_svdd_is_exact_difference():
    X, T = _data(11)
    det = KernelSVDD("hik", nu=0.2).fit(X)
    x = T[np.argmin(det.decision_function(T))]
    out = det.dimension_relevance(x, 0, -1.0, Taylor())
    exact = det.dimension_relevance(x, 0, -1.0, Decomposition())
    at_root = det.dimension_relevance(out.root, 0, -1.0, Decomposition())
    np.testing.assert_allclose(out.relevance, exact.relevance - at_root.relevance, atol=1e-12)
    assert abs(out.residual) <= 1e-12


# -- API ----------------------------------------------------------------------------------


def test_targets_predict_and_errors():
    X, T = _data(12)
    det = KernelSVDD("hik", nu=0.1).fit(X)
    assert set(np.unique(det.predict(np.vstack([X, T * 5])))) <= {-1, 1}
    assert det.task_and_sign(T[0]) == (0, -1.0)
    assert det.task_and_sign(T[0], 1) == (0, 1.0)
    assert det.target_label(0, -1.0) == -1
    with pytest.raises(ValueError, match="unknown target"):
        det.task_and_sign(T[0], "cat")
    with pytest.raises(ValueError, match="kernel_weights"):
        KernelSVDD(["hik", "hik"], channel_sizes=[6, 6], kernel_weights=[1.0]).fit(X)
    with pytest.raises(ValueError, match="nu must be"):
        OneClassKernelSVM(nu=0.0).fit(X)
    with pytest.raises(ValueError, match="non-negative"):
        KernelSVDD("hik").fit(X - 1.0)


@parametrize_with_checks(
    [OneClassKernelSVM(kernel="rbf", random_state=0), KernelSVDD(kernel="rbf", random_state=0)]
)
def test_sklearn_compatible_detector(estimator, check):
    check(estimator)
