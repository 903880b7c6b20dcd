"""The README's Python blocks run, in order, on small stand-in data (documentation cannot rot)."""

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_python_blocks():
    assert len(python_blocks(README.read_text())) >= 4


def test_readme_python_blocks_run(stripes_blobs, tmp_path, monkeypatch):
    train, y, test, _ = stripes_blobs
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("x.jpg", (test[0] * 255).astype(np.uint8))
    for i, (image, label) in enumerate(zip(train, y)):  # `root`: a folder of class folders
        folder = tmp_path / "photos" / ("stripes" if label == 1 else "blobs")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:02d}.png"), (image * 255).astype(np.uint8))
    namespace = {
        "train_images": train[:12] + train[20:32],
        "labels": np.r_[y[:12], y[20:32]],
        "images": test[:8],
        "root": str(tmp_path / "photos"),
        "__name__": "readme",
    }
    for i, block in enumerate(python_blocks(README.read_text())):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            pytest.fail(f"README python block {i + 1} failed: {type(exc).__name__}: {exc}\n{block}")


def _readme_table_module():
    import importlib.util

    path = README.parent / "experiments" / "readme_table.py"
    spec = importlib.util.spec_from_file_location("readme_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_polygons_results_table_is_rendered_from_metrics(tmp_path):
    module = _readme_table_module()
    loc = {
        "dilated_polygon_area_share": 0.105,
        "positive_share_on_polygons": 0.6,
        "mean_relevance_on_polygons": 0.46,
        "mean_relevance_on_round": -0.05,
        "mean_relevance_on_background": -0.004,
        "fraction_polygons_positive": 1.0,
        "n_polygons": 51,
        "fraction_round_negative": 0.85,
        "n_round": 62,
    }

    def block(methods):
        return {
            "methods": {m: {"aopc": a, "stderr": 0.05, "n_tiles": 40} for m, a in methods.items()},
            "paired_differences": {
                m: {
                    "occlusion": {"mean": a - methods["occlusion"], "stderr": 0.02},
                    "random": {"mean": a - methods["random"], "stderr": 0.03},
                }
                for m, a in methods.items()
                if m not in ("occlusion", "random")
            },
        }

    def model(methods):
        return {
            "accuracy": {"value": 0.925, "stderr": 0.0083, "stderr_scenes": 0.012},
            "localisation": loc,
            "region_perturbation": {p: block(methods) for p in ("uniform", "blur")},
        }

    chi2 = model({"integrated": 0.5, "occlusion": 0.6, "random": 0.1})
    chi2["taylor"] = {
        "integrated": {
            "relative_residual": {"median": 1e-12, "p90": 2e-12},
            "root_distance": {"median": 0.05},
        }
    }
    metrics = {
        "schema": "bowlrp.polygons-metrics/2",
        "settings": {"seed": 0},
        "data": {"train_tiles": 1500, "heldout_tiles": 1014, "heldout_stride": 34, "heldout_scenes": 6},
        "models": {"hik": model({"lrp-eps0": 0.7, "occlusion": 0.5, "random": 0.1}), "chi2": chi2},
    }
    timings = {"seconds": {"total": 600}, "machine": {"cores": 2, "python": "3.11.7"}}
    table = module.render(metrics, timings)
    assert "| held-out tile accuracy (1014 tiles) | 92.5 % ± 0.8 (± 1.2 over scenes) |" in table
    assert "| HIK + MKL | lrp-eps0 | 0.700 ± 0.050 | +0.200 ± 0.020 | +0.600 ± 0.030 |" in table
    assert "(integrated) is less faithful than occlusion (Δ = -0.100 ± 0.020)" in table
    assert "10.0 min on 2 cores" in table
    (tmp_path / "metrics.json").write_text(__import__("json").dumps(metrics))
    (tmp_path / "timings.json").write_text(__import__("json").dumps(timings))
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{module.BEGIN} -->\nold\n{module.END}\ny\n")
    argv = ["--metrics", str(tmp_path / "metrics.json"), "--readme", str(readme)]
    assert module.main(argv + ["--check"]) == 1
    assert module.main(argv) == 0 and module.main(argv + ["--check"]) == 0
    assert table in readme.read_text() and "old" not in readme.read_text()
