"""Streaming wire formats: an incremental SSE parser and realistic stream generators.

The parser follows the WHATWG "server-sent events" interpretation rules (CRLF, LF or
CR line ends; ``:`` comments; multi-line ``data``; ``id``; ``retry``; a leading BOM)
and is incremental: feeding a stream in any split yields the same events as feeding
it whole. The generators produce the bytes real APIs send: Anthropic Messages SSE,
OpenAI chat-completion chunks ending in ``data: [DONE]``, NDJSON, and raw blocks.

What differs between the protocols is held once, as data, in one frozen :class:`Protocol`
per protocol (:data:`ANTHROPIC`, :data:`OPENAI`, :data:`NDJSON`, :data:`RAW`): content
type, how a body is cut into events, the terminator, the framing units around the
content, error and malformed units, pings, the request path, headers and body, and the
API's conventions (:mod:`kit._api`). The public API takes protocol names
(``protocol="anthropic"``); :meth:`Protocol.of` turns one into its value at the boundary.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from . import _api
from ._errors import ConfigError


def _dumps(obj) -> str:
    """Compact JSON, as the APIs send it (no spaces after separators)."""
    return json.dumps(obj, separators=(",", ":"))


__all__ = [
    "ANTHROPIC",
    "NDJSON",
    "OPENAI",
    "PROTOCOLS",
    "RAW",
    "Protocol",
    "SSEEvent",
    "SSEParser",
    "Unit",
    "anthropic_units",
    "encode_sse",
    "generate_units",
]

_KNOWN_FIELDS = frozenset({"event", "data", "id", "retry"})


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched server-sent event.

    ``event`` is the type (``"message"`` when the stream gave none); ``size`` is the
    number of bytes of the lines that made it up, each line end counted as one byte
    (so CRLF and LF streams, split anywhere, give the same sizes).
    """

    event: str
    data: str
    id: str | None = None
    retry: int | None = None
    size: int = 0


class SSEParser:
    """Incremental SSE parser; ``feed(bytes)`` returns the events completed so far.

    Besides events it counts what a strict reader would call malformed: lines whose
    field name is unknown (``bad_lines``) and bytes that were not valid UTF-8
    (``decode_errors``). Per the spec both are ignored or replaced, not fatal.
    """

    __slots__ = (
        "_bom_checked",
        "_buf",
        "_data",
        "_event",
        "_has_data",
        "_id",
        "_last_id",
        "_pending_cr",
        "_retry",
        "_size",
        "bad_lines",
        "decode_errors",
        "max_event_bytes",
        "oversized",
    )

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._buf = b""
        self._pending_cr = False  # the previous chunk ended in CR: a following LF belongs to it
        self._bom_checked = False
        self._event = ""
        self._data: list[str] = []
        self._has_data = False
        self._id: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None
        self._size = 0
        self.bad_lines = 0
        self.decode_errors = 0
        self.max_event_bytes = max_event_bytes
        self.oversized = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse a chunk; return every event it completed."""
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        if not self._bom_checked:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return []
            self._bom_checked = True
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        events: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
                else:
                    nxt = n
                    self._pending_cr = True
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            event = self._line(buf[start:end], end - start + 1)
            if self.oversized:  # the event under way outgrew the cap: not dispatched, whatever the reads' cuts
                self._buf = b""
                return events
            if event is not None:
                events.append(event)
            start = nxt
        self._buf = buf[start:]
        if self.max_event_bytes is not None and self._size + len(self._buf) > self.max_event_bytes:
            self.oversized = True
            self._buf = b""
        return events

    def _line(self, raw: bytes, size: int) -> SSEEvent | None:
        self._size += size
        if self.max_event_bytes is not None and self._size > self.max_event_bytes:
            self.oversized = True
            return None
        if not raw:
            return self._dispatch()
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.decode_errors += 1
            line = raw.decode("utf-8", errors="replace")
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isascii() and value.isdigit() and len(value) <= 15:  # ASCII digits only ("²" is a digit to str)
                self._retry = int(value)
            else:
                self.bad_lines += 1
        else:
            self.bad_lines += 1
        return None

    def _dispatch(self) -> SSEEvent | None:
        if self._id is not None:
            self._last_id = self._id
        size, self._size = self._size, 0
        if not self._has_data:
            self._event, self._id, self._retry = "", None, None
            return None
        event = SSEEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._last_id,
            retry=self._retry,
            size=size,
        )
        self._event, self._data, self._has_data, self._id, self._retry = "", [], False, None, None
        return event

    @property
    def pending(self) -> bool:
        """True while a partial line or event is buffered (the stream stopped mid-event)."""
        return bool(self._buf) or self._has_data or bool(self._event)


def encode_sse(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """Serialize one event with LF line ends."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


@dataclass(frozen=True, slots=True)
class Unit:
    """One protocol unit the server writes as a whole: an SSE event, a line, a block.

    ``kind`` names it in the server log (``message_start``, ``content_block_delta``,
    ``chunk``, ``[DONE]``...); ``terminator`` marks the unit that ends the stream.
    """

    kind: str
    payload: bytes
    terminator: bool = False


_WORDS = [
    "The",
    "stream",
    "arrived",
    "in",
    "pieces,",
    "each",
    "one",
    "a",
    "little",
    "later",
    "than",
    "the",
    "last,",
    "and",
    "nobody",
    "could",
    "say",
    "why",
    "until",
    "they",
    "looked",
    "at",
    "when",
    "every",
    "chunk",
    "came",
    "in.",
]


def _token(i: int, size: int) -> str:
    text = _WORDS[i % len(_WORDS)] + " "
    if size > len(text):
        text = (text * (size // len(text) + 1))[:size]
    return text


def anthropic_units(events: int, event_size: int = 8, model: str = "claude-kit-1") -> list[Unit]:
    """An Anthropic Messages stream with ``events`` text deltas."""
    msg = {
        "type": "message_start",
        "message": {
            "id": "msg_kit0001",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    }

    def ev(kind: str, payload: dict, terminator: bool = False) -> Unit:
        return Unit(kind, encode_sse(_dumps(payload), event=kind), terminator)

    units = [
        ev("message_start", msg),
        ev(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ev("ping", {"type": "ping"}),
    ]
    for i in range(events):
        delta = {"type": "text_delta", "text": _token(i, event_size)}
        units.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    units.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
    units.append(
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": max(events, 1)},
            },
        )
    )
    units.append(ev("message_stop", {"type": "message_stop"}, terminator=True))
    return units


def anthropic_error(error_type: str, message: str, request_id: str | None = None) -> bytes:
    payload = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id:
        payload["request_id"] = request_id
    return encode_sse(_dumps(payload), event="error")


def openai_units(events: int, event_size: int = 8, model: str = "gpt-kit-1") -> list[Unit]:
    """An OpenAI chat-completion stream with ``events`` content chunks and ``[DONE]``."""

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-kit0001",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return encode_sse(_dumps(body))

    units = [Unit("chunk", chunk({"role": "assistant", "content": ""}))]
    units.extend(Unit("chunk", chunk({"content": _token(i, event_size)})) for i in range(events))
    units.append(Unit("chunk", chunk({}, finish="stop")))
    units.append(Unit("[DONE]", encode_sse("[DONE]"), terminator=True))
    return units


def openai_error(error_type: str, message: str) -> bytes:
    return encode_sse(_dumps({"error": {"message": message, "type": error_type, "param": None, "code": None}}))


def ndjson_units(events: int, event_size: int = 8) -> list[Unit]:
    """Newline-delimited JSON: one object a line; the body's end is the end."""
    return [Unit("line", (_dumps({"index": i, "text": _token(i, event_size)}) + "\n").encode()) for i in range(events)]


def raw_units(events: int, event_size: int = 1024) -> list[Unit]:
    """Raw blocks of ``event_size`` bytes; the body's end is the end."""
    block = (b"kit raw stream " * (event_size // 15 + 1))[:event_size]
    return [Unit("block", block) for _ in range(events)]


@functools.lru_cache(maxsize=256)
def generate_units(protocol: str, events: int, event_size: int | None = None) -> tuple[Unit, ...]:
    """The units of a healthy stream in ``protocol`` (cached: they are immutable)."""
    p = Protocol.of(protocol)
    return tuple(p.make_units(events, event_size or p.default_event_size))


def _ndjson_error(error_type: str, message: str, request_id: str | None = None) -> bytes:
    return (_dumps({"error": {"type": error_type, "message": message}}) + "\n").encode()


def _raw_error(error_type: str, message: str, request_id: str | None = None) -> bytes:
    return f"\nERROR {error_type}: {message}\n".encode()


def _openai_error(error_type: str, message: str, request_id: str | None = None) -> bytes:
    return openai_error(error_type, message)  # OpenAI carries the request id in a header only


_UNTERMINATED = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"unterminated'
_SSE_BAD_FIELD = b'dtaa: {"type":"oops"}\n\n'

EventFormat = Literal["sse", "ndjson", "raw"]
_ANTHROPIC_BODY = (("model", _api.ANTHROPIC.model), ("max_tokens", 1024), ("stream", True))
_SSE = "text/event-stream; charset=utf-8"


@dataclass(frozen=True, eq=False)
class Protocol:
    """What one stream protocol is, as data: the one place the protocols differ.

    ``event_format``: how a reader cuts the body into events (``sse``; ``ndjson``: a JSON
    object a line; ``raw``: no events). ``terminator``: ``(field, value)`` of the SSE event
    that ends a complete stream (``("event", "message_stop")``, ``("data", "[DONE]")``);
    None: the body's clean end is the end. ``other``: the protocol whose stream a
    misrouted gateway sends instead (``WrongFormat("other_protocol")``). ``api``: ids,
    rate-limit headers, error and message JSON (:class:`kit._api.ApiShape`). The
    defaults describe a stream without an API of its own (ndjson, raw). One value per
    protocol, compared by identity; look one up with :meth:`of`.
    """

    name: str
    content_type: str
    event_format: EventFormat
    make_units: Callable[[int, int], list[Unit]]
    error_event: Callable[..., bytes]  # (error_type, message, request_id=None) -> the mid-stream error unit
    malformed_json: bytes  # a unit whose JSON is cut short
    malformed_field: bytes = _SSE_BAD_FIELD  # a line that is not a field of the format
    terminator: tuple[str, str] | None = None
    path: str = "/stream"
    request_headers: tuple[tuple[str, str], ...] = ()
    request_fields: tuple[tuple[str, Any], ...] = _ANTHROPIC_BODY
    other: str = "anthropic"
    api: _api.ApiShape = _api.PLAIN
    default_event_size: int = 8
    ping: bytes = b": ping\n\n"  # a keep-alive: Anthropic's ``ping`` event, an SSE comment elsewhere

    @classmethod
    def of(cls, value: Any, field: str = "protocol") -> Protocol:
        """The protocol named ``value`` (or ``value`` itself); else a ConfigError naming ``field``."""
        if isinstance(value, Protocol):
            return value
        p = _BY_NAME.get(value) if isinstance(value, str) else None
        if p is None:
            raise ConfigError.unknown(field, value, PROTOCOLS)
        return p

    def __repr__(self) -> str:
        return f"Protocol({self.name!r})"

    def units(self, events: int, event_size: int | None = None) -> tuple[Unit, ...]:
        """The units of a healthy stream of ``events`` content units (cached)."""
        return generate_units(self.name, events, event_size)

    @property
    def extra_units(self) -> int:
        """Units of a healthy stream beyond its content: Anthropic's ``message_start`` ...
        ``message_stop`` (6), OpenAI's role chunk, finish chunk and ``[DONE]`` (3)."""
        return len(self.units(0))

    @property
    def accept(self) -> str:
        """The request's ``accept`` header."""
        return "text/event-stream" if self.event_format == "sse" else "*/*"

    def is_terminator(self, event: str, data: str) -> bool:
        """Whether an SSE event ends the stream (only this protocol's own terminator does:
        the other API's stream, from a misrouted gateway, is not a clean end)."""
        if self.terminator is None:
            return False
        name, value = self.terminator
        return (event if name == "event" else data) == value

    def malformed(self, what: str) -> bytes:
        """A broken unit: ``json`` (JSON cut short) or ``field`` (a line that is no field)."""
        return self.malformed_field if what == "field" else self.malformed_json

    def request_body(self) -> dict[str, Any]:
        """A small, valid streaming request body."""
        return {**dict(self.request_fields), "messages": [{"role": "user", "content": "Say hello, slowly."}]}


ANTHROPIC = Protocol(
    name="anthropic",
    content_type=_SSE,
    event_format="sse",
    make_units=anthropic_units,
    error_event=anthropic_error,
    malformed_json=encode_sse(_UNTERMINATED, event="content_block_delta"),
    terminator=("event", "message_stop"),
    path="/v1/messages",
    request_headers=(("anthropic-version", "2023-06-01"), ("x-api-key", "kit-dummy-key")),
    other="openai",
    api=_api.ANTHROPIC,
    ping=encode_sse(_dumps({"type": "ping"}), event="ping"),
)
OPENAI = Protocol(
    name="openai",
    content_type=_SSE,
    event_format="sse",
    make_units=openai_units,
    error_event=_openai_error,
    malformed_json=encode_sse(_UNTERMINATED),
    terminator=("data", "[DONE]"),
    path="/v1/chat/completions",
    request_headers=(("authorization", "Bearer kit-dummy-key"),),
    request_fields=(("model", _api.OPENAI.model), ("stream", True)),
    api=_api.OPENAI,
)
NDJSON = Protocol(
    name="ndjson",
    content_type="application/x-ndjson",
    event_format="ndjson",
    make_units=ndjson_units,
    error_event=_ndjson_error,
    malformed_json=b'{"index":1,"text":"unterminated\n',
    malformed_field=b"not json\n",
)
RAW = Protocol(
    name="raw",
    content_type="application/octet-stream",
    event_format="raw",
    make_units=raw_units,
    error_event=_raw_error,
    malformed_json=encode_sse(_UNTERMINATED),
    default_event_size=1024,
)
_BY_NAME: dict[str, Protocol] = {p.name: p for p in (ANTHROPIC, OPENAI, NDJSON, RAW)}
PROTOCOLS: tuple[str, ...] = tuple(_BY_NAME)  # the names the public API takes


def for_path(path: str) -> Protocol:
    """The protocol an API path implies (an SDK's request seen by :func:`kit.instrument`)."""
    if path.endswith("/messages"):
        return ANTHROPIC
    if path.endswith(("/chat/completions", "/completions", "/responses")):
        return OPENAI
    return RAW


def sniff(content_type: str, body: bytes) -> Protocol:
    """The protocol of a recorded response, from its content type (and body, for SSE)."""
    if "event-stream" in content_type:
        return OPENAI if b"data: [DONE]" in body and b"message_start" not in body else ANTHROPIC
    if "ndjson" in content_type:
        return NDJSON
    return RAW


def message_text(events: int, event_size: int | None = None) -> str:
    """The whole text a healthy stream of ``events`` deltas carries (for non-streaming answers)."""
    return "".join(_token(i, event_size or 8) for i in range(events))
