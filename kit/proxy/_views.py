"""The proxy's logs as rows and DataFrames: pure functions of the logged tuples.

The engine (pipes, connections) appends plain tuples; these views turn them into the
documented columns, so pandas stays out of the data path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONNECTION_COLUMNS", "EVENT_COLUMNS", "FORWARD_COLUMNS"]

FORWARD_COLUMNS = (
    "conn",
    "direction",
    "t_recv_ns",
    "t_sent_ns",
    "nbytes",
    "delay_ns",
    "toxics",
    "hit",
    "dropped",
    "planned_ns",
    "late_ns",
)
_FORWARD_TUPLE = ("conn", "direction", "t_recv_ns", "t_sent_ns", "nbytes", "toxics", "planned_ns")
EVENT_COLUMNS = ("t_ns", "conn", "event", "direction", "detail")
CONNECTION_COLUMNS = (
    "conn",
    "client",
    "upstream",
    "t_open_ns",
    "t_upstream_ns",
    "t_close_ns",
    "duration_s",
    "bytes_up",
    "bytes_down",
    "received_up",
    "received_down",
    "dropped_up",
    "dropped_down",
    "close_reason",
    "reset",
    "toxics_hit",
    "toxics_missed",
    "requests",
    "trials",
)


def log_rows(events: Iterable[tuple[Any, ...]], forwards: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Events and forwards as one list of dicts in time order (see ``NetworkProxy.log``)."""
    rows = [{"type": "event", **dict(zip(EVENT_COLUMNS, e, strict=True))} for e in events]
    for conn, direction, t_recv, t_sent, nbytes, toxics, planned in forwards:
        rows.append(
            {
                "type": "forward",
                "t_ns": t_recv if t_sent is None else t_sent,
                "conn": conn,
                "direction": direction,
                "t_recv_ns": t_recv,
                "t_sent_ns": t_sent,
                "nbytes": nbytes,
                "delay_ns": None if t_sent is None else t_sent - t_recv,
                "toxics": toxics,
                "hit": bool(toxics),
                "dropped": t_sent is None,
                "planned_ns": planned,
                "late_ns": None if t_sent is None else t_sent - planned,
            }
        )
    rows.sort(key=lambda r: r["t_ns"])
    return rows


def forwards_df(forwards: Iterable[tuple[Any, ...]]) -> pd.DataFrame:
    """One row per forward (``NetworkProxy.forwards_df`` documents the columns)."""
    import pandas as pd

    df = pd.DataFrame(list(forwards), columns=list(_FORWARD_TUPLE))
    df["t_sent_ns"] = df["t_sent_ns"].astype("Int64")
    df["planned_ns"] = df["planned_ns"].astype("Int64")
    df["late_ns"] = df["t_sent_ns"] - df["planned_ns"]
    df["delay_ns"] = df["t_sent_ns"] - df["t_recv_ns"].astype("Int64")
    df["hit"] = df["toxics"].map(bool).astype(bool)
    df["toxics"] = df["toxics"].map(",".join).astype(str)
    df["dropped"] = df["t_sent_ns"].isna().astype(bool)
    return df[list(FORWARD_COLUMNS)]


def events_df(events: Iterable[tuple[Any, ...]]) -> pd.DataFrame:
    """One row per connection event (``NetworkProxy.events_df`` documents them)."""
    import pandas as pd

    return pd.DataFrame(list(events), columns=list(EVENT_COLUMNS))


def connections_df(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per connection record (``NetworkProxy.connections_df`` documents them)."""
    import pandas as pd

    df = pd.DataFrame(list(records), columns=list(CONNECTION_COLUMNS))
    for column in ("t_open_ns", "t_upstream_ns", "t_close_ns"):
        df[column] = df[column].astype("Int64")
    for column in ("toxics_hit", "toxics_missed", "requests", "trials"):
        df[column] = df[column].map(",".join).astype(str)
    return df
