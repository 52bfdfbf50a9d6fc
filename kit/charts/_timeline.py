"""Charts over time, one row or line per attempt: timeline, attempts Gantt, cumulative bytes."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from .._errors import ConfigError
from ._common import (
    MAX_ROWS,
    TIME_AXIS,
    WIDTH,
    _attempt_rows,
    _cause_scale,
    _cells,
    _col,
    _empty,
    _title,
    _x_zoom,
    color_scale,
)
from ._tables import FAULT_LOG_KINDS, tables, thin_in_time

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
    deadlines the client armed (``result.deadlines``, recorded by the client, never
    recomputed from the policy): solid for the one that fired and ended the attempt,
    faint for one its phase met in time (the tooltip gives the margin). A deadline still
    pending when the attempt ended for another reason (the idle limit after a stream's
    last chunk, the total limit of a call that completed) is not drawn, nor one beyond
    twice the longest attempt. Inputs without recorded deadlines (an SDK's or a HAR's
    attempts, bundles saved before they were recorded) draw none. Purple triangles are
    faults the server injected (stall, close, reset, truncate, error event).

    Large inputs: the first ``max_attempts`` attempts are drawn (the subtitle says how
    many were left out), and chunk ticks are **aggregated per time bin**: above
    :data:`MAX_ROWS` chunks each attempt's time span is cut into equal bins and one tick
    (the bin's first chunk, with the count merged) is kept per occupied bin.
    """
    title = "Timeline: when each chunk arrived, per attempt"
    t = tables(data, "chunks")
    if not len(t.attempts) and not len(t.chunks):
        return _empty(title, "nothing to draw: the input has no attempts and no chunks")
    notes: list[str] = []
    att = _timeline_attempts(t.attempts, t.chunks, max_attempts, notes)
    rows = list(att["row"])
    key = dict(zip(zip(att["trial_id"].astype(str), att["attempt"].astype("int64"), strict=True), rows, strict=True))
    ticks = _chunk_ticks(t.chunks, key, notes)
    y = alt.Y("row:N", title=None, sort=rows)
    layers = [_span_layer(att, y), *_tick_layers(ticks, y), *_milestone_layers(att, y)]
    if deadlines:
        layers += _deadline_layers(att, t.deadlines, y)
    layers += _fault_layers(t.server, key, y)
    return alt.layer(*layers).properties(
        width=width, height=max(60, 34 * len(rows)), title=_title(title, "; ".join(notes) or None)
    )


def _timeline_attempts(att: pd.DataFrame, ch: pd.DataFrame, max_attempts: int, notes: list[str]) -> pd.DataFrame:
    """The attempts to draw, one row each with a ``row`` name and numeric times."""
    if not len(att):  # a bare chunks table: the attempts are the chunks' extent
        att = (
            ch.groupby(["trial_id", "attempt"], sort=False)
            .agg(start=("t", "min"), end=("t", "max"), chunks_received=("t", "size"))
            .reset_index()
            .assign(first_chunk=lambda d: d["start"], cause="unknown", phase="unknown")
        )
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
    return att


def _chunk_ticks(ch: pd.DataFrame, key: dict, notes: list[str]) -> pd.DataFrame:
    """Chunk ticks of the drawn attempts (thinned per time bin above MAX_ROWS)."""
    if not len(ch):
        return pd.DataFrame({"row": [], "t": [], "t_last": [], "count": []})
    ch = ch[["trial_id", "attempt", "t", *[c for c in ("seq", "size") if c in ch.columns]]]
    if len(key) < len(ch[["trial_id", "attempt"]].drop_duplicates()):
        idx = pd.MultiIndex.from_frame(ch[["trial_id", "attempt"]].astype({"trial_id": str, "attempt": "int64"}))
        ch = ch[idx.isin(list(key))]
    agg: dict[str, Any] = {"t": "min", "t_last": ("t", "max")}
    if "size" in ch.columns:
        agg["bytes"] = ("size", "sum")
    if "seq" in ch.columns:
        agg["seq"] = "min"
    ticks = thin_in_time(ch, ["trial_id", "attempt"], "t", MAX_ROWS, agg)
    if ticks["count"].max() > 1:
        notes.append(f"{len(ch):,} chunks drawn as {len(ticks):,} ticks (one per time bin)")
    ticks["row"] = [key.get((str(a), int(b))) for a, b in zip(ticks["trial_id"], ticks["attempt"], strict=True)]
    return ticks.drop(columns=["trial_id"])


def _span_layer(att: pd.DataFrame, y: alt.Y) -> alt.Chart:
    """A bar per attempt from start to end, coloured by its outcome cause (zoomable)."""
    tips = _present(att, _ATT_TIPS)
    return (
        alt.Chart(att[["row", "start", "end", "phase", "cause", "message", *tips]])
        .mark_bar(height=14, opacity=0.35, cornerRadius=2)
        .encode(
            x=alt.X("start:Q", title=TIME_AXIS),
            x2="end:Q",
            y=y,
            color=alt.Color("cause:N", title="outcome", scale=_cause_scale(att["cause"])),
            tooltip=_tips(["row", "phase", "cause", "message", "start", "end", *tips]),
        )
        .add_params(_x_zoom())
    )


def _tick_layers(ticks: pd.DataFrame, y: alt.Y) -> list[alt.Chart]:
    if not len(ticks):
        return []
    tip = ["row", alt.Tooltip("t:Q", title="arrived (s)", format=".4f"), "count:Q"]
    if "bytes" in ticks:
        tip.append(alt.Tooltip("bytes:Q", title="bytes"))
    if "seq" in ticks:
        tip.append(alt.Tooltip("seq:Q", title="chunk #"))
    return [
        alt.Chart(ticks)
        .mark_tick(color="#222", thickness=1.2, size=16)
        .encode(x=alt.X("t:Q", title=TIME_AXIS), y=y, tooltip=tip)
    ]


def _milestone_layers(att: pd.DataFrame, y: alt.Y) -> list[alt.Chart]:
    names = ("connected", "headers", "first_chunk")
    marks = [
        {"row": r["row"], "milestone": name.replace("_", " "), "t": r[name]}
        for _, r in att.iterrows()
        for name in names
        if not np.isnan(r[name])
    ]
    if not marks:
        return []
    shape = alt.Shape(
        "milestone:N",
        title="milestone",
        scale=alt.Scale(domain=["connected", "headers", "first chunk"], range=["circle", "square", "diamond"]),
    )
    return [
        alt.Chart(pd.DataFrame(marks))
        .mark_point(filled=True, size=55, color="#444")
        .encode(
            x="t:Q", y=y, shape=shape, tooltip=["row", "milestone", alt.Tooltip("t:Q", title="at (s)", format=".4f")]
        )
    ]


# the attempt's column holding when each phase that arms a deadline ended (NaN: it never did)
_PHASE_END = {"connect": "connected", "send": "headers", "headers": "headers", "first_chunk": "first_chunk"}


def _deadline_rows(att: pd.DataFrame, recorded: pd.DataFrame | None) -> list[dict]:
    """The recorded deadlines worth drawing: the one that fired, and those whose phase met them."""
    if recorded is None or not len(recorded):
        return []
    rows = {(str(r["trial_id"]), int(r["attempt"])): r for _, r in att.iterrows()}
    out = []
    for d in recorded.itertuples(index=False):
        r = rows.get((str(d.trial_id), int(d.attempt)))
        if r is None:
            continue
        name = str(d.cause).removeprefix("timeout.")
        if bool(d.fired):
            status = "fired"
        else:
            ended = r.get(_PHASE_END.get(str(d.phase), ""), np.nan)
            if pd.isna(ended) or ended > d.t:
                continue  # still pending when the attempt ended for another reason: nothing to show
            status = f"met: the {str(d.phase).replace('_', ' ')} phase ended {d.t - ended:.3f} s before it"
        out.append(
            {"row": r["row"], "limit": name, "seconds": d.limit_s, "t": d.t, "status": status, "fired": bool(d.fired)}
        )
    return out


def _deadline_layers(att: pd.DataFrame, recorded: pd.DataFrame | None, y: alt.Y) -> list[alt.Chart]:
    """Red ticks at the recorded deadlines (fired: solid; met: faint), within twice the longest attempt."""
    horizon = 2 * float(np.nanmax(att["end"].to_numpy(dtype="float64"))) + 0.1
    lines = [d for d in _deadline_rows(att, recorded) if d["t"] <= horizon]
    if not lines:
        return []
    # a label near the right edge goes left of its tick: the plot clips marks (x-zoom) and cut it off
    right = 0.7 * max(float(np.nanmax(att["end"].to_numpy(dtype="float64"))), max(d["t"] for d in lines))
    for d in lines:
        d["left"] = d["t"] > right
    base = alt.Chart(pd.DataFrame(lines)).encode(
        x="t:Q",
        y=y,
        tooltip=[
            "row",
            alt.Tooltip("limit:N", title="timeout"),
            alt.Tooltip("seconds:Q", title="limit (s)", format=".3g"),
            alt.Tooltip("t:Q", title="due at (s)", format=".4f"),
            alt.Tooltip("status:N", title="deadline"),
        ],
        opacity=alt.condition("datum.fired", alt.value(1.0), alt.value(0.35)),
    )
    return [
        base.mark_tick(color="#d62728", thickness=2, size=24),
        base.mark_text(color="#d62728", align="left", dx=3, dy=-9, fontSize=9)
        .encode(text="limit:N")
        .transform_filter("!datum.left"),
        base.mark_text(color="#d62728", align="right", dx=-3, dy=-9, fontSize=9)
        .encode(text="limit:N")
        .transform_filter("datum.left"),
    ]


def _fault_layers(server: pd.DataFrame, key: dict, y: alt.Y) -> list[alt.Chart]:
    """Purple triangles where the server injected a fault into a drawn attempt."""
    if not len(server) or "kind" not in server:
        return []
    faults = server[server["kind"].isin(FAULT_LOG_KINDS)]
    faults = faults.assign(
        row=[key.get((str(a), int(b))) for a, b in zip(faults["trial_id"], faults["attempt"], strict=True)]
    ).dropna(subset=["row"])[["row", "kind", "t"]]
    if not len(faults):
        return []
    return [
        alt.Chart(faults)
        .mark_point(shape="triangle-down", filled=True, size=110, color="#9467bd", yOffset=-10)
        .encode(
            x="t:Q",
            y=y,
            tooltip=["row", alt.Tooltip("kind:N", title="fault"), alt.Tooltip("t:Q", title="at (s)", format=".4f")],
        )
    ]


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
    # attempts that got no bytes end on the x axis: named there, so they are not lost under it
    last = pts.groupby("series", sort=False).agg(end=(x, "max"), total=("cum_bytes", "max"))
    nothing = last[last["total"] == 0].reset_index()
    if len(nothing):
        notes.append(f"{len(nothing)} attempts got no bytes (their dots at 0 are named)")
    base = alt.Chart(pts, title=_title(title, "; ".join(notes) or None)).encode(
        x=alt.X(f"{x}:Q", title=TIME_AXIS if x == "t" else "time since the attempt started (s)"),
        # padding lifts 0 bytes off the axis line, so a flat line at 0 and its end dot show
        y=alt.Y("cum_bytes:Q", title="bytes received (cumulative)", scale=alt.Scale(padding=6, nice=False)),
        color=alt.Color(f"{color}:N", title=legend, scale=color_scale(pts[color])),
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
    layers = [lines, ends.mark_point(filled=True, size=60, opacity=1, stroke="white", strokeWidth=1)]
    if len(nothing):  # one label per attempt that got nothing, stacked upwards from its dot
        named = nothing.iloc[:6].assign(label=lambda d: d["series"] + ": no bytes", cum_bytes=0)
        for i, row in enumerate(named.itertuples(index=False)):
            layers.append(
                alt.Chart(pd.DataFrame([{x: row.end, "cum_bytes": 0, "label": row.label}]))
                .mark_text(align="left", dx=6, dy=-10 - 13 * i, fontSize=10, color="#444")
                .encode(x=f"{x}:Q", y="cum_bytes:Q", text="label:N")
            )
    return alt.layer(*layers).properties(width=width, height=260)
