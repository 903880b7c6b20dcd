"""What every descriptor extractor shares: ``forward`` and the pixel step's ``relevance``."""

from __future__ import annotations

import numpy as np

from .geometry import Descriptors


class ExtractorMixin:
    """Layer 2 of the pipeline card: ``forward(images)`` and ``relevance(R, trace, rule)``.

    The trace of one image is its :class:`Descriptors` (data and exact pixel
    geometry), which is all the pixel step needs.
    """

    #: pixel rules this extractor implements besides ``Flat``
    pixel_rules: tuple[type, ...] = ()

    def forward(self, X) -> tuple[list[Descriptors], list[Descriptors]]:
        """Describe images; returns ``(descriptors, traces)``, one of each per image.

        Parameters
        ----------
        X : image, path or list of them

        Returns
        -------
        descriptors : list of Descriptors
        traces : list of Descriptors
            The same objects: the geometry the relevance pass projects onto.
        """
        descriptors = self.transform(X)
        return descriptors, descriptors

    def relevance(self, R, trace: Descriptors, rule=None) -> np.ndarray:
        """Project descriptor relevance onto the pixels (step 3 of the relevance pass).

        Parameters
        ----------
        R : ndarray, shape (N,) or (N, D)
            Relevance per descriptor ``R_l`` (``Flat``), or per descriptor
            dimension (``SIFTBins``: rows sum to ``R_l``).
        trace : Descriptors
            The image's descriptors from :meth:`forward`.
        rule : Flat or SIFTBins, optional (default ``Flat()``)
            ``Flat``: ``R_p = sum_{l : p in area(l)} R_l / |area(l)|``
            (docs/math.md, step 3). ``SIFTBins`` (SIFT only): each of the 16
            spatial bins' relevance spread over its own ``b x b`` square.

        Returns
        -------
        ndarray, shape (H, W)
            Pixel relevance; sums to ``R.sum()`` (conservation).

        Raises
        ------
        RuleError
            A rule this extractor does not implement, or ``R`` of the wrong shape.
        """
        from ..exceptions import RuleError
        from ..pixels import flat, pixel_rule_check, sift_bins
        from ..rules import Flat

        rule = pixel_rule_check(Flat() if rule is None else rule)
        R = np.asarray(R, dtype=np.float64)
        if not isinstance(rule, Flat) and not isinstance(rule, self.pixel_rules):
            raise RuleError(f"{type(self).__name__} does not implement the pixel rule {rule!r}")
        if R.shape[0] != len(trace):
            raise RuleError(f"{len(trace)} descriptors but relevance of shape {R.shape}")
        if isinstance(rule, Flat):
            return flat(trace, R if R.ndim == 1 else R.sum(axis=1))
        if R.ndim != 2:
            raise RuleError(f"{type(rule).__name__} needs relevance per descriptor dimension "
                            f"(N, D), got shape {R.shape}")
        return sift_bins(trace, R.sum(axis=1), R)
