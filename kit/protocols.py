"""Streaming wire formats: an incremental SSE parser and realistic stream generators.

The parser follows the WHATWG "server-sent events" interpretation rules (CRLF, LF or
CR line ends; ``:`` comments; multi-line ``data``; ``id``; ``retry``; a leading BOM)
and is incremental: feeding a stream in any split yields the same events as feeding
it whole. The generators produce the bytes real APIs send: Anthropic Messages SSE,
OpenAI chat-completion chunks ending in ``data: [DONE]``, NDJSON, and raw blocks.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass


def _dumps(obj) -> str:
    """Compact JSON, as the APIs send it (no spaces after separators)."""
    return json.dumps(obj, separators=(",", ":"))


__all__ = [
    "PROTOCOLS",
    "SSEEvent",
    "SSEParser",
    "Unit",
    "anthropic_units",
    "encode_sse",
    "generate_units",
]

PROTOCOLS = ("anthropic", "openai", "ndjson", "raw")

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


def anthropic_ping() -> bytes:
    return encode_sse(_dumps({"type": "ping"}), event="ping")


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
    return tuple(_generate_units(protocol, events, event_size))


def _generate_units(protocol: str, events: int, event_size: int | None) -> list[Unit]:
    if protocol == "anthropic":
        return anthropic_units(events, event_size or 8)
    if protocol == "openai":
        return openai_units(events, event_size or 8)
    if protocol == "ndjson":
        return ndjson_units(events, event_size or 8)
    if protocol == "raw":
        return raw_units(events, event_size or 1024)
    raise ValueError(protocol)


def ping_bytes(protocol: str) -> bytes:
    """A keep-alive: an Anthropic ``ping`` event, or an SSE comment elsewhere."""
    return anthropic_ping() if protocol == "anthropic" else b": ping\n\n"


def error_bytes(protocol: str, error_type: str, message: str, request_id: str | None = None) -> bytes:
    """A mid-stream error in the protocol's own form (Anthropic's carries the request id)."""
    if protocol == "anthropic":
        return anthropic_error(error_type, message, request_id)
    if protocol == "openai":
        return openai_error(error_type, message)
    if protocol == "ndjson":
        return (_dumps({"error": {"type": error_type, "message": message}}) + "\n").encode()
    return f"\nERROR {error_type}: {message}\n".encode()


def malformed_bytes(protocol: str, kind: str) -> bytes:
    """A broken unit: invalid JSON in ``data:`` or a line with an invalid field."""
    if kind == "field":
        return b'dtaa: {"type":"oops"}\n\n' if protocol != "ndjson" else b"not json\n"
    if protocol == "ndjson":
        return b'{"index":1,"text":"unterminated\n'
    event = "content_block_delta" if protocol == "anthropic" else None
    return encode_sse(
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"unterminated', event=event
    )


def message_text(events: int, event_size: int | None = None) -> str:
    """The whole text a healthy stream of ``events`` deltas carries (for non-streaming answers)."""
    return "".join(_token(i, event_size or 8) for i in range(events))
