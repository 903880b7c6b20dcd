"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel and is stored without outputs."""

import json
import os
from pathlib import Path

import nbclient  # the [dev] extra installs them: a missing one fails the test, never skips it
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def _code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def test_committed_notebook_has_no_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    for i, cell in enumerate(_code_cells(notebook)):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"code cell {i} holds outputs"
    assert any("plot" in c.get("metadata", {}).get("tags", []) for c in _code_cells(notebook))


@pytest.mark.notebook
def test_quickstart_notebook_runs_and_draws(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # the kernel imports this checkout's bowlrp, whatever the installed one is
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path}
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,  # per cell; the whole notebook takes ~25 s on an idle machine
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=env)  # raises CellExecutionError with the cell and traceback on failure
    for cell in notebook.cells:
        outputs = cell.get("outputs", [])
        assert not [o for o in outputs if o.output_type == "error"]
        if "plot" in cell.metadata.get("tags", []):
            assert any("image/png" in o.get("data", {}) for o in outputs), cell.source
