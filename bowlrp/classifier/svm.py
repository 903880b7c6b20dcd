"""Kernel SVMs as explicit dual expansions, with multiple kernel learning.

The fitted model is the expansion

    f_t(x) = b_t + sum_u beta_{t,u} sum_i a_{t,i} k_u(s_i^(u), x^(u))

for every binary task ``t`` (one for binary problems, one per class for
one-vs-rest, one per label for multi-label), over the union of all support
vectors ``s_i``. ``decision_function`` and the relevance pass read the same
arrays, so what is explained is exactly what is predicted.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from .._utils.fitted import fitted_array, fitted_number, prefixed, refuse
from .._utils.mapped import all_finite, blocks, release_pages
from .kernels import Kernel, Linear, _as_2d, make_kernel
from .mkl import fit_binary
from .relevance import classifier_relevance

_FLOAT_TYPES = (np.float64, np.float32)


class KernelChannelsMixin:
    """Feature channels (``channel_sizes``) and one kernel per channel (``kernel``)."""

    def fit_kernels(self, X):
        """Fit the channels' kernels (their widths) on ``X`` (n, n_features): sets
        ``channel_slices_`` and ``kernels_`` (the first step of ``fit``); returns self."""
        X = np.asarray(X)
        self.channel_slices_ = self._channel_slices(X.shape[1])
        self.kernels_ = [
            k.fit(X[:, s]) for k, s in zip(self._kernel_list(len(self.channel_slices_)), self.channel_slices_)
        ]
        return self

    def _channel_slices(self, n_features: int) -> list[slice]:
        if self.channel_sizes is None:
            return [slice(0, n_features)]
        sizes = [int(s) for s in self.channel_sizes]
        if sum(sizes) != n_features or min(sizes) < 1:
            raise ValueError(f"channel_sizes {sizes} must be positive and sum to the {n_features} features")
        ends = np.cumsum(sizes)
        return [slice(int(e - s), int(e)) for s, e in zip(sizes, ends)]

    def _check_expansion(self, n_tasks: int) -> None:
        """Check the dual expansion's fitted attributes for ``n_tasks`` tasks (ModelFileError).

        Channels (contiguous slices covering ``n_features_in_``, one fitted kernel each,
        matching ``channel_sizes`` when set), non-negative kernel weights (n_tasks, U) with
        a positive sum per task, finite support vectors, dual coefficients (n_tasks, n_sv),
        reference points and candidate decisions. O(size of the attributes).
        """
        n_features = fitted_number(self, "n_features_in_", integer=True, low=1)
        slices = getattr(self, "channel_slices_", None)
        if not isinstance(slices, list) or not slices or not all(isinstance(s, slice) for s in slices):
            raise refuse(self, "channel_slices_", "must be a non-empty list of slices")
        end = 0
        for s in slices:
            ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (s.start, s.stop))
            if not ok or s.step not in (None, 1) or s.start != end or s.stop <= s.start:
                raise refuse(self, "channel_slices_", "must be contiguous non-empty slices from 0")
            end = int(s.stop)
        if end != n_features:
            raise refuse(self, "channel_slices_", f"cover {end} features, n_features_in_ is {n_features}")
        widths = [int(s.stop - s.start) for s in slices]
        if self.channel_sizes is not None:
            try:
                sizes = [int(v) for v in self.channel_sizes]
            except (TypeError, ValueError):
                raise refuse(self, "channel_sizes", "must be a list of integers") from None
            if sizes != widths:
                raise refuse(self, "channel_slices_", f"have widths {widths}, channel_sizes is {sizes}")
        kernels = getattr(self, "kernels_", None)
        if not isinstance(kernels, list) or len(kernels) != len(slices):
            raise refuse(self, "kernels_", f"must be a list of {len(slices)} kernels (one per channel)")
        for kernel in kernels:
            if not isinstance(kernel, Kernel):
                raise refuse(self, "kernels_", f"holds a {type(kernel).__name__}, not a Kernel")
            kernel.check_fitted()
        weights = fitted_array(self, "kernel_weights_", shape=(n_tasks, len(slices)), low=0.0)
        if np.any(weights.sum(axis=1) <= 0):
            raise refuse(self, "kernel_weights_", "has a task whose kernel weights are all zero")
        support = fitted_array(self, "support_vectors_", shape=(None, n_features))
        for kernel, s in zip(kernels, slices):
            if kernel.needs_non_negative and support[:, s].size and support[:, s].min() < 0:
                raise refuse(
                    self,
                    "support_vectors_",
                    f"holds {support[:, s].min():.3g} in a channel of the {kernel.name} kernel, "
                    "which needs non-negative features",
                )
        n_sv = support.shape[0]
        fitted_array(self, "dual_coef_", shape=(n_tasks, n_sv))
        reference = fitted_array(self, "reference_X_", shape=(None, n_features))
        fitted_array(self, "candidate_decisions_", shape=(len(reference) + n_sv, n_tasks))

    def _kernel_list(self, n_channels: int) -> list[Kernel]:
        spec = self.kernel
        if isinstance(spec, (list, tuple)):
            if len(spec) != n_channels:
                raise ValueError(f"{len(spec)} kernels given for {n_channels} channels")
            return [clone(make_kernel(k)) for k in spec]
        return [clone(make_kernel(spec)) for _ in range(n_channels)]


def _rows_copy(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``X[rows]`` (a copy), gathered in blocks; a memory-mapped ``X``'s pages released after each."""
    out = np.empty((len(rows), X.shape[1]), dtype=X.dtype)
    for start, stop in blocks(len(rows), X.shape[1] * X.itemsize):
        out[start:stop] = X[rows[start:stop]]
        release_pages(X)
    return out


class KernelSVC(KernelChannelsMixin, ClassifierMixin, BaseEstimator):
    """Kernel SVM (libsvm through scikit-learn) with lp-norm MKL over feature channels.

    Parameters
    ----------
    kernel : str, Kernel, or list of them
        One kernel for all channels or one per channel (see ``bowlrp.classifier.kernels``).
    C : float
        SVM regularisation.
    channel_sizes : list of int or None
        Split of the feature columns into channels, one kernel each; None is one channel.
    mkl_norm : "uniform" or float >= 1
        Kernel weights: uniform ``1/U``, or learned with lp-norm MKL (``1`` sparse, ``2``...).
    mkl_max_iter, mkl_tol : int, float
        MKL iterations and stopping tolerance on the weights.
    class_weight : dict, "balanced" or None
        Passed to libsvm per binary task.
    n_reference : int
        Training samples kept (with their decision values) as candidate points
        for the Taylor root search of differentiable kernels.
    random_state : int or None
        Draws the reference set.

    Attributes
    ----------
    classes_ : ndarray
    support_vectors_ : ndarray (n_sv, n_features)
    dual_coef_ : ndarray (n_tasks, n_sv)
        ``a_{t,i} = alpha_{t,i} y_{t,i}`` (zero where a vector is not a support vector of task t).
    intercept_ : ndarray (n_tasks,)
    kernel_weights_ : ndarray (n_tasks, n_channels)
    kernels_ : list of fitted Kernel
    channel_slices_ : list of slice
    reference_X_ : ndarray (n_ref, n_features)
    """

    def __init__(
        self,
        kernel="hik",
        C: float = 1.0,
        channel_sizes=None,
        mkl_norm="uniform",
        mkl_max_iter: int = 50,
        mkl_tol: float = 1e-3,
        class_weight=None,
        n_reference: int = 200,
        random_state=None,
    ):
        self.kernel = kernel
        self.C = C
        self.channel_sizes = channel_sizes
        self.mkl_norm = mkl_norm
        self.mkl_max_iter = mkl_max_iter
        self.mkl_tol = mkl_tol
        self.class_weight = class_weight
        self.n_reference = n_reference
        self.random_state = random_state

    # -- helpers -------------------------------------------------------------
    def _tasks(self, y):
        kind = type_of_target(y)
        if kind == "multilabel-indicator":
            Y = np.asarray(y).astype(int)
            self.classes_ = np.arange(Y.shape[1])
            self.multilabel_ = True
            return [Y[:, t] for t in range(Y.shape[1])]
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"Unknown label type {kind!r}: give class labels or a multi-label indicator matrix"
            )
        self.multilabel_ = False
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least 2 classes, got {len(self.classes_)} class")
        if len(self.classes_) == 2:
            return [(y == self.classes_[1]).astype(int)]
        return [(y == c).astype(int) for c in self.classes_]

    # -- sklearn API -------------------------------------------------------------
    def check_fitted(self, where: str | None = None) -> None:
        """Refuse fitted attributes the decision and relevance passes cannot use safely.

        Checks dtypes, shapes and values of every fitted attribute against each other and
        the parameters: ``classes_`` a 1-D array of distinct str/int labels matching the
        number of tasks, finite ``intercept_`` and ``dual_coef_``, non-negative
        ``kernel_weights_``, and the channels (see ``_check_expansion``). An unfitted model
        passes (using it raises ``NotFittedError``). Cost O(size of the attributes).

        Parameters
        ----------
        where : str or None
            Prefix of the message, e.g. the model file's name.

        Raises
        ------
        ModelFileError
            One line naming the attribute, e.g. ``KernelSVC.intercept_ holds NaN``.
        """
        if "dual_coef_" not in self.__dict__:
            return
        with prefixed(where):
            multilabel = getattr(self, "multilabel_", None)
            if not isinstance(multilabel, (bool, np.bool_)):
                raise refuse(self, "multilabel_", f"must be a bool, got {type(multilabel).__name__}")
            classes = fitted_array(self, "classes_", kinds="Uiub", shape=(None,))
            if len(np.unique(classes)) != len(classes) or len(classes) < (1 if multilabel else 2):
                raise refuse(self, "classes_", f"must hold distinct labels, got {len(classes)} of them")
            dual = fitted_array(self, "dual_coef_", shape=(None, None))
            n_tasks = len(classes) if (multilabel or len(classes) > 2) else 1
            if dual.shape[0] != n_tasks:
                raise refuse(self, "dual_coef_", f"has {dual.shape[0]} tasks for {len(classes)} classes")
            self._check_expansion(n_tasks)
            fitted_array(self, "intercept_", shape=(n_tasks,))
            fitted_array(self, "support_", kinds="iu", shape=(dual.shape[1],))
            for name, kinds in (("mkl_n_iter_", "iu"), ("mkl_converged_", "b")):
                if name in self.__dict__:
                    fitted_array(self, name, kinds=kinds, shape=(n_tasks,))

    def fit(self, X, y, task_mask=None, compress_linear: bool | str = False):
        """Fit one (MKL) SVM per binary task on features ``X`` (n, n_features).

        ``task_mask`` (n, n_tasks) bool, optional: the rows each task trains on
        (e.g. PASCAL VOC leaves a class's "difficult" images out of that class
        only). The Gram matrices are computed once for all rows and tasks.
        ``compress_linear=True`` (linear kernels only) ends the fit as
        :meth:`compress_linear` does, with the same bits, but builds the weight vectors
        from ``X`` in blocks of support rows, never holding a copy of the support
        vectors (at VOC scale, most of the float32 features); ``"auto"``: when every
        kernel is linear.
        Equal to :meth:`fit_kernels` then :meth:`fit_from_grams` with the Gram
        matrices of the fitted kernels (a cluster computes them in tiles:
        :mod:`bowlrp.runs.train_dask`).
        """
        # float32 features (large data sets) stay float32: Gram matrices are built in
        # float64 blocks (kernels.blocked_inner), never from a float64 copy of X.
        X, y = self._validated(X, y)
        self.fit_kernels(X)
        grams = [k.gram(X[:, s]) for k, s in zip(self.kernels_, self.channel_slices_)]
        return self._fit_from_grams(X, y, grams, task_mask, compress_linear)

    def _validated(self, X, y):
        # the finiteness check in row blocks (a memory-mapped X's pages released after each)
        X, y = validate_data(self, X, y, dtype=_FLOAT_TYPES, multi_output=True, ensure_all_finite=False)
        if not all_finite(X):
            raise ValueError("Input X contains NaN or infinity.")
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected",
                DataConversionWarning,
                stacklevel=3,
            )
            y = y.ravel()
        if isinstance(self.mkl_norm, str) and self.mkl_norm != "uniform":
            raise ValueError(f"mkl_norm must be 'uniform' or a number >= 1, got {self.mkl_norm!r}")
        return X, y

    def fit_from_grams(
        self, X, y, grams: list[np.ndarray], task_mask=None, compress_linear: bool | str = False
    ) -> KernelSVC:
        """The second half of :meth:`fit`: libsvm per task on given training Gram matrices.

        Parameters
        ----------
        X : ndarray (n, n_features) float32 or float64
            The training features (support vectors and reference rows are kept).
        y : ndarray (n,) labels, or (n, n_tasks) multi-label indicators
        grams : list of ndarray (n, n) float64, one per channel
            ``K_u[i, j] = k_u(x_i^(u), x_j^(u))`` with the kernels :meth:`fit_kernels` fitted.
        task_mask : ndarray (n, n_tasks) bool or None
            The rows each task trains on.
        compress_linear : bool
            As :meth:`fit`.
        """
        check_is_fitted(self, ("kernels_", "channel_slices_"))
        X, y = self._validated(X, y)
        return self._fit_from_grams(X, y, grams, task_mask, compress_linear)

    def _fit_from_grams(self, X, y, grams, task_mask, compress_linear: bool | str = False):
        linear = all(isinstance(k, Linear) for k in self.kernels_)
        if compress_linear == "auto":
            compress_linear = linear
        elif not isinstance(compress_linear, bool):
            raise ValueError(f"compress_linear must be True, False or 'auto', got {compress_linear!r}")
        if compress_linear and not linear:
            raise ValueError("compress_linear needs linear kernels on every channel")
        tasks = self._tasks(y)
        n = X.shape[0]
        if len(grams) != len(self.channel_slices_) or any(np.shape(G) != (n, n) for G in grams):
            raise ValueError(f"need {len(self.channel_slices_)} Gram matrices of shape {(n, n)}")
        if task_mask is not None:
            task_mask = np.asarray(task_mask, dtype=bool)
            if task_mask.shape != (n, len(tasks)):
                raise ValueError(f"task_mask must have shape {(n, len(tasks))}, got {task_mask.shape}")
        solutions = []
        for t, y01 in enumerate(tasks):
            rows = slice(None) if task_mask is None else np.flatnonzero(task_mask[:, t])
            if np.unique(y01[rows]).size < 2:
                raise ValueError("every class/label needs positive and negative training samples")
            sub = grams if task_mask is None else [G[np.ix_(rows, rows)] for G in grams]
            solution = fit_binary(
                sub,
                y01[rows],
                self.C,
                self.mkl_norm,
                max_iter=self.mkl_max_iter,
                tol=self.mkl_tol,
                class_weight=self._task_class_weight(t),
            )
            if task_mask is not None:
                full = np.zeros(n)
                full[rows] = solution.dual
                solution.dual = full
            solutions.append(solution)
        duals = np.vstack([s.dual for s in solutions])
        support = np.flatnonzero(np.any(duals != 0, axis=0))
        self.support_ = support
        self.dual_coef_ = duals[:, support]
        self.intercept_ = np.array([s.intercept for s in solutions])
        self.kernel_weights_ = np.vstack([s.kernel_weights for s in solutions])
        self.mkl_n_iter_ = np.array([s.n_iter for s in solutions])
        self.mkl_converged_ = np.array([s.converged for s in solutions])
        rng = check_random_state(self.random_state)
        ref = rng.choice(n, min(n, int(self.n_reference)), replace=False)
        self.reference_X_ = _rows_copy(X, np.sort(ref))
        # Decisions of the candidates (training rows) from the training Gram matrices:
        # no second pass over the features (at VOC scale that pass costs as much as the Gram).
        rows = np.concatenate([np.sort(ref), support])
        F = np.tile(self.intercept_, (len(rows), 1))
        for u, G in enumerate(grams):
            F += (G[np.ix_(rows, support)] @ self.dual_coef_.T) * self.kernel_weights_[:, u][None, :]
        self.candidate_decisions_ = F
        if compress_linear:
            self._set_linear_weights(self._weights_from_rows(X, support))
        else:
            self.support_vectors_ = _rows_copy(X, support)
        return self

    def _weights_from_rows(self, X, rows) -> np.ndarray:
        """``W = dual_coef_ @ X[rows]`` in float64 (n_tasks, n_features), 32 rows at a time.

        :meth:`compress_linear` and ``fit(..., compress_linear=True)`` both sum this way, so
        they give the same bits. Working memory: one float64 block of 32 rows (84 MB for
        327,680 features); a memory-mapped ``X``'s pages are released after each block.
        """
        W = np.zeros((self.dual_coef_.shape[0], X.shape[1]))
        step = 32
        for start in range(0, len(rows), step):
            W += self.dual_coef_[:, start : start + step] @ X[rows[start : start + step]].astype(np.float64)
            release_pages(X)
        return W

    def _set_linear_weights(self, W: np.ndarray) -> None:
        """Make ``W`` (n_tasks, n_features) the expansion: ``dual_coef_ = I``, candidates recomputed."""
        self.support_vectors_ = W
        self.dual_coef_ = np.eye(self.n_tasks_)
        self.support_ = np.full(self.n_tasks_, -1)
        ref = self.reference_X_
        step = max(1, (1 << 26) // (8 * max(1, ref.shape[1])))  # 64 MB of float64 candidates at a time
        parts = [
            self.decision_function(ref[i : i + step].astype(np.float64)) for i in range(0, len(ref), step)
        ]
        parts.append(self.decision_function(W))
        self.candidate_decisions_ = np.concatenate([np.reshape(f, (len(f), -1)) for f in parts])

    def compress_linear(self):
        """Replace the support vectors by one weight vector per task (linear kernels only).

        For linear kernels ``sum_i a_{t,i} <s_i, x> = <w_t, x>`` with
        ``w_t = sum_i a_{t,i} s_i``, so the expansion over ``n_sv`` vectors
        becomes one over ``n_tasks`` vectors ``w_t`` (float64) with
        ``dual_coef_ = I``: decisions and the exact decomposition
        ``R_d = w_{t,d} x_d`` are unchanged, and a VOC Fisher-vector model
        shrinks from ``n_sv x 327,680`` floats to one row. Returns self.
        """
        check_is_fitted(self, "dual_coef_")
        if not all(isinstance(k, Linear) for k in self.kernels_):
            raise ValueError("compress_linear needs linear kernels on every channel")
        sv = self.support_vectors_
        self._set_linear_weights(self._weights_from_rows(sv, np.arange(len(sv))))
        return self

    def linear_weights(self, task: int) -> tuple[np.ndarray, float] | None:
        """``(w, b)`` with ``f_task(x) = w . x + b``, or None unless every kernel is linear.

        ``w`` restricted to channel ``u`` is ``beta_{t,u} sum_i a_{t,i} s_i^(u)`` (float64),
        so one dot product gives the decision of a linear model (equal to
        :meth:`decision_function` up to the order of the sums).
        """
        check_is_fitted(self, "dual_coef_")
        if not all(isinstance(k, Linear) for k in self.kernels_):
            return None
        a = self.dual_coef_[task]
        w = np.zeros(self.support_vectors_.shape[1])
        step = 256
        for start in range(0, len(a), step):
            w += a[start : start + step] @ self.support_vectors_[start : start + step].astype(np.float64)
        for u, s in enumerate(self.channel_slices_):
            w[s] *= self.kernel_weights_[task, u]
        return w, float(self.intercept_[task])

    def binary_task(self, task: int, name: str, negative: str) -> KernelSVC:
        """A fitted binary classifier for one task: ``classes_ = [negative, name]``.

        Keeps the task's dual expansion (its support vectors only), intercept,
        kernel weights and Taylor candidates, so its decisions equal column
        ``task`` of this model's ``decision_function``. Used to save one model
        per class of a one-vs-rest / multi-label fit.
        """
        check_is_fitted(self, "dual_coef_")
        keep = np.flatnonzero(self.dual_coef_[task] != 0)
        out = clone(self)
        for attr in (
            "n_features_in_",
            "channel_slices_",
            "kernels_",
            "reference_X_",
            "mkl_n_iter_",
            "mkl_converged_",
        ):
            if hasattr(self, attr):
                setattr(out, attr, getattr(self, attr))
        out.classes_ = np.array([negative, name])
        out.multilabel_ = False
        out.support_ = self.support_[keep]
        out.support_vectors_ = self.support_vectors_[keep]
        out.dual_coef_ = self.dual_coef_[task : task + 1, keep]
        out.intercept_ = self.intercept_[task : task + 1]
        out.kernel_weights_ = self.kernel_weights_[task : task + 1]
        out.mkl_n_iter_ = self.mkl_n_iter_[task : task + 1]
        out.mkl_converged_ = self.mkl_converged_[task : task + 1]
        candidates = np.vstack([out.reference_X_, out.support_vectors_])
        out.candidate_decisions_ = out.decision_function(candidates).reshape(-1, 1)
        return out

    def candidate_points(self, task: int, sign: float = 1.0):
        """Reference points and support vectors with their (signed) decision values.

        Returns (points (m, n_features), sign * f_task(points) (m,)), computed once at fit
        time: the Taylor root search starts from them for every explanation.
        """
        check_is_fitted(self, "candidate_decisions_")
        points = np.vstack([self.reference_X_, self.support_vectors_])
        return points, sign * self.candidate_decisions_[:, task]

    def _task_class_weight(self, task: int):
        """libsvm weights of a binary task {0: rest, 1: class} from the user's class_weight."""
        cw = self.class_weight
        if cw is None or cw == "balanced":
            return cw
        if self.multilabel_:
            return {0: 1.0, 1: float(cw.get(task, 1.0))}
        if len(self.classes_) == 2:
            return {0: float(cw.get(self.classes_[0], 1.0)), 1: float(cw.get(self.classes_[1], 1.0))}
        return {0: 1.0, 1: float(cw.get(self.classes_[task], 1.0))}

    def channel_gram(self, X, channel: int) -> np.ndarray:
        """``k_u(x, s_i)`` for channel ``u``: shape (n, n_sv)."""
        s = self.channel_slices_[channel]
        # the support vectors were checked at fit time: only the new rows are validated here
        # (a finiteness pass over n_sv x V values per call was a tenth of a perturbation step)
        support = self.support_vectors_[:, s]
        if not support.flags.c_contiguous:
            support = np.ascontiguousarray(support)
        return self.kernels_[channel]._gram(_as_2d(X[:, s]), support)

    def decision_function(self, X) -> np.ndarray:
        """``f_t(x)``; shape (n,) for binary problems, (n, n_tasks) otherwise."""
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, dtype=_FLOAT_TYPES, reset=False)
        F = np.tile(self.intercept_, (X.shape[0], 1))
        for u in range(len(self.kernels_)):
            G = self.channel_gram(X, u)
            F += (G @ self.dual_coef_.T) * self.kernel_weights_[:, u][None, :]
        if F.shape[1] == 1 and not self.multilabel_:
            return F[:, 0]
        return F

    def predict(self, X) -> np.ndarray:
        F = self.decision_function(X)
        if self.multilabel_:
            return (F > 0).astype(int)
        if F.ndim == 1:
            return self.classes_[(F > 0).astype(int)]
        return self.classes_[np.argmax(F, axis=1)]

    def forward(self, X):
        """Decision values and, as trace, the validated feature matrix: ``(F, X)``."""
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.decision_function(X), X

    def relevance(self, R, trace, rule=None, target=None):
        """Relevance of the feature dimensions of one sample (docs/math.md §2, step 1).

        Parameters
        ----------
        R : float or None
            The relevance to distribute, i.e. ``f(x)`` of the target (checked
            against the model when given).
        trace : ndarray (n_features,)
            The sample's features (a row of the trace of :meth:`forward`).
        rule : Decomposition, Taylor, Neuralized or None
            None: ``Decomposition()`` if every kernel is sum-decomposable, else ``Taylor()``.
        target : class label or None
            None: the predicted class.

        Returns
        -------
        DimensionRelevance
        """
        x = np.asarray(trace, dtype=np.float64).ravel()
        task, sign = self.task_and_sign(x, target)
        out = classifier_relevance(self, x, task, sign, rule)
        if R is not None and not np.isclose(float(R), out.score, rtol=1e-9, atol=1e-12):
            raise ValueError(f"R={R} is not f(x)={out.score} of target {target!r}")
        return out

    def task_and_sign(self, x, target=None) -> tuple[int, float]:
        """Which dual expansion explains ``target`` for sample ``x``, and with which sign."""
        check_is_fitted(self, "dual_coef_")
        if target is None:
            F = self.decision_function(np.asarray(x, dtype=np.float64).reshape(1, -1))
            if self.multilabel_:
                return int(np.argmax(F[0])), 1.0
            if F.ndim == 1:
                return 0, (1.0 if F[0] > 0 else -1.0)
            return int(np.argmax(F[0])), 1.0
        if self.n_tasks_ == 1 and not self.multilabel_:
            if target == self.classes_[1]:
                return 0, 1.0
            if target == self.classes_[0]:
                return 0, -1.0
            raise ValueError(f"unknown target {target!r}; classes are {self.classes_.tolist()}")
        return self.task_index(target), 1.0

    def target_label(self, task: int, sign: float):
        """The class label that ``(task, sign)`` explains."""
        if self.n_tasks_ == 1 and not self.multilabel_:
            return self.classes_[1] if sign > 0 else self.classes_[0]
        return self.classes_[task]

    @property
    def n_tasks_(self) -> int:
        return self.dual_coef_.shape[0]

    def task_index(self, target) -> int:
        """Row of ``dual_coef_`` for a class label (or label index for multi-label).

        For a binary problem the single task explains ``classes_[1]``; asking for
        ``classes_[0]`` is answered with the same task (its relevance negated by the caller).
        """
        check_is_fitted(self, "dual_coef_")
        if self.n_tasks_ == 1:
            return 0
        matches = np.flatnonzero(self.classes_ == target)
        if matches.size == 0:
            raise ValueError(f"unknown target {target!r}; classes are {self.classes_.tolist()}")
        return int(matches[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
