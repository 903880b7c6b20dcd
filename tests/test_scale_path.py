"""The memory-lean path: float32 features, blocked Gram matrices, per-task rows, compact models."""

import numpy as np
import pytest

from bowlrp._utils import mapped as mapped_mod
from bowlrp.classifier import kernels
from bowlrp.classifier.kernels import HistogramIntersection, Linear, blocked_inner
from bowlrp.classifier.svm import KernelSVC


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(kernels, "_BLOCK_BYTES", 8 * 30 * 7)  # blocks of 7 columns for 30 rows


def test_blocked_inner_equals_plain_product(small_blocks):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 53)).astype(np.float32)
    Y = rng.normal(size=(10, 53)).astype(np.float32)
    ref = X.astype(np.float64) @ Y.astype(np.float64).T
    np.testing.assert_allclose(blocked_inner(X, Y), ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(
        blocked_inner(X, X), X.astype(np.float64) @ X.astype(np.float64).T, rtol=1e-13, atol=1e-13
    )
    P = np.abs(X)
    ref_sqrt = np.sqrt(P.astype(np.float64)) @ np.sqrt(P.astype(np.float64)).T
    np.testing.assert_allclose(blocked_inner(P, P, np.sqrt), ref_sqrt, rtol=1e-13)


@pytest.mark.parametrize(
    "kernel",
    [
        Linear(),
        HistogramIntersection(),
        kernels.Hellinger(),
        kernels.RBF(sigma=3.0),
        kernels.ExponentialChi2(sigma=0.5),
    ],
)
def test_float32_gram_equals_float64_gram_of_the_same_values(kernel, small_blocks):
    rng = np.random.default_rng(1)
    X = rng.random((12, 40)).astype(np.float32)
    Y = rng.random((5, 40)).astype(np.float32)
    kernel.fit(X.astype(np.float64))
    np.testing.assert_allclose(
        kernel.gram(X, Y), kernel.gram(X.astype(np.float64), Y.astype(np.float64)), rtol=1e-10, atol=1e-12
    )


def _data(seed=0, n=40, d=30):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    Y = np.column_stack([X[:, 0] + 0.1 * rng.normal(size=n) > 0.5, X[:, 1] > 0.4, X[:, 2] > 0.6])
    return X, Y.astype(int)


def test_task_mask_equals_separate_fits():
    X, Y = _data()
    mask = np.ones_like(Y, dtype=bool)
    mask[[1, 5, 7], 0] = False
    mask[[2, 3], 2] = False
    joint = KernelSVC(kernel="hik", C=1.0, random_state=0).fit(X, Y, task_mask=mask)
    F = joint.decision_function(X)
    for t in range(3):
        rows = mask[:, t]
        alone = KernelSVC(kernel="hik", C=1.0, random_state=0).fit(X[rows], Y[rows, t])
        np.testing.assert_allclose(F[:, t], alone.decision_function(X), rtol=1e-7, atol=1e-8)


def test_candidate_decisions_equal_decision_function():
    X, Y = _data(1)
    clf = KernelSVC(kernel="hik", C=1.0, n_reference=10, random_state=0).fit(X, Y)
    points = np.vstack([clf.reference_X_, clf.support_vectors_])
    np.testing.assert_allclose(
        clf.candidate_decisions_, clf.decision_function(points), rtol=1e-10, atol=1e-12
    )


def test_float32_features_fit_like_float64():
    X, Y = _data(2)
    a = KernelSVC(kernel="linear", random_state=0).fit(X.astype(np.float32), Y)
    b = KernelSVC(kernel="linear", random_state=0).fit(X.astype(np.float32).astype(np.float64), Y)
    assert a.support_vectors_.dtype == np.float32
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(X), rtol=1e-8, atol=1e-9)


def test_compress_linear_keeps_decisions_and_relevance():
    X, Y = _data(3)
    clf = KernelSVC(kernel="linear", C=1.0, random_state=0).fit(X.astype(np.float32), Y)
    before = clf.decision_function(X)
    rel_before = clf.relevance(None, X[0], target=1).relevance
    clf.compress_linear()
    assert clf.support_vectors_.shape == (3, X.shape[1])
    np.testing.assert_allclose(clf.decision_function(X), before, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        clf.relevance(None, X[0], target=1).relevance, rel_before, rtol=1e-9, atol=1e-12
    )
    with pytest.raises(ValueError, match="linear kernels"):
        KernelSVC(kernel="hik").fit(X, Y).compress_linear()


def test_binary_task_decisions_equal_its_column():
    X, Y = _data(4)
    clf = KernelSVC(kernel="hik", C=1.0, random_state=0).fit(X, Y)
    one = clf.binary_task(1, "dog", "(not dog)")
    np.testing.assert_allclose(one.decision_function(X), clf.decision_function(X)[:, 1], rtol=1e-12)
    assert list(one.classes_) == ["(not dog)", "dog"]
    assert set(one.predict(X)) <= {"dog", "(not dog)"}
    assert one.task_and_sign(X[0], "dog") == (0, 1.0)


@pytest.mark.parametrize("mode", [True, "auto"])
def test_fit_compressed_equals_fit_then_compress_bit_for_bit(tmp_path, mode):
    """``fit(compress_linear=...)`` builds the weight vectors from X (here a memory-mapped
    file, as the VOC experiment's features) and gives what ``fit`` + ``compress_linear`` give."""
    X, Y = _data(5, n=70, d=45)
    X32 = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=X.shape)
    X32[:] = X
    X32.flush()
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    mask = np.ones_like(Y, dtype=bool)
    mask[[3, 9], 1] = False
    a = KernelSVC(kernel="linear", C=1.0, n_reference=20, random_state=0)
    a.fit(mapped, Y, task_mask=mask, compress_linear=mode)
    b = KernelSVC(kernel="linear", C=1.0, n_reference=20, random_state=0).fit(
        np.array(mapped), Y, task_mask=mask
    )
    assert b.support_vectors_.shape[0] > 3  # the uncompressed fit keeps its support vectors
    b.compress_linear()
    for name in (
        "support_vectors_",
        "dual_coef_",
        "support_",
        "intercept_",
        "reference_X_",
        "candidate_decisions_",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.support_vectors_.shape == (3, X.shape[1]) and a.support_vectors_.dtype == np.float64
    # the weight vectors are the dual expansion over the training rows (plain NumPy)
    full = KernelSVC(kernel="linear", C=1.0, n_reference=20, random_state=0).fit(
        X.astype(np.float32), Y, task_mask=mask
    )
    W = full.dual_coef_ @ full.support_vectors_.astype(np.float64)
    np.testing.assert_allclose(a.support_vectors_, W, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.decision_function(X), full.decision_function(X), rtol=1e-9, atol=1e-10)


def test_fit_compress_linear_refuses_other_kernels_and_auto_keeps_them():
    X, Y = _data(6)
    with pytest.raises(ValueError, match="linear kernels"):
        KernelSVC(kernel="hik").fit(X, Y, compress_linear=True)
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        KernelSVC(kernel="linear").fit(X, Y, compress_linear="yes")
    hik = KernelSVC(kernel="hik", random_state=0).fit(X, Y, compress_linear="auto")
    plain = KernelSVC(kernel="hik", random_state=0).fit(X, Y)
    np.testing.assert_array_equal(hik.support_vectors_, plain.support_vectors_)
    np.testing.assert_array_equal(hik.dual_coef_, plain.dual_coef_)


def test_fit_refuses_non_finite_features_in_any_row_block(small_blocks, monkeypatch):
    monkeypatch.setattr(mapped_mod, "BLOCK_BYTES", 8 * 30 * 3)
    X, Y = _data(7)
    X[-1, 4] = np.nan  # in the last row block
    with pytest.raises(ValueError, match="NaN or infinity"):
        KernelSVC(kernel="linear").fit(X, Y)
