"""The scripts in examples/ run as a user would run them (small settings)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--scenes", "6", "--words", "16"]


@pytest.mark.parametrize(
    "script, args, outputs",
    [
        ("explain_photo.py", ["--out", "explained"], ["explained/heatmap.png", "explained/overlay.png"]),
        ("compare_rules.py", ["--out", "rules.png"], ["rules.png"]),
        (
            "evaluate_faithfulness.py",
            ["--tiles", "2", "--steps", "4", "--repeats", "1", "--out", "c.png"],
            ["c.png"],
        ),
    ],
)
def test_example_runs(script, args, outputs, tmp_path):
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args, *SMALL],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote" in r.stdout
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 1000, name
