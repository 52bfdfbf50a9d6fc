"""A recorded response as a value: the ``replay`` field of a :class:`~kit.Scenario`.

A :class:`Replay` holds the status line, the headers that are safe to send again, the
framing, every body chunk as it arrived (bytes and time after the headers) and how the
stream ended. It knows positions in its body (where a fault's ``after`` falls: SSE
events with ``at="event"``, bytes with ``at="byte"``) and cuts its chunks there
(:meth:`Replay.pieces`); :meth:`kit.Scenario.plan` turns those pieces into the server's
plan. Building one from a recording (a trace, a bundle, a HAR file) is
:func:`kit.replay.replay_scenario`, downstream of the scenario values.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._bounds import MAX_SECONDS
from ._errors import ConfigError
from ._redact import SECRET_HEADERS
from .protocols import SSEParser

__all__ = ["ENDINGS", "MAX_REPLAY_BYTES", "MAX_REPLAY_CHUNKS", "SERVER_HEADERS", "Replay", "safe_headers"]

ENDINGS = ("end", "close", "reset", "hang")
MAX_REPLAY_BYTES = 128 << 20  # held in memory, and base64 in bundle.json must stay under its 256 MiB limit
MAX_REPLAY_CHUNKS = 1_000_000

# never replayed: framing the server writes itself, per-connection headers, cookies, secrets, and
# the request ids the fault server sets for its own log
_UNSAFE = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "set-cookie",
        "request-id",
        "x-request-id",
        "x-kit-request-id",
        "alt-svc",
        "strict-transport-security",
    }
)
# what the fault server writes itself around a replayed answer (kit._schedule keeps its own)
SERVER_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "request-id", "x-request-id"})
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def safe_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The response headers worth sending again: no framing, cookies, secrets or request ids."""
    return tuple((k.lower(), v) for k, v in headers if k.lower() not in _UNSAFE and k.lower() not in SECRET_HEADERS)


def _check_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for item in headers:
        if not (isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2):
            raise ConfigError("replay.headers", item, "expected [name, value] pairs")
        k, v = item
        if not isinstance(k, str) or not isinstance(v, str) or not _HEADER_TOKEN.match(k):
            raise ConfigError("replay.headers", item, "expected a header name token and a string value")
        if any(c in v for c in "\r\n\0"):
            raise ConfigError(f"replay.headers.{k}", v, "a header value may not hold CR, LF or NUL")
        out.append((k.lower(), v))
    return tuple(out)


@dataclass(frozen=True)
class Replay:
    """A recorded response: see the module docstring.

    ``times[i]`` is when chunk ``i`` arrived, in seconds after the response headers;
    ``ending`` is how the original stream ended (``end``: cleanly; ``close``: the
    connection closed mid-body; ``reset``; ``hang``: it went silent and the client gave
    up); ``capped``: the recording stopped at its size cap, so the tail is missing.
    """

    status: int = 200
    reason: str = "OK"
    headers: tuple[tuple[str, str], ...] = ()
    framing: str = "chunked"
    times: tuple[float, ...] = ()
    chunks: tuple[bytes, ...] = ()
    ending: str = "end"
    at: str = "event"
    speed: float = 1.0
    capped: bool = False
    source: str = ""
    _bounds: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ConfigError("replay.status", self.status, "expected an HTTP status code 100-599")
        if not isinstance(self.reason, str) or any(c in self.reason for c in "\r\n\0"):
            raise ConfigError("replay.reason", self.reason, "expected a one-line reason phrase")
        object.__setattr__(self, "headers", _check_headers(self.headers))
        if self.framing not in ("chunked", "length", "close"):
            raise ConfigError.unknown("replay.framing", self.framing, ("chunked", "length", "close"))
        times, chunks = tuple(self.times), tuple(self.chunks)
        if len(times) != len(chunks):
            raise ConfigError("replay.times", len(times), f"expected one time per chunk ({len(chunks)} chunks)")
        if len(chunks) > MAX_REPLAY_CHUNKS:
            raise ConfigError("replay.chunks", len(chunks), f"at most {MAX_REPLAY_CHUNKS:,} chunks")
        last = 0.0
        for t in times:
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= MAX_SECONDS or t < last:
                raise ConfigError("replay.times", t, f"expected non-decreasing seconds in [0, {MAX_SECONDS:g}]")
            last = t
        for c in chunks:
            if not isinstance(c, bytes):
                raise ConfigError("replay.chunks", type(c).__name__, "expected bytes")
        if sum(len(c) for c in chunks) > MAX_REPLAY_BYTES:
            raise ConfigError("replay.chunks", "body size", f"at most {MAX_REPLAY_BYTES:,} bytes")
        object.__setattr__(self, "times", tuple(float(t) for t in times))
        object.__setattr__(self, "chunks", chunks)
        if self.ending not in ENDINGS:
            raise ConfigError.unknown("replay.ending", self.ending, ENDINGS)
        if self.at not in ("event", "byte"):
            raise ConfigError("replay.at", self.at, "expected 'event' (faults count SSE events) or 'byte'")
        s = self.speed
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s <= 0:
            raise ConfigError("replay.speed", s, "expected a number > 0 (2.0: twice as fast)")

    # -- serialization ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the body as one base64 string plus the size of each chunk."""
        return {
            "status": self.status,
            "reason": self.reason,
            "headers": [list(h) for h in self.headers],
            "framing": self.framing,
            "times": list(self.times),
            "sizes": [len(c) for c in self.chunks],
            "body": base64.b64encode(b"".join(self.chunks)).decode("ascii"),
            "ending": self.ending,
            "at": self.at,
            "speed": self.speed,
            "capped": self.capped,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Replay:
        """The inverse of :meth:`to_dict`; a value of the wrong shape is a ConfigError naming it."""
        if not isinstance(d, Mapping):
            raise ConfigError("replay", type(d).__name__, "expected a mapping (Replay.to_dict output)")
        d = dict(d)
        known = {"status", "reason", "headers", "framing", "times", "sizes", "body", "ending", "at", "speed"}
        known |= {"capped", "source"}
        for key in d:
            if key not in known:
                raise ConfigError.unknown("replay field", key, known)
        body_text = d.pop("body", "")
        sizes = d.pop("sizes", [])
        if not isinstance(body_text, str):
            raise ConfigError("replay.body", type(body_text).__name__, "expected a base64 string")
        if len(body_text) > MAX_REPLAY_BYTES * 4 // 3 + 4:
            raise ConfigError("replay.body", f"{len(body_text)} characters", f"at most {MAX_REPLAY_BYTES} bytes")
        try:
            body = base64.b64decode(body_text, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("replay.body", body_text[:40], "expected base64 text") from None
        if isinstance(sizes, list) and len(sizes) > MAX_REPLAY_CHUNKS:
            raise ConfigError("replay.sizes", len(sizes), f"at most {MAX_REPLAY_CHUNKS:,} chunks")
        if not isinstance(sizes, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
            raise ConfigError("replay.sizes", sizes, "expected a list of chunk sizes in bytes")
        if any(n < 0 for n in sizes) or sum(sizes) != len(body):
            raise ConfigError(
                "replay.sizes", f"sum {sum(sizes)}", f"chunk sizes must add up to the body ({len(body)} B)"
            )
        chunks, i = [], 0
        for n in sizes:
            chunks.append(body[i : i + n])
            i += n
        for key in ("headers", "times"):
            if key in d and not isinstance(d[key], list):
                raise ConfigError(f"replay.{key}", type(d[key]).__name__, "expected a list")
        return cls(chunks=tuple(chunks), **d)

    # -- positions ----------------------------------------------------------------

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def event_ends(self) -> tuple[int, ...]:
        """Byte offset right after each SSE event (or NDJSON line) of the body, in order."""
        if self._bounds is None:
            object.__setattr__(self, "_bounds", tuple(_event_ends(self.body, self.headers)))
        return self._bounds  # type: ignore[return-value]

    def unit_count(self) -> int:
        """How far a fault's ``after`` can count: events (``at="event"``) or body bytes."""
        return len(self.event_ends()) if self.at == "event" else sum(len(c) for c in self.chunks)

    def offset_of(self, after: int) -> int:
        """The body offset where a fault with ``after`` acts."""
        if self.at == "byte" or after == 0:
            return after
        return self.event_ends()[after - 1]

    # -- what the server does -----------------------------------------------------

    def pieces(self, cuts: Iterable[int]) -> list[tuple[float, bytes, int]]:
        """The chunks as ``(time, bytes, body offset of its start)``, each cut at the ``cuts`` offsets."""
        offsets = sorted(set(cuts))
        pieces: list[tuple[float, bytes, int]] = []
        offset, ci = 0, 0
        for t, data in zip(self.times, self.chunks, strict=True):
            start = 0
            while ci < len(offsets) and offsets[ci] < offset + len(data):
                cut = offsets[ci] - offset
                if cut > start:
                    pieces.append((t, data[start:cut], offset + start))
                    start = cut
                ci += 1
            if start < len(data) or not data:
                pieces.append((t, data[start:], offset + start))
            offset += len(data)
        return pieces


def _event_ends(body: bytes, headers: Sequence[tuple[str, str]]) -> list[int]:
    ctype = next((v for k, v in headers if k == "content-type"), "")
    if "ndjson" in ctype or "jsonl" in ctype:
        return [m.end() for m in re.finditer(rb"\n", body)]
    if "event-stream" not in ctype:
        return []
    # an SSE event ends at a blank line; feed the parser block by block so that only the
    # blocks that dispatch an event (a comment-only block does not) count, as the client counts
    parser, ends, last = SSEParser(), [], 0
    for m in re.finditer(rb"(?:\r\n|\r|\n)(?:\r\n|\r|\n)", body):
        if parser.feed(body[last : m.end()]):
            ends.append(m.end())
        last = m.end()
    return ends
