"""experiments/fisher_faithfulness.py: the pixel rules of a Fisher-vector polygons model against
occlusion. Fast: every rule explains a tile of a tiny model and conserves, the table renders;
slow: a tiny end-to-end run."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bowlrp.datasets.polygons import generate, overlapping_tiles, tile_dataset
from bowlrp.explanation import explain_trace
from bowlrp.rules import PIXEL_RULES, Contribution, SIFTBins

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fisher():
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location(
        "fisher_faithfulness", ROOT / "experiments/fisher_faithfulness.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["fisher_faithfulness"] = module
    spec.loader.exec_module(module)
    import cloudpickle  # joblib's serialiser for its worker processes

    cloudpickle.register_pickle_by_value(module)
    return module


def test_the_rules_are_the_pixel_rules_of_a_fisher_model(fisher):
    methods = fisher.methods()
    assert fisher.DEFAULT in methods
    assert all(len(r) == 1 and isinstance(r[0], PIXEL_RULES) for r in methods.values())
    assert methods["contribution-per-dimension"] == [Contribution(per_dimension=True)]
    assert methods["contribution"] == [Contribution()] and methods["siftbins"] == [SIFTBins()]


def test_every_rule_explains_a_tile_of_a_tiny_fisher_model_and_conserves(fisher):
    X, y = tile_dataset(generate(0, 1))
    pipe = fisher.fisher_pipeline(1, n_components=2, pca=4).fit(X, y)
    crops, labels, _ = overlapping_tiles(generate(5000, 1))
    tile = crops[int(np.flatnonzero(labels == 1)[0])]
    trace = pipe.forward_one(tile)
    flat = None
    for name, rules in fisher.methods().items():
        e = explain_trace(pipe, trace, 1, rules)
        total = e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual
        assert total == pytest.approx(e.score, rel=1e-9, abs=1e-12), name
        if name == fisher.DEFAULT:
            flat = e.heatmap
        else:  # another pixel rule: another map of the same relevance
            assert not np.allclose(e.heatmap, flat), name


def test_summary_table_has_every_method_with_its_errors(fisher):
    block = {
        p: {
            "methods": {
                m: {"aopc": a, "stderr": 0.05, "n_tiles": 20} for m, a in (("flat", 0.4), ("occlusion", 0.6))
            }
            | {"random": {"aopc": 0.0, "stderr": 0.02, "n_tiles": 20}},
            "paired_differences": {"flat": {"occlusion": {"mean": -0.2, "stderr": 0.03}}},
        }
        for p in ("uniform", "blur")
    }
    metrics = {
        "region_perturbation": block,
        "tile_localisation": {"methods": {"flat": {"mean": 0.5, "stderr": 0.1, "n": 20}}},
    }
    table = fisher.summary(metrics, {"explain_cost": {"flat": {"median_ratio_to_default": 1.0}}})
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    flat = "| flat | " + "0.400 ± 0.050 | -0.200 ± 0.030 | — | " * 2 + "50.0 ± 10.0 % | 1.00 |"
    assert lines[2] == flat


@pytest.mark.slow
def test_tiny_fisher_run_end_to_end(fisher, tmp_path):
    m = fisher.run(
        tmp_path, n_train=2, n_val=1, n_tiles=2, steps=2, n_jobs=1, n_components=2, pca=4, verbose=False
    )
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(m)) and written["schema"] == fisher.SCHEMA
    for p in ("uniform", "blur"):
        block = written["region_perturbation"][p]
        assert set(block["methods"]) == {*fisher.methods(), "occlusion", "random"}
        assert set(block["paired_differences"]["contribution"]) == {"occlusion", "random", "default"}
    cost = json.loads((tmp_path / "timings.json").read_text())["explain_cost"]
    assert cost["flat"]["median_ratio_to_default"] == 1.0
    assert (tmp_path / "region_perturbation.png").is_file()
