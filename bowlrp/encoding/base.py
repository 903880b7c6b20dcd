"""The encoder stage interface shared by word mappings and Fisher vectors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..descriptors.geometry import Descriptors
from .pooling import check_pyramid, normalize, parse_normalization, pyramid_cells


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


class Encoder(BaseEstimator, TransformerMixin):
    """Base of all layer-3 stages: map descriptors, pool per pyramid cell, normalise.

    Subclasses implement ``_make_vocabulary``, ``_block_size``, ``_encode``
    and (for the relevance pass) ``_descriptor_relevance``.
    """

    _default_normalization = "l1"

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
        cell_ids, n_cells = pyramid_cells(descriptors.centers, descriptors.image_shape,
                                          self.levels_)
        counts = np.bincount(cell_ids.ravel(), minlength=n_cells).astype(np.int64)
        pooled, codes = self._encode(descriptors, cell_ids, counts)
        x = normalize(self._finish_pooling(pooled), self.normalization_steps_, n_cells,
                      getattr(self, "power", 0.5))
        return x, EncodingTrace(cell_ids, counts, pooled, x, codes)

    def _finish_pooling(self, pooled: np.ndarray) -> np.ndarray:
        return pooled

    def _check_params(self) -> None:
        pass

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
