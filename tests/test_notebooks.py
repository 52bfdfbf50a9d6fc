"""Every notebook runs top to bottom in a fresh, real Jupyter kernel.

A cell tagged ``parameters`` holds each notebook's knobs; like papermill, the test
injects a cell after it with smaller values so the suite stays fast without changing
the story the notebook tells by default.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"

# notebooks whose own test executes them and asserts their conclusions (not run twice)
DEDICATED = {"03_real_clients.ipynb", "04_timeout_sweep.ipynb", "05_postmortem_no_chunks.ipynb"}

# per-notebook overrides of the `parameters` cell (only what keeps CI fast)
OVERRIDES: dict[str, str] = {
    "01_explorer.ipynb": "FIRST_BYTE_DELAY = 0.5",
    "00_quickstart.ipynb": "EVENTS = 10",
    "02_network_conditions.ipynb": (
        "EVENTS, GAP, LATENCY, JITTER = 15, 0.02, 0.1, 0.02\nBANDWIDTH, STALL_AFTER, STALL_FOR = '4KB/s', '1KB', 0.5"
    ),
    "05_postmortem_no_chunks.ipynb": "TRIALS = 40\nNET_STALL = 2.0\nCLI_CLIENTS = ()\nPY_CLIENTS = ('anthropic-python', 'openai-python')",
    "06_your_traces.ipynb": "TOP = 2",
    "07_record_and_replay.ipynb": "EVENTS, STALL_FOR, SDK_TIMEOUT = 20, 0.8, 0.4",
}


def committed(path: pathlib.Path) -> str:
    """The notebook as git holds it (the index: what a commit would contain, after the
    nbstripout filter), so running and saving notebooks in JupyterLab does not fail the
    tests; the working copy outside a git clone."""
    rel = path.resolve().relative_to(NOTEBOOKS.parent)
    try:
        done = subprocess.run(
            ["git", "show", f":{rel.as_posix()}"], cwd=NOTEBOOKS.parent, capture_output=True, text=True, timeout=30
        )
    except OSError:  # no git
        return path.read_text(encoding="utf-8")
    return done.stdout if done.returncode == 0 else path.read_text(encoding="utf-8")


def execute(path: pathlib.Path, overrides: str | None = None, timeout: int = 180) -> nbformat.NotebookNode:
    """Run the working copy (outputs of an earlier run cleared) in a fresh kernel."""
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name"), f"{path.name} has no kernelspec"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if overrides:
        idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
        assert idx is not None, f"{path.name} has no cell tagged 'parameters'"
        nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(overrides, metadata={"tags": ["injected-parameters"]}))
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if p.name not in DEDICATED))
def test_notebook_runs_top_to_bottom(name):
    nb = execute(NOTEBOOKS / name, OVERRIDES.get(name))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize(
    "path", sorted([*NOTEBOOKS.glob("*.ipynb"), NOTEBOOKS.parent / "kit" / "templates" / "postmortem.ipynb"])
)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.reads(committed(path), as_version=4)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.get("outputs") or c.get("execution_count")]
    assert not with_outputs, f"{path.name} is committed with outputs in cells {with_outputs}"
    assert "widgets" not in nb.metadata, f"{path.name} is committed with widget state"
    # as the nbstripout filter writes it, so that running it in JupyterLab leaves `git status` clean
    text = committed(path)
    clean = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--keep-id", "-t"], input=text, capture_output=True, text=True, check=True
    ).stdout
    assert clean == text, f"{path.name}: run `python -m nbstripout --keep-id {path}` and commit the result"
