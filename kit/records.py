"""Records: what one trial left behind, as typed values (the only producer of record dicts).

Every source of traces produces these: the kit's client (:meth:`kit.Trace.to_record`),
an experiment's journal (``trials.jsonl``, one :meth:`TrialRecord.to_dict` per line),
HAR import, CSV evidence. :mod:`kit.tables` turns a sequence of them into the tidy
DataFrames; nothing else builds tables.

- :class:`ServerLogEntry`: one thing the fault server did (its log row).
- :class:`AttemptRecord`: one HTTP request as the client saw it, plus the server's log of it.
- :class:`TrialRecord`: one logical call (its attempts) with its place in a grid.
- :class:`CellLabels`: the labels and flat parameters of the cell a trial belongs to;
  plain strings and numbers, so a recording, a HAR file or a CSV can name its own.

Times are ``perf_counter_ns`` integers (``*_ns``); a JSON round trip
(``from_dict(to_dict())``) gives an equal record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

__all__ = [
    "FINAL_SERVER_KINDS",
    "AttemptRecord",
    "CellLabels",
    "Deadline",
    "ServerLogEntry",
    "TrialRecord",
    "fired_deadline",
]

# server log kinds after which the server writes nothing more for that request
FINAL_SERVER_KINDS = frozenset({"end", "close", "reset", "truncate", "client_closed"})


@dataclass(frozen=True, slots=True)
class ServerLogEntry:
    """One thing the server did. Times are ``perf_counter_ns``.

    ``kind``: accept, request, headers, a unit kind (message_start, content_block_delta,
    ping, chunk...), stall_start, end, close, reset, truncate, client_closed, error.
    ``scheduled_ns`` is when the plan wanted it, ``t_ns`` when it happened; ``nbytes``
    counts bytes on the wire (status line, headers and chunk framing included),
    ``body_bytes`` the payload among them (what a client reads once the framing is
    removed; a request's body for ``request``). ``body_bytes`` is None in logs recorded
    before the server logged it (older journals and bundles).
    For ``client_closed`` (the client went away first) ``scheduled_ns`` is when the write
    the server was waiting to make was due (the headers, the first byte, the next event),
    ``t_ns`` if it was waiting for nothing.
    """

    request_id: str
    connection: int
    scenario: str
    attempt: int
    seq: int
    kind: str
    nbytes: int
    scheduled_ns: int
    t_ns: int
    body_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _SERVER_FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Sequence[Any]) -> ServerLogEntry:
        """From :meth:`to_dict` (or the positional list older journals wrote)."""
        if isinstance(d, Mapping):
            return cls(**{f: d[f] for f in _SERVER_FIELDS if f in d or f != "body_bytes"})
        return cls(*d)


_SERVER_FIELDS = tuple(f.name for f in fields(ServerLogEntry))


class Deadline(NamedTuple):
    """A deadline the client armed: in ``phase``, the limit behind ``cause`` (``timeout.idle``...)
    of ``limit_s`` seconds, due at ``at_ns``. The idle limit's re-arm at each chunk
    replaces its previous entry, so the last entry of a cause is the one that could fire."""

    phase: str
    cause: str
    limit_s: float
    at_ns: int


def fired_deadline(deadlines: Sequence[Deadline], cause: str) -> Deadline | None:
    """The deadline whose timeout is ``cause`` (an attempt's outcome cause), None if no limit fired."""
    if not cause.startswith("timeout."):
        return None
    return next((d for d in reversed(deadlines) if d.cause == cause), None)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One HTTP request of a call: connection events, response, every chunk and event, outcome.

    ``connection`` holds ``(name, t_ns)`` httpcore trace events; ``chunk_t``/``chunk_size``
    one entry per body read, ``event_t``/``event_type``/``event_size`` one per parsed
    event; ``server`` the server's log of this request (empty for other servers);
    ``deadlines`` every deadline the client armed (empty for clients the kit does not drive);
    ``headers`` the response's headers, ``request_headers`` the request's as sent (both redacted);
    ``local_addr`` the client socket's own ``"ip:port"`` (what a proxy logs as the connection's
    client), None where the client did not say (older records, HAR, CSV).
    """

    index: int
    request_id: str
    method: str
    url: str
    start_ns: int
    wait_before: float = 0.0
    connection: tuple[tuple[str, int], ...] = ()
    headers_ns: int | None = None
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    framing: str | None = None
    chunk_t: Sequence[int] = ()
    chunk_size: Sequence[int] = ()
    event_t: Sequence[int] = ()
    event_type: Sequence[str] = ()
    event_size: Sequence[int] = ()
    saw_terminator: bool = False
    end_ns: int | None = None
    phase: str = "connect"
    cause: str = "cancelled"
    message: str = ""
    error: str | None = None
    server: tuple[ServerLogEntry, ...] = ()
    deadlines: tuple[Deadline, ...] = ()
    request_headers: Mapping[str, str] = field(default_factory=dict)
    local_addr: str | None = None

    @property
    def fired(self) -> Deadline | None:
        """The deadline that ended this attempt (None unless its cause is a timeout)."""
        return fired_deadline(self.deadlines, self.cause)

    @property
    def ok(self) -> bool:
        """True only for a complete stream: terminator seen and the body ended cleanly."""
        return self.phase == "done" and self.cause == "ok"

    @property
    def connected_ns(self) -> int | None:
        return next((t for n, t in self.connection if n == "connection.connect_tcp.complete"), None)

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in _ATTEMPT_FIELDS}
        d["connection"] = [[n, t] for n, t in self.connection]
        d["headers"] = dict(self.headers)
        d["request_headers"] = dict(self.request_headers)
        for f in ("chunk_t", "chunk_size", "event_t", "event_type", "event_size"):
            d[f] = list(d[f])
        d["server"] = [e.to_dict() for e in self.server]
        d["deadlines"] = [list(x) for x in self.deadlines]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttemptRecord:
        kw = {f: d[f] for f in _ATTEMPT_FIELDS if f in d}
        kw["connection"] = tuple((str(n), int(t)) for n, t in d.get("connection", ()))
        kw["headers"] = dict(d.get("headers") or {})
        kw["request_headers"] = dict(d.get("request_headers") or {})  # journals before it have none
        kw["server"] = tuple(ServerLogEntry.from_dict(e) for e in d.get("server", ()))
        kw["deadlines"] = tuple(Deadline(*x) for x in d.get("deadlines", ()))
        return cls(**kw)


_ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptRecord))


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """One logical call: its attempts, and where it sits in a grid (``cell``, ``trial``, ``seed``).

    ``fidelity``: the kit's own lateness during the call (``server_late_s``,
    ``proxy_late_s``, ``client_lag_s``, ``kit_added_s``; None where a vantage was absent)
    and ``within_budget``, judged against the budget of the run that recorded it; None
    for sources that cannot know (HAR, CSV evidence).
    """

    trial_id: str
    cell: int
    trial: int
    seed: int
    url: str
    protocol: str
    start_ns: int
    end_ns: int
    attempts: tuple[AttemptRecord, ...] = ()
    fidelity: Mapping[str, Any] | None = None

    @property
    def last(self) -> AttemptRecord | None:
        """The last attempt (whose outcome is the call's), None if none was made."""
        return self.attempts[-1] if self.attempts else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a line of an experiment's ``trials.jsonl``)."""
        d = {f: getattr(self, f) for f in _TRIAL_FIELDS}
        d["attempts"] = [a.to_dict() for a in self.attempts]
        d["fidelity"] = dict(self.fidelity) if self.fidelity is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialRecord:
        kw = {f: d[f] for f in _TRIAL_FIELDS if f != "fidelity"}
        kw["attempts"] = tuple(AttemptRecord.from_dict(a) for a in d["attempts"])
        kw["fidelity"] = d.get("fidelity")  # journals before the fidelity budget have none
        return cls(**kw)

    @classmethod
    def coerce(cls, r: TrialRecord | Mapping[str, Any]) -> TrialRecord:
        """A record as is, or one from its :meth:`to_dict` form."""
        return r if isinstance(r, TrialRecord) else cls.from_dict(r)


_TRIAL_FIELDS = tuple(f.name for f in fields(TrialRecord))


@dataclass(frozen=True, slots=True)
class CellLabels:
    """The cell of a grid a trial belongs to, as plain labels any source can give.

    ``params`` are the cell's flat ``scenario.<field>``, ``network.<field>`` and
    ``policy.<field>`` columns (see :func:`kit._params.flat_params`); ``key`` a stable id
    of its content (empty when the source has none, e.g. a HAR file).
    """

    index: int
    scenario: str
    network: str = "direct"
    policy: str = ""
    key: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The cell's row of ``Result.meta["cells"]``."""
        return {
            "cell": self.index,
            "key": self.key,
            "scenario": self.scenario,
            "network": self.network,
            "policy": self.policy,
        }
