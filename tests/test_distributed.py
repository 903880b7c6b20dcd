"""Explaining and evaluating on a Dask LocalCluster of 2 worker processes, into a relevance store.

One cluster serves the whole module (starting one costs seconds). Every run
is compared with a serial run bit for bit.
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import bowlrp.runs.store
from bowlrp.runs.distributed import explain_to_store, start_client
from bowlrp.runs.inputs import collect_inputs
from tests.dask_hooks import DieOnce
from tests.test_store import model, model_file, write_png  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


@pytest.fixture(scope="module")
def cluster():
    client, local = start_client(2)
    yield client
    client.close()
    local.close()


@pytest.fixture(scope="module")
def images(stripes_blobs, tmp_path_factory):
    _, _, test, _ = stripes_blobs
    d = tmp_path_factory.mktemp("images")
    for i in range(16):
        write_png(d / ("a" if i % 2 else "b") / f"im{i:02d}.png", test[i])
    (d / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return d


@pytest.fixture(scope="module")
def serial(model, images, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("serial") / "s.zarr"
    explain_to_store([str(images)], model, out, targets=["blobs", "stripes"], progress=False)
    return bowlrp.runs.store.open(out)


def assert_same(store, reference):
    assert sorted(store.ids()) == sorted(reference.ids()) and len(reference) == 16
    for image_id in reference.ids():
        a, b = store[image_id], reference[image_id]
        assert a.heatmaps.tobytes() == b.heatmaps.tobytes(), image_id
        assert a.pooled.tobytes() == b.pooled.tobytes(), image_id
        assert a.scores.tolist() == b.scores.tolist() and a.targets == b.targets
        assert a.residuals.tolist() == b.residuals.tolist()


def test_two_workers_write_what_a_serial_run_writes(
    cluster,
    model_file,
    images,
    serial,
    tmp_path,  # noqa: F811 - fixtures from tests.test_store
):
    out = tmp_path / "d.zarr"
    summary = explain_to_store(
        [str(images)], str(model_file), out, targets=["blobs", "stripes"], client=cluster, progress=False
    )
    assert summary.workers == 2 and len(summary.explained) == 16
    assert [f["id"] for f in summary.failed] == ["b/broken"]
    store = bowlrp.runs.store.open(out)
    assert_same(store, serial)
    assert [f["id"] for f in store.failures()] == ["b/broken"]
    assert "broken.png" in store.failures()[0]["error"]
    # a rerun on the cluster skips every finished image and retries only the failed one
    again = explain_to_store(
        [str(images)], str(model_file), out, targets=["blobs", "stripes"], client=cluster, progress=False
    )
    assert len(again.skipped) == 16 and again.explained == [] and len(again.failed) == 1


def test_a_killed_worker_loses_nothing(cluster, model, images, serial, tmp_path):  # noqa: F811
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    out = tmp_path / "k.zarr"
    summary = explain_to_store(
        collect_inputs([str(images)]),
        DieOnce(model, hooks, after=5),
        out,
        targets=["blobs", "stripes"],
        client=cluster,
        progress=False,
        model_hash="the same model",
    )
    assert (hooks / "died").is_file(), "no worker was killed; nothing was tested"
    assert len(summary.explained) == 16 and len(summary.failed) == 1
    assert_same(bowlrp.runs.store.open(out), serial)
    deadline = time.time() + 120  # the nanny restarts the worker for the next tests
    while time.time() < deadline and len(cluster.scheduler_info()["workers"]) < 2:
        time.sleep(0.2)


def test_evaluate_on_the_cluster_equals_serial(cluster, model_file, images, tmp_path, capsys):  # noqa: F811
    from bowlrp.cli.evaluate import main

    subset = str(images / "a" / "im0[135].png")
    common = [
        "-m",
        str(model_file),
        "-i",
        subset,
        "--methods",
        "lrp-eps0,random",
        "--steps",
        "4",
        "--repeats",
        "2",
        "--block",
        "16",
        "-q",
    ]
    assert main(common + ["--store", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "s")]) == 0
    serial_out = capsys.readouterr().out
    address = cluster.scheduler.address
    assert (
        main(
            common + ["--store", str(tmp_path / "d.zarr"), "-o", str(tmp_path / "d"), "--scheduler", address]
        )
        == 0
    )
    assert capsys.readouterr().out.replace(str(tmp_path / "d"), "") == serial_out.replace(
        str(tmp_path / "s"), ""
    )
    a, b = bowlrp.runs.store.open(tmp_path / "s.zarr"), bowlrp.runs.store.open(tmp_path / "d.zarr")
    for item in collect_inputs([subset]):
        ca, cb = a.curves(item.id, ["lrp-eps0"]), b.curves(item.id, ["lrp-eps0"])
        assert ca["curves"] == cb["curves"] and np.array(ca["curves"]["random"]).shape == (2, 5)
    # resume: nothing is recomputed; other settings are refused
    assert (
        main(
            common + ["--store", str(tmp_path / "d.zarr"), "-o", str(tmp_path / "d"), "--scheduler", address]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(common[:-1] + ["--seed", "1", "--store", str(tmp_path / "d.zarr"), "-o", str(tmp_path / "d")])
        == 2
    )
    assert "differs in seed" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_9_of_the_driver_of_a_two_worker_run(model_file, model, images, serial, tmp_path):  # noqa: F811
    cmd = [
        sys.executable,
        "-m",
        "bowlrp.explain",
        "-i",
        str(images),
        "-m",
        str(model_file),
        "--store",
        str(tmp_path / "k.zarr"),
        "-t",
        "blobs",
        "-t",
        "stripes",
        "--workers",
        "2",
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    out = tmp_path / "k.zarr"
    while (
        time.time() < deadline and proc.poll() is None and len(list((out / "images").glob("*/heatmap"))) < 4
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert len(bowlrp.runs.store.open(out)) < 16, "the run ended before it was killed; nothing was tested"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "1 of 17 images failed" in again.stderr, again.stderr
    assert_same(bowlrp.runs.store.open(out), serial)
