"""The evaluation suite on Dask (``evaluate_suite(client=)``, ``--suite --workers / --scheduler``).

Default run: a threads cluster in this process (``LocalCluster(processes=False)``, no
start-up cost): the same parts, the same part files and the same ``suite.json`` /
``suite.csv`` as one process, a resumed run that computes nothing, the command line
through ``--scheduler`` and its one-line refusals. Slow: a 2-process cluster whose
worker is killed (``os._exit``) in the middle of a part.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import bowlrp
from bowlrp.cli import evaluate as cli
from bowlrp.evaluation import suite as suite_module
from bowlrp.evaluation.suite import evaluate_suite, suite_fingerprint
from bowlrp.evaluation.suite_parts import PARTS_DIR, SuiteParts, unpack
from bowlrp.evaluation.suite_report import csv_bytes, evaluate_suite_into

from .conftest import blobs, small_hik_model, stripes
from .dask_hooks import count_and_die_once
from .test_evaluation_suite import TINY
from .test_evaluation_suite_resume import _save_images, numbers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    model = small_hik_model(rng)
    images = [stripes(rng, 40), blobs(rng, 40)]
    masks = [np.pad(np.ones((20, 20), bool), 10) for _ in images]
    train = [stripes(rng, 40) for _ in range(4)] + [blobs(rng, 40) for _ in range(4)]
    return model, images, masks, train


def _parts(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / PARTS_DIR).rglob("*.npz"))}


def _part_results(out: Path) -> dict[str, str]:
    """Each part's key and results (without its timings), as text."""
    found = {}
    for name, blob in _parts(out).items():
        key, data = unpack(blob)
        data = dict(data)
        data.pop("seconds"), data.pop("cpu")
        result = data["result"]
        if isinstance(result, dict):  # sanity: its own seconds inside each check
            result = {c: {k: v for k, v in r.items() if k != "seconds"} for c, r in result.items()}
        found[name] = repr((key, _plain(result)))
    return found


def _plain(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    return obj


def test_the_suite_on_a_threads_cluster_is_the_suite_in_one_process(threads, data, tmp_path, monkeypatch):
    """The same parts (files, keys, numbers) and the same suite.json / suite.csv as ``n_jobs=1``.

    (``to_dict`` is ``suite.json`` and ``csv_bytes`` is ``suite.csv``; the files themselves
    are compared by the command-line test below.)
    """
    model, images, masks, train = data
    kwargs = dict(
        methods=("lrp", "random"),
        families="all",
        masks=masks,
        settings=TINY,
        train_images=train,
        train_labels=[1] * 4 + [0] * 4,
        progress=False,
    )
    fingerprint = suite_fingerprint("sha-of-the-model", TINY)
    one = evaluate_suite(
        model, images, n_jobs=1, parts=SuiteParts.open(tmp_path / "one", fingerprint), **kwargs
    )
    said = []
    parts = SuiteParts.open(tmp_path / "dask", fingerprint)
    dask = evaluate_suite(model, images, client=threads, parts=parts, report=said.append, **kwargs)
    assert numbers(one) == numbers(dask) and csv_bytes(one) == csv_bytes(dask)
    assert set(dask.data_randomisation) == {"lrp", "random"} and dask.randomisation["lrp"].maps
    for name in ("lrp", "random"):
        for a, b in zip(one.randomisation[name].maps, dask.randomisation[name].maps):
            np.testing.assert_array_equal(a, b)
    assert _part_results(tmp_path / "one") == _part_results(tmp_path / "dask")
    assert len(_parts(tmp_path / "dask")) == len(images) * 2 * 4  # images x methods x kept families
    assert any("12 part(s) to compute" in line for line in said)

    # the client is not closed by the suite, and a rerun on it resumes: nothing is computed
    computed = []
    real = suite_module._run_task

    def counting(model_, task, shared):
        computed.append(task.family)
        return real(model_, task, shared)

    monkeypatch.setattr(suite_module, "_run_task", counting)
    kept = _parts(tmp_path / "dask")
    again = evaluate_suite(model, images, client=threads, parts=parts, **kwargs)
    assert computed == [] and numbers(again) == numbers(one) and _parts(tmp_path / "dask") == kept


def test_a_failing_part_on_the_cluster_raises_and_keeps_the_finished_ones(threads, data, tmp_path):
    model, images, masks, _ = data

    def broken(model_, imgs, targets):
        if imgs[0].mean() > 0.25:  # the stripes images fail, the blobs image does not
            raise ValueError("this explainer fails on stripes")
        return [np.ones(im.shape[:2]) for im in imgs]

    with pytest.raises(ValueError, match="fails on stripes"):
        evaluate_suite_into(
            tmp_path,
            model,
            images,
            methods=(broken,),
            families="complexity",
            settings=TINY,
            progress=False,
            client=threads,
        )
    assert not (tmp_path / "suite.json").exists()
    with pytest.raises(ValueError, match="exclude each other"):
        evaluate_suite(model, images, families="complexity", n_jobs=2, client=threads, progress=False)
    with pytest.raises(ValueError, match="n_jobs and workers exclude each other"):
        evaluate_suite_into(tmp_path / "x", model, images, n_jobs=2, workers=2, progress=False)
    assert not (tmp_path / "x").exists()


def test_command_line_suite_on_a_scheduler(threads, data, tmp_path, capsys):
    model, images, masks, _ = data
    bowlrp.save(model, tmp_path / "m.skops")
    _save_images(images, masks, tmp_path / "images")
    argv = ["--model", str(tmp_path / "m.skops"), "--images", str(tmp_path / "images"), "--quiet"]
    argv += ["--suite", "sanity", "--suite", "localisation", "--masks", "files", "--methods", "lrp,random"]
    assert cli.main(argv + ["--out", str(tmp_path / "one")]) == 0
    address = threads.scheduler.address
    assert cli.main(argv + ["--out", str(tmp_path / "dask"), "--scheduler", address]) == 0
    one, dask = (json.loads((tmp_path / d / "suite.json").read_text()) for d in ("one", "dask"))
    assert numbers(one) == numbers(dask) and one["metrics"]["randomisation_similarity"]
    assert (tmp_path / "one" / "suite.csv").read_bytes() == (tmp_path / "dask" / "suite.csv").read_bytes()
    capsys.readouterr()
    # one line each, before the model is read; nothing is made
    for extra, words in (
        (["--n-jobs", "2", "--scheduler", address], "--n-jobs and --scheduler exclude each other"),
        (["--workers", "1", "--scheduler", address], "--workers and --scheduler exclude each other"),
        (["--workers", "1000"], "1000 local workers"),
        (["--store", str(tmp_path / "s.zarr")], "leave out --store"),
        (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
    ):
        assert cli.main(argv + ["--out", str(tmp_path / "refused"), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "refused").exists() and not (tmp_path / "s.zarr").exists()


class DieOnce:
    """A model-independent explainer (gradient magnitude) whose ``after``-th call over all
    processes kills its process once (``os._exit``, as the OOM killer would)."""

    __name__ = "edges"

    def __init__(self, folder, after: int):
        self.folder, self.after = str(folder), after

    def __call__(self, model, images, targets):
        count_and_die_once(self.folder, self.after)
        out = []
        for im in images:
            gy, gx = np.gradient(im if im.ndim == 2 else im.mean(axis=2))
            out.append(np.hypot(gx, gy))
        return out


@pytest.mark.slow  # starting two worker processes and one restart: ~1 min
def test_a_killed_worker_loses_only_its_part(data, tmp_path):
    from distributed import Client, LocalCluster  # dask.distributed: only for these tests

    model, images, masks, _ = data
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    kwargs = dict(families="all", masks=masks, settings=TINY, progress=False, model_hash="m")
    serial = evaluate_suite_into(
        tmp_path / "one", model, images, methods=("lrp", DieOnce(hooks, 10**9)), **kwargs
    )
    serial_calls = (hooks / "calls").stat().st_size
    (hooks / "calls").unlink()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        dask = evaluate_suite_into(
            tmp_path / "dask", model, images, methods=("lrp", DieOnce(hooks, 8)), client=client, **kwargs
        )
    finally:
        client.close()
        cluster.close()
    assert (hooks / "died").is_file(), "no worker was killed; nothing was tested"
    assert numbers(dask) == numbers(serial)
    assert _part_results(tmp_path / "one") == _part_results(tmp_path / "dask")
    # beyond the serial run's calls: the call that died with its worker and the calls its
    # part had made before it (at most one part's worth: a sanity part's layers + 1 maps)
    extra = (hooks / "calls").stat().st_size - serial_calls
    largest_part = max(len(serial.randomisation["edges"].layers) + 1, TINY.robustness_samples + 1)
    assert 1 <= extra <= largest_part


@pytest.mark.slow  # starting two worker processes: ~30 s on a quiet machine
def test_command_line_suite_on_two_local_workers(data, tmp_path):
    model, images, masks, _ = data
    bowlrp.save(model, tmp_path / "m.skops")
    _save_images(images, masks, tmp_path / "images")
    argv = ["--model", str(tmp_path / "m.skops"), "--images", str(tmp_path / "images"), "--quiet"]
    argv += ["--suite", "all", "--masks", "files", "--methods", "lrp,random"]
    assert cli.main(argv + ["--out", str(tmp_path / "one")]) == 0
    assert cli.main(argv + ["--out", str(tmp_path / "dask"), "--workers", "2"]) == 0
    one, dask = (json.loads((tmp_path / d / "suite.json").read_text()) for d in ("one", "dask"))
    assert numbers(one) == numbers(dask)
    assert (tmp_path / "one" / "suite.csv").read_bytes() == (tmp_path / "dask" / "suite.csv").read_bytes()
    assert _part_results(tmp_path / "one") == _part_results(tmp_path / "dask")
