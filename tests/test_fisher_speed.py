"""Plain-NumPy references of the Fisher-vector kernels made faster in issues 27 / 29 (no timing).

The kernels stream over (descriptor, component) pairs in a layout of their own
(:func:`~bowlrp.encoding.fisher._split_block`); the references below build the dense
per-descriptor terms ``gamma_k(l) t``, ``gamma_k(l) (t^2 - 1)``, ``gamma_k(l) - pi_k``
straight from the formulas and sum them with NumPy.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from bowlrp import FisherVector, GMMVocabulary
from bowlrp.encoding.fisher import (
    _cells_hit,
    _join_block,
    _region_distribute,
    _split_block,
    pyramid_regions,
    region_block_sums,
    sparse_posteriors,
)
from bowlrp.encoding.pooling import pyramid_cells
from bowlrp.rules import AbsZ, AlphaBeta, Epsilon

from .conftest import random_descriptors

PART_SETS = [("mu", "sigma"), ("pi", "mu", "sigma"), ("mu",), ("sigma",), ("pi",), ("pi", "sigma")]


def _problem(seed, n=160, K=6, D=5, threshold=1e-3):
    """Descriptors, a GMM, thresholded CSR posteriors and a 3-level pyramid's regions."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(scale=2.0, size=(K, D))
    var = rng.uniform(0.2, 2.0, size=(K, D))
    prior = rng.dirichlet(np.ones(K))
    data = rng.normal(scale=2.0, size=(n, D))
    gamma = sparse_posteriors(data, mu, var, prior, threshold)
    centers = rng.uniform(0, 40, size=(n, 2))
    cell_ids, n_cells = pyramid_cells(centers, (40, 40), [(1, 1), (2, 2), (3, 1)])
    region, region_cells = pyramid_regions(cell_ids, n_cells)
    return rng, data, mu, 1.0 / np.sqrt(var), prior, gamma, cell_ids, n_cells, region, region_cells


def _dense_terms(data, mu, inv_sigma, prior, gamma, parts):
    """Per-descriptor terms in a cell block's layout ``[pi K | mu K x D | sigma K x D]``, (N, block)."""
    G = gamma.toarray()
    t = (data[:, None, :] - mu[None]) * inv_sigma[None]  # (N, K, D)
    n = len(data)
    blocks = []
    if "pi" in parts:
        blocks.append(G - prior[None])
    if "mu" in parts:
        blocks.append((G[:, :, None] * t).reshape(n, -1))
    if "sigma" in parts:
        blocks.append((G[:, :, None] * (t * t - 1.0)).reshape(n, -1))
    return np.hstack(blocks)


def _sums(data, gamma, region, n_regions, mu, inv_sigma, prior, weight, parts, signed, n_partials):
    csr = (gamma.indptr, gamma.indices, gamma.data)
    return region_block_sums(
        data, csr, region, n_regions, mu, inv_sigma, prior, weight, parts, signed, n_partials
    )


@pytest.mark.parametrize("parts", PART_SETS)
@pytest.mark.parametrize("signed", [False, True])
def test_region_sums_equal_dense_sums(parts, signed):
    rng, data, mu, inv_sigma, prior, gamma, _, _, region, region_cells = _problem(1)
    weight = rng.choice([-1.0, 1.0], size=len(data))
    Z = weight[:, None] * _dense_terms(data, mu, inv_sigma, prior, gamma, parts)
    R = len(region_cells)
    onehot = np.zeros((R, len(data)))
    onehot[region, np.arange(len(data))] = 1.0
    if signed:
        expected = np.stack([onehot @ np.maximum(Z, 0.0), onehot @ np.minimum(Z, 0.0)])
    else:
        expected = (onehot @ Z)[None]
    for n_partials in (1, 4):
        got = _sums(data, gamma, region, R, mu, inv_sigma, prior, weight, parts, signed, n_partials)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
        if signed:
            assert (got[0] >= 0).all() and (got[1] <= 0).all()


@pytest.mark.parametrize("parts", PART_SETS)
@pytest.mark.parametrize("same", [True, False])
def test_region_distribute_equals_dense_rule(parts, same):
    rng, data, mu, inv_sigma, prior, gamma, _, _, region, region_cells = _problem(2)
    K, D = mu.shape
    Z = _dense_terms(data, mu, inv_sigma, prior, gamma, parts)  # (N, block)
    R = len(region_cells)
    A = rng.normal(size=(R, Z.shape[1]))
    B = A if same else rng.normal(size=(R, Z.shape[1]))
    # the rule's contributions per (descriptor, block dimension)
    contrib = np.maximum(Z, 0.0) * A[region] + np.minimum(Z, 0.0) * B[region]
    expected = contrib.sum(1)
    off = K if "pi" in parts else 0
    expected_dim = np.zeros((len(data), D))
    if "pi" in parts:
        expected_dim += contrib[:, :K].sum(1, keepdims=True) / D
    for _ in ("mu", "sigma")[: sum(p in parts for p in ("mu", "sigma"))]:
        expected_dim += contrib[:, off : off + K * D].reshape(len(data), K, D).sum(1)
        off += K * D
    A_pi, A_ms = _split_block(A, K, D, parts)
    B_pi, B_ms = _split_block(B, K, D, parts)
    for track in (False, True):
        out = np.full(len(data), 0.25)  # the kernel adds to what is there
        per_dim = np.full((len(data), D), 0.5) if track else np.zeros((0, 0))
        args = (data, gamma.indptr, gamma.indices, gamma.data, region, mu, inv_sigma, prior)
        flags = ("pi" in parts, "mu" in parts, "sigma" in parts)
        _region_distribute(*args, *flags, A_pi, A_ms, B_pi, B_ms, same, out, per_dim)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(out - 0.25, expected, rtol=1e-11, atol=1e-13 * scale)
        if track:
            np.testing.assert_allclose(per_dim - 0.5, expected_dim, rtol=1e-11, atol=1e-13 * scale)
            np.testing.assert_allclose((per_dim - 0.5).sum(1), out - 0.25, rtol=1e-11, atol=1e-13 * scale)


@pytest.mark.parametrize("parts", PART_SETS)
def test_split_and_join_block_are_inverse(parts):
    rng = np.random.default_rng(3)
    K, D = 4, 3
    block = sum(K if p == "pi" else K * D for p in parts)
    X = rng.normal(size=(2, 5, block))
    pi, ms = _split_block(X, K, D, parts)
    assert pi.shape == (2, 5, K if "pi" in parts else 0)
    assert ms.shape == (2, 5, K, D * sum(p in parts for p in ("mu", "sigma")))
    np.testing.assert_array_equal(_join_block(pi, ms, parts), X)
    if parts == ("pi", "mu", "sigma"):  # component k's mu and sigma side by side
        np.testing.assert_array_equal(ms[0, 0, 1, :D], X[0, 0, K + D : K + 2 * D])
        np.testing.assert_array_equal(ms[0, 0, 1, D:], X[0, 0, K + K * D + D : K + K * D + 2 * D])


def test_cells_hit_equals_dense_occupancy():
    _, _, mu, _, _, gamma, cell_ids, n_cells, _, _ = _problem(4, threshold=0.2)
    K = mu.shape[0]
    expected = np.zeros((n_cells, K), dtype=bool)
    G = gamma.toarray() > 0
    for lev in range(cell_ids.shape[1]):
        for c in range(n_cells):
            expected[c] |= G[cell_ids[:, lev] == c].any(0)
    got = _cells_hit(gamma.indptr, gamma.indices, cell_ids, n_cells, K)
    np.testing.assert_array_equal(got, expected)
    assert not expected.all()  # the threshold leaves (cell, component) pairs unreached
    empty = sp.csr_matrix((len(cell_ids), K))
    assert not _cells_hit(empty.indptr, empty.indices, cell_ids, n_cells, K).any()


def test_project_float32_equals_float64_centring():
    rng = np.random.default_rng(5)
    d = random_descriptors(rng, n=300, dim=10)
    voc = GMMVocabulary(3, pca_components=4, random_state=0).fit([d])
    pca = voc.pca_
    expected = (d.data.astype(np.float64) - pca.mean_) @ pca.components_.T
    np.testing.assert_array_equal(voc.project(d.data), expected)
    np.testing.assert_array_equal(voc.project(d.data.astype(np.float64)), expected)
    plain = GMMVocabulary(3, random_state=0).fit([d])
    got = plain.project(d.data)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, d.data.astype(np.float64))
    with pytest.raises(ValueError, match="10 columns"):
        voc.project(d.data[:, :5])


@pytest.mark.parametrize("parts", PART_SETS)
def test_fisher_relevance_conserves_in_float64(parts):
    rng = np.random.default_rng(6)
    d = random_descriptors(rng, n=400, dim=6)
    enc = FisherVector(
        GMMVocabulary(5, pca_components=4, random_state=0),
        parts=parts,
        pyramid=((1, 1), (2, 2), (3, 1)),
        normalization=None,
        posterior_threshold=1e-3,
    ).fit([d])
    _, trace = enc.encode_one(d)
    R = rng.normal(size=enc.n_features_out_)
    for rule in (Epsilon(0.0), AlphaBeta(1, 0), AlphaBeta(2, 1), AbsZ()):
        got = enc.relevance(R, trace, rule)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got.sum(), R.sum(), rtol=1e-9)
        total, per_dim = enc.relevance(R, trace, rule, per_dimension=True)
        np.testing.assert_allclose(per_dim.sum(1), total, rtol=1e-9, atol=1e-12 * np.abs(total).max())
        np.testing.assert_allclose(total, got, rtol=1e-12, atol=1e-15 * np.abs(got).max())
