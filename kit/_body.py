"""Sans-IO: a response body as the client reads it, from its first byte to how it ended.

No sockets and no httpx here: whoever reads the bytes (the kit's client, an SDK's
transport under :func:`kit.instrument`, the recording proxy) hands each de-framed body
chunk to a :class:`BodyReader` with its arrival time, and tells it how the body ended.
The reader records the chunk (up to ``Policy.max_recorded``), parses the payload (SSE
events, NDJSON lines, raw bytes), notes the protocol's terminator, keeps the start of an
error body, stops at the first thing that makes the stream unusable, and gives the
outcome. The HTTP framing (chunked, Content-Length, close-delimited) is decoded below
it, by h11 inside httpcore; :func:`framing` names which one a response uses, and an
EOF means a clean end or a cut body according to it. The phase an attempt is in comes
from here too: :func:`request_phase` before the headers (from httpcore's trace
events), :func:`body_phase` after them.

Facts go into the :class:`~kit.trace.Attempt` it was given (``chunk_t``, ``event_t``,
``saw_terminator``, ``truncated``...), so a reader can be fed before, while or after the
bytes reach their client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._classify import classify_exception
from ._redact import redact_text
from ._safejson import loads as safe_json
from .protocols import Protocol, SSEParser
from .trace import Attempt, Outcome

__all__ = [
    "ERROR_BODY_LIMIT",
    "BodyReader",
    "body_phase",
    "framing",
    "request_phase",
    "note_truncation",
    "status_message",
]

ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error response body kept for the message


def framing(headers: Mapping[str, str]) -> str:
    """How a response's body is delimited: ``chunked``, ``length`` (Content-Length) or ``close`` (EOF).

    ``headers``: case-insensitive (httpx's ``Headers``) or lower-case keys. Chunked wins
    over a Content-Length, as RFC 9112 says a client must read it.
    """
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    if "content-length" in headers:
        return "length"
    return "close"


# httpcore's trace events that move an attempt on before its response headers
_CONNECTED = frozenset({"connection.connect_tcp.complete", "http11.send_request_headers.started"})
_HEADERS_WAIT = "http11.receive_response_headers.started"


def request_phase(phase: str, event: str) -> str:
    """The phase before the response headers after httpcore's trace ``event``: ``connect`` ->
    ``send`` once connected (or a kept-alive connection starts sending), -> ``headers``
    once the request is sent and the response is awaited; else ``phase`` unchanged."""
    if phase == "connect" and event in _CONNECTED:
        return "send"
    if phase in ("connect", "send") and event == _HEADERS_WAIT:
        return "headers"
    return phase


def body_phase(attempt: Attempt, before: str = "first_chunk") -> str:
    """The phase an attempt is in, from what it has seen: ``done`` (terminator), ``stream``
    (a body byte), ``first_chunk`` (headers), else ``before`` (the client's own phase)."""
    if attempt.saw_terminator:
        return "done"
    if attempt.chunk_t or attempt.unrecorded_chunks:
        return "stream"
    if attempt.headers_ns is not None:
        return "first_chunk"
    return before


class BodyReader:
    """Reads one attempt's body: :meth:`take` each chunk as it arrives, then :meth:`finish`.

    ``max_recorded`` caps the chunks and events recorded one by one (past it they are
    counted and the attempt is ``truncated``); ``stop_at_cap`` stops reading there
    instead (``Policy.on_max_recorded="stop"``). ``stop`` is set once the stream is
    unusable (an error event, malformed data) or the cap stopped it: read no further.
    A body of a status >= 400 is not parsed: its first ``ERROR_BODY_LIMIT`` bytes are the message.
    """

    __slots__ = (
        "attempt",
        "error_body",
        "kind",
        "line_buf",
        "max_event_bytes",
        "max_recorded",
        "protocol",
        "record",
        "sse",
        "stop",
        "stop_at_cap",
    )

    def __init__(
        self,
        attempt: Attempt,
        max_event_bytes: int | None = 16 * 1024 * 1024,
        *,
        max_recorded: int | None = None,
        stop_at_cap: bool = False,
    ) -> None:
        self.attempt = attempt
        self.protocol = Protocol.of(attempt.protocol)
        self.kind = self.protocol.event_format
        self.sse = SSEParser(max_event_bytes=max_event_bytes) if self.kind == "sse" else None
        self.line_buf = b""
        self.error_body = bytearray()
        self.stop: Outcome | None = None
        self.max_event_bytes = max_event_bytes
        self.max_recorded = max_recorded
        self.stop_at_cap = stop_at_cap
        self.record = True  # False past max_recorded: chunks and events are counted, not recorded

    # -- bytes in -------------------------------------------------------------------

    def take(self, data: bytes, t: int) -> None:
        """One body chunk arrived at ``t``: record it and parse it."""
        if self.count(data, t):
            self.feed(data, t)

    def count(self, data: bytes, t: int) -> bool:
        """Record one body chunk (not parsed: see :meth:`feed`); False if the cap stopped the reading."""
        a = self.attempt
        cap = self.max_recorded
        if self.record and cap is not None and len(a.chunk_t) + len(a.event_t) >= cap:
            a.truncated = True
            self.record = False
            if self.stop_at_cap:
                self.stop = Outcome(
                    self._phase(),
                    "cancelled",
                    f"stopped reading after recording {cap:,} chunks and events "
                    "(Policy.max_recorded, on_max_recorded='stop')",
                )
                return False
        if self.record:
            a.chunk_t.append(t)
            a.chunk_size.append(len(data))
        else:
            a.unrecorded_chunks += 1
            a.unrecorded_bytes += len(data)
        return True

    def feed(self, data: bytes, t: int) -> None:
        """Parse one chunk (already recorded) that arrived at ``t``."""
        if self.stop is not None:
            return
        if (self.attempt.status or 0) >= 400:
            if len(self.error_body) < ERROR_BODY_LIMIT:
                self.error_body += data[: ERROR_BODY_LIMIT - len(self.error_body)]
        elif self.sse is not None:
            self._sse(data, t)
        elif self.kind == "ndjson":
            self._ndjson(data, t)

    def _sse(self, data: bytes, t: int) -> None:
        sse = self.sse
        assert sse is not None
        for ev in sse.feed(data):
            self._event(t, ev.size, ev.event)
            self._check_sse(ev.event, ev.data)
            if self.stop is not None:
                return
        if sse.oversized:
            self.stop = Outcome(
                self._phase(), "malformed", f"an event over the client's cap of max_event_bytes={self.max_event_bytes}"
            )
        elif sse.bad_lines:
            self.stop = Outcome(self._phase(), "malformed", "a line that is not an SSE field (not data/event/id/retry)")
        elif sse.decode_errors:
            self.stop = Outcome(self._phase(), "malformed", "event data that is not valid UTF-8")

    def _ndjson(self, data: bytes, t: int) -> None:
        *lines, self.line_buf = (self.line_buf + data).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                obj = safe_json(line)
            except ValueError:
                self._event(t, len(line) + 1, "invalid")
                self.stop = Outcome("stream", "malformed", "an NDJSON line that is not JSON")
                return
            if isinstance(obj, dict) and "error" in obj:
                self._event(t, len(line) + 1, "error")
                self.stop = Outcome("stream", "error_event", _error_text(obj))
                return
            self._event(t, len(line) + 1, "line")
        # checked after the complete lines, so a cap crossed by a chunk's tail still counts its lines
        if self.max_event_bytes is not None and len(self.line_buf) > self.max_event_bytes:
            self.line_buf = b""
            self.stop = Outcome(
                "stream", "malformed", f"an NDJSON line over the client's cap of max_event_bytes={self.max_event_bytes}"
            )

    def _event(self, t: int, size: int, kind: str) -> None:
        a = self.attempt
        if self.record:
            a.event_t.append(t)
            a.event_size.append(size)
            a.event_type.append(kind)
        else:
            a.unrecorded_events += 1

    def _check_sse(self, event: str, data: str) -> None:
        if self.protocol.is_terminator(event, data):
            self.attempt.saw_terminator = True
            if self.protocol.terminator == ("data", data):
                return  # a data-only terminator ([DONE]) is not JSON
        try:
            obj = safe_json(data)
        except ValueError:
            self.stop = Outcome(self._phase(), "malformed", f"event {event!r} has data that is not JSON")
            return
        if event == "error" or (isinstance(obj, dict) and "error" in obj and obj.get("type") in (None, "error")):
            self.stop = Outcome(self._phase(), "error_event", _error_text(obj))

    def _phase(self) -> str:
        """The phase of a failure in the body: ``done`` once the terminator came (one rule for
        whatever follows it: an error or malformed event, a close, a reset, a stall), else ``stream``."""
        return "done" if self.attempt.saw_terminator else "stream"

    # -- how it ended -----------------------------------------------------------------

    def outcome(self) -> Outcome:
        """The outcome of a body that ended cleanly (the HTTP layer saw its end, no exception)."""
        a = self.attempt
        if self.stop is not None:
            return self.stop
        if (a.status or 0) >= 400:
            return Outcome("headers", "http_status", status_message(a.status or 0, bytes(self.error_body)))
        if self.sse is not None and self.sse.pending:
            return Outcome(self._phase(), "malformed", "the body ended inside an event (not a complete SSE stream)")
        if self.kind == "ndjson" and self.line_buf.strip():
            return Outcome("stream", "malformed", "the body ended inside an NDJSON line")
        if a.saw_terminator or self.protocol.terminator is None:
            return Outcome("done", "ok")
        phase = body_phase(a)
        what = "no events" if not a.event_t else f"{len(a.event_t)} events"
        first = a.first_event_type
        detail = f"; first event {first!r}" if first else ""
        return Outcome(phase, "ended", f"the body ended cleanly ({a.framing}) with {what}{detail} and no terminator")

    def finish(self, how: str, exc: BaseException | None = None) -> Outcome:
        """The attempt's outcome once its body stopped: set on the attempt and returned.

        ``how``: ``end`` (the HTTP layer saw the body's end: zero-length chunk, all of the
        Content-Length, or EOF of a close-delimited body), ``raised`` (``exc`` while
        reading: a cut or malformed framing, a reset, a timeout), ``closed`` (the caller
        closed the response before its end), ``open`` (not finished yet). What the payload
        said first wins: an error event or malformed data before the cut.
        """
        a = self.attempt
        if self.stop is not None:
            a.outcome = self.stop
        elif how == "end" or (a.status or 0) >= 400:  # an error status is the outcome, however its body ended
            a.outcome = self.outcome()
        elif how == "raised" and exc is not None:
            a.outcome = classify_exception(exc, body_phase(a))
            a.error = f"{type(exc).__name__}: {exc}"
        elif a.saw_terminator:
            a.outcome = Outcome("done", "ok", "the client closed the response after the terminator")
        else:
            what = "closed" if how == "closed" else "has not finished reading"
            a.outcome = Outcome(body_phase(a), "cancelled", f"the client {what} the response before its end")
        return a.outcome


def _error_text(obj: Any) -> str:
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):  # the server's text: keys in it are redacted, as in headers
        return redact_text(f"{err.get('type', 'error')}: {err.get('message', '')}".strip())
    return redact_text(str(err or obj)[:200])


def status_message(status: int, body: bytes) -> str:
    """``"<status> <the error body's message>"`` (redacted: the body is the server's text)."""
    detail = ""
    try:
        detail = _error_text(safe_json(body))
    except ValueError:
        detail = body[:200].decode("utf-8", "replace")
    return redact_text(f"{status} {detail}".strip())


def note_truncation(attempt: Attempt, cap: int | None) -> None:
    """Say in the outcome's message that the attempt was recorded only in part."""
    o = attempt.outcome
    if not attempt.truncated or o is None or "Policy.max_recorded" in o.message:
        return
    note = (
        f"recorded the first {cap:,} chunks and events (Policy.max_recorded), then counted "
        f"{attempt.unrecorded_chunks:,} chunks and {attempt.unrecorded_events:,} events more"
    )
    attempt.outcome = Outcome(o.phase, o.cause, f"{o.message}; {note}" if o.message else note)
