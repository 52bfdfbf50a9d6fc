"""Static images of charts, and the offline renderer for Jupyter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt

from .._errors import ConfigError

EMBED_OPTIONS = {"renderer": "canvas"}
"""How live charts are drawn: on a canvas. Vega's SVG renderer names clip paths ``clip1``,
``clip2``... per chart, so on a page with several zoomable charts a later chart is clipped
by an earlier, smaller one's clip path and hides rows (vega/vega#3987)."""


def save(chart: Any, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write ``chart`` as a static ``.png`` or ``.svg`` (rendered by vl-convert, offline).

    Accepts an altair chart or an ``alt.JupyterChart``. Returns the path.
    """
    import vl_convert as vlc

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ConfigError("path", str(path), "expected a file name ending in .png or .svg")
    if isinstance(chart, alt.JupyterChart):
        chart = chart.chart
    if not hasattr(chart, "to_dict"):
        raise ConfigError("chart", type(chart).__name__, "expected an altair chart")
    spec = chart.to_dict()
    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]  # "v6.4.1" -> "6.4"
    if suffix == ".png":
        path.write_bytes(vlc.vegalite_to_png(spec, vl_version=version, scale=scale))
    else:
        path.write_text(vlc.vegalite_to_svg(spec, vl_version=version), encoding="utf-8")
    return path


def enable_offline() -> None:
    """Render charts offline in Jupyter: altair's ``jupyter`` renderer with vl-convert's
    bundled JavaScript. Call it once at the top of a notebook (importing kit never
    changes altair's renderer: JupyterLab's built-in renderer handles Vega-Lite v5 only,
    and altair's fallback loads Vega from a CDN).

    ``KIT_CHARTS_RENDERER=png`` (or ``svg``) renders static images through vl-convert
    instead, for pages read without a kernel (``kit export`` sets it).
    """
    import os

    static = os.environ.get("KIT_CHARTS_RENDERER", "").lower()
    if static in ("png", "svg"):
        alt.renderers.enable(static, **({"scale_factor": 1.5} if static == "png" else {}))
        return
    alt.renderers.enable("jupyter", offline=True, embed_options=EMBED_OPTIONS)
