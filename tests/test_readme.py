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
    namespace = {"train_images": train[:12] + train[20:32], "labels": np.r_[y[:12], y[20:32]],
                 "images": test[:8], "__name__": "readme"}
    for i, block in enumerate(python_blocks(README.read_text())):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            pytest.fail(f"README python block {i + 1} failed: {type(exc).__name__}: {exc}\n{block}")
