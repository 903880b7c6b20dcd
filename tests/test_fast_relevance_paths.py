"""Fast paths of issue 27 against plain-NumPy references, in float64: the PCA backward pass
of the vocabularies (row blocks), NEON in row blocks with the projection done per block, and
the fused coefficient pass of the separable pixel projection (its totals and scatter kernels
are compared with the dense-table references in tests/test_pixel_rules.py)."""

import numpy as np
import pytest

from bowlrp import KMeansVocabulary
from bowlrp.descriptors import contribution_separable as separable
from bowlrp.rules import Neon

from .conftest import random_descriptors
from .test_neon import _fitted, reference_neon, reference_slots


def reference_pca_backward(data, mean, W, R, epsilon):
    """Plain loops: ``R_j = sum_i W_ij (l_j - m_j) / (y_i + eps sign y_i) R_i``; a ``y_i = 0``
    row's relevance spread evenly over the D inputs."""
    N, D = data.shape
    out = np.zeros((N, D))
    for l in range(N):
        c = data[l].astype(np.float64) - mean
        for i in range(W.shape[0]):
            y = float(W[i] @ c)
            denom = y + epsilon * (1.0 if y >= 0 else -1.0)
            if denom == 0:
                out[l] += R[l, i] / D
            else:
                out[l] += W[i] * c * R[l, i] / denom
    return out


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_pca_backward_equals_reference_and_conserves(epsilon, monkeypatch):
    """Several row blocks (block size lowered to 7), a descriptor on the PCA mean (y = 0: its
    relevance spread evenly), conservation per descriptor for eps = 0."""
    monkeypatch.setattr("bowlrp.encoding.vocabulary._PCA_BLOCK", 7)
    rng = np.random.default_rng(27)
    d = random_descriptors(rng, n=40, dim=9)
    voc = KMeansVocabulary(3, pca_components=4, algorithm="full", random_state=0).fit(d.data)
    voc.pca_.mean_ = voc.pca_.mean_.astype(np.float32).astype(np.float64)
    d.data[5] = voc.pca_.mean_  # exactly on the mean: y = 0
    R = rng.normal(size=(40, 4))
    got = voc.relevance(R, d, epsilon)
    want = reference_pca_backward(d.data, voc.pca_.mean_, voc.pca_.components_, R, epsilon)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    # with the forward pass's projection handed in: the same relevance
    given = voc.relevance(R, d, epsilon, projected=voc.project(d.data))
    np.testing.assert_allclose(given, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    if epsilon == 0.0:
        np.testing.assert_allclose(got.sum(axis=1), R.sum(axis=1), rtol=0, atol=1e-12 * np.abs(R).max())
        np.testing.assert_allclose(got[5], R[5].sum() / 9)


@pytest.mark.parametrize("name", ["rank-pca", "soft", "hard"])
def test_neon_in_row_blocks_equals_literal_network(name, monkeypatch):
    """Blocks of 7 rows (the PCA projection applied per block) against the literal network,
    and conservation per descriptor in float64."""
    monkeypatch.setattr("bowlrp.encoding.neon.BLOCK", 7)
    enc, d, trace, R = _fitted(name, seed=3, n=45)
    _, fast = enc.relevance(R, trace, Neon(), per_dimension=True)
    slots, uniform = reference_slots(enc, d, trace, R)
    x = enc.vocabulary_.project(d.data)
    beta = enc.neon_beta(Neon())
    expected = reference_neon(
        x, enc.vocabulary_.cluster_centers_, trace.codes["indices"], slots, uniform, enc._neon_after, beta
    )
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    np.testing.assert_allclose(
        fast.sum(axis=1), slots.sum(axis=1) + uniform, rtol=0, atol=1e-12 * np.abs(slots).sum()
    )


def test_ratios_equal_numpy_reference():
    """The fused coefficient pass of the separable projection: ``values / Z`` where ``Z > 0``,
    else 0, and which descriptors hold relevance on a zero total (the window fallback)."""
    rng = np.random.default_rng(5)
    values = rng.normal(size=(30, 16))
    values[3, 2] = 0.0
    Z = rng.exponential(size=(30, 16)) * (rng.random((30, 16)) > 0.2)
    Z[3, :] = 1.0
    Z[3, 2] = 0.0  # zero total but no relevance on it: no fallback for row 3
    coef, needs = separable._ratios(values, Z)
    want = np.zeros_like(values)
    for l in range(30):
        for k in range(16):
            if Z[l, k] > 0:
                want[l, k] = values[l, k] / Z[l, k]
    np.testing.assert_array_equal(coef, want)
    np.testing.assert_array_equal(needs, ((Z <= 0) & (values != 0)).any(axis=1))
    assert not needs[3] and needs.any()
