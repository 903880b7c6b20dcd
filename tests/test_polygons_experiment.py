"""`make polygons-experiment`: its statistics (fast), the README table from the snapshot (fast),
a tiny end-to-end run that must repeat exactly (slow)."""

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bowlrp.datasets.polygons import generate, overlapping_tiles, tile_dataset
from bowlrp.explanation import explain_trace
from bowlrp.rules import (
    CLASSIFIER_RULES,
    DESCRIPTOR_RULES,
    NEURALIZED_VARIANTS,
    PIXEL_RULES,
    Contribution,
    Decomposition,
    Epsilon,
    Flat,
    Neon,
    Neuralized,
    SIFTBins,
)

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


def test_paired_differences_to_the_default_match_a_plain_reference(experiment):
    rng = np.random.default_rng(5)
    methods = ["a", "b", "occlusion", "random"]
    per_tile = [{"curves": {"uniform": {m: rng.normal(size=5) for m in methods}}} for _ in range(9)]
    block, _ = experiment.summarise_faithfulness(per_tile, ("uniform",), default="a")
    paired = block["uniform"]["paired_differences"]
    assert set(paired["a"]) == {"occlusion", "random"}  # the default is not compared with itself
    assert set(paired["b"]) == {"occlusion", "random", "default"}
    a = np.array([np.mean(t["curves"]["uniform"]["a"][0] - t["curves"]["uniform"]["a"]) for t in per_tile])
    b = np.array([np.mean(t["curves"]["uniform"]["b"][0] - t["curves"]["uniform"]["b"]) for t in per_tile])
    assert paired["b"]["default"]["mean"] == pytest.approx((b - a).mean())
    assert paired["b"]["default"]["stderr"] == pytest.approx((b - a).std(ddof=1) / 3)
    # without a default: the schema-2 block
    plain, _ = experiment.summarise_faithfulness(per_tile, ("uniform",))
    assert set(plain["uniform"]["paired_differences"]["b"]) == {"occlusion", "random"}


def test_lrp_methods_cover_every_meaningful_combination(experiment):

    for model in ("hik", "chi2"):
        methods = experiment.lrp_methods(model)
        assert experiment.DEFAULT_METHOD[model] in methods
        combos = set()
        for name, (c, d, p) in methods.items():
            assert isinstance(c, CLASSIFIER_RULES) and isinstance(d, DESCRIPTOR_RULES)
            assert isinstance(p, PIXEL_RULES)
            assert isinstance(p, Contribution) == name.endswith("+contribution"), name
            assert isinstance(p, SIFTBins) == name.endswith("+siftbins"), name
            # Neon exactly where a pixel rule reads dimensions, and only there
            assert isinstance(d, Neon) == ("+neon+" in name) == _per_dimension(p), name
            combos.add(repr((c, d, p)))
        assert len(combos) == len(methods)  # no combination measured twice
    hik, chi2 = experiment.lrp_methods("hik"), experiment.lrp_methods("chi2")
    assert all(isinstance(r[0], Decomposition) for r in hik.values())
    assert {type(r[2]) for r in hik.values()} == {Flat, Contribution, SIFTBins}
    assert not any(isinstance(r[0], Decomposition) for r in chi2.values())
    for variant in NEURALIZED_VARIANTS:  # every neuralised variant with both pixel rules
        for suffix, pixel in (("", Flat), ("+contribution", Contribution)):
            c, _, p = chi2[f"neuralized-{variant}{suffix}"]
            assert c == Neuralized(variant) and isinstance(p, pixel)
    assert isinstance(chi2["integrated+contribution"][2], Contribution)
    # NEON after each model's default step 1 and the chi2 reference, with both per-dimension rules
    for methods, step1 in ((hik, "lrp-eps0"), (chi2, "neuralized-hybrid"), (chi2, "integrated")):
        for suffix, pixel in (
            ("+neon+contribution", Contribution(per_dimension=True)),
            ("+neon+siftbins", SIFTBins()),
        ):
            c, d, p = methods[step1 + suffix]
            assert repr(c) == repr(methods[step1][0]) and d == Neon(rule=Epsilon(0.0)) and p == pixel


def _per_dimension(pixel) -> bool:
    return isinstance(pixel, SIFTBins) or (isinstance(pixel, Contribution) and pixel.per_dimension)


def test_positive_share_and_tile_localisation_match_a_plain_reference(experiment):
    heat = np.array([[1.0, -2.0], [3.0, 0.5]])
    region = np.array([[True, True], [False, False]])
    assert experiment.positive_share(heat, region) == pytest.approx(1.0 / 4.5)
    assert experiment.positive_share(-np.abs(heat), region) is None
    tiles = [
        {"localisation": {"d": 0.5, "m": 0.7, "area_share": 0.2}},
        {"localisation": {"d": 0.1, "m": None, "area_share": 0.4}},
        {"localisation": {"d": 0.3, "m": 0.6, "area_share": 0.3}},
        {"curves": {}},  # a tile without polygons: left out
    ]
    s = experiment.summarise_tile_localisation(tiles, default="d")
    assert s["n_tiles"] == 3 and s["area_share"] == pytest.approx(0.3)
    assert s["methods"]["d"]["mean"] == pytest.approx(0.3)
    assert s["methods"]["d"]["stderr"] == pytest.approx(np.std([0.5, 0.1, 0.3], ddof=1) / np.sqrt(3))
    assert s["methods"]["m"]["mean"] == pytest.approx(0.65) and s["methods"]["m"]["n"] == 2
    d = np.array([0.7 - 0.5, 0.6 - 0.3])  # paired over the tiles where both have a value
    assert s["paired_minus_default"]["m"]["mean"] == pytest.approx(d.mean())
    assert s["paired_minus_default"]["m"]["stderr"] == pytest.approx(d.std(ddof=1) / np.sqrt(2))
    assert "d" not in s["paired_minus_default"]
    assert experiment.summarise_tile_localisation([{"curves": {}}]) is None


def test_tile_regions_follow_the_crops_of_overlapping_tiles(experiment):
    scenes = generate(7, 2, height=170, width=170)
    crops, _, owner = overlapping_tiles(scenes)
    wanted = [0, 5, len(crops) - 1]
    regions = experiment.tile_regions(scenes, wanted, dilate=3)
    assert sorted(regions) == wanted
    per_scene = (170 - 102) // 34 + 1
    for k in wanted:
        s = scenes[owner[k]]
        r, c = divmod(k - owner[k] * per_scene**2, per_scene)
        assert np.array_equal(crops[k], s.image[34 * r : 34 * r + 102, 34 * c : 34 * c + 102])
        poly = np.isin(s.mask, list(s.polygon_ids())).astype(np.uint8)
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        expected = cv2.dilate(poly, disk)[34 * r : 34 * r + 102, 34 * c : 34 * c + 102] > 0
        assert np.array_equal(regions[k], expected)


def test_explain_cost_is_the_median_of_paired_ratios(experiment):
    tiles = [
        {"seconds": {"forward": 1.0, "d": 1.0, "x": 3.0}},
        {"seconds": {"forward": 2.0, "d": 2.0, "x": 2.0}},
        {"seconds": {"forward": 1.0, "d": 4.0, "x": 2.0}},
    ]
    c = experiment.summarise_cost(tiles, ["d", "x"], "d")
    assert c["d"]["median_ratio_to_default"] == 1.0
    assert c["x"]["median_ratio_to_default"] == pytest.approx(1.0)  # ratios 3, 1, 0.5
    assert c["x"]["median_seconds"] == pytest.approx(2.0)
    assert c["x"]["median_ratio_to_forward"] == pytest.approx(2.0)  # 3, 1, 2
    # a method added later carries ratios timed in its own call against the reference it names
    tiles[0]["ratios"] = {"x": {"default": 10.0, "forward": 10.0, "reference": "d"}}
    tiles[1]["ratios"] = {"x": {"default": 10.0, "forward": 10.0, "reference": "d"}}
    tiles[2]["ratios"] = {"x": {"default": 10.0, "forward": 10.0, "reference": "other"}}  # not d: seconds
    c = experiment.summarise_cost(tiles, ["d", "x"], "d")
    assert c["x"]["median_ratio_to_default"] == 10.0 and c["x"]["median_ratio_to_forward"] == 10.0
    assert c["x"]["median_seconds"] == pytest.approx(2.0)


def _model_with(z: dict, default="d") -> dict:
    """Metrics of one model whose rules differ from the default by ``z`` standard errors."""
    perts = ("uniform", "blur")
    return {
        "default_method": default,
        "region_perturbation": {
            p: {
                "methods": {m: {"aopc": 0.0, "stderr": 0.1} for m in [default, *z, "occlusion", "random"]},
                "paired_differences": {
                    default: {"occlusion": {"mean": -1.0, "stderr": 0.1}},
                    **{
                        m: {
                            "occlusion": {"mean": -1.0, "stderr": 0.1},
                            "default": {"mean": 0.1 * v[i], "stderr": 0.1},
                        }
                        for m, v in z.items()
                    },
                },
            }
            for i, p in enumerate(perts)
        },
    }


def test_the_default_changes_only_for_a_rule_that_clears_the_bar(readme_table):
    decide = readme_table.decide_default
    cost = {m: {"median_ratio_to_default": 1.2} for m in ("a", "b", "c", "e")}
    # better by 2.5 SE under blur, 0.5 SE worse under uniform, 1.2x the cost: chosen
    assert decide(_model_with({"a": (-0.5, 2.5)}), cost)["choice"] == "a"
    assert decide(_model_with({"a": (-0.5, 2.5)}), {"a": {"median_ratio_to_default": 1.6}})["choice"] == "d"
    assert decide(_model_with({"a": (-0.5, 2.5)}), None)["choice"] == "d"  # cost unknown: stays
    assert decide(_model_with({"a": (-1.2, 3.0)}), cost)["choice"] == "d"  # worse by 1 SE
    assert decide(_model_with({"a": (1.9, 1.9)}), cost)["choice"] == "d"  # not 2 SE better
    # two qualify: the larger mean Δ / SE wins
    decision = decide(_model_with({"a": (2.1, 0.0), "b": (2.0, 1.0), "c": (0.0, 0.0)}), cost)
    assert decision["choice"] == "b"
    assert decision["reasons"]["c"]["why"].startswith("not better")
    assert decision["reasons"]["b"]["z"] == {"uniform": pytest.approx(2.0), "blur": pytest.approx(1.0)}


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
    assert metrics["schema"] == "bowlrp.polygons-metrics/3"
    # every AOPC and paired difference of the faithfulness table has its standard error
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | method | AOPC"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    for name, model in metrics["models"].items():  # every rule of every model is in the table
        methods = model["region_perturbation"]["uniform"]["methods"]
        assert len([r for r in rows if r.startswith(f"| {readme_table.TITLE[name]} |")]) == len(methods)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")][2:]
        numbers = [c for c in cells if any(ch.isdigit() for ch in c)]
        assert len(numbers) >= 2 and all("±" in c for c in numbers), line
    # the README states the default the measurements choose, for both models
    for name in metrics["models"]:
        assert f"**{readme_table.TITLE[name]}: " in table


@pytest.fixture(scope="module")
def tiny_models(experiment):
    """Both polygons models fitted on one scene's 25 crops (8 words per scale), a held-out crop
    with a polygon, and its dilated polygons (the experiment's quick path)."""
    X, y = tile_dataset(generate(0, 1))
    pipes, _ = experiment.fit_models(X, y, ("hik", "chi2"), {"n_words": 8, "n_jobs": 1, "verbose": False})
    val = generate(5000, 1)
    crops, labels, _ = overlapping_tiles(val)
    k = int(np.flatnonzero(labels == 1)[0])
    region = experiment.tile_regions(val, [k], experiment.descriptor_half_side(pipes["hik"]))[k]
    return pipes, crops[k], region


@pytest.mark.parametrize("model", ["hik", "chi2"])
def test_every_method_explains_a_tile_and_conserves(experiment, tiny_models, model):
    """Every rule combination of the experiment runs on its model; relevance adds up (float64)."""
    pipes, tile, region = tiny_models
    pipe = pipes[model]
    trace = pipe.forward_one(tile)
    for name, rules in experiment.lrp_methods(model).items():
        e = explain_trace(pipe, trace, 1, rules)
        assert e.heatmap.dtype == np.float64 and e.heatmap.shape == tile.shape[:2], name
        total = e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual
        assert total == pytest.approx(e.score, rel=1e-9, abs=1e-12), name
        share = experiment.positive_share(e.heatmap, region)
        assert share is None or 0.0 <= share <= 1.0
        assert e.rules["pixels"] == rules[2] and e.rules["classifier"] == rules[0]


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
            default = experiment.DEFAULT_METHOD[name]
            for meth in experiment.lrp_methods(name):
                refs = {"occlusion", "random"} | ({"default"} if meth != default else set())
                assert set(block["paired_differences"][meth]) == refs
        assert r["default_method"] == experiment.DEFAULT_METHOD[name]
        located = r["tile_localisation"]["methods"]
        assert set(located) == {*experiment.lrp_methods(name), "occlusion-uniform", "occlusion-blur"}
    cost = json.loads((tmp_path / "a" / "timings.json").read_text())["explain_cost"]
    assert set(cost["chi2"]) == set(experiment.lrp_methods("chi2"))
    assert cost["chi2"]["integrated"]["median_ratio_to_default"] == 1.0
    taylor = written["models"]["chi2"]["taylor"]
    taylor_step1 = {
        m for m, rules in experiment.lrp_methods("chi2").items() if type(rules[0]).__name__ == "Taylor"
    }
    assert set(taylor) == taylor_step1
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


def _fake_tile(names, prior=None):
    """A tile result as tile_faithfulness shapes it: method m's curve is [1, m's number, 0]."""
    out = {"score": 0.5, "taylor": {}, "curves": {}, "seconds": {"forward": 1.0}, "ratios": {}}
    for p in ("uniform", "blur"):
        out["curves"][p] = {m: np.array([1.0, float(m[-1]), 0.0]) for m in names}
        if prior is None:
            out["curves"][p] |= {"occlusion": np.array([1.0, 0.25, 0.0]), "random": np.array([1.0, 0.9, 0.0])}
    for m in names:
        out["seconds"][m] = float(m[-1])
        out["ratios"][m] = {"default": float(m[-1]), "forward": float(m[-1])}
    out["localisation"] = {m: 0.1 * float(m[-1]) for m in names}
    if prior is None:
        out["localisation"] |= {"occlusion-uniform": 0.7, "occlusion-blur": 0.6, "area_share": 0.3}
    return out


def test_tile_results_are_cached_per_method_and_resumed(experiment, tmp_path):
    """A finished tile is reused; adding a method computes only that method (counted), paired with
    the stored occlusion and random curves; changed rules, another key or a broken file recompute."""
    calls = []

    def compute(names, prior):
        calls.append((list(names), prior is not None))
        return _fake_tile(names, prior)

    path = tmp_path / "partial" / "tile00001.json"
    two = {"m1": "R1", "m2": "R2"}
    a = experiment.cached_methods(path, "k1", two, compute)
    b = experiment.cached_methods(path, "k1", two, compute)
    assert a.pop("computed") == ["m1", "m2"] and b.pop("computed") == []
    assert a == b and calls == [(["m1", "m2"], False)]  # resumed: not recomputed, the same values
    assert a["curves"]["blur"]["m2"] == [1.0, 2.0, 0.0]
    three = {"m1": "R1", "m3": "R3", "m2": "R2"}
    c = experiment.cached_methods(path, "k1", three, compute)
    assert calls[1:] == [(["m3"], True)] and c.pop("computed") == ["m3"]  # only the new method
    assert list(c["curves"]["uniform"]) == ["m1", "m3", "m2", "occlusion", "random"]  # the table's order
    assert c["curves"]["uniform"]["occlusion"] == a["curves"]["uniform"]["occlusion"]
    assert c["localisation"]["occlusion-blur"] == 0.6 and c["localisation"]["m3"] == pytest.approx(0.3)
    assert experiment.restrict_tile(c, two) == a  # the old methods' results are untouched
    # the same result as one call computing all three
    full = json.loads(json.dumps(_fake_tile(list(three)), default=lambda v: np.asarray(v).tolist()))
    assert c["curves"] == full["curves"] and c["localisation"] == full["localisation"]
    assert experiment.cached_methods(path, "k1", {"m1": "R1"}, compute)["curves"]["blur"].keys() == {
        "m1",
        "occlusion",
        "random",
    }
    experiment.cached_methods(path, "k1", three, compute)  # a subset run kept the others in the file
    assert len(calls) == 2
    experiment.cached_methods(path, "k1", {"m1": "R1", "m3": "R3", "m2": "R2 changed"}, compute)
    assert calls[2:] == [(["m2"], True)]  # changed rules: that method only
    experiment.cached_methods(path, "k2", three, compute)  # another model or settings: everything
    assert calls[3:] == [(["m1", "m3", "m2"], False)]
    path.write_text("{broken")
    experiment.cached_methods(path, "k2", three, compute)
    assert calls[4:] == [(["m1", "m3", "m2"], False)]


def test_files_from_before_the_per_method_keys_are_reused(experiment, tmp_path):
    """A tile file with one key over all its methods (the recorded run's) is reused when that key
    matches the current rules of its methods; a new method is then the only one computed."""
    calls = []

    def compute(names, prior):
        calls.append((list(names), prior is not None))
        return _fake_tile(names, prior)

    def legacy_key(reprs):
        return "old:" + json.dumps(reprs, sort_keys=True)

    path = tmp_path / "tile00007.json"
    old = json.loads(json.dumps(_fake_tile(["m1", "m2"]), default=lambda v: np.asarray(v).tolist()))
    del old["ratios"]  # stored before per-tile ratios
    path.write_text(json.dumps({"key": legacy_key({"m1": "R1", "m2": "R2"}), "result": old}))
    got = experiment.cached_methods(path, "k1", {"m1": "R1", "m2": "R2", "m3": "R3"}, compute, legacy_key)
    assert calls == [(["m3"], True)]
    assert got["curves"]["blur"]["m1"] == old["curves"]["blur"]["m1"]
    stored = json.loads(path.read_text())
    assert stored["key"] == "k1" and stored["methods"] == {"m1": "R1", "m2": "R2", "m3": "R3"}
    # an old file made with other rules for one of its methods: recomputed whole
    path.write_text(json.dumps({"key": legacy_key({"m1": "R1", "m2": "R0"}), "result": old}))
    experiment.cached_methods(path, "k1", {"m1": "R1", "m2": "R2"}, compute, legacy_key)
    assert calls[1:] == [(["m1", "m2"], False)]


def test_a_method_added_to_a_finished_tile_equals_computing_it_with_the_others(experiment, tiny_models):
    """tile_faithfulness with ``prior``: the added method's curves and localisation are those of one
    call over all methods (same noise seed, same occlusion), and occlusion is not recomputed."""
    pipes, tile, region = tiny_models
    pipe = pipes["hik"]
    methods = experiment.lrp_methods("hik")
    one = {m: methods[m] for m in ("lrp-eps0", "lrp-eps0+neon+siftbins")}
    ref = ("lrp-eps0", methods["lrp-eps0"])
    args = (("blur",), 3, 11, region)
    both = experiment.tile_faithfulness(pipe, tile, one, *args, timing_reference=ref)
    first = experiment.tile_faithfulness(
        pipe, tile, {"lrp-eps0": one["lrp-eps0"]}, *args, timing_reference=ref
    )
    added = experiment.tile_faithfulness(
        pipe,
        tile,
        {"lrp-eps0+neon+siftbins": one["lrp-eps0+neon+siftbins"]},
        *args,
        prior=first,
        timing_reference=ref,
    )
    assert "occlusion" not in added["curves"]["blur"] and "occlusion-blur" not in added["seconds"]
    merged = experiment.merge_tile(first, added)
    for m in [*one, "occlusion", "random"]:
        np.testing.assert_array_equal(merged["curves"]["blur"][m], both["curves"]["blur"][m])
    assert merged["localisation"] == pytest.approx(both["localisation"])
    assert set(added["ratios"]) == {"lrp-eps0+neon+siftbins"} and added["seconds"]["reference:lrp-eps0"] > 0
    with pytest.raises(ValueError, match="another model"):  # a stored tile of another model
        experiment.tile_faithfulness(
            pipe,
            tile,
            {"lrp-eps0+neon+siftbins": one["lrp-eps0+neon+siftbins"]},
            *args,
            prior={**first, "score": 1.0},
        )


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


@pytest.mark.slow
def test_a_rerun_with_added_methods_reuses_models_and_tiles_and_equals_a_fresh_run(
    experiment, tmp_path, monkeypatch
):
    """Run the tiny experiment with the NEON methods left out, then again with them into the same
    folder: the models are not refitted, only the added methods are computed (counted), and
    metrics.json is byte for byte that of a fresh run with every method."""
    every = experiment.lrp_methods
    added = {m for k in ("hik", "chi2") for m in every(k) if "+neon+" in m}
    monkeypatch.setattr(
        experiment, "lrp_methods", lambda k: {m: r for m, r in every(k).items() if m not in added}
    )
    _tiny(experiment, tmp_path / "a", 1)
    models = {n: (tmp_path / "a" / f"polygons_{n}.pkl").read_bytes() for n in ("hik", "chi2")}
    monkeypatch.setattr(experiment, "lrp_methods", every)
    computed = []
    real = experiment.tile_faithfulness

    def counting(pipe, tile, methods, *args, **kwargs):
        computed.append((tuple(methods), kwargs.get("prior") is not None))
        return real(pipe, tile, methods, *args, **kwargs)

    monkeypatch.setattr(experiment, "tile_faithfulness", counting)
    _tiny(experiment, tmp_path / "a", 1)
    timings = json.loads((tmp_path / "a" / "timings.json").read_text())
    assert (
        timings["reused_models"] == ["polygons_hik.pkl", "polygons_chi2.pkl"]
        and "fit" not in timings["seconds"]
    )
    assert models == {n: (tmp_path / "a" / f"polygons_{n}.pkl").read_bytes() for n in ("hik", "chi2")}
    n_added = {k: len([m for m in every(k) if m in added]) for k in ("hik", "chi2")}
    assert timings["tile_methods"] == {
        k: {"computed": 4 * n_added[k], "reused": 4 * (len(every(k)) - n_added[k])} for k in ("hik", "chi2")
    }
    assert len(computed) == 2 * 4  # two models x four tiles, each once, on its stored tile
    assert all(prior and set(names) <= added and names for names, prior in computed)
    assert {m for names, _ in computed for m in names} == added
    _tiny(experiment, tmp_path / "b", 1)  # a fresh run computes everything
    assert all(not prior for _, prior in computed[8:]) and len(computed) == 16
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()


def test_the_curve_figure_highlights_the_reference_the_best_rules_and_the_baselines(experiment, tmp_path):
    """17 rules stay readable: colour for the reference, the three best by AOPC, occlusion and
    random; every method in the bar panel; the PNG is written."""
    rng = np.random.default_rng(0)

    def entry(level):
        aopc = level + 0.01 * rng.standard_normal(5)
        return {
            "mean_drop": list(np.linspace(0, level, 11)),
            "stderr_drop": [0.01] * 11,
            "aopc_per_tile": list(aopc),
        }

    names = [f"rule{k}" for k in range(15)] + ["integrated", "occlusion", "random"]
    levels = {n: k / 10 for k, n in enumerate(names)}
    levels["integrated"] = 0.05  # the reference is shown although it is not among the best
    curves = {"chi2": {p: {n: entry(levels[n]) for n in names} for p in ("uniform", "blur")}}
    shown = experiment.highlighted_methods(curves["chi2"], "integrated")
    assert shown == ["integrated", "rule14", "rule13", "rule12", "occlusion", "random"]
    out = tmp_path / "curves.png"
    experiment.plot_curves(curves, out, 10)
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > image.shape[0]
