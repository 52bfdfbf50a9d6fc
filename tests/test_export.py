"""``kit export``: a notebook becomes one standalone HTML page with charts as PNG."""

from __future__ import annotations

import re

import nbformat
import pytest

from kit import ConfigError
from kit.cli import main
from kit.export import ExportError, export


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny page")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    return path


CHART = """
import altair as alt, pandas as pd
import kit.charts
alt.Chart(pd.DataFrame({"x": list(range(N))})).mark_point().encode(x="x")
"""


@pytest.mark.slow
def test_export_writes_offline_page_with_png_charts(tmp_path):
    nb = _notebook(tmp_path / "t.ipynb", "N = 3", CHART)
    out = export(nb, tmp_path / "page.html", parameters="N = 5")
    html = out.read_text()
    assert "A tiny page" in html
    assert "data:image/png;base64," in html  # the chart, embedded
    assert not re.search(r"<script[^>]*src=\"https?://", html)  # nothing fetched from the network
    assert not re.search(r"<link[^>]*href=\"https?://", html)
    assert "vega-embed" not in html.lower() or "data:image/png" in html


@pytest.mark.slow
def test_cli_export(tmp_path, capsys):
    nb = _notebook(tmp_path / "t.ipynb", "N = 2", "print('hello from the kernel')")
    assert main(["export", str(nb), "-o", str(tmp_path / "x.html")]) == 0
    assert "hello from the kernel" in (tmp_path / "x.html").read_text()
    assert "x.html" in capsys.readouterr().out


@pytest.mark.slow
def test_failing_cell_is_an_export_error(tmp_path):
    nb = _notebook(tmp_path / "t.ipynb", "N = 1", "1 / 0")
    with pytest.raises(ExportError, match="ZeroDivisionError"):
        export(nb, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError):
        export(tmp_path / "missing.ipynb")
    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, tmp_path / "noparams.ipynb")
    with pytest.raises(ConfigError, match="parameters"):
        export(tmp_path / "noparams.ipynb", parameters="X = 1", execute=False)


def test_no_execute_converts_stored_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Stored")]
    nbformat.write(nb, tmp_path / "s.ipynb")
    out = export(tmp_path / "s.ipynb", execute=False)
    assert out == tmp_path / "s.html" and "Stored" in out.read_text()


def test_widgets_become_a_note_and_no_loader_is_fetched(tmp_path):
    nb = nbformat.v4.new_notebook()
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    out = nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": view, "text/plain": "VBox()"}
    )
    nb.cells = [nbformat.v4.new_markdown_cell("# W"), nbformat.v4.new_code_cell("w", outputs=[out])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    nbformat.write(nb, tmp_path / "w.ipynb")
    page = export(tmp_path / "w.ipynb", execute=False).read_text()
    assert "interactive widget was here" in page
    assert "unpkg.com" not in page and "widget-state+json" not in page
