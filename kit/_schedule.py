"""Sans-IO: turn one attempt's :class:`~kit.scenarios.Plan` into timed write actions.

The fault server executes the actions; keeping the timing and framing decisions here,
away from sockets, makes them testable without a network and keeps the server's hot
loop small. Times are seconds after the response headers were written. The response
values and the last step every answer takes are in :mod:`kit._response`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ._api import compact
from ._json_answer import json_response
from ._recorded import SERVER_HEADERS, Replay
from ._response import BINARY, Action, Response, _finish, _status_response
from .faults import (
    Close,
    ErrorEvent,
    Hostile,
    HttpStatus,
    Malformed,
    NoTerminator,
    Reset,
    Stall,
    TruncatedChunk,
    WrongFormat,
)
from .protocols import Protocol
from .scenarios import Plan

__all__ = ["Action", "Response", "build_response"]


def build_response(plan: Plan, *, request_id: str = "", stream: bool = True) -> Response:
    """The complete response for ``plan``; see :class:`Action` for the operations.

    ``request_id`` is the API-style id (``request-id`` header, error bodies); ``stream=False``
    answers a non-streaming request (``"stream": false``) with the API's JSON, the
    scenario's faults applied to it (:mod:`kit._json_answer`).
    """
    sc = plan.scenario
    protocol = Protocol.of(sc.protocol)
    status_fault = plan.fault(HttpStatus)
    if isinstance(status_fault, HttpStatus):
        return _status_response(protocol, status_fault, sc.headers_delay, request_id)
    if not stream and protocol.api.message is not None and plan.fault(Hostile) is None and sc.replay is None:
        return json_response(plan, request_id)

    units = plan.units
    if plan.fault(NoTerminator) is not None:
        units = tuple(u for u in units if not u.terminator)

    wrong = plan.fault(WrongFormat)
    content_type = protocol.content_type
    if isinstance(wrong, WrongFormat):
        if wrong.what == "other_protocol":
            other = Protocol.of(protocol.other)
            units = other.units(sc.events, sc.event_size)
            pad = [plan.gaps[-1] if plan.gaps else 0.0] * max(0, len(units) - 1 - len(plan.gaps))
            plan = dataclasses.replace(plan, units=units, gaps=[*plan.gaps, *pad])
            return _finish(sc, _timeline(plan, units, request_id), other.content_type, plan, request_id)
        if wrong.what == "json":
            content_type = "application/json"
            body = protocol.api.message_body("A whole message, not a stream.", 8) or compact({"text": "x"})
        else:
            content_type = BINARY
            body = plan.rng("wrong_format").randbytes(2048)
        actions = [
            Action(sc.first_byte_delay, "write", "wrong_format", body),
            Action(sc.first_byte_delay, "end", "end"),
        ]
        return _finish(sc, actions, content_type, plan, request_id)

    resp = _finish(sc, _timeline(plan, units, request_id), content_type, plan, request_id)
    return _replayed(sc.replay, resp) if sc.replay is not None else resp


def _replayed(replay: Replay, resp: Response) -> Response:
    """``resp`` with the recorded status and headers (the framing headers stay the server's)."""
    if resp.status != 200:  # a fault (HttpStatus) replaced the recorded answer
        return resp
    # the server's own: the framing it writes and the API-style request id of this replay
    framing = [(k, v) for k, v in resp.headers if k in SERVER_HEADERS]
    return dataclasses.replace(resp, status=replay.status, reason=replay.reason, headers=[*replay.headers, *framing])


def _timeline(plan: Plan, units, request_id: str = "") -> Iterator[Action]:
    """The actions of a streamed body, produced lazily so a request starts at once."""
    sc = plan.scenario
    protocol = Protocol.of(sc.protocol)
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
                yield Action(t, "write", "error", protocol.error_event(fault.error_type, fault.message, request_id))
                yield Action(t, "end", "end")
                return
            elif isinstance(fault, Malformed):
                yield Action(t, "write", "malformed", protocol.malformed(fault.what))
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
