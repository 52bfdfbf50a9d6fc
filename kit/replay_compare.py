"""How faithful is a replay? A recorded trace and its replay, chunk by chunk.

Chunks are matched by byte offset, not by index: the client's reads may merge or split
the writes. For the end of every recorded chunk, :func:`table` finds when the replay's
client had received as many bytes, both timed from their own response headers, and
gives the difference (``error_s``) and the difference of the gaps before it
(``gap_error_s``). :func:`fidelity` sums that up: arrival and gap error percentiles,
whether the body bytes and the SSE events are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._clock import ns_to_s
from ._errors import ConfigError

__all__ = ["COLUMNS", "fidelity", "table"]

COLUMNS = ["seq", "bytes", "recorded_s", "replayed_s", "error_s", "recorded_gap_s", "replayed_gap_s", "gap_error_s"]


@dataclass
class _Side:
    times: np.ndarray  # s after the response headers, per chunk
    sizes: np.ndarray
    data: list[bytes] | None
    events: list[tuple[str, int]]


def _side(x: Any, name: str) -> _Side:
    """Chunk times, sizes, bytes (if kept) and events of a Trace's last attempt or a replay Scenario."""
    replay = getattr(x, "replay", None)
    if replay is not None:  # what the recording says the replay should do (at its speed)
        from .protocols import SSEParser

        events = [(e.event, e.size) for e in SSEParser().feed(replay.body)] if replay.event_ends() else []
        return _Side(
            np.asarray(replay.times, dtype="float64") / replay.speed,
            np.asarray([len(c) for c in replay.chunks], dtype="int64"),
            list(replay.chunks),
            events,
        )
    attempts = getattr(x, "attempts", None)
    if not attempts:
        raise ConfigError(
            name, repr(x), "a Trace with at least one attempt, or a replay Scenario (kit.replay_scenario)"
        )
    a = attempts[-1]
    if a.headers_ns is None:
        raise ConfigError(name, repr(x), "a call that got response headers")
    return _Side(
        ns_to_s(np.asarray(a.chunk_t, dtype="int64") - a.headers_ns),
        np.asarray(a.chunk_size, dtype="int64"),
        getattr(a, "chunk_data", None),
        list(zip(a.event_type, a.event_size, strict=True)),
    )


def table(recorded: Any, replayed: Any) -> pd.DataFrame:
    """One row per recorded chunk: cumulative ``bytes``, arrival in each (s after the
    response headers), the difference, and the gap before it in each and their difference.

    ``recorded``: a recorded Trace, or the replay Scenario built from it
    (:func:`kit.replay_scenario`, so a saved recording alone is enough);
    ``replayed``: the trace of a call against the replay.
    """
    a, b = _side(recorded, "recorded"), _side(replayed, "replayed")
    rec_t, rec_cum = a.times, np.cumsum(a.sizes)
    rep_t, rep_cum = b.times, np.cumsum(b.sizes)
    idx = np.searchsorted(rep_cum, rec_cum, side="left")  # first replayed read that reached the offset
    have = idx < len(rep_t)
    replayed_s = np.where(have, rep_t[np.minimum(idx, max(len(rep_t) - 1, 0))] if len(rep_t) else np.nan, np.nan)
    df = pd.DataFrame(
        {
            "seq": np.arange(len(rec_t), dtype="int64"),
            "bytes": rec_cum,
            "recorded_s": rec_t,
            "replayed_s": replayed_s,
        }
    )
    df["error_s"] = df["replayed_s"] - df["recorded_s"]
    df["recorded_gap_s"] = df["recorded_s"].diff()
    df["replayed_gap_s"] = df["replayed_s"].diff()
    df["gap_error_s"] = df["replayed_gap_s"] - df["recorded_gap_s"]
    return df[COLUMNS]


def fidelity(recorded: Any, replayed: Any) -> dict[str, Any]:
    """Replay fidelity: ``chunks``, ``bytes_identical`` (content when both kept their bytes,
    else the byte counts), ``events_identical`` (types and sizes), arrival error
    (``error_p50_s``, ``error_p99_s``, ``error_max_s``: absolute, after the headers) and
    gap error (``gap_error_p50_s``, ``gap_error_p99_s``, ``gap_error_max_s``: absolute,
    between consecutive recorded chunks)."""
    a, b = _side(recorded, "recorded"), _side(replayed, "replayed")
    df = table(recorded, replayed)
    if a.data is not None and b.data is not None:
        same_bytes, compared = b"".join(a.data) == b"".join(b.data), "content"
    else:
        same_bytes, compared = int(a.sizes.sum()) == int(b.sizes.sum()), "count"
    same_events = a.events == b.events
    err = df["error_s"].abs().dropna().to_numpy()
    gap = df["gap_error_s"].abs().dropna().to_numpy()

    def pct(x: np.ndarray, q: float) -> float:
        return float(np.percentile(x, q)) if len(x) else float("nan")

    return {
        "chunks": len(df),
        "bytes_identical": bool(same_bytes),
        "bytes_compared": compared,
        "events_identical": bool(same_events),
        "error_p50_s": pct(err, 50),
        "error_p99_s": pct(err, 99),
        "error_max_s": pct(err, 100),
        "gap_error_p50_s": pct(gap, 50),
        "gap_error_p99_s": pct(gap, 99),
        "gap_error_max_s": pct(gap, 100),
    }
