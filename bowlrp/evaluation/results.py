"""The result every evaluation metric returns: one value per image, its direction, its settings.

:class:`MetricResult` is the common convention of the metrics of
:mod:`bowlrp.evaluation.localisation`, :mod:`~bowlrp.evaluation.complexity`,
:mod:`~bowlrp.evaluation.faithfulness` and :mod:`~bowlrp.evaluation.robustness`:
``values`` holds one number per image (NaN where the metric is undefined for that
image, e.g. an empty mask), so two methods evaluated on the same images can be
compared pair by pair (:meth:`MetricResult.paired_difference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class MetricResult:
    """One metric of one explainer over n images.

    Parameters
    ----------
    name : str
        The metric, e.g. ``"relevance_mass_accuracy"``.
    values : ndarray (n,)
        One value per image, float64; NaN where undefined for that image.
    higher_is_better : bool
        The direction of the metric.
    params : dict
        Every setting that changes the values (JSON-able).
    method : str or None
        The explainer evaluated (a method name, or a callable's ``__name__``).
    curves : ndarray (n, K) or None
        Per-image curves behind the values (perturbation metrics), else None.

    Notes
    -----
    ``mean`` and ``sem`` are over the finite values only:
    ``sem = std(values, ddof=1) / sqrt(n)`` (0 for n < 2).
    """

    name: str
    values: np.ndarray
    higher_is_better: bool
    params: dict = field(default_factory=dict)
    method: str | None = None
    curves: np.ndarray | None = None

    def __post_init__(self):
        v = np.asarray(self.values, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "values", v)

    @property
    def n(self) -> int:
        """Number of images with a finite value."""
        return int(np.isfinite(self.values).sum())

    @property
    def mean(self) -> float:
        """Mean over the finite values (NaN if there are none)."""
        v = self.values[np.isfinite(self.values)]
        return float(v.mean()) if v.size else float("nan")

    @property
    def sem(self) -> float:
        """Standard error of the mean over the finite values (0 for fewer than two)."""
        v = self.values[np.isfinite(self.values)]
        return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0

    def paired_difference(self, other: MetricResult) -> tuple[float, float, int]:
        """Mean and standard error of ``self.values - other.values`` over images finite in both.

        Returns
        -------
        (mean, sem, n) : float, float, int
            Positive ``mean`` means ``self`` scored higher (better if ``higher_is_better``).

        Raises
        ------
        ValueError
            The two results are of different metrics or of different numbers of images.
        """
        if other.name != self.name or other.values.shape != self.values.shape:
            raise ValueError(
                f"cannot pair {self.name} over {self.values.size} images with {other.name} "
                f"over {other.values.size} images: evaluate both on the same images"
            )
        d = self.values - other.values
        d = d[np.isfinite(d)]
        if d.size == 0:
            return float("nan"), float("nan"), 0
        sem = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
        return float(d.mean()), sem, int(d.size)

    def to_dict(self) -> dict:
        """A JSON-able summary: name, method, direction, mean, sem, n, params and values (NaN as None)."""
        return {
            "name": self.name,
            "method": self.method,
            "higher_is_better": self.higher_is_better,
            "mean": self.mean,
            "sem": self.sem,
            "n": self.n,
            "params": dict(self.params),
            "values": [None if not np.isfinite(v) else float(v) for v in self.values],
        }
