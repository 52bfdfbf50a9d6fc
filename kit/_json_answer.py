"""Sans-IO: the answer to a non-streaming request (``"stream": false``), faults applied.

Real clients fall back to a non-streaming request after a failed stream; against the
real API that request gets one JSON document (an Anthropic ``message``, an OpenAI
``chat.completion``). The scenario's faults act on that document the way they act on a
stream, by position: a fault ``after=k`` of a stream of ``n`` units acts at byte
``len(body) * k / n`` of the JSON, at the time the whole answer would be ready (the
stream's duration: a real server sends a non-streaming answer when it is complete).

========================  ================================================================
fault                     JSON answer
========================  ================================================================
none                      the whole document
Close(clean=True)         the document cut at the fault's offset, body ended cleanly
                          (``after=0``: an empty 200)
Close / Reset / Truncated the document cut at the offset, then FIN / RST / a short chunk
Stall(duration)           the document ``duration`` later (None: never)
ErrorEvent                the status that error type gets (529 for ``overloaded_error``)
                          with the API's error body
Malformed                 the document cut at the offset, then bytes that are not JSON
NoTerminator              the document without its last byte (truncated, clean end)
WrongFormat               ``other_protocol``: the other protocol's JSON; ``binary``: bytes
========================  ================================================================
"""

from __future__ import annotations

from ._api import ERROR_STATUS
from ._response import BINARY, Action, Response, _finish, _status_response
from .faults import (
    Close,
    ErrorEvent,
    HttpStatus,
    Malformed,
    NoTerminator,
    Reset,
    Stall,
    TruncatedChunk,
    WrongFormat,
)
from .protocols import Protocol, message_text
from .scenarios import Plan

__all__ = ["json_response"]


def json_response(plan: Plan, request_id: str = "") -> Response:
    """The non-streaming answer for ``plan`` (see the module's table)."""
    sc = plan.scenario
    protocol = Protocol.of(sc.protocol)
    error = plan.fault(ErrorEvent)
    if isinstance(error, ErrorEvent):
        status = ERROR_STATUS.get(error.error_type, 500)
        fault = HttpStatus(status=status, error_type=error.error_type, message=error.message)
        return _status_response(protocol, fault, sc.headers_delay, request_id)
    wrong = plan.fault(WrongFormat)
    api = protocol.api
    content_type = "application/json"
    text = message_text(sc.events, sc.event_size)
    if isinstance(wrong, WrongFormat) and wrong.what == "other_protocol":
        api = Protocol.of(protocol.other).api
    body = api.message_body(text, sc.events) or b""
    if isinstance(wrong, WrongFormat) and wrong.what == "binary":
        content_type, body = BINARY, plan.rng("wrong_format").randbytes(2048)
    # the answer is ready when the stream would have ended
    t = sc.first_byte_delay + sum(plan.gaps)
    n = max(sc.unit_count(), 1)
    actions: list[Action] = []
    for fault in sc.faults:
        if isinstance(fault, Stall):
            if fault.duration is None:
                actions.append(Action(t, "hang", "stall"))
                return _finish(sc.replace(ping_every=None), actions, content_type, plan, request_id)
            t += fault.duration
    cut = next((f for f in sc.faults if isinstance(f, (Close, Reset, TruncatedChunk, Malformed))), None)
    if cut is None:
        if plan.fault(NoTerminator) is not None:
            body = body[:-1]
        actions += [Action(t, "write", "message", body), Action(t, "end", "end")]
    else:
        at = len(body) * cut.after // n
        head = body[: max(at, 1) if cut.after else 0]
        if head:
            actions.append(Action(t, "write", "message_part", head))
        if isinstance(cut, Close):
            actions.append(Action(t, "end" if cut.clean else "close", "close"))
        elif isinstance(cut, Reset):
            actions.append(Action(t, "reset", "reset"))
        elif isinstance(cut, TruncatedChunk):
            rest = body[len(head) :]
            actions.append(Action(t, "truncate", "truncated_chunk", rest[: max(1, len(rest) // 2)]))
        else:
            actions += [Action(t, "write", "malformed", b'{"type":"oops'), Action(t, "end", "end")]
    return _finish(sc.replace(ping_every=None), actions, content_type, plan, request_id)
