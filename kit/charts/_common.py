"""What every chart family shares: limits, colours, titles, zoom, labels."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from ..policy import TIMEOUTS
from ._tables import Tables, num

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

# Series (traces, cells, networks, groups): one colour per label for the whole session, so
# a network keeps its colour from one chart to the next whatever else each chart shows
# (altair alone colours by position in each chart's own sorted list of labels).
SERIES_PALETTE = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#b279a2",
    "#e45756",
    "#72b7b2",
    "#eeca3b",
    "#9d755d",
    "#ff9da6",
    "#bab0ac",
)
_series_colors: dict[str, str] = {}


def series_color(label: Any) -> str:
    """The colour of series ``label``: the next colour of :data:`SERIES_PALETTE` the first time
    the process meets it, the same one after (the palette repeats past ten labels)."""
    key = str(label)
    if key not in _series_colors:
        _series_colors[key] = SERIES_PALETTE[len(_series_colors) % len(SERIES_PALETTE)]
    return _series_colors[key]


def color_scale(values: Any) -> alt.Scale:
    """A colour scale giving each label in ``values`` its session colour (:func:`series_color`).

    For your own altair charts: ``alt.Color("network:N", scale=kit.charts.color_scale(df["network"]))``
    colours each network as every kit chart does."""
    domain = sorted({str(v) for v in values})
    for v in pd.unique(pd.Series(list(values), dtype="object").astype(str)):  # first seen, first coloured
        series_color(v)
    return alt.Scale(domain=domain, range=[series_color(v) for v in domain])


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
    if name in (*TIMEOUTS, "latency", "jitter", "gap", "stall", "duration", "wait") or name.endswith(
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


def _trials_of(t: Tables) -> pd.DataFrame:
    if len(t.trials):
        return t.trials
    return pd.DataFrame()
