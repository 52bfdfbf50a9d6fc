"""A scenario that replays a recording: from a trace, a recording bundle, a HAR file.

:func:`replay_scenario` builds a :class:`~kit.Scenario` whose ``replay`` field
(:class:`~kit._recorded.Replay`) holds a recorded response: status, safe headers, body
bytes, timing. Its sources: a trace recorded by :class:`kit.Recorder`, a recording bundle
folder (``kit record -o``), a HAR file with chunk times and body text (the kit's), or
Chrome's EventStream export (``_eventSourceMessages`` with times). A file that is not one
of those, or is cut short, raises :class:`~kit.BundleError` naming it.

The fault server writes the recorded chunks at their times, each as one write (one HTTP
chunk with chunked framing), so a client sees the original's shape; ``speed`` scales the
timing. Faults compose on top: their ``after`` counts SSE events (``at="event"``, the
default: ``Stall(after=17)`` acts right after the 17th event) or body bytes
(``at="byte"``); the chunk holding that point is cut there.

Downstream of the scenario values (it builds Scenarios and reads bundles and HAR files);
the value itself lives below them, in :mod:`kit._recorded`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._clock import ns_to_s
from ._errors import BundleError, ConfigError
from ._recorded import ENDINGS, MAX_REPLAY_BYTES, MAX_REPLAY_CHUNKS, Replay, safe_headers
from .faults import Fault
from .protocols import PROTOCOLS, sniff
from .scenarios import Scenario

__all__ = ["ENDINGS", "MAX_REPLAY_BYTES", "MAX_REPLAY_CHUNKS", "Replay", "replay_scenario", "safe_headers"]

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


def replay_scenario(
    source: Any,
    *,
    call: int = -1,
    faults: Sequence[Fault] = (),
    speed: float = 1.0,
    at: str = "event",
    name: str | None = None,
) -> Scenario:
    """A scenario that replays a recorded stream exactly: status, safe headers, body bytes, timing.

    ``source``: a trace recorded by :class:`kit.Recorder`, a recording bundle folder
    (``kit record -o``), a HAR file with chunk times and body text, Chrome's EventStream
    export, or a replay scenario (to change its faults, speed or ``at``). ``faults`` act
    on top, their ``after`` counting SSE events (``at="event"``) or body bytes
    (``at="byte"``); ``speed=2.0`` plays twice as fast; ``call`` picks one call of a
    recording with several (default: the last). A file that is not a recording, or is cut
    short, raises :class:`~kit.BundleError`. Also ``kit.replay_scenario``.
    """
    faults = tuple(faults)
    if isinstance(source, Scenario):
        if source.replay is None:
            raise ConfigError("source", source.label, "a Scenario that replays a recording (replay_scenario output)")
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
    times = [ns_to_s(t - h0) for t in a.chunk_t[: len(data)]]
    o = a.outcome
    return _build(
        status=a.status or 200,
        reason=getattr(a, "reason", "") or "",
        headers=getattr(a, "header_list", None) or list(a.headers.items()),
        times=times,
        chunks=list(data),
        headers_delay=ns_to_s(h0 - getattr(a, "sent_ns", a.start_ns)),
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
    return replay_scenario(sc, faults=faults, speed=speed, at=at, name=name)


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
            start = ns_to_s(_parse_time(str(e["startedDateTime"]))) + headers_ms / 1e3
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
