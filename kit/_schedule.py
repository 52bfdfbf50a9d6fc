"""Sans-IO: turn one attempt's :class:`~kit.scenarios.Plan` into timed write actions.

The fault server executes the actions; keeping the timing and framing decisions here,
away from sockets, makes them testable without a network and keeps the server's hot
loop small. Times are seconds after the response headers were written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from ._api import compact, shape
from .protocols import error_bytes, generate_units, malformed_bytes, ping_bytes
from .scenarios import (
    Buffer,
    Close,
    ErrorEvent,
    Hostile,
    HttpStatus,
    Malformed,
    NoTerminator,
    Plan,
    Reset,
    Scenario,
    Stall,
    TruncatedChunk,
    WrongFormat,
)

__all__ = ["Action", "Response", "build_response"]

Op = Literal["write", "raw", "end", "close", "reset", "truncate", "hang"]


@dataclass(frozen=True, slots=True)
class Action:
    """At ``t`` seconds after the headers: write ``data`` (a body piece, unframed) or end.

    ``raw``: write ``data`` as is, outside the body's framing (hostile bytes);
    ``end``: finish the body cleanly; ``close``: FIN mid-framing; ``reset``: RST;
    ``truncate``: declare a chunk of ``len(data) * 2`` bytes, write ``data``, FIN;
    ``hang``: stop writing forever (pings continue if ``ping`` is set).
    """

    t: float
    op: Op
    kind: str
    data: bytes = b""


@dataclass(frozen=True)
class Response:
    """What the server sends for one attempt: status, headers, framing, timed actions."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    framing: str
    actions: Iterable[Action]
    headers_delay: float
    ping: bytes | None = None
    ping_every: float | None = None
    content_length: int | None = None
    endless_headers: bool = False


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}

_CONTENT_TYPES = {
    "anthropic": "text/event-stream; charset=utf-8",
    "openai": "text/event-stream; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "raw": "application/octet-stream",
}


def error_json(protocol: str, status: int, error_type: str | None, message: str, request_id: str = "") -> bytes:
    """The API's JSON error body for a status response (see :mod:`kit._api`)."""
    return shape(protocol).error_body(status, error_type, message, request_id)


#: the protocol whose SSE stream a misrouted gateway sends instead (``WrongFormat("other_protocol")``)
OTHER_PROTOCOL = {"anthropic": "openai", "openai": "anthropic", "ndjson": "anthropic", "raw": "anthropic"}


def build_response(plan: Plan, *, request_id: str = "", stream: bool = True) -> Response:
    """The complete response for ``plan``; see :class:`Action` for the operations.

    ``request_id`` is the API-style id (``request-id`` header, error bodies); ``stream=False``
    answers a non-streaming request (``"stream": false``) with the API's JSON, the
    scenario's faults applied to it (:mod:`kit._json_answer`).
    """
    sc = plan.scenario
    status_fault = plan.fault(HttpStatus)
    if isinstance(status_fault, HttpStatus):
        return _status_response(sc.protocol, status_fault, sc.headers_delay, request_id)
    if not stream and shape(sc.protocol).message is not None and plan.fault(Hostile) is None and sc.replay is None:
        from ._json_answer import json_response

        return json_response(plan, request_id)

    units = plan.units
    if plan.fault(NoTerminator) is not None:
        units = tuple(u for u in units if not u.terminator)

    wrong = plan.fault(WrongFormat)
    content_type = _CONTENT_TYPES[sc.protocol]
    if isinstance(wrong, WrongFormat):
        if wrong.what == "other_protocol":
            other = OTHER_PROTOCOL[sc.protocol]
            units = generate_units(other, sc.events, sc.event_size)
            pad = [plan.gaps[-1] if plan.gaps else 0.0] * max(0, len(units) - 1 - len(plan.gaps))
            plan = dataclasses.replace(plan, units=units, gaps=[*plan.gaps, *pad])
            return _finish(sc, _timeline(plan, units, request_id), _CONTENT_TYPES[other], plan, request_id)
        if wrong.what == "json":
            content_type = "application/json"
            body = shape(sc.protocol).message_body("A whole message, not a stream.", 8) or compact({"text": "x"})
        else:
            content_type = "application/octet-stream"
            body = plan.rng("wrong_format").randbytes(2048)
        actions = [
            Action(sc.first_byte_delay, "write", "wrong_format", body),
            Action(sc.first_byte_delay, "end", "end"),
        ]
        return _finish(sc, actions, content_type, plan, request_id)

    resp = _finish(sc, _timeline(plan, units, request_id), content_type, plan, request_id)
    return sc.replay.response(resp) if sc.replay is not None else resp


def _timeline(plan: Plan, units, request_id: str = "") -> Iterator[Action]:
    """The actions of a streamed body, produced lazily so a request starts at once."""
    sc = plan.scenario
    t = sc.first_byte_delay
    for i in range(len(units) + 1):
        for fault in plan.faults_at(i):
            if isinstance(fault, Stall):
                if fault.duration is None:
                    yield Action(t, "hang", "stall")
                    return
                yield Action(t, "write", "stall_start")  # zero bytes: a log marker
                t += fault.duration
            elif isinstance(fault, Close):
                yield Action(t, "end" if fault.clean else "close", "close")
                return
            elif isinstance(fault, Reset):
                yield Action(t, "reset", "reset")
                return
            elif isinstance(fault, ErrorEvent):
                yield Action(t, "write", "error", error_bytes(sc.protocol, fault.error_type, fault.message, request_id))
                yield Action(t, "end", "end")
                return
            elif isinstance(fault, Malformed):
                yield Action(t, "write", "malformed", malformed_bytes(sc.protocol, fault.what))
            elif isinstance(fault, Hostile):
                yield from _hostile(plan, fault, t)
                if fault.what != "invalid_utf8":
                    return
            elif isinstance(fault, TruncatedChunk):
                nxt = units[i].payload if i < len(units) else b"partial chunk payload"
                yield Action(t, "truncate", "truncated_chunk", nxt[: max(1, len(nxt) // 2)])
                return
        if i == len(units):
            yield Action(t, "end", "end")
            return
        unit = units[i]
        yield Action(t, "write", unit.kind, unit.payload)
        if i < len(units) - 1:
            t += plan.gaps[i]


def _hostile(plan: Plan, fault: Hostile, t: float) -> Iterator[Action]:
    """Hostile bytes at ``t``; every kind but ``invalid_utf8`` ends the response."""
    rng = plan.rng("hostile")
    if fault.what == "random_bytes":
        left = fault.size
        while left > 0:
            n = min(left, rng.randint(1, 4096))
            yield Action(t, "write", "random_bytes", rng.randbytes(n))
            left -= n
        yield Action(t, "end", "end")
    elif fault.what == "huge_event":
        piece = b"x" * 65536
        yield Action(t, "write", "huge_event", b"data: ")
        left = fault.size
        while left > 0:
            yield Action(t, "write", "huge_event", piece[: min(left, len(piece))])
            left -= len(piece)
        yield Action(t, "write", "huge_event", b"\n\n")
        yield Action(t, "end", "end")
    elif fault.what == "bad_chunk_size":
        yield Action(t, "raw", "bad_chunk_size", b"zz\r\nnot a hex size\r\n")
        yield Action(t, "close", "close")
    elif fault.what == "invalid_utf8":
        event = b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"\xff\xfe\xc3"}}\n\n'
        yield Action(t, "write", "invalid_utf8", event)


def _rechunked(actions: Iterable[Action], rng) -> Iterator[Action]:
    """Cut every write into HTTP chunks of random sizes (1 byte to 1 KiB): still a valid body."""
    for a in actions:
        if a.op != "write" or len(a.data) <= 1:
            yield a
            continue
        data, i = a.data, 0
        while i < len(data):
            n = rng.randint(1, 1024)
            yield Action(a.t, "write", a.kind, data[i : i + n])
            i += n


def _finish(sc: Scenario, actions: Iterable[Action], content_type: str, plan: Plan, request_id: str = "") -> Response:
    ping = ping_bytes(sc.protocol) if sc.ping_every else None
    if ping is not None:
        actions = _with_pings(actions, ping, sc.ping_every)
    buffer = plan.fault(Buffer)
    if isinstance(buffer, Buffer):
        actions = _buffered(actions, buffer.until_bytes)
    hostile = plan.fault(Hostile)
    if isinstance(hostile, Hostile) and hostile.what == "random_chunks":
        actions = _rechunked(actions, plan.rng("chunks"))
    headers = [("content-type", content_type), ("cache-control", "no-cache"), *shape(sc.protocol).headers(request_id)]
    declared: int | None = None
    if sc.framing == "length":
        actions = list(actions)  # Content-Length needs the whole body up front
        declared = _declared_length(actions, plan)
        headers.append(("content-length", str(declared)))
    elif sc.framing == "chunked":
        headers.append(("transfer-encoding", "chunked"))
    if sc.framing == "close":
        headers.append(("connection", "close"))
    resp = Response(
        status=200,
        reason="OK",
        headers=headers,
        framing=sc.framing,
        actions=actions,
        headers_delay=sc.headers_delay,
        ping=ping,
        ping_every=sc.ping_every,
        content_length=declared,
        endless_headers=isinstance(hostile, Hostile) and hostile.what == "endless_headers",
    )
    return resp


def _declared_length(actions: list[Action], plan: Plan) -> int:
    """Content-Length: the bytes up to a clean end, or the whole healthy body if cut."""
    written = sum(len(a.data) for a in actions if a.op == "write")
    if any(a.op == "end" for a in actions):
        return written
    healthy = sum(len(u.payload) for u in plan.units)
    return max(healthy, written + 1)


def _with_pings(actions: Iterable[Action], ping: bytes, every: float) -> Iterator[Action]:
    """Insert pings wherever the body would otherwise be silent for ``every`` seconds."""
    last = 0.0
    for a in actions:
        while a.t - last >= every:
            last += every
            yield Action(last, "write", "ping", ping)
        yield a
        if a.op == "write" and a.data:
            last = a.t


def _buffered(actions: Iterable[Action], until: int | None) -> Iterator[Action]:
    """Hold writes until ``until`` bytes are pending (or the end), then release them at once."""
    pending: list[bytes] = []
    size = 0
    for a in actions:
        if a.op == "write":
            if not a.data:
                continue
            pending.append(a.data)
            size += len(a.data)
            if until is not None and size >= until:
                yield Action(a.t, "write", f"buffered({len(pending)})", b"".join(pending))
                pending, size = [], 0
            continue
        if pending:
            yield Action(a.t, "write", f"buffered({len(pending)})", b"".join(pending))
            pending, size = [], 0
        yield a


def _status_response(protocol: str, fault: HttpStatus, headers_delay: float, request_id: str = "") -> Response:
    message = fault.message or _REASONS.get(fault.status, "Error")
    body = error_json(protocol, fault.status, fault.error_type, message, request_id)
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    headers += shape(protocol).headers(request_id)
    if fault.retry_after is not None:
        ra = fault.retry_after
        headers.append(("retry-after", str(int(ra)) if float(ra).is_integer() else str(ra)))
    if fault.retry_after_ms is not None:
        headers.append(("retry-after-ms", str(fault.retry_after_ms)))
    headers.extend(fault.headers)
    return Response(
        status=fault.status,
        reason=_REASONS.get(fault.status, "Error"),
        headers=headers,
        framing="length",
        actions=iter([Action(0.0, "write", "error_body", body), Action(0.0, "end", "end")]),
        headers_delay=headers_delay,
        content_length=len(body),
    )
