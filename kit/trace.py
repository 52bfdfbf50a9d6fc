"""The trace: what happened to one streaming call, on one clock, as data.

A :class:`Trace` is one logical call; it holds one :class:`Attempt` per HTTP request
(retries add attempts). Each attempt records its connection events, status and
(redacted) headers, every received chunk and parsed event, the server's log of what
it wrote, and an :class:`Outcome`: **phase x cause**.

Phases (where it ended): ``connect``, ``send``, ``headers`` (waiting for the status
line), ``first_chunk`` (headers in, no body byte yet), ``stream`` (some body, no
terminator), ``done`` (terminator seen: ``message_stop``, ``[DONE]``, or the end of a
raw/NDJSON body).

Causes (why): ``ok``; ``timeout.connect``, ``timeout.headers``, ``timeout.first_chunk``,
``timeout.idle``, ``timeout.total`` (the client's own limits); ``refused``; ``reset``
(RST); ``closed`` (the connection closed before the HTTP body was complete: chunked
framing unfinished, fewer bytes than Content-Length, or no response at all);
``ended`` (the HTTP body ended cleanly, by zero-length chunk, Content-Length or EOF of
a close-delimited body, but without the protocol's terminator); ``http_status``;
``error_event``; ``malformed``; ``cancelled``. Whether an EOF is ``closed`` or
``ended`` depends on the framing, which each attempt records.

All times are ``perf_counter_ns`` integers (``*_ns``) or seconds since the start of
the call (``t``) in the DataFrame views.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import _registry
from ._fidelity import Fidelity, server_lateness

__all__ = [
    "CAUSES",
    "METRICS",
    "PHASES",
    "Attempt",
    "Outcome",
    "Trace",
]

PHASES = ("connect", "send", "headers", "first_chunk", "stream", "done")
CAUSES = (
    "ok",
    "timeout.connect",
    "timeout.headers",
    "timeout.first_chunk",
    "timeout.idle",
    "timeout.total",
    "refused",
    "reset",
    "closed",
    "ended",
    "http_status",
    "error_event",
    "malformed",
    "cancelled",
)

_FINAL_SERVER_KINDS = frozenset({"end", "close", "reset", "truncate", "client_closed"})

CHUNK_COLUMNS = ["attempt", "request_id", "seq", "t_ns", "t", "t_attempt", "size", "cum_bytes", "gap"]
EVENT_COLUMNS = ["attempt", "request_id", "seq", "t_ns", "t", "t_attempt", "type", "size"]
SERVER_COLUMNS = ["request_id", "connection", "scenario", "attempt", "seq", "kind", "nbytes", "scheduled_ns", "t_ns"]
CONNECTION_COLUMNS = ["attempt", "request_id", "name", "t_ns", "t"]

METRICS: dict[str, str] = {
    "ttfb_s": "time to first byte: call start to the response status line and headers of the last attempt (s)",
    "first_chunk_s": "time to first chunk: call start to the first body byte of the last attempt (s)",
    "first_event_s": "time to first event: call start to the first parsed event of the last attempt (s)",
    "duration_s": "call start to the end of the last attempt, retries and waits included (s)",
    "bytes": "body bytes received by the last attempt (after HTTP de-chunking)",
    "chunks": "body chunks received by the last attempt (one per socket read that carried body bytes)",
    "events": "events parsed by the last attempt (SSE events or NDJSON lines, pings included)",
    "max_gap_s": "largest gap between consecutive body chunks of the last attempt, after the first (s)",
    "attempts": "HTTP requests made for this call",
}


@dataclass(frozen=True)
class Outcome:
    """How an attempt (or a call) ended: ``phase`` x ``cause``, with the client's ``message``."""

    phase: str
    cause: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """True only for a complete stream: terminator seen and the body ended cleanly."""
        return self.phase == "done" and self.cause == "ok"

    def __str__(self) -> str:
        return f"{self.phase}/{self.cause}" + (f": {self.message}" if self.message else "")


@dataclass
class Attempt:
    """One HTTP request of a call, as the client saw it (plus the server's log of it)."""

    index: int
    request_id: str
    method: str
    url: str
    start_ns: int
    protocol: str = "anthropic"
    wait_before: float = 0.0
    connection: list[tuple[str, int]] = field(default_factory=list)
    headers_ns: int | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    framing: str | None = None
    chunk_t: array = field(default_factory=lambda: array("q"))
    chunk_size: array = field(default_factory=lambda: array("q"))
    event_t: array = field(default_factory=lambda: array("q"))
    event_type: list[str] = field(default_factory=list)
    event_size: array = field(default_factory=lambda: array("q"))
    saw_terminator: bool = False
    end_ns: int | None = None
    outcome: Outcome | None = None
    error: str | None = None
    server_log: list[Any] = field(default_factory=list)
    deadlines: dict[str, float] = field(default_factory=dict)
    proxy_late_s: float | None = None  # the proxy's latest forward of this request against plan

    @property
    def chunks_received(self) -> int:
        return len(self.chunk_t)

    @property
    def events_received(self) -> int:
        return len(self.event_t)

    @property
    def bytes_received(self) -> int:
        return sum(self.chunk_size)

    @property
    def first_event_type(self) -> str | None:
        return self.event_type[0] if self.event_type else None

    @property
    def server_log_complete(self) -> bool:
        """True once the server's log of this attempt has its final entry."""
        return bool(self.server_log) and self.server_log[-1].kind in _FINAL_SERVER_KINDS

    async def await_server_log(self, timeout: float = 1.0) -> None:
        """Wait (briefly) until the server's log of this attempt is complete.

        Only needed with a server in another process, whose log arrives a moment after
        the client saw the end; gives up after ``timeout`` seconds.
        """
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout
        self.refresh_server_log()
        while not self.server_log_complete and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.002)
            self.refresh_server_log()

    def refresh_server_log(self) -> None:
        """Pick up server log entries that arrived after the attempt ended.

        A server in another process (``FaultServer(isolate=True)``) ships its log a few
        milliseconds late, and a server keeps logging after a client gives up (it
        notices the disconnect later); the log is complete once it has a final entry.
        The proxy's lateness for this request (if a proxy carried it) is picked up too.
        """
        late = _registry.find_proxy_late(self.request_id)
        if late is not None:
            self.proxy_late_s = late
        if self.server_log_complete:
            return
        entries = _registry.find_server_log(self.request_id)  # same-process servers only
        if len(entries) > len(self.server_log):
            self.server_log = entries

    def event_time(self, name: str) -> int | None:
        """The time of the first connection event called ``name`` (httpcore trace names)."""
        return next((t for n, t in self.connection if n == name), None)

    @property
    def connected_ns(self) -> int | None:
        return self.event_time("connection.connect_tcp.complete")

    @property
    def first_chunk_ns(self) -> int | None:
        return self.chunk_t[0] if self.chunk_t else None

    @property
    def first_event_ns(self) -> int | None:
        return self.event_t[0] if self.event_t else None


@dataclass
class Trace:
    """One streaming call: its attempts, their outcomes and DataFrame views.

    ``outcome`` is the last attempt's; ``chunks``, ``events``, ``server`` and
    ``connection`` are tidy DataFrames; :meth:`summary` gives the named metrics of
    :data:`METRICS`.
    """

    url: str
    protocol: str
    start_ns: int
    attempts: list[Attempt] = field(default_factory=list)
    end_ns: int | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    scenario: dict[str, Any] | None = None
    label: str | None = None
    client_lag_s: float | None = None  # the most the client's loop ran late during the call

    # -- outcome -----------------------------------------------------------------

    @property
    def outcome(self) -> Outcome:
        """The last attempt's outcome (``cancelled`` if no attempt was made)."""
        if not self.attempts or self.attempts[-1].outcome is None:
            return Outcome("connect", "cancelled", "no attempt completed")
        return self.attempts[-1].outcome

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def attempt(self) -> Attempt:
        """The last attempt."""
        return self.attempts[-1]

    @property
    def fidelity(self) -> Fidelity:
        """The kit's own lateness during this call: server, proxy, client (see :mod:`kit._fidelity`).

        ``trace.fidelity.within()`` says whether the kit added at most the default budget
        (2 ms) to any timestamp of the call.
        """
        server: float | None = None
        proxy: float | None = None
        for a in self.attempts:
            a.refresh_server_log()
            late = server_lateness(a.server_log)
            if late is not None:
                server = late if server is None else max(server, late)
            if a.proxy_late_s is not None:
                proxy = max(0.0, a.proxy_late_s) if proxy is None else max(proxy, a.proxy_late_s)
        return Fidelity(server_late_s=server, proxy_late_s=proxy, client_lag_s=self.client_lag_s)

    @property
    def duration(self) -> float:
        """Seconds from the call's start to its end."""
        return ((self.end_ns or self.start_ns) - self.start_ns) / 1e9

    def _t(self, ns: int | None) -> float:
        return float("nan") if ns is None else (ns - self.start_ns) / 1e9

    # -- DataFrame views ---------------------------------------------------------

    def _timed_rows(self, times: str, columns: list[str], extra) -> pd.DataFrame:
        """One frame of rows timed by the attempts' ``times`` array, plus ``extra(a, t_ns)`` columns."""
        frames = []
        for a in self.attempts:
            stamps = getattr(a, times)
            if not stamps:
                continue
            t_ns = pd.Series(stamps, dtype="int64")
            base = {
                "attempt": a.index,
                "request_id": a.request_id,
                "seq": range(len(stamps)),
                "t_ns": t_ns,
                "t": (t_ns - self.start_ns) / 1e9,
                "t_attempt": (t_ns - a.start_ns) / 1e9,
            }
            frames.append(pd.DataFrame({**base, **extra(a, t_ns)}))
        return _concat(frames, columns)

    @property
    def chunks(self) -> pd.DataFrame:
        """One row per received body chunk: time (``t`` s since the call start, ``t_ns``),
        ``size``, cumulative bytes within the attempt, ``gap`` since the previous chunk."""

        def extra(a: Attempt, t_ns: pd.Series) -> dict[str, Any]:
            size = pd.Series(a.chunk_size, dtype="int64")
            return {"size": size, "cum_bytes": size.cumsum(), "gap": t_ns.diff() / 1e9}

        return self._timed_rows("chunk_t", CHUNK_COLUMNS, extra)

    @property
    def events(self) -> pd.DataFrame:
        """One row per parsed event (SSE event or NDJSON line): time, ``type``, ``size`` in bytes."""

        def extra(a: Attempt, t_ns: pd.Series) -> dict[str, Any]:
            return {"type": a.event_type, "size": pd.Series(a.event_size, dtype="int64")}

        return self._timed_rows("event_t", EVENT_COLUMNS, extra)

    @property
    def server(self) -> pd.DataFrame:
        """What the server wrote, when: one row per log entry of every attempt, with
        ``t`` (s since the call start) and ``late_s`` (actual minus scheduled send time)."""
        rows = []
        for a in self.attempts:
            a.refresh_server_log()
            for e in a.server_log:
                rows.append(
                    {
                        "attempt": a.index,
                        "request_id": e.request_id,
                        "connection": e.connection,
                        "scenario": e.scenario,
                        "server_attempt": e.attempt,
                        "seq": e.seq,
                        "kind": e.kind,
                        "nbytes": e.nbytes,
                        "scheduled_ns": e.scheduled_ns,
                        "t_ns": e.t_ns,
                        "t": (e.t_ns - self.start_ns) / 1e9,
                        "late_s": (e.t_ns - e.scheduled_ns) / 1e9,
                    }
                )
        cols = [
            "attempt",
            "request_id",
            "connection",
            "scenario",
            "server_attempt",
            "seq",
            "kind",
            "nbytes",
            "scheduled_ns",
            "t_ns",
            "t",
            "late_s",
        ]
        return pd.DataFrame(rows, columns=cols)

    @property
    def connection(self) -> pd.DataFrame:
        """The httpcore connection events of every attempt (connect, send, headers...)."""
        rows = [
            {"attempt": a.index, "request_id": a.request_id, "name": name, "t_ns": t, "t": self._t(t)}
            for a in self.attempts
            for name, t in a.connection
        ]
        return pd.DataFrame(rows, columns=CONNECTION_COLUMNS)

    @property
    def attempts_df(self) -> pd.DataFrame:
        """One row per attempt: timings (s since the call start), status, framing, outcome."""
        rows = []
        for a in self.attempts:
            o = a.outcome or Outcome("connect", "cancelled")
            rows.append(
                {
                    "attempt": a.index,
                    "request_id": a.request_id,
                    "wait_before": a.wait_before,
                    "start": self._t(a.start_ns),
                    "connected": self._t(a.connected_ns),
                    "headers": self._t(a.headers_ns),
                    "first_chunk": self._t(a.first_chunk_ns),
                    "first_event": self._t(a.first_event_ns),
                    "end": self._t(a.end_ns),
                    "status": a.status,
                    "framing": a.framing,
                    "chunks_received": a.chunks_received,
                    "events_received": a.events_received,
                    "bytes_received": a.bytes_received,
                    "first_event_type": a.first_event_type,
                    "saw_terminator": a.saw_terminator,
                    "phase": o.phase,
                    "cause": o.cause,
                    "ok": o.ok,
                    "message": o.message,
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> pd.Series:
        """The named metrics of :data:`METRICS` for this call (a Series; see ``METRICS`` for definitions)."""
        a = self.attempts[-1] if self.attempts else None
        gaps = self.chunks
        if a is not None and len(gaps):
            mine = gaps[gaps["attempt"] == a.index]["gap"].dropna()
            max_gap = float(mine.max()) if len(mine) else float("nan")
        else:
            max_gap = float("nan")
        values = {
            "ttfb_s": self._t(a.headers_ns) if a else float("nan"),
            "first_chunk_s": self._t(a.first_chunk_ns) if a else float("nan"),
            "first_event_s": self._t(a.first_event_ns) if a else float("nan"),
            "duration_s": self.duration,
            "bytes": a.bytes_received if a else 0,
            "chunks": a.chunks_received if a else 0,
            "events": a.events_received if a else 0,
            "max_gap_s": max_gap,
            "attempts": len(self.attempts),
        }
        return pd.Series(values, name=self.label or "trace", dtype="object")

    def vantage(self, proxy: Any = None) -> pd.DataFrame:
        """One row per server write: server-sent, proxy-forwarded, client-received (see :func:`kit.vantage.table`)."""
        from .vantage import table

        return table(self, proxy)

    def to_har(self, path: str | None = None) -> dict[str, Any]:
        """HAR 1.2 of this call (an entry per attempt, secrets redacted); see :mod:`kit.har`."""
        from .har import trace_to_har

        return trace_to_har(self, path)

    def __repr__(self) -> str:
        return (
            f"<Trace {self.label or self.url} {self.outcome.phase}/{self.outcome.cause} "
            f"attempts={len(self.attempts)} chunks={sum(a.chunks_received for a in self.attempts)} "
            f"{self.duration:.3f}s>"
        )


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(
            {
                c: pd.Series(
                    dtype="float64"
                    if c in ("t", "t_attempt", "gap")
                    else "int64"
                    if c not in ("request_id", "type")
                    else "object"
                )
                for c in columns
            }
        )
    return pd.concat(frames, ignore_index=True)[columns]
