"""kit._lab: a notebook saved with outputs leaves `git status` clean; a real edit is never staged."""

from __future__ import annotations

import shutil
import subprocess
import sys

import nbformat
import pytest

from kit._lab import refresh_git_stat

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_saved_outputs_leave_status_clean_and_edits_unstaged(tmp_path):
    repo = tmp_path
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    _git(repo, "config", "filter.nbstripout.clean", f'"{sys.executable}" -m nbstripout --keep-id')
    _git(repo, "config", "filter.nbstripout.smudge", "cat")
    (repo / ".gitattributes").write_text("*.ipynb filter=nbstripout\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hi')", id="cell-00")])
    path = repo / "n.ipynb"
    nbformat.write(nb, path)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")

    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n" * 50)]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, path)
    assert _git(repo, "status", "--short").strip()  # git's size shortcut lists it
    refresh_git_stat({"type": "notebook"}, str(path))
    assert _git(repo, "status", "--short") == ""
    assert _git(repo, "diff", "--cached", "--stat") == ""

    nb.cells[0].source = "print('edited')"
    nbformat.write(nb, path)
    refresh_git_stat({"type": "notebook"}, str(path))
    assert _git(repo, "status", "--short").strip() == "M n.ipynb"  # modified, not staged
