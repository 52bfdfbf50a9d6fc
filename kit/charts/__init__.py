"""Charts of chunk arrival: altair builders that read the trace tables, nothing else.

Every function takes a :class:`~kit.trace.Trace`, a list of Traces (one series per
trace, named by ``trace.label``), an experiment ``Result`` (its tidy tables with a
leading ``trial_id``) or a DataFrame (the table the chart reads first), and returns an
altair chart. Every chart has a title saying what it shows, axis titles with units,
tooltips, and x-zoom (drag / wheel) on time axes; double-click resets the zoom.

Large inputs never reach altair's 5,000-row limit: each chart *aggregates in pandas
first* (no vegafusion) and says how in its docstring, keeping every dataset under
:data:`MAX_ROWS` rows. Empty input gives an empty chart that says so, not an exception.

Inside an IPython kernel, importing this module enables altair's offline ``jupyter``
renderer (JupyterLab's built-in renderer handles Vega-Lite v5 only, and the fallback
loads Vega from a CDN), so charts render without internet.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from .._errors import ConfigError
from ._tables import FAULT_LOG_KINDS, LIMITS, Tables, ecdf_points, num, tables, thin_in_time

__all__ = [
    "CAUSE_COLORS",
    "MAX_ROWS",
    "attempts_gantt",
    "cumulative_bytes",
    "enable_offline",
    "first_chunk_ecdf",
    "gaps",
    "latency_ecdf",
    "outcome_heatmap",
    "save",
    "timeline",
    "ttfb_ecdf",
    "vantage_points",
]

MAX_ROWS = 4000
"""Rows per chart dataset at most (altair refuses more than 5,000 inline rows)."""

WIDTH = 640
TIME_AXIS = "time since the call started (s)"

CAUSE_COLORS: dict[str, str] = {
    "ok": "#2ca02c",
    "timeout.connect": "#ffbb78",
    "timeout.headers": "#ff9f40",
    "timeout.first_chunk": "#ff7f0e",
    "timeout.idle": "#d9640c",
    "timeout.total": "#a94f0a",
    "refused": "#8c564b",
    "reset": "#d62728",
    "closed": "#e377c2",
    "ended": "#9467bd",
    "http_status": "#7f7f7f",
    "error_event": "#bcbd22",
    "malformed": "#17becf",
    "cancelled": "#c7c7c7",
    "unknown": "#aaaaaa",
}
"""One colour per outcome cause, the same in every chart."""

_PHASE_COLORS = {
    "connect": "#8c564b",
    "send": "#e377c2",
    "headers": "#7f7f7f",
    "first_chunk": "#ff7f0e",
    "stream": "#d62728",
    "done": "#2ca02c",
    "unknown": "#aaaaaa",
}


# --------------------------------------------------------------------- helpers


def _title(text: str, subtitle: str | list[str] | None = None) -> alt.TitleParams:
    if subtitle:
        return alt.TitleParams(text, subtitle=subtitle, anchor="start")
    return alt.TitleParams(text, anchor="start")


def _empty(title: str, message: str) -> alt.Chart:
    """A chart with no data marks, only ``message``: what empty input draws."""
    return (
        alt.Chart(pd.DataFrame({"message": [message]}), title=_title(title))
        .mark_text(fontSize=13, color="#666")
        .encode(text=alt.Text("message:N"))
        .properties(width=WIDTH, height=60)
    )


def _x_zoom() -> alt.Parameter:
    """Zoom and pan on the x (time) axis only; double-click resets."""
    return alt.selection_interval(bind="scales", encodings=["x"])


def _cause_scale(values: Any) -> alt.Scale:
    present = set(map(str, values))
    domain = [c for c in CAUSE_COLORS if c in present] + sorted(present - set(CAUSE_COLORS))
    return alt.Scale(domain=domain, range=[CAUSE_COLORS.get(c, "#aaaaaa") for c in domain])


def _outcome_scale(kind: str, values: Any) -> alt.Scale:
    present = [str(v) for v in pd.unique(pd.Series(list(values), dtype="object"))]
    if kind == "cause":
        return _cause_scale(present)
    if kind == "phase":
        domain = [p for p in _PHASE_COLORS if p in present] + sorted(set(present) - set(_PHASE_COLORS))
        return alt.Scale(domain=domain, range=[_PHASE_COLORS.get(p, "#aaaaaa") for p in domain])
    if kind == "ok":
        return alt.Scale(domain=["True", "False"], range=[CAUSE_COLORS["ok"], CAUSE_COLORS["reset"]])
    # "outcome" = phase/cause: colour by the cause part
    domain = sorted(present)
    return alt.Scale(domain=domain, range=[CAUSE_COLORS.get(v.split("/")[-1], "#aaaaaa") for v in domain])


def _col(df: pd.DataFrame, name: str, default: Any = np.nan) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index, dtype="object")


def _attempt_rows(att: pd.DataFrame) -> pd.Series:
    """A readable row name per attempt: ``attempt 2`` for one trial, ``label #2`` for many."""
    n = att["attempt"].astype("int64").astype(str)
    if att["trial_id"].nunique() <= 1:
        return "attempt " + n
    return att["trial_id"].astype(str) + " #" + n


def _cells(t: Tables) -> dict[str, str]:
    """trial_id -> cell label, when the input knows cells (an experiment Result)."""
    tr = t.trials
    if "cell" in tr.columns and "trial_id" in tr.columns and len(tr):
        return dict(zip(tr["trial_id"].astype(str), tr["cell"].astype(str), strict=False))
    return {}


def _unit(col: str) -> str:
    name = col.split(".")[-1]
    if "bandwidth" in name or name.endswith("rate"):
        return f"{col} (bytes/s)"
    if name in (*LIMITS, "latency", "jitter", "gap", "stall", "duration", "wait") or name.endswith(
        ("_delay", "_s", "delay", "timeout")
    ):
        return f"{col} (s)"
    return col


def _label(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _ordered_labels(values: pd.Series) -> list[str]:
    """Distinct values as labels, in numeric order where they are numbers ("none" first)."""
    uniq = list(pd.unique(values))

    def key(v: Any) -> tuple[int, float, str]:
        f = num(v)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return (0, 0.0, "")
        return (1, f, "") if not np.isnan(f) else (2, 0.0, str(v))

    return [_label(v) for v in sorted(uniq, key=key)]


# -------------------------------------------------------------------- timeline


def timeline(
    data: Any,
    *,
    max_attempts: int = 40,
    deadlines: bool = True,
    width: int = WIDTH,
) -> alt.LayerChart | alt.Chart:
    """One row per attempt: a tick per chunk at its arrival, milestones, deadlines, faults.

    The bar spans the attempt (start to end) coloured by its outcome cause; black ticks
    are body chunks; points mark connected / headers / first chunk; red ticks are the
    policy's deadlines where they would fire (connect, headers, first_chunk or idle
    while waiting for the first byte, idle after the last chunk, total), drawn when they
    fall within twice the longest attempt; purple triangles are faults the server
    injected (stall, close, reset, truncate, error event).

    Large inputs: the first ``max_attempts`` attempts are drawn (the subtitle says how
    many were left out), and chunk ticks are **aggregated per time bin**: above
    :data:`MAX_ROWS` chunks each attempt's time span is cut into equal bins and one tick
    (the bin's first chunk, with the count merged) is kept per occupied bin.
    """
    title = "Timeline: when each chunk arrived, per attempt"
    t = tables(data, "chunks")
    att, ch = t.attempts, t.chunks
    if not len(att) and not len(ch):
        return _empty(title, "nothing to draw: the input has no attempts and no chunks")
    if not len(att):  # a bare chunks table: the attempts are the chunks' extent
        att = (
            ch.groupby(["trial_id", "attempt"], sort=False)
            .agg(start=("t", "min"), end=("t", "max"), chunks_received=("t", "size"))
            .reset_index()
            .assign(first_chunk=lambda d: d["start"], cause="unknown", phase="unknown")
        )
    notes: list[str] = []
    att = att.reset_index(drop=True)
    if len(att) > max_attempts:
        notes.append(f"showing the first {max_attempts} of {len(att)} attempts")
        att = att.iloc[:max_attempts]
    att = att.copy()
    att["row"] = _attempt_rows(att)
    for c in ("start", "end", "connected", "headers", "first_chunk", "wait_before"):
        att[c] = pd.to_numeric(_col(att, c), errors="coerce")
    for c in ("phase", "cause", "message"):
        att[c] = _col(att, c, "").fillna("").astype(str)
    att.loc[att["cause"] == "", "cause"] = "unknown"
    att["end"] = att["end"].fillna(att[["start", "first_chunk"]].max(axis=1))
    rows = list(att["row"])
    key = dict(zip(zip(att["trial_id"].astype(str), att["attempt"].astype("int64"), strict=True), rows, strict=True))

    # Chunk ticks: only the drawn attempts, thinned per time bin above MAX_ROWS.
    if len(ch):
        ch = ch[["trial_id", "attempt", "t", *[c for c in ("seq", "size") if c in ch.columns]]]
        if len(key) < len(ch[["trial_id", "attempt"]].drop_duplicates()):
            idx = pd.MultiIndex.from_frame(ch[["trial_id", "attempt"]].astype({"trial_id": str, "attempt": "int64"}))
            ch = ch[idx.isin(list(key))]
        last_chunk = ch.groupby(["trial_id", "attempt"], sort=False)["t"].max()
        agg: dict[str, Any] = {"t": "min", "t_last": ("t", "max")}
        if "size" in ch.columns:
            agg["bytes"] = ("size", "sum")
        if "seq" in ch.columns:
            agg["seq"] = "min"
        ticks = thin_in_time(ch, ["trial_id", "attempt"], "t", MAX_ROWS, agg)
        if ticks["count"].max() > 1:
            notes.append(f"{len(ch):,} chunks drawn as {len(ticks):,} ticks (one per time bin)")
        ticks["row"] = [key.get((str(a), int(b))) for a, b in zip(ticks["trial_id"], ticks["attempt"], strict=True)]
        ticks = ticks.drop(columns=["trial_id"])
    else:
        ticks = pd.DataFrame({"row": [], "t": [], "t_last": [], "count": []})
        last_chunk = pd.Series(dtype="float64")

    # Milestones and deadlines, long form.
    marks, lines = [], []
    for _, r in att.iterrows():
        for name in ("connected", "headers", "first_chunk"):
            if not np.isnan(r[name]):
                marks.append({"row": r["row"], "milestone": name.replace("_", " "), "t": r[name]})
        if not deadlines:
            continue
        lim = {k: num(r.get(f"policy.{k}")) for k in LIMITS}
        start, end = r["start"], r["end"]
        connected = r["connected"] if not np.isnan(r["connected"]) else start
        first_name = "first_chunk" if not np.isnan(lim["first_chunk"]) else "idle"
        lc = last_chunk.get((r["trial_id"], r["attempt"]), np.nan) if len(last_chunk) else np.nan
        # (limit, its seconds, when it would fire, when its phase ended: NaN if still waiting at the end)
        cand = [
            ("connect", lim["connect"], start + lim["connect"], r["connected"]),
            ("headers", lim["headers"], connected + lim["headers"], r["headers"]),
            (first_name, lim[first_name], r["headers"] + lim[first_name], r["first_chunk"]),
            ("idle", lim["idle"], lc + lim["idle"], np.nan),
            ("total", lim["total"], lim["total"], np.nan),
        ]
        for name, limit, at, phase_end in cand:
            if np.isnan(at):
                continue
            if not np.isnan(phase_end):
                status = f"met: the phase ended {at - phase_end:.3f} s before it"
            elif r["cause"] == f"timeout.{name}":
                status = "fired"
            else:
                status = f"not reached: the attempt ended at {end:.3f} s"
            lines.append(
                {
                    "row": r["row"],
                    "limit": name,
                    "seconds": limit,
                    "t": at,
                    "status": status,
                    "fired": status == "fired",
                }
            )
    horizon = 2 * float(np.nanmax(att["end"].to_numpy(dtype="float64"))) + 0.1
    lines = [d for d in lines if d["t"] <= horizon]

    faults = t.server
    if len(faults) and "kind" in faults:
        faults = faults[faults["kind"].isin(FAULT_LOG_KINDS)]
        faults = faults.assign(
            row=[key.get((str(a), int(b))) for a, b in zip(faults["trial_id"], faults["attempt"], strict=True)]
        ).dropna(subset=["row"])[["row", "kind", "t"]]
    else:
        faults = pd.DataFrame({"row": [], "kind": [], "t": []})

    x = alt.X("start:Q", title=TIME_AXIS)
    y = alt.Y("row:N", title=None, sort=rows)
    span = (
        alt.Chart(att[["row", "start", "end", "phase", "cause", "message", *_present(att, _ATT_TIPS)]])
        .mark_bar(height=14, opacity=0.35, cornerRadius=2)
        .encode(
            x=x,
            x2="end:Q",
            y=y,
            color=alt.Color("cause:N", title="outcome", scale=_cause_scale(att["cause"])),
            tooltip=_tips(["row", "phase", "cause", "message", "start", "end", *_present(att, _ATT_TIPS)]),
        )
        .add_params(_x_zoom())
    )
    layers = [span]
    if len(ticks):
        tip = ["row", alt.Tooltip("t:Q", title="arrived (s)", format=".4f"), "count:Q"]
        if "bytes" in ticks:
            tip.append(alt.Tooltip("bytes:Q", title="bytes"))
        if "seq" in ticks:
            tip.append(alt.Tooltip("seq:Q", title="chunk #"))
        layers.append(
            alt.Chart(ticks)
            .mark_tick(color="#222", thickness=1.2, size=16)
            .encode(x=alt.X("t:Q", title=TIME_AXIS), y=y, tooltip=tip)
        )
    if marks:
        layers.append(
            alt.Chart(pd.DataFrame(marks))
            .mark_point(filled=True, size=55, color="#444")
            .encode(
                x="t:Q",
                y=y,
                shape=alt.Shape(
                    "milestone:N",
                    title="milestone",
                    scale=alt.Scale(
                        domain=["connected", "headers", "first chunk"], range=["circle", "square", "diamond"]
                    ),
                ),
                tooltip=["row", "milestone", alt.Tooltip("t:Q", title="at (s)", format=".4f")],
            )
        )
    if lines:
        dl = pd.DataFrame(lines)
        base = alt.Chart(dl).encode(
            x="t:Q",
            y=y,
            tooltip=[
                "row",
                alt.Tooltip("limit:N", title="timeout"),
                alt.Tooltip("seconds:Q", title="limit (s)", format=".3g"),
                alt.Tooltip("t:Q", title="would fire at (s)", format=".4f"),
                alt.Tooltip("status:N", title="deadline"),
            ],
            opacity=alt.condition("datum.fired", alt.value(1.0), alt.value(0.35)),
        )
        layers.append(base.mark_tick(color="#d62728", thickness=2, size=24))
        layers.append(base.mark_text(color="#d62728", align="left", dx=3, dy=-9, fontSize=9).encode(text="limit:N"))
    if len(faults):
        layers.append(
            alt.Chart(faults)
            .mark_point(shape="triangle-down", filled=True, size=110, color="#9467bd", yOffset=-10)
            .encode(
                x="t:Q",
                y=y,
                tooltip=["row", alt.Tooltip("kind:N", title="fault"), alt.Tooltip("t:Q", title="at (s)", format=".4f")],
            )
        )
    chart = alt.layer(*layers).properties(
        width=width, height=max(60, 34 * len(rows)), title=_title(title, "; ".join(notes) or None)
    )
    return chart


_ATT_TIPS = ["chunks_received", "bytes_received", "status", "framing"]


def _present(df: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in df.columns]


def _tips(cols: list[str]) -> list[Any]:
    fmt = {"start": ("start (s)", ".4f"), "end": ("end (s)", ".4f")}
    out: list[Any] = []
    for c in cols:
        if c in fmt:
            out.append(alt.Tooltip(f"{c}:Q", title=fmt[c][0], format=fmt[c][1]))
        else:
            out.append(c)
    return out


# ------------------------------------------------------------- cumulative bytes


def cumulative_bytes(
    data: Any,
    *,
    x: str = "t",
    color: str | None = None,
    max_series: int = 60,
    width: int = WIDTH,
) -> alt.LayerChart | alt.Chart:
    """Bytes received so far, one step line per attempt (traces, trials or cells overlaid).

    ``x="t"`` (seconds since the call started) or ``"t_attempt"`` (since the attempt
    started). ``color``: ``"trial_id"`` (the trace label), ``"cell"`` (experiments) or
    ``"attempt"``; by default cells when the input has several, else traces. Each line
    starts at 0 bytes at the attempt's start and runs to its end, marked with a dot, so an
    attempt that got nothing is a flat line at 0 ending in a dot where its connection ended.

    Large inputs: the first ``max_series`` attempts are drawn, and above :data:`MAX_ROWS`
    points each line is **downsampled per time bin**, keeping the bin's last point
    (the running total, so the step shape holds at the bin's resolution).
    """
    title = "Cumulative bytes received over time"
    if x not in ("t", "t_attempt"):
        raise ConfigError("x", x, "expected 't' (since the call started) or 't_attempt' (since the attempt started)")
    t = tables(data, "chunks")
    ch, att = t.chunks, t.attempts
    if not len(ch) and not len(att):
        return _empty(title, "nothing to draw: no chunks and no attempts")
    ch = ch.copy() if len(ch) else pd.DataFrame({"trial_id": [], "attempt": [], "t": [], "t_attempt": []})
    if len(ch) and "cum_bytes" not in ch.columns:
        ch["cum_bytes"] = ch.groupby(["trial_id", "attempt"], sort=False)["size"].cumsum()
    if x == "t_attempt" and "t_attempt" not in ch.columns:
        raise ConfigError("x", x, "this chunks table has no t_attempt column; use x='t'")
    ch = (
        ch[["trial_id", "attempt", x, "cum_bytes"]]
        if len(ch)
        else pd.DataFrame(columns=["trial_id", "attempt", x, "cum_bytes"])
    )
    series = (
        att[["trial_id", "attempt"]] if len(att) else ch[["trial_id", "attempt"]].drop_duplicates()
    ).drop_duplicates()
    notes = []
    if len(series) > max_series:
        notes.append(f"showing the first {max_series} of {len(series)} attempts")
        series = series.iloc[:max_series]
        idx = pd.MultiIndex.from_frame(ch[["trial_id", "attempt"]])
        ch = ch[idx.isin(pd.MultiIndex.from_frame(series))]
    pts = thin_in_time(ch, ["trial_id", "attempt"], x, MAX_ROWS - 2 * len(series), {x: "max", "cum_bytes": "max"})
    if len(ch) > MAX_ROWS:
        notes.append(f"{len(ch):,} chunks drawn as {len(pts):,} points (last per time bin)")
    pts = pts[["trial_id", "attempt", x, "cum_bytes"]]
    if len(att):  # 0 bytes at the attempt's start, the last total at its end
        a = att.merge(series, on=["trial_id", "attempt"])
        a_start = pd.to_numeric(a["start"], errors="coerce")
        a_end = pd.to_numeric(_col(a, "end"), errors="coerce").fillna(a_start)
        offset = a_start if x == "t_attempt" else 0.0
        last = pts.groupby(["trial_id", "attempt"])["cum_bytes"].max()
        ends = [last.get((tid, n), 0) for tid, n in zip(a["trial_id"], a["attempt"], strict=True)]
        pts = pd.concat(
            [
                pd.DataFrame({"trial_id": a["trial_id"], "attempt": a["attempt"], x: a_start - offset, "cum_bytes": 0}),
                pts,
                pd.DataFrame(
                    {"trial_id": a["trial_id"], "attempt": a["attempt"], x: a_end - offset, "cum_bytes": ends}
                ),
            ],
            ignore_index=True,
        ).sort_values(["trial_id", "attempt", x, "cum_bytes"], kind="stable")
    cells = _cells(t)
    n_trials = pts["trial_id"].nunique()
    if color is None:
        color = "cell" if cells and len(set(cells.values())) > 1 and len(set(cells.values())) < n_trials else "trial_id"
        if n_trials <= 1:
            color = "attempt"
    pts["series"] = pts["trial_id"].astype(str) + " #" + pts["attempt"].astype("int64").astype(str)
    if color == "cell":
        pts["cell"] = pts["trial_id"].astype(str).map(cells).fillna("?")
    elif color == "attempt":
        pts["attempt"] = "attempt " + pts["attempt"].astype("int64").astype(str)
    elif color != "trial_id":
        raise ConfigError("color", color, "expected 'trial_id', 'cell' or 'attempt'")
    legend = {"trial_id": "trace", "cell": "cell", "attempt": "attempt"}[color]
    base = alt.Chart(pts, title=_title(title, "; ".join(notes) or None)).encode(
        x=alt.X(f"{x}:Q", title=TIME_AXIS if x == "t" else "time since the attempt started (s)"),
        y=alt.Y("cum_bytes:Q", title="bytes received (cumulative)"),
        color=alt.Color(f"{color}:N", title=legend),
        detail="series:N",
        tooltip=[
            alt.Tooltip("series:N", title="attempt"),
            alt.Tooltip(f"{x}:Q", title="time (s)", format=".4f"),
            alt.Tooltip("cum_bytes:Q", title="bytes so far", format=","),
        ],
    )
    lines = base.mark_line(interpolate="step-after", strokeWidth=1.8).add_params(_x_zoom())
    # a dot where each attempt ended, so an attempt that got nothing still shows (at 0 bytes)
    ends = base.transform_window(
        rank="rank()", groupby=["series"], sort=[alt.SortField(x, order="descending")]
    ).transform_filter(alt.datum.rank == 1)
    return alt.layer(lines, ends.mark_point(filled=True, size=45, opacity=0.9)).properties(width=width, height=260)


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
                color=alt.Color(f"{gname}:N", title=gname),
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
                color=alt.Color(f"{gname}:N", title=gname),
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
    "duration_s": "call duration",
}


def _trials_of(t: Tables) -> pd.DataFrame:
    if len(t.trials):
        return t.trials
    return pd.DataFrame()


def latency_ecdf(
    data: Any,
    *,
    metric: str = "first_chunk_s",
    by: str | None = None,
    width: int = WIDTH,
) -> alt.Chart:
    """ECDF of a per-call latency (``ttfb_s``, ``first_chunk_s``, ``first_event_s``,
    ``duration_s``) per cell, from the trials table (one value per call).

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
    rows, missing = [], 0
    for g, sub in tr.groupby(by, sort=False):
        v = pd.to_numeric(sub[metric], errors="coerce").to_numpy(dtype="float64")
        missing += int(np.isnan(v).sum())
        rows.append(ecdf_points(v, len(v)).assign(group=str(g)))
    ec = pd.concat(rows, ignore_index=True)
    if not len(ec):
        return _empty(title, f"no call has a {metric} value (none got that far)")
    sub_title = f"{len(tr):,} calls" + (f"; {missing:,} never got there (curves stay below 100%)" if missing else "")
    return (
        alt.Chart(ec)
        .mark_line(interpolate="step-after", point=len(ec) < 60)
        .encode(
            x=alt.X("value:Q", title=f"{_METRIC_TITLES.get(metric, metric)} (s)"),
            y=alt.Y("share:Q", title="share of calls ≤ x", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("group:N", title="trace" if by == "trial_id" else by),
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


# --------------------------------------------------------------------- heatmap

_PARAM_PREFIXES = ("scenario.", "network.", "policy.")


def grid_axes(trials: pd.DataFrame) -> list[str]:
    """The flattened parameter columns that vary across the trials (the grid's axes)."""
    out = []
    for c in trials.columns:
        if str(c).startswith(_PARAM_PREFIXES) and trials[c].astype("object").map(_label).nunique() > 1:
            out.append(str(c))
    return out


def outcome_heatmap(
    data: Any,
    x: str | None = None,
    y: str | None = None,
    *,
    outcome: str = "cause",
    width: int | None = None,
) -> alt.LayerChart | alt.Chart:
    """Share of each outcome per grid cell, over two parameter axes (e.g. ``policy.first_chunk`` x
    ``network.latency``).

    Each rectangle is coloured by the cell's most common ``outcome`` (``cause``,
    ``phase``, ``ok`` or ``outcome`` = phase/cause), its opacity is that outcome's share,
    the text gives the share, and the tooltip lists every outcome's share. ``x`` and
    ``y`` default to the first two parameter columns that vary (``y`` may be None for a
    single row). Clicking a cell selects it (selection parameter ``cell``, fields ``x``
    and ``y`` holding the labels shown on the axes), which the sweep panel uses.

    Large inputs are **aggregated** to one row per cell (and one per outcome for the
    tooltip) before charting.
    """
    title = "Outcomes per grid cell"
    if outcome not in ("cause", "phase", "ok", "outcome"):
        raise ConfigError("outcome", outcome, "expected 'cause', 'phase', 'ok' or 'outcome'")
    t = tables(data, "trials")
    tr = _trials_of(t)
    if not len(tr):
        return _empty(title, "nothing to draw: no trials")
    tr = tr.copy()
    if outcome == "outcome":
        tr["outcome"] = tr["phase"].astype(str) + "/" + tr["cause"].astype(str)
    if outcome not in tr.columns:
        raise ConfigError("outcome", outcome, f"the trials table has no {outcome!r} column")
    varying = grid_axes(tr)
    if x is None:
        x = varying[0] if varying else ("cell" if "cell" in tr.columns else "trial_id")
        if y is None and len(varying) > 1:
            y = varying[1]
    for name, col in (("x", x), ("y", y)):
        if col is not None and col not in tr.columns:
            raise ConfigError(name, col, f"expected a column of the trials table: {', '.join(map(str, tr.columns))}")
    tr["x"] = tr[x].astype("object").map(_label)
    tr["y"] = tr[y].astype("object").map(_label) if y is not None else "all"
    tr["_o"] = tr[outcome].astype(str)
    counts = tr.groupby(["x", "y", "_o"], sort=False).size().rename("n").reset_index()
    totals = counts.groupby(["x", "y"], sort=False)["n"].transform("sum")
    counts["share"] = counts["n"] / totals
    counts = counts.sort_values(["x", "y", "share"], ascending=[True, True, False], kind="stable")

    def describe(g: pd.DataFrame) -> str:
        return " · ".join(f"{o} {s:.0%}" for o, s in zip(g["_o"], g["share"], strict=True))

    cells = counts.groupby(["x", "y"], sort=False).agg(
        outcome=("_o", "first"), share=("share", "first"), n=("n", "sum")
    )
    cells["shares"] = counts.groupby(["x", "y"], sort=False)[["_o", "share"]].apply(describe)
    cells = cells.reset_index()
    cells["text"] = cells["share"].map(lambda s: f"{s:.0%}") + " " + cells["outcome"].str.replace("timeout.", "t/o ")
    x_sort = _ordered_labels(tr[x])
    y_sort = _ordered_labels(tr[y]) if y is not None else ["all"]
    pick = alt.selection_point(name="cell", fields=["x", "y"], on="click", clear="dblclick")
    base = alt.Chart(cells).encode(
        x=alt.X("x:O", title=_unit(x), sort=x_sort),
        y=alt.Y("y:O", title=_unit(y) if y else None, sort=list(reversed(y_sort))),
        tooltip=[
            alt.Tooltip("x:O", title=x),
            *([alt.Tooltip("y:O", title=y)] if y else []),
            alt.Tooltip("n:Q", title="trials"),
            alt.Tooltip("shares:N", title=f"share of each {outcome}"),
        ],
    )
    rect = (
        base.mark_rect(stroke="white", strokeWidth=1)
        .encode(
            color=alt.Color(
                "outcome:N", title=f"most common {outcome}", scale=_outcome_scale(outcome, cells["outcome"])
            ),
            opacity=alt.Opacity("share:Q", title="its share", scale=alt.Scale(domain=[0, 1], range=[0.3, 1])),
            strokeWidth=alt.condition(pick, alt.value(3), alt.value(1)),
        )
        .add_params(pick)
    )
    text = base.mark_text(fontSize=10, color="black").encode(text="text:N")
    w = width or max(160, min(900, 110 * len(x_sort)))
    return alt.layer(rect, text).properties(
        width=w,
        height=max(60, min(600, 40 * len(y_sort))),
        title=_title(title, f"{len(tr):,} trials; colour: most common {outcome}; opacity: its share; click a cell"),
    )


# ------------------------------------------------------------------------ gantt


def attempts_gantt(data: Any, *, max_trials: int = 40, width: int = WIDTH) -> alt.LayerChart | alt.Chart:
    """Attempts of each call and the backoff waits between them (for retry policies).

    One row per call (trial); a bar per attempt from its start to its end coloured by
    its outcome cause, and a grey bar for the wait before it (``wait_before``, the
    retry backoff). Large inputs: the first ``max_trials`` calls are drawn (attempts
    are already one row each, so nothing else needs aggregating).
    """
    title = "Attempts per call, with backoff waits"
    t = tables(data, "attempts")
    att = t.attempts
    if not len(att):
        return _empty(title, "nothing to draw: no attempts")
    att = att.copy()
    order = list(pd.unique(att["trial_id"].astype(str)))
    notes = []
    if len(order) > max_trials:
        notes.append(f"showing the first {max_trials} of {len(order)} calls")
        order = order[:max_trials]
        att = att[att["trial_id"].astype(str).isin(order)]
    att["trial_id"] = att["trial_id"].astype(str)
    att["start"] = pd.to_numeric(att["start"], errors="coerce")
    att["end"] = pd.to_numeric(_col(att, "end"), errors="coerce").fillna(att["start"])
    att["wait_before"] = pd.to_numeric(_col(att, "wait_before", 0.0), errors="coerce").fillna(0.0)
    att["cause"] = _col(att, "cause", "unknown").fillna("unknown").astype(str)
    att["phase"] = _col(att, "phase", "").fillna("").astype(str)
    att["message"] = _col(att, "message", "").fillna("").astype(str)
    att["label"] = "#" + att["attempt"].astype("int64").astype(str)
    waits = att[att["wait_before"] > 0].assign(wait_start=lambda d: d["start"] - d["wait_before"])
    y = alt.Y("trial_id:N", title=None, sort=order)
    bars = (
        alt.Chart(att[["trial_id", "attempt", "label", "start", "end", "phase", "cause", "message"]])
        .mark_bar(height=16, cornerRadius=2)
        .encode(
            x=alt.X("start:Q", title=TIME_AXIS),
            x2="end:Q",
            y=y,
            color=alt.Color("cause:N", title="outcome", scale=_cause_scale(att["cause"])),
            tooltip=[
                alt.Tooltip("trial_id:N", title="call"),
                alt.Tooltip("attempt:Q", title="attempt"),
                "phase",
                "cause",
                "message",
                alt.Tooltip("start:Q", title="start (s)", format=".4f"),
                alt.Tooltip("end:Q", title="end (s)", format=".4f"),
            ],
        )
        .add_params(_x_zoom())
    )
    labels = (
        alt.Chart(att[["trial_id", "label", "start"]])
        .mark_text(align="left", dx=3, fontSize=9, color="black")
        .encode(x="start:Q", y=y, text="label:N")
    )
    layers = [bars, labels]
    if len(waits):
        layers.insert(
            0,
            alt.Chart(waits[["trial_id", "attempt", "wait_start", "start", "wait_before"]])
            .mark_bar(height=6, color="#bbbbbb")
            .encode(
                x="wait_start:Q",
                x2="start:Q",
                y=y,
                tooltip=[
                    alt.Tooltip("trial_id:N", title="call"),
                    alt.Tooltip("attempt:Q", title="before attempt"),
                    alt.Tooltip("wait_before:Q", title="backoff wait (s)", format=".3f"),
                ],
            ),
        )
    n_waits = len(waits)
    sub = [f"{len(att)} attempts in {len(order)} calls; {n_waits} backoff waits (grey)", *notes]
    return alt.layer(*layers).properties(width=width, height=max(60, 26 * len(order)), title=_title(title, sub))


# -------------------------------------------------------------- vantage points

_LAYERS = ["server sent", "proxy forwarded", "client received"]


def _proxy_rows(proxy: pd.DataFrame, t: Tables, trial: str, attempt: Any, window: tuple[float, float]) -> pd.DataFrame:
    """The proxy's forwards toward the client for one attempt, as (t, bytes).

    Reads :meth:`kit.NetworkProxy.forwards_df` (or a Result's ``proxy`` table): time
    from ``t`` (s since the call start) or ``t_sent_ns`` / ``t_ns`` against the trial's
    start; bytes from ``nbytes``; only ``downstream`` rows (server -> client); for a
    Result, only the trial's ``network``. Rows are matched to the attempt by its time
    window, so with concurrent trials through one proxy other trials' bytes can show.
    """
    p = proxy
    if "trial_id" in p.columns and (p["trial_id"].astype(str) == trial).any():
        p = p[p["trial_id"].astype(str) == trial]
    tr = t.trials
    row = tr[tr["trial_id"].astype(str) == trial] if len(tr) and "trial_id" in tr.columns else tr.iloc[0:0]
    if "network" in p.columns and "network" in row.columns and len(row):
        p = p[p["network"].astype(str) == str(row["network"].iloc[0])]
    if "direction" in p.columns:
        d = p["direction"].astype(str).str.lower()
        p = p[d.str.contains("down") | d.str.contains("client")]
    if "dropped" in p.columns:
        p = p[~p["dropped"].astype(bool)]
    if "attempt" in p.columns:  # joined by kit.vantage.forwards_for: exactly this attempt's bytes
        p = p[p["attempt"] == attempt]
        window = (-np.inf, np.inf)  # the proxy may stamp its last forward after the client's end
    start_ns = t.start_ns.get(trial)
    if start_ns is None and "start_ns" in row.columns and len(row):
        start_ns = int(row["start_ns"].iloc[0])
    tcol = next((c for c in ("t_sent_ns", "t_ns") if c in p.columns), None)
    if "t" in p.columns:
        tt = pd.to_numeric(p["t"], errors="coerce")
    elif tcol is not None and start_ns is not None:
        tt = (pd.to_numeric(p[tcol], errors="coerce") - start_ns) / 1e9
    else:
        return pd.DataFrame({"t": [], "bytes": []})
    bcol = next((c for c in ("nbytes", "bytes", "size") if c in p.columns), None)
    out = pd.DataFrame({"t": tt, "bytes": p[bcol] if bcol else 0}).dropna(subset=["t"])
    out = out[(out["t"] >= window[0] - 1e-9) & (out["t"] <= window[1] + 1e-9)]
    return out[out["bytes"] > 0]


def vantage_points(
    data: Any,
    proxy: pd.DataFrame | None = None,
    *,
    trial: str | None = None,
    attempt: int | None = None,
    width: int = WIDTH,
) -> alt.VConcatChart | alt.Chart:
    """One attempt seen three times: server-sent, proxy-forwarded, client-received.

    Top: a tick per write (server), forward (proxy) and read (client) on one clock.
    Bottom: each layer's share of the attempt's bytes over time (step lines), so the
    horizontal distance between lines is the delay each layer added. The subtitle gives
    each layer's first body byte. ``proxy`` is the proxy's forward log (or the Result's
    ``.proxy``); without one the chart shows two vantage points. ``trial`` / ``attempt``
    pick the attempt (default: the first trial's last attempt).

    Large inputs: each layer is **downsampled per time bin** to a third of
    :data:`MAX_ROWS` (the bin's first time, bytes summed).
    """
    title = "Three vantage points: when each byte was sent, forwarded and received"
    t = tables(data, "chunks")
    full_log = {"conn", "direction", "t_recv_ns", "t_sent_ns", "nbytes"}
    if hasattr(proxy, "forwards_df") or (isinstance(proxy, pd.DataFrame) and full_log <= set(proxy.columns)):
        from ..vantage import forwards_for  # a Trace: its own bytes only, on its proxy connection
        from ._tables import is_trace

        mine = forwards_for(data, proxy) if is_trace(data) else None
        if mine is None or not len(mine):  # not joined: fall back to the attempt's time window
            mine = proxy.forwards_df() if hasattr(proxy, "forwards_df") else proxy
        proxy = mine
    if proxy is not None:
        t.proxy = proxy if "trial_id" in proxy.columns else proxy.assign(trial_id=trial or "trace")
    order = t.trial_order
    if not order:
        return _empty(title, "nothing to draw: no attempts")
    trial = str(trial) if trial is not None else order[0]
    att = t.attempts[t.attempts["trial_id"].astype(str) == trial] if len(t.attempts) else t.attempts
    ch = t.chunks[t.chunks["trial_id"].astype(str) == trial] if len(t.chunks) else t.chunks
    if attempt is None:
        if len(att):
            attempt = int(att["attempt"].max())
        elif len(ch):
            attempt = int(ch["attempt"].max())
        else:
            attempt = 1
    if len(att):
        a = att[att["attempt"] == attempt]
        window = (float(a["start"].iloc[0]), float(_col(a, "end").iloc[0])) if len(a) else (-np.inf, np.inf)
    else:
        window = (-np.inf, np.inf)
    frames = []
    sv = t.server
    if len(sv):
        sv = sv[(sv["trial_id"].astype(str) == trial) & (sv["attempt"] == attempt)]
        sv = sv[(sv["nbytes"] > 0) & (sv["kind"] != "request") & (sv["kind"] != "headers")]
        frames.append(pd.DataFrame({"layer": _LAYERS[0], "t": sv["t"], "bytes": sv["nbytes"], "what": sv["kind"]}))
    if t.proxy is not None and len(t.proxy):
        px = _proxy_rows(t.proxy, t, trial, attempt, window)
        if len(px):
            frames.append(px.assign(layer=_LAYERS[1], what="forward"))
    if len(ch):
        c = ch[ch["attempt"] == attempt]
        frames.append(pd.DataFrame({"layer": _LAYERS[2], "t": c["t"], "bytes": c["size"], "what": "chunk"}))
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty(title, f"nothing to draw: no bytes in {trial} attempt {attempt}")
    df = pd.concat(frames, ignore_index=True).sort_values(["layer", "t"], kind="stable")
    df["bytes"] = pd.to_numeric(df["bytes"], errors="coerce").fillna(0)
    df["share"] = df.groupby("layer")["bytes"].cumsum() / df.groupby("layer")["bytes"].transform("sum").replace(0, 1)
    firsts = df.groupby("layer")["t"].min()
    layers_present = [name for name in _LAYERS if name in set(df["layer"])]
    notes = ["first body byte: " + ", ".join(f"{name.split()[0]} {firsts[name]:.3f} s" for name in layers_present)]
    if _LAYERS[1] not in layers_present:
        notes.append("no proxy log: two vantage points (server and client)")
    thin = thin_in_time(
        df, ["layer"], "t", MAX_ROWS // 3, {"t": "min", "bytes": "sum", "share": "max", "what": "first"}
    )
    if len(thin) < len(df):
        notes.append(f"{len(df):,} rows drawn as {len(thin):,} (one per time bin)")
    color = alt.Color(
        "layer:N",
        title="vantage point",
        scale=alt.Scale(domain=_LAYERS, range=["#1f77b4", "#ff7f0e", "#2ca02c"]),
    )
    zoom = _x_zoom()
    strip = (
        alt.Chart(thin)
        .mark_tick(thickness=1.5, size=18)
        .encode(
            x=alt.X("t:Q", title=TIME_AXIS),
            y=alt.Y("layer:N", title=None, sort=_LAYERS),
            color=color,
            tooltip=[
                "layer",
                "what",
                alt.Tooltip("t:Q", title="at (s)", format=".4f"),
                alt.Tooltip("bytes:Q", title="bytes"),
                alt.Tooltip("count:Q", title="rows merged"),
            ],
        )
        .add_params(zoom)
        .properties(width=width, height=30 * len(layers_present) + 20)
    )
    lines = (
        alt.Chart(thin)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("t:Q", title=TIME_AXIS, scale=alt.Scale(domain={"param": zoom.name})),
            y=alt.Y("share:Q", title="share of the attempt's bytes", axis=alt.Axis(format="%")),
            color=color,
            tooltip=["layer", alt.Tooltip("t:Q", title="at (s)", format=".4f"), alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=width, height=180)
    )
    return alt.vconcat(strip, lines).properties(title=_title(title, [f"{trial}, attempt {attempt}", *notes]))


# ------------------------------------------------------------------ save, setup


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


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def enable_offline() -> None:
    """Render charts offline in Jupyter: altair's ``jupyter`` renderer with vl-convert's
    bundled JavaScript (done on import inside a kernel; call it yourself elsewhere).

    ``KIT_CHARTS_RENDERER=png`` (or ``svg``) renders static images through vl-convert
    instead, for pages read without a kernel (``kit export`` sets it).
    """
    import os

    static = os.environ.get("KIT_CHARTS_RENDERER", "").lower()
    if static in ("png", "svg"):
        alt.renderers.enable(static, **({"scale_factor": 1.5} if static == "png" else {}))
        return
    alt.renderers.enable("jupyter", offline=True)


if _in_kernel():  # cheap: the JavaScript bundle is built on the first render
    enable_offline()
