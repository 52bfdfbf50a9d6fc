"""Every notebook runs top to bottom in a real Jupyter kernel, and is committed without outputs.

A cell tagged ``parameters`` holds each notebook's knobs; like papermill, the suite
injects a cell after it with smaller values (``labrun.PARAMETERS``) so it stays fast
without changing the story the notebook tells by default. Each notebook runs once per
session (the ``notebooks`` fixture: in JupyterLab and chromium where available, else in a
fresh kernel); the tests here and in test_notebooks_*.py / test_postmortem.py judge that run.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import nbformat
import pytest
from labrun import errors_of, text_of, with_parameters
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


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
    nb = with_parameters(path, overrides)
    assert nb.metadata.get("kernelspec", {}).get("name"), f"{path.name} has no kernelspec"
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first notebook test runs every notebook (see conftest.Notebooks)
@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs_top_to_bottom(notebooks, name):
    nb = notebooks.run(name)
    assert not errors_of(nb), errors_of(nb)
    not_run = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.get("execution_count")]
    assert not not_run, f"{name}: cells {not_run} did not run"
    if name == "01_explorer.ipynb":  # the explorer's run from code: a timeout, then done
        text = text_of(nb)
        assert "done/ok" in text and "first_chunk/timeout.first_chunk" in text


@pytest.mark.parametrize(
    "path", sorted([*NOTEBOOKS.glob("*.ipynb"), NOTEBOOKS.parent / "kit" / "templates" / "postmortem.ipynb"])
)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.reads(committed(path), as_version=4)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.get("outputs") or c.get("execution_count")]
    assert not with_outputs, f"{path.name} is committed with outputs in cells {with_outputs}"
    assert "widgets" not in nb.metadata, f"{path.name} is committed with widget state"
    # the kernel `make` installs, named as JupyterLab writes it on save (else saving changes the file for git)
    kernelspec = {k: nb.metadata.get("kernelspec", {}).get(k) for k in ("name", "display_name")}
    assert kernelspec == {"name": "python3", "display_name": "Python 3 (kit)"}, f"{path.name}: {kernelspec}"
    # as the nbstripout filter writes it, so that running it in JupyterLab leaves `git status` clean
    text = committed(path)
    clean = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--keep-id", "-t"], input=text, capture_output=True, text=True, check=True
    ).stdout
    assert clean == text, f"{path.name}: run `python -m nbstripout --keep-id {path}` and commit the result"
