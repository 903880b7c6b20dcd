"""SpRAy: pooling, graph, spectrum and clustering against plain-NumPy references."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

import bowlrp.spray.spectral as spray
from bowlrp.spray.spectral import (
    SpRAy,
    common_shape,
    eigengap,
    knn_affinity,
    laplacian_eigenvalues,
    normalize_pooled,
    pool_maps,
    rank_classes,
)


def pool_reference(m, grid):
    """Sum-pool by brute force: split every pixel into grid cells by overlap length."""
    H, W = m.shape
    out = np.zeros((grid, grid))
    for h in range(H):
        for w in range(W):
            for a in range(grid):
                ra = max(0.0, min(h + 1, (a + 1) * H / grid) - max(h, a * H / grid))
                if ra == 0:
                    continue
                for b in range(grid):
                    rb = max(0.0, min(w + 1, (b + 1) * W / grid) - max(w, b * W / grid))
                    out[a, b] += ra * rb * m[h, w]
    return out


def laplacian_reference(X, k):
    """I - D^-1/2 W D^-1/2 of the max-symmetrised binary kNN graph, by loops."""
    n = len(X)
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    A = np.zeros((n, n))
    for i in range(n):
        order = [j for j in np.argsort(d[i], kind="stable") if j != i][:k]
        A[i, order] = 1
    Wm = np.maximum(A, A.T)
    deg = Wm.sum(1)
    return np.eye(n) - Wm / np.sqrt(np.outer(deg, deg))


def blob_maps(rng, centres, n_per, shape=(40, 40), noise=0.05, jitter=0.0):
    """Maps with one Gaussian blob of relevance at a group-specific place, plus noise."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    maps, groups = [], []
    for g, (cy, cx) in enumerate(centres):
        for _ in range(n_per):
            jy, jx = rng.normal(0, jitter, 2)
            m = np.exp(-((yy - cy - jy) ** 2 + (xx - cx - jx) ** 2) / (2 * 4.0**2))
            maps.append(m + rng.normal(0, noise, shape))
            groups.append(g)
    return np.array(maps), np.array(groups)


@pytest.mark.parametrize("shape,grid", [((40, 40), 20), ((37, 53), 20), ((9, 7), 4), ((5, 5), 5)])
def test_pooling_matches_reference_and_keeps_the_sum(shape, grid):
    m = np.random.default_rng(0).normal(size=shape)
    got = pool_maps([m], grid)[0]
    np.testing.assert_allclose(got, pool_reference(m, grid), rtol=1e-12, atol=1e-12)
    assert np.isclose(got.sum(), m.sum(), rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), grid=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_pooling_keeps_total_relevance(h, w, grid, seed):
    m = np.random.default_rng(seed).normal(size=(h, w))
    assert np.isclose(pool_maps([m], grid)[0].sum(), m.sum(), rtol=1e-10, atol=1e-10)


def test_mixed_shapes_are_resized_to_the_most_common_shape():
    rng = np.random.default_rng(1)
    maps = [rng.random((40, 40)) for _ in range(4)] + [rng.random((80, 60)), rng.random((20, 30))]
    assert common_shape(m.shape for m in maps) == (40, 40)
    pooled = pool_maps(maps, 10)
    assert pooled.shape == (6, 10, 10)
    # a constant map keeps its mean per cell whatever its size: 40 x 40 pixels at 1 -> 16 per cell
    const = pool_maps([np.ones((40, 40)), np.ones((80, 60)), np.ones((20, 30))], 10, shape=(40, 40))
    np.testing.assert_allclose(const, 16.0, rtol=1e-6)  # OpenCV resizes in float32


def test_normalisations():
    P = np.array([[[3.0, -4.0]], [[0.0, 0.0]]])
    np.testing.assert_allclose(normalize_pooled(P, "l1"), [[3 / 7, -4 / 7], [0, 0]])
    np.testing.assert_allclose(normalize_pooled(P, "l2"), [[0.6, -0.8], [0, 0]])
    np.testing.assert_allclose(normalize_pooled(P, None), [[3, -4], [0, 0]])
    with pytest.raises(ValueError, match="normalize"):
        normalize_pooled(P, "max")


@pytest.mark.parametrize("k", [1, 3, 6])
def test_knn_graph_and_laplacian_spectrum_match_reference(k):
    X = np.random.default_rng(2).normal(size=(40, 5))
    W = knn_affinity(X, k).toarray()
    L_ref = laplacian_reference(X, k)
    deg = W.sum(1)
    np.testing.assert_allclose(np.eye(40) - W / np.sqrt(np.outer(deg, deg)), L_ref, atol=1e-12)
    values, _ = laplacian_eigenvalues(knn_affinity(X, k), 8)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(L_ref)[:8].clip(0), atol=1e-9)
    assert np.all(np.diff(values) >= -1e-12)


def knn_reference(X, k):
    """Rows of the k nearest neighbours of every point (itself left out), by a full distance table."""
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    return [sorted([j for j in np.argsort(d[i], kind="stable") if j != i][:k]) for i in range(len(X))]


@pytest.mark.parametrize("dims", [3, 40])  # a k-d tree and brute force in scikit-learn
def test_knn_graph_in_row_blocks_matches_reference_and_one_block(monkeypatch, dims):
    X = np.random.default_rng(11).normal(size=(300, dims))
    X[7] = X[8] = X[9]  # exact duplicates: ties scikit-learn breaks by its own order
    one_block = knn_affinity(X, 4)
    monkeypatch.setattr(spray, "KNN_BLOCK", 64)  # 5 blocks, the last one short
    blocks = knn_affinity(X, 4)
    assert (blocks != one_block).nnz == 0 and np.array_equal(blocks.indices, one_block.indices)
    assert blocks.has_sorted_indices
    rows = spray.knn_rows(X, 4, 0, 300)
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    exact = 0
    for i, ref in enumerate(knn_reference(X, 4)):
        np.testing.assert_allclose(np.sort(d[i, rows[i]]), np.sort(d[i, ref]), atol=1e-12)
        if not {7, 8, 9} & {i, *ref}:  # no tie among the duplicates: the same neighbours
            assert sorted(rows[i]) == ref, i
            exact += 1
    assert exact > 250
    A = np.zeros((300, 300))
    A[np.repeat(np.arange(300), 4), rows.ravel()] = 1
    np.testing.assert_array_equal(blocks.toarray(), np.maximum(A, A.T))


def test_stage_seconds_and_traced_memory_of_a_fit():
    import tracemalloc  # reason: only this test traces memory

    maps, _ = blob_maps(np.random.default_rng(6), [(8, 8), (30, 30)], 10)
    params = {"random_state": 0, "clusterings": ("spectral", "hdbscan"), "embeddings": ("spectral",)}
    sp = SpRAy(**params).fit(maps)
    assert list(sp.stage_seconds_) == ["pooling", "affinity", "eigen", "scores", "spectral", "hdbscan"]
    assert all(s["cpu"] >= 0 and s["wall"] >= 0 for s in sp.stage_seconds_.values())
    assert sp.stage_memory_ == {}  # not traced
    tracemalloc.start()
    try:
        traced = SpRAy(**params).fit(maps)
    finally:
        tracemalloc.stop()
    assert set(traced.stage_memory_) == set(sp.stage_seconds_)
    assert traced.stage_memory_["pooling"] >= 20 * 20 * 20 * 8  # the pooled maps themselves, float64
    np.testing.assert_array_equal(traced.labels_, sp.labels_)


def test_sparse_eigensolver_agrees_with_dense(monkeypatch):
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (150, 6)), rng.normal(6, 1, (150, 6))])
    W = knn_affinity(X, 6)
    dense, _ = laplacian_eigenvalues(W, 10)
    monkeypatch.setattr(spray, "_DENSE_EIGEN_MAX", 10)
    sparse, vectors = laplacian_eigenvalues(W, 10)
    assert vectors.shape == (300, 10)
    np.testing.assert_allclose(sparse, dense, atol=1e-8)


@pytest.mark.parametrize("n_clusters", ["eigengap", 12])
def test_large_set_path_finds_the_same_groups(monkeypatch, n_clusters):
    """Above _DENSE_EIGEN_MAX maps: ARPACK eigenvalues and k-means on the eigenvectors."""
    maps, groups = blob_maps(np.random.default_rng(9), [(10, 10), (10, 30), (30, 20)], 30)
    small = SpRAy(random_state=0, embedding=False, n_clusters=n_clusters).fit(maps)
    monkeypatch.setattr(spray, "_DENSE_EIGEN_MAX", 10)
    large = SpRAy(random_state=0, embedding=False, n_clusters=n_clusters).fit(maps)
    np.testing.assert_allclose(large.eigenvalues_, small.eigenvalues_, atol=1e-8)
    assert large.n_clusters_ == small.n_clusters_
    if n_clusters == "eigengap":
        assert large.n_clusters_ == 3 and adjusted_rand_score(groups, large.labels_) == 1.0
    else:
        assert len(np.unique(large.labels_)) == 12


def test_eigengap_position():
    assert eigengap([0.0, 0.0, 0.0, 0.5, 0.55]) == (3, 0.5)
    assert eigengap([0.0, 0.4, 0.5, 0.6])[0] == 1
    assert eigengap([0.0]) == (1, 0.0)


@pytest.mark.parametrize("normalize", ["l1", "l2", None])
def test_planted_groups_are_found_with_the_eigengap(normalize):
    maps, groups = blob_maps(np.random.default_rng(4), [(10, 10), (10, 30), (30, 20)], 25)
    sp = SpRAy(normalize=normalize, random_state=0, embedding=normalize is None).fit(maps)
    assert sp.n_clusters_ == 3
    assert adjusted_rand_score(groups, sp.labels_) == 1.0
    assert sp.eigenvalues_.shape == (10,)
    assert sp.eigenvalues_[0] == pytest.approx(0, abs=1e-9)
    assert sp.eigengap_ == pytest.approx(sp.eigenvalues_[3] - sp.eigenvalues_[2])
    assert sp.embedding_ is None if normalize else sp.embedding_.shape == (75, 2)
    assert sp.cluster_maps_.shape == (3, 20, 20)
    assert sp.n_neighbors_ == math.ceil(math.log(75))
    # each cluster's mean map peaks where its blob is
    for c in range(3):
        g = np.bincount(groups[sp.labels_ == c]).argmax()
        peak = np.unravel_index(sp.cluster_maps_[c].argmax(), (20, 20))
        centre = [(10, 10), (10, 30), (30, 20)][g]
        assert abs(peak[0] - centre[0] / 2) <= 1.5 and abs(peak[1] - centre[1] / 2) <= 1.5


def test_lists_of_mixed_shapes_fixed_clusters_and_reproducibility():
    maps, groups = blob_maps(np.random.default_rng(5), [(8, 8), (30, 30)], 12)
    mixed = [cv for cv in maps[:20]] + [np.kron(m, np.ones((2, 2))) / 4 for m in maps[20:]]
    sp = SpRAy(n_clusters=2, random_state=1, embedding=False).fit(mixed)
    assert sp.labels_.shape == (24,)
    assert sp.shape_ == (40, 40)
    assert adjusted_rand_score(groups, sp.labels_) == 1.0
    assert sp.embedding_ is None
    again = SpRAy(n_clusters=2, random_state=1, embedding=False).fit_predict(mixed)
    np.testing.assert_array_equal(again, sp.labels_)
    # clusters are numbered by size
    sp3 = SpRAy(n_clusters=3, random_state=0, embedding=False).fit(maps)
    sizes = np.bincount(sp3.labels_)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_fit_pooled_equals_fit():
    maps, _ = blob_maps(np.random.default_rng(6), [(8, 8), (30, 30)], 10)
    a = SpRAy(random_state=0, embedding=False).fit(maps)
    b = SpRAy(random_state=0, embedding=False).fit_pooled(pool_maps(maps, 20), (40, 40))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.eigenvalues_, b.eigenvalues_)
    np.testing.assert_allclose(a.features(maps), pool_maps(maps, 20).reshape(20, -1))


def test_estimator_conventions():
    sp = SpRAy(grid=5, normalize="l1", n_neighbors=3)
    twin = clone(sp)
    assert twin.get_params() == sp.get_params()
    assert not hasattr(twin, "labels_")
    sp.set_params(grid=7)
    assert sp.grid == 7


@pytest.mark.parametrize(
    "maps,match",
    [
        (np.zeros((2, 5, 5)), "at least 3"),
        (np.zeros((5, 5)), "shape"),
        ([np.zeros((4, 4)), np.zeros(4), np.zeros((4, 4))], "2-D"),
        ([np.zeros((4, 4))] * 2 + [np.full((4, 4), np.nan)], "NaN"),
        ([np.zeros((4, 4))] * 2 + [np.zeros((0, 4))], "empty"),
    ],
)
def test_bad_maps_raise_clear_errors(maps, match):
    with pytest.raises(ValueError, match=match):
        SpRAy().fit(maps)


@pytest.mark.parametrize(
    "params,match",
    [
        ({"normalize": "max"}, "normalize"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_clusters": "auto"}, "n_clusters"),
        ({"n_eigenvalues": 1}, "n_eigenvalues"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        SpRAy(**params).fit(np.zeros((5, 4, 4)))


def test_tiny_sets_work():
    rng = np.random.default_rng(7)
    sp = SpRAy(random_state=0).fit(rng.random((3, 6, 6)))
    assert sp.labels_.shape == (3,) and sp.eigenvalues_.shape == (3,)
    assert sp.embedding_.shape == (3, 2)


def test_rank_classes_puts_the_split_class_first():
    rng = np.random.default_rng(8)
    split, _ = blob_maps(rng, [(10, 10), (30, 30)], 20)
    one, _ = blob_maps(rng, [(20, 20)], 40, noise=0.3)
    table = rank_classes({"single": one, "two strategies": split}, random_state=0)
    assert [r["class"] for r in table] == ["two strategies", "single"]
    assert [r["rank"] for r in table] == [1, 2]
    first = table[0]
    assert first["n_clusters"] == 2 and first["n_maps"] == 40
    assert first["lambda_2"] < table[1]["lambda_2"]
    assert len(first["eigenvalues"]) == 5 and first["eigenvalues"][1] == first["lambda_2"]
