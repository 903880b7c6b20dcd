"""The package layout: no import circles, each stage owns its backward pass, old paths still work.

The layer contracts themselves are checked by import-linter (``make lint``,
``[tool.importlinter]`` in pyproject.toml); these tests prove what a contract
cannot say: that no two modules import each other through any chain (imports
inside functions included), that nothing outside a stage's folder dispatches on
that stage's classes or calls its private names, and that the 0.1 module paths
and the 0.1 model files keep working for one release.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import grimp
import pytest

import bowlrp
from bowlrp import _moved

PACKAGE = Path(bowlrp.__file__).parent
ROOT = PACKAGE.parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or with a self-loop."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _import_graph() -> dict[str, set[str]]:
    """Module -> the bowlrp modules it imports (top level and inside functions), from grimp."""
    graph = grimp.build_graph("bowlrp")
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_cycle_finder_finds_a_planted_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_bowlrp_modules():
    edges = _import_graph()
    # the package's __init__ re-exports its submodules, so "bowlrp" itself is left out: a
    # submodule importing `from .. import image` imports bowlrp.image, not the package's API
    edges = {m: {t for t in ts if t != "bowlrp"} for m, ts in edges.items() if m != "bowlrp"}
    assert len(edges) > 60
    assert _cycles(edges) == []


def _local_imports(path: Path) -> list[tuple[int, str]]:
    """bowlrp imports inside functions: (line, module)."""
    tree = ast.parse(path.read_text())
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (
                    node.level or (node.module or "").startswith("bowlrp")
                ):
                    out.append((node.lineno, "." * node.level + (node.module or "")))
                elif isinstance(node, ast.Import) and any(a.name.startswith("bowlrp") for a in node.names):
                    out.append((node.lineno, node.names[0].name))
    return out


def test_bowlrp_modules_are_imported_at_the_top():
    """Imports of bowlrp's own modules go at the top (82 were inside functions in 0.1.0);
    ``bowlrp.cli.main`` picks the program to import with importlib, not an import statement."""
    local = {name: found for name, path in _modules().items() if (found := _local_imports(path))}
    assert local == {}


def test_every_import_inside_a_function_says_why():
    """Third-party imports inside functions are optional extras or slow, rarely needed
    libraries; each carries its one-line reason as a comment."""
    silent = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and "#" not in lines[node.lineno - 1]:
                        silent.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert silent == []


# patterns that put a stage's backward pass outside its folder (issue 23)
_OUTSIDE_PATTERNS = {
    "descriptors": [
        r"isinstance\([^)]*,\s*\(?\s*(DenseSIFT|ColorQuantiles)",  # dispatch on an extractor's class
        r"\._smoothed\b|\._half_width\b|\._opencv_|\._vlfeat_",  # an extractor's private methods
        r"(SIFT_SPATIAL_BINS|SIFT_ORIENTATIONS|_SIFT_BINS)\s*=",  # SIFT's layout declared again
    ],
    "encoding": [
        r"isinstance\([^)]*,\s*\(?\s*(FisherVector|HardAssignment|RankMapping|SoftAssignment|Encoder)\b",
        r"hasattr\([^)]*\"gmm_parameters\"",  # "is this a Fisher vector?" asked from outside
        r"\._descriptor_relevance\b|\.pca_\b",  # an encoder's or vocabulary's insides
    ],
    "classifier": [
        r"isinstance\([^)]*,\s*\(?\s*(KernelSVC|KernelSVDD|OneClassKernelSVM)\b",
    ],
}


def _code_lines(path: Path):
    """Lines of code (docstrings and comments stripped) with their numbers."""
    text = path.read_text()
    tree = ast.parse(text)
    doc_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            if isinstance(node.value.value, str):
                doc_lines.update(range(node.lineno, node.end_lineno + 1))
    for number, line in enumerate(text.splitlines(), 1):
        if number not in doc_lines:
            yield number, line.split("#", 1)[0]


def _offences(patterns: dict[str, list[str]], modules: dict[str, Path]) -> list[str]:
    found = []
    for stage, stage_patterns in patterns.items():
        for name, path in modules.items():
            if name == f"bowlrp.{stage}" or name.startswith(f"bowlrp.{stage}."):
                continue
            if stage == "descriptors" and name == "bowlrp.descriptors.geometry":
                continue
            for number, line in _code_lines(path):
                for pattern in stage_patterns:
                    if re.search(pattern, line):
                        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                        found.append(f"{shown}:{number}: {line.strip()}")
    return found


def test_no_module_outside_a_stage_dispatches_on_it_or_calls_its_private_names():
    assert _offences(_OUTSIDE_PATTERNS, _modules()) == []


def test_the_dispatch_check_finds_what_0_1_0_did(tmp_path):
    """The patterns above catch the 0.1.0 code they were written against (pixels.py)."""
    old = tmp_path / "pixels.py"
    old.write_text(
        "from .descriptors.sift import DenseSIFT\n"
        "_SIFT_BINS, _SIFT_ORIENTATIONS = 4, 8\n"
        "def contribution_step(rule, extractor, encoder):\n"
        "    if not isinstance(extractor, DenseSIFT):\n"
        "        return None\n"
        '    per_dimension = hasattr(encoder, "gmm_parameters")\n'
        "    return extractor._smoothed(None, 4)\n"
    )
    found = _offences(_OUTSIDE_PATTERNS, {"bowlrp.pixels": old})
    assert sorted(int(f.split(":")[1]) for f in found) == [2, 4, 6, 7], found


def test_explanation_does_not_branch_on_the_pixel_rule():
    code = "\n".join(line for _, line in _code_lines(PACKAGE / "explanation.py"))
    assert not re.search(r"isinstance\([^)]*,\s*\(?\s*(Flat|SIFTBins|Contribution)\b", code)


def test_configs_at_the_root_are_the_shipped_ones():
    root = ROOT / "configs"
    shipped = Path(str(resources.files("bowlrp") / "configs"))
    assert root.resolve() == shipped.resolve()
    assert sorted(p.name for p in root.glob("*.yaml")) == sorted(p.name for p in shipped.glob("*.yaml"))
    assert {"polygons_hik.yaml", "voc_fisher.yaml"} <= {p.name for p in root.glob("*.yaml")}


def test_one_owner_for_image_suffixes_and_output_names():
    """IMAGE_SUFFIXES is defined once; the output suffixes are spelled only in the folder layout."""
    defining = []
    spelled = []
    for name, path in _modules().items():
        for number, line in _code_lines(path):
            if re.match(r"\s*IMAGE_SUFFIXES\s*=", line):
                defining.append(name)
            if re.search(r"[\"']_(relevance\.npy|heatmap\.png|overlay\.png)[\"']", line):
                spelled.append(f"{name}:{number}")
    assert defining == ["bowlrp._utils.validation"]
    assert {s.split(":")[0] for s in spelled} == {"bowlrp.runs.folder_layout"}, spelled


# -- the 0.1 paths: deprecated aliases for one release -----------------------------------------


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "statement, old",
    [
        ("import bowlrp.store as m", "bowlrp.store"),
        ("from bowlrp.io import model_info as m", "bowlrp.io"),
        ("from bowlrp import kernels as m", "bowlrp.kernels"),
        ("import bowlrp; m = bowlrp.anomaly", "bowlrp.anomaly"),
    ],
)
def test_old_module_paths_warn_once_and_are_the_new_modules(statement, old):
    new = _moved.MOVED_MODULES[old]
    code = (
        f"{statement}\n"
        "import importlib, sys\n"
        f"import {old}\n"  # a second import: no second warning
        f"assert sys.modules[{old!r}] is importlib.import_module({new!r})\n"
        "print('ok')\n"
    )
    r = _run(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    warnings = [line for line in r.stderr.splitlines() if "DeprecationWarning" in line]
    assert len(warnings) == 1, r.stderr
    assert f"{old} moved to {new} in bowlrp 0.2.0" in warnings[0]


def test_every_moved_path_names_an_existing_module():
    modules = _modules()
    for old, new in _moved.MOVED_MODULES.items():
        assert new in modules and old not in modules, (old, new)
        assert _moved.current_type_name(f"{old}.Thing") == f"{new}.Thing"
    # exact module names only: a longer name that starts with an old path is not renamed
    assert _moved.current_type_name("bowlrp.svm_extra.KernelSVC") == "bowlrp.svm_extra.KernelSVC"
    assert _moved.current_type_name("bowlrp.kernels.sub.RBF") == "bowlrp.kernels.sub.RBF"
    assert _moved.current_type_name("evil.bowlrp.svm.KernelSVC") == "evil.bowlrp.svm.KernelSVC"


def test_new_code_imports_no_old_path():
    """Nothing in the package, the tests' library imports or the README uses a deprecated path."""
    old = "|".join(re.escape(m) for m in _moved.MOVED_MODULES)
    pattern = re.compile(rf"(import|from)\s+({old})(\s|$|\.)|\b({old})\.[A-Za-z_]+\(")
    files = [*PACKAGE.rglob("*.py"), ROOT / "README.md", *(ROOT / "examples").glob("*.py")]
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and "_moved" not in path.name and "test_layout" not in path.name:
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert hits == []
