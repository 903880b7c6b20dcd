import numpy as np
import pytest

from bowlrp import FisherVector, GMMVocabulary, HardAssignment, RankMapping, SoftAssignment
from bowlrp.encoding.pooling import normalize, pyramid_cells

from .conftest import needs_vlfeat, random_descriptors
from .reference import dense_z

PYRAMIDS = [((1, 1),), ((1, 1), (2, 2), (3, 1))]


def _pooled_reference(enc, d, trace):
    Z, M = dense_z(enc, d, trace)
    if getattr(enc, "pooling", 1.0) == "max":
        C = trace.cell_counts.size
        V = M.shape[1]
        z = np.zeros(C * V)
        for lev in range(trace.cell_ids.shape[1]):
            for l in range(len(d)):
                c = trace.cell_ids[l, lev]
                z[c * V : (c + 1) * V] = np.maximum(z[c * V : (c + 1) * V], M[l])
        return z
    return Z.sum(0)


@pytest.mark.parametrize("pyramid", PYRAMIDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda py: HardAssignment(12, pyramid=py, random_state=0),
        lambda py: RankMapping(12, base=2.0, n_nearest=4, pyramid=py, random_state=0),
        lambda py: RankMapping(12, base=2.4, n_nearest=8, pooling=3.0, pyramid=py, random_state=0),
        lambda py: RankMapping(12, pooling="max", pyramid=py, random_state=0),
        lambda py: SoftAssignment(12, beta=0.3, pyramid=py, random_state=0),
        lambda py: SoftAssignment(12, beta=0.3, n_nearest=5, pooling=2.0, pyramid=py, random_state=0),
    ],
)
def test_word_mappings_equal_plain_numpy_reference(make, pyramid):
    rng = np.random.default_rng(0)
    d = random_descriptors(rng, n=200, dim=5)
    enc = make(pyramid).fit([d])
    x, trace = enc.encode_one(d)
    pooled = _pooled_reference(enc, d, trace)
    np.testing.assert_allclose(trace.pooled, pooled, rtol=1e-12, atol=1e-14)
    p = enc.pooling
    root = pooled if p == "max" or p == 1.0 else pooled ** (1 / p)
    np.testing.assert_allclose(x, root / np.abs(root).sum(), rtol=1e-12, atol=1e-14)
    assert x.shape == (enc.n_features_out_,) == (12 * enc.n_cells_,)


@pytest.mark.parametrize("pyramid", PYRAMIDS)
@pytest.mark.parametrize("parts", [("mu", "sigma"), ("pi", "mu", "sigma"), ("mu",)])
def test_fisher_vector_equals_plain_numpy_reference(parts, pyramid):
    rng = np.random.default_rng(1)
    d = random_descriptors(rng, n=300, dim=6)
    enc = FisherVector(
        GMMVocabulary(5, pca_components=4, random_state=0), parts=parts, pyramid=pyramid, normalization=None
    ).fit([d])
    x, trace = enc.encode_one(d)
    Z, _ = dense_z(enc, d, trace)
    np.testing.assert_allclose(x, Z.sum(0), rtol=1e-10, atol=1e-12)


@needs_vlfeat
@pytest.mark.vlfeat
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_fisher_vector_equals_vlfeat_improved_fisher(dtype, tol):
    from cyvlfeat.fisher import fisher

    rng = np.random.default_rng(2)
    d = random_descriptors(rng, n=2000, dim=20)
    enc = FisherVector(GMMVocabulary(16, pca_components=12, random_state=0)).fit([d])
    x, _ = enc.encode_one(d)
    v = enc.vocabulary_
    ref = fisher(
        v.project(d.data).astype(dtype),
        v.means_.astype(dtype),
        v.covariances_.astype(dtype),
        v.weights_.astype(dtype),
        improved=True,
    )
    np.testing.assert_allclose(x, ref, atol=tol)
    raw = fisher(v.project(d.data), v.means_, v.covariances_, v.weights_, improved=False)
    enc_raw = FisherVector(GMMVocabulary(16, pca_components=12, random_state=0), normalization=None).fit([d])
    np.testing.assert_allclose(enc_raw.encode_one(d)[0], raw, atol=1e-12)


def test_normalisation_steps():
    x = np.array([3.0, -4.0, 0.0, 1.0])
    np.testing.assert_allclose(normalize(x, ["l1"], 1), x / 8)
    np.testing.assert_allclose(normalize(x, ["l2"], 1), x / np.sqrt(26))
    np.testing.assert_allclose(normalize(x, ["power"], 1), np.sign(x) * np.sqrt(np.abs(x)))
    blocks = normalize(x, ["cell-l2"], 2).reshape(2, 2)
    np.testing.assert_allclose(np.linalg.norm(blocks, axis=1), [1, 1])
    np.testing.assert_array_equal(normalize(np.zeros(3), ["l1", "l2"], 1), np.zeros(3))


def test_pyramid_cells_follow_centres():
    centers = np.array([[0.0, 0.0], [99.0, 99.0], [10.0, 80.0], [60.0, 10.0]])
    ids, n = pyramid_cells(centers, (100, 100), ((1, 1), (2, 2), (3, 1)))
    assert n == 1 + 4 + 3
    np.testing.assert_array_equal(ids[:, 0], 0)
    np.testing.assert_array_equal(ids[:, 1], [1, 4, 2, 3])
    np.testing.assert_array_equal(ids[:, 2], [5, 7, 5, 6])


def test_encoders_reject_bad_input():
    rng = np.random.default_rng(0)
    d = random_descriptors(rng, n=50, dim=4)
    enc = RankMapping(8, random_state=0).fit([d])
    with pytest.raises(TypeError, match="list of Descriptors"):
        enc.transform(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dimensions"):
        enc.transform([random_descriptors(rng, n=20, dim=5)])
    with pytest.raises(ValueError, match="normalization"):
        RankMapping(8, normalization="l3").fit([d])
    with pytest.raises(ValueError, match="pooling"):
        RankMapping(8, pooling=-1).fit([d])


# Mixed-precision posteriors (issue 29): float32 log-likelihoods, float64 where it counts.
MIXED_RTOL = 1e-9  # bowlrp.encoding.gmm.POSTERIOR_RTOL, certified per row


def _gmm_and_data(seed=11, n=3000, dim=12, k=32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (k, dim))
    data = centres[rng.integers(0, k, n)] + rng.normal(0, 0.7, (n, dim))
    v = GMMVocabulary(k, max_iter=30, random_state=0).fit(data[: n // 2])
    return v, data[n // 2 :]


@pytest.mark.parametrize("threshold", [1e-6, 1e-3])
def test_mixed_precision_posteriors_equal_float64(threshold):
    from bowlrp.encoding.fisher import sparse_posteriors

    v, data = _gmm_and_data()
    args = (data, v.means_, v.covariances_, v.weights_, threshold)
    ref = sparse_posteriors(*args, precision="float64").toarray()
    mixed = sparse_posteriors(*args, precision="mixed").toarray()
    both = (ref > 0) & (mixed > 0)
    np.testing.assert_allclose(mixed[both], ref[both], rtol=MIXED_RTOL)
    only = (ref > 0) != (mixed > 0)  # kept by one only: within the tolerance of the threshold
    assert np.all(np.abs(np.maximum(ref, mixed)[only] - threshold) <= MIXED_RTOL * threshold)
    assert both.sum() > len(data)  # several components per descriptor
    with pytest.raises(ValueError, match="precision"):
        sparse_posteriors(*args, precision="float16")


def test_mixed_precision_keeps_fisher_features_and_conservation(monkeypatch):
    """Fisher vectors from float32 log-likelihoods equal the float64 ones to the tolerance;
    relevance (which reuses the forward pass's posteriors) conserves exactly."""
    import bowlrp.encoding.fisher as fisher
    from bowlrp.rules import AlphaBeta, Epsilon

    rng = np.random.default_rng(12)
    sets = [random_descriptors(rng, n=250, dim=10) for _ in range(3)]
    enc = FisherVector(GMMVocabulary(16, pca_components=8, random_state=0), pyramid=PYRAMIDS[1]).fit(sets)
    monkeypatch.setattr(fisher, "POSTERIOR_PRECISION", "mixed")
    X = np.stack([enc.encode_one(d)[0] for d in sets])
    monkeypatch.setattr(fisher, "POSTERIOR_PRECISION", "float64")
    X64 = np.stack([enc.encode_one(d)[0] for d in sets])
    monkeypatch.setattr(fisher, "POSTERIOR_PRECISION", "mixed")
    np.testing.assert_allclose(X, X64, rtol=1e-7, atol=1e-9 * np.abs(X64).max())
    for d in sets:
        _, trace = enc.encode_one(d)
        R = rng.normal(size=enc.n_features_out_)
        for rule in (Epsilon(0.0), AlphaBeta(2.0, 1.0)):
            found = enc.relevance(R, trace, rule)
            assert abs(found.sum() - R.sum()) <= 1e-9 * np.abs(R).sum()


def test_saved_model_decides_the_same_with_mixed_precision(monkeypatch):
    """A model file written by bowlrp 0.1.0 (with a GMM / Fisher channel): decision values
    with float32 log-likelihoods equal those with float64 ones to 1e-9 relative."""
    from pathlib import Path

    import bowlrp.encoding.fisher as fisher
    from bowlrp import load

    legacy = Path(__file__).parent / "fixtures" / "v0_1_0"
    model = load(legacy / "two_channels_mkl.skops")
    assert any(isinstance(e, FisherVector) for e in model.encoders_)
    images = list(np.load(legacy / "images.npy", allow_pickle=False))
    monkeypatch.setattr(fisher, "POSTERIOR_PRECISION", "mixed")
    mixed = model.decision_function(images)
    monkeypatch.setattr(fisher, "POSTERIOR_PRECISION", "float64")
    np.testing.assert_allclose(mixed, model.decision_function(images), rtol=1e-9)
