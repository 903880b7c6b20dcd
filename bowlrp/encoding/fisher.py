"""Fisher vectors over a diagonal GMM (SPEC 1, layer 3), pooled per pyramid cell.

Per descriptor ``l`` (after PCA) with posteriors ``gamma_k(l)``:

    Psi_pi_k(l)    = (gamma_k(l) - pi_k) / sqrt(pi_k)
    Psi_mu_k(l)    = gamma_k(l) (l - mu_k) / (sigma_k sqrt(pi_k))
    Psi_sigma_k(l) = gamma_k(l) ((l - mu_k)^2 / sigma_k^2 - 1) / sqrt(2 pi_k)

mean-pooled per cell (``1/N_c``). Posteriors come from BLAS in chunks and are
kept sparse; the pooled sums are then accumulated by one streaming Numba pass
over (descriptor, component) pairs, never through the per-descriptor N x 2KD
matrix. The same pass (in the order the relevance pass uses) gives the positive
and negative parts ``z+_d``, ``z-_d`` that the AlphaBeta and AbsZ rules need.
Posteriors below ``posterior_threshold``
(VLFeat: 1e-6) are dropped without renormalising, as VLFeat does; the
relevance pass uses the same sparse posteriors, so conservation is exact.

Layout of one cell's block: ``[pi (K, if included) | mu (K x D) | sigma (K x D)]``
with ``k`` major, i.e. VLFeat's ``[u_1 .. u_K | v_1 .. v_K]`` for the default
``parts=("mu", "sigma")``; cells follow each other level by level.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit
from sklearn.base import clone

from ..descriptors.geometry import Descriptors
from ..vocabulary import GMMVocabulary, log_gaussians
from .base import Encoder, coefficients_from_rule

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


@njit(cache=True)
def _fisher_pass(data, indptr, indices, gamma, cell_ids, counts, mu, inv_sigma, prior,
                 has_pi, has_mu, has_sigma, block, mode, a, b, pos, neg, out, per_dim):
    """One streaming pass over the per-descriptor Fisher contributions ``z_ld``.

    mode 0: accumulate ``pos[d] += max(z_ld, 0)``, ``neg[d] += min(z_ld, 0)``.
    mode 1: ``out[l] += sum_d z_ld (a_d if z_ld > 0 else b_d)``; with a non-empty
    ``per_dim`` (N, D) also the share of each descriptor dimension (the pi part,
    which belongs to no dimension, is spread evenly over them).
    """
    n, D = data.shape
    K = mu.shape[0]
    off_mu = K if has_pi else 0
    off_sigma = off_mu + (K * D if has_mu else 0)
    track = per_dim.shape[0] > 0
    for l in range(n):
        acc = 0.0
        for lev in range(cell_ids.shape[1]):
            c = cell_ids[l, lev]
            inv = 1.0 / counts[c]
            base = c * block
            if has_pi:
                ptr = indptr[l]
                pi_acc = 0.0
                for k in range(K):
                    g = 0.0
                    if ptr < indptr[l + 1] and indices[ptr] == k:
                        g = gamma[ptr]
                        ptr += 1
                    z = (g - prior[k]) / np.sqrt(prior[k]) * inv
                    d = base + k
                    if mode == 0:
                        if z > 0:
                            pos[d] += z
                        else:
                            neg[d] += z
                    else:
                        pi_acc += z * (a[d] if z > 0 else b[d])
                acc += pi_acc
                if track:
                    for i in range(D):
                        per_dim[l, i] += pi_acc / D
            for q in range(indptr[l], indptr[l + 1]):
                k = indices[q]
                g = gamma[q] * inv
                s_mu = g / np.sqrt(prior[k])
                s_sigma = g / np.sqrt(2.0 * prior[k])
                for i in range(D):
                    t = (data[l, i] - mu[k, i]) * inv_sigma[k, i]
                    r = 0.0
                    if has_mu:
                        z = s_mu * t
                        d = base + off_mu + k * D + i
                        if mode == 0:
                            if z > 0:
                                pos[d] += z
                            else:
                                neg[d] += z
                        else:
                            r += z * (a[d] if z > 0 else b[d])
                    if has_sigma:
                        z = s_sigma * (t * t - 1.0)
                        d = base + off_sigma + k * D + i
                        if mode == 0:
                            if z > 0:
                                pos[d] += z
                            else:
                                neg[d] += z
                        else:
                            r += z * (a[d] if z > 0 else b[d])
                    acc += r
                    if track:
                        per_dim[l, i] += r
        out[l] += acc


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
        # One streaming pass accumulates z+_d and z-_d; z_d = z+_d + z-_d is then summed in
        # the same order the relevance pass redistributes it, so conservation is exact.
        positive = np.zeros(self.n_features_out_)
        negative = np.zeros(self.n_features_out_)
        empty = np.zeros(0)
        self._run_pass(data, gamma, cell_ids, counts, 0, empty, empty, positive, negative,
                       np.zeros(len(data)), np.zeros((0, 0)))
        codes = {
            "data": data, "posteriors": gamma, "reached": self._reached(gamma, cell_ids, counts),
            "positive": positive, "negative": negative,
        }
        return positive + negative, codes

    def _reached(self, gamma, cell_ids, counts) -> np.ndarray:
        """Dimensions some descriptor contributes to: pi parts of occupied cells,
        mu/sigma parts of the components with a posterior above the threshold in the cell."""
        K, D = self.vocabulary_.means_.shape
        n_cells = len(counts)
        rows = np.repeat(np.arange(gamma.shape[0]), np.diff(gamma.indptr))
        hit = np.zeros((n_cells, K), dtype=bool)
        for lev in range(cell_ids.shape[1]):
            hit[cell_ids[rows, lev], gamma.indices] = True
        blocks = []
        for part in self.parts_:
            if part == "pi":
                blocks.append(np.repeat((counts > 0)[:, None], K, axis=1))
            else:
                blocks.append(np.repeat(hit, D, axis=1))
        return np.concatenate(blocks, axis=1).ravel()

    def _run_pass(self, data, gamma, cell_ids, counts, mode, a, b, pos, neg, out, per_dim):
        mu, sigma, prior = self.gmm_parameters()
        parts = self.parts_
        _fisher_pass(data, gamma.indptr, gamma.indices, gamma.data, cell_ids, counts, mu,
                     1.0 / sigma, prior, "pi" in parts, "mu" in parts, "sigma" in parts,
                     self.block_size_, mode, a, b, pos, neg, out, per_dim)

    def _descriptor_relevance(self, R, trace, rule, per_dimension):
        from ..rules import AbsZ, AlphaBeta, Epsilon, require

        require(rule, (Epsilon, AlphaBeta, AbsZ), "FisherVector")
        codes = trace.codes
        n = trace.n_descriptors
        D = codes["data"].shape[1]
        a, b, uniform = coefficients_from_rule(R, trace.pooled, codes["reached"],
                                               codes["positive"], codes["negative"], rule)
        out = np.full(n, uniform / n)
        per_dim = np.full((n, D), uniform / n / D) if per_dimension else np.zeros((0, 0))
        empty = np.zeros(0)
        self._run_pass(codes["data"], codes["posteriors"], trace.cell_ids, trace.cell_counts, 1,
                       a, b, empty, empty, out, per_dim)
        return (out, per_dim) if per_dimension else out
