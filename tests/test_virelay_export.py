"""SpRAy results exported as a ViRelAy project, checked with the real ViRelAy (issue 28).

Every test loads the export with ViRelAy's own loader (``virelay.model.Project``); the
server tests start ViRelAy's own program (``python -m virelay``, the ``virelay``
command) on a free local port and talk to it over HTTP. Default run: the export of
small stand-in folders and a relevance store (served by ViRelAy), the CLI, the safety
of the destination. Slow (``-m slow``): the planted-shortcut data end to end
(bowlrp-explain -> bowlrp-spray --export-virelay -> ViRelAy's server), issue 28's
"done when".
"""

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import h5py  # the virelay extra; make install installs it, so a missing one fails here, not skips
import numpy as np
import pytest
import virelay.model as virelay_model

from bowlrp.cli.spray import main
from bowlrp.datasets.shortcut import save_samples
from bowlrp.image import colorize
from bowlrp.model_files import save
from bowlrp.runs import open_store
from bowlrp.spray import virelay as virelay_export
from bowlrp.spray.heatmap_files import attach_images, attach_recorded_images, find_heatmaps, group_by_target
from bowlrp.spray.report import analyse_heatmaps, analyse_store
from bowlrp.spray.virelay import (
    MANIFEST,
    VirelayExportError,
    check_destination,
    export_virelay,
    label_map,
    spectral_embedding,
)
from tests.test_spray_cli import _recorded_store, write_explained
from tests.test_spray_shortcut import cached_study

PARAMS = {"grid": 20, "random_state": 0}


def _analyses(tmp_path: Path, images: bool = True, params=None):
    """Two classes as bowlrp-explain writes them: horse (corner vs centre maps), cat (centre)."""
    heat, imgs = tmp_path / "heat", tmp_path / "imgs"
    write_explained(heat, imgs if images else None, target="horse", sub="a")
    write_explained(heat, imgs if images else None, n_corner=0, n_centre=6, target="cat", sub="b", seed=1)
    records = find_heatmaps(heat)
    if images:
        records = attach_images(records, imgs)
    analyses, _ = analyse_heatmaps(group_by_target(records), {**PARAMS, **(params or {})}, quiet=True)
    return analyses


def _index_rows(project_dir: Path) -> list[dict]:
    with open(project_dir / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@contextlib.contextmanager
def _project(path: Path):
    project = virelay_model.Project(str(path))
    try:
        yield project
    finally:
        project.close()


def _knn_laplacian_reference(X: np.ndarray, k: int) -> np.ndarray:
    """Plain NumPy: binary kNN graph (Euclidean), W = max(A, A^T), L_sym = I - D^-1/2 W D^-1/2 and D."""
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    A = np.zeros_like(d)
    A[np.arange(len(X))[:, None], np.argsort(d, axis=1, kind="stable")[:, :k]] = 1.0
    W = np.maximum(A, A.T)
    degree = W.sum(axis=1)
    s = 1.0 / np.sqrt(degree)
    return np.eye(len(X)) - s[:, None] * W * s[None, :], degree


def test_export_opens_in_virelay_with_its_categories_clusterings_and_embeddings(tmp_path):
    analyses = _analyses(tmp_path, params={"embedding": False})  # t-SNE: the end-to-end test below
    result = export_virelay(
        analyses,
        tmp_path / "proj",
        labels=["cat", "dog", "horse"],
        class_names=["Cat", "Dog", "Horse"],
        quiet=True,
    )
    assert sorted(p.name for p in result.path.iterdir()) == sorted(
        [
            "analysis.h5",
            "attribution.h5",
            "dataset.h5",
            "index.csv",
            "label-map.json",
            "project.yaml",
            MANIFEST,
        ]
    )
    assert result.categories == {"n00000002": "Horse", "n00000000": "Cat"}
    with _project(result.project) as project:
        # the label map names the model's classes, in the order of its outputs
        assert [(lb.index, lb.word_net_id, lb.name) for lb in project.label_map.labels] == [
            (0, "n00000000", "Cat"),
            (1, "n00000001", "Dog"),
            (2, "n00000002", "Horse"),
        ]
        assert project.get_analysis_methods() == ["SpRAy"]
        categories = project.get_analysis_categories("SpRAy")
        assert [(c.name, c.human_readable_name) for c in categories] == [
            ("n00000002", "Horse"),
            ("n00000000", "Cat"),
        ]
        names = project.get_analysis_clustering_names("SpRAy")
        assert names == result.clusterings and names[0] == "eigengap"
        # every clustering SpRAy carries that both classes have (the small class has fewer k)
        carried = [set(getattr(a.spray, "clusterings_", None) or {}) for a in analyses]
        assert set.intersection(*carried) <= set(names)
        embedding_names = project.get_analysis_embedding_names("SpRAy")
        assert embedding_names == result.embeddings and "spectral" in embedding_names
        rows = _index_rows(result.path)
        assert [r["index"] for r in rows] == [str(i) for i in range(len(rows))] and len(rows) == 16 + 6
        assert len(project.dataset) == len(rows)
        for a, category in zip(analyses, ("n00000002", "n00000000")):
            sp = a.spray
            chosen = project.get_analysis("SpRAy", category, "eigengap", "spectral")
            np.testing.assert_array_equal(chosen.clustering, sp.labels_)
            for name in names[1:]:
                got = project.get_analysis("SpRAy", category, name, "spectral")
                np.testing.assert_array_equal(got.clustering, sp.clusterings_[name])
            spectral = project.get_analysis("SpRAy", category, "eigengap", "spectral")
            expected = (getattr(sp, "embeddings_", None) or {}).get("spectral")
            if expected is None:
                _, expected = spectral_embedding(sp, a.pooled)
            np.testing.assert_allclose(spectral.embedding, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                spectral.eigenvalues[: len(sp.eigenvalues_)], sp.eigenvalues_, atol=1e-6
            )
            # every point maps back to its file through index.csv, and its class
            for idx, record in zip(chosen.attribution_indices, a.records):
                row = rows[int(idx)]
                assert row["id"] == record.stem and row["class"] == a.target
                assert Path(row["path"]) == record.image
                attribution = project.get_attribution(int(idx))
                assert [lb.name for lb in attribution.labels] == [result.categories[category]]
                heat = np.load(record.npy)
                # relevance over three channels sums to the map (float32 storage)
                np.testing.assert_allclose(attribution.data.astype(np.float64).sum(axis=2), heat, atol=1e-6)
                sample = project.get_sample(int(idx))
                grey = cv2.imread(str(record.image), cv2.IMREAD_GRAYSCALE)
                np.testing.assert_array_equal(sample.data, np.repeat(grey[:, :, None], 3, axis=2))
                assert (
                    attribution.prediction[["Cat", "Dog", "Horse"].index(result.categories[category])] == 1.0
                )
    with h5py.File(result.path / "attribution.h5") as f:
        np.testing.assert_array_equal(f["index"][()], np.arange(22))
    manifest = json.loads((result.path / MANIFEST).read_text())
    assert manifest["format"] == "bowlrp-virelay-export" and manifest["samples"] == 22


def test_every_clustering_and_embedding_spray_carries_is_written(tmp_path):
    """``clusterings_`` / ``embeddings_`` (the several analyses of issue 28) go into the export;
    names some class lacks are left out with a warning (ViRelAy lists the first category's)."""
    analyses = _analyses(tmp_path, images=False, params={"embedding": False})
    rng = np.random.default_rng(0)
    for a in analyses:
        n = len(a.records)
        a.spray.clusterings_ = {"kmeans-k2": np.arange(n) % 2, "dbscan": np.where(np.arange(n) < 3, -1, 0)}
        a.spray.embeddings_ = {"umap": rng.normal(size=(n, 2)), "tsne": rng.normal(size=(n, 2))}
        a.spray.clustering_scores_ = {"kmeans-k2": 0.25}
    analyses[1].spray.clusterings_["kmeans-k5"] = np.arange(len(analyses[1].records)) % 5
    with pytest.warns(UserWarning, match="kmeans-k5"):
        result = export_virelay(analyses, tmp_path / "proj", quiet=True)
    assert result.clusterings == ["eigengap", "kmeans-k2", "dbscan"] and result.dropped == ["kmeans-k5"]
    # 2-D first, t-SNE leading (ViRelAy opens the first); the spectral embedding computed here
    assert result.embeddings == ["tsne", "umap", "spectral"]
    with _project(result.project) as project:
        assert [lb.name for lb in project.label_map.labels] == ["horse", "cat"]  # the analysed classes
        assert project.get_analysis_clustering_names("SpRAy") == ["eigengap", "kmeans-k2", "dbscan"]
        for a, category in zip(analyses, ("n00000000", "n00000001")):
            got = project.get_analysis("SpRAy", category, "dbscan", "umap")
            np.testing.assert_array_equal(got.clustering, a.spray.clusterings_["dbscan"])
            np.testing.assert_allclose(got.embedding, a.spray.embeddings_["umap"], rtol=1e-6)
        with h5py.File(result.path / "analysis.h5") as f:
            assert f["n00000000/cluster/dbscan"].attrs["k"] == 1  # noise (-1) is not a cluster
            assert f["n00000000/cluster/kmeans-k2"].attrs["k"] == 2
            assert f["n00000000/cluster/kmeans-k2"].attrs["score"] == 0.25
            assert f["n00000000/cluster/eigengap"].attrs["k"] == analyses[0].spray.n_clusters_
            # the spectral embedding: D^-1/2 U, U the eigenvectors of L_sym of SpRAy's graph
            # (plain NumPy reference)
            for a, category in zip(analyses, ("n00000000", "n00000001")):
                sp = a.spray
                L, degree = _knn_laplacian_reference(a.pooled.reshape(len(a.pooled), -1), sp.n_neighbors_)
                values = f[f"{category}/embedding/spectral"].attrs["eigenvalue"].astype(np.float64)
                Y = f[f"{category}/embedding/spectral"][()].astype(np.float64)
                U = Y * np.sqrt(degree)[:, None]
                assert U.shape == (len(a.records), len(sp.eigenvalues_))
                np.testing.assert_allclose(values, np.linalg.eigvalsh(L)[: len(values)], atol=1e-6)
                np.testing.assert_allclose(L @ U, U * values[None, :], atol=1e-5)
                np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-5)
        # without images the dataset shows each map in bwr
        record = analyses[0].records[0]
        heat = np.load(record.npy)
        np.testing.assert_array_equal(project.get_sample(0).data, colorize(heat / np.abs(heat).max(), "bwr"))


def test_maps_of_other_shapes_keep_their_sum_and_large_ones_are_scaled_down(tmp_path, monkeypatch):
    """Also: above INDEX_LIMIT maps the attribution index is left out and ViRelAy reads row i as sample i."""
    monkeypatch.setattr(virelay_export, "INDEX_LIMIT", 3)
    heat = tmp_path / "heat"
    heat.mkdir()
    rng = np.random.default_rng(1)
    shapes = [(40, 60)] * 5 + [(30, 20), (80, 50)]
    for i, shape in enumerate(shapes):
        np.save(heat / f"m{i}_relevance.npy", rng.normal(size=shape))
        (heat / f"m{i}.json").write_text(json.dumps({"target": "x", "score": 0.5}))
    params = {**PARAMS, "embedding": False}
    analyses, _ = analyse_heatmaps(group_by_target(find_heatmaps(heat)), params, quiet=True)
    result = export_virelay(analyses, tmp_path / "proj", max_side=30, quiet=True)
    with h5py.File(result.path / "attribution.h5") as f:
        assert "index" not in f and len(f["attribution"]) == 7
    with _project(result.project) as project:
        for i, record in enumerate(analyses[0].records):
            data = project.get_attribution(i).data.astype(np.float64)
            assert data.shape == (20, 30, 3)  # the common shape 40 x 60, scaled to a side of 30
            np.testing.assert_allclose(data.sum(), np.load(record.npy).sum(), rtol=1e-5, atol=1e-5)
            assert project.get_sample(i).data.shape == (20, 30, 3)


def test_a_directory_that_is_not_an_earlier_export_is_never_written(tmp_path):
    analyses = _analyses(tmp_path, images=False, params={"embedding": False})
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(VirelayExportError, match="not a ViRelAy project written by bowlrp"):
        export_virelay(analyses, foreign, quiet=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(VirelayExportError, match="symbolic link"):
        export_virelay(analyses, link, quiet=True)
    assert not (tmp_path / "elsewhere").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(VirelayExportError, match="not a directory"):
        export_virelay(analyses, tmp_path / "file", quiet=True)
    # an earlier export is replaced whole; with a file of the user's in it, it is not touched
    out = tmp_path / "proj"
    export_virelay(analyses, out, quiet=True)
    assert check_destination(out) is True
    before = (out / "index.csv").read_bytes()
    export_virelay(analyses[:1], out, quiet=True)
    assert len(_index_rows(out)) == len(analyses[0].records) and (out / "index.csv").read_bytes() != before
    (out / "mine.txt").write_text("mine")
    with pytest.raises(VirelayExportError, match="'mine.txt', which bowlrp did not write"):
        export_virelay(analyses, out, quiet=True)
    assert (out / "mine.txt").read_text() == "mine"
    (out / "mine.txt").unlink()
    (out / "analysis.h5").unlink()
    (out / "analysis.h5").symlink_to(tmp_path / "file")  # a link in place of one of its files
    with pytest.raises(VirelayExportError, match="'analysis.h5', which bowlrp did not write"):
        export_virelay(analyses, out, quiet=True)
    assert (tmp_path / "file").read_text() == "x"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    analyses = _analyses(tmp_path, images=False, params={"embedding": False})
    analyses[0].records[3].npy.unlink()  # read for the analysis, gone when the project is written
    with pytest.raises(Exception, match="cannot read"):
        export_virelay(analyses, tmp_path / "proj", quiet=True)
    assert not (tmp_path / "proj").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(VirelayExportError, match="none of the model's labels"):
        export_virelay(analyses, tmp_path / "proj", labels=[0, 1], quiet=True)
    with pytest.raises(VirelayExportError, match="one name per label"):
        export_virelay(analyses, tmp_path / "proj", labels=["cat", "horse"], class_names=["a"], quiet=True)


def test_export_of_a_relevance_store_maps_back_to_its_ids_and_images_and_virelay_serves_it(tmp_path):
    store, photos = _recorded_store(tmp_path)
    st = open_store(store)
    analyses, _ = analyse_store(st, {"random_state": 0, "n_clusters": 2, "embedding": False}, quiet=True)
    attach_recorded_images([r for a in analyses for r in a.records])
    result = export_virelay(analyses, tmp_path / "v", quiet=True)
    rows = _index_rows(result.path)
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(8)]
    assert [Path(r["path"]) for r in rows] == [(photos / f"p{i}.png").resolve() for i in range(8)]
    with _project(result.project) as project:
        assert project.get_analysis_clustering_names("SpRAy")[0] == "spectral-k2"
        for i, record in enumerate(analyses[0].records):
            sample = project.get_sample(i).data
            np.testing.assert_array_equal(sample, cv2.imread(str(photos / f"p{i}.png"))[:, :, ::-1])
            attribution = project.get_attribution(i)
            heat = st.heatmap(record.stem, 0).astype(np.float64)
            np.testing.assert_allclose(attribution.data.astype(np.float64).sum(axis=2), heat, atol=1e-6)
            # the store's score for the explained class (the stand-in's score is the map's sum)
            np.testing.assert_allclose(attribution.prediction, [heat.sum()], rtol=1e-5)
    # ViRelAy's own server (the `virelay` program) serves it: projects, analysis, heatmaps
    with virelay_server(result.project) as base:
        analysis = _check_served(base, "n00000000", "spectral-k2", embedding="spectral")
        assert sorted(p["attributionIndex"] for p in analysis["embedding"]) == list(range(8))


def _run_cli(args, capsys):
    code = main([*map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exports_from_a_heatmap_folder_and_refuses_bad_destinations(tmp_path, capsys):
    heat, imgs = tmp_path / "heat", tmp_path / "imgs"
    write_explained(heat, imgs, target="horse", sub="a")
    code, out, err = _run_cli(
        [
            "--heatmaps",
            heat,
            "--images",
            imgs,
            "--out",
            tmp_path / "report",
            "--export-virelay",
            tmp_path / "v1",
        ],
        capsys,
    )
    assert code == 0, err
    assert f"open it with: virelay {tmp_path / 'v1' / 'project.yaml'}" in out
    with _project(tmp_path / "v1" / "project.yaml") as project:
        assert [c.human_readable_name for c in project.get_analysis_categories("SpRAy")] == ["horse"]
        assert len(project.dataset) == 16
    # refused before any work: the same directory as the report, a directory of the user's,
    # --model without a project
    code, _, err = _run_cli(
        ["--heatmaps", heat, "--out", tmp_path / "r3", "--export-virelay", tmp_path / "r3"], capsys
    )
    assert code == 2 and "name the same directory" in err
    code, _, err = _run_cli(["--heatmaps", heat, "--out", tmp_path / "r3", "--export-virelay", heat], capsys)
    assert code == 2 and "not a ViRelAy project written by bowlrp" in err and not (tmp_path / "r3").exists()
    code, _, err = _run_cli(["--heatmaps", heat, "--out", tmp_path / "r3", "--model", "m.skops"], capsys)
    assert code == 2 and "--export-virelay" in err


# -- ViRelAy's own server ----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a local test server
        return response.status, response.headers.get("Content-Type"), response.read()


@contextlib.contextmanager
def virelay_server(project_yaml: Path):
    """``virelay PROJECT --host 127.0.0.1 --port P`` (as ``python -m virelay``), stopped afterwards."""
    port = _free_port()
    env = {**os.environ, "BROWSER": "true"}  # ViRelAy opens a browser tab a second after start
    proc = subprocess.Popen(
        [sys.executable, "-m", "virelay", str(project_yaml), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"virelay exited: {proc.stdout.read().decode(errors='replace')}")
            try:
                _get(base + "/api/projects", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("virelay did not answer within 90 s") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _check_served(base: str, category: str, clustering: str, embedding: str = "tsne") -> dict:
    """/api/projects, the project, one analysis and one attribution heatmap, over HTTP."""
    status, _, body = _get(base + "/api/projects")
    assert status == 200 and len(json.loads(body)) == 1
    status, _, body = _get(base + "/api/projects/0")
    method = json.loads(body)["analysisMethods"][0]
    assert method["name"] == "SpRAy" and category in [c["name"] for c in method["categories"]]
    status, _, body = _get(
        f"{base}/api/projects/0/analyses/SpRAy"
        f"?category={category}&clustering={clustering}&embedding={embedding}"
    )
    analysis = json.loads(body)
    index = analysis["embedding"][0]["attributionIndex"]
    for superimpose in ("false", "true"):
        status, kind, body = _get(
            f"{base}/api/projects/0/attributions/{index}/heatmap"
            f"?colorMap=blue-white-red&superimpose={superimpose}"
        )
        assert status == 200 and kind == "image/jpeg"
        picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.ndim == 3 and picture.std() > 0
    return analysis


@pytest.mark.slow  # ~50 s of CPU (training, bowlrp-explain, SpRAy with t-SNE, the server)
def test_planted_shortcut_explain_spray_export_and_virelay_serves_it(tmp_path, capsys):
    """issue 28's "done when": bowlrp-explain -> bowlrp-spray --export-virelay -> virelay serves the
    project, and among the exported clusterings of the stamped class one isolates the stamped images."""
    r = cached_study("bow", 0)
    positives = [s for s in r["test"] if s.label == 1]
    save_samples(positives, tmp_path / "images" / "class1", "test")
    save(r["model"], tmp_path / "model.skops")
    proc = subprocess.run(
        [sys.executable, "-m", "bowlrp.explain", "--image", str(tmp_path / "images" / "class1"), "--quiet"]
        + [
            "--model",
            str(tmp_path / "model.skops"),
            "--target",
            "1",
            "--out",
            str(tmp_path / "heat" / "class1"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    project_dir = tmp_path / "virelay"
    code, out, err = _run_cli(
        ["--heatmaps", tmp_path / "heat", "--images", tmp_path / "images", "--out", tmp_path / "report"]
        + ["--export-virelay", project_dir, "--model", tmp_path / "model.skops", "--random-state", "0"],
        capsys,
    )
    assert code == 0, err
    stamped = {f"test_{i:04d}" for i, s in enumerate(positives) if s.has_artefact}
    rows = _index_rows(project_dir)
    is_stamped = np.array([Path(row["path"]).stem in stamped for row in rows])
    assert is_stamped.sum() == len(stamped) > 0
    with _project(project_dir / "project.yaml") as project:
        assert [lb.name for lb in project.label_map.labels] == ["0", "1"]  # the model's classes
        (category,) = project.get_analysis_categories("SpRAy")
        assert (category.name, category.human_readable_name) == ("n00000001", "1")
        best = {}
        for name in project.get_analysis_clustering_names("SpRAy"):
            analysis = project.get_analysis("SpRAy", category.name, name, "tsne")
            labels = np.asarray(analysis.clustering)
            mine = is_stamped[np.asarray(analysis.attribution_indices)]
            scores = []
            for c in np.unique(labels[labels >= 0]):
                members = labels == c
                scores.append((mine[members].mean(), members[mine].mean()))  # purity, recall
            best[name] = max(scores, key=min)
    name, (purity, recall) = max(best.items(), key=lambda kv: min(kv[1]))
    assert purity >= 0.8 and recall >= 0.8, best
    with virelay_server(project_dir / "project.yaml") as base:
        analysis = _check_served(base, "n00000001", name)
        served = np.array([p["cluster"] for p in analysis["embedding"]])
        with _project(project_dir / "project.yaml") as project:
            np.testing.assert_array_equal(
                served, project.get_analysis("SpRAy", "n00000001", name, "tsne").clustering
            )


def test_label_map_ids_are_wordnet_style_and_unique():
    entries = label_map(["a", "b", "c"] * 5)
    assert [e["index"] for e in entries] == list(range(15))
    assert len({e["word_net_id"] for e in entries}) == 15
    assert all(len(e["word_net_id"]) == 9 and e["word_net_id"][0] == "n" for e in entries)


def test_resizing_a_map_keeps_its_sum_without_blowing_up_a_zero_sum():
    rng = np.random.default_rng(2)
    for shape, to in [((40, 60), (20, 30)), ((30, 20), (20, 30)), ((7, 9), (20, 30))]:
        m = rng.normal(size=shape) + 0.2
        out = virelay_export._resized_map(m, to)
        assert out.shape == to
        np.testing.assert_allclose(out.sum(), m.sum(), rtol=1e-12)
    m = np.zeros((30, 20))
    m[0, 0], m[-1, -1] = 1.0, -1.0  # sums to 0: scaled by the pixel counts only
    out = virelay_export._resized_map(m, (20, 30))
    assert abs(out.sum()) < 1e-12 and np.abs(out).max() <= 1.0
