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
    namespace = {"train_images": train[:12] + train[20:32], "labels": np.r_[y[:12], y[20:32]],
                 "images": test[:8], "root": str(tmp_path / "photos"),
                 "__name__": "readme"}
    for i, block in enumerate(python_blocks(README.read_text())):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            pytest.fail(f"README python block {i + 1} failed: {type(exc).__name__}: {exc}\n{block}")


def test_readme_polygons_table_is_generated_from_the_metrics_snapshot():
    import importlib.util

    path = README.parent / "experiments" / "readme_table.py"
    spec = importlib.util.spec_from_file_location("readme_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run: python experiments/readme_table.py"
    table = module.render(__import__("json").loads(module.SNAPSHOT.read_text()))
    assert "held-out tile accuracy" in table and table in README.read_text()
