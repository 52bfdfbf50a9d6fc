"""``kit postmortem new``: a runnable notebook from the template."""

from __future__ import annotations

import nbformat
import pytest
from test_notebooks import execute

from kit import ConfigError
from kit.cli import main
from kit.cli.postmortem import TEMPLATE, new


def test_template_is_packaged_clean():
    nb = nbformat.read(TEMPLATE, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in nb.cells)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    text = "\n".join(c.source for c in nb.cells)
    for section in (
        "## Summary",
        "## Impact",
        "## Timeline",
        "Root cause",
        "Remedies",
        "What went well",
        "Action items",
    ):
        assert section in text


def test_cli_creates_notebook_with_title_and_bundle(tmp_path, capsys):
    assert main(["postmortem", "new", "March empty 200s", "-o", str(tmp_path), "--bundle", "runs/x"]) == 0
    path = tmp_path / "March-empty-200s.ipynb"
    assert path.is_file() and str(path) in capsys.readouterr().out
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.startswith("# Postmortem: March empty 200s")
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "EVIDENCE = 'runs/x'" in params.source


def test_refuses_to_overwrite(tmp_path):
    new("same", tmp_path)
    with pytest.raises(ConfigError, match="exists"):
        new("same", tmp_path)
    assert main(["postmortem", "new", "same", "-o", str(tmp_path)]) == 2  # the error, not a traceback
    new("same", tmp_path, overwrite=True)


def test_bad_name():
    with pytest.raises(ConfigError):
        new("///", "/tmp")


@pytest.mark.slow
def test_created_notebook_runs(tmp_path):
    path = new("demo", tmp_path)
    nb = execute(path, "TRIALS = 6\nRUN_NODE = False")
    text = "".join(
        o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "execute_result"
    )
    assert "success_rate" in text and "empty_200" in text
