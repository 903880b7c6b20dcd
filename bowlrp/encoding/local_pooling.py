"""Pooling that lets rare evidence count: Fisher vectors of an image's least likely descriptors.

A mean-pooled Fisher vector averages the statistics of all ``N`` descriptors of
an image, so a small unusual region (a defect covering a few percent of the
image) changes it by a few percent only, less than the normal variation between
images. :class:`TailFisherVector` keeps the generative model's per-descriptor
evidence: it ranks the descriptors by their log-likelihood under the GMM,

    log p(l) = log sum_k pi_k N(l; mu_k, diag sigma_k^2),

keeps the ``n_q = max(1, ceil(q N))`` least likely ones (``q = tail``), and pools
the usual Fisher statistics over these only,

    z_cd = (1 / N_c^q) sum_{l in T, l in c} Psi_d(l),        T = the n_q least likely,

with ``N_c^q`` the number of selected descriptors in pyramid cell ``c``; then the
usual power and l2 normalisation. ``tail = 1`` is the ordinary Fisher vector.
When a defect brings unlikely descriptors, they fill the tail and the pooled
statistics describe the defect rather than the image's normal surface; on a
normal image the tail holds its least typical normal descriptors. Like max
pooling (``tail -> 0`` keeps a single descriptor), this pooling is not additive
over descriptors: incremental re-encoding re-pools from the stored codes.

Relevance (step 2 of the relevance pass): the selection is a winner-take-all
step, as for max pooling (``WinnerTakeAll``): descriptors outside the tail
receive no relevance, and the pooled dimensions' relevance goes to the selected
descriptors by the Fisher vector's own rules (``Epsilon``, ``AlphaBeta``,
``AbsZ``) applied to the sub-image of the tail. Because ``z_d`` is exactly the
sum of the selected descriptors' ``z_ld``, conservation is exact:
``sum_l R_l = sum_d R_d`` (``Epsilon(0)``; the stabilised rules absorb as for
:class:`~bowlrp.encoding.fisher.FisherVector`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from .base import EncodingTrace
from .fisher import FisherVector
from .vocabulary import log_gaussians


def tail_rows(loglik: np.ndarray, tail: float) -> np.ndarray:
    """Rows of the ``max(1, ceil(tail N))`` smallest log-likelihoods, ascending row order.

    Ties are broken by the row index (stable sort), so the selection is deterministic.

    Parameters
    ----------
    loglik : ndarray (N,)
    tail : float in (0, 1]

    Returns
    -------
    ndarray (n_q,) int64
    """
    n = len(loglik)
    k = min(n, max(1, math.ceil(tail * n - 1e-9)))
    order = np.argsort(loglik, kind="stable")[:k]
    return np.sort(order).astype(np.int64)


def descriptor_loglik(data: np.ndarray, means, variances, weights) -> np.ndarray:
    """``log p(l) = logsumexp_k [log pi_k + log N(l; mu_k, diag sigma_k^2)]`` (N,), projected ``l``."""
    if len(data) == 0:
        return np.zeros(0)
    return logsumexp(log_gaussians(data, means, variances, weights), axis=1)


class TailFisherVector(FisherVector):
    """Fisher vector pooled over the ``tail`` share of an image's least likely descriptors.

    Parameters
    ----------
    vocabulary : int or GMMVocabulary
        As for :class:`~bowlrp.encoding.fisher.FisherVector`.
    tail : float in (0, 1]
        Share ``q`` of the descriptors (the least likely under the GMM) that are pooled;
        at least one descriptor is. ``1``: the ordinary Fisher vector.
    parts, pyramid, normalization, power, posterior_threshold, random_state
        As for :class:`~bowlrp.encoding.fisher.FisherVector`.

    Notes
    -----
    The codes of a descriptor are its projection, its sparse posteriors and its
    log-likelihood ``log p(l)`` (``"loglik"``); ``"selected"`` (bool (N,)) marks the tail
    of the image the codes were computed for. Cost over ``FisherVector``: one
    (N, K) log-density evaluation and an O(N log N) sort per image.
    """

    def __init__(
        self,
        vocabulary=64,
        tail: float = 0.05,
        parts=("mu", "sigma"),
        pyramid=((1, 1),),
        normalization="power+l2",
        power=0.5,
        posterior_threshold=1e-6,
        random_state=None,
    ):
        super().__init__(
            vocabulary=vocabulary,
            parts=parts,
            pyramid=pyramid,
            normalization=normalization,
            power=power,
            posterior_threshold=posterior_threshold,
            random_state=random_state,
        )
        self.tail = tail

    def _check_params(self):
        super()._check_params()
        tail = self.tail
        if isinstance(tail, bool) or not isinstance(tail, (int, float, np.floating, np.integer)):
            raise ValueError(f"tail must be a number in (0, 1], got {tail!r}")
        if not 0.0 < float(tail) <= 1.0:
            raise ValueError(f"tail must lie in (0, 1], got {tail!r}")

    @property
    def additive_pooling(self) -> bool:
        """False: the tail depends on all descriptors (re-pooled from stored codes)."""
        return False

    def finish_exponent(self):
        """None: scores are never updated per chunk of dimensions (the pooling is not additive)."""
        return None

    # -- codes -------------------------------------------------------------------
    def compute_codes(self, data: np.ndarray) -> dict:
        """Projected descriptors (N, D'), sparse posteriors (CSR (N, K)) and ``log p(l)`` (N,)."""
        codes = super().compute_codes(data)
        v = self.vocabulary_
        codes["loglik"] = descriptor_loglik(codes["data"], v.means_, v.covariances_, v.weights_)
        return codes

    @staticmethod
    def take_codes(codes: dict, rows) -> dict:
        out = FisherVector.take_codes(codes, rows)
        out["loglik"] = codes["loglik"][rows]
        return out

    @staticmethod
    def put_codes(codes: dict, rows, new: dict, inplace: bool = False) -> dict:
        out = FisherVector.put_codes(codes, rows, new, inplace)
        loglik = codes["loglik"] if inplace else codes["loglik"].copy()
        loglik[rows] = new["loglik"]
        out["loglik"] = loglik
        return out

    def _tail(self, codes: dict, cell_ids: np.ndarray, n_cells: int):
        rows = tail_rows(codes["loglik"], float(self.tail))
        counts = np.bincount(cell_ids[rows].ravel(), minlength=n_cells).astype(np.int64)
        return rows, counts

    def pooled_sums(self, codes: dict, cell_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Pooled (un-normalised) Fisher statistics of the tail of the given descriptors (V,).

        ``counts`` (all descriptors per cell) is not used: the tail's own counts ``N_c^q`` are.
        """
        rows, tail_counts = self._tail(codes, cell_ids, len(counts))
        return self._sums(
            codes["data"][rows], codes["posteriors"][rows], cell_ids[rows], tail_counts, signed=False
        )[0]

    def _extra_codes(self, codes, cell_ids, counts) -> dict:
        rows, tail_counts = self._tail(codes, cell_ids, len(counts))
        selected = np.zeros(len(codes["loglik"]), dtype=bool)
        selected[rows] = True
        reached = self._reached(codes["posteriors"][rows], cell_ids[rows], tail_counts)
        return {"reached": reached, "selected": selected}

    # -- relevance -----------------------------------------------------------------
    def _descriptor_relevance(self, R, trace, rule, per_dimension):
        """Winner-take-all over the tail, then the Fisher vector's rule on the tail's descriptors."""
        codes = trace.codes
        rows = np.flatnonzero(codes["selected"])
        tail_counts = np.bincount(trace.cell_ids[rows].ravel(), minlength=len(trace.cell_counts))
        sub = EncodingTrace(
            trace.cell_ids[rows],
            tail_counts.astype(np.int64),
            trace.pooled,
            trace.output,
            {
                "data": codes["data"][rows],
                "posteriors": codes["posteriors"][rows],
                "reached": codes["reached"],
            },
        )
        found = super()._descriptor_relevance(R, sub, rule, per_dimension)
        n = trace.n_descriptors
        out = np.zeros(n)
        if per_dimension:
            sub_out, sub_dim = found
            out[rows] = sub_out
            per_dim = np.zeros((n, codes["data"].shape[1]))
            per_dim[rows] = sub_dim
            return out, per_dim
        out[rows] = found
        return out


__all__ = ["TailFisherVector", "descriptor_loglik", "tail_rows"]
