"""Shareable pages: execute a notebook and write it as one standalone HTML file.

The page is for someone without Python: every chart is a static PNG (rendered by
vl-convert, embedded as a data URI), tables and prose are plain HTML, and no script or
stylesheet is fetched from the network, so it opens offline from a mail attachment::

    kit export notebooks/05_postmortem_no_chunks.ipynb -o postmortem.html

Charts become images because the kernel runs with ``KIT_CHARTS_RENDERER=png``, which
:func:`kit.charts.enable_offline` honours (a first cell calling it runs, and is left out
of the page, so a notebook that never calls it exports the same way). Interactive
widgets (notebook 01, the explorer) have no static form: each is replaced by a note, and
no widget loader is added.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._errors import ConfigError, KitError

__all__ = ["ExportError", "export", "to_html"]


class ExportError(KitError, RuntimeError):
    """A notebook failed while executing for export; the message names the cell."""


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# remote scripts nbconvert's template links (require.js, MathJax): dropped, the page needs none
_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)
_REMOTE_LINK = re.compile(r"<link[^>]*\bhref=\"https?://[^\"]*\"[^>]*/?>", re.I)


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_NOTE = "<p><i>An interactive widget was here: it needs a running kernel. Open the notebook in JupyterLab to use it.</i></p>"


def _static_widgets(nb: Any) -> Any:
    """A copy of ``nb`` without widget state (whose presence makes nbconvert add a widget
    loader fetched from a CDN) and with each widget view replaced by a note."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET_VIEW in data:
                out["data"] = {"text/html": _WIDGET_NOTE}
    return nb


_SETUP = "import kit.charts\nkit.charts.enable_offline()"


def to_html(nb: Any, *, title: str | None = None) -> str:
    """An executed notebook node as a standalone HTML page (no network references)."""
    from nbconvert import HTMLExporter

    nb = _static_widgets(nb)
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    resources = {"metadata": {"name": title}} if title else {}
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    html = _REMOTE_SCRIPT.sub("", html)
    return _REMOTE_LINK.sub("", html)


def export(
    notebook: str | Path,
    out: str | Path | None = None,
    *,
    execute: bool = True,
    parameters: str | None = None,
    timeout: int = 600,
) -> Path:
    """Execute ``notebook`` in a fresh kernel (charts as PNG) and write ``out`` (default: ``.html`` beside it).

    ``parameters``: code run right after the cell tagged ``parameters`` (papermill
    style), e.g. ``"TRIALS = 20"``. ``execute=False`` converts the stored outputs as
    they are. Returns the path written. Raises :class:`ExportError` if a cell fails.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    src = Path(notebook)
    if not src.is_file() or src.suffix != ".ipynb":
        raise ConfigError("notebook", str(src), "expected the path of an existing .ipynb file")
    dest = Path(out) if out is not None else src.with_suffix(".html")
    nb = nbformat.read(src, as_version=4)
    if parameters:
        idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
        if idx is None:
            raise ConfigError("parameters", parameters, f"{src.name} has no cell tagged 'parameters'")
        cell = nbformat.v4.new_code_cell(parameters, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(idx + 1, cell)
    if execute:
        nb.cells.insert(0, nbformat.v4.new_code_cell(_SETUP, metadata={"tags": ["kit-export-setup"]}))
        kernel = (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
        client = NotebookClient(
            nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(src.parent.resolve())}}
        )
        try:
            with _env(KIT_CHARTS_RENDERER="png"):
                client.execute()
        except CellExecutionError as exc:
            raise ExportError(f"{src}: a cell failed while executing for export:\n{str(exc)[-2000:]}") from None
        nb.cells.pop(0)
    title = next(
        (
            c.source.lstrip("# ").splitlines()[0]
            for c in nb.cells
            if c.cell_type == "markdown" and c.source.startswith("#")
        ),
        src.stem,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(to_html(nb, title=title), encoding="utf-8")
    return dest
