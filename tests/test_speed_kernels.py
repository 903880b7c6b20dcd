"""Plain-NumPy references for the kernels made faster in issue 18 (no timing here)."""

import numpy as np
import pytest
from scipy.special import softmax

from bowlrp import FisherVector, GMMVocabulary
from bowlrp.encoding.fisher import pyramid_regions, sparse_posteriors
from bowlrp.encoding.pooling import pyramid_cells
from bowlrp.encoding.words import nearest_words
from bowlrp.rules import AbsZ, AlphaBeta, Epsilon

from .conftest import random_descriptors
from .reference import dense_z, reference_relevance


def _nearest_reference(data, centers, n):
    d2 = np.maximum(((data[:, None, :] - centers[None]) ** 2).sum(-1), 0.0)
    order = np.argsort(d2, axis=1, kind="stable")[:, :n]  # ties: lower index first
    return order, np.take_along_axis(d2, order, axis=1)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_nearest_words_equal_sorted_distances(n):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(400, 6))
    centers = rng.normal(size=(7, 6))
    data[:20] = centers[rng.integers(0, 7, 20)]  # distance 0 (clipped)
    data[20:40] = 0.5 * (centers[0] + centers[1])  # equidistant to two words
    idx, dist = nearest_words(data, centers, n)
    ref_idx, ref_dist = _nearest_reference(data, centers, n)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10, atol=1e-10)
    ties = np.isclose(ref_dist[:, :-1], ref_dist[:, 1:], rtol=1e-12, atol=1e-12).any(axis=1)
    np.testing.assert_array_equal(idx[~ties], ref_idx[~ties])
    assert np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.parametrize("threshold", [0.0, 1e-6, 1e-30, 0.05])
def test_sparse_posteriors_equal_dense_softmax(threshold):
    rng = np.random.default_rng(1)
    K, D = 9, 5
    means = rng.normal(scale=3, size=(K, D))
    variances = rng.uniform(0.05, 2.0, size=(K, D))
    weights = rng.dirichlet(np.ones(K))
    data = rng.normal(scale=3, size=(300, D))
    loglik = (
        np.log(weights)
        - 0.5 * np.log(2 * np.pi * variances).sum(1)
        - 0.5 * (((data[:, None] - means[None]) ** 2) / variances[None]).sum(-1)
    )
    dense = softmax(loglik, axis=1)
    dense[dense < threshold] = 0.0
    got = sparse_posteriors(data, means, variances, weights, threshold)
    np.testing.assert_allclose(got.toarray(), dense, rtol=1e-9, atol=1e-300)
    if threshold > 0:
        assert got.nnz == np.count_nonzero(dense)
    else:
        assert got.nnz == dense.size


def test_pyramid_regions_partition_every_cell():
    rng = np.random.default_rng(2)
    centers = rng.uniform(0, 50, size=(500, 2))
    cell_ids, n_cells = pyramid_cells(centers, (50, 60), [(1, 1), (2, 2), (3, 1)])
    region, region_cells = pyramid_regions(cell_ids, n_cells)
    np.testing.assert_array_equal(region_cells[region], cell_ids)
    assert len(region_cells) == len(np.unique(cell_ids, axis=0))


@pytest.mark.parametrize("parts", [("mu", "sigma"), ("pi", "mu", "sigma")])
def test_fisher_delta_and_relevance_match_dense_reference(parts):
    rng = np.random.default_rng(3)
    d = random_descriptors(rng, n=250, dim=6)
    enc = FisherVector(
        GMMVocabulary(5, pca_components=4, random_state=0),
        parts=parts,
        pyramid=((1, 1), (2, 2), (3, 1)),
        normalization=None,
    ).fit([d])
    _, trace = enc.encode_one(d)
    rows = rng.choice(len(d), 40, replace=False)
    new = enc.compute_codes(rng.normal(size=(40, d.n_features)).astype(np.float32))
    old = enc.take_codes(trace.codes, rows)
    cells = trace.cell_ids[rows]
    expected = enc.pooled_sums(new, cells, trace.cell_counts) - enc.pooled_sums(old, cells, trace.cell_counts)
    np.testing.assert_allclose(
        enc.pooled_delta(old, new, cells, trace.cell_counts), expected, rtol=1e-9, atol=1e-12
    )
    Z, _ = dense_z(enc, d, trace)  # (N, V) z_ld, the slow reference
    R = rng.normal(size=enc.n_features_out_)
    for rule in (Epsilon(0.0), AlphaBeta(2, 1), AbsZ()):
        ref = reference_relevance(Z, R, rule)
        got = enc.relevance(R, trace, rule)
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())
        np.testing.assert_allclose(got.sum(), R.sum(), rtol=1e-10)


def _normalised_score_reference(w, z, steps, n_cells, power, exponent):
    """w . normalize(z ** exponent) with the plain NumPy normalisation."""
    from bowlrp.encoding.pooling import normalize

    x = np.sign(z) * np.abs(z) ** exponent
    return float(w @ normalize(x, steps, n_cells, power))


@pytest.mark.parametrize(
    "steps,exponent",
    [
        (("cell-l2", "power", "l2"), 1.0),
        (("power", "l2"), 1.0),
        (("l1",), 1.0),
        (("l1",), 1 / 2.4),
        (("l2", "power", "l1", "cell-l2"), 1.0),
        ((), 1.0),
        (("power", "power", "l2"), 1 / 3),
    ],
)
def test_linear_score_follows_changes_like_full_normalisation(steps, exponent):
    from bowlrp.encoding.pooling import LinearScore

    rng = np.random.default_rng(4)
    n_cells, block = 3, 200
    z = rng.normal(size=n_cells * block)
    if exponent != 1.0:
        z = np.abs(z)  # p-means statistics are non-negative
    z[rng.random(z.size) < 0.3] = 0.0
    w = rng.normal(size=z.size)
    score = LinearScore(w, z, steps, n_cells, 0.5, exponent)
    assert score.size == 50
    ref = _normalised_score_reference(w, z, steps, n_cells, 0.5, exponent)
    assert np.isclose(score.value(), ref, rtol=1e-12, atol=1e-14)
    for i in range(5):  # changes of a few dims, one whole cell emptied
        new = z.copy()
        hit = rng.choice(z.size, 30, replace=False)
        new[hit] = np.abs(rng.normal(size=30)) if exponent != 1.0 else rng.normal(size=30)
        new[rng.choice(z.size, 10)] = 0.0
        if i == 3:
            new[block : 2 * block] = 0.0
        chunks, rows = score.changed(z, new)
        assert set(chunks) == set(np.flatnonzero((new != z).reshape(-1, 50).any(1)))
        ref_new = _normalised_score_reference(w, new, steps, n_cells, 0.5, exponent)
        assert np.isclose(score.value(chunks, rows), ref_new, rtol=1e-12, atol=1e-14)
        assert np.isclose(score.value(), ref, rtol=1e-12, atol=1e-14)  # state unchanged
        score.commit(chunks, rows)
        z, ref = new, ref_new
        assert np.isclose(score.value(), ref, rtol=1e-12, atol=1e-14)


def test_linear_weights_give_the_decision_function():
    from bowlrp.classifier.svm import KernelSVC

    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 12))
    y = np.repeat([0, 1, 2], [14, 13, 13])
    X[y == 1, :3] += 2.0
    clf = KernelSVC("linear", channel_sizes=[5, 7], mkl_norm=2).fit(X, y)
    F = clf.decision_function(X)
    for task in range(3):
        w, b = clf.linear_weights(task)
        reference = b + sum(
            clf.kernel_weights_[task, u] * (clf.dual_coef_[task] @ (clf.support_vectors_[:, s] @ X[:, s].T))
            for u, s in enumerate(clf.channel_slices_)
        )
        np.testing.assert_allclose(X @ w + b, reference, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(X @ w + b, F[:, task], rtol=1e-12, atol=1e-12)
    assert KernelSVC("hik").fit(np.abs(X), y).linear_weights(0) is None


@pytest.mark.parametrize("rows", [[0], [9], [3, 4, 5], [7, 0, 2, 9, 1], list(range(10)), []])
def test_replace_rows_equals_dense_replacement(rows):
    import scipy.sparse as sp

    from bowlrp.encoding.fisher import replace_rows

    rng = np.random.default_rng(6)
    dense = rng.random((10, 7)) * (rng.random((10, 7)) < 0.4)
    dense[6] = 0.0  # an empty row
    new = rng.random((len(rows), 7)) * (rng.random((len(rows), 7)) < 0.5)
    if len(rows) > 1:
        new[1] = 0.0
    expected = dense.copy()
    expected[rows] = new
    got = replace_rows(sp.csr_matrix(dense), rows, sp.csr_matrix(new.reshape(len(rows), 7)))
    assert got.has_sorted_indices or got.nnz == 0
    got.check_format(full_check=True)
    np.testing.assert_array_equal(got.toarray(), expected)
    assert got.nnz == np.count_nonzero(expected)


def test_boxes_meeting_a_block_equal_the_numpy_test():
    from bowlrp.evaluation.incremental import _meeting

    rng = np.random.default_rng(7)
    cy, cx = rng.uniform(0, 60, 500), rng.uniform(0, 80, 500)
    cy[:50] = np.round(cy[:50])  # boxes touching the block's edges
    reach = rng.choice([4.0, 7.5, 12.0], 500)
    for r0, r1, c0, c1 in [(0, 9, 0, 9), (27, 36, 45, 54), (51, 60, 71, 80), (30, 31, 40, 41)]:
        expected = np.flatnonzero(
            (cy + reach >= r0) & (cy - reach <= r1 - 1) & (cx + reach >= c0) & (cx - reach <= c1 - 1)
        )
        got = _meeting(
            cy - reach, cy + reach, cx - reach, cx + reach, float(r0), float(r1 - 1), float(c0), float(c1 - 1)
        )
        np.testing.assert_array_equal(got, expected)
