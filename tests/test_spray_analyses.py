"""SpRAy's analyses (several clusterings and embeddings per class) and its stage cache (issue 28)."""

import warnings

import h5py
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

import bowlrp.spray.spectral as spray
from bowlrp.spray import analyses
from bowlrp.spray.cache import CacheWarning, StageCache, stage_key
from bowlrp.spray.spectral import SpRAy, knn_affinity, rank_classes

from .test_spray import blob_maps, laplacian_reference

CENTRES = [(10, 10), (10, 30), (30, 20)]
ALL = ("spectral", "kmeans", "agglomerative", "hdbscan", "dbscan")


@pytest.fixture(scope="module")
def planted():
    return blob_maps(np.random.default_rng(4), CENTRES, 25)


@pytest.fixture(scope="module")
def fitted(planted):
    maps, _ = planted
    return SpRAy(random_state=0, clusterings=ALL, k_range=(2, 6)).fit(maps)


def test_every_clustering_is_there_named_numbered_and_scored(fitted, planted):
    _, groups = planted
    sp = fitted
    expected = [f"{f}-k{k}" for f in ("spectral", "kmeans", "agglomerative") for k in range(2, 7)]
    assert list(sp.clusterings_) == expected + ["hdbscan", "dbscan"]
    for name, labels in sp.clusterings_.items():
        assert labels.shape == (75,) and labels.dtype == np.int64
        kept = labels[labels >= 0]
        sizes = np.bincount(kept)
        assert list(sizes) == sorted(sizes, reverse=True), name  # numbered by size
        assert sp.clustering_k_[name] == len(sizes)
        if name.split("-k")[0] in ("spectral", "kmeans", "agglomerative"):
            assert sp.clustering_k_[name] == int(name.split("-k")[1])
        k = sp.clustering_k_[name]
        assert sp.clustering_eigengaps_[name] == pytest.approx(
            sp.spectral_eigenvalues_[k] - sp.spectral_eigenvalues_[k - 1]
        )
        assert -1 <= sp.clustering_scores_[name] <= 1
    # the three planted groups: found by every family at k = 3 and by the density clusterings
    for name in ("spectral-k3", "kmeans-k3", "agglomerative-k3", "hdbscan"):
        assert adjusted_rand_score(groups, sp.clusterings_[name]) == 1.0, name
    assert adjusted_rand_score(groups, sp.clusterings_["dbscan"]) > 0.8
    # labels_ is the spectral clustering at the eigengap's k, and the best silhouette is at k = 3
    np.testing.assert_array_equal(sp.labels_, sp.clusterings_[f"spectral-k{sp.n_clusters_}"])
    spectral = {k: sp.clustering_scores_[f"spectral-k{k}"] for k in range(2, 7)}
    assert max(spectral, key=spectral.get) == 3


def test_embeddings_and_spectral_embedding_against_a_numpy_reference(fitted, planted):
    maps, _ = planted
    sp = fitted
    assert set(sp.embeddings_) == {"spectral", "tsne"}
    assert sp.embeddings_["tsne"] is sp.embedding_ and sp.embedding_.shape == (75, 2)
    assert sp.tsne_backend_ == "sklearn"  # small sets: the Barnes-Hut t-SNE of earlier versions
    E = sp.embeddings_["spectral"]
    m = max(10, 6 + 1)
    assert E.shape == (75, m) and sp.spectral_eigenvalues_.shape == (m,)
    np.testing.assert_allclose(sp.spectral_eigenvalues_[:10], sp.eigenvalues_)
    # reference: dense L_sym by loops, its eigenvectors, E = D^-1/2 U; compared as projectors on
    # the eigenspaces (eigenvectors of repeated eigenvalues are defined up to rotation)
    X = sp.features(maps)
    L = laplacian_reference(X, sp.n_neighbors_)
    values, U = np.linalg.eigh(L)
    np.testing.assert_allclose(sp.spectral_eigenvalues_, values[:m].clip(0), atol=1e-9)
    W = knn_affinity(X, sp.n_neighbors_).toarray()
    degree = W.sum(1)
    ours = E * np.sqrt(degree)[:, None]  # back to orthonormal eigenvectors
    np.testing.assert_allclose(ours.T @ ours, np.eye(m), atol=1e-8)
    P_ref = U[:, :m] @ U[:, :m].T if values[m] - values[m - 1] > 1e-6 else None
    if P_ref is not None:
        np.testing.assert_allclose(ours @ ours.T, P_ref, atol=1e-7)
    groups_of_zero = np.flatnonzero(values < 1e-9)
    Pz = U[:, groups_of_zero] @ U[:, groups_of_zero].T
    oz = ours[:, groups_of_zero] @ ours[:, groups_of_zero].T
    np.testing.assert_allclose(oz, Pz, atol=1e-7)


def relabel_reference(labels):
    out, seen = [], {}
    counts = {v: list(labels).count(v) for v in set(labels) if v >= 0}
    order = sorted(counts, key=lambda v: (-counts[v], list(labels).index(v)))
    seen = {v: i for i, v in enumerate(order)}
    for v in labels:
        out.append(-1 if v < 0 else seen[v])
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
def test_relabel_by_size_matches_reference(seed):
    labels = np.random.default_rng(seed).integers(-1, 5, 40)
    np.testing.assert_array_equal(analyses.relabel_by_size(labels), relabel_reference(labels))


def test_ward_on_a_subset_assigns_the_rest_to_the_nearest_mean(monkeypatch):
    rng = np.random.default_rng(0)
    X = np.vstack(
        [rng.normal(0, 0.2, (60, 3)), rng.normal(3, 0.2, (60, 3)), rng.normal((0, 4, 0), 0.2, (60, 3))]
    )
    truth = np.repeat([0, 1, 2], 60)
    full = analyses.ward_clusterings(X, [3], 0)[3]
    monkeypatch.setattr(analyses, "AGGLOMERATIVE_MAX", 50)
    sub = analyses.ward_clusterings(X, [2, 3], 0)
    assert adjusted_rand_score(truth, full) == 1.0 and adjusted_rand_score(truth, sub[3]) == 1.0
    assert len(np.unique(sub[2])) == 2


def count_eigensolves(monkeypatch):
    calls = []
    real = spray.laplacian_eigenvalues

    def counted(W, m):
        calls.append(m)
        return real(W, m)

    monkeypatch.setattr(spray, "laplacian_eigenvalues", counted)
    return calls


def test_cache_reuses_the_eigenvectors_when_a_clustering_parameter_changes(tmp_path, monkeypatch, planted):
    maps, _ = planted
    calls = count_eigensolves(monkeypatch)
    cache = tmp_path / "cache"
    first = SpRAy(random_state=0, clusterings=("spectral", "kmeans"), k_range=(2, 5), cache=cache).fit(maps)
    assert len(calls) == 1
    assert first.cache_info_["misses"] == {
        "pooling": 1,
        "affinity": 1,
        "eigen": 1,
        "clustering": 2,
        "tsne": 1,
    }
    # other clustering parameters: a fixed number of clusters, another family, a smaller k range
    second = SpRAy(
        random_state=0, n_clusters=2, clusterings=("kmeans", "hdbscan"), k_range=(2, 4), cache=cache
    ).fit(maps)
    assert len(calls) == 1  # no new eigendecomposition
    assert second.cache_info_["hits"]["eigen"] == 1 and second.cache_info_["hits"]["affinity"] == 1
    np.testing.assert_array_equal(second.embeddings_["spectral"], first.embeddings_["spectral"][:, :10])
    np.testing.assert_array_equal(second.eigenvalues_, first.eigenvalues_)
    np.testing.assert_array_equal(second.embedding_, first.embedding_)  # the t-SNE entry too
    for k in (2, 3, 4):
        np.testing.assert_array_equal(second.clusterings_[f"kmeans-k{k}"], first.clusterings_[f"kmeans-k{k}"])
    # a graph parameter changes the key of the affinity and of everything below it: solved again
    third = SpRAy(random_state=0, n_neighbors=7, clusterings=(), embedding=False, cache=cache).fit(maps)
    assert len(calls) == 2 and third.cache_info_["misses"]["eigen"] == 1
    # a cached fit equals an uncached one
    plain = SpRAy(random_state=0, n_clusters=2, clusterings=("kmeans", "hdbscan"), k_range=(2, 4)).fit(maps)
    assert not plain.cache_info_["hits"]
    np.testing.assert_array_equal(plain.labels_, second.labels_)
    np.testing.assert_allclose(plain.eigenvalues_, second.eigenvalues_, atol=1e-12)
    assert all(p.suffix == ".h5" for p in cache.iterdir())


def test_corrupt_or_foreign_cache_files_are_ignored_and_kept(tmp_path, monkeypatch, planted):
    maps, _ = planted
    cache = tmp_path / "cache"
    params = dict(random_state=0, clusterings=("spectral",), k_range=(2, 3), embedding=False, cache=cache)
    reference = SpRAy(**params).fit(maps)
    entries = sorted(cache.glob("eigen-*.h5"))
    assert len(entries) == 1
    calls = count_eigensolves(monkeypatch)
    # truncated: unreadable, ours or not cannot be told -> warned, recomputed, left as it is
    entries[0].write_bytes(b"\x89HDF\r\n\x1a\n this is not an HDF5 file any more")
    with pytest.warns(CacheWarning, match="cannot be read"):
        again = SpRAy(**params).fit(maps)
    assert len(calls) == 1
    assert entries[0].read_bytes().endswith(b"not an HDF5 file any more")  # never replaced
    np.testing.assert_allclose(again.eigenvalues_, reference.eigenvalues_)
    np.testing.assert_array_equal(again.labels_, reference.labels_)
    # a foreign HDF5 file under an entry's name: not ours, kept
    with h5py.File(entries[0], "w") as f:
        f["values"] = np.zeros(3)
    with pytest.warns(CacheWarning, match="not a SpRAy cache entry"):
        SpRAy(**params).fit(maps)
    with h5py.File(entries[0], "r") as f:
        assert set(f) == {"values"} and not f.attrs
    # our own entry with wrong contents (another shape): recomputed and replaced
    entries[0].unlink()
    SpRAy(**params).fit(maps)
    key = stage_key("", "x", {})  # any key: write our own bad entry under the real name
    store = StageCache(cache)
    with h5py.File(entries[0], "r") as f:
        real_key = str(f.attrs["key"])
    store.put("eigen", real_key, {}, {"values": np.zeros(2), "vectors": np.zeros((2, 2))})
    assert key != real_key
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # ours, readable: no warning, just recomputed
        fixed = SpRAy(**params).fit(maps)
    np.testing.assert_allclose(fixed.eigenvalues_, reference.eigenvalues_)
    with h5py.File(entries[0], "r") as f:
        assert f["vectors"].shape == (75, 10)


def test_a_cache_path_that_is_a_file_turns_the_cache_off(tmp_path, planted):
    maps, _ = planted
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.warns(CacheWarning, match="not a directory"):
        sp = SpRAy(random_state=0, clusterings=(), embedding=False, cache=path).fit(maps)
    assert path.read_text() == "mine" and sp.labels_.shape == (75,)


def test_rank_classes_over_every_class_of_a_multiclass_model():
    rng = np.random.default_rng(8)
    maps = {
        "two strategies": blob_maps(rng, [(10, 10), (30, 30)], 20)[0],
        "three strategies": blob_maps(rng, CENTRES, 14)[0],
        "one noisy": blob_maps(rng, [(20, 20)], 40, noise=0.3)[0],
        "one drifting": blob_maps(rng, [(20, 20)], 40, noise=0.1, jitter=4)[0],
    }
    table = rank_classes(maps, random_state=0)
    assert [r["rank"] for r in table] == [1, 2, 3, 4]
    assert {r["class"] for r in table[:2]} == {"two strategies", "three strategies"}
    lam = [r["lambda_2"] for r in table]
    assert lam == sorted(lam)
    by = {r["class"]: r for r in table}
    assert by["two strategies"]["n_clusters"] == 2 and by["three strategies"]["n_clusters"] == 3
    for r in table[:2]:
        assert r["eigengap"] == pytest.approx(
            r["eigenvalues"][r["n_clusters"]] - r["eigenvalues"][r["n_clusters"] - 1]
        )


def test_opentsne_backend(planted):
    pytest.importorskip("openTSNE", reason="optional extra bowlrp[spray]")
    maps, _ = planted
    sp = SpRAy(random_state=0, clusterings=(), tsne_backend="opentsne").fit(maps)
    assert sp.tsne_backend_ == "opentsne" and sp.embedding_.shape == (75, 2)
    assert np.all(np.isfinite(sp.embedding_))
    # the planted groups stay apart: every map's nearest neighbour in the embedding is of its group
    _, groups = planted
    d = ((sp.embedding_[:, None] - sp.embedding_[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(groups[d.argmin(1)] == groups) > 0.95


@pytest.mark.slow  # umap-learn's first call compiles its Numba kernels (~20 s)
def test_umap_embedding(planted):
    pytest.importorskip("umap", reason="optional extra bowlrp[spray]")
    maps, groups = planted
    sp = SpRAy(random_state=0, clusterings=(), embeddings=("spectral", "umap")).fit(maps)
    assert set(sp.embeddings_) == {"spectral", "umap"} and sp.embedding_ is None
    emb = sp.embeddings_["umap"]
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(groups[d.argmin(1)] == groups) > 0.95


def test_missing_optional_packages_say_what_to_install(monkeypatch, planted):
    maps, _ = planted
    monkeypatch.setattr(spray, "have_umap", lambda: False)
    with pytest.raises(ValueError, match=r"umap-learn: pip install 'bowlrp\[spray\]'"):
        SpRAy(embeddings=("umap",)).fit(maps)
    monkeypatch.setattr(analyses, "have_opentsne", lambda: False)
    with pytest.raises(ValueError, match="needs openTSNE"):
        SpRAy(clusterings=(), tsne_backend="opentsne").fit(maps)
    assert analyses.resolve_tsne_backend("auto", 10**6) == "sklearn"


@pytest.mark.parametrize(
    "params,match",
    [
        ({"clusterings": ("kmeans", "birch")}, "clusterings"),
        ({"clusterings": "kmeans"}, "clusterings"),
        ({"embeddings": ("pca",)}, "embeddings"),
        ({"k_range": (3, 2)}, "k_range"),
        ({"k_range": 5}, "k_range"),
        ({"tsne_backend": "cuda"}, "tsne_backend"),
        ({"min_cluster_size": 1}, "min_cluster_size"),
        ({"dbscan_eps": 0.0}, "dbscan_eps"),
    ],
)
def test_bad_analysis_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        SpRAy(**params).fit(np.random.default_rng(0).random((6, 4, 4)))


@pytest.mark.slow  # two openTSNE runs on 5,000 maps with FFT gradients: ~25 CPU s
def test_coarser_fft_grid_keeps_the_kl_divergence():
    """SpRAy's openTSNE settings (exact input neighbours, FFT grid cells 2 units wide) against
    openTSNE's defaults: the KL divergence reached stays within 5 % and the planted groups apart."""
    openTSNE = pytest.importorskip("openTSNE", reason="optional extra bowlrp[spray]")

    maps, groups = blob_maps(np.random.default_rng(12), CENTRES, analyses.OPENTSNE_FFT_MIN // 3 + 1)
    X = PCA(50, random_state=0).fit_transform(spray.normalize_pooled(spray.pool_maps(maps, 20), None))
    ours, backend = analyses.tsne_embedding(X, 7.0, 6.0, (0, 1), "opentsne")
    assert backend == "opentsne" and len(X) >= analyses.OPENTSNE_FFT_MIN
    common = dict(perplexity=7.0, early_exaggeration=6.0, initialization="pca", n_jobs=1, random_state=1)
    same = openTSNE.TSNE(negative_gradient_method="fft", neighbors="exact", ints_in_interval=2, **common).fit(
        np.ascontiguousarray(X)
    )
    np.testing.assert_array_equal(ours, np.asarray(same))  # the settings SpRAy passes
    default = openTSNE.TSNE(negative_gradient_method="fft", **common).fit(np.ascontiguousarray(X))
    assert same.kl_divergence <= 1.05 * default.kl_divergence, (same.kl_divergence, default.kl_divergence)
    _, nearest = NearestNeighbors(n_neighbors=2).fit(ours).kneighbors(ours)
    assert np.mean(groups[nearest[:, 1]] == groups) > 0.99
