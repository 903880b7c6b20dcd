"""Calibrated thresholds of the anomaly detectors: ``fpr=`` (held-out normal samples) and
``contamination=`` (training scores), issue 30."""

import numpy as np
import pytest

from bowlrp.classifier.anomaly import KernelSVDD, OneClassKernelSVM
from bowlrp.config import ConfigError
from bowlrp.pipeline import Pipeline
from bowlrp.rules import Decomposition

# The threshold is the fpr-quantile of n_cal = 0.5 * 400 = 200 held-out scores; its coverage on
# new normal samples has a standard deviation of sqrt(fpr (1 - fpr) / n_cal) ~ 0.021 at
# fpr = 0.1, and the rate measured on 3000 new samples adds ~0.005: a tolerance of 0.06 is
# about 2.7 standard deviations.
TOLERANCE = 0.06


def _normal(rng, n, V=6):
    """Skewed, correlated, non-negative features (like pooled histograms): a fixed mixing matrix."""
    A = np.random.default_rng(99).normal(size=(V, V))
    return np.abs(rng.normal(size=(n, V)) @ A) + rng.gamma(2.0, 0.5, size=(n, V))


@pytest.mark.parametrize(
    "make",
    [
        lambda fpr: KernelSVDD("linear", nu=0.1, fpr=fpr, calibration_size=0.5, random_state=0),
        lambda fpr: KernelSVDD("hik", nu=0.05, fpr=fpr, calibration_size=0.5, random_state=0),
        lambda fpr: OneClassKernelSVM("rbf", nu=0.1, fpr=fpr, calibration_size=0.5, random_state=0),
    ],
)
@pytest.mark.parametrize("fpr", [0.05, 0.1, 0.2])
def test_false_positive_rate_on_new_normal_samples_is_near_the_target(make, fpr):
    rng = np.random.default_rng(1)
    det = make(fpr).fit(_normal(rng, 400))
    assert det.n_calibration_ == 200
    assert len(det.support_vectors_) <= 200  # fitted on the other half only
    flagged = np.mean(det.predict(_normal(rng, 3000)) == -1)
    assert abs(flagged - fpr) <= TOLERANCE, (flagged, fpr)


def test_uncalibrated_threshold_is_what_calibration_fixes():
    """Without calibration the solver's sphere (nu = 0.02) flags new normal samples at another
    rate; the calibrated one flags about the target."""
    rng = np.random.default_rng(2)
    X, new = _normal(rng, 300, V=12), _normal(rng, 3000, V=12)
    plain = KernelSVDD("linear", nu=0.02).fit(X)
    calibrated = KernelSVDD("linear", nu=0.02, fpr=0.1, random_state=0).fit(X)
    plain_rate = np.mean(plain.predict(new) == -1)
    rate = np.mean(calibrated.predict(new) == -1)
    assert abs(rate - 0.1) <= TOLERANCE + 0.02  # n_cal = 75 here: a wider margin
    assert abs(plain_rate - 0.1) > abs(rate - 0.1)


@pytest.mark.parametrize("contamination", [0.05, 0.2])
def test_contamination_flags_that_share_of_the_training_samples(contamination):
    rng = np.random.default_rng(3)
    X = _normal(rng, 200)
    for det in (
        KernelSVDD("linear", contamination=contamination).fit(X),
        OneClassKernelSVM("rbf", contamination=contamination).fit(X),
    ):
        assert det.n_calibration_ == 200
        assert abs(np.mean(det.predict(X) == -1) - contamination) <= 1.0 / 200 + 1e-12


def test_calibrated_svdd_keeps_its_decomposition_exact():
    """The calibrated radius is the bias of eq. A.13: relevance still sums to the anomaly score,
    and the model passes its own fitted-attribute checks."""
    rng = np.random.default_rng(4)
    det = KernelSVDD("hik", fpr=0.1, random_state=0).fit(_normal(rng, 120))
    det.check_fitted()
    assert det.offset_ == -det.radius2_
    x = _normal(rng, 1)[0]
    out = det.dimension_relevance(x, 0, -1.0, Decomposition())
    assert np.isclose(out.relevance.sum() + out.bias, -det.decision_function(x[None])[0], rtol=1e-10)
    oc = OneClassKernelSVM("hik", fpr=0.1, random_state=0).fit(_normal(rng, 120))
    oc.check_fitted()
    out = oc.dimension_relevance(x, 0, -1.0, Decomposition())
    assert np.isclose(out.relevance.sum() + out.bias, -oc.decision_function(x[None])[0], rtol=1e-10)


def test_bad_calibration_arguments_are_refused():
    X = _normal(np.random.default_rng(5), 20)
    with pytest.raises(ValueError, match="not both"):
        KernelSVDD(fpr=0.1, contamination=0.1).fit(X)
    with pytest.raises(ValueError, match="fpr must be"):
        KernelSVDD(fpr=1.5).fit(X)
    with pytest.raises(ValueError, match="contamination must be"):
        OneClassKernelSVM(contamination=0.7).fit(X)
    with pytest.raises(ValueError, match="calibration_size must be"):
        KernelSVDD(fpr=0.1, calibration_size=1.0).fit(X)
    with pytest.raises(ValueError, match="give more normal samples"):
        KernelSVDD(fpr=0.1, calibration_size=0.95).fit(X)


def test_shipped_anomaly_config_is_a_calibrated_tail_detector():
    """``Pipeline.from_config("anomaly")``: SVDD calibrated for fpr 0.1 on tail Fisher vectors;
    its parameters are checked like the file's (a tail outside (0, 1] is refused)."""
    pipe = Pipeline.from_config("anomaly")
    assert isinstance(pipe.classifier, KernelSVDD)
    assert (pipe.classifier.fpr, pipe.classifier.calibration_size) == (0.1, 0.25)
    assert [type(enc).__name__ for _, _, enc in pipe.channels] == ["TailFisherVector"] * 2
    assert Pipeline.from_config("anomaly", tail=0.1).channels[0][2].tail == 0.1
    with pytest.raises(ConfigError, match="tail"):
        Pipeline.from_config("anomaly", tail=1.5)
    with pytest.raises(ConfigError, match="fpr"):
        Pipeline.from_config("anomaly", fpr=2.0)
