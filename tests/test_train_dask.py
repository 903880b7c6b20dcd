"""Training on Dask (bowlrp.runs.train_dask) gives the serial model; the training store's rules.

Default run: a threads cluster in this process (``LocalCluster(processes=False)``),
the SVM fit from given Gram matrices against ``KernelSVC.fit``, the Gram tiles,
the store (resume, fingerprint, foreign folders, removal, the vocabularies it keeps:
a rerun reads them and fits nothing, a tampered file is refused) and the CLI's refusals.
Slow: a 2-process LocalCluster, with a worker killed by SIGKILL mid-run.
"""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from bowlrp import KMeansVocabulary, save
from bowlrp.classifier.svm import KernelSVC
from bowlrp.cli import train as train_cli
from bowlrp.datasets.voc import read_dataset
from bowlrp.datasets.voc_like import make_voc_like
from bowlrp.encoding import vocabulary
from bowlrp.pipeline import Pipeline
from bowlrp.runs import train_dask
from bowlrp.runs.store import StoreError, store_lock
from bowlrp.runs.train_dask import DaskStages, TrainingTaskError, _gram_task, gram_tiles
from bowlrp.runs.training_store import (
    VOCABULARIES,
    TrainingStore,
    TrainingStoreError,
    TrainingStoreMismatch,
    claim_training_store,
    config_fingerprint,
    images_fingerprint,
    load_vocabularies,
    record_vocabularies,
    remove_training_store,
    save_vocabularies,
    stages_fingerprint,
)
from bowlrp.training import train, training_labels

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")

#: voc_small's structure (dense SIFT, PCA, GMM, Fisher vectors with a pyramid, linear SVM), smaller
TINY = {
    "name": "voc_tiny",
    "random_state": 0,
    "channels": [
        {
            "name": "fisher-sift",
            "extractor": {"DenseSIFT": {"bin_sizes": [4], "steps": 8, "smooth": True, "backend": "auto"}},
            "encoder": {
                "FisherVector": {
                    "vocabulary": {
                        "GMMVocabulary": {
                            "n_components": 4,
                            "pca_components": 8,
                            "max_descriptors": 3000,
                            "max_iter": 20,
                        }
                    },
                    "parts": ["mu", "sigma"],
                    "pyramid": [[1, 1], [2, 2]],
                    "normalization": "cell-l2+power+l2",
                }
            },
            "kernel": "linear",
        }
    ],
    "classifier": {"C": 1.0, "n_reference": 20},
}


#: TINY with the streamed GMM (backend "streamed"): its E-step runs on the workers under DaskStages
STREAMED = {
    **TINY,
    "name": "voc_tiny_streamed",
    "channels": [
        {
            **TINY["channels"][0],
            "encoder": {
                "FisherVector": {
                    **TINY["channels"][0]["encoder"]["FisherVector"],
                    "vocabulary": {
                        "GMMVocabulary": {
                            **TINY["channels"][0]["encoder"]["FisherVector"]["vocabulary"]["GMMVocabulary"],
                            "backend": "streamed",
                        }
                    },
                }
            },
        }
    ],
}


@pytest.fixture
def fits(monkeypatch):
    """Counts ``GMMVocabulary.fit`` calls (the driver's vocabulary fits) and Dask E-step runs."""
    counts = {"gmm": 0, "estep_fits": 0}
    fit = vocabulary.GMMVocabulary.fit

    def counted(self, X, y=None):
        counts["gmm"] += 1
        return fit(self, X, y)

    monkeypatch.setattr(vocabulary.GMMVocabulary, "fit", counted)
    estep = train_dask.DaskEStep

    class Counted(estep):
        def __call__(self, chunks):
            run = super().__call__(chunks)
            counts["estep_fits"] += 1
            return run

    monkeypatch.setattr(train_dask, "DaskEStep", Counted)
    return counts


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_voc_like(tmp_path_factory.mktemp("voclike") / "VOC", 10, 4, seed=3, size=(72, 96))


@pytest.fixture(scope="module")
def dataset(voc_root):
    return read_dataset(str(voc_root), None, None, ["disc"])


@pytest.fixture(scope="module")
def test_images(voc_root):
    return [str(p) for p in sorted((voc_root / "JPEGImages").glob("*.jpg"))]


@pytest.fixture(scope="module")
def serial(dataset):
    pipe, summary = train(dataset, TINY, ["disc"])
    return pipe, summary


def assert_same_model(pipe, reference, images):
    a, b = pipe.decision_function(images), reference.decision_function(images)
    assert np.max(np.abs(a - b)) <= 1e-9 * max(1.0, np.max(np.abs(b))), (a, b)
    assert np.array_equal(pipe.classes_, reference.classes_)
    for ea, eb in zip(pipe.encoders_, reference.encoders_):
        # equal to rounding: the EM runs in another process in the CLI tests, where BLAS threads
        # may sum in another order (one run in four differed in the last bits)
        for name in ("means_", "covariances_", "weights_"):
            va, vb = getattr(ea.vocabulary_, name), getattr(eb.vocabulary_, name)
            assert np.max(np.abs(va - vb)) <= 1e-9 * np.max(np.abs(vb)), name
    assert pipe.n_descriptors_sampled_ == reference.n_descriptors_sampled_


# -- the SVM from given Gram matrices is KernelSVC.fit ----------------------------------------------
@pytest.mark.parametrize(
    "params, labels",
    [
        ({"kernel": ["linear", "hik"], "mkl_norm": 2.0, "channel_sizes": [5, 7]}, "multiclass"),
        ({"kernel": "rbf", "n_reference": 7, "random_state": 3}, "binary"),
        ({"kernel": "chi2", "class_weight": "balanced"}, "multilabel"),
        ({"kernel": "linear"}, "multilabel-masked"),
    ],
)
def test_fit_from_grams_is_kernel_svc_fit(params, labels):
    rng = np.random.default_rng(0)
    X = rng.random((40, 12)).astype(np.float32)
    y = {
        "multiclass": np.array(["a", "b", "c", "d"] * 10),
        "binary": (X[:, 0] + 0.3 * rng.random(40) > 0.6).astype(int),
        "multilabel": (rng.random((40, 3)) > 0.5).astype(int),
        "multilabel-masked": (rng.random((40, 3)) > 0.5).astype(int),
    }[labels]
    mask = rng.random((40, 3)) > 0.2 if labels.endswith("masked") else None  # VOC's "difficult"
    reference = KernelSVC(**params).fit(X, y, task_mask=mask)
    svc = KernelSVC(**params).fit_kernels(X)
    grams = [k.gram(X[:, s]) for k, s in zip(svc.kernels_, svc.channel_slices_)]
    svc.fit_from_grams(X, y, grams, mask)
    fitted = sorted(k for k in vars(reference) if k.endswith("_"))
    assert sorted(k for k in vars(svc) if k.endswith("_")) == fitted
    for name in fitted:
        a, b = getattr(svc, name), getattr(reference, name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        elif name != "kernels_":
            assert a == b, name
    np.testing.assert_array_equal(svc.decision_function(X), reference.decision_function(X))


# -- Gram tiles ------------------------------------------------------------------------------------
def test_gram_tiles_cover_the_upper_triangle_once():
    for n, d, budget in [(10, 3, 8 * 3 * 4), (7, 5, 1), (5, 2, 1 << 20)]:
        cover = np.zeros((n, n), int)
        for (r0, r1), (c0, c1) in gram_tiles(n, d, budget):
            assert r0 <= c0
            cover[r0:r1, c0:c1] += 1
            if (r0, r1) != (c0, c1):
                cover[c0:c1, r0:r1] += 1
        assert (cover == 1).all(), (n, d, budget)
    assert gram_tiles(5, 2, 1 << 20) == [((0, 5), (0, 5))]


def test_tiles_from_the_store_assemble_the_gram_matrix(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.random((11, 6)).astype(np.float32)
    with store_lock(tmp_path / "s.zarr", "test"):
        store = TrainingStore.create(tmp_path / "s.zarr", {"x": 1}, 11, 6, 3)
        for b in range(store.n_blocks):
            store.write_block(b, X[slice(*store.block_rows(b))])
    svc = KernelSVC(kernel=["linear", "hik"], channel_sizes=[2, 4]).fit_kernels(X)
    slices, kernels = svc.channel_slices_, svc.kernels_
    tiles = gram_tiles(11, 6, 8 * 6 * 4)  # 4 rows per tile: 6 tiles
    assert len(tiles) == 6
    grams = [np.full((11, 11), np.nan) for _ in slices]
    for rows, cols in tiles:
        for G, tile in zip(grams, _gram_task(kernels, slices, str(tmp_path / "s.zarr"), rows, cols)):
            G[rows[0] : rows[1], cols[0] : cols[1]] = tile
            G[cols[0] : cols[1], rows[0] : rows[1]] = tile.T
    # reference: the plain-NumPy kernels in float64
    X64 = X.astype(np.float64)
    linear = X64[:, :2] @ X64[:, :2].T
    hik = np.minimum(X64[:, None, 2:], X64[None, :, 2:]).sum(axis=2)
    np.testing.assert_allclose(grams[0], linear, rtol=1e-13)
    assert np.array_equal(grams[1], kernels[1].gram(X[:, 2:]))  # elementwise kernels: bit for bit
    np.testing.assert_allclose(grams[1], hik, rtol=1e-13)


# -- the store -------------------------------------------------------------------------------------
def test_store_refuses_another_training_and_foreign_folders(tmp_path):
    location = tmp_path / "f.zarr"
    with store_lock(location, "test"):
        TrainingStore.create(location, {"stages": "a", "images": "x"}, 4, 3, 2)
    with store_lock(location, "test"), pytest.raises(TrainingStoreMismatch, match="differs in stages"):
        TrainingStore.create(location, {"stages": "b", "images": "x"}, 4, 3, 2)
    with store_lock(location, "test"), pytest.raises(TrainingStoreMismatch, match="rows_per_block"):
        TrainingStore.create(location, {"stages": "a", "images": "x"}, 4, 3, 1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a Zarr store"):
        with store_lock(other, "test"):
            pass
    assert (other / "notes.txt").read_text() == "mine"
    import zarr

    zarr.open_group(str(tmp_path / "z.zarr"), mode="w").update_attributes({"format": "something else"})
    with store_lock(tmp_path / "z.zarr", "test"), pytest.raises(TrainingStoreError, match="not a bowlrp"):
        TrainingStore.create(tmp_path / "z.zarr", {"stages": "a"}, 4, 3, 2)
    # removal takes the store's own names only; a stranger's file keeps the folder
    (location / "keep.txt").write_text("a file the store did not make")
    assert remove_training_store(location) is False
    assert sorted(os.listdir(location)) == ["keep.txt"]
    with pytest.raises(Exception, match="not a bowlrp training store"):
        remove_training_store(tmp_path / "z.zarr")
    assert (tmp_path / "z.zarr" / "zarr.json").is_file()


def test_unwritten_rows_are_not_read(tmp_path):
    with store_lock(tmp_path / "s.zarr", "test"):
        store = TrainingStore.create(tmp_path / "s.zarr", {"x": 1}, 5, 2, 2)
        store.write_block(0, np.ones((2, 2)))
        assert store.done_blocks().tolist() == [True, False, False]
        assert np.array_equal(store.read(0, 2), np.ones((2, 2), np.float32))
        with pytest.raises(TrainingStoreError, match="not all written"):
            store.read()


# -- training on a cluster gives the serial model --------------------------------------------------
# Was slow after CI at bf8a47a, where the rerun refitted a vocabulary that differed from the first
# run's in the last bits, so the fingerprint refused the resume. The cause: two feature tasks of
# this in-process cluster overlapping in single_threaded() (threadpoolctl's process-wide BLAS limit,
# saved and restored by each thread) left the process at 1 BLAS thread, and this vocabulary's fit
# rounds differently with 1 and 2 BLAS threads. Now the store keeps the fitted vocabularies (a
# rerun reads them, `fits` counts zero fits) and the driver's fit has a fixed BLAS thread count.
def test_threads_cluster_trains_the_serial_model_and_resumes(
    threads, dataset, serial, test_images, tmp_path, fits
):
    reference, summary = serial
    location = tmp_path / "m.pkl.features.zarr"
    lines = []
    pipe, s = train(
        dataset,
        TINY,
        ["disc"],
        stages=DaskStages(client=threads, store=location, rows_per_block=3, keep_store=True),
        report=lines.append,
    )
    assert_same_model(pipe, reference, test_images)
    assert s["training_accuracy"] == summary["training_accuracy"] and s["images"] == summary["images"]
    assert TrainingStore.open(location).done_blocks().all()
    # a run stopped after some blocks: the next one computes only the others
    store = TrainingStore.open(location)
    kept = store.read()
    store.done[1] = 0
    store.features[3:6] = np.zeros((3, store.d), np.float32)
    lines.clear()
    assert fits["gmm"] == 1
    stages = DaskStages(client=threads, store=location, rows_per_block=3, keep_store=True)
    again, _ = train(dataset, TINY, ["disc"], stages=stages, report=lines.append)
    assert fits["gmm"] == 1, "the rerun fitted a vocabulary again"
    assert any("vocabularies read from" in m for m in lines), lines
    resumed = f"{store.n_blocks - 1} of {store.n_blocks} blocks of features written before"
    assert any(resumed in m for m in lines), lines
    assert_same_model(again, reference, test_images)
    assert np.array_equal(TrainingStore.open(location).read(), kept)
    # another config is refused before anything is fitted, its store left as it was
    other = {**TINY, "classifier": {"C": 1.0, "n_reference": 20}, "random_state": 1}
    with pytest.raises(TrainingStoreMismatch, match="differs in config"):
        train(dataset, other, ["disc"], stages=DaskStages(client=threads, store=location, rows_per_block=3))
    assert fits["gmm"] == 1
    assert np.array_equal(TrainingStore.open(location).read(), kept)
    # another classifier alone reuses the vocabularies and the features
    lines.clear()
    refit = {**TINY, "classifier": {"C": 0.1, "n_reference": 20}}
    stages = DaskStages(client=threads, store=location, rows_per_block=3, keep_store=True)
    train(dataset, refit, ["disc"], stages=stages, report=lines.append)
    assert fits["gmm"] == 1 and any(f"{store.n_blocks} of {store.n_blocks} blocks" in m for m in lines)
    # without keep_store a successful run removes its store
    train(dataset, TINY, ["disc"], stages=DaskStages(client=threads, store=location, rows_per_block=3))
    assert not location.exists()


@pytest.fixture(scope="module")
def serial_streamed(dataset):
    return train(dataset, STREAMED, ["disc"])[0]


def test_an_interrupted_run_resumes_with_the_stored_vocabularies(
    threads, dataset, serial_streamed, test_images, tmp_path, fits, monkeypatch
):
    """A run whose feature tasks failed half-way; the rerun fits nothing and gives the serial model.

    The streamed GMM: the first run's E-step ran on the workers (DaskEStep), the rerun reads it back.
    """
    location = tmp_path / "m.pkl.features.zarr"
    task = train_dask._features_task

    def stopped(model, where, block, images):  # the run stops in the middle of encoding
        if block >= 2:
            return {"block": block, "status": "failed", "error": "interrupted"}
        return task(model, where, block, images)

    monkeypatch.setattr(train_dask, "_features_task", stopped)
    lines = []
    with pytest.raises(TrainingTaskError, match="interrupted"):
        train(
            dataset, STREAMED, ["disc"], stages=DaskStages(client=threads, store=location, rows_per_block=3)
        )
    assert fits["gmm"] == 1 and fits["estep_fits"] == 1  # the E-step ran on the cluster
    store = TrainingStore.open(location)
    assert store.done_blocks().tolist() == [True, True] + [False] * (store.n_blocks - 2)
    assert (location / VOCABULARIES).is_file()
    monkeypatch.setattr(train_dask, "_features_task", task)
    stages = DaskStages(client=threads, store=location, rows_per_block=3, keep_store=True)
    again, _ = train(dataset, STREAMED, ["disc"], stages=stages, report=lines.append)
    assert fits["gmm"] == 1 and fits["estep_fits"] == 1, "the rerun fitted the vocabulary again"
    assert any("vocabularies read from" in m for m in lines), lines
    assert any(f"2 of {store.n_blocks} blocks of features written before" in m for m in lines), lines
    assert_same_model(again, serial_streamed, test_images)


def claimed_store(location, pipe, images, rows_per_block=3):
    """A store as a run leaves it after its vocabularies (``pipe``'s) were fitted and saved."""
    run = {"config": config_fingerprint(pipe), "images": images_fingerprint(images)}
    with store_lock(location, "test"):
        assert claim_training_store(location, run, len(images), rows_per_block) is None
        stored = save_vocabularies(location, pipe)
        stages = stages_fingerprint(stored)
        record_vocabularies(location, stages, sum(stored.channel_sizes_))
        assert claim_training_store(location, run, len(images), rows_per_block) == stages
    return stages


def test_stored_vocabularies_are_the_fitted_stages(serial, test_images, tmp_path):
    reference, _ = serial
    stages = claimed_store(tmp_path / "s.zarr", reference, test_images)
    back = load_vocabularies(tmp_path / "s.zarr", stages)
    assert type(back) is Pipeline and "classifier_" not in back.__dict__
    assert stages == stages_fingerprint(reference)  # the file holds the very stages, bit for bit
    assert np.array_equal(back.features(test_images[:2]), reference.features(test_images[:2]))
    assert remove_training_store(tmp_path / "s.zarr") and not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize(
    "replacement", ["foreign type", "another bowlrp class", "other stages", "pickle", "gone"]
)
def test_a_replaced_vocabulary_file_is_refused_in_one_line(
    replacement, serial, dataset, test_images, tmp_path, threads, fits
):
    reference, _ = serial
    images = [dataset.paths[i] for i in training_labels(dataset, ["disc"]).rows]  # what train() uses
    location = tmp_path / "m.zarr"
    stages = claimed_store(location, reference, images)
    target = location / VOCABULARIES
    rng = np.random.default_rng(0)
    if replacement == "foreign type":  # a skops file of a type outside the allowlist
        save(StandardScaler().fit(rng.random((5, 2))), target)
    elif replacement == "another bowlrp class":
        save(KMeansVocabulary(2, random_state=0).fit(rng.random((20, 3))), target)
    elif replacement == "other stages":  # a valid pipeline, fitted with another seed
        other = Pipeline.from_config({**TINY, "random_state": 5}).fit_vocabularies(images)
        save(other, target)
    elif replacement == "pickle":
        import pickle  # the attack this refuses

        target.write_bytes(pickle.dumps({"format": "bowlrp-model", "model": reference}))
    else:
        target.unlink()
    expected = {
        "foreign type": "StandardScaler",
        "another bowlrp class": "holds a KMeansVocabulary",
        "other stages": "other vocabularies than the features",
        "pickle": "pickle",
        "gone": "missing",
    }[replacement]
    with pytest.raises(TrainingStoreError) as info:
        load_vocabularies(location, stages)
    message = str(info.value)
    assert "\n" not in message and expected in message and VOCABULARIES in message, message
    assert "remove the training store" in message
    # the same through a training run: refused before anything is fitted or encoded
    fits["gmm"] = 0  # ("other stages" fitted its replacement above)
    with pytest.raises(TrainingStoreError, match=expected):
        train(dataset, TINY, ["disc"], stages=DaskStages(client=threads, store=location, rows_per_block=3))
    assert fits["gmm"] == 0 and not TrainingStore.open(location).done_blocks().any()


def test_a_broken_image_fails_its_block_and_keeps_the_others(threads, serial, dataset, tmp_path):
    reference, _ = serial
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a JPEG")
    images = [str(p) for p in dataset.paths[:4]] + [str(broken)]
    stages = DaskStages(client=threads, store=tmp_path / "s.zarr", rows_per_block=2)
    lines = []
    with pytest.raises(TrainingTaskError, match=r"broken\.jpg.*1 of 3 blocks failed"):
        with stages.running(lines.append):
            stages.features(reference, images)
    store = TrainingStore.open(tmp_path / "s.zarr")
    assert store.done_blocks().tolist() == [True, True, False]
    assert np.array_equal(store.read(0, 4), reference.features(images[:4]))
    assert any("stay in" in line for line in lines), lines


# -- the command line --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--workers", "1", "--scheduler", "tcp://127.0.0.1:1"], "exclude each other"),
        (["--store", "x.zarr"], "go with --workers or --scheduler"),
        (["--keep-store"], "go with --workers or --scheduler"),
        (["--images-per-task", "2"], "go with --workers or --scheduler"),
        (["--workers", "1", "--n-jobs", "2"], "no-Dask spelling"),
        (["--workers", "100000"], "local workers asked for"),
    ],
)
def test_cli_refuses_before_reading_data(voc_root, tmp_path, capsys, monkeypatch, extra, message):
    def refuse(*args, **kwargs):
        raise AssertionError("the data set was read")

    monkeypatch.setattr(train_cli, "read_dataset", refuse)
    argv = ["-c", "voc_small", "-d", str(voc_root), "--classes", "disc", "-o", str(tmp_path / "m.pkl"), "-q"]
    assert train_cli.main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(os.listdir(tmp_path)) == []


# -- slow: two worker processes, one of them killed ------------------------------------------------------
@pytest.fixture(scope="module")
def processes():
    from bowlrp.runs.distributed import start_client

    client, cluster = start_client(2)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_two_processes_train_the_serial_model_with_a_worker_killed(
    processes, dataset, serial, test_images, tmp_path
):
    reference, _ = serial
    location = tmp_path / "k.zarr"
    pids = sorted(processes.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    killed = []

    def kill_when_encoding():
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            if any((location / "done").glob("c/*")):  # a first block of features is written
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_when_encoding, daemon=True)
    watcher.start()
    pipe, _ = train(
        dataset, TINY, ["disc"], stages=DaskStages(client=processes, store=location, rows_per_block=1)
    )
    watcher.join(1)
    assert killed, "no worker was killed; nothing was tested"
    assert_same_model(pipe, reference, test_images)
    deadline = time.time() + 120  # the nanny restarts the worker
    while time.time() < deadline and len(processes.scheduler_info()["workers"]) < 2:
        time.sleep(0.2)
    assert pids[0] not in processes.run(os.getpid).values()


@pytest.mark.slow
def test_cli_workers_trains_the_serial_model(voc_root, serial, test_images, tmp_path):
    from bowlrp.model_files import load

    reference, _ = serial
    out = tmp_path / "m.pkl"
    config = tmp_path / "tiny.yaml"
    import yaml

    config.write_text(yaml.safe_dump(TINY))
    argv = [
        "-c",
        str(config),
        "-d",
        str(voc_root),
        "--classes",
        "disc",
        "-o",
        str(out),
        "-q",
        "--workers",
        "2",
    ]
    assert train_cli.main(argv) == 0
    assert_same_model(load(out), reference, test_images)
    assert sorted(os.listdir(tmp_path)) == ["m.pkl", "tiny.yaml"]


@pytest.mark.slow
def test_kill_9_of_the_driver_then_the_rerun_resumes(voc_root, serial, test_images, tmp_path):
    import subprocess
    import sys

    import yaml

    from bowlrp.model_files import load

    reference, _ = serial
    config, out = tmp_path / "tiny.yaml", tmp_path / "m.pkl"
    config.write_text(yaml.safe_dump(TINY))
    store = tmp_path / "m.pkl.features.zarr"
    cmd = [sys.executable, "-m", "bowlrp.train", "-c", str(config), "-d", str(voc_root)]
    cmd += ["--classes", "disc", "-o", str(out), "--workers", "2", "--images-per-task", "1"]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not any((store / "done").glob("c/*")):
        time.sleep(0.01)  # the first block written (any block: tasks finish in any order)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    done = TrainingStore.open(store).done_blocks()
    assert done.any() and not done.all(), "the run was not killed while encoding; nothing was tested"
    assert not out.exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0, again.stderr
    assert f"{done.sum()} of {len(done)} blocks of features written before, kept" in again.stderr
    assert_same_model(load(out), reference, test_images)
    assert not store.exists()


def test_a_store_behind_a_url_keeps_its_vocabularies(serial, test_images):
    reference, _ = serial
    location = f"memory://bowlrp-train-test-{os.getpid()}/s.zarr"
    stages = claimed_store(location, reference, test_images)
    back = load_vocabularies(location, stages)
    assert stages_fingerprint(back) == stages_fingerprint(reference)
    assert np.array_equal(back.features(test_images[:1]), reference.features(test_images[:1]))


def test_a_claim_refuses_another_training_only_once_vocabularies_are_stored(serial, test_images, tmp_path):
    reference, _ = serial
    location = tmp_path / "s.zarr"
    a, b = {"config": "a", "images": "x"}, {"config": "b", "images": "x"}
    with store_lock(location, "test"):
        assert claim_training_store(location, a, 5, 3) is None
        assert claim_training_store(location, b, 5, 3) is None  # nothing stored yet: taken over
        stored = save_vocabularies(location, reference)
        record_vocabularies(location, stages_fingerprint(stored), 7)
        assert claim_training_store(location, b, 5, 3) == stages_fingerprint(reference)
        with pytest.raises(TrainingStoreMismatch, match=r"differs in config\)"):
            claim_training_store(location, a, 5, 3)
        with pytest.raises(TrainingStoreMismatch, match=r"differs in images, n\)"):
            claim_training_store(location, {**b, "images": "y"}, 6, 3)
        with pytest.raises(TrainingStoreMismatch, match=r"differs in rows_per_block\)"):
            claim_training_store(location, b, 5, 2)
        assert TrainingStore.open(location).features.shape == (5, 7)


def driver_fit_stages(client, images, tmp_path, outside: int) -> str:
    """The stages' hash of DaskStages' vocabulary fit with the process left at ``outside`` BLAS threads."""
    with threadpool_limits(limits=outside, user_api="blas"):  # as a threads cluster's tasks leave it
        pipe = Pipeline.from_config(TINY)
        stages = DaskStages(client=client, store=tmp_path / f"blas{outside}.zarr")
        with stages.running():
            stages._fit_vocabularies_here(pipe, images)
    return stages_fingerprint(pipe)


def test_the_driver_fits_vocabularies_with_a_fixed_number_of_blas_threads(
    threads, dataset, tmp_path, monkeypatch
):
    # this fit rounds differently with 1 and 2 BLAS threads (the PCA's SVD, ~5e-15): pinned, it does not
    monkeypatch.setattr(train_dask, "DRIVER_BLAS_THREADS", 2)
    images = [dataset.paths[i] for i in training_labels(dataset, ["disc"]).rows]
    assert driver_fit_stages(threads, images, tmp_path, 1) == driver_fit_stages(threads, images, tmp_path, 2)
