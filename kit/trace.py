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
from ._clock import now_ns, ns_to_s
from ._fidelity import DEFAULT_BUDGET, Fidelity, server_lateness
from ._redact import redact_text, scrub
from .records import (
    FINAL_SERVER_KINDS,
    AttemptRecord,
    CellLabels,
    Deadline,
    ServerLogEntry,
    TrialRecord,
    fired_deadline,
)
from .tables import CALL_METRICS, METRICS, build

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


# fields an Attempt and its AttemptRecord hold alike, and its time series (arrays here, lists there)
_SAME_FIELDS = (
    "index",
    "request_id",
    "method",
    "url",
    "start_ns",
    "wait_before",
    "headers_ns",
    "status",
    "framing",
    "saw_terminator",
    "end_ns",
    "local_addr",
)
_SERIES = ("chunk_t", "chunk_size", "event_t", "event_size")


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
    request_headers: dict[str, str] = field(default_factory=dict)  # as sent, redacted
    local_addr: str | None = None  # the client socket's "ip:port": a proxy's log of the connection names it
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
    server_log: list[ServerLogEntry] = field(default_factory=list)
    deadlines: list[Deadline] = field(default_factory=list)  # armed by the client (kit.client)
    proxy_late_s: float | None = None  # the proxy's latest forward of this request against plan
    # past Policy.max_recorded: chunks, events and bytes counted but not recorded one by one
    truncated: bool = False
    unrecorded_chunks: int = 0
    unrecorded_events: int = 0
    unrecorded_bytes: int = 0

    @property
    def chunks_received(self) -> int:
        return len(self.chunk_t) + self.unrecorded_chunks

    @property
    def events_received(self) -> int:
        return len(self.event_t) + self.unrecorded_events

    @property
    def bytes_received(self) -> int:
        return sum(self.chunk_size) + self.unrecorded_bytes

    @property
    def first_event_type(self) -> str | None:
        return self.event_type[0] if self.event_type else None

    @property
    def fired(self) -> Deadline | None:
        """The deadline the client armed whose timeout ended this attempt (None if no limit fired)."""
        return fired_deadline(self.deadlines, self.outcome.cause) if self.outcome else None

    @property
    def server_log_complete(self) -> bool:
        """True once the server's log of this attempt has its final entry."""
        return bool(self.server_log) and self.server_log[-1].kind in FINAL_SERVER_KINDS

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

    def connected_from(self, stream: Any) -> None:
        """Record the local ``"ip:port"`` of ``stream`` (httpcore's network stream), once."""
        if self.local_addr is None and stream is not None:
            try:
                addr = stream.get_extra_info("client_addr")
            except Exception:  # another transport: the address stays unknown
                return
            if isinstance(addr, tuple) and len(addr) >= 2:
                self.local_addr = f"{addr[0]}:{addr[1]}"

    def scrub(self, secrets: tuple[str, ...]) -> None:
        """Take the request's own secret values out of whatever the upstream echoed (message, error, headers)."""
        o = self.outcome
        if o is not None and o.message:
            self.outcome = Outcome(o.phase, o.cause, scrub(o.message, secrets))
        if self.error:
            self.error = scrub(self.error, secrets)
        if secrets and self.headers:
            self.headers = {k: scrub(v, secrets) for k, v in self.headers.items()}

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
    client_lag_s: float | None = None  # the most the client's loop lag may have delayed any of the call's stamps
    setup_s: float = 0.0  # the client's set-up before start_ns (one-off warm-up, building a client)

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
        return ns_to_s((self.end_ns or self.start_ns) - self.start_ns)

    # -- records ---------------------------------------------------------------------

    def to_record(
        self, trial_id: str | None = None, cell: int = 0, trial: int = 0, seed: int = 0, *, budget: float | None = None
    ) -> TrialRecord:
        """This call as a :class:`~kit.records.TrialRecord` (what an experiment journals).

        URLs and response headers are already redacted by the client; messages and
        errors are redacted again here. The record carries :attr:`fidelity`, judged
        against ``budget`` (s; default: the kit's 2 ms).
        """
        attempts = []
        for a in self.attempts:
            o = a.outcome
            attempts.append(
                AttemptRecord(
                    **{f: getattr(a, f) for f in _SAME_FIELDS},
                    **{f: getattr(a, f).tolist() for f in _SERIES},
                    connection=tuple((n, t) for n, t in a.connection),
                    headers=dict(a.headers),
                    request_headers=dict(a.request_headers),
                    event_type=list(a.event_type),
                    phase=o.phase if o else "connect",
                    cause=o.cause if o else "cancelled",
                    message=redact_text(o.message) if o else "",
                    error=redact_text(a.error) if a.error else None,
                    server=tuple(a.server_log),
                    deadlines=tuple(a.deadlines),
                )
            )
        return TrialRecord(
            trial_id=trial_id if trial_id is not None else (self.label or "trace"),
            cell=cell,
            trial=trial,
            seed=seed,
            url=self.url,
            protocol=self.protocol,
            start_ns=self.start_ns,
            end_ns=self.end_ns if self.end_ns is not None else now_ns(),
            attempts=tuple(attempts),
            fidelity=self._fidelity_record(budget),
        )

    def _fidelity_record(self, budget: float | None) -> dict[str, Any]:
        fid = self.fidelity
        return {
            **fid.to_dict(),
            "kit_added_s": fid.kit_added_s,
            "within_budget": fid.within(DEFAULT_BUDGET if budget is None else budget),
        }

    @classmethod
    def from_record(
        cls,
        record: TrialRecord | dict[str, Any],
        *,
        policy: dict[str, Any] | None = None,
        scenario: dict[str, Any] | None = None,
        label: str | None = None,
    ) -> Trace:
        """A Trace from a record (e.g. a line of an experiment's journal); ``label`` defaults to its trial id."""
        r = TrialRecord.coerce(record)
        trace = cls(
            url=r.url,
            protocol=r.protocol,
            start_ns=r.start_ns,
            end_ns=r.end_ns,
            policy=dict(policy or {}),
            scenario=scenario,
            label=label if label is not None else r.trial_id,
        )
        for a in r.attempts:
            trace.attempts.append(
                Attempt(
                    **{f: getattr(a, f) for f in _SAME_FIELDS},
                    **{f: array("q", getattr(a, f)) for f in _SERIES},
                    protocol=r.protocol,
                    connection=list(a.connection),
                    headers=dict(a.headers),
                    request_headers=dict(a.request_headers),
                    event_type=list(a.event_type),
                    outcome=Outcome(a.phase, a.cause, a.message),
                    error=a.error,
                    server_log=list(a.server),
                    deadlines=list(a.deadlines),
                )
            )
        return trace

    # -- DataFrame views (built by kit.tables, as every table is) ----------------------

    def _tables(self) -> dict[str, pd.DataFrame]:
        for a in self.attempts:
            a.refresh_server_log()
        tables, _ = build([self.to_record()], [CellLabels(0, self.label or "")])
        return tables

    def _view(self, name: str) -> pd.DataFrame:
        return self._tables()[name].drop(columns="trial_id")

    @property
    def chunks(self) -> pd.DataFrame:
        """One row per received body chunk: time (``t`` s since the call start, ``t_ns``),
        ``size``, cumulative bytes within the attempt, ``gap`` since the previous chunk."""
        return self._view("chunks")

    @property
    def events(self) -> pd.DataFrame:
        """One row per parsed event (SSE event or NDJSON line): time, ``type``, ``size`` in bytes."""
        return self._view("events")

    @property
    def server(self) -> pd.DataFrame:
        """What the server wrote, when: one row per log entry of every attempt, with
        ``t`` (s since the call start) and ``late_s`` (actual minus scheduled send time)."""
        return self._view("server")

    @property
    def connection(self) -> pd.DataFrame:
        """The httpcore connection events of every attempt (connect, send, headers...)."""
        return self._view("connection")

    @property
    def deadlines_df(self) -> pd.DataFrame:
        """The deadlines the client armed, one row each: ``phase``, ``cause`` (the timeout),
        ``limit_s``, when due (``t``, ``at_ns``), and ``fired`` (the one that ended its attempt)."""
        return self._view("deadlines")

    @property
    def attempts_df(self) -> pd.DataFrame:
        """One row per attempt: timings (s since the call start), status, framing, outcome."""
        return self._view("attempts")

    def summary(self) -> pd.Series:
        """The call metrics of :data:`METRICS` for this call (a Series; see ``METRICS`` for definitions)."""
        row = self._tables()["trials"].iloc[0]
        values = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in CALL_METRICS}
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
