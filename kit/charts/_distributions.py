"""Distributions: gaps between chunks, latency ECDFs per cell."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from .._errors import ConfigError
from ._common import (
    WIDTH,
    _cells,
    _empty,
    _title,
    _trials_of,
    _x_zoom,
    color_scale,
)
from ._tables import Tables, ecdf_points, tables

# ------------------------------------------------------------------------ gaps


def _group_of(t: Tables, df: pd.DataFrame, by: str | None) -> tuple[pd.Series, str]:
    cells = _cells(t)
    if by is None:
        by = "cell" if cells and len(set(cells.values())) > 1 else "trial_id"
    if by == "cell":
        return df["trial_id"].astype(str).map(cells).fillna(df["trial_id"].astype(str)), "cell"
    if by in df.columns:
        return df[by].astype(str), "trace" if by == "trial_id" else by
    raise ConfigError("by", by, f"expected 'cell', 'trial_id' or a column of the table: {', '.join(df.columns)}")


def gaps(
    data: Any,
    *,
    kind: str = "hist",
    log: bool = False,
    bins: int = 40,
    by: str | None = None,
    width: int = WIDTH,
) -> alt.Chart:
    """Distribution of the gaps between consecutive chunks: ``kind="hist"`` or ``"ecdf"``.

    ``log=True`` uses log-spaced bins and a log time axis (zero gaps are left out and
    counted in the subtitle). ``by``: ``"cell"`` / ``"trial_id"`` / a column; by default
    cells when the input has several, else traces.

    Large inputs are **aggregated in pandas**: the histogram is computed with numpy
    (one row per bin and group), the ECDF is sampled at up to 400 quantiles per group.
    """
    if kind not in ("hist", "ecdf"):
        raise ConfigError("kind", kind, "expected 'hist' or 'ecdf'")
    title = "Gaps between consecutive chunks" + (" (ECDF)" if kind == "ecdf" else "")
    t = tables(data, "chunks")
    ch = t.chunks
    if len(ch) and "gap" not in ch.columns and "t" in ch.columns:
        ch = ch.assign(gap=ch.groupby(["trial_id", "attempt"], sort=False)["t"].diff())
    if not len(ch) or "gap" not in ch.columns or ch["gap"].notna().sum() == 0:
        return _empty(title, "nothing to draw: fewer than two chunks in every attempt, so no gaps")
    ch = ch[ch["gap"].notna()]
    group, gname = _group_of(t, ch, by)
    values = ch["gap"].to_numpy(dtype="float64")
    notes = []
    if log:
        zero = values <= 0
        if zero.any():
            notes.append(f"{int(zero.sum()):,} zero gaps left out of the log scale")
        values, group = values[~zero], group[~zero]
        if not len(values):
            return _empty(title, "nothing to draw: no positive gaps for a log scale")
    groups = list(pd.unique(group))
    garr = group.to_numpy()
    if kind == "hist":
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            hi = lo + (abs(lo) * 0.01 or 1e-3)
        edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
        rows = []
        for g in groups:
            counts, _ = np.histogram(values[garr == g], bins=edges)
            rows.append(pd.DataFrame({gname: g, "lo": edges[:-1], "hi": edges[1:], "count": counts}))
        hist = pd.concat(rows, ignore_index=True)
        hist = hist[hist["count"] > 0]
        scale = alt.Scale(type="log") if log else alt.Scale()
        chart = (
            alt.Chart(hist)
            .mark_bar(opacity=0.6, binSpacing=0)
            .encode(
                x=alt.X("lo:Q", title="gap between consecutive chunks (s)", scale=scale),
                x2="hi:Q",
                y=alt.Y("count:Q", title="chunks", stack=None),
                color=alt.Color(f"{gname}:N", title=gname, scale=color_scale(groups)),
                tooltip=[
                    gname,
                    alt.Tooltip("lo:Q", title="from (s)", format=".4g"),
                    alt.Tooltip("hi:Q", title="to (s)", format=".4g"),
                    alt.Tooltip("count:Q", title="chunks", format=","),
                ],
            )
        )
    else:
        rows = []
        for g in groups:
            v = values[garr == g]
            rows.append(ecdf_points(v, len(v)).assign(**{gname: g}))
        ec = pd.concat(rows, ignore_index=True)
        chart = (
            alt.Chart(ec)
            .mark_line(interpolate="step-after")
            .encode(
                x=alt.X(
                    "value:Q",
                    title="gap between consecutive chunks (s)",
                    scale=alt.Scale(type="log") if log else alt.Scale(),
                ),
                y=alt.Y("share:Q", title="share of gaps ≤ x", axis=alt.Axis(format="%")),
                color=alt.Color(f"{gname}:N", title=gname, scale=color_scale(groups)),
                tooltip=[
                    gname,
                    alt.Tooltip("value:Q", title="gap (s)", format=".4g"),
                    alt.Tooltip("share:Q", title="share ≤", format=".1%"),
                ],
            )
        )
    sub = f"{len(values):,} gaps" + (f"; {'; '.join(notes)}" if notes else "")
    return chart.add_params(_x_zoom()).properties(width=width, height=240, title=_title(title, sub))


# ------------------------------------------------------------------------ ECDF

_METRIC_TITLES = {
    "ttfb_s": "time to first byte (response headers)",
    "first_chunk_s": "time to first chunk (first body byte)",
    "first_event_s": "time to first event",
    "duration_s": "end-to-end latency (call duration)",
}


def latency_ecdf(
    data: Any,
    *,
    metric: str = "duration_s",
    by: str | None = None,
    width: int = WIDTH,
    within_budget: bool = True,
) -> alt.Chart:
    """ECDF of a per-call latency per cell, from the trials table (one value per call).

    ``metric``: ``duration_s`` by default, the end-to-end latency (call start to its end,
    retries and waits included; vLLM's E2EL, ``e2e_s`` in ``Result.metrics()``), or
    ``ttfb_s``, ``first_chunk_s``, ``first_event_s`` (:func:`ttfb_ecdf` and
    :func:`first_chunk_ecdf` are those two), or any numeric column of the trials table.
    A failed call has a duration too, so that curve reaches 100%.

    ``within_budget`` (default): calls the kit itself distorted beyond its fidelity
    budget (``within_budget`` False in an experiment's trials) are left out, and the
    subtitle says how many; ``False`` draws them too.

    The y axis is the share of *all* calls of the group that had the value by time x,
    so calls that never got a first chunk keep the curve below 100%: its plateau is the
    group's success share. Large inputs are **aggregated**: at most 400 quantile steps
    per group.
    """
    title = f"ECDF: {_METRIC_TITLES.get(metric, metric)}"
    t = tables(data, "trials")
    tr = _trials_of(t)
    if not len(tr):
        return _empty(title, "nothing to draw: no trials")
    if metric not in tr.columns:
        raise ConfigError("metric", metric, f"expected a column of the trials table: {', '.join(map(str, tr.columns))}")
    if by is None:
        by = "cell" if "cell" in tr.columns else "trial_id"
    if by not in tr.columns:
        raise ConfigError("by", by, f"expected a column of the trials table: {', '.join(map(str, tr.columns))}")
    title += f" per {'trace' if by == 'trial_id' else by}"
    flagged = 0
    if within_budget and "within_budget" in tr.columns:
        keep = tr["within_budget"].astype(bool)
        flagged = int((~keep).sum())
        tr = tr[keep]
    rows, missing = [], 0
    for g, sub in tr.groupby(by, sort=False):
        v = pd.to_numeric(sub[metric], errors="coerce").to_numpy(dtype="float64")
        missing += int(np.isnan(v).sum())
        rows.append(ecdf_points(v, len(v)).assign(group=str(g)))
    ec = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if not len(ec):
        if flagged:
            return _empty(
                title, f"all {flagged:,} calls were over the kit's fidelity budget (within_budget=False draws them)"
            )
        return _empty(title, f"no call has a {metric} value (none got that far)")
    sub_title = f"{len(tr):,} calls" + (f"; {missing:,} never got there (curves stay below 100%)" if missing else "")
    if flagged:
        sub_title += f"; {flagged:,} over the kit's fidelity budget left out"
    return (
        alt.Chart(ec)
        .mark_line(interpolate="step-after", point=len(ec) < 60)
        .encode(
            x=alt.X("value:Q", title=f"{_METRIC_TITLES.get(metric, metric)} (s)"),
            y=alt.Y("share:Q", title="share of calls ≤ x", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("group:N", title="trace" if by == "trial_id" else by, scale=color_scale(ec["group"])),
            tooltip=[
                alt.Tooltip("group:N", title=by),
                alt.Tooltip("value:Q", title=f"{metric}", format=".4f"),
                alt.Tooltip("share:Q", title="share ≤", format=".1%"),
            ],
        )
        .add_params(_x_zoom())
        .properties(width=width, height=240, title=_title(title, sub_title))
    )


def ttfb_ecdf(data: Any, *, by: str | None = None, width: int = WIDTH) -> alt.Chart:
    """:func:`latency_ecdf` of ``ttfb_s`` (call start to the response headers)."""
    return latency_ecdf(data, metric="ttfb_s", by=by, width=width)


def first_chunk_ecdf(data: Any, *, by: str | None = None, width: int = WIDTH) -> alt.Chart:
    """:func:`latency_ecdf` of ``first_chunk_s`` (call start to the first body byte)."""
    return latency_ecdf(data, metric="first_chunk_s", by=by, width=width)
