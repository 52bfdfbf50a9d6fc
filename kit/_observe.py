"""Observing an attempt someone else drives (an SDK through :func:`kit.instrument`).

The kit's own client (:mod:`kit.client`) controls its attempts; here we only watch,
so the outcome is worked out from what happened: the exception the transport raised
(httpx and httpx2 exceptions share their class names, so they are matched by name),
the status, and the body, parsed with the client's own :class:`~kit.client._BodyReader`
after the fact so that watching costs the caller almost nothing per chunk.
"""

from __future__ import annotations

from ._classify import classify_exception
from .client import _BodyReader, _status_message
from .protocols import for_path
from .trace import Attempt, Outcome

__all__ = ["finish_attempt", "protocol_for_path"]


def protocol_for_path(path: str) -> str:
    """The stream protocol an API path implies (how the body is parsed)."""
    return for_path(path).name


def _body_phase(attempt: Attempt) -> str:
    if attempt.saw_terminator:
        return "done"
    if attempt.chunk_t:
        return "stream"
    return "first_chunk"


def finish_attempt(
    attempt: Attempt,
    data: list[bytes],
    how: str,
    exc: BaseException | None,
    pre_header_phase: str,
    max_event_bytes: int | None = 16 * 1024 * 1024,
    reader: _BodyReader | None = None,
) -> None:
    """Fill ``attempt``'s events and outcome from its recorded chunks (times already in ``chunk_t``).

    ``how``: ``error`` (an exception before the headers), ``end`` (the body ended),
    ``raised`` (an exception while reading the body), ``closed`` (the caller closed the
    response before the end), ``open`` (still open).
    """
    if how == "error":
        assert exc is not None
        attempt.outcome = classify_exception(exc, pre_header_phase)
        attempt.error = f"{type(exc).__name__}: {exc}"
        return
    status = attempt.status or 0
    if status >= 400:
        attempt.outcome = Outcome("headers", "http_status", _status_message(status, b"".join(data)[: 64 * 1024]))
        return
    if reader is None:  # else the body was parsed as it came (it outgrew what is held)
        reader = _BodyReader(attempt, max_event_bytes)
        for t, chunk in zip(attempt.chunk_t, data, strict=False):
            reader.feed(chunk, t)
            if reader.stop is not None:
                break
    if reader.stop is not None:
        attempt.outcome = reader.stop
    elif how == "raised" and exc is not None:
        attempt.outcome = classify_exception(exc, _body_phase(attempt))
        attempt.error = f"{type(exc).__name__}: {exc}"
    elif how == "end":
        attempt.outcome = reader.outcome(attempt)
    elif attempt.saw_terminator:
        attempt.outcome = Outcome("done", "ok", "the client closed the response after the terminator")
    else:
        what = "closed" if how == "closed" else "has not finished reading"
        attempt.outcome = Outcome(_body_phase(attempt), "cancelled", f"the client {what} the response before its end")
