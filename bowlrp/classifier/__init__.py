"""Layer 4: kernel machines over the BoW / Fisher-vector features, and step 1 of the relevance pass.

- :mod:`~bowlrp.classifier.kernels`: HIK, chi2, Hellinger, exp-chi2, RBF and linear
  kernels (sum-decomposable or differentiable), evaluated in blocks;
- :mod:`~bowlrp.classifier.svm`: :class:`KernelSVC` on libsvm, one kernel per channel;
- :mod:`~bowlrp.classifier.mkl`: the kernel weights of multiple kernel learning;
- :mod:`~bowlrp.classifier.relevance`: step 1, ``f(x)`` to the feature dimensions
  (exact decomposition, or a Taylor expansion at a root found by
  :mod:`~bowlrp.classifier.roots`);
- :mod:`~bowlrp.classifier.anomaly`: one-class SVM and SVDD detectors, with their
  decompositions in :mod:`~bowlrp.classifier.anomaly_relevance`.
"""

from .anomaly import KernelSVDD, OneClassKernelSVM
from .kernels import (
    RBF,
    AdditiveChi2,
    ExponentialChi2,
    Hellinger,
    HistogramIntersection,
    Kernel,
    Linear,
    make_kernel,
)
from .relevance import DimensionRelevance, classifier_relevance
from .svm import KernelSVC

__all__ = [
    "RBF",
    "AdditiveChi2",
    "DimensionRelevance",
    "ExponentialChi2",
    "Hellinger",
    "HistogramIntersection",
    "Kernel",
    "KernelSVC",
    "KernelSVDD",
    "Linear",
    "OneClassKernelSVM",
    "classifier_relevance",
    "make_kernel",
]
