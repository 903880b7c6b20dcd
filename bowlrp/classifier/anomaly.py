"""Kernel anomaly detectors as explicit dual expansions: one-class SVM and SVDD.

Both are fitted without labels on the feature vectors of normal samples and
stored, like :class:`~bowlrp.classifier.svm.KernelSVC`, as explicit expansions over their
support vectors ``s_i`` with one kernel per feature channel,
``k(x, y) = sum_u beta_u k_u(x^(u), y^(u))`` (fixed or uniform weights
``beta_u``; see ``docs/anomaly.md`` and the thesis appendix A.1, eqs. A.8–A.13):

* one-class SVM (Schölkopf et al. 1999), ``f(x) = sum_i alpha_i k(s_i, x) - rho``
  (A.8), ``f(x) > 0`` for inliers;
* SVDD (Tax & Duin 2004), the smallest sphere around the data in feature space,
  ``f(x) = r^2 - a(x)`` with the squared distance to the centre
  ``a(x) = k(x, x) - 2 sum_i alpha_i k(s_i, x) + sum_ij alpha_i alpha_j k(s_i, s_j)``
  (A.10, A.11), ``f(x) > 0`` for inliers.

Calibration: ``fpr=`` holds a share ``calibration_size`` of the normal samples out of
the fit and sets the threshold ``offset_`` to the ``fpr`` quantile of their scores, so
that ``predict`` flags about ``fpr`` of new normal samples; ``contamination=`` uses that
quantile of the training scores (scikit-learn's meaning). Only the threshold moves
(``radius2_ = -offset_`` for SVDD), so the decompositions stay exact.

scikit-learn conventions for outlier detectors hold: ``predict`` gives ``+1``
(inlier) or ``-1`` (outlier), ``score_samples`` is high for normal samples and
``decision_function = score_samples - offset_``. For explanations the two
"classes" are ``-1`` (outlier: the anomaly score ``-f(x)``, the default) and
``+1`` (inlier: the normality ``f(x)``).

SVDD solver
-----------
The SVDD dual (Tax & Duin; Chang, Lee & Lin 2013) is

    min_alpha  alpha^T K alpha - sum_i alpha_i K_ii   s.t.  sum_i alpha_i = 1,  0 <= alpha_i <= C.

On the feasible set ``sum_i alpha_i = 1`` we have
``sum_i alpha_i K_ii = alpha^T ((d 1^T + 1 d^T) / 2) alpha`` with ``d = diag K``, so the
objective equals ``alpha^T K~ alpha`` with the shifted Gram matrix
``K~ = K - (d 1^T + 1 d^T) / 2``: exactly libsvm's one-class problem on ``K~``
with ``nu = 1 / (C n)`` (its ``alpha`` are ours times ``nu n``). libsvm's SMO
moves pairs ``alpha_i, alpha_j`` along ``e_i - e_j`` whose curvature
``K~_ii + K~_jj - 2 K~_ij = K_ii + K_jj - 2 K_ij`` is the original one, so it
solves the SVDD dual itself, for any kernel, to libsvm's KKT tolerance. When
``k(x, x)`` is constant the shift is a constant and this is the well-known
OCSVM = SVDD equivalence; otherwise the shift is what makes it exact (a plain
one-class SVM on ``K`` would solve a different problem). We therefore use the
maintained libsvm (through scikit-learn, already a dependency) rather than a
general QP package; the tests check the KKT conditions and compare the optimum
with SciPy's SLSQP on the original problem.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.svm import OneClassSVM
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .._utils.fitted import fitted_array, fitted_number, prefixed, refuse
from .anomaly_relevance import one_class_relevance, svdd_center_terms, svdd_relevance
from .kernels import Kernel
from .svm import KernelChannelsMixin

INLIER, OUTLIER = 1, -1


def self_kernel(kernel: Kernel, X: np.ndarray) -> np.ndarray:
    """``k(x, x)`` for every row of ``X`` (n, V): shape (n,).

    Sum-decomposable kernels: ``sum_d k_d(x_d, x_d)``; RBF and exponential chi2
    are 1; any other kernel is evaluated row by row.
    """
    X = np.asarray(X, dtype=np.float64)
    if kernel.decomposable:
        one = np.ones(1)
        return np.array([kernel.dimension_terms(x[None, :], one, x).sum() for x in X])
    return np.array([kernel.gram(x[None, :])[0, 0] for x in X])


class _OneClassKernelMachine(KernelChannelsMixin, OutlierMixin, BaseEstimator):
    """Shared parts: channels, kernels, kernel weights, reference points, targets."""

    classes_ = np.array([OUTLIER, INLIER])

    def __init__(
        self,
        kernel="hik",
        nu: float = 0.1,
        channel_sizes=None,
        kernel_weights=None,
        tol: float = 1e-6,
        n_reference: int = 200,
        random_state=None,
        fpr: float | None = None,
        contamination: float | None = None,
        calibration_size: float = 0.25,
    ):
        self.kernel = kernel
        self.nu = nu
        self.channel_sizes = channel_sizes
        self.kernel_weights = kernel_weights
        self.tol = tol
        self.n_reference = n_reference
        self.random_state = random_state
        self.fpr = fpr
        self.contamination = contamination
        self.calibration_size = calibration_size

    # -- fitting helpers -----------------------------------------------------------
    def _weights(self, n_channels: int) -> np.ndarray:
        if self.kernel_weights is None or self.kernel_weights == "uniform":
            return np.full(n_channels, 1.0 / n_channels)
        w = np.asarray(self.kernel_weights, dtype=np.float64).ravel()
        if w.size != n_channels or np.any(w < 0) or not np.any(w > 0) or not np.all(np.isfinite(w)):
            raise ValueError(
                f"kernel_weights must be {n_channels} non-negative numbers, "
                f"not all zero; got {self.kernel_weights!r}"
            )
        return w

    def _check_nu(self, n: int) -> float:
        nu = float(self.nu)
        if not 0.0 < nu <= 1.0:
            raise ValueError(f"nu must be in (0, 1], got {self.nu}")
        return nu

    # -- calibration of the threshold ------------------------------------------------
    def _calibration_split(self, X) -> tuple[np.ndarray, np.ndarray | None]:
        """``(X_fit, X_cal)``: with ``fpr``, a random ``calibration_size`` share is held out.

        Without ``fpr`` all of ``X`` is fitted and ``X_cal`` is None. The split is drawn
        with ``random_state``; both parts keep their original order.
        """
        if self.fpr is not None and self.contamination is not None:
            raise ValueError("give fpr (held-out calibration) or contamination (training scores), not both")
        for name, value, high in (("fpr", self.fpr, 1.0), ("contamination", self.contamination, 0.5)):
            if value is not None and not (
                isinstance(value, (int, float, np.number)) and 0.0 < float(value) < high
            ):
                raise ValueError(f"{name} must be a number in (0, {high:g}) or None, got {value!r}")
        if self.fpr is None:
            return X, None
        share = self.calibration_size
        if not (isinstance(share, (int, float, np.number)) and 0.0 < float(share) < 1.0):
            raise ValueError(f"calibration_size must be a number in (0, 1), got {share!r}")
        n = len(X)
        n_cal = int(round(float(share) * n))
        if n_cal < 1 or n - n_cal < 2:
            raise ValueError(
                f"calibration_size={share} of {n} samples leaves {n_cal} for calibration and "
                f"{n - n_cal} for fitting; need at least 1 and 2: give more normal samples"
            )
        perm = check_random_state(self.random_state).permutation(n)
        return X[np.sort(perm[n_cal:])], X[np.sort(perm[:n_cal])]

    def _calibrated_offset(self, X_fit: np.ndarray, X_cal: np.ndarray | None) -> float | None:
        """The threshold on ``score_samples``: its ``fpr`` quantile on ``X_cal``, or its
        ``contamination`` quantile on ``X_fit``; None keeps the solver's own threshold."""
        if X_cal is not None:
            scores, level = self.score_samples(X_cal), float(self.fpr)
        elif self.contamination is not None:
            scores, level = self.score_samples(X_fit), float(self.contamination)
        else:
            return None
        self.n_calibration_ = int(len(scores))
        return float(np.quantile(scores, level))

    def _train_gram(self, X) -> np.ndarray:
        self.fit_kernels(X)
        self.kernel_weights_ = self._weights(len(self.kernels_))[None, :]
        return sum(
            b * k.gram(X[:, s])
            for b, k, s in zip(self.kernel_weights_[0], self.kernels_, self.channel_slices_)
        )

    def _solve_one_class(self, K: np.ndarray, nu: float) -> tuple[np.ndarray, float]:
        """libsvm's one-class dual on a precomputed matrix: (alpha (n,), rho)."""
        oc = OneClassSVM(kernel="precomputed", nu=nu, tol=self.tol, shrinking=True)
        oc.fit(K)
        alpha = np.zeros(K.shape[0])
        alpha[oc.support_] = oc.dual_coef_[0]
        return alpha, float(-oc.intercept_[0])

    def _store_support(self, X, alpha):
        support = np.flatnonzero(alpha > 0)
        self.support_ = support
        self.support_vectors_ = X[support].copy()
        self.dual_coef_ = alpha[support][None, :]

    def _store_reference(self, X):
        rng = check_random_state(self.random_state)
        ref = rng.choice(len(X), min(len(X), int(self.n_reference)), replace=False)
        self.reference_X_ = X[np.sort(ref)].copy()
        candidates = np.vstack([self.reference_X_, self.support_vectors_])
        self.candidate_decisions_ = self.decision_function(candidates)[:, None]

    # -- checks of a loaded model -------------------------------------------------------
    def check_fitted(self, where: str | None = None) -> None:
        """Refuse fitted attributes the score and relevance passes cannot use safely.

        ``classes_`` must be ``[-1, 1]``; the channels, non-negative kernel weights,
        support vectors, non-negative ``alpha`` (``dual_coef_`` (1, n_sv)), reference
        points and candidate decisions as for ``KernelSVC``; a finite ``offset_`` and the
        detector's own scalars. An unfitted model passes. Cost O(size of the attributes).

        Parameters
        ----------
        where : str or None
            Prefix of the message, e.g. the model file's name.

        Raises
        ------
        ModelFileError
            One line naming the attribute.
        """
        if "dual_coef_" not in self.__dict__:
            return
        with prefixed(where):
            classes = fitted_array(self, "classes_", kinds="iu", shape=(2,))
            if classes.tolist() != [OUTLIER, INLIER]:
                raise refuse(self, "classes_", f"must be [{OUTLIER}, {INLIER}]")
            self._check_expansion(1)
            fitted_array(self, "dual_coef_", shape=(1, None), low=0.0)
            fitted_array(self, "support_", kinds="iu", shape=(self.dual_coef_.shape[1],))
            fitted_number(self, "offset_")
            self._check_own()

    def _check_own(self) -> None:
        pass

    # -- common API -----------------------------------------------------------------
    def channel_gram(self, X, channel: int) -> np.ndarray:
        """``k_u(x, s_i)`` for channel ``u``: shape (n, n_sv)."""
        s = self.channel_slices_[channel]
        return self.kernels_[channel].gram(X[:, s], self.support_vectors_[:, s])

    def _expansion(self, X) -> np.ndarray:
        """``sum_u beta_u sum_i alpha_i k_u(s_i, x)`` (n,)."""
        out = np.zeros(X.shape[0])
        for u in range(len(self.kernels_)):
            out += self.kernel_weights_[0, u] * (self.channel_gram(X, u) @ self.dual_coef_[0])
        return out

    def decision_function(self, X) -> np.ndarray:
        """``f(x) = score_samples(x) - offset_``: positive for inliers, shape (n,)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """``+1`` for inliers (``f(x) >= 0``), ``-1`` for outliers."""
        return np.where(self.decision_function(X) >= 0, INLIER, OUTLIER)

    def forward(self, X):
        """Decision values and, as trace, the validated feature matrix: ``(F, X)``."""
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.decision_function(X), X

    def candidate_points(self, task: int = 0, sign: float = 1.0):
        """Reference points and support vectors with ``sign * f`` (for the Taylor root search)."""
        check_is_fitted(self, "candidate_decisions_")
        points = np.vstack([self.reference_X_, self.support_vectors_])
        return points, sign * self.candidate_decisions_[:, task]

    def task_and_sign(self, x, target=None) -> tuple[int, float]:
        """``(0, -1)`` explains the anomaly score ``-f`` (target ``-1`` or None), ``(0, +1)`` ``f``."""
        check_is_fitted(self, "dual_coef_")
        if target is None or target == OUTLIER:
            return 0, -1.0
        if target == INLIER:
            return 0, 1.0
        raise ValueError(f"unknown target {target!r}; use -1 (outlier: anomaly score) or 1 (inlier)")

    def target_label(self, task: int, sign: float):
        return INLIER if sign > 0 else OUTLIER

    @property
    def n_tasks_(self) -> int:
        return 1

    def relevance(self, R, trace, rule=None, target=None):
        """Relevance of the feature dimensions of one sample (see :meth:`dimension_relevance`)."""
        x = np.asarray(trace, dtype=np.float64).ravel()
        task, sign = self.task_and_sign(x, target)
        out = self.dimension_relevance(x, task, sign, rule)
        if R is not None and not np.isclose(float(R), out.score, rtol=1e-9, atol=1e-12):
            raise ValueError(f"R={R} is not the explained score {out.score} of target {target!r}")
        return out

    def dimension_relevance(self, x, task: int = 0, sign: float = -1.0, rule=None):
        """Relevance of the feature dimensions of ``x`` (V,) for ``sign * f(x)``: a DimensionRelevance."""
        return one_class_relevance(self, x, task, sign, rule)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class OneClassKernelSVM(_OneClassKernelMachine):
    """One-class SVM (libsvm, precomputed kernel) stored as an explicit expansion (thesis A.8).

    ``f(x) = sum_u beta_u sum_i alpha_i k_u(s_i^(u), x^(u)) - rho``; ``f(x) < 0``: outlier.
    Same solution as scikit-learn's ``OneClassSVM`` on the same kernel.

    Parameters
    ----------
    kernel : str, Kernel, or list of them
        One kernel for all channels or one per channel (see ``bowlrp.classifier.kernels``).
    nu : float in (0, 1]
        Upper bound on the fraction of training outliers, lower bound on the fraction of support vectors.
    channel_sizes : list of int or None
        Split of the feature columns into channels (set by :class:`~bowlrp.pipeline.Pipeline`).
    kernel_weights : None, "uniform" or list of float
        Fixed channel weights ``beta_u``; None / "uniform": ``1/U``.
    tol : float
        libsvm stopping tolerance.
    n_reference : int
        Training samples kept for the Taylor root search.
    random_state : int or None
        Draws the reference set and the calibration split.
    fpr : float in (0, 1) or None
        Target false-positive rate: a random share ``calibration_size`` of the normal
        samples is held out of the fit, and the threshold ``offset_`` is set to the
        ``fpr`` quantile of their ``score_samples``, so that about ``fpr`` of new normal
        samples are flagged (``predict = -1``). None: the solver's threshold (``nu``).
    contamination : float in (0, 0.5) or None
        scikit-learn's meaning: the share of the *training* samples flagged (threshold at
        the ``contamination`` quantile of their scores; nothing held out). Training
        scores are optimistic, so new normal samples are flagged more often; prefer ``fpr``.
    calibration_size : float in (0, 1)
        Share of the samples held out for ``fpr`` (default 0.25).

    Attributes
    ----------
    support_vectors_ : ndarray (n_sv, n_features)
    dual_coef_ : ndarray (1, n_sv)
        ``alpha_i`` (libsvm scaling, ``sum_i alpha_i = nu n``).
    intercept_ : ndarray (1,)
        ``-rho``.
    offset_ : float
        ``rho``; ``decision_function = score_samples - offset_``.
    kernel_weights_ : ndarray (1, n_channels)
    kernels_, channel_slices_ : lists
    n_calibration_ : int
        Samples the threshold was calibrated on (only with ``fpr`` or ``contamination``).
    """

    def fit(self, X, y=None):
        """Fit on the feature vectors ``X`` (n, n_features) of normal samples; ``y`` is ignored."""
        X = validate_data(self, X, dtype=np.float64)
        X, X_cal = self._calibration_split(X)
        nu = self._check_nu(len(X))
        K = self._train_gram(X)
        alpha, rho = self._solve_one_class(K, nu)
        self._store_support(X, alpha)
        self.intercept_ = np.array([-rho])
        self.offset_ = rho
        offset = self._calibrated_offset(X, X_cal)
        if offset is not None:  # f(x) = sum_i alpha_i k(s_i, x) - rho with the calibrated rho
            self.offset_ = offset
            self.intercept_ = np.array([-offset])
        self._store_reference(X)
        return self

    def _check_own(self) -> None:
        intercept = fitted_array(self, "intercept_", shape=(1,))
        if intercept[0] != -self.offset_:
            raise refuse(self, "intercept_", "must be -offset_")

    def score_samples(self, X) -> np.ndarray:
        """``sum_i alpha_i k(s_i, x)`` (n,): the lower, the more abnormal."""
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._expansion(X)


class KernelSVDD(_OneClassKernelMachine):
    """Support Vector Data Description (Tax & Duin 2004) as an explicit expansion (thesis A.10–A.13).

    ``f(x) = r^2 - a(x)``, ``a(x) = k(x, x) - 2 sum_i alpha_i k(s_i, x) + alpha^T K alpha``,
    with ``sum_i alpha_i = 1`` and ``0 <= alpha_i <= C``; ``f(x) < 0``: outlier.
    Solved by libsvm on the shifted Gram matrix (exact for every kernel; module docstring).

    Parameters
    ----------
    kernel, channel_sizes, kernel_weights, tol, n_reference, random_state
        As for :class:`OneClassKernelSVM`.
    fpr, contamination, calibration_size
        As for :class:`OneClassKernelSVM`; a calibrated threshold sets ``radius2_ = -offset_``.
    nu : float in (0, 1]
        Fraction of training outliers allowed; ``C = 1 / (nu n)``. Ignored when ``C`` is given.
    C : float or None
        Soft-margin parameter of Tax & Duin; needs ``C >= 1/n`` (``C >= 1``: hard sphere).

    Attributes
    ----------
    support_vectors_ : ndarray (n_sv, n_features)
    dual_coef_ : ndarray (1, n_sv)
        ``alpha_i`` (sum 1).
    radius2_ : float
        Squared radius ``r^2``.
    center_norm2_ : float
        ``alpha^T K alpha``, the squared norm of the centre.
    offset_ : float
        ``-r^2``; ``score_samples(x) = -a(x)`` and ``decision_function = score_samples - offset_``.
    center_dimension_terms_ : list of ndarray or None
        Per channel, ``beta_u sum_ij alpha_i alpha_j k_d(s_{i,d}, s_{j,d})`` (decomposable kernels).
    constant_self_kernel_ : bool
        Whether ``k(x, x)`` was constant over the training set (then SVDD = one-class SVM).
    """

    def __init__(
        self,
        kernel="hik",
        nu: float = 0.1,
        C: float | None = None,
        channel_sizes=None,
        kernel_weights=None,
        tol: float = 1e-6,
        n_reference: int = 200,
        random_state=None,
        fpr: float | None = None,
        contamination: float | None = None,
        calibration_size: float = 0.25,
    ):
        super().__init__(
            kernel=kernel,
            nu=nu,
            channel_sizes=channel_sizes,
            kernel_weights=kernel_weights,
            tol=tol,
            n_reference=n_reference,
            random_state=random_state,
            fpr=fpr,
            contamination=contamination,
            calibration_size=calibration_size,
        )
        self.C = C

    def _effective_nu(self, n: int) -> float:
        if self.C is None:
            return self._check_nu(n)
        C = float(self.C)
        if not C * n >= 1.0 - 1e-12:
            raise ValueError(f"C={self.C} is infeasible for {n} samples: need C >= 1/n = {1.0 / n:.4g}")
        return min(1.0, 1.0 / (C * n))

    def fit(self, X, y=None):
        """Fit on the feature vectors ``X`` (n, n_features) of normal samples; ``y`` is ignored."""
        X = validate_data(self, X, dtype=np.float64)
        X, X_cal = self._calibration_split(X)
        n = len(X)
        nu = self._effective_nu(n)
        K = self._train_gram(X)
        d = np.diag(K).copy()
        self.constant_self_kernel_ = bool(np.ptp(d) <= 1e-12 * max(1.0, np.abs(d).max()))
        alpha, rho = self._solve_one_class(K - 0.5 * (d[:, None] + d[None, :]), nu)
        scale = alpha.sum()  # = nu n (libsvm's scaling)
        alpha = alpha / scale
        self._store_support(X, alpha)
        a_s = alpha[self.support_]
        Ks = K[np.ix_(self.support_, self.support_)]
        self.center_norm2_ = float(a_s @ Ks @ a_s)
        # libsvm's rho is the KKT value (K~ alpha)_i on the free support vectors; there
        # a(x_i) = d_i - 2 (K alpha)_i + alpha K alpha = -2 (K~ alpha)_i - d.alpha + alpha K alpha.
        self.radius2_ = float(-2.0 * rho / scale - d @ alpha + self.center_norm2_)
        self.offset_ = -self.radius2_
        self.center_dimension_terms_ = svdd_center_terms(self)
        offset = self._calibrated_offset(X, X_cal)
        if offset is not None:  # the calibrated sphere: r^2 = -offset
            self.radius2_ = -offset
            self.offset_ = offset
        self._store_reference(X)
        return self

    def _check_own(self) -> None:
        radius2 = fitted_number(self, "radius2_")
        fitted_number(self, "center_norm2_")
        if self.offset_ != -radius2:
            raise refuse(self, "offset_", "must be -radius2_")
        if not isinstance(getattr(self, "constant_self_kernel_", None), (bool, np.bool_)):
            raise refuse(self, "constant_self_kernel_", "must be a bool")
        terms = getattr(self, "center_dimension_terms_", None)
        if not isinstance(terms, list) or len(terms) != len(self.kernels_):
            raise refuse(self, "center_dimension_terms_", "must be a list with one entry per channel")
        for u, (kernel, s) in enumerate(zip(self.kernels_, self.channel_slices_)):
            name = f"center_dimension_terms_[{u}]"
            if kernel.decomposable:
                fitted_array(self, name, shape=(int(s.stop - s.start),), value=terms[u])
            elif terms[u] is not None:
                raise refuse(self, name, "must be None (the kernel is not sum-decomposable)")

    def dimension_relevance(self, x, task: int = 0, sign: float = -1.0, rule=None):
        """Relevance of the feature dimensions of ``x`` (V,) for ``sign * f(x)``: a DimensionRelevance
        (the per-dimension squared distance to the centre, eq. A.13)."""
        return svdd_relevance(self, x, task, sign, rule)

    def self_kernel(self, X) -> np.ndarray:
        """``k(x, x) = sum_u beta_u k_u(x^(u), x^(u))`` (n,)."""
        out = np.zeros(X.shape[0])
        for u, (kern, s) in enumerate(zip(self.kernels_, self.channel_slices_)):
            out += self.kernel_weights_[0, u] * self_kernel(kern, X[:, s])
        return out

    def score_samples(self, X) -> np.ndarray:
        """``-a(x)``, minus the squared distance to the centre in feature space (n,)."""
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return -(self.self_kernel(X) - 2.0 * self._expansion(X) + self.center_norm2_)


__all__ = ["INLIER", "OUTLIER", "KernelSVDD", "OneClassKernelSVM", "self_kernel"]
