import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bowlrp import FisherVector, GMMVocabulary, HardAssignment, RankMapping, SoftAssignment
from bowlrp.exceptions import RuleError
from bowlrp.rules import AbsZ, AlphaBeta, Epsilon, Flat, WinnerTakeAll

from .conftest import random_descriptors
from .reference import dense_z, has_near_ties, reference_relevance, reference_winner_take_all

RULES = [Epsilon(0.0), Epsilon(0.5), Epsilon(100.0), AlphaBeta(2.0, 1.0), AlphaBeta(1.5, 0.5), AbsZ()]
PYRAMIDS = [((1, 1),), ((1, 1), (2, 2)), ((3, 1),)]


def _encoder(kind, k, pyramid, pooling):
    if kind == "fisher":
        return FisherVector(GMMVocabulary(k, random_state=0), parts=("pi", "mu", "sigma"), pyramid=pyramid)
    if kind == "hard":
        return HardAssignment(k, pyramid=pyramid, pooling=pooling, random_state=0)
    if kind == "soft":
        return SoftAssignment(k, beta=0.5, pyramid=pyramid, pooling=pooling, random_state=0)
    return RankMapping(k, n_nearest=3, pyramid=pyramid, pooling=pooling, random_state=0)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(8, 60),
    dim=st.integers(1, 4),
    k=st.integers(2, 5),
    kind=st.sampled_from(["fisher", "hard", "soft", "rank"]),
    pyramid=st.sampled_from(PYRAMIDS),
    pooling=st.sampled_from([1.0, 2.0, 0.5]),
    rule=st.sampled_from(RULES),
)
def test_rules_equal_dense_reference(seed, n, dim, k, kind, pyramid, pooling, rule):
    rng = np.random.default_rng(seed)
    d = random_descriptors(rng, n=n, dim=dim, shape=(30, 40))
    # fit on other descriptors: on its own training set a Fisher vector is exactly zero
    # (EM makes mu and sigma the weighted moments), leaving z_d as pure rounding noise
    enc = _encoder(kind, k, pyramid, pooling).fit([random_descriptors(rng, n=60, dim=dim)])
    assume(not has_near_ties(enc, d.data))
    _, trace = enc.encode_one(d)
    R = rng.normal(size=enc.n_features_out_) * rng.choice([0, 1], enc.n_features_out_)
    Z, _ = dense_z(enc, d, trace)
    expected = reference_relevance(Z, R, rule)
    got = enc.relevance(R, trace, rule)
    # A dimension whose z_d nearly cancels amplifies R_d by sum_l |z_ld| / |z_d|; float64
    # agreement is bounded by that condition number, so the tolerance is scaled by it.
    zd = Z.sum(0)
    denom = np.abs(zd) + getattr(rule, "epsilon", 0.0)
    cond = np.divide(np.abs(Z).sum(0), denom, out=np.ones_like(zd), where=denom > 0)
    scale = np.sum(np.abs(R) * np.maximum(cond, 1.0))
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12 * scale)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(5, 50),
    pyramid=st.sampled_from(PYRAMIDS),
    kind=st.sampled_from(["hard", "rank", "soft"]),
)
def test_winner_take_all_equals_reference(seed, n, pyramid, kind):
    rng = np.random.default_rng(seed)
    d = random_descriptors(rng, n=n, dim=3, shape=(30, 40))
    enc = _encoder(kind, 4, pyramid, "max").fit([d])
    assume(not has_near_ties(enc, d.data))
    _, trace = enc.encode_one(d)
    R = rng.normal(size=enc.n_features_out_)
    _, M = dense_z(enc, d, trace)
    expected = reference_winner_take_all(M, trace, R, enc.block_size_)
    np.testing.assert_allclose(enc.relevance(R, trace), expected, rtol=1e-10, atol=1e-12)
    assert np.isclose(enc.relevance(R, trace).sum(), R.sum(), rtol=1e-10)


@pytest.mark.parametrize("kind", ["fisher", "hard", "soft", "rank"])
@pytest.mark.parametrize("pyramid", PYRAMIDS)
def test_conservation_and_epsilon_absorption(kind, pyramid):
    rng = np.random.default_rng(3)
    d = random_descriptors(rng, n=120, dim=3, shape=(40, 40))
    enc = _encoder(kind, 4, pyramid, 1.0).fit([random_descriptors(rng, n=120, dim=3)])
    _, trace = enc.encode_one(d)
    R = rng.normal(size=enc.n_features_out_)
    R0 = enc.relevance(R, trace, Epsilon(0.0))
    assert abs(R0.sum() - R.sum()) <= 1e-9 * np.abs(R).sum()
    eps = 0.7
    R_eps = enc.relevance(R, trace, Epsilon(eps))
    z = trace.pooled
    reached = np.abs(dense_z(enc, d, trace)[0]).sum(0) > 0
    predicted = np.sum(
        R[reached]
        * eps
        * np.sign(np.where(z >= 0, 1, -1))[reached]
        / (z[reached] + eps * np.where(z[reached] >= 0, 1, -1))
    )
    assert np.isclose(R.sum() - R_eps.sum(), predicted, rtol=1e-9, atol=1e-12)


def test_unreached_dimensions_are_shared_uniformly():
    rng = np.random.default_rng(4)
    d = random_descriptors(rng, n=30, dim=2)
    enc = HardAssignment(6, random_state=0).fit([d])
    far = d.subset(np.arange(3))
    far.data[:] = 1000.0  # every descriptor maps to the same word
    _, trace = enc.encode_one(far)
    R = np.zeros(enc.n_features_out_)
    unreached = np.flatnonzero(trace.pooled == 0)[0]
    R[unreached] = 3.0
    np.testing.assert_allclose(enc.relevance(R, trace), [1.0, 1.0, 1.0])


def test_unsupported_rules_raise():
    rng = np.random.default_rng(5)
    d = random_descriptors(rng, n=30, dim=2)
    enc = RankMapping(4, random_state=0).fit([d])
    _, trace = enc.encode_one(d)
    R = np.ones(enc.n_features_out_)
    with pytest.raises(RuleError, match="does not support"):
        enc.relevance(R, trace, WinnerTakeAll())
    with pytest.raises(RuleError, match="does not support"):
        enc.relevance(R, trace, Flat())
    mx = RankMapping(4, pooling="max", random_state=0).fit([d])
    _, trace = mx.encode_one(d)
    with pytest.raises(RuleError, match="max pooling"):
        mx.relevance(R, trace, Epsilon(0.0))
    with pytest.raises(RuleError):
        AlphaBeta(2.0, 2.0)
    with pytest.raises(RuleError):
        Epsilon(-1.0)
    with pytest.raises(ValueError, match="shape"):
        enc.relevance(np.ones(3), trace)


def test_fisher_per_dimension_relevance_sums_to_descriptor_relevance():
    rng = np.random.default_rng(6)
    d = random_descriptors(rng, n=80, dim=5)
    enc = FisherVector(GMMVocabulary(3, random_state=0), parts=("pi", "mu", "sigma")).fit([d])
    _, trace = enc.encode_one(d)
    R = rng.normal(size=enc.n_features_out_)
    R_l, per_dim = enc.relevance(R, trace, Epsilon(0.0), per_dimension=True)
    np.testing.assert_allclose(per_dim.sum(1), R_l, rtol=1e-10, atol=1e-12)
    # mu/sigma parts per dimension against the dense reference
    enc2 = FisherVector(GMMVocabulary(3, random_state=0), parts=("mu", "sigma")).fit([d])
    _, tr2 = enc2.encode_one(d)
    R2 = rng.normal(size=enc2.n_features_out_)
    Z, _ = dense_z(enc2, d, tr2)
    coef = R2 / Z.sum(0)
    K, D = 3, 5
    per = (Z * coef).reshape(len(d), 2, K, D).sum(axis=(1, 2))
    np.testing.assert_allclose(enc2.relevance(R2, tr2, per_dimension=True)[1], per, rtol=1e-8, atol=1e-10)
