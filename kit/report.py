"""A standalone HTML report of a Result: opens offline, in any browser, with no scripts.

Everything is inline: the provenance, the outcome counts and the metrics table as HTML
tables, and the main charts as SVG rendered by vl-convert (no Vega JavaScript, no CDN).
Text from the bundle is HTML-escaped; secrets are already redacted in a Result.
"""

from __future__ import annotations

import html
import itertools
import re
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from ._errors import ConfigError

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}.meta td{text-align:left}
.chart{margin:1rem 0;overflow-x:auto}.note{color:#666;font-size:.85rem}
"""


# ids Vega gives clip paths and gradients (clip1, gradient_0, ...), and the references to them
_SVG_ID = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def _svg(chart: Any) -> str:
    """The chart as inline SVG, its ids made unique on the page: Vega numbers clip paths
    ``clip1``, ``clip2``... in every SVG, so a later chart would take an earlier one's clip
    and hide rows (vega/vega#3987)."""
    import vl_convert as vlc

    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]  # "v6.4.1" -> "6.4"
    svg = vlc.vegalite_to_svg(chart.to_dict(), vl_version=version)
    svg = svg[svg.index("<svg") :] if "<svg" in svg else svg
    prefix = f"kit{next(_SVG_COUNT)}-"
    return _SVG_ID.sub(lambda m: m.group(1) + prefix + m.group(2), svg)


_SVG_COUNT = itertools.count(1)


def _charts(result: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    t = result.trials
    if not len(t):
        return out
    from . import charts as kc

    out.append(("Outcomes per cell", _svg(kc.outcome_heatmap(result))))
    labels = t["scenario"] + " | " + t["network"] + " | " + t["policy"]
    for col, title in (("first_chunk_s", "Time to first chunk (s)"), ("duration_s", "End-to-end (s)")):
        d = pd.DataFrame({"cell": labels, "value": t[col]}).dropna()
        if not len(d):
            continue
        chart = (
            alt.Chart(d)
            .transform_window(ecdf="cume_dist()", sort=[{"field": "value"}], groupby=["cell"])
            .mark_line(interpolate="step-after")
            .encode(
                x=alt.X("value:Q", title=title),
                y=alt.Y("ecdf:Q", title="share of trials", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("cell:N", title="scenario | network | policy", legend=alt.Legend(labelLimit=400)),
            )
            .properties(width=700, height=260, title=f"{title}: distribution per cell")
        )
        out.append((title, _svg(chart)))
    return out


def _table(df: pd.DataFrame, floats: str = "{:.4g}") -> str:
    return df.to_html(index=False, escape=True, border=0, float_format=lambda v: floats.format(v), na_rep="")


def render_report(result: Any, title: str | None = None) -> str:
    """The report as one HTML string (see the module docstring)."""
    meta = result.meta
    cfg = result.config or {}
    about = meta.get("bundle", {})
    name = title or cfg.get("name") or meta.get("har_file") or "kit experiment"
    rows = {
        "trials": f"{len(result.trials):,} of {meta.get('trials_planned', len(result.trials)):,}"
        + ("" if result.complete else " (incomplete run)"),
        "cells": f"{result.trials['cell'].nunique() if len(result.trials) else 0}",
        "seed": cfg.get("seed"),
        "concurrency": (
            f"{meta.get('concurrency')} ({meta['concurrency_mode']})"
            if meta.get("concurrency_mode")
            else meta.get("concurrency")
        ),
        "fidelity budget": _budget_line(result),
        "wall time": f"{meta['wall_s']:.1f} s" if isinstance(meta.get("wall_s"), int | float) else None,
        "started (UTC)": meta.get("started_utc"),
        "kit": about.get("kit_version"),
        "git commit": about.get("git_commit"),
        "python / platform": " / ".join(str(x) for x in (about.get("python"), about.get("platform")) if x) or None,
        "clock": about.get("clock_source"),
    }
    meta_html = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items() if v is not None
    )
    outcomes = result.outcomes().reset_index() if len(result.trials) else pd.DataFrame()
    fid = result.fidelity() if hasattr(result, "fidelity") else pd.DataFrame()
    metrics = result.metrics()
    wide = metrics.pivot_table(
        index=["cell", "scenario", "network", "policy", "trials", "ok_rate"], columns="metric", values="p50", sort=False
    ).reset_index()
    wide.columns = [
        c if c in ("cell", "scenario", "network", "policy", "trials", "ok_rate") else f"{c} p50" for c in wide.columns
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(str(name))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(str(name))}</h1><table class='meta'>{meta_html}</table>",
        "<h2>Outcomes</h2>",
        _table(outcomes) if len(outcomes) else "<p>No trials.</p>",
        "<h2>Fidelity: the kit's own distortion</h2>",
        "<p class='note'>Per cell: how late the server wrote, a proxy forwarded and the client's loop ran while "
        "trials were in flight (p99, ms), and how many trials went over the budget. Those trials are left out "
        "of the metrics below.</p>",
        _table(fid) if len(fid) else "<p>No fidelity figures in this result.</p>",
        "<h2>Charts</h2>",
    ]
    for ctitle, svg in _charts(result):
        parts.append(f"<div class='chart' title='{html.escape(ctitle)}'>{svg}</div>")
    parts += [
        "<h2>Metrics per cell (p50)</h2>",
        _table(wide),
        "<h2>Metrics per cell (all percentiles)</h2>",
        "<p class='note'>Definitions: "
        + "; ".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in _definitions().items())
        + "</p>",
        _table(metrics),
        "<p class='note'>Made by kit; charts are inline SVG, so this file needs no network.</p></body></html>",
    ]
    return "\n".join(parts)


def _budget_line(result: Any) -> str | None:
    """``2 ms: 37 of 400 trials over it`` (None for a result without fidelity figures)."""
    t = result.trials
    if "within_budget" not in t.columns:
        return None
    budget = result.meta.get("budget_s")
    over = int((~t["within_budget"].astype(bool)).sum())
    head = f"{budget * 1e3:g} ms: " if isinstance(budget, int | float) else ""
    return f"{head}{over:,} of {len(t):,} trials over it" + (" (left out of the metrics)" if over else "")


def _definitions() -> dict[str, str]:
    from .tables import METRICS, STREAM_METRICS

    return {k: METRICS[k] for k in STREAM_METRICS}


def write_report(result: Any, path: str | Path, *, overwrite: bool = True, title: str | None = None) -> Path:
    """Write :func:`render_report` to ``path`` (refuses an existing file unless ``overwrite``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError("path", str(path), "exists already; pass overwrite=True to replace it")
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError("path", str(path), "expected a file name ending in .html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result, title), encoding="utf-8")
    return path
