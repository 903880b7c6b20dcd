"""Issue 24, findings 7 and 9: a model file's fitted attributes are checked on load.

A model file is data from strangers: a crafted one must neither cost gigabytes (a
rank mapping's ``levels_`` of (20000, 20000)) nor give wrong answers with exit 0
(NaN ``intercept_``, infinite centres, negative MKL kernel weights, a ``|V0``
``classes_``). ``check_fitted`` refuses each with one line naming the attribute,
and every kind of model bowlrp builds passes it freshly fitted and after a round trip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bowlrp import ColorQuantiles, FisherVector, HardAssignment, RankMapping
from bowlrp.classifier.anomaly import KernelSVDD, OneClassKernelSVM
from bowlrp.classifier.svm import KernelSVC
from bowlrp.exceptions import ModelFileError
from bowlrp.model_files import load, save
from bowlrp.pipeline import Pipeline

from .test_model_files import _data, _model_kinds, _sift


def _fit_and_save(pipe, path, rgb=False):
    images, y = _data()
    if rgb:
        images = [np.dstack([im] * 3) for im in images]
    pipe.fit(images, y if not isinstance(pipe.classifier, (OneClassKernelSVM, KernelSVDD)) else None)
    save(pipe, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Saved models: bag of words (HIK), rank mapping + colour quantiles with MKL, Fisher, detectors."""
    root = tmp_path_factory.mktemp("fitted")
    return {
        "bow": _fit_and_save(
            Pipeline([("s", _sift(), HardAssignment(8, random_state=0))], KernelSVC("hik"), random_state=0),
            root / "bow.pkl",
        ),
        "mkl": _fit_and_save(
            Pipeline(
                [
                    ("s", _sift(), HardAssignment(8, random_state=0)),
                    ("q", ColorQuantiles(radius=4, step=4), RankMapping(8, random_state=0)),
                ],
                KernelSVC(["hik", "exp_chi2"], mkl_norm=2),
                random_state=0,
            ),
            root / "mkl.pkl",
            rgb=True,
        ),
        "fisher": _fit_and_save(
            Pipeline([("s", _sift(), FisherVector(4, random_state=0))], KernelSVC("linear"), random_state=0),
            root / "fisher.pkl",
        ),
        "ocsvm": _fit_and_save(
            Pipeline([("s", _sift(), HardAssignment(8, random_state=0))], OneClassKernelSVM(nu=0.5)),
            root / "ocsvm.pkl",
        ),
        "svdd": _fit_and_save(
            Pipeline([("s", _sift(), HardAssignment(8, random_state=0))], KernelSVDD(nu=0.5)),
            root / "svdd.pkl",
        ),
    }


def _set(obj, name, value):
    setattr(obj, name, value)


def _nan_intercept(m):
    m.classifier_.intercept_[0] = np.nan


def _inf_centres(m):
    m.encoders_[0].vocabulary_.cluster_centers_[0, 0] = np.inf


def _negative_kernel_weights(m):
    m.classifier_.kernel_weights_[0, 1] = -0.5


def _huge_levels(m):
    enc = m.encoders_[1]
    enc.levels_ = ((20000, 20000),)
    enc.pyramid = ((20000, 20000),)
    enc.n_cells_ = 20000 * 20000
    enc.n_features_out_ = enc.n_cells_ * enc.block_size_


def _void_classes(m):
    void = np.empty((10**15,), dtype="V0")
    m.classifier_.classes_ = void
    m.classes_ = void


def _fewer_dual_columns(m):
    m.classifier_.dual_coef_ = m.classifier_.dual_coef_[:, 1:].copy()


def _wider_encoder(m):
    m.encoders_[0].n_features_out_ += 1
    m.channel_sizes_[0] += 1


def _negative_variance(m):
    m.encoders_[0].vocabulary_.covariances_[0, 0] = -1.0


def _priors_off(m):
    m.encoders_[0].vocabulary_.weights_[0] += 0.5


def _nan_means(m):
    m.encoders_[0].vocabulary_.means_[1, 2] = np.nan


def _negative_alpha(m):
    m.classifier_.dual_coef_[0, 0] = -1.0


def _nan_sigma(m):
    m.classifier_.kernels_[1].sigma_ = math.nan


def _nan_offset(m):
    m.classifier_.offset_ = math.nan


def _nan_radius(m):
    m.classifier_.radius2_ = math.nan


def _float_levels(m):
    m.encoders_[0].levels_ = ((1.5, 1),)


def _nan_pca_mean(m):
    vocab = m.encoders_[0].vocabulary_
    vocab.pca_components = 2
    vocab.pca_ = None


def _negative_support_vectors(m):  # found by tests/test_fuzz_edges.py (seed 2)
    m.classifier_.support_vectors_[0, 0] = -1.2


CORRUPTIONS = [
    ("bow", _nan_intercept, "KernelSVC.intercept_ holds NaN"),
    ("bow", _inf_centres, "KMeansVocabulary.cluster_centers_ holds infinite values"),
    ("mkl", _negative_kernel_weights, "KernelSVC.kernel_weights_ holds -0.5"),
    ("mkl", _huge_levels, "RankMapping.levels_ has a level of 20000 x 20000"),
    ("bow", _void_classes, "KernelSVC.classes_ has dtype '|V0'"),
    ("bow", _fewer_dual_columns, "KernelSVC.dual_coef_ has shape"),
    ("bow", _wider_encoder, "HardAssignment.n_features_out_ is"),
    ("fisher", _negative_variance, "GMMVocabulary.covariances_ holds -1.0"),
    ("fisher", _priors_off, "GMMVocabulary.weights_ sum to"),
    ("fisher", _nan_means, "GMMVocabulary.means_ holds NaN"),
    ("mkl", _nan_sigma, "ExponentialChi2.sigma_ holds NaN"),
    ("ocsvm", _negative_alpha, "OneClassKernelSVM.dual_coef_ holds -1.0"),
    ("ocsvm", _nan_offset, "OneClassKernelSVM.offset_ holds NaN"),
    ("svdd", _nan_radius, "KernelSVDD.radius2_ holds NaN"),
    ("bow", _float_levels, "HardAssignment.levels_ holds (1.5, 1), not a pair of integers"),
    ("bow", _nan_pca_mean, "KMeansVocabulary.pca_ is None but pca_components is 2"),
    ("bow", _negative_support_vectors, "KernelSVC.support_vectors_ holds -1.2 in a channel of the histogram"),
]


@pytest.mark.parametrize("kind", ["bow", "mkl", "fisher", "ocsvm", "svdd"])
def test_a_clean_model_passes(files, kind):
    load(files[kind]).check_fitted(where="model.pkl")


@pytest.mark.parametrize(
    ("kind", "corrupt", "message"), CORRUPTIONS, ids=[c[1].__name__ for c in CORRUPTIONS]
)
def test_a_corrupted_attribute_is_refused_in_one_line_naming_it(files, tmp_path, kind, corrupt, message):
    model = load(files[kind])
    corrupt(model)
    # through a file, as a stranger would hand it over: bowlrp.load refuses it (bowlrp.save itself
    # would list the 10^15 classes of the void array in its metadata: that one is checked in memory)
    with pytest.raises(ModelFileError) as info:
        if corrupt is _void_classes:
            model.check_fitted(where="crafted.pkl")
        else:
            load(save(model, tmp_path / "crafted.pkl"))
    text = str(info.value)
    assert "\n" not in text
    assert "crafted.pkl: " + message in text, text


def test_stages_check_themselves_and_name_the_file(files):
    model = load(files["bow"])
    model.classifier_.intercept_[0] = np.inf
    with pytest.raises(ModelFileError, match=r"^m\.pkl: KernelSVC\.intercept_ holds infinite values$"):
        model.classifier_.check_fitted(where="m.pkl")
    model.encoders_[0].vocabulary_.cluster_centers_[0, 0] = np.nan
    with pytest.raises(ModelFileError, match=r"^KMeansVocabulary\.cluster_centers_ holds NaN$"):
        model.encoders_[0].check_fitted()


def test_an_unfitted_pipeline_passes():
    Pipeline([("s", _sift(), HardAssignment(8))], KernelSVC("hik")).check_fitted()


def test_every_kind_of_model_passes_fresh_and_after_a_round_trip(tmp_path):
    images, y = _data()
    colour = [np.dstack([im] * 3) for im in images]
    for name, pipe, rgb in _model_kinds():
        pipe.fit(colour if rgb else images, y)
        pipe.check_fitted()
        load(save(pipe, tmp_path / f"{name}.pkl")).check_fitted()
