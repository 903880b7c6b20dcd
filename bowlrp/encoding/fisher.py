"""Fisher vectors over a diagonal GMM (SPEC 1, layer 3), pooled per pyramid cell.

Per descriptor ``l`` (after PCA) with posteriors ``gamma_k(l)``:

    Psi_pi_k(l)    = (gamma_k(l) - pi_k) / sqrt(pi_k)
    Psi_mu_k(l)    = gamma_k(l) (l - mu_k) / (sigma_k sqrt(pi_k))
    Psi_sigma_k(l) = gamma_k(l) ((l - mu_k)^2 / sigma_k^2 - 1) / sqrt(2 pi_k)

mean-pooled per cell (``1/N_c``). The pooled sums are computed from the
posterior moments ``S0 = sum gamma``, ``S1 = sum gamma l``, ``S2 = sum gamma l^2``
(sparse posteriors times the descriptor matrix, BLAS), never from the
per-descriptor N x 2KD matrix. Posteriors below ``posterior_threshold``
(VLFeat: 1e-6) are dropped without renormalising, as VLFeat does; the
relevance pass uses the same sparse posteriors, so conservation is exact.

Layout of one cell's block: ``[pi (K, if included) | mu (K x D) | sigma (K x D)]``
with ``k`` major, i.e. VLFeat's ``[u_1 .. u_K | v_1 .. v_K]`` for the default
``parts=("mu", "sigma")``; cells follow each other level by level.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone

from ..descriptors.geometry import Descriptors
from ..vocabulary import GMMVocabulary, log_gaussians
from .base import Encoder

FISHER_PARTS = ("pi", "mu", "sigma")
_CHUNK = 16384


def sparse_posteriors(data, means, variances, weights, threshold) -> sp.csr_matrix:
    """GMM posteriors with entries below ``threshold`` dropped, CSR (N, K)."""
    blocks = []
    for start in range(0, data.shape[0], _CHUNK):
        log_p = log_gaussians(data[start:start + _CHUNK], means, variances, weights)
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        p /= p.sum(axis=1, keepdims=True)
        p[p < threshold] = 0.0
        blocks.append(sp.csr_matrix(p))
    return sp.vstack(blocks, format="csr")


def cell_posteriors(gamma: sp.csr_matrix, cell_of_row: np.ndarray, counts: np.ndarray,
                    n_cells_level: int, level_base: int) -> sp.csr_matrix:
    """Posteriors spread into per-cell column blocks, divided by ``N_c``: (N, C_level * K)."""
    K = gamma.shape[1]
    rows_of_nnz = np.repeat(np.arange(gamma.shape[0]), np.diff(gamma.indptr))
    local_cell = cell_of_row[rows_of_nnz] - level_base
    data = gamma.data / counts[cell_of_row[rows_of_nnz]]
    return sp.csr_matrix(
        (data, gamma.indices + K * local_cell, gamma.indptr),
        shape=(gamma.shape[0], n_cells_level * K),
    )


class FisherVector(Encoder):
    """Fisher vector encoding with a diagonal GMM vocabulary.

    Parameters
    ----------
    vocabulary : int or GMMVocabulary
        Number of Gaussians (fitted with ``random_state``) or a vocabulary
        estimator (cloned and fitted), e.g. ``GMMVocabulary(256, pca_components=80)``.
    parts : sequence of {"pi", "mu", "sigma"}
        Gradients included, in this order (VLFeat: mu and sigma).
    pyramid : sequence of (rows, cols)
    normalization : str or None
        Default ``"power+l2"``: the improved Fisher vector (signed square root,
        then l2). The Chatfield et al. baseline uses ``"cell-l2+power+l2"``.
    power : float
        Exponent of the signed power step.
    posterior_threshold : float
        Posteriors below it are dropped (VLFeat: 1e-6).
    random_state : int or None
    """

    def __init__(self, vocabulary=64, parts=("mu", "sigma"), pyramid=((1, 1),),
                 normalization="power+l2", power=0.5, posterior_threshold=1e-6,
                 random_state=None):
        self.vocabulary = vocabulary
        self.parts = parts
        self.pyramid = pyramid
        self.normalization = normalization
        self.power = power
        self.posterior_threshold = posterior_threshold
        self.random_state = random_state

    def _check_params(self):
        parts = tuple(self.parts)
        if not parts or any(p not in FISHER_PARTS for p in parts) or len(set(parts)) != len(parts):
            raise ValueError(f"parts must be distinct names from {FISHER_PARTS}, got {self.parts!r}")
        if not 0 <= self.posterior_threshold < 1:
            raise ValueError("posterior_threshold must lie in [0, 1)")

    def _make_vocabulary(self):
        if isinstance(self.vocabulary, (int, np.integer)):
            return GMMVocabulary(n_components=int(self.vocabulary), random_state=self.random_state)
        if not isinstance(self.vocabulary, GMMVocabulary):
            raise TypeError("vocabulary must be an int (number of Gaussians) or a GMMVocabulary")
        return clone(self.vocabulary)

    @property
    def parts_(self) -> tuple[str, ...]:
        return tuple(p for p in FISHER_PARTS if p in tuple(self.parts))

    def _block_size(self) -> int:
        K, D = self.vocabulary_.means_.shape
        return sum(K if p == "pi" else K * D for p in self.parts_)

    def gmm_parameters(self):
        """(means (K, D), sigmas (K, D), priors (K,)) of the fitted vocabulary."""
        v = self.vocabulary_
        return v.means_, np.sqrt(v.covariances_), v.weights_

    def _encode(self, descriptors: Descriptors, cell_ids, counts):
        v = self.vocabulary_
        data = v.project(descriptors.data)
        gamma = sparse_posteriors(data, v.means_, v.covariances_, v.weights_,
                                  self.posterior_threshold)
        mu, sigma, prior = self.gmm_parameters()
        K, D = mu.shape
        blocks = []
        base = 0
        for lev, (rows, cols) in enumerate(self.levels_):
            n_cells = rows * cols
            G = cell_posteriors(gamma, cell_ids[:, lev], counts, n_cells, base)
            S0 = np.asarray(G.sum(axis=0)).reshape(n_cells, K)
            S1 = np.asarray(G.T @ data).reshape(n_cells, K, D)
            S2 = np.asarray(G.T @ (data * data)).reshape(n_cells, K, D)
            occupied = (counts[base:base + n_cells] > 0).astype(np.float64)
            for c in range(n_cells):
                block = []
                for part in self.parts_:
                    if part == "pi":
                        block.append((S0[c] - prior * occupied[c]) / np.sqrt(prior))
                    elif part == "mu":
                        g = (S1[c] - mu * S0[c][:, None]) / (sigma * np.sqrt(prior)[:, None])
                        block.append(g.ravel())
                    else:
                        second = S2[c] - 2 * mu * S1[c] + mu * mu * S0[c][:, None]
                        g = (second / sigma**2 - S0[c][:, None]) / np.sqrt(2 * prior)[:, None]
                        block.append(g.ravel())
                blocks.append(np.concatenate(block))
            base += n_cells
        pooled = np.concatenate(blocks)
        return pooled, {"data": data, "posteriors": gamma}
