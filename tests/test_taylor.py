"""Taylor-type explanations of differentiable kernels: boundary roots and path integrals (issue 13)."""

import numpy as np
import pytest
from scipy.optimize import minimize

from bowlrp.classifier.kernels import RBF, ExponentialChi2
from bowlrp.classifier.relevance import gauss_legendre, taylor_root
from bowlrp.classifier.roots import FeatureDomain, infer_domain, project_on_hyperplane, project_simplex
from bowlrp.classifier.svm import KernelSVC
from bowlrp.exceptions import RuleError
from bowlrp.rules import Taylor, parse_rule


def _simplex_data(n=240, V=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.full(V, 0.7), size=n)
    y = (X[:, 0] + X[:, 1] - X[:, 2] > 0.15).astype(int)
    return X, y


@pytest.fixture(scope="module")
def simplex_models():
    X, y = _simplex_data()
    return X, {k: KernelSVC(k, C=10.0, random_state=0).fit(X, y) for k in ("exp_chi2", "rbf")}


def _g(clf, x):
    task, sign = clf.task_and_sign(x)

    def g(P):
        return sign * clf.decision_function(np.atleast_2d(P))

    return g, task, sign


# -- plain NumPy references ---------------------------------------------------------------


def _reference_gradients(clf, X, sign, eps=1e-6):
    """Central differences of ``sign f`` at every row of X, in one batch (one-sided at 0)."""
    n, V = X.shape
    E = np.eye(V)[None, :, :] * eps
    lo = X[:, None, :] - np.where(X[:, None, :] >= eps, E, 0.0)  # one-sided where x_d < eps
    hi = X[:, None, :] + E
    f_hi = clf.decision_function(hi.reshape(-1, V)).reshape(n, V)
    f_lo = clf.decision_function(lo.reshape(-1, V)).reshape(n, V)
    step = (hi - lo)[:, np.arange(V), np.arange(V)]
    return sign * (f_hi - f_lo) / step


def _reference_simplex_projection(v, total):
    lo, hi = v.min() - total, v.max()
    for _ in range(200):  # bisection on theta: sum max(v - theta, 0) = total
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > total else (lo, mid)
    return np.maximum(v - 0.5 * (lo + hi), 0)


# -- kernels: batched gradients ---------------------------------------------------------------


@pytest.mark.parametrize("kernel", [RBF(sigma=0.7), ExponentialChi2(sigma=2.0)])
def test_batched_gradients_match_single_and_finite_differences(kernel):
    rng = np.random.default_rng(3)
    S = rng.dirichlet(np.ones(6), size=15)
    coef = rng.normal(size=15)
    X = rng.dirichlet(np.ones(6), size=4)
    kernel.fit(S)
    G = kernel.gradients(S, coef, X)
    for x, row in zip(X, G):
        np.testing.assert_allclose(row, kernel.gradient(S, coef, x), rtol=1e-12, atol=1e-14)
        num = np.array(
            [
                (coef @ kernel.gram(S, (x + e)[None])[:, 0] - coef @ kernel.gram(S, (x - e)[None])[:, 0])
                / 2e-6
                for e in 1e-6 * np.eye(6)
            ]
        )
        np.testing.assert_allclose(row, num, rtol=1e-5, atol=1e-7)


# -- projections ----------------------------------------------------------------------------


def test_simplex_projection_matches_bisection_reference():
    rng = np.random.default_rng(4)
    for total in (1.0, 0.3, 2.5):
        for _ in range(20):
            v = rng.normal(size=9) * rng.uniform(0.1, 3)
            z = project_simplex(v, total)
            np.testing.assert_allclose(z, _reference_simplex_projection(v, total), atol=1e-10)
            assert z.min() >= 0 and np.isclose(z.sum(), total)


def _slsqp_reference(x, z0, n, b, kind):
    """Nearest point to x on {n.z = b} (and the orthant / two simplices), by SLSQP."""
    V = x.size
    cons = [{"type": "eq", "fun": lambda z: n @ z - b}]
    bounds = [(0, None)] * V if kind != "free" else None
    if kind == "simplex":
        cons += [
            {"type": "eq", "fun": lambda z: z[:3].sum() - 1},
            {"type": "eq", "fun": lambda z: z[3:].sum() - 1},
        ]
    return minimize(
        lambda z: 0.5 * np.sum((z - x) ** 2),
        z0,
        jac=lambda z: z - x,
        bounds=bounds,
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    ).x


@pytest.mark.parametrize("kind", ["simplex", "nonnegative", "free"])
def test_hyperplane_projection_matches_slsqp(kind):
    rng = np.random.default_rng(5)
    V = 7
    dom = FeatureDomain((slice(0, 3), slice(3, V)), (kind, kind), (1.0, 1.0))
    for _ in range(5):
        x = np.concatenate([rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(4))])
        z0 = np.concatenate([rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(4))])
        n = rng.normal(size=V)
        b = float(n @ z0)  # the hyperplane meets the domain at z0
        p = project_on_hyperplane(dom, x, n, b)
        ref = _slsqp_reference(x, z0, n, b, kind)
        assert np.isclose(n @ p, b, atol=1e-9) and dom.contains(p)
        assert np.linalg.norm(p - x) <= np.linalg.norm(ref - x) + 1e-7
        np.testing.assert_allclose(p, ref, atol=1e-5)


def test_domain_is_inferred_per_channel():
    x = np.array([0.2, 0.8, 0.0, 0.5, -1.0, 3.0])
    C = np.array([[0.5, 0.5, 1.0, 2.0, 0.3, 0.1], [1.0, 0.0, 0.0, 0.1, 0.2, 0.3]])
    dom = infer_domain([slice(0, 2), slice(2, 4), slice(4, 6)], x, C)
    assert dom.kinds == ("simplex", "nonnegative", "free")
    with pytest.raises(RuleError, match="domain"):
        infer_domain([slice(0, 2)], x, C, "ball")


# -- the constrained nearest root -------------------------------------------------------------


def test_boundary_root_of_a_linear_model_is_the_orthogonal_projection():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 5))
    y = (X @ [1.0, -2.0, 0.5, 0.0, 1.0] > 0.3).astype(int)
    clf = KernelSVC("linear", C=10.0, random_state=0).fit(X, y)
    w = clf.dual_coef_[0] @ clf.support_vectors_
    for x in X[:8]:
        g, task, sign = _g(clf, x)
        root, dist, val, info = taylor_root(clf, x, task, sign, Taylor(root="boundary", tol=1e-10))
        exact = x - (clf.decision_function(x[None])[0] / (w @ w)) * w
        assert info["domain"] == ["free"]
        np.testing.assert_allclose(root, exact, atol=1e-7)
        assert dist <= info["segment_distance"] + 1e-12


@pytest.mark.parametrize("kernel", ["exp_chi2", "rbf"])
def test_boundary_root_is_a_feasible_root_never_farther_than_the_segment_root(simplex_models, kernel):
    X, models = simplex_models
    clf = models[kernel]
    rule = Taylor(root="boundary", tol=1e-7)
    gains = []
    for x in X[:8]:
        g, task, sign = _g(clf, x)
        root, dist, val, info = taylor_root(clf, x, task, sign, rule)
        assert abs(g(root)[0]) <= 1e-7 and np.isclose(val, g(root)[0])
        assert g(root)[0] * g(x)[0] <= 0  # across the boundary
        assert root.min() >= -1e-12 and abs(root.sum() - 1) <= 1e-9  # on the simplex
        assert info["domain"] == ["simplex"]
        assert dist <= info["segment_distance"] + 1e-12
        assert np.isclose(dist, np.linalg.norm(root - x))
        gains.append(1 - dist / info["segment_distance"])
    assert np.mean(gains) > 0.03  # the walk does move (seen: ~10-20 % nearer on average)


def test_boundary_root_of_rbf_is_stationary_in_free_domain():
    X, y = _simplex_data(seed=1)
    clf = KernelSVC(RBF(), C=10.0, random_state=0).fit(X, y)
    for x in X[:6]:
        g, task, sign = _g(clf, x)
        rule = Taylor(root="boundary", domain="free", tol=1e-9, walk_iter=100, n_starts=1)
        root, dist, _, info = taylor_root(clf, x, task, sign, rule)
        grad = (
            sign
            * clf.kernel_weights_[0, 0]
            * clf.kernels_[0].gradient(clf.support_vectors_, clf.dual_coef_[0], root)
        )
        cos = abs(grad @ (x - root)) / (np.linalg.norm(grad) * dist)
        # KKT: x - root is normal to the boundary, to the walk's stopping rule (a step
        # gaining < 1e-4 of the distance ends it)
        assert 1 - cos < 1e-4, cos
        assert info["stationarity"] < 1e-3, info


# -- the path-integrated gradient ------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["exp_chi2", "rbf"])
def test_integrated_gradient_matches_a_finite_difference_reference(simplex_models, kernel):
    X, models = simplex_models
    clf = models[kernel]
    x = X[3]
    out = clf.relevance(None, x, Taylor(root="boundary", nodes=8))
    root = out.root
    _, sign = clf.task_and_sign(x)
    t = (np.arange(400) + 0.5) / 400  # midpoint rule, 400 points
    grads = _reference_gradients(clf, root[None, :] + t[:, None] * (x - root)[None, :], sign)
    ref = (x - root) * grads.mean(axis=0)
    scale = abs(out.score)
    np.testing.assert_allclose(out.relevance, ref, atol=2e-4 * scale)


@pytest.mark.parametrize("kernel", ["exp_chi2", "rbf"])
@pytest.mark.parametrize("root", ["segment", "boundary"])
def test_integrated_gradient_conserves_within_quadrature_error(simplex_models, kernel, root):
    """The residual is the quadrature error of the path integral: below 1 % of |f(x)| with
    8 Gauss-Legendre nodes, and it vanishes as nodes are added: <= 1e-6 |f(x)| with 64
    (seen on exp-chi2, segment roots, at 8/16/32 nodes: up to 9e-4, 2e-5, 2e-9; boundary
    roots on the simplex have zero entries where support vectors have small ones, and
    ``4 s^2 / (s + t x)^2`` then has a layer of width ``s / x`` at t = 0: slower)."""
    X, models = simplex_models
    clf = models[kernel]
    for x in X[:6]:
        r8 = clf.relevance(None, x, Taylor(root=root, nodes=8))
        r64 = clf.relevance(None, x, Taylor(root=root, nodes=64))
        np.testing.assert_allclose(r8.root, r64.root)
        for r, tol in ((r8, 1e-2), (r64, 1e-6)):
            assert abs(r.residual) <= tol * abs(r.score), (r.residual, r.score)
            assert np.isclose(r.relevance.sum() + r.bias + r.residual, r.score, rtol=1e-12)
        assert abs(r64.residual) <= abs(r8.residual) + 1e-12 * abs(r8.score)
        assert abs(r64.bias) <= 1e-5 and r64.bias == r64.root_value


def test_mkl_mix_keeps_the_exact_difference_for_decomposable_channels():
    X, y = _simplex_data(V=8, seed=2)
    X = np.hstack([X, X[:, ::-1]]) / 2
    clf = KernelSVC(["hik", "rbf"], C=10.0, channel_sizes=[8, 8], random_state=0).fit(X, y)
    x = X[5]
    out = clf.relevance(None, x, Taylor(root="boundary", nodes=16))
    task, sign = clf.task_and_sign(x)
    s = clf.channel_slices_[0]
    T = [
        clf.kernel_weights_[task, 0]
        * clf.kernels_[0].dimension_terms(clf.support_vectors_[:, s], clf.dual_coef_[task], p[s])
        for p in (x, out.root)
    ]
    np.testing.assert_allclose(out.relevance[s], sign * (T[0] - T[1]), rtol=1e-12, atol=1e-15)
    assert abs(out.residual) <= 1e-8 * abs(out.score)
    assert out.root_distance <= out.root_info["segment_distance"] + 1e-12


def test_gauss_legendre_on_unit_interval_is_exact_for_polynomials():
    t, w = gauss_legendre(5)
    for k in range(10):  # exact up to degree 2n - 1 = 9
        assert np.isclose(w @ t**k, 1 / (k + 1), rtol=1e-13)


def test_differentiable_kernels_default_to_the_integrated_gradient(simplex_models):
    from bowlrp.classifier.relevance import default_rule

    rule = default_rule(simplex_models[1]["rbf"])
    assert isinstance(rule, Taylor) and rule.root == "segment" and rule.nodes == 16


def test_rule_options_are_validated_and_parsed():
    assert parse_rule("integrated=4").nodes == 4 and parse_rule("integrated").root == "segment"
    with pytest.raises(RuleError):
        Taylor(root="nearest")
    with pytest.raises(RuleError):
        Taylor(nodes=-1)
    with pytest.raises(RuleError):
        Taylor(domain="ball")
    with pytest.raises(RuleError):
        parse_rule("integrated=2.5")


@pytest.mark.parametrize("kernel", ["exp_chi2", "rbf"])
@pytest.mark.parametrize("keep", [1, 3])
def test_pruned_segment_search_finds_the_same_nearest_roots_with_fewer_evaluations(
    simplex_models, kernel, keep
):
    from bowlrp.classifier.roots import segment_roots

    X, models = simplex_models
    clf = models[kernel]
    rows = {"pruned": 0, "full": 0}
    found = 0
    for x in X[:12]:
        g0, _, _ = _g(clf, x)
        candidates = X[np.sign(g0(X)) < 0]
        if len(candidates) < 8:
            continue
        found += 1
        out = {}
        for mode, k in (("full", None), ("pruned", keep)):

            def g(P, mode=mode, g0=g0):
                rows[mode] += len(np.atleast_2d(P))
                return g0(P)

            out[mode] = segment_roots(g, x, candidates, 50, 1e-10, 60, keep=k)
        roots_full, dist_full, _ = out["full"]
        roots_pruned, dist_pruned, values = out["pruned"]
        n = min(keep, len(dist_full))
        np.testing.assert_allclose(dist_pruned[:n], dist_full[:n], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(roots_pruned[:n], roots_full[:n], rtol=1e-7, atol=1e-10)
        assert np.all(np.abs(values[:n]) <= 1e-10)
    assert found >= 6
    assert rows["pruned"] < 0.8 * rows["full"]
