"""SpRAy on Dask (``bowlrp.spray.distributed``, ``fit(client=)``, ``--workers``) gives the local result.

Default run: a threads cluster in this process (``LocalCluster(processes=False)``,
no start-up cost): the graph in row blocks, the clusterings and t-SNE as tasks,
the pooling of a heatmap folder and of a store's heatmaps in blocks (with a bad
record skipped as locally), and the command line through ``--scheduler``.
Slow: the same on a 2-process LocalCluster (``--workers 2``).
"""

import json

import numpy as np
import pytest

import bowlrp.spray.distributed as spray_dask
import bowlrp.spray.spectral as spectral
from bowlrp.cli.spray import main
from bowlrp.runs import open_store
from bowlrp.spray.heatmap_files import find_heatmaps, group_by_target
from bowlrp.spray.report import analyse_heatmaps, analyse_store
from bowlrp.spray.spectral import SpRAy
from tests.test_spray import blob_maps
from tests.test_spray_cli import _recorded_store, write_explained

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")

PARAMS = {
    "random_state": 0,
    "tsne_backend": "sklearn",
    "clusterings": ("spectral", "kmeans", "hdbscan"),
}
FOLDER = {**PARAMS, "embeddings": ("spectral",)}  # the reading and pooling tests: no t-SNE


@pytest.fixture(scope="module")
def planted():
    maps, groups = blob_maps(np.random.default_rng(5), [(8, 8), (30, 30), (8, 30)], 60, jitter=1.0)
    return maps, groups


def assert_same_spray(a: SpRAy, b: SpRAy) -> None:
    """Every fitted result of two SpRAy fits: eigenvalues to 1e-12, labels and clusterings exactly."""
    np.testing.assert_allclose(a.spectral_eigenvalues_, b.spectral_eigenvalues_, rtol=0, atol=1e-12)
    assert np.array_equal(a.labels_, b.labels_)
    assert a.clusterings_.keys() == b.clusterings_.keys()
    for name in a.clusterings_:
        assert np.array_equal(a.clusterings_[name], b.clusterings_[name]), name
    assert a.embeddings_.keys() == b.embeddings_.keys()
    for name in a.embeddings_:
        np.testing.assert_allclose(a.embeddings_[name], b.embeddings_[name], rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(a.cluster_maps_, b.cluster_maps_)


@pytest.mark.parametrize(
    "embeddings",
    [("spectral",), pytest.param(("spectral", "tsne"), marks=pytest.mark.slow)],  # t-SNE: ~10 s a fit
    ids=["spectral", "tsne"],
)
def test_fit_on_dask_equals_the_local_fit(threads, planted, monkeypatch, embeddings):
    maps, groups = planted
    monkeypatch.setattr(spectral, "KNN_BLOCK", 64)  # 180 maps: three row blocks, three tasks
    params = {**PARAMS, "embeddings": embeddings}
    local = SpRAy(**params).fit(maps)
    on_dask = SpRAy(**params).fit(maps, client=threads)
    assert set(on_dask.embeddings_) == set(embeddings)
    assert_same_spray(on_dask, local)
    assert local.n_clusters_ == 3 and len(set(zip(local.labels_, groups))) == 3  # the planted groups
    W_local = spectral.knn_affinity(spectral.normalize_pooled(spectral.pool_maps(maps, 20), None), 6)
    W_dask = spectral.knn_affinity(spectral.normalize_pooled(spectral.pool_maps(maps, 20), None), 6, threads)
    assert (W_local != W_dask).nnz == 0 and np.array_equal(W_local.indices, W_dask.indices)


def _folder(tmp_path):
    root = tmp_path / "heatmaps"
    write_explained(root, None, n_corner=12, n_centre=12, target="horse")
    write_explained(root, None, n_corner=6, n_centre=6, target="cow", sub="b", seed=1)
    np.save(root / "a" / "horse_03_relevance.npy", np.full((32, 32), np.nan))  # found, refused when read
    return root


def test_pooling_a_folder_on_dask_equals_the_local_pooling(threads, tmp_path, monkeypatch):
    root = _folder(tmp_path)
    monkeypatch.setattr(spray_dask, "POOL_BLOCK", 5)
    skipped_local, skipped_dask = [], []
    records = find_heatmaps(root, skipped_local.append)
    local, few = analyse_heatmaps(group_by_target(records), FOLDER, True, skipped_local.append)
    records = find_heatmaps(root, skipped_dask.append)
    groups = group_by_target(records)
    pooled, kept = spray_dask.pool_on_dask(
        threads, groups["horse"], 20, (32, 32), on_skip=skipped_dask.append, block=5
    )
    assert len(kept) == 23 and pooled.shape == (23, 20, 20)
    skipped_dask.clear()
    on_dask, few_dask = analyse_heatmaps(groups, FOLDER, True, skipped_dask.append, client=threads)
    assert few == few_dask == {}
    assert [a.target for a in on_dask] == [a.target for a in local] == ["horse", "cow"]
    assert skipped_dask == skipped_local and len(skipped_local) == 1
    assert "horse_03" in skipped_local[0].record and "NaN" in skipped_local[0].reason
    for a, b in zip(on_dask, local):
        assert [r.stem for r in a.records] == [r.stem for r in b.records]
        assert a.pooled.tobytes() == b.pooled.tobytes()
        assert_same_spray(a.spray, b.spray)


def test_pooling_a_store_on_another_grid_on_dask(threads, tmp_path):
    location, _ = _recorded_store(tmp_path, n=12)
    store = open_store(location)
    params = {**FOLDER, "grid": 5}  # not the store's grid: every heatmap is read and pooled again
    local, _ = analyse_store(store, params, quiet=True)
    on_dask, _ = analyse_store(store, params, quiet=True, client=threads)
    assert len(local) == len(on_dask) == 1
    assert on_dask[0].pooled.shape == (12, 5, 5)
    assert on_dask[0].pooled.tobytes() == local[0].pooled.tobytes()
    assert_same_spray(on_dask[0].spray, local[0].spray)
    same_grid, _ = analyse_store(store, FOLDER, quiet=True, client=threads)
    assert same_grid[0].pooled.shape == (12, store.grid, store.grid)


def _spectrum(out):
    return json.loads((out / "spectrum.json").read_text())


def test_command_line_on_a_scheduler_writes_the_local_report(threads, tmp_path, capsys):
    location, _ = _recorded_store(tmp_path, n=12)
    args = ["--store", location, "--clusters", "2", "--quiet", "--embeddings", "spectral"]
    assert main([*map(str, args), "--out", str(tmp_path / "local")]) == 0
    address = threads.scheduler.address
    assert main([*map(str, args), "--out", str(tmp_path / "dask"), "--scheduler", address]) == 0
    assert _spectrum(tmp_path / "dask") == _spectrum(tmp_path / "local")
    assert (tmp_path / "dask" / "clusters.csv").read_bytes() == (
        tmp_path / "local" / "clusters.csv"
    ).read_bytes()
    capsys.readouterr()
    code = main([*map(str, args), "--out", str(tmp_path / "x"), "--workers", "1", "--scheduler", address])
    assert code == 2 and "exclude each other" in capsys.readouterr().err
    code = main([*map(str, args), "--out", str(tmp_path / "y"), "--workers", "1000"])
    err = capsys.readouterr().err
    assert code == 2 and "1000 local workers" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_two_worker_processes_give_the_local_result(tmp_path, capsys):
    root = _folder(tmp_path)
    args = ["--heatmaps", root, "--clusters", "eigengap", "--quiet", "--tsne", "sklearn"]
    assert main([*map(str, args), "--out", str(tmp_path / "local")]) == 1  # the broken record
    capsys.readouterr()
    assert main([*map(str, args), "--out", str(tmp_path / "dask"), "--workers", "2"]) == 1
    assert _spectrum(tmp_path / "dask") == _spectrum(tmp_path / "local")
    assert (tmp_path / "dask" / "clusters.csv").read_bytes() == (
        tmp_path / "local" / "clusters.csv"
    ).read_bytes()
    assert "horse_03" in capsys.readouterr().err
