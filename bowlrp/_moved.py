"""Module paths of bowlrp 0.1 that moved in 0.2.0: they keep working for one release.

``import bowlrp.store`` (and ``from bowlrp.io import load``, ``from bowlrp import kernels``)
still gives the module at its new place, with one :class:`DeprecationWarning` that
names the new path; the old paths go in 0.3. Nothing is copied: the old name is
the same module object, so ``bowlrp.store.open is bowlrp.runs.store.open``.

Model files written by bowlrp 0.1 name their types by the old paths
(``bowlrp.svm.KernelSVC``); :func:`current_type_name` gives the name the type has
now, which is what the model-file allowlist holds (exact names, no prefixes).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import pickle
import sys
import warnings

#: old module path -> new module path (the whole module moved, its names unchanged)
MOVED_MODULES: dict[str, str] = {
    "bowlrp.kernels": "bowlrp.classifier.kernels",
    "bowlrp.svm": "bowlrp.classifier.svm",
    "bowlrp.mkl": "bowlrp.classifier.mkl",
    "bowlrp.roots": "bowlrp.classifier.roots",
    "bowlrp.classifier_relevance": "bowlrp.classifier.relevance",
    "bowlrp.anomaly": "bowlrp.classifier.anomaly",
    "bowlrp.anomaly_relevance": "bowlrp.classifier.anomaly_relevance",
    "bowlrp.vocabulary": "bowlrp.encoding.vocabulary",
    "bowlrp.store": "bowlrp.runs.store",
    "bowlrp.distributed": "bowlrp.runs.distributed",
    "bowlrp.heatmap_files": "bowlrp.spray.heatmap_files",
    "bowlrp.spray_report": "bowlrp.spray.report",
    "bowlrp.io": "bowlrp.model_files",
}

#: the message of the warning
MESSAGE = "{old} moved to {new} in bowlrp 0.2.0; import it from there (the old path goes in 0.3)"


def current_type_name(name: str) -> str:
    """``module.Class`` as it is named now: ``bowlrp.svm.KernelSVC`` -> ``bowlrp.classifier.svm.KernelSVC``.

    Only an exact old module path is renamed; every other name is returned unchanged.
    """
    module, _, cls = name.rpartition(".")
    return f"{MOVED_MODULES[module]}.{cls}" if module in MOVED_MODULES else name


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths only; the module they load is the one at the new path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = MOVED_MODULES[spec.name]
        # stacklevel 2 skips the import machinery's frames: the warning names the importing line
        warnings.warn(MESSAGE.format(old=spec.name, new=new), DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        """Nothing to run: the module at the new path is already executed."""


def install() -> None:
    """Put the finder of the old paths first on ``sys.meta_path`` (once): it answers for the
    exact old names only, and before the path finder, so a stale ``bowlrp/svm.py`` left by an
    unclean 0.1 install is never imported."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())


def alias_quietly(type_names) -> None:
    """Register the old module paths named by ``type_names`` (``module.Class``) without a warning.

    For loading model files written by 0.1: the user's file names the old paths, the user's
    code does not. Only exact old module names are registered, as the modules at their new
    paths (``sys.modules`` entries, no warnings filter touched, so safe in threads).
    """
    for name in type_names:
        module = name.rpartition(".")[0]
        if module in MOVED_MODULES and module not in sys.modules:
            sys.modules[module] = importlib.import_module(MOVED_MODULES[module])


class Unpickler(pickle.Unpickler):
    """A pickle reader that finds the classes of the old module paths at their new paths."""

    def find_class(self, module, name):
        return super().find_class(MOVED_MODULES.get(module, module), name)
