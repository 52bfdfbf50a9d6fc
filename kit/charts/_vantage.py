"""One attempt seen from server, proxy and client on one clock."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from .._clock import ns_to_s
from ._common import (
    MAX_ROWS,
    TIME_AXIS,
    WIDTH,
    _col,
    _empty,
    _title,
    _x_zoom,
)
from ._tables import Tables, tables, thin_in_time

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
        tt = ns_to_s(pd.to_numeric(p[tcol], errors="coerce") - start_ns)
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
