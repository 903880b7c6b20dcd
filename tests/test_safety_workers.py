"""Processes are bounded by the machine, and the user's run decides them, not the model file (issue 24).

4269499 started a local cluster of any size (``--workers 1000``: 47 processes and
2.9 GB in 45 s, then thread tracebacks) and let a model file's ``n_jobs=8`` decide
how many processes explaining started (11 on a 2-core machine, 7x slower).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bowlrp import save
from bowlrp._utils.parallel import bound_n_jobs, usable_cores
from bowlrp.cli._common import load_pipeline
from bowlrp.runs.distributed import ModelFile, check_local_workers, file_hash, start_client
from tests.test_batch import model, png  # noqa: F401 - fixtures


def test_a_local_cluster_takes_at_most_one_worker_per_core():
    cores = usable_cores()
    assert check_local_workers(cores) == cores
    for bad in (0, cores + 1, 1000, "many"):
        with pytest.raises(ValueError, match="local workers|whole number") as info:
            check_local_workers(bad)
        assert "\n" not in str(info.value)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=f"this machine runs {cores} at a time"):
        start_client(workers=1000)  # refused before any process starts
    assert time.perf_counter() - started < 5


def test_the_cli_refuses_too_many_workers_at_once(model, png, tmp_path):  # noqa: F811
    image = png(tmp_path / "in" / "a.png")
    model_path = save(model, tmp_path / "m.pkl")
    for program in ("bowlrp.explain", "bowlrp.evaluate"):
        args = ["-i", str(image), "-m", str(model_path), "--store", str(tmp_path / f"{program}.zarr")]
        if program == "bowlrp.evaluate":
            args += ["--out", str(tmp_path / "ev")]
        r = subprocess.run(
            [sys.executable, "-m", program, *args, "--workers", "1000"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2, (program, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "1000 local workers" in r.stderr, r.stderr
        assert not (tmp_path / f"{program}.zarr").exists()


def test_a_model_files_n_jobs_does_not_decide_the_runs_processes(model, tmp_path):  # noqa: F811
    crowded = model
    params = {k for k in crowded.get_params(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")}
    assert "n_jobs" in params
    before = {k: v for k, v in crowded.get_params(deep=True).items() if k in params}
    crowded.set_params(**{k: 64 for k in params})
    path = save(crowded, tmp_path / "crowded.pkl")
    crowded.set_params(**before)
    loaded = load_pipeline(path)
    cores = usable_cores()
    for name in params:
        assert loaded.get_params(deep=True)[name] == cores, name
    in_worker = ModelFile(str(path), file_hash(path)).load()
    for name in params:
        assert in_worker.get_params(deep=True)[name] == 1, name


def test_bound_n_jobs_keeps_what_fits():
    class Stage:
        def __init__(self, **params):
            self.params = params

        def get_params(self, deep=True):
            return dict(self.params)

        def set_params(self, **params):
            self.params.update(params)
            return self

    stage = Stage(n_jobs=1, a__n_jobs=None, b__n_jobs=-1, c__n_jobs=99, verbose=True)
    assert bound_n_jobs(stage, 2) == {"b__n_jobs": -1, "c__n_jobs": 99}
    assert stage.params == {"n_jobs": 1, "a__n_jobs": None, "b__n_jobs": 2, "c__n_jobs": 2, "verbose": True}


@pytest.mark.parametrize("value", ["many", "inf", "-5"])
def test_a_bad_image_limit_refuses_the_run_at_once(value, model, png, tmp_path):  # noqa: F811
    """4269499 failed every image with exit code 1 (and "inf" raised OverflowError)."""
    image = png(tmp_path / "in" / "a.png")
    model_path = save(model, tmp_path / "m.pkl")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bowlrp.explain",
            "-i",
            str(image),
            "-m",
            str(model_path),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BOWLRP_MAX_IMAGE_PIXELS": value},
    )
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "BOWLRP_MAX_IMAGE_PIXELS" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
