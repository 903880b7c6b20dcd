"""`make polygons-experiment`: its statistics (fast), the README table from the snapshot (fast),
a tiny end-to-end run that must repeat exactly (slow)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name, rel):
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # worker processes cannot import it by name: send its functions by value
    import cloudpickle  # joblib's serialiser for its worker processes

    cloudpickle.register_pickle_by_value(module)
    return module


@pytest.fixture(scope="module")
def experiment():
    return _load("polygons_experiment", "experiments/polygons.py")


@pytest.fixture(scope="module")
def readme_table():
    return _load("readme_table", "experiments/readme_table.py")


def test_tile_selection_is_seeded_and_balanced(experiment):
    labels = np.array([0] * 70 + [1] * 30)
    a = experiment.select_tiles(labels, 40, seed=0)
    assert np.array_equal(a, experiment.select_tiles(labels, 40, seed=0))
    assert not np.array_equal(a, experiment.select_tiles(labels, 40, seed=1))
    assert len(np.unique(a)) == 40 and labels[a].sum() == 20
    # fewer positives than asked for: all of them, the rest negative
    b = experiment.select_tiles(np.array([0] * 50 + [1] * 5), 20, seed=0)
    assert len(b) == 20 and (np.array([0] * 50 + [1] * 5)[b]).sum() == 5


def test_aopc_and_paired_differences_match_a_plain_reference(experiment):
    rng = np.random.default_rng(3)
    n_tiles, steps = 12, 6
    methods = ["lrp", "occlusion", "random"]
    per_tile = [
        {"curves": {"blur": {m: rng.normal(size=steps + 1) for m in methods}}} for _ in range(n_tiles)
    ]
    block, curves = experiment.summarise_faithfulness(per_tile, ("blur",))

    def aopc(c):  # AOPC = 1/(L+1) sum_k f(x0) - f(xk), per tile
        return np.array([np.mean(c[i][0] - c[i]) for i in range(len(c))])

    a = {m: aopc([t["curves"]["blur"][m] for t in per_tile]) for m in methods}
    for m in methods:
        got = block["blur"]["methods"][m]
        assert got["aopc"] == pytest.approx(a[m].mean())
        assert got["stderr"] == pytest.approx(a[m].std(ddof=1) / np.sqrt(n_tiles))
        assert got["n_tiles"] == n_tiles
        np.testing.assert_allclose(curves["blur"][m]["aopc_per_tile"], a[m])
    for ref in ("occlusion", "random"):
        d = a["lrp"] - a[ref]
        got = block["blur"]["paired_differences"]["lrp"][ref]
        assert got["mean"] == pytest.approx(d.mean())
        assert got["stderr"] == pytest.approx(d.std(ddof=1) / np.sqrt(n_tiles))
    # pairing: a common per-tile offset cancels in the difference, not in the AOPC
    shifted = [
        {
            "curves": {
                "blur": {
                    m: c + (i if m != "random" else 0) * np.r_[0, np.ones(steps)]
                    for m, c in t["curves"]["blur"].items()
                }
            }
        }
        for i, t in enumerate(per_tile)
    ]
    b2, _ = experiment.summarise_faithfulness(shifted, ("blur",))
    assert b2["blur"]["paired_differences"]["lrp"]["occlusion"]["stderr"] == pytest.approx(
        block["blur"]["paired_differences"]["lrp"]["occlusion"]["stderr"]
    )
    assert b2["blur"]["methods"]["lrp"]["stderr"] > block["blur"]["methods"]["lrp"]["stderr"]


def test_taylor_summary_quantiles(experiment):
    tiles = [
        {"taylor": {"t": {"relative_residual": r, "root_distance": 2 * r}}} for r in np.linspace(0, 1, 11)
    ]
    s = experiment.summarise_taylor(tiles)["t"]
    assert s["relative_residual"]["median"] == pytest.approx(0.5)
    assert s["relative_residual"]["p90"] == pytest.approx(0.9)
    assert s["root_distance"]["median"] == pytest.approx(1.0)


def test_readme_table_is_rendered_from_the_snapshot(readme_table):
    snapshot = ROOT / "experiments" / "polygons_metrics.json"
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(readme_table.BEGIN) : readme.index(readme_table.END)]
    if not snapshot.is_file():
        # no full run recorded yet: the README says so and reports no number of its own
        assert "No run of this version is recorded" in block
        assert "%" not in block and "±" not in block
        return
    table = readme_table.render_files(snapshot, readme_table.TIMINGS)
    assert readme_table.replace_block(readme, table) == readme, (
        "README is out of date: run python experiments/readme_table.py"
    )
    metrics = json.loads(snapshot.read_text())
    assert metrics["schema"] == "bowlrp.polygons-metrics/2"
    # every AOPC in the README has its standard error
    for line in table.splitlines():
        if line.startswith("| HIK") or line.startswith("| exp-χ²"):
            cells = [c.strip() for c in line.strip("|").split("|")][2:]
            numbers = [c for c in cells if any(ch.isdigit() for ch in c)]
            assert len(numbers) >= 2 and all("±" in c for c in numbers), line


def _tiny(experiment, out, n_jobs):
    return experiment.run(
        out,
        n_train=6,
        n_test=1,
        n_val=1,
        n_words=16,
        n_jobs=n_jobs,
        n_figure=1,
        verbose=False,
        n_eval_tiles=4,
        eval_steps=4,
    )


@pytest.mark.slow
def test_tiny_experiment_end_to_end_and_repeatable(experiment, tmp_path):
    m = _tiny(experiment, tmp_path / "a", 1)
    written = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert written["schema"] == experiment.SCHEMA
    assert "seconds" not in json.dumps(written)  # timings live in timings.json
    assert json.loads((tmp_path / "a" / "timings.json").read_text())["seconds"]["total"] > 0
    for name in ("hik", "chi2"):
        r = written["models"][name]
        assert 0 <= r["accuracy"]["value"] <= 1
        assert r["localisation"]["mean_relevance_on_polygons"] is not None
        for pert in ("uniform", "blur"):
            block = r["region_perturbation"][pert]
            assert set(block["methods"]) == {*experiment.lrp_methods(name), "occlusion", "random"}
            assert all(np.isfinite(v["aopc"]) and v["n_tiles"] == 4 for v in block["methods"].values())
            for meth in experiment.lrp_methods(name):
                assert set(block["paired_differences"][meth]) == {"occlusion", "random"}
    taylor = written["models"]["chi2"]["taylor"]
    assert set(taylor) == set(experiment.lrp_methods("chi2"))
    # the integrated gradient leaves only the quadrature error; first order leaves more
    assert taylor["integrated"]["relative_residual"]["median"] < 1e-6
    assert (
        taylor["taylor-segment"]["relative_residual"]["median"]
        > taylor["integrated"]["relative_residual"]["median"]
    )
    # the boundary root is never farther than the segment root
    assert taylor["taylor-boundary"]["root_distance"]["max"] <= taylor["taylor-segment"]["root_distance"][
        "max"
    ] * (1 + 1e-9)
    assert (tmp_path / "a" / "region_perturbation.png").is_file()
    assert (tmp_path / "a" / "figure.png").is_file()
    # a second run, in two processes this time, writes the same metrics.json byte for byte
    _tiny(experiment, tmp_path / "b", 2)
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    del m


def test_tile_results_are_cached_by_key_and_resumed(experiment, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"curves": {"blur": {"m": np.array([1.0, 0.5, 1 / 3])}}, "score": np.float64(0.1)}

    path = tmp_path / "partial" / "tile00001.json"
    a = experiment.cached_tile(path, "k1", compute)
    b = experiment.cached_tile(path, "k1", compute)
    assert a == b and len(calls) == 1  # resumed: not recomputed, and the same values exactly
    assert a["curves"]["blur"]["m"] == [1.0, 0.5, 1 / 3]
    experiment.cached_tile(path, "k2", compute)  # another model or settings: recomputed
    assert len(calls) == 2
    path.write_text("{broken")
    experiment.cached_tile(path, "k2", compute)
    assert len(calls) == 3


# -- the committed snapshot and a fresh run (experiments/snapshot_check.py) -------------------


@pytest.fixture(scope="module")
def snapshot_check():
    return _load("snapshot_check", "experiments/snapshot_check.py")


def test_snapshot_check_says_which_fields_must_match(snapshot_check):
    snapshot = json.loads((ROOT / "experiments" / "polygons_metrics.json").read_text())
    assert snapshot_check.differences(snapshot, snapshot) == []
    fresh = json.loads(json.dumps(snapshot))
    hik = fresh["models"]["hik"]
    hik["accuracy"]["value"] *= 1 + 1e-9  # the last bits of another BLAS: allowed
    hik["localisation"]["positive_share_on_polygons"] += 1e-12
    assert snapshot_check.differences(snapshot, fresh) == []
    hik["n_support_vectors"] += 1  # a decision: exact
    hik["accuracy"]["value"] += 1 / 1014  # one tile more: a result
    fresh["settings"]["seed"] = 1
    del fresh["models"]["chi2"]["taylor"]
    found = snapshot_check.differences(snapshot, fresh)
    assert len(found) == 4
    assert any(f.startswith("models.hik.n_support_vectors:") and "exactly" in f for f in found)
    assert any(f.startswith("models.hik.accuracy.value:") and "tolerance" in f for f in found)
    assert any(f.startswith("settings.seed:") for f in found)
    assert any(f.startswith("models.chi2.taylor: missing") for f in found)


@pytest.mark.slow
def test_a_fresh_full_run_reproduces_the_snapshot(experiment, snapshot_check, tmp_path):
    """`make polygons-experiment` at HEAD against experiments/polygons_metrics.json (≈ 9 min on 2 cores)."""
    experiment.main(["--out", str(tmp_path / "polygons")])
    snapshot = json.loads((ROOT / "experiments" / "polygons_metrics.json").read_text())
    fresh = json.loads((tmp_path / "polygons" / "metrics.json").read_text())
    assert snapshot_check.differences(snapshot, fresh) == []
