"""Input normalisation for the charts: anything chartable becomes one set of tidy tables.

Charts accept a :class:`~kit.trace.Trace`, a list of Traces, an experiment ``Result``
(duck-typed: ``.chunks``, ``.attempts``, ``.trials``, ``.events``, ``.server`` and maybe
``.proxy`` DataFrames with a leading ``trial_id``) or a bare DataFrame. Every path ends
in :class:`Tables`, whose frames all carry a ``trial_id`` column (a Trace's label), so
the chart builders have one shape to read. Nothing here draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._errors import ConfigError
from ..tables import build, traces_to_records

# Server log kinds that mark where a fault acted (see kit/server.py ServerLogEntry).
FAULT_LOG_KINDS = ("stall_start", "close", "reset", "truncate", "error", "malformed")


@dataclass
class Tables:
    """The tidy tables of one chart input; every frame has a ``trial_id`` column."""

    chunks: pd.DataFrame
    attempts: pd.DataFrame
    server: pd.DataFrame
    trials: pd.DataFrame
    proxy: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    deadlines: pd.DataFrame | None = None  # the deadlines the client armed (kit.tables), None if unknown
    start_ns: dict[str, int] = field(default_factory=dict)  # per trial (Traces only): the call's clock zero

    @property
    def trial_order(self) -> list[str]:
        """Trial ids in first-seen order (attempts, then chunks, then trials)."""
        seen: dict[str, None] = {}
        for df in (self.attempts, self.chunks, self.trials):
            if "trial_id" in df:
                for t in pd.unique(df["trial_id"]):
                    seen.setdefault(str(t), None)
        return list(seen)


def _empty(columns: Iterable[str] = ("trial_id",)) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def is_trace(obj: Any) -> bool:
    return hasattr(obj, "attempts_df") and hasattr(obj, "chunks") and hasattr(obj, "start_ns")


def is_result(obj: Any) -> bool:
    return not is_trace(obj) and all(hasattr(obj, name) for name in ("chunks", "attempts", "trials"))


def _unique_labels(traces: Sequence[Any]) -> list[str]:
    labels: list[str] = []
    counts: dict[str, int] = {}
    for i, t in enumerate(traces):
        base = str(getattr(t, "label", None) or f"trace {i + 1}")
        counts[base] = counts.get(base, 0) + 1
        labels.append(base if counts[base] == 1 else f"{base} ({counts[base]})")
    return labels


def from_traces(traces: Sequence[Any]) -> Tables:
    """The tables of single traces (built by :mod:`kit.tables`), trial ids = their unique labels."""
    records, cells = traces_to_records(traces, _unique_labels(traces))
    built, _ = build(records, cells)
    return _from_frames(built.get)


def _with_trial(df: Any) -> pd.DataFrame:
    if df is None:
        return _empty()
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    if "trial_id" not in df.columns:
        df = df.assign(trial_id="trace")
    return df


def from_result(result: Any) -> Tables:
    return _from_frames(lambda name: getattr(result, name, None))


def _from_frames(frame: Any) -> Tables:
    """Tables from ``frame(name)``, which gives each table of a Result (or None)."""
    proxy, deadlines = frame("proxy"), frame("deadlines")
    return Tables(
        chunks=_with_trial(frame("chunks")),
        attempts=_with_trial(frame("attempts")),
        server=_with_trial(frame("server")),
        trials=_with_trial(frame("trials")),
        proxy=None if proxy is None else _with_trial(proxy),
        events=_with_trial(frame("events")),
        deadlines=None if deadlines is None else _with_trial(deadlines),
    )


def tables(data: Any, primary: str) -> Tables:
    """Normalise ``data``; a bare DataFrame becomes the ``primary`` table of the chart."""
    if isinstance(data, pd.DataFrame):
        t = Tables(chunks=_empty(), attempts=_empty(), server=_empty(), trials=_empty())
        setattr(t, primary, _with_trial(data))
        return t
    if is_trace(data):
        return from_traces([data])
    if isinstance(data, (list, tuple)):
        if not data:
            return Tables(chunks=_empty(), attempts=_empty(), server=_empty(), trials=_empty())
        if all(is_trace(x) for x in data):
            return from_traces(list(data))
    if is_result(data):
        return from_result(data)
    raise ConfigError(
        "data",
        type(data).__name__,
        "expected a kit.Trace, a list of Traces, an experiment Result or a pandas DataFrame",
    )


# ---------------------------------------------------------------------- reducing


def thin_in_time(df: pd.DataFrame, keys: list[str], t: str, max_rows: int, agg: dict[str, Any]) -> pd.DataFrame:
    """At most about ``max_rows`` rows: one per (keys, time bin), with ``count`` of rows merged.

    Bins are equal slices of the whole time span, as many per series as fit in
    ``max_rows``; ``agg`` maps each output column to ``how`` or ``(column, how)``
    (e.g. ``{"t": "min", "t_last": ("t", "max")}``). Below the limit the frame is
    returned as is, with ``count`` = 1 and the ``agg`` columns filled from their sources.
    """
    spec = {name: how if isinstance(how, tuple) else (name, how) for name, how in agg.items()}
    if len(df) <= max_rows:
        out = df.assign(count=1)
        for name, (col, _) in spec.items():
            if name != col:
                out[name] = df[col]
        return out
    n_series = max(1, int(df.groupby(keys, sort=False, observed=True).ngroups))
    bins = max(1, max_rows // n_series)
    tv = df[t].to_numpy(dtype="float64")
    lo, hi = np.nanmin(tv), np.nanmax(tv)
    span = hi - lo if hi > lo else 1.0
    b = np.minimum(((tv - lo) / span * bins).astype("int64"), bins - 1)
    g = df.assign(_bin=b).groupby([*keys, "_bin"], sort=False, observed=True)
    out = g.agg(**spec, count=(t, "size")).reset_index()
    return out.drop(columns="_bin")


def ecdf_points(values: np.ndarray, n_total: int, max_points: int = 400) -> pd.DataFrame:
    """ECDF of ``values`` as at most ``max_points`` (value, share) steps.

    ``share`` is over ``n_total`` (which may exceed ``len(values)``: trials that never
    produced a value keep the curve below 1, which is the point).
    """
    v = np.sort(values[~np.isnan(values)])
    if not len(v) or not n_total:
        return pd.DataFrame({"value": [], "share": []})
    ranks = np.arange(1, len(v) + 1)
    if len(v) > max_points:
        idx = np.unique(np.linspace(0, len(v) - 1, max_points).round().astype(int))
        v, ranks = v[idx], ranks[idx]
    return pd.DataFrame({"value": v, "share": ranks / n_total})


def num(x: Any) -> float:
    """A float, NaN for None/missing."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return math.nan
    return f
