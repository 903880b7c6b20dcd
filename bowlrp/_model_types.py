"""The exact types a bowlrp model file may contain, and how skops may build each.

Derived by saving every kind of model bowlrp builds (k-means and GMM
vocabularies with and without PCA, every encoder, every kernel, KernelSVC
with MKL and class weights, Pipelines from every file in ``configs/``) and
listing the ``(skops loader, type)`` pairs their files hold;
``tests/test_model_files.py`` saves each again and checks that this list
covers it. Nothing is matched by prefix: a type not listed here (or listed
with another loader) is refused unless the caller trusts it by name.

Every entry is data: an estimator built with ``__new__`` and its attribute
dict (``ObjectNode``), a container, an array read with ``allow_pickle=False``
or a scalar type. No function, no type whose constructor is called with
arguments from the file (``ConstructorFromReduceNode``, ``ReduceNode``) and
nothing from ``builtins``/``numpy`` beyond plain data types.

When you add a class that is stored in fitted models, add it here (the test
``test_every_registered_class_is_allowed`` reminds you).
"""

from __future__ import annotations

_OBJECT = frozenset({"ObjectNode"})

#: type name -> skops loaders allowed to build it
ALLOWED_TYPES: dict[str, frozenset[str]] = {
    # bowlrp's own estimators (ObjectNode: cls.__new__ + __dict__ update)
    "bowlrp.pipeline.Pipeline": _OBJECT,
    "bowlrp.svm.KernelSVC": _OBJECT,
    "bowlrp.anomaly.OneClassKernelSVM": _OBJECT,
    "bowlrp.anomaly.KernelSVDD": _OBJECT,
    "bowlrp.descriptors.sift.DenseSIFT": _OBJECT,
    "bowlrp.descriptors.quantiles.ColorQuantiles": _OBJECT,
    "bowlrp.vocabulary.KMeansVocabulary": _OBJECT,
    "bowlrp.vocabulary.GMMVocabulary": _OBJECT,
    "bowlrp.encoding.words.HardAssignment": _OBJECT,
    "bowlrp.encoding.words.RankMapping": _OBJECT,
    "bowlrp.encoding.words.SoftAssignment": _OBJECT,
    "bowlrp.encoding.fisher.FisherVector": _OBJECT,
    "bowlrp.kernels.Linear": _OBJECT,
    "bowlrp.kernels.HistogramIntersection": _OBJECT,
    "bowlrp.kernels.AdditiveChi2": _OBJECT,
    "bowlrp.kernels.Hellinger": _OBJECT,
    "bowlrp.kernels.ExponentialChi2": _OBJECT,
    "bowlrp.kernels.RBF": _OBJECT,
    # scikit-learn: the PCA of a vocabulary with pca_components
    "sklearn.decomposition._pca.PCA": _OBJECT,
    # containers and primitives
    "builtins.dict": frozenset({"DictNode"}),
    "builtins.list": frozenset({"ListNode"}),
    "builtins.tuple": frozenset({"TupleNode"}),
    "builtins.slice": frozenset({"SliceNode"}),
    "builtins.str": frozenset({"JsonNode", "TypeNode"}),
    "builtins.int": frozenset({"TypeNode"}),      # dict key types (class_weight={0: ...})
    "builtins.float": frozenset({"TypeNode"}),
    # NumPy arrays (np.load(allow_pickle=False)) and scalars read from them
    "numpy.ndarray": frozenset({"NdArrayNode"}),
    "numpy.float64": frozenset({"NdArrayNode"}),
    "numpy.float32": frozenset({"NdArrayNode"}),
    "numpy.int64": frozenset({"NdArrayNode"}),
    "numpy.int32": frozenset({"NdArrayNode"}),
    "numpy.bool": frozenset({"NdArrayNode"}),
    # random_state=np.random.RandomState(...) (state arrays, no constructor arguments)
    "numpy.random.mtrand.RandomState": frozenset({"RandomStateNode"}),
}
