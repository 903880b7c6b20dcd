"""The encoder stage interface shared by word mappings and Fisher vectors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils.fitted import fitted_number, prefixed, refuse
from .._utils.validation import check_1d_finite
from ..descriptors.geometry import Descriptors
from ..rules import AbsZ, AlphaBeta, Epsilon
from .pooling import (
    MAX_PYRAMID_CELLS,
    MAX_PYRAMID_SIDE,
    check_pyramid,
    normalize,
    parse_normalization,
    pyramid_cells,
)


def as_descriptor_list(X) -> list[Descriptors]:
    """Accept one Descriptors or a list of them."""
    if isinstance(X, Descriptors):
        return [X]
    if isinstance(X, (list, tuple)) and all(isinstance(d, Descriptors) for d in X):
        return list(X)
    raise TypeError(
        "encoders take a list of Descriptors (the output of an extractor such as "
        f"DenseSIFT.transform), got {type(X).__name__}"
    )


@dataclass
class EncodingTrace:
    """What the forward pass of one image leaves for the relevance pass.

    Attributes
    ----------
    cell_ids : ndarray (N, L) int64
        Global pyramid cell of each descriptor per level.
    cell_counts : ndarray (C,) int64
        Descriptors per cell ``N_c``.
    pooled : ndarray (V,) float64
        Un-normalised pooled statistics ``z_d = sum_l z_ld`` (max pooling: the maxima).
    output : ndarray (V,) float64
        The encoder's output (after the p-th root and normalisation).
    codes : dict
        Mapping-specific per-descriptor codes (word indices and weights, or
        projected descriptors and sparse posteriors); never an N x V matrix.
    """

    cell_ids: np.ndarray
    cell_counts: np.ndarray
    pooled: np.ndarray
    output: np.ndarray
    codes: dict = field(default_factory=dict)

    @property
    def n_descriptors(self) -> int:
        return self.cell_ids.shape[0]


class Encoder(TransformerMixin, BaseEstimator):
    """Base of all layer-3 stages: map descriptors, pool per pyramid cell, normalise.

    Subclasses implement ``_make_vocabulary``, ``_block_size``, ``compute_codes``
    (per-descriptor mapping codes), ``pooled_sums`` (the pooled statistics of
    any subset of descriptors), ``take_codes`` / ``put_codes`` (rows of codes)
    and, for the relevance pass, ``_descriptor_relevance``. Sum and p-means
    pooling are additive over descriptors, which incremental re-encoding
    (``bowlrp.evaluation``) relies on; max pooling is not (``additive_pooling``).
    """

    _default_normalization = "l1"
    #: whether ``relevance(..., per_dimension=True)`` gives relevance per descriptor
    #: dimension (Fisher vectors, differentiable in the descriptor; thesis D.1)
    has_dimension_relevance: bool = False
    #: the class of ``vocabulary_`` (what ``check_fitted`` accepts)
    _vocabulary_type: type = BaseEstimator

    def offers_dimension_relevance(self, rule) -> bool:
        """Whether ``relevance(..., rule, per_dimension=True)`` is available under the
        descriptor rule ``rule`` (word mappings: only under ``Neon``)."""
        return self.has_dimension_relevance

    def projected_descriptors(self, trace) -> np.ndarray | None:
        """The descriptors after the vocabulary's PCA as this image's forward pass computed
        them, ``(N, P)``, when the trace keeps them (None: not kept; the PCA backward pass
        then projects again)."""
        return None

    # -- sklearn API -------------------------------------------------------
    def fit(self, X, y=None):
        """Fit the vocabulary on a list of Descriptors (one per image)."""
        sets = as_descriptor_list(X)
        if not sets:
            raise ValueError("cannot fit an encoder on an empty list of images")
        self._check_params()
        self.levels_ = check_pyramid(self.pyramid)
        self.normalization_steps_ = parse_normalization(self.normalization)
        self.n_cells_ = sum(r * c for r, c in self.levels_)
        self.vocabulary_ = self._make_vocabulary().fit(sets)
        self.n_descriptor_features_ = sets[0].n_features
        self.block_size_ = self._block_size()
        self.n_features_out_ = self.n_cells_ * self.block_size_
        return self

    def check_fitted(self, where: str | None = None) -> None:
        """Refuse fitted attributes the forward and relevance passes cannot use safely.

        The parameters (as ``fit`` checks them, plus a finite positive ``power``); the
        pyramid ``levels_`` (pairs of integers in 1 .. :data:`MAX_PYRAMID_SIDE`, at most
        :data:`MAX_PYRAMID_CELLS` cells, equal to ``pyramid``) and ``n_cells_``; the
        normalisation steps; the vocabulary (its type and its own ``check_fitted``); and
        the sizes that follow from them: ``n_descriptor_features_`` equals the
        vocabulary's input dimension, ``block_size_`` the mapping's block and
        ``n_features_out_ = n_cells_ * block_size_``. An unfitted encoder passes. Cost
        O(size of the attributes), no forward pass.

        Parameters
        ----------
        where : str or None
            Prefix of the message, e.g. the model file's name.

        Raises
        ------
        ModelFileError
            One line naming the attribute, e.g. ``RankMapping.levels_ has a level of 20000 x 20000``.
        """
        if "vocabulary_" not in self.__dict__:
            return
        with prefixed(where):
            try:
                self._check_params()
            except (TypeError, ValueError, OverflowError) as exc:
                raise refuse(self, "parameters", f"are invalid: {str(exc).strip().splitlines()[0]}") from None
            fitted_number(self, "power", low=0.0, strict=True)
            n_cells = self._check_levels()
            try:
                steps = parse_normalization(self.normalization)
            except ValueError:
                raise refuse(
                    self, "normalization", f"is not a normalisation: {self.normalization!r}"
                ) from None
            if tuple(getattr(self, "normalization_steps_", ())) != steps or not isinstance(
                self.normalization_steps_, tuple
            ):
                raise refuse(self, "normalization_steps_", f"must be {steps} (from normalization)")
            vocabulary = self.vocabulary_
            if not isinstance(vocabulary, self._vocabulary_type):
                raise refuse(
                    self,
                    "vocabulary_",
                    f"must be a {self._vocabulary_type.__name__}, got {type(vocabulary).__name__}",
                )
            vocabulary.check_fitted()
            n_in = fitted_number(self, "n_descriptor_features_", integer=True, low=1)
            if n_in != vocabulary.n_features_in_:
                raise refuse(
                    self,
                    "n_descriptor_features_",
                    f"is {n_in}, the vocabulary takes {vocabulary.n_features_in_}",
                )
            block = fitted_number(self, "block_size_", integer=True, low=1)
            if block != self._block_size():
                raise refuse(self, "block_size_", f"is {block}, the vocabulary gives {self._block_size()}")
            n_out = fitted_number(self, "n_features_out_", integer=True, low=1)
            if n_out != n_cells * block:
                raise refuse(self, "n_features_out_", f"is {n_out}, expected {n_cells} cells x {block}")

    def _check_levels(self) -> int:
        """Check ``levels_`` and ``n_cells_`` (ModelFileError); return the number of cells."""
        levels = getattr(self, "levels_", None)
        if not isinstance(levels, (tuple, list)) or not levels or len(levels) > MAX_PYRAMID_CELLS:
            raise refuse(self, "levels_", "must be a non-empty tuple of (rows, cols) levels")
        for level in levels:
            if not (
                isinstance(level, (tuple, list))
                and len(level) == 2
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in level)
            ):
                raise refuse(self, "levels_", f"holds {level!r}, not a pair of integers")
            if not all(1 <= v <= MAX_PYRAMID_SIDE for v in level):
                raise refuse(
                    self,
                    "levels_",
                    f"has a level of {level[0]} x {level[1]}; sides must lie in 1 .. {MAX_PYRAMID_SIDE}",
                )
        n_cells = sum(int(r) * int(c) for r, c in levels)
        if n_cells > MAX_PYRAMID_CELLS:
            raise refuse(self, "levels_", f"has {n_cells} cells, more than {MAX_PYRAMID_CELLS}")
        try:
            expected = check_pyramid(self.pyramid)
        except ValueError:
            raise refuse(self, "pyramid", f"is not a pyramid: {self.pyramid!r}") from None
        if tuple(tuple(int(v) for v in level) for level in levels) != expected:
            raise refuse(self, "levels_", f"are {levels}, the pyramid parameter gives {expected}")
        if fitted_number(self, "n_cells_", integer=True) != n_cells:
            raise refuse(self, "n_cells_", f"is {self.n_cells_}, levels_ have {n_cells} cells")
        return n_cells

    def transform(self, X) -> np.ndarray:
        """Encoded images, shape (n_images, n_features_out_)."""
        return self.forward(X)[0]

    def forward(self, X) -> tuple[np.ndarray, list[EncodingTrace]]:
        """Encode images and keep, per image, what the relevance pass needs.

        Returns
        -------
        Y : ndarray, shape (n_images, n_features_out_)
        traces : list of EncodingTrace
        """
        check_is_fitted(self, "vocabulary_")
        sets = as_descriptor_list(X)
        out = np.empty((len(sets), self.n_features_out_))
        traces = []
        for i, d in enumerate(sets):
            out[i], trace = self.encode_one(d)
            traces.append(trace)
        return out, traces

    def encode_one(self, descriptors: Descriptors) -> tuple[np.ndarray, EncodingTrace]:
        """Forward pass of one image: (output vector (V,), trace)."""
        if descriptors.n_features != self.n_descriptor_features_:
            raise ValueError(
                f"descriptors have {descriptors.n_features} dimensions, the vocabulary was "
                f"fitted on {self.n_descriptor_features_}"
            )
        if len(descriptors) == 0:
            raise ValueError("an image without descriptors cannot be encoded")
        cell_ids, n_cells = pyramid_cells(descriptors.centers, descriptors.image_shape, self.levels_)
        counts = np.bincount(cell_ids.ravel(), minlength=n_cells).astype(np.int64)
        codes = self.compute_codes(descriptors.data)
        pooled = self.pooled_sums(codes, cell_ids, counts)
        codes.update(self._extra_codes(codes, cell_ids, counts))
        x = self.finish(pooled)
        return x, EncodingTrace(cell_ids, counts, pooled, x, codes)

    def finish(self, pooled: np.ndarray) -> np.ndarray:
        """Output vector from pooled statistics: p-th root (p-means) and normalisation."""
        return normalize(
            self._finish_pooling(pooled),
            self.normalization_steps_,
            self.n_cells_,
            getattr(self, "power", 0.5),
        )

    def finish_exponent(self) -> float | None:
        """``e`` such that :meth:`finish` is ``normalize(sign(z) |z|^e)``, or None if it is not.

        Lets incremental re-encoding keep ``w . finish(z)`` up to date per chunk of
        dimensions (:class:`~bowlrp.encoding.pooling.LinearScore`).
        """
        same = type(self).finish is Encoder.finish and type(self)._finish_pooling is Encoder._finish_pooling
        return 1.0 if same else None

    @property
    def additive_pooling(self) -> bool:
        """Whether pooled statistics are sums over descriptors (not max pooling)."""
        return True

    def pooled_delta(
        self, old_codes: dict, new_codes: dict, cell_ids: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        """Change of the pooled statistics when descriptors' codes go from old to new.

        ``sum_{l} z_ld(new) - z_ld(old)`` over the given descriptors (same ``cell_ids``
        for both), for additive pooling. Subclasses may do it in one pass.
        """
        return self.pooled_sums(new_codes, cell_ids, counts) - self.pooled_sums(old_codes, cell_ids, counts)

    def support_counts(self, codes: dict, cell_ids: np.ndarray) -> np.ndarray:
        """Integer count of contributing descriptors per (cell, word or component) group.

        With :meth:`clear_unsupported` this lets incremental updates return exact
        zeros where the last contribution was removed (instead of rounding residue).
        """
        raise NotImplementedError

    def clear_unsupported(self, pooled: np.ndarray, support: np.ndarray) -> np.ndarray:
        """Set the dimensions of groups without contributions to exactly 0 (in place)."""
        raise NotImplementedError

    def _extra_codes(self, codes, cell_ids, counts) -> dict:
        return {}

    def _finish_pooling(self, pooled: np.ndarray) -> np.ndarray:
        return pooled

    def default_rule(self):
        """The rule used when none is given: ``Epsilon(0)`` (max pooling: ``WinnerTakeAll``)."""
        return Epsilon(0.0)

    def relevance(self, R, trace: EncodingTrace, rule=None, per_dimension: bool = False):
        """Relevance of each descriptor from the relevance of the pooled dimensions.

        Implements docs/math.md §2, step 2: with ``z_ld = m_d(l)^p / N_c`` and
        ``c_d = R_d / (z_d + eps sign z_d)``, ``R_l = sum_d z_ld c_d`` (or the
        AlphaBeta / AbsZ / WinnerTakeAll variants), plus ``R_d / N`` for every
        dimension no descriptor reached. Cost: one pass over the descriptors'
        sparse codes; no N x V matrix.

        Parameters
        ----------
        R : array_like (V,)
            Relevance of this encoder's output dimensions.
        trace : EncodingTrace
            From :meth:`forward` / :meth:`encode_one` of the same image.
        rule : rule object or None
        per_dimension : bool
            Also return the relevance per descriptor dimension (N, D) where the
            mapping allows it (Fisher vectors; thesis D.1).

        Returns
        -------
        ndarray (N,), or (ndarray (N,), ndarray (N, D)) with ``per_dimension``.
        """
        check_is_fitted(self, "vocabulary_")
        R = check_1d_finite(R, self.n_features_out_, "R")
        if trace.pooled.shape != (self.n_features_out_,):
            raise ValueError("trace does not come from this encoder")
        rule = self.default_rule() if rule is None else rule
        return self._descriptor_relevance(R, trace, rule, per_dimension)

    def _check_params(self) -> None:
        pass

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def coefficients_from_rule(
    R: np.ndarray,
    pooled: np.ndarray,
    reached: np.ndarray,
    positive: np.ndarray | None,
    negative: np.ndarray | None,
    rule,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-dimension coefficients ``(a_d, b_d)`` and the uniform share ``u`` of a rule.

    The descriptor relevance is then ``R_l = sum_d [a_d max(z_ld, 0) + b_d min(z_ld, 0)] + u``
    with ``u = sum_{d not reached} R_d / N`` added to every descriptor.

    Parameters
    ----------
    R : (V,) relevance of the pooled dimensions
    pooled : (V,) ``z_d = sum_l z_ld``
    reached : (V,) bool, some ``z_ld != 0``
    positive, negative : (V,) ``sum_l max(z_ld, 0)`` and ``sum_l min(z_ld, 0)`` (only for
        AlphaBeta / AbsZ)
    """
    a = np.zeros_like(R)
    b = np.zeros_like(R)
    if isinstance(rule, Epsilon):
        sign = np.where(pooled >= 0, 1.0, -1.0)
        denom = pooled + rule.stabiliser(pooled, reached) * sign
        ok = reached & (denom != 0)
        a[ok] = R[ok] / denom[ok]
        b[ok] = a[ok]
        uniform = R[~ok].sum()
    elif isinstance(rule, AlphaBeta):
        has_pos = reached & (positive > 0)
        has_neg = reached & (negative < 0)
        both = has_pos & has_neg
        only_pos = has_pos & ~has_neg
        only_neg = has_neg & ~has_pos
        a[both] = rule.alpha * R[both] / positive[both]
        b[both] = -rule.beta * R[both] / negative[both]
        a[only_pos] = R[only_pos] / positive[only_pos]
        b[only_neg] = R[only_neg] / negative[only_neg]
        uniform = R[~(has_pos | has_neg)].sum()
    elif isinstance(rule, AbsZ):
        total = positive - negative
        ok = reached & (total > 0)
        a[ok] = R[ok] / total[ok]
        b[ok] = -a[ok]
        uniform = R[~ok].sum()
    else:  # pragma: no cover - guarded by callers
        raise TypeError(rule)
    return a, b, float(uniform)
