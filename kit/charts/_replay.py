"""A recording and its replay side by side: arrival times, cumulative bytes, the difference per chunk.

Reads the comparison table of :func:`kit.replay_compare.table` (one row per recorded
chunk, matched to the replay by byte offset), or builds it from two traces.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from .._errors import ConfigError
from ._common import MAX_ROWS, WIDTH, _empty, _title, _x_zoom

__all__ = ["replay_comparison"]


def replay_comparison(recorded: Any, replayed: Any = None, *, width: int | None = None) -> alt.VConcatChart | alt.Chart:
    """Top: cumulative bytes over time after the response headers, recorded vs replayed (step
    lines); bottom: the replay's arrival minus the recording's for every recorded chunk, in ms.

    ``recorded``: a recorded :class:`~kit.Trace` with ``replayed`` its replay, or the
    comparison DataFrame (:func:`kit.replay_compare.table`) alone. Above
    :data:`~kit.charts.MAX_ROWS` chunks, every k-th chunk is drawn (the subtitle says so).
    """
    from ..replay_compare import COLUMNS, fidelity, table

    width = width or WIDTH
    title = "Recording and replay: bytes over time"
    if replayed is not None:
        df, fit = table(recorded, replayed), fidelity(recorded, replayed)
    elif isinstance(recorded, pd.DataFrame):
        missing = [c for c in COLUMNS if c not in recorded.columns]
        if missing:
            raise ConfigError("recorded", f"a DataFrame without {missing}", "kit.replay_compare.table output")
        df, fit = recorded, None
    else:
        raise ConfigError("replayed", None, "a replayed Trace (or pass the comparison table alone)")
    if not len(df):
        return _empty(title, "nothing to draw: the recording has no chunks")
    notes = []
    if fit is not None:
        notes.append(
            f"{fit['chunks']} chunks; arrival error p50 {fit['error_p50_s'] * 1e3:.2f} ms, "
            f"p99 {fit['error_p99_s'] * 1e3:.2f} ms; gap error p99 {fit['gap_error_p99_s'] * 1e3:.2f} ms; "
            f"bytes {'identical' if fit['bytes_identical'] else 'DIFFER'}, "
            f"events {'identical' if fit['events_identical'] else 'DIFFER'}"
        )
    step = -(-2 * len(df) // (MAX_ROWS - 2)) if 2 * len(df) > MAX_ROWS - 2 else 1
    if step > 1:
        df = pd.concat([df.iloc[::step], df.iloc[[-1]]]).drop_duplicates("seq")
        notes.append(f"every {step}th chunk drawn")
    both = pd.concat(
        [
            pd.DataFrame({"series": "recorded", "t": df["recorded_s"], "bytes": df["bytes"], "seq": df["seq"]}),
            pd.DataFrame({"series": "replayed", "t": df["replayed_s"], "bytes": df["bytes"], "seq": df["seq"]}),
        ],
        ignore_index=True,
    ).dropna(subset=["t"])
    zoom = _x_zoom()
    x = alt.X("t:Q", title="time after the response headers (s)")
    colors = alt.Scale(domain=["recorded", "replayed"], range=["#1f77b4", "#ff7f0e"])
    lines = (
        alt.Chart(both)
        .mark_line(interpolate="step-after", strokeWidth=1.8, point=alt.OverlayMarkDef(size=14))
        .encode(
            x=x,
            y=alt.Y("bytes:Q", title="bytes received so far"),
            color=alt.Color("series:N", scale=colors, title=None),
            strokeDash=alt.StrokeDash("series:N", legend=None),
            tooltip=["series:N", "seq:Q", alt.Tooltip("t:Q", format=".4f"), "bytes:Q"],
        )
        .add_params(zoom)
        .properties(width=width, height=220, title=_title(title, notes or None))
    )
    diff = df.assign(error_ms=df["error_s"] * 1e3, gap_error_ms=df["gap_error_s"] * 1e3).dropna(subset=["error_ms"])
    errors = (
        alt.Chart(diff)
        .mark_bar(width=2, color="#555")
        .encode(
            x=alt.X("recorded_s:Q", title="recorded arrival after the headers (s)"),
            y=alt.Y("error_ms:Q", title="replay - recording (ms)"),
            tooltip=[
                "seq:Q",
                "bytes:Q",
                alt.Tooltip("recorded_s:Q", format=".4f"),
                alt.Tooltip("replayed_s:Q", format=".4f"),
                alt.Tooltip("error_ms:Q", format=".3f"),
                alt.Tooltip("gap_error_ms:Q", format=".3f"),
            ],
        )
        .properties(width=width, height=110, title=_title("Difference per chunk (replay minus recording)"))
    )
    return alt.vconcat(lines, errors).resolve_scale(color="independent")
