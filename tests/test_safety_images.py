"""What a record says about an image the model cannot see (issue 24, finding 21).

4269499 explained all-grey, black and white images with the same score and a
heatmap, and said nothing; the record now says the image is flat.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from bowlrp.runs.folder import FLAT_WARNING, is_flat
from tests.test_batch import _run, model, png  # noqa: F401 - fixtures


def test_a_flat_image_is_named_flat_in_its_record(model, png, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    for name, value in (("grey", 128), ("black", 0), ("white", 255)):
        cv2.imwrite(str(folder / f"{name}.png"), np.full((40, 40), value, np.uint8))
    png(folder / "scene.png")
    lines = []
    _run(model, [folder], tmp_path / "out", report=lines.append)
    records = {
        p.stem: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json") if p.stem != "run"
    }
    for name in ("grey", "black", "white"):
        assert records[name]["flat_image"] is True and records[name]["warning"] == FLAT_WARNING
        assert any(line.endswith(FLAT_WARNING) and f"{name}.png" in line for line in lines)
    assert records["scene"]["flat_image"] is False and "warning" not in records["scene"]
    assert is_flat(np.zeros((3, 3, 3)) + [0.1, 0.5, 0.9]) and not is_flat(np.eye(3))
