"""Replay a recorded stream from the fault server: status, safe headers, body bytes, timing.

A :class:`Replay` is the recorded half of a :class:`~kit.Scenario` (its ``replay``
field): the status line, the headers that are safe to send again, the framing, every
body chunk as it arrived (bytes and time after the headers) and how the stream ended.
The fault server writes the chunks at their recorded times, each as one write (one HTTP
chunk with chunked framing), so a client sees the original's shape; ``speed`` scales
the timing. Faults compose on top: their ``after`` counts SSE events (``at="event"``,
the default: ``Stall(after=17)`` acts right after the 17th event) or body bytes
(``at="byte"``); the chunk holding that point is cut there.

:func:`scenario_from` builds a replay scenario from a recorded trace
(:class:`kit.Recorder`), a recording bundle folder, a HAR file with chunk times and
body text (the kit's), or Chrome's EventStream export (``_eventSourceMessages`` with
times). A file that is not one of those, or is cut short, raises
:class:`~kit.BundleError` naming it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import BundleError, ConfigError
from ._redact import SECRET_HEADERS
from .protocols import PROTOCOLS, SSEParser, Unit, sniff
from .scenarios import MAX_SECONDS

if TYPE_CHECKING:
    from .scenarios import Fault, Plan, Scenario

__all__ = ["ENDINGS", "MAX_REPLAY_BYTES", "MAX_REPLAY_CHUNKS", "Replay", "safe_headers", "scenario_from"]

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

    def plan(self, sc: Scenario, attempt: int, key: str) -> Plan:
        """The server's plan for one attempt: recorded chunks as units, cut where faults act."""
        from .scenarios import Buffer, Close, HttpStatus, NoTerminator, Plan, Reset, Stall, WrongFormat

        speed = self.speed
        whole = (HttpStatus, WrongFormat, NoTerminator, Buffer)
        acting = [f for f in sc.faults if not isinstance(f, whole) and not _whole_stream(f)]
        cuts = sorted({self.offset_of(f.after) for f in acting})
        pieces: list[tuple[float, bytes, int]] = []  # (time, bytes, offset of its start)
        offset, ci = 0, 0
        for t, data in zip(self.times, self.chunks, strict=True):
            start = 0
            while ci < len(cuts) and cuts[ci] < offset + len(data):
                cut = cuts[ci] - offset
                if cut > start:
                    pieces.append((t, data[start:cut], offset + start))
                    start = cut
                ci += 1
            if start < len(data) or not data:
                pieces.append((t, data[start:], offset + start))
            offset += len(data)
        starts = [p[2] for p in pieces]
        fault_at: dict[int, list[Fault]] = {}
        for f in acting:
            pos = self.offset_of(f.after)
            index = next((i for i, s in enumerate(starts) if s >= pos), len(pieces))
            fault_at.setdefault(index, []).append(f)
        end_fault = {"close": Close(after=0), "reset": Reset(after=0), "hang": Stall(after=0)}.get(self.ending)
        if end_fault is not None:
            fault_at.setdefault(len(pieces), []).append(end_fault)
        units = tuple(Unit("chunk", data) for _, data, _ in pieces)
        gaps = [(pieces[i + 1][0] - pieces[i][0]) / speed for i in range(len(pieces) - 1)]
        first = pieces[0][0] / speed if pieces else 0.0
        timed = dataclasses.replace(sc, headers_delay=sc.headers_delay / speed, first_byte_delay=first)
        return Plan(scenario=timed, units=units, gaps=gaps, attempt=attempt, key=key, fault_at=fault_at)


def _whole_stream(f: Any) -> bool:
    from .scenarios import Hostile

    return isinstance(f, Hostile) and f.what in ("random_chunks", "endless_headers")


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


# ------------------------------------------------------------------ building one


def _protocol(headers: Sequence[tuple[str, str]], body: bytes, hint: str | None) -> str:
    if hint in PROTOCOLS:
        return hint  # type: ignore[return-value]
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
    return sniff(ctype, body).name


def _framing(headers: Sequence[tuple[str, str]], hint: str | None) -> str:
    if hint in ("chunked", "length", "close"):
        return hint  # type: ignore[return-value]
    names = {k.lower(): v.lower() for k, v in headers}
    if "chunked" in names.get("transfer-encoding", ""):
        return "chunked"
    return "length" if "content-length" in names else "close"


_ENDING_OF_CAUSE = {"closed": "close", "reset": "reset", "cancelled": "hang"}


def _build(
    *,
    status: int,
    reason: str,
    headers: Sequence[tuple[str, str]],
    times: Sequence[float],
    chunks: Sequence[bytes],
    headers_delay: float,
    cause: str | None,
    framing: str | None,
    protocol: str | None,
    capped: bool,
    source: str,
    name: str | None,
    faults: Sequence[Fault],
    speed: float,
    at: str,
) -> Scenario:
    from .scenarios import Scenario

    ending = _ENDING_OF_CAUSE.get(cause or "", "hang" if (cause or "").startswith("timeout") else "end")
    if capped:
        ending = "close"
    body = b"".join(chunks)
    replay = Replay(
        status=status,
        reason=reason or "",
        headers=safe_headers(list(headers)),
        framing=_framing(headers, framing),
        times=tuple(max(0.0, t) for t in times),
        chunks=tuple(chunks),
        ending=ending,
        at=at,
        speed=speed,
        capped=capped,
        source=source,
    )
    return Scenario(
        protocol=_protocol(headers, body, protocol),
        events=0,
        headers_delay=max(0.0, headers_delay),
        first_byte_delay=replay.times[0] if replay.times else 0.0,
        gap=0.0,
        framing=replay.framing,  # type: ignore[arg-type]
        faults=tuple(faults),
        name=name,
        replay=replay,
    )


def scenario_from(
    source: Any,
    *,
    call: int = -1,
    faults: Sequence[Fault] = (),
    speed: float = 1.0,
    at: str = "event",
    name: str | None = None,
) -> Scenario:
    """A scenario replaying ``source``; see :meth:`kit.Scenario.from_trace`."""
    from .scenarios import Scenario

    faults = tuple(faults)
    if isinstance(source, Scenario):
        if source.replay is None:
            raise ConfigError("source", source.label, "a Scenario that replays a recording (from_trace output)")
        r = dataclasses.replace(source.replay, speed=speed, at=at)
        return source.replace(replay=r, faults=faults, name=name or source.name)
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            if path.is_dir():
                return _from_bundle(path, call, faults, speed, at, name)
            return _from_har(path, call, faults, speed, at, name)
        except ConfigError as exc:
            if exc.field.startswith(("replay", "protocol", "framing")) or exc.field == "recording":
                raise BundleError(f"{path}: not a replayable recording ({exc})") from None
            raise
    attempts = getattr(source, "attempts", None)
    if attempts is None:
        raise ConfigError(
            "source", type(source).__name__, "a recorded Trace, a recording bundle folder or a HAR file path"
        )
    if not attempts:
        raise ConfigError("source", repr(source), "a trace with at least one attempt")
    a = attempts[call] if -len(attempts) <= call < len(attempts) else None
    if a is None:
        raise ConfigError("call", call, f"this trace has {len(attempts)} attempts")
    data = getattr(a, "chunk_data", None)
    if data is None:
        raise ConfigError(
            "source",
            repr(source),
            "a trace with its body bytes: record the stream with kit.Recorder (kit's client keeps only sizes)",
        )
    if a.headers_ns is None:
        raise ConfigError("source", repr(source), "a call that got response headers (this one failed before them)")
    h0 = a.headers_ns
    times = [(t - h0) / 1e9 for t in a.chunk_t[: len(data)]]
    o = a.outcome
    return _build(
        status=a.status or 200,
        reason=getattr(a, "reason", "") or "",
        headers=getattr(a, "header_list", None) or list(a.headers.items()),
        times=times,
        chunks=list(data),
        headers_delay=(h0 - getattr(a, "sent_ns", a.start_ns)) / 1e9,
        cause=o.cause if o else None,
        framing=a.framing,
        protocol=source.protocol,
        capped=bool(getattr(a, "capped", False)),
        source=str(source.url),
        name=name or source.label,
        faults=faults,
        speed=speed,
        at=at,
    )


def _from_bundle(path: Path, call: int, faults, speed, at, name) -> Scenario:
    from .bundle import read_manifest
    from .scenarios import Scenario

    doc = read_manifest(path)
    rec = (doc.get("run") or {}).get("recording")
    scenarios = (doc.get("experiment") or {}).get("scenarios")
    if not isinstance(rec, dict) or not isinstance(scenarios, list) or not scenarios:
        raise BundleError(f"{path}: a kit bundle, but not a recording (no run.recording section; use kit record)")
    if isinstance(call, bool) or not isinstance(call, int) or not -len(scenarios) <= call < len(scenarios):
        raise ConfigError("call", call, f"this recording has calls 0..{len(scenarios) - 1}")
    try:
        sc = Scenario.from_dict(scenarios[call])
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise BundleError(f"{path}: recorded call {call} is not a valid replay scenario ({exc})") from None
    if sc.replay is None:
        raise BundleError(f"{path}: recorded call {call} has no replay section")
    return scenario_from(sc, faults=faults, speed=speed, at=at, name=name)


def _from_har(path: Path, call: int, faults, speed, at, name) -> Scenario:
    from .har import _parse_time, read_har

    doc = read_har(path)
    entries = doc["log"]["entries"]
    if not entries:
        raise BundleError(f"{path}: the HAR has no entries")
    if isinstance(call, bool) or not isinstance(call, int) or not -len(entries) <= call < len(entries):
        raise ConfigError("call", call, f"this HAR has entries 0..{len(entries) - 1}")
    e = entries[call]
    try:
        resp, tim = e["response"], e["timings"]
        headers = [(str(h["name"]), str(h["value"])) for h in resp.get("headers", [])]
        ms = {k: max(float(tim.get(k) or 0), 0.0) for k in ("blocked", "dns", "connect", "ssl", "send", "wait")}
        headers_ms = sum(ms.values()) - ms["ssl"]  # HAR's connect includes ssl
        content = resp.get("content") or {}
        kit_meta = e.get("_kit") or {}
        chunks_meta, msgs = e.get("_chunks"), e.get("_eventSourceMessages")
        if isinstance(chunks_meta, list) and isinstance(content.get("text"), str):
            text = content["text"]
            body = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode("utf-8")
            times, chunks, i = [], [], 0
            for c in chunks_meta:
                n = int(c["size"])
                if n < 0 or i + n > len(body):
                    raise BundleError(f"{path}: entries[{call}]._chunks add up to more than the body (cut short?)")
                chunks.append(body[i : i + n])
                times.append((float(c["t"]) - headers_ms) / 1e3)
                i += n
            if i != len(body):
                raise BundleError(f"{path}: entries[{call}]._chunks cover {i} of the body's {len(body)} bytes")
        elif isinstance(msgs, list) and msgs:
            # Chrome's EventStream export: one message per event, time in epoch seconds
            start = _parse_time(str(e["startedDateTime"])) / 1e9 + headers_ms / 1e3
            times, chunks = [], []
            for m in msgs:
                t = float(m["time"])
                if t < 1e9:
                    raise BundleError(f"{path}: entries[{call}] EventStream messages have no times to replay")
                data = str(m.get("data", ""))
                event = str(m.get("eventName") or m.get("type") or "message")
                lines = "".join(f"data: {line}\n" for line in data.split("\n"))
                head = "" if event == "message" else f"event: {event}\n"
                chunks.append((head + lines + "\n").encode())
                times.append(t - start)
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("content-type", "text/event-stream"))
        else:
            raise BundleError(
                f"{path}: entries[{call}] has no chunk times with body text (_chunks + content.text) "
                "nor timed EventStream messages: nothing to replay exactly"
            )
        base = times[0] if times and times[0] < 0 else 0.0
        times = [t - base for t in times]
        return _build(
            status=int(resp.get("status") or 200),
            reason=str(resp.get("statusText") or ""),
            headers=headers,
            times=times,
            chunks=chunks,
            headers_delay=headers_ms / 1e3,
            cause=kit_meta.get("cause"),
            framing=kit_meta.get("framing"),
            protocol=kit_meta.get("protocol"),
            capped=bool(kit_meta.get("capped", False)),
            source=str(path),
            name=name or f"{e['request'].get('method', 'GET')} {str(e['request'].get('url', ''))[:80]}",
            faults=faults,
            speed=speed,
            at=at,
        )
    except (BundleError, ConfigError):
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, binascii.Error) as exc:
        raise BundleError(
            f"{path}: entries[{call}] has a field of the wrong type ({type(exc).__name__}: {exc})"
        ) from None
