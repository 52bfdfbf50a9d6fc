"""Sans-IO: the response of one attempt as data (:class:`Response`, timed :class:`Action` s).

Shared by the streamed answer (:mod:`kit._schedule`) and the non-streaming JSON answer
(:mod:`kit._json_answer`): the response values, status and error bodies, and the last
step both take (:func:`_finish`: pings, buffering, chunking and framing headers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from .faults import Buffer, Hostile, HttpStatus
from .protocols import RAW, Protocol
from .scenarios import Plan, Scenario

__all__ = ["Action", "Response"]

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

BINARY = RAW.content_type  # a body that is no stream at all (``WrongFormat("binary")``)


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
    protocol = Protocol.of(sc.protocol)
    ping = protocol.ping if sc.ping_every else None
    if ping is not None:
        actions = _with_pings(actions, ping, sc.ping_every)
    buffer = plan.fault(Buffer)
    if isinstance(buffer, Buffer):
        actions = _buffered(actions, buffer.until_bytes)
    hostile = plan.fault(Hostile)
    if isinstance(hostile, Hostile) and hostile.what == "random_chunks":
        actions = _rechunked(actions, plan.rng("chunks"))
    headers = [("content-type", content_type), ("cache-control", "no-cache"), *protocol.api.headers(request_id)]
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


def _status_response(protocol: Protocol, fault: HttpStatus, headers_delay: float, request_id: str = "") -> Response:
    message = fault.message or _REASONS.get(fault.status, "Error")
    body = protocol.api.error_body(fault.status, fault.error_type, message, request_id)
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    headers += protocol.api.headers(request_id)
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
