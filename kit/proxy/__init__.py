"""The network-conditions proxy: a userspace TCP proxy that applies toxics, and logs.

``NetworkProxy(upstream=server.address, latency="200ms")`` listens on loopback and
forwards every connection to ``upstream`` through the toxics in effect (see
:mod:`kit.network`). It is the *network* vantage point of a trace: per connection and
direction it logs every forward (when the bytes arrived, when they left, which toxics
applied) and every connection event (open, upstream connect or refusal, EOF, stall,
reset, close), on the kit's shared clock.

The package, from the bytes up:

- ``_pipe``: one socket side and one direction's pipe (fast path, queue, the toxic
  planner that decides when each piece leaves, backpressure);
- ``_connection``: one proxied connection (two sides, two pipes, toxicity rolls,
  timed toxics such as ``ResetPeer``, shutdown and its record);
- ``_api``: :class:`NetworkProxy` (lifecycle on a background loop, addresses, live
  toxic changes, logs);
- ``_views``: the logs as rows and DataFrames (column lists; pure functions).
"""

from __future__ import annotations

from ._api import NetworkProxy
from ._pipe import BANDWIDTH_QUANTUM, HIGH_WATER, READ_SIZE
from ._views import CONNECTION_COLUMNS, EVENT_COLUMNS, FORWARD_COLUMNS

__all__ = [
    "BANDWIDTH_QUANTUM",
    "CONNECTION_COLUMNS",
    "EVENT_COLUMNS",
    "FORWARD_COLUMNS",
    "HIGH_WATER",
    "READ_SIZE",
    "NetworkProxy",
]
