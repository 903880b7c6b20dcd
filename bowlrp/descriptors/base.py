"""What every descriptor extractor shares: ``forward`` and the pixel step's ``relevance``."""

from __future__ import annotations

import numpy as np

from .._utils.fitted import prefixed, refuse
from ..exceptions import ModelFileError, RuleError
from ..rules import PIXEL_RULES, Contribution, Flat, require
from .geometry import Descriptors
from .pixel_rules import flat


class ExtractorMixin:
    """Layer 2 of the pipeline card: ``forward(images)`` and ``relevance(R, trace, rule)``.

    The trace of one image is its :class:`Descriptors` (data and exact pixel
    geometry), which is all the geometric pixel rules need; rules that read the
    pixels themselves (``Contribution``) also take the image.

    Every extractor implements :class:`~bowlrp.rules.Flat`. An extractor lists the
    other pixel rules it implements in ``pixel_rules`` and applies them in
    :meth:`_pixel_relevance`; it says in :meth:`wants_dimension_relevance` whether a
    rule reads relevance per descriptor dimension. ``Contribution`` on an extractor
    without it (no gradient model, e.g. colour quantiles) is ``Flat``, as the rule
    documents.
    """

    #: pixel rules this extractor implements besides ``Flat``
    pixel_rules: tuple[type, ...] = ()
    #: the fitted attribute whose presence marks a fitted extractor
    _fitted_marker = "n_features_out_"

    def check_fitted(self, where: str | None = None) -> None:
        """Refuse parameters and fitted attributes ``describe`` cannot use safely.

        The parameters as ``fit`` checks them (``_check_params``), the extractor's own
        bounds (``_check_fitted_parameters``) and, where it is stored,
        ``n_features_out_`` equal to :meth:`output_dimension`. An unfitted extractor
        passes. Cost O(number of parameters).

        Parameters
        ----------
        where : str or None
            Prefix of the message, e.g. the model file's name.

        Raises
        ------
        ModelFileError
            One line naming the attribute or parameter.
        """
        if self._fitted_marker not in self.__dict__:
            return
        with prefixed(where):
            try:
                checked = self._check_params()
            except (TypeError, ValueError, OverflowError) as exc:
                raise ModelFileError(f"{type(self).__name__} parameters are invalid: {exc}") from None
            self._check_fitted_parameters(checked)
            if "n_features_out_" in self.__dict__:
                n_out = self.__dict__["n_features_out_"]
                if (
                    not isinstance(n_out, (int, np.integer))
                    or isinstance(n_out, bool)
                    or (n_out != self.output_dimension())
                ):
                    raise refuse(
                        self,
                        "n_features_out_",
                        f"is {n_out!r}, the parameters give {self.output_dimension()}",
                    )

    def _check_fitted_parameters(self, checked) -> None:
        """The extractor's own bounds on its parameters (``checked``: what ``_check_params`` returned)."""

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

    def wants_dimension_relevance(self, rule, offered: bool) -> bool:
        """Whether the pixel step under ``rule`` reads relevance per descriptor dimension.

        Parameters
        ----------
        rule : a pixel rule
        offered : bool
            Whether the encoder above can give relevance per descriptor dimension
            (Fisher vectors).

        Returns
        -------
        bool
            True: :meth:`relevance` is to be given ``R`` of shape (N, D).

        Raises
        ------
        RuleError
            A rule this extractor does not implement.
        """
        self._check_rule(rule)
        return False

    def relevance(self, R, trace: Descriptors, rule=None, *, image=None) -> np.ndarray:
        """Project descriptor relevance onto the pixels (step 3 of the relevance pass).

        Parameters
        ----------
        R : ndarray, shape (N,) or (N, D)
            Relevance per descriptor ``R_l``, or per descriptor dimension (rows
            sum to ``R_l``; ``SIFTBins`` and per-dimension ``Contribution``).
        trace : Descriptors
            The image's descriptors from :meth:`forward`.
        rule : Flat, SIFTBins or Contribution, optional (default ``Flat()``)
            ``Flat``: ``R_p = sum_{l : p in area(l)} R_l / |area(l)|``
            (docs/math.md, step 3); the others where the extractor implements them.
        image : ndarray (H, W) or (H, W, 3), optional
            The image the descriptors were computed on, for rules that read its
            pixels (``Contribution``).

        Returns
        -------
        ndarray, shape (H, W)
            Pixel relevance; sums to ``R.sum()`` (conservation).

        Raises
        ------
        RuleError
            A rule this extractor does not implement, or ``R`` of the wrong shape.
        """
        rule = self._check_rule(Flat() if rule is None else rule)
        R = np.asarray(R, dtype=np.float64)
        if R.ndim not in (1, 2) or R.shape[0] != len(trace):
            raise RuleError(f"{len(trace)} descriptors but relevance of shape {R.shape}")
        if isinstance(rule, (Flat, Contribution)) and not isinstance(rule, self.pixel_rules):
            return flat(trace, R if R.ndim == 1 else R.sum(axis=1))
        return self._pixel_relevance(R, trace, rule, image)

    def _check_rule(self, rule):
        require(rule, PIXEL_RULES, "the pixel step")
        if not isinstance(rule, (Flat, Contribution, *self.pixel_rules)):
            raise RuleError(f"{type(self).__name__} does not implement the pixel rule {rule!r}")
        return rule

    def _pixel_relevance(self, R: np.ndarray, trace: Descriptors, rule, image) -> np.ndarray:
        """Apply a rule of ``pixel_rules`` (subclasses that list any implement this)."""
        raise NotImplementedError(f"{type(self).__name__} lists {rule!r} but does not apply it")
