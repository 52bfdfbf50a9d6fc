"""Charts of chunk arrival: altair builders that read the trace tables, nothing else.

Every function takes a :class:`~kit.trace.Trace`, a list of Traces (one series per
trace, named by ``trace.label``), an experiment ``Result`` (its tidy tables with a
leading ``trial_id``) or a DataFrame (the table the chart reads first), and returns an
altair chart. Every chart has a title saying what it shows, axis titles with units,
tooltips, and x-zoom (drag / wheel) on time axes; double-click resets the zoom.

Large inputs never reach altair's 5,000-row limit: each chart *aggregates in pandas
first* (no vegafusion) and says how in its docstring, keeping every dataset under
:data:`MAX_ROWS` rows. Empty input gives an empty chart that says so, not an exception.

A series (a trace, a cell, a network) keeps one colour in every chart of the session
(:func:`series_color`; :func:`color_scale` gives your own altair charts the same).

Importing this package changes no global state: call :func:`enable_offline` once in a
notebook so charts render without internet.

Modules by family: ``_timeline`` (timeline, attempts Gantt, cumulative bytes),
``_distributions`` (gaps, latency ECDFs), ``_grid`` (outcome heatmap), ``_vantage``
(three vantage points), ``_replay`` (a recording and its replay), ``_output`` (save,
offline renderer); ``_common`` holds what they share and ``_tables`` turns any input
into tidy tables.
"""

from __future__ import annotations

from ._common import CAUSE_COLORS, MAX_ROWS, color_scale, series_color
from ._distributions import first_chunk_ecdf, gaps, latency_ecdf, ttfb_ecdf
from ._grid import grid_axes, outcome_heatmap
from ._output import enable_offline, save
from ._replay import replay_comparison
from ._timeline import attempts_gantt, cumulative_bytes, timeline
from ._vantage import vantage_points

__all__ = [
    "CAUSE_COLORS",
    "MAX_ROWS",
    "attempts_gantt",
    "color_scale",
    "cumulative_bytes",
    "enable_offline",
    "first_chunk_ecdf",
    "gaps",
    "grid_axes",
    "latency_ecdf",
    "outcome_heatmap",
    "replay_comparison",
    "save",
    "series_color",
    "timeline",
    "ttfb_ecdf",
    "vantage_points",
]
