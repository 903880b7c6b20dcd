"""NEON inside the descriptor (docs/neon.md): the neuralised word assignment, its relevance
against a literal plain-NumPy network, per-descriptor conservation in float64, the whole
path to the pixels for hard / rank / soft mappings, and the combinations that refuse."""

import functools

import numpy as np
import pytest

from bowlrp import (
    DenseSIFT,
    FisherVector,
    GMMVocabulary,
    HardAssignment,
    KMeansVocabulary,
    RankMapping,
    SoftAssignment,
)
from bowlrp.classifier.svm import KernelSVC
from bowlrp.encoding.neon import neon_relevance, soft_min
from bowlrp.exceptions import RuleError
from bowlrp.pipeline import Pipeline
from bowlrp.rules import AbsZ, Contribution, Epsilon, Flat, Neon, SIFTBins, WinnerTakeAll, parse_rule

from .conftest import random_descriptors
from .reference import dense_z


def _units(x, centers, k, competitors):
    """The literal first layer for word k: weights, biases, midpoints of every competitor."""
    w = np.array([2.0 * (centers[k] - centers[j]) for j in competitors])
    b = np.array([centers[j] @ centers[j] - centers[k] @ centers[k] for j in competitors])
    m = np.array([(centers[k] + centers[j]) / 2.0 for j in competitors])
    return w, b, m


def _competitors(indices, l, t, V, after):
    if after:
        return [j for j in range(V) if j not in set(indices[l, : t + 1].tolist())]
    return [indices[l, q] for q in range(indices.shape[1]) if q != t]


def reference_neon(x, centers, indices, slot_R, uniform, after, beta):
    """Plain loops: h_kj = w.x + b for every competitor, soft-min weights, midpoint rule."""
    N, D = x.shape
    V = centers.shape[0]
    out = np.zeros((N, D))
    for l in range(N):
        out[l] += uniform[l] / D
        for t in range(indices.shape[1]):
            k = indices[l, t]
            comps = _competitors(indices, l, t, V, after)
            w, b, m = _units(x[l], centers, k, comps)
            h = w @ x[l] + b
            p = np.exp(-beta * (h - h.min()))
            p /= p.sum()
            for j in range(len(comps)):
                contribution = (x[l] - m[j]) * w[j]
                out[l] += p[j] * contribution / contribution.sum() * slot_R[l, t]
    return out


def reference_slots(enc, d, trace, R):
    """R_lk of the z-rule (Epsilon(0)) per descriptor and code slot, and the unreached share /N."""
    Z, _ = dense_z(enc, d, trace)
    zd = Z.sum(0)
    V = enc.block_size_
    idx = trace.codes["indices"]
    slots = np.zeros(idx.shape)
    for l in range(len(d)):
        for t in range(idx.shape[1]):
            for lev in range(trace.cell_ids.shape[1]):
                dim = trace.cell_ids[l, lev] * V + idx[l, t]
                if zd[dim] > 0:
                    slots[l, t] += Z[l, dim] / zd[dim] * R[dim]
    unreached = R[zd == 0].sum()
    return slots, np.full(len(d), unreached / len(d))


def _words(pca=None):
    return KMeansVocabulary(6, pca_components=pca, algorithm="full", random_state=0)


ENCODERS = {
    "hard": lambda: HardAssignment(_words(), pyramid=((1, 1), (2, 2))),
    "rank": lambda: RankMapping(_words(), n_nearest=3),
    "soft": lambda: SoftAssignment(_words(), beta=0.5),
    "soft-local": lambda: SoftAssignment(_words(), beta=0.5, n_nearest=3, pooling=2.0),
    "rank-pca": lambda: RankMapping(_words(pca=3), n_nearest=2),
}


@functools.cache
def _encoder(name):
    return ENCODERS[name]().fit([random_descriptors(np.random.default_rng(0), n=150, dim=5)])


def _fitted(name, seed=0, n=40):
    """The fitted encoder, ``n`` other descriptors drawn with ``seed``, their trace, random R."""
    enc = _encoder(name)
    rng = np.random.default_rng(seed + 1)
    d = random_descriptors(rng, n=n, dim=5)
    _, trace = enc.encode_one(d)
    R = rng.normal(size=enc.n_features_out_)
    return enc, d, trace, R


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("stiff", [False, True], ids=["default-beta", "beta-1e4"])
def test_neon_equals_literal_network(name, stiff):
    """beta = 1e4 makes the shared exponentials underflow: the per-word path with its own shift."""
    enc, d, trace, R = _fitted(name)
    rule = Neon(beta=1e4) if stiff else Neon()
    beta = enc.neon_beta(rule)
    R_l, fast = enc.relevance(R, trace, rule, per_dimension=True)
    slots, uniform = reference_slots(enc, d, trace, R)
    x = enc.vocabulary_.project(d.data)
    expected = reference_neon(
        x, enc.vocabulary_.cluster_centers_, trace.codes["indices"], slots, uniform, enc._neon_after, beta
    )
    scale = np.abs(expected).max()
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-9 * scale)
    # the per-descriptor relevance is the wrapped rule's, NEON only goes on inside
    np.testing.assert_array_equal(R_l, enc.relevance(R, trace, Epsilon(0.0)))


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("rule", [Neon(), Neon(beta=3.0), Neon(rule=AbsZ())], ids=repr)
def test_neon_conserves_per_descriptor(name, rule):
    enc, d, trace, R = _fitted(name, seed=1, n=60)
    R_l, per_dim = enc.relevance(R, trace, rule, per_dimension=True)
    assert per_dim.dtype == np.float64 and per_dim.shape == (
        len(d),
        enc.vocabulary_.cluster_centers_.shape[1],
    )
    magnitude = np.abs(per_dim).sum(axis=1) + np.abs(R_l)
    assert np.all(np.abs(per_dim.sum(axis=1) - R_l) <= 1e-12 * magnitude)


def test_neon_conserves_per_word_and_ties_spread_evenly():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(5, 4))
    x = rng.normal(size=(30, 4))
    x[0] = (centers[1] + centers[2]) / 2 + 1e-3 * rng.normal(size=4)  # near a Voronoi boundary
    u = (centers**2).sum(1)[None] - 2 * x @ centers.T
    indices = np.argsort(u, axis=1)[:, :2].astype(np.int32)
    for t in range(2):  # one word at a time: each word's own relevance is conserved
        slots = np.zeros((30, 2))
        slots[:, t] = rng.normal(size=30)
        out = neon_relevance(x, centers, indices, slots, np.zeros(30), True, 2.0)
        np.testing.assert_allclose(out.sum(1), slots[:, t], rtol=1e-12, atol=1e-12)
    # an exact tie h_kj = 0 has no direction: its share is spread evenly over the dimensions
    tie = np.array([[0.0, 0.0]])
    two = np.array([[1.0, 0.0], [-1.0, 0.0]])
    out = neon_relevance(tie, two, np.array([[0]], dtype=np.int32), np.array([[1.0]]), np.zeros(1), True, 1.0)
    np.testing.assert_allclose(out, [[0.5, 0.5]])


def test_network_output_is_the_mapping():
    """sigmoid(beta f_k) is the soft assignment m_k; the hard and ranked words have f_k >= 0."""
    enc, d, trace, _ = _fitted("soft")
    x = enc.vocabulary_.project(d.data)
    C = enc.vocabulary_.cluster_centers_
    idx, weights = trace.codes["indices"], trace.codes["weights"]
    for l in range(len(d)):
        for t in range(idx.shape[1]):
            comps = _competitors(idx, l, t, len(C), after=False)
            w, b, _ = _units(x[l], C, idx[l, t], comps)
            f = soft_min(w @ x[l] + b, enc.beta)
            assert np.isclose(1.0 / (1.0 + np.exp(-enc.beta * f)), weights[l, t], rtol=1e-9, atol=1e-12)
    for name in ("hard", "rank"):
        enc, d, trace, _ = _fitted(name)
        x = enc.vocabulary_.project(d.data)
        C = enc.vocabulary_.cluster_centers_
        idx = trace.codes["indices"]
        for l in range(len(d)):
            for t in range(idx.shape[1]):
                w, b, _ = _units(x[l], C, idx[l, t], _competitors(idx, l, t, len(C), after=True))
                assert (w @ x[l] + b).min() >= -1e-9


def test_max_pooling_goes_through_winner_take_all():
    rng = np.random.default_rng(2)
    vocabulary = KMeansVocabulary(6, algorithm="full", random_state=0)
    enc = HardAssignment(vocabulary, pooling="max").fit([random_descriptors(rng, n=150, dim=5)])
    _, trace = enc.encode_one(random_descriptors(rng, n=40, dim=5))
    R = rng.normal(size=enc.n_features_out_)
    R_l, per_dim = enc.relevance(R, trace, Neon(), per_dimension=True)
    np.testing.assert_array_equal(R_l, enc.relevance(R, trace, WinnerTakeAll()))
    np.testing.assert_allclose(per_dim.sum(1), R_l, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuleError, match="does not support"):
        enc.relevance(R, trace, Neon(rule=Epsilon(0.0)), per_dimension=True)


def test_neon_rule_spelling_and_refusals():
    assert parse_rule("neon") == Neon()
    assert parse_rule("neon=0.5") == Neon(beta=0.5)
    assert parse_rule("neon=rule:absz") == Neon(rule=AbsZ())
    for bad in ("neon=-1", "neon=x", "neon=rule:flat"):
        with pytest.raises(RuleError) as info:
            parse_rule(bad)
        assert "\n" not in str(info.value)
    enc, _, trace, R = _fitted("hard")
    with pytest.raises(RuleError, match="only with the descriptor rule Neon"):
        enc.relevance(R, trace, Epsilon(0.0), per_dimension=True)
    rng = np.random.default_rng(0)
    fv = FisherVector(GMMVocabulary(2, random_state=0)).fit([random_descriptors(rng, n=80, dim=3)])
    _, ftrace = fv.encode_one(random_descriptors(rng, n=20, dim=3))
    with pytest.raises(RuleError, match=r"FisherVector does not support the rule Neon") as info:
        fv.relevance(np.ones(fv.n_features_out_), ftrace, Neon(), per_dimension=True)
    assert "\n" not in str(info.value)


# -- the whole path, f(x) to the pixels --------------------------------------------------


@pytest.fixture(scope="module")
def bow_models(stripes_blobs):
    train, y, test, _ = stripes_blobs
    sift = DenseSIFT(bin_sizes=[4, 6], steps=5, rotate=True, backend="opencv")
    words = KMeansVocabulary(12, algorithm="full", random_state=0)  # Lloyd, n_init=1: the fast fit
    mappings = {
        "hard": HardAssignment(words),
        "rank-pca": RankMapping(
            KMeansVocabulary(12, pca_components=16, algorithm="full", random_state=0), n_nearest=3
        ),
        "soft": SoftAssignment(words, beta=2.0, n_nearest=4),
    }
    models = {
        name: Pipeline([("s", sift, enc)], KernelSVC("hik"), random_state=0).fit(train[::4], y[::4])
        for name, enc in mappings.items()
    }
    return models, test


@pytest.mark.parametrize("name", ["hard", "rank-pca", "soft"])
def test_explain_with_neon_conserves_to_the_pixels(bow_models, name):
    models, test = bow_models
    p = models[name]
    image = test[0]
    neon = p.explain([image], rules=[Neon(), Contribution(per_dimension=True)])[0]
    c = neon.conservation()
    scale = abs(c["score"]) + abs(c["bias"])
    assert neon.absorbed == 0.0
    assert abs(c["pixels"] + c["bias"] + neon.absorbed + neon.residual - c["score"]) <= 1e-9 * scale
    assert abs(c["descriptors"] - c["pixels"]) <= 1e-9 * scale
    # the per-descriptor relevance is the z-rule's; the pixels differ: NEON was read per dimension
    plain = p.explain([image], rules=[Epsilon(0.0), Contribution()])[0]
    np.testing.assert_allclose(neon.channels[0].descriptor_relevance, plain.channels[0].descriptor_relevance)
    assert not np.allclose(neon.heatmap, plain.heatmap)
    bins = p.explain([image], rules=[Neon(), SIFTBins()])[0]
    assert abs(bins.heatmap.sum() + bins.bias_relevance + bins.residual - bins.score) <= 1e-9 * scale
    # with a pixel rule that reads no dimensions, the descriptors get the wrapped rule's relevance
    flat = p.explain([image], rules=[Neon(), Flat()])[0]
    np.testing.assert_allclose(flat.heatmap, p.explain([image], rules=[Epsilon(0.0), Flat()])[0].heatmap)


def test_bow_per_dimension_without_neon_names_neon(bow_models):
    models, test = bow_models
    with pytest.raises(
        RuleError, match=r"per_dimension=False\) or give the descriptor rule Neon\(\)"
    ) as info:
        models["hard"].explain(test[:1], rules=Contribution(per_dimension=True))
    assert "\n" not in str(info.value)
