"""`make compare-experiment`: a tiny run end to end (tiles in worker processes, resume), the
targets it checks, and the README table rendered from the committed snapshot."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--models",
    "hik",
    "--tiles",
    "2",
    "--samples",
    "12",
    "--steps",
    "2",
    "--repeats",
    "1",
    "--train-scenes",
    "4",
    "--heldout-scenes",
    "1",
    "--words",
    "8",
    "--n-jobs",
    "1",
    "--jobs",
    "2",
]


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_experiment", ROOT / "experiments/compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments/compare.py"), "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # ~70 s idle (LIME and SHAP on two tiles); the default run keeps the fast tests below
def test_tiny_run_writes_table_figure_and_resumes(tmp_path, compare):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    hik = results["hik"]
    assert hik["n_tiles"] == 2
    methods = set(hik["uniform"]["methods"])
    assert {
        "lrp-flat",
        "lrp-contribution",
        "occlusion-uniform",
        "occlusion-blur",
        "lime",
        "shap-partition",
        "kernel-shap",
        "random",
    } <= methods
    assert hik["costs"]["lime"]["evaluations"] >= 12
    assert hik["costs"]["occlusion-blur"]["evaluations"] > 1
    assert set(hik["targets"]) >= {
        "blur: within 10 % of occlusion-blur",
        "uniform: ahead of occlusion-uniform",
    }
    table = (tmp_path / "table.md").read_text()
    assert "Targets" in table and "± " in table
    import cv2

    picture = cv2.imread(str(tmp_path / "figure.png"))
    assert picture is not None and picture.shape[0] >= 102 and picture.shape[1] > 10 * 102
    partial = sorted(p.name for p in (tmp_path / "partial").glob("hik_*.json"))
    assert len(partial) == 2

    again = _run(tmp_path)  # every tile is read back from partial/, nothing recomputed
    assert again.returncode == 0, again.stderr[-2000:]
    assert "tile 1 done" not in again.stdout
    resumed = json.loads((tmp_path / "results.json").read_text())["hik"]
    for pert in ("uniform", "blur"):
        for m, v in hik[pert]["methods"].items():
            assert resumed[pert]["methods"][m]["aopc"] == v["aopc"]

    other = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments/compare.py"),
            "--out",
            str(tmp_path),
            *TINY[:-2],
            "--jobs",
            "1",
            "--samples",
            "13",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode != 0 and "holds tiles of another run (samples differ)" in other.stderr


def test_targets_follow_the_paired_differences(compare):
    def method(aopc, diff, se):
        return {"aopc": aopc, "stderr": 0.1, "diff_vs_best_lrp": diff, "diff_stderr": se}

    s = {
        "uniform": {
            "best_lrp": "lrp-flat",
            "methods": {
                "lrp-flat": method(2.0, 0.0, 0.0),
                "occlusion-uniform": method(1.9, -0.1, 0.2),
                "occlusion-blur": method(1.0, -1.0, 0.1),
                "lime": method(1.5, -0.5, 0.3),
            },
        },
        "blur": {
            "best_lrp": "lrp-flat",
            "methods": {
                "lrp-flat": method(1.0, 0.0, 0.0),
                "occlusion-blur": method(1.2, 0.2, 0.05),
                "occlusion-uniform": method(0.5, -0.5, 0.1),
                "shap-partition": method(1.1, 0.1, 0.05),
            },
        },
    }
    t = compare.targets(s)
    assert t["uniform: beats occlusion-blur by > 2 SE"]["beats_by_2se"]
    assert not t["uniform: beats lime by > 2 SE"]["beats_by_2se"]  # 0.5 < 2 x 0.3
    assert t["blur: within 10 % of occlusion-blur"]["met"] is False  # 1.0 < 0.9 x 1.2
    assert t["blur: within 10 % of occlusion-blur"]["relative"] == pytest.approx(-1 / 6)
    assert t["blur: ahead of shap-partition"]["met"] is False
    assert t["uniform: ahead of occlusion-uniform"]["met"] is True
    assert np.isclose(t["blur: beats occlusion-uniform by > 2 SE"]["diff"], 0.5)


def test_readme_table_is_rendered_from_the_snapshot(compare):
    readme = (ROOT / "README.md").read_text()
    assert compare.BEGIN in readme and compare.END in readme
    snapshot = json.loads(compare.SNAPSHOT.read_text())
    assert compare.replace_block(readme, compare.readme_block(snapshot)) == readme, (
        "README is out of date: run python experiments/compare.py --readme"
    )
    for model in ("hik", "chi2", "fisher"):
        assert snapshot[model]["n_tiles"] >= 8, model
