"""The fault vocabulary: what the fault server does to a response, each a small frozen value.

Each fault says what happens *after N units* (``after``): units are the protocol's whole
pieces (an SSE event, an NDJSON line, a raw block), counted from 0 over the complete
healthy stream (see :mod:`kit.scenarios`). A :class:`~kit.Scenario` holds a tuple of
them; :func:`fault_from_dict` reads one back from :meth:`Fault.to_dict` output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ._bounds import MAX_HOSTILE_BYTES, MAX_SECONDS, check_count, check_number
from ._errors import ConfigError

__all__ = [
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "Buffer",
    "Close",
    "ErrorEvent",
    "Fault",
    "Hostile",
    "HttpStatus",
    "Malformed",
    "NoTerminator",
    "Reset",
    "Stall",
    "TruncatedChunk",
    "WrongFormat",
    "fault_from_dict",
]


@dataclass(frozen=True)
class Fault:
    """Base of the fault kinds. ``after`` counts the units written before it acts."""

    kind: ClassVar[str] = ""
    after: int = 0

    def __post_init__(self) -> None:
        check_count(f"{self.kind}.after", self.after)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Stall(Fault):
    """Stop writing after ``after`` units for ``duration`` seconds (None: forever).

    The connection stays open; pings, if the scenario has them, keep coming.
    """

    kind: ClassVar[str] = "stall"
    duration: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("stall.duration", self.duration, allow_none=True)


@dataclass(frozen=True)
class Close(Fault):
    """Close the connection (FIN) after ``after`` units.

    ``clean=False`` closes mid-framing (no zero-length chunk, short of the
    Content-Length): the client sees the body *cut* (cause ``closed``).
    ``clean=True`` ends the body properly first (cause ``ended``).
    """

    kind: ClassVar[str] = "close"
    clean: bool = False


@dataclass(frozen=True)
class Reset(Fault):
    """Reset the connection (RST, ``SO_LINGER`` 0) after ``after`` units."""

    kind: ClassVar[str] = "reset"


@dataclass(frozen=True)
class ErrorEvent(Fault):
    """Send the protocol's error event after ``after`` units, then end the body."""

    kind: ClassVar[str] = "error_event"
    error_type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True)
class Malformed(Fault):
    """Send a broken unit after ``after`` units: ``json`` (bad JSON in ``data:``) or ``field``."""

    kind: ClassVar[str] = "malformed"
    what: Literal["json", "field"] = "json"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.what not in ("json", "field"):
            raise ConfigError("malformed.what", self.what, "expected 'json' or 'field'")


@dataclass(frozen=True)
class TruncatedChunk(Fault):
    """Declare a chunk, write only part of it, then FIN (chunked framing only)."""

    kind: ClassVar[str] = "truncated_chunk"


@dataclass(frozen=True)
class NoTerminator(Fault):
    """Leave out the terminator (``message_stop`` / ``[DONE]``) and end the body cleanly."""

    kind: ClassVar[str] = "no_terminator"


@dataclass(frozen=True)
class HttpStatus(Fault):
    """Answer with an error status instead of a stream (``after`` is ignored).

    The body is the API's JSON error; ``retry_after`` (seconds) and ``retry_after_ms``
    set those headers; ``headers`` adds more (e.g. ``x-should-retry``).
    """

    kind: ClassVar[str] = "http_status"
    status: int = 500
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ConfigError("http_status.status", self.status, "expected an HTTP status code 100-599")
        check_number("http_status.retry_after", self.retry_after, allow_none=True)
        check_number("http_status.retry_after_ms", self.retry_after_ms, allow_none=True, maximum=MAX_SECONDS * 1000)
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in dict(self.headers).items()))

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["headers"] = dict(self.headers)
        return d


@dataclass(frozen=True)
class WrongFormat(Fault):
    """Send a body in the wrong format: ``other_protocol`` (the other API's SSE stream, as a
    misrouted gateway does: OpenAI chunks where Anthropic events were expected and back),
    ``json`` (a whole JSON message as ``application/json``) or ``binary``."""

    kind: ClassVar[str] = "wrong_format"
    what: Literal["other_protocol", "json", "binary"] = "json"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.what not in ("other_protocol", "json", "binary"):
            raise ConfigError.unknown("wrong_format.what", self.what, ("other_protocol", "json", "binary"))


@dataclass(frozen=True)
class Buffer(Fault):
    """Hold writes until ``until_bytes`` are pending (None: until the end), as a buffering proxy does."""

    kind: ClassVar[str] = "buffer"
    until_bytes: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.until_bytes is not None:
            check_count("buffer.until_bytes", self.until_bytes)


HOSTILE_KINDS = ("random_bytes", "random_chunks", "bad_chunk_size", "huge_event", "endless_headers", "invalid_utf8")


@dataclass(frozen=True)
class Hostile(Fault):
    """Bytes no well-behaved server sends, to prove a client survives them.

    ``what``: ``random_bytes`` (``size`` seeded random bytes as the body), ``random_chunks``
    (the healthy stream cut into HTTP chunks of random sizes: still valid),
    ``bad_chunk_size`` (a chunk-size line that is not hex), ``huge_event`` (one SSE
    event of ``size`` bytes, streamed in pieces), ``endless_headers`` (header lines
    forever, never a body), ``invalid_utf8`` (an event whose data is not UTF-8).
    """

    kind: ClassVar[str] = "hostile"
    what: str = "random_bytes"
    size: int = 64 * 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.what not in HOSTILE_KINDS:
            raise ConfigError.unknown("hostile.what", self.what, HOSTILE_KINDS)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= MAX_HOSTILE_BYTES:
            raise ConfigError(
                "hostile.size", self.size, f"expected a whole number of bytes in [1, {MAX_HOSTILE_BYTES:,}]"
            )


FAULT_KINDS: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (
        Stall,
        Close,
        Reset,
        ErrorEvent,
        Malformed,
        TruncatedChunk,
        NoTerminator,
        HttpStatus,
        WrongFormat,
        Buffer,
        Hostile,
    )
}


def fault_from_dict(d: Mapping[str, Any]) -> Fault:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in FAULT_KINDS:
        raise ConfigError.unknown("fault.kind", kind, FAULT_KINDS)
    cls = FAULT_KINDS[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in names:
            raise ConfigError.unknown(f"{kind}.{key}", key, names)
    if cls is HttpStatus and "headers" in d:
        d["headers"] = tuple(dict(d["headers"]).items())
    return cls(**d)
