"""A fast start (issue 25, item 4): ``import bowlrp``, ``--help`` and usage errors load no
numerical library; a refused run answers before the model is read.

4269499 imported scikit-learn, SciPy, OpenCV, matplotlib, Dask, Zarr and Numba before
parsing any argument (3-4 s of CPU for ``--help``, 5-7 s for ``import bowlrp``). No timing
is asserted here (the machine may be loaded); what is loaded is. The figures are in
BENCHMARKS.md (``benchmarks/import_time.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bowlrp.cli import _args

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sklearn", "scipy", "cv2", "matplotlib", "zarr", "dask", "numba", "skops", "numpy")

#: the programs as installed (console scripts) and as python -m runs them
PROGRAMS = {
    "bowlrp-explain": ("bowlrp.cli.explain", None),
    "bowlrp-evaluate": ("bowlrp.cli.evaluate", None),
    "bowlrp-train": ("bowlrp.cli.train", None),
    "bowlrp-spray": ("bowlrp.cli.spray", None),
    "bowlrp": ("bowlrp.cli.main", None),
    "python -m bowlrp.explain": (None, "bowlrp.explain"),
    "python -m bowlrp.evaluate": (None, "bowlrp.evaluate"),
    "python -m bowlrp.train": (None, "bowlrp.train"),
    "python -m bowlrp": (None, "bowlrp"),
    "python -m bowlrp.spray": (None, "bowlrp.spray"),
}


def loaded_after(code: str) -> tuple[list[str], str]:
    """The heavy top-level modules in ``sys.modules`` after ``code`` ran in a fresh interpreter."""
    wrapper = textwrap.dedent(
        f"""
        import json, sys
        try:
            exec({code!r})
        except SystemExit:
            pass
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.__stdout__)
        """
    )
    r = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def run_program(name: str, argv: list[str]) -> str:
    module, runnable = PROGRAMS[name]
    if module is not None:
        return f"from {module} import main; sys.exit(main({argv!r}))"
    return f"import runpy; sys.argv = ['x', *{argv!r}]; runpy.run_module({runnable!r}, run_name='__main__')"


def test_import_bowlrp_loads_no_numerical_library():
    loaded, _ = loaded_after("import bowlrp; bowlrp.__version__; dir(bowlrp)")
    assert loaded == []


def test_the_public_names_still_resolve():
    loaded, _ = loaded_after(
        "import bowlrp\n"
        "from bowlrp import Pipeline, rules, DenseSIFT\n"
        "assert Pipeline.__module__ == 'bowlrp.pipeline' and rules.__name__ == 'bowlrp.rules'\n"
        "assert set(bowlrp.__all__) <= set(dir(bowlrp))\n"
        "assert all(getattr(bowlrp, n) is not None for n in bowlrp.__all__)\n"
        "assert bowlrp.rules.Epsilon and bowlrp.open_store\n"
    )
    assert "sklearn" in loaded  # they did import the work


@pytest.mark.parametrize("name", PROGRAMS)
def test_help_loads_no_numerical_library(name):
    loaded, _ = loaded_after("import sys\n" + run_program(name, ["--help"]))
    assert loaded == [], name


@pytest.mark.parametrize("name", ["bowlrp-explain", "bowlrp-evaluate", "bowlrp-train", "bowlrp-spray"])
def test_a_usage_error_answers_without_them(name):
    loaded, err = loaded_after("import sys\n" + run_program(name, ["--no-such-option"]))
    assert loaded == [] and "error:" in err and len(err.strip().splitlines()) == 1, err


def test_the_parsers_defaults_are_the_librarys():
    from bowlrp import image
    from bowlrp.evaluation import runner
    from bowlrp.spray.spectral import SpRAy

    assert _args.COLORMAPS == image.COLORMAPS and _args.DEFAULT_PERCENTILE == image.DEFAULT_PERCENTILE
    assert _args.ALL_METHODS == runner.ALL_METHODS and _args.DEFAULT_METHODS == runner.DEFAULT_METHODS
    assert _args.PEER_METHODS == runner.PEER_METHODS and _args.LRP_METHODS == tuple(runner.LRP_METHODS)
    assert _args.SPRAY_NORMALIZE == str(SpRAy().normalize).lower()


def test_a_refused_explain_run_answers_before_the_model_is_read(tmp_path):
    """An output folder holding another model's run is refused before the model file is opened:
    here the "model" is not a model at all, and the refusal is about the folder."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"run_key": {"model_sha256": "0" * 64, "rules": []}}))
    model = tmp_path / "m.pkl"
    model.write_bytes(b"not a model, and never read as one")
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    r = subprocess.run(
        [sys.executable, "-m", "bowlrp.explain", "-i", image, "-m", model, "-o", out],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "holds results of another run (differs in model_sha256);" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
