"""What the programs need before their arguments are parsed: the parser, argument types, defaults.

Nothing here imports the numerical stack (NumPy, scikit-learn, OpenCV, matplotlib,
Dask, Zarr, Numba), so ``--help`` and usage errors answer in a fraction of a
second; the work is imported once the arguments are parsed (:func:`import_work`).
The defaults shown in the programs' help repeat constants of the library; the tests
check they are equal (``tests/test_import_time.py``).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping

#: colour maps of heatmaps and overlays (:data:`bowlrp.image.COLORMAPS`)
COLORMAPS = ("bwr", "seismic", "jet", "coolwarm", "RdBu_r", "gray", "coldnhot", "fire", "wred")
#: the |R| percentile drawn at full colour (:data:`bowlrp.image.DEFAULT_PERCENTILE`)
DEFAULT_PERCENTILE = 99.5
#: bowlrp-evaluate's methods (:mod:`bowlrp.evaluation.runner`)
LRP_METHODS = ("lrp-eps0", "lrp-eps1", "lrp-eps100", "lrp-ab21", "lrp-absz", "lrp-contribution")
ALL_METHODS = (*LRP_METHODS, "random", "occlusion")
DEFAULT_METHODS = tuple(m for m in ALL_METHODS if m != "lrp-contribution")
PEER_METHODS = ("lime", "shap-partition", "kernel-shap")
#: SpRAy's default normalisation of pooled maps (:class:`bowlrp.spray.spectral.SpRAy`)
SPRAY_NORMALIZE = "none"


class CLIError(Exception):
    """An error reported as one line with exit code 2."""


def import_work(namespace: dict, work: Mapping[str, tuple[str, ...]]) -> None:
    """Import what a program runs and bind it in the program's module (after parsing).

    Parameters
    ----------
    namespace : dict
        The program module's ``globals()``.
    work : mapping
        Module name -> the names the program uses from it. A name already bound
        (a test's stand-in) is kept.
    """
    for module, names in work.items():
        loaded = importlib.import_module(module)
        for name in names:
            namespace.setdefault(name, getattr(loaded, name))


def work_attribute(namespace: dict, work: Mapping[str, tuple[str, ...]], name: str):
    """A program module's ``__getattr__``: a name of its work, imported on first access.

    Raises
    ------
    AttributeError
        ``name`` is none of the work's names.
    """
    for module, names in work.items():
        if name in names:
            namespace[name] = getattr(importlib.import_module(module), name)
            return namespace[name]
    raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def percentile_arg(text: str) -> float | None:
    """argparse type: a percentile in (0, 100], or 'max' (= 100)."""
    if text.lower() in ("max", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100] or 'max', got {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100] or 'max', got {text!r}")
    return None if value == 100 else value


def _one_line_error(self, message: str):
    """argparse's error as one line (no usage block): ``prog: error: message (see --help)``."""
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def ArgumentParser(**kwargs):  # noqa: N802 - a drop-in for argparse.ArgumentParser
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, exit code 2."""
    parser = argparse.ArgumentParser(**kwargs)
    parser.error = _one_line_error.__get__(parser)
    return parser
