"""Pooling that lets rare evidence count (``bowlrp.encoding.local_pooling``): dense references,
conservation, and the detectors that use it (issue 30)."""

import numpy as np
import pytest
from sklearn.base import clone

from bowlrp import GMMVocabulary
from bowlrp.classifier.anomaly import KernelSVDD
from bowlrp.datasets.anomalies import generate
from bowlrp.descriptors import DenseSIFT
from bowlrp.encoding import FisherVector, RankMapping
from bowlrp.encoding.local_pooling import TailFisherVector, tail_rows
from bowlrp.encoding.pooling import normalize
from bowlrp.encoding.vocabulary import KMeansVocabulary
from bowlrp.model_files import load, save
from bowlrp.pipeline import Pipeline
from bowlrp.rules import AbsZ, AlphaBeta, Epsilon, WinnerTakeAll

from .conftest import random_descriptors
from .reference import dense_fisher_mapping, reference_relevance

PYRAMIDS = [((1, 1),), ((1, 1), (2, 2))]


def _reference(enc, d, tail):
    """Plain NumPy: densities, the tail, its dense Fisher mapping and z_ld (N_q, C * block)."""
    v = enc.vocabulary_
    L = v.project(d.data.astype(np.float64))
    var = v.covariances_
    dens = np.zeros((len(L), len(v.weights_)))
    for k in range(len(v.weights_)):  # pi_k N(l; mu_k, diag var_k), one component at a time
        q = ((L - v.means_[k]) ** 2 / var[k]).sum(1)
        dens[:, k] = v.weights_[k] * np.exp(-0.5 * q) / np.sqrt(np.prod(2 * np.pi * var[k]))
    loglik = np.log(dens.sum(1))
    n_q = max(1, int(np.ceil(tail * len(L) - 1e-9)))
    rows = np.sort(np.argsort(loglik, kind="stable")[:n_q])
    gamma = dens / dens.sum(1, keepdims=True)
    M = dense_fisher_mapping(enc, d.data[rows], gamma[rows])
    x, trace = enc.encode_one(d)
    C = trace.cell_counts.size
    counts = np.zeros(C)
    for lev in range(trace.cell_ids.shape[1]):
        for c in trace.cell_ids[rows, lev]:
            counts[c] += 1
    block = M.shape[1]
    Z = np.zeros((len(rows), C * block))
    for lev in range(trace.cell_ids.shape[1]):
        for i, l in enumerate(rows):
            c = trace.cell_ids[l, lev]
            Z[i, c * block : (c + 1) * block] += M[i] / counts[c]
    return rows, Z, x, trace, loglik


@pytest.mark.parametrize("pyramid", PYRAMIDS)
@pytest.mark.parametrize("tail", [0.05, 0.3])
def test_tail_fisher_vector_equals_plain_numpy_reference(tail, pyramid):
    rng = np.random.default_rng(3)
    d = random_descriptors(rng, n=240, dim=6)
    d.data[:7] += 4.0  # a few unusual descriptors: they must form (part of) the tail
    enc = TailFisherVector(
        GMMVocabulary(4, pca_components=5, random_state=0),
        tail=tail,
        pyramid=pyramid,
        normalization=None,
        posterior_threshold=0.0,
    )
    train = random_descriptors(np.random.default_rng(4), n=400, dim=6)
    enc.fit([train])
    rows, Z, x, trace, loglik = _reference(enc, d, tail)
    assert set(range(7)) <= set(rows.tolist())
    np.testing.assert_allclose(trace.codes["loglik"], loglik, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(np.flatnonzero(trace.codes["selected"]), rows)
    np.testing.assert_allclose(x, Z.sum(0), rtol=1e-9, atol=1e-12)
    improved = clone(enc).set_params(normalization="power+l2").fit([train])  # the same GMM (seeded)
    np.testing.assert_allclose(
        improved.encode_one(d)[0], normalize(Z.sum(0), ("power", "l2"), enc.n_cells_), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("pyramid", PYRAMIDS)
@pytest.mark.parametrize("rule", [Epsilon(0.0), Epsilon(0.05), AlphaBeta(2.0, 1.0), AbsZ()])
def test_tail_relevance_equals_dense_reference_and_conserves(rule, pyramid):
    rng = np.random.default_rng(5)
    d = random_descriptors(rng, n=200, dim=6)
    enc = TailFisherVector(
        GMMVocabulary(4, pca_components=5, random_state=0),
        tail=0.1,
        pyramid=pyramid,
        normalization=None,
        posterior_threshold=0.0,
    ).fit([d])
    rows, Z, x, trace, _ = _reference(enc, d, 0.1)
    R = rng.normal(size=x.size)
    out, per_dim = enc.relevance(R, trace, rule, per_dimension=True)
    expected = np.zeros(len(d))
    expected[rows] = reference_relevance(Z, R, rule)
    np.testing.assert_allclose(out, expected, rtol=1e-8, atol=1e-10)
    outside = np.setdiff1d(np.arange(len(d)), rows)
    assert np.all(out[outside] == 0.0) and np.all(per_dim[outside] == 0.0)  # winner-take-all
    np.testing.assert_allclose(per_dim.sum(1), out, rtol=1e-9, atol=1e-12)
    if rule == Epsilon(0.0):  # conservation in float64
        assert abs(out.sum() - R.sum()) <= 1e-10 * np.abs(R).sum()


def test_tail_one_is_the_fisher_vector_and_bad_tails_are_refused():
    rng = np.random.default_rng(6)
    d = random_descriptors(rng, n=150, dim=5)
    vocab = GMMVocabulary(3, random_state=0)
    fv = FisherVector(vocab).fit([d])
    tfv = TailFisherVector(vocab, tail=1.0).fit([d])
    np.testing.assert_allclose(tfv.transform([d]), fv.transform([d]), rtol=1e-10, atol=1e-13)
    assert tail_rows(np.array([3.0, 1.0, 2.0, 1.0]), 0.5).tolist() == [1, 3]
    assert tail_rows(np.array([3.0, 1.0]), 1e-6).tolist() == [1]  # at least one descriptor
    for bad in (0.0, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="tail"):
            TailFisherVector(vocab, tail=bad).fit([d])


@pytest.fixture(scope="module")
def natural():
    train = generate("stamp", 0, 14)
    test = generate("stamp", 1, 2, 2, "large")
    return [s.image for s in train], test


def _conserved(e):
    return abs(e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual - e.score)


def test_tail_detector_explains_conservatively_and_round_trips(natural, tmp_path):
    """SVDD on tail Fisher vectors: the anomaly score is conserved down to pixels, the model
    file loads back with equal scores."""
    train, test = natural
    pipe = Pipeline(
        [
            (
                "sift",
                DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"),
                TailFisherVector(GMMVocabulary(4, pca_components=8, random_state=0), tail=0.05),
            )
        ],
        KernelSVDD("linear", nu=0.2),
        random_state=0,
    ).fit(train)
    images = [s.image for s in test]
    explanations = pipe.explain(images)
    np.testing.assert_allclose([e.score for e in explanations], -pipe.decision_function(images), rtol=1e-9)
    for e in explanations:
        assert _conserved(e) <= 1e-9 * max(1.0, abs(e.score))
    save(pipe, tmp_path / "tail.bowlrp")
    again = load(tmp_path / "tail.bowlrp")
    np.testing.assert_allclose(again.decision_function(images), pipe.decision_function(images), rtol=1e-12)


def test_max_pooled_bow_detector_conserves_with_winner_take_all(natural):
    """HIK SVDD on max-pooled rank-mapped words (p -> inf): WinnerTakeAll conserves the anomaly score."""
    train, test = natural
    pipe = Pipeline(
        [
            (
                "sift",
                DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"),
                RankMapping(KMeansVocabulary(16, random_state=0), pooling="max"),
            )
        ],
        KernelSVDD("hik", nu=0.2),
        random_state=0,
    ).fit(train)
    images = [s.image for s in test]
    explanations = pipe.explain(images, rules={"descriptors": WinnerTakeAll()})
    np.testing.assert_allclose([e.score for e in explanations], -pipe.decision_function(images), rtol=1e-9)
    for e in explanations:
        assert isinstance(e.rules["descriptors"]["sift"], WinnerTakeAll)
        assert _conserved(e) <= 1e-9 * max(1.0, abs(e.score))
