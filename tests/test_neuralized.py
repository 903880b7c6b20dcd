"""The neuralised kernel SVM as a step-1 rule (issue 27, docs/neuralized.md).

The references below build the network the rule stands for literally: every
detection unit ``h_mn`` between a unit of the positive and one of the negative
pool, a soft-min over ``n`` for each ``m``, then a soft-max over ``m``, and the
relevance carried back pair by pair. The rule never forms the pairs (their
pooling weights factorise); these tests check that it gets the same numbers.
"""

import numpy as np
import pytest

from bowlrp.classifier.neuralized import logarithmic_mean, neuralized_value
from bowlrp.classifier.relevance import classifier_relevance
from bowlrp.classifier.svm import KernelSVC
from bowlrp.descriptors.sift import DenseSIFT
from bowlrp.encoding.words import RankMapping
from bowlrp.exceptions import RuleError
from bowlrp.pipeline import Pipeline
from bowlrp.rules import Decomposition, Neuralized, parse_rule

VARIANTS = ("midpoint", "gi", "hybrid")


def _histograms(n, V, seed):
    return np.random.default_rng(seed).dirichlet(np.full(V, 0.7), size=n)


@pytest.fixture(scope="module")
def binary_models():
    X = _histograms(200, 8, 0)
    y = (X[:, 0] + X[:, 1] - X[:, 2] > 0.15).astype(int)
    held_out = _histograms(120, 8, 1)
    return {k: KernelSVC(k, C=10.0, random_state=0).fit(X, y) for k in ("exp_chi2", "rbf")}, held_out


@pytest.fixture(scope="module")
def multiclass_model():
    X = _histograms(210, 6, 2)
    y = np.argmax(X[:, :3] + 0.1 * X[:, 3:], axis=1)
    return KernelSVC("rbf", C=10.0, random_state=0).fit(X, y), _histograms(60, 6, 3)


@pytest.fixture(scope="module")
def mkl_model():
    X = _histograms(200, 10, 4)
    X = np.hstack([X[:, :6] / X[:, :6].sum(1, keepdims=True), X[:, 6:] / X[:, 6:].sum(1, keepdims=True)])
    y = (X[:, 0] - X[:, 7] + 0.5 * X[:, 8] > 0.0).astype(int)
    clf = KernelSVC(["exp_chi2", "rbf"], channel_sizes=[6, 4], mkl_norm=2, C=10.0, random_state=0).fit(X, y)
    H = _histograms(60, 10, 5)
    H = np.hstack([H[:, :6] / H[:, :6].sum(1, keepdims=True), H[:, 6:] / H[:, 6:].sum(1, keepdims=True)])
    return clf, H


# -- the plain NumPy reference: the network, pair by pair ----------------------------------------


def _reference_terms(kernel, s, x):
    """Distance terms ``c_d`` and their derivatives, one dimension at a time."""
    c, dc = np.zeros(x.size), np.zeros(x.size)
    for d in range(x.size):
        if kernel.name == "rbf":
            c[d] = (x[d] - s[d]) ** 2 / kernel.sigma_**2
            dc[d] = 2 * (x[d] - s[d]) / kernel.sigma_**2
        else:
            den = x[d] + s[d]
            c[d] = kernel.sigma_ * (x[d] - s[d]) ** 2 / den if den > 0 else 0.0
            dc[d] = kernel.sigma_ * (1 - 4 * s[d] ** 2 / den**2) if den > 0 else kernel.sigma_
    return c, dc


def _reference_units(clf, x, task, sign):
    """Every unit (log activation, distance terms over all V, derivatives) per pool."""
    pools = {1: [], -1: []}
    for u, kernel in enumerate(clf.kernels_):
        s = clf.channel_slices_[u]
        for i, a in enumerate(sign * clf.dual_coef_[task]):
            alpha = clf.kernel_weights_[task, u] * abs(a)
            if alpha == 0:
                continue
            c, dc = np.zeros(x.size), np.zeros(x.size)
            c[s], dc[s] = _reference_terms(kernel, clf.support_vectors_[i, s], x[s])
            pools[int(np.sign(a))].append((np.log(alpha) - c.sum(), c, dc))
    b = sign * clf.intercept_[task]
    if b != 0:
        pools[int(np.sign(b))].append((np.log(abs(b)), np.zeros(x.size), np.zeros(x.size)))
    return pools[1], pools[-1]


def reference(clf, x, task, sign, variant, eta=0.1):
    """``(g, R (V,), f+ , f-)`` of the dense network: all pairs, nested soft-min / soft-max."""
    pos, neg = _reference_units(clf, x, task, sign)
    H = np.array([[A - B for B, _, _ in neg] for A, _, _ in pos])  # detection units h_mn
    soft_min = np.array([-np.log(np.sum(np.exp(-row))) for row in H])  # per m, over n
    g = np.log(np.sum(np.exp(soft_min)))  # soft-max over m
    p = np.exp(soft_min - g)
    mid, grad = np.zeros(x.size), np.zeros(x.size)
    for m, (_, c_m, dc_m) in enumerate(pos):
        q = np.exp(-H[m]) / np.sum(np.exp(-H[m]))  # the soft-min's weights for this m
        for n, (_, c_n, dc_n) in enumerate(neg):
            mid += p[m] * q[n] * (c_n - c_m)  # h_mn split per dimension (bias apart)
            grad += p[m] * q[n] * (dc_n - dc_m)  # chain rule through both poolings
    R = {"midpoint": mid, "gi": x * grad, "hybrid": (1 - eta) * x * grad + eta * mid}[variant]
    f_pos = sum(np.exp(A) for A, _, _ in pos)
    f_neg = sum(np.exp(B) for B, _, _ in neg)
    return g, R, f_pos, f_neg


def _check_against_reference(clf, x, task, sign, variant):
    g, R_ref, f_pos, f_neg = reference(clf, x, task, sign, variant)
    out = classifier_relevance(clf, x, task, sign, Neuralized(variant))
    f = sign * clf.decision_function(x[None])
    f = float(f[0, task] if f.ndim == 2 else f[0])
    assert np.sign(g) == np.sign(f)
    np.testing.assert_allclose(f_pos - f_neg, f, rtol=1e-10, atol=1e-12)
    scale = (f_pos - f_neg) / g
    np.testing.assert_allclose(out.root_info["neuralized_value"], g, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(out.relevance, scale * R_ref, rtol=1e-9, atol=1e-12 * np.abs(f))
    np.testing.assert_allclose(out.bias, scale * (g - R_ref.sum()), rtol=1e-9, atol=1e-12)
    # conservation in float64: sum R + bias + residual = f, the residual is rounding only
    assert out.score == pytest.approx(f, rel=1e-12, abs=1e-14)
    assert abs(out.relevance.sum() + out.bias + out.residual - out.score) <= 1e-14 * max(1, abs(f))
    assert abs(out.residual) <= 1e-11 * max(abs(f), np.abs(out.relevance).sum())


# -- the neuralised function keeps the decision -----------------------------------------------------


def test_sign_equals_svm_decision_on_every_held_out_sample(binary_models, multiclass_model, mkl_model):
    models, held_out = binary_models
    cases = [(clf, held_out, 0) for clf in models.values()]
    clf3, H3 = multiclass_model
    cases += [(clf3, H3, t) for t in range(clf3.n_tasks_)]
    cases.append((mkl_model[0], mkl_model[1], 0))
    for clf, X, task in cases:
        F = clf.decision_function(X)
        f = F[:, task] if F.ndim == 2 else F
        assert np.all(f != 0)
        g = neuralized_value(clf, X, task)
        assert np.array_equal(np.sign(g), np.sign(f)), clf.kernel
        assert np.array_equal(np.sign(neuralized_value(clf, X[:10], task, -1.0)), -np.sign(f[:10]))
        assert len(set(np.sign(f))) == 2  # both signs occur: the test can fail


def test_value_stays_finite_where_every_kernel_value_underflows(binary_models):
    """``g`` is computed in log space: far from every support vector (here an RBF so narrow that
    all kernel values are 0 in float64) the sign still comes from the units, not from 0 - 0."""
    models, held_out = binary_models
    clf = models["rbf"]
    narrow = clf.kernels_[0].sigma_
    try:
        clf.kernels_[0].sigma_ = 1e-3
        x = held_out[:3]
        assert np.all(clf.kernels_[0].gram(x, clf.support_vectors_) == 0)
        g = neuralized_value(clf, x)
        assert np.all(np.isfinite(g))
        for row, value in zip(x, g):  # the nearest unit (in log activation) decides
            pos, neg = _reference_units(clf, row, 0, 1.0)
            assert np.sign(value) == np.sign(max(A for A, _, _ in pos) - max(B for B, _, _ in neg))
    finally:
        clf.kernels_[0].sigma_ = narrow


# -- relevance = the dense pair-by-pair network -------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kernel", ["exp_chi2", "rbf"])
def test_relevance_equals_dense_pair_reference(binary_models, kernel, variant):
    models, held_out = binary_models
    clf = models[kernel]
    for x in held_out[:3]:
        task, sign = clf.task_and_sign(x)
        _check_against_reference(clf, x, task, sign, variant)
        _check_against_reference(clf, x, task, -sign, variant)  # the other class


def test_multiclass_one_vs_rest_every_task(multiclass_model):
    clf, H = multiclass_model
    for x in H[:2]:
        for task in range(clf.n_tasks_):
            _check_against_reference(clf, x, task, 1.0, "midpoint")
        _check_against_reference(clf, x, int(np.argmax(clf.decision_function(x[None])[0])), 1.0, "hybrid")


@pytest.mark.parametrize("variant", VARIANTS)
def test_mkl_mix_of_exp_chi2_and_rbf(mkl_model, variant):
    clf, H = mkl_model
    assert np.all(clf.kernel_weights_ > 0)
    for x in H[:2]:
        task, sign = clf.task_and_sign(x)
        _check_against_reference(clf, x, task, sign, variant)


def test_reference_gradient_is_the_gradient_of_g(binary_models):
    """The dense reference's chain rule, against central differences of ``g`` itself."""
    models, held_out = binary_models
    clf, x = models["exp_chi2"], held_out[0]
    _, R, _, _ = reference(clf, x, 0, 1.0, "gi")
    E = 1e-6 * np.eye(x.size)
    numeric = (neuralized_value(clf, x + E) - neuralized_value(clf, x - E)) / 2e-6
    np.testing.assert_allclose(R, x * numeric, rtol=1e-5, atol=1e-8)


def test_spread_bias_and_the_logarithmic_mean(binary_models):
    models, held_out = binary_models
    clf, x = models["rbf"], held_out[4]
    sep = classifier_relevance(clf, x, 0, 1.0, Neuralized())
    spread = classifier_relevance(clf, x, 0, 1.0, Neuralized(bias="spread"))
    assert spread.bias == 0.0
    np.testing.assert_allclose(spread.relevance, sep.relevance + sep.bias / x.size, rtol=1e-12, atol=1e-15)
    assert spread.relevance.sum() == pytest.approx(spread.score, rel=1e-12)
    assert logarithmic_mean(np.log(3.0), np.log(3.0)) == pytest.approx(3.0)
    assert logarithmic_mean(np.log(5.0), np.log(2.0)) == pytest.approx(3.0 / np.log(2.5), rel=1e-14)
    assert logarithmic_mean(-700.0, -701.0) > 0 and np.isfinite(logarithmic_mean(300.0, -300.0))


# -- the rule: parsing, refusals ------------------------------------------------------------------


def test_rule_parses_and_refuses(binary_models):
    assert parse_rule("neuralized") == Neuralized()
    assert parse_rule("neuralized-gi") == Neuralized("gi")
    assert parse_rule("neuralised=hybrid,0.25") == Neuralized("hybrid", 0.25)
    assert parse_rule('Neuralized(variant="hybrid", bias="spread")') == Neuralized("hybrid", bias="spread")
    for bad in ({"variant": "lrp"}, {"eta": 1.5}, {"bias": "nowhere"}):
        with pytest.raises(RuleError):
            Neuralized(**bad)
    X = _histograms(60, 5, 6)
    hik = KernelSVC("hik", random_state=0).fit(X, (X[:, 0] > 0.2).astype(int))
    with pytest.raises(RuleError, match="Neuralized explains RBF and exponential chi2"):
        classifier_relevance(hik, X[0], 0, 1.0, Neuralized())
    # the existing rules are untouched by the new branch
    d = classifier_relevance(hik, X[0], 0, 1.0, Decomposition())
    assert d.relevance.sum() + d.bias == pytest.approx(float(hik.decision_function(X[:1])[0]), rel=1e-12)


# -- end to end: relevance flows on through the step-2/3 rules -----------------------------------


def test_pipeline_explain_end_to_end(stripes_blobs):
    train, y, test, _ = stripes_blobs
    pipe = Pipeline(
        [("sift", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(24, random_state=0))],
        KernelSVC("exp_chi2"),
        random_state=0,
    ).fit(train[::2], y[::2])
    images = [test[0], test[-1]]
    F = pipe.decision_function(images)
    for f, e in zip(F, pipe.explain(images, rules=parse_rule("neuralized"))):
        sign = 1.0 if f > 0 else -1.0
        assert e.score == pytest.approx(sign * f, rel=1e-10)
        assert e.rules["classifier"] == Neuralized()
        total = e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual
        assert total == pytest.approx(e.score, rel=1e-9, abs=1e-12)
        assert abs(e.residual) <= 1e-10 * max(abs(e.score), np.abs(e.heatmap).sum())
        assert np.count_nonzero(e.heatmap) > 0.5 * e.heatmap.size
