"""One mapping from an exception to phase x cause, for the kit's client and for SDKs it watches.

httpx and httpx2 exceptions share their class names, so they are matched by name: the
same rules then classify what the kit's own client raised and what an SDK's httpx2
transport raised under :func:`kit.instrument`.
"""

from __future__ import annotations

import asyncio
import errno

from .trace import Outcome

__all__ = ["classify_exception", "describe", "is_reset"]

# h11's words for a connection that closed before the message was complete
_CLOSED_WORDS = ("peer closed", "unexpectedly closed", "disconnected", "incomplete")


def is_reset(exc: BaseException | None) -> bool:
    """True if ``exc`` (or what it wraps) is a connection reset (RST, EPIPE)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) in (errno.ECONNRESET, errno.EPIPE):
            return True
        if "reset by peer" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def describe(exc: BaseException) -> str:
    """The exception's message, or its cause's when httpx wrapped an OSError without one."""
    cause: BaseException | None = exc
    while cause is not None and not str(cause):
        cause = cause.__cause__ or cause.__context__
    return str(cause) if cause is not None else type(exc).__name__


def classify_exception(exc: BaseException, phase: str) -> Outcome:
    """Phase x cause of an httpx / httpx2 / OS exception raised in ``phase``."""
    names = {c.__name__ for c in type(exc).__mro__}
    msg = describe(exc)
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | GeneratorExit):
        return Outcome(phase, "cancelled", "cancelled by the caller")
    if names & {"ConnectTimeout", "PoolTimeout"}:
        return Outcome("connect", "timeout.connect", msg)
    if "TimeoutException" in names or isinstance(exc, TimeoutError):  # a caller's own httpx timeouts
        cause = {
            "connect": "timeout.connect",
            "send": "timeout.headers",
            "headers": "timeout.headers",
            "first_chunk": "timeout.first_chunk",
        }
        return Outcome(phase, cause.get(phase, "timeout.idle"), msg)
    if "ConnectError" in names or isinstance(exc, ConnectionRefusedError):
        return Outcome("connect", "reset" if is_reset(exc) else "refused", msg)
    if is_reset(exc):
        return Outcome(phase, "reset", msg)
    if "RemoteProtocolError" in names:
        closed = any(w in msg.lower() for w in _CLOSED_WORDS)
        return Outcome(phase, "closed" if closed else "malformed", msg)
    if "DecodingError" in names:
        return Outcome(phase, "malformed", msg)
    return Outcome(phase, "closed", msg)
