"""HAR 1.2 in and out: share traces with browser tools, chart browser recordings.

Export (:func:`trace_to_har`, :func:`result_to_har`): one HAR entry per attempt, with
the standard ``timings`` (``blocked, dns, connect, ssl, send, wait, receive``, ms,
-1 when not applicable) from the client's connection events, and the kit's detail under
custom fields, which Chrome DevTools' importer ignores:

- ``_kit``: trial id, attempt, request id, phase, cause, message, framing;
- ``_chunks``: ``[{"t": ms since startedDateTime, "size": bytes}]``;
- ``_eventSourceMessages``: one per parsed SSE event, in Chrome's own shape
  (``time`` in epoch seconds, ``eventName``, ``eventId``, ``data``; the kit does not keep
  event data, so ``data`` is empty and ``_size`` holds its size).

The request's headers are the ones it was sent with (``authorization``, ``x-api-key``,
cookies and every value not known to be harmless redacted, see :mod:`kit._redact`).
Secrets: URLs and headers in a trace are already redacted; they are redacted again here.

Import (:func:`har_records`; :func:`kit.from_har` makes the Result): any HAR 1.2 (a browser's "Save all as HAR", or the kit's)
becomes a :class:`~kit.Result` with the same tables: one trial per entry, cells by
method and URL path. Chunk times come from ``_chunks`` if present; SSE event times from
``_eventSourceMessages`` (Chrome records them for ``EventSource`` requests); an
event-stream body without them (``fetch``) is parsed from ``response.content.text``
and its events are stamped at the end of the response, since the HAR has no times
for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd

from ._clock import ns_to_s
from ._errors import BundleError
from ._redact import redact_headers, redact_url
from .protocols import SSEParser
from .records import AttemptRecord, CellLabels, TrialRecord
from .tables import build, traces_to_records

__all__ = ["har_records", "result_to_har", "tables_to_har", "trace_to_har", "validate_har"]

_STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


def _iso(unix_ns: int) -> str:
    dt = datetime.fromtimestamp(ns_to_s(unix_ns), tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}Z"


def _ms(a: int | None, b: int | None) -> float:
    if a is None or b is None or b < a:
        return -1.0
    return round((b - a) / 1e6, 3)


def _anchor(meta: Mapping[str, Any]) -> tuple[int, int]:
    """(unix_ns, perf_ns) taken at the same moment: maps the kit's clock to wall time."""
    a = meta.get("clock_anchor")
    if a:
        return int(a["unix_ns"]), int(a["perf_ns"])
    from ._clock import now_ns

    return time.time_ns(), now_ns()


def trace_to_har(trace: Any, path: str | Path | None = None) -> dict[str, Any]:
    """HAR 1.2 of one :class:`~kit.Trace` (an entry per attempt); written to ``path`` if given."""
    records, cells = traces_to_records([trace], [trace.label or "trace"])
    return tables_to_har(build(records, cells)[0], {}, path)


def result_to_har(
    result: Any, path: str | Path | None = None, *, trial_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """HAR 1.2 of every attempt of a :class:`~kit.Result` (or of ``trial_ids``); written to ``path`` if given."""
    return tables_to_har(result.tables, result.meta, path, trial_ids=trial_ids)


def tables_to_har(
    tables: Mapping[str, pd.DataFrame],
    meta: Mapping[str, Any],
    path: str | Path | None = None,
    *,
    trial_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """HAR 1.2 of the attempts in ``tables`` (a Result's, see :mod:`kit.tables`); ``meta`` may hold a clock anchor."""
    from ._version import __version__

    unix0, perf0 = _anchor(meta)
    attempts = tables["attempts"]
    if trial_ids is not None:
        attempts = attempts[attempts["trial_id"].isin(list(trial_ids))]
    chunks = {k: g for k, g in tables["chunks"].groupby(["trial_id", "attempt"], sort=False)}
    events = {k: g for k, g in tables["events"].groupby(["trial_id", "attempt"], sort=False)}
    conns = {
        k: dict(zip(g["name"], g["t_ns"], strict=True))
        for k, g in tables["connection"].groupby(["trial_id", "attempt"], sort=False)
    }
    trials = tables["trials"]
    protocol = {}
    if "scenario.protocol" in trials.columns:
        protocol = dict(zip(trials["trial_id"], trials["scenario.protocol"], strict=True))
    entries = []
    empty = pd.DataFrame()
    for a in attempts.itertuples(index=False):
        key = (a.trial_id, a.attempt)
        start = int(a.start_ns)
        end = int(a.end_ns) if not pd.isna(a.end_ns) else start
        ev = conns.get(key, {})
        c_start = ev.get("connection.connect_tcp.started")
        c_done = ev.get("connection.connect_tcp.complete")
        s_start = ev.get("http11.send_request_headers.started")
        s_done = ev.get("http11.send_request_body.complete") or ev.get("http11.send_request_headers.complete")
        h_done = ev.get("http11.receive_response_headers.complete")
        if h_done is None and not pd.isna(a.headers):
            h_done = int(a.start_ns) + round((a.headers - a.start) * 1e9)
        blocked = _ms(start, c_start if c_start is not None else s_start)
        connect = _ms(c_start, c_done)
        send = max(_ms(s_start, s_done), 0.0)
        wait = (
            max(_ms(s_done or s_start or start, h_done), 0.0)
            if h_done is not None
            else max(_ms(s_done or start, end), 0.0)
        )
        receive = max(_ms(h_done, end), 0.0) if h_done is not None else 0.0
        timings = {
            "blocked": blocked,
            "dns": -1,
            "connect": connect,
            "ssl": -1,
            "send": send,
            "wait": wait,
            "receive": receive,
        }
        total = round(sum(v for v in timings.values() if v > 0), 3)
        resp_headers = json.loads(a.response_headers) if isinstance(a.response_headers, str) else {}
        resp_headers = redact_headers(resp_headers)
        url = redact_url(a.url) if isinstance(a.url, str) else ""
        ch = chunks.get(key, empty)
        evs = events.get(key, empty)
        status = int(a.status) if not pd.isna(a.status) else 0
        wall_start = unix0 + (start - perf0)
        entry = {
            "startedDateTime": _iso(wall_start),
            "time": total,
            "request": {
                "method": a.method if isinstance(a.method, str) else "POST",
                "url": url,
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": _request_headers(a),
                "queryString": [{"name": k, "value": v} for k, v in parse_qsl(url.partition("?")[2].partition("#")[0])],
                "headersSize": -1,
                "bodySize": -1,
            },
            "response": {
                "status": status,
                "statusText": _STATUS_TEXT.get(status, "") if status else "",
                "httpVersion": "HTTP/1.1" if status else "",
                "cookies": [],
                "headers": [{"name": k, "value": v} for k, v in resp_headers.items()],
                "content": {
                    "size": int(a.bytes_received),
                    "mimeType": resp_headers.get("content-type", "x-unknown"),
                },
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": int(a.bytes_received),
            },
            "cache": {},
            "timings": timings,
            "_kit": {
                "trial_id": a.trial_id,
                "attempt": int(a.attempt),
                "request_id": a.request_id,
                "protocol": protocol.get(a.trial_id),
                "phase": a.phase,
                "cause": a.cause,
                "message": a.message if isinstance(a.message, str) else "",
                "framing": a.framing if isinstance(a.framing, str) else None,
            },
            "_chunks": [
                {"t": round((int(t) - start) / 1e6, 3), "size": int(s)}
                for t, s in zip(ch.get("t_ns", []), ch.get("size", []), strict=True)
            ],
            "_eventSourceMessages": [
                {
                    "time": round(ns_to_s(unix0 + int(t) - perf0), 6),
                    "eventName": ty if isinstance(ty, str) else "message",
                    "eventId": "",
                    "data": "",
                    "_size": int(s),
                }
                for t, ty, s in zip(evs.get("t_ns", []), evs.get("type", []), evs.get("size", []), strict=True)
            ],
        }
        if isinstance(a.error, str):
            entry["_kit"]["error"] = a.error
        entries.append(entry)
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "kit", "version": __version__},
            "pages": [],
            "entries": entries,
        }
    }
    problems = validate_har(har)
    assert not problems, problems  # our own output must always validate
    if path is not None:
        Path(path).write_text(json.dumps(har, indent=1))
    return har


def _request_headers(a: Any) -> list[dict[str, str]]:
    """The request's headers as sent (redacted again: authorization, x-api-key, cookies...).

    Attempts recorded before the kit kept request headers (an old bundle) have only the
    ``x-kit-*`` ones the kit knows it sent."""
    raw = getattr(a, "request_headers", None)
    if isinstance(raw, str) and raw:
        return [{"name": k, "value": v} for k, v in redact_headers(json.loads(raw)).items()]
    return [
        {"name": "x-kit-request-id", "value": a.request_id},
        {"name": "x-kit-attempt", "value": str(a.attempt)},
    ]


# ---------------------------------------------------------------------- validation

_ENTRY = ("startedDateTime", "time", "request", "response", "cache", "timings")
_REQUEST = ("method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize")
_RESPONSE = (
    "status",
    "statusText",
    "httpVersion",
    "cookies",
    "headers",
    "content",
    "redirectURL",
    "headersSize",
    "bodySize",
)
_TIMINGS = ("send", "wait", "receive")


def validate_har(doc: Any) -> list[str]:
    """Problems that make ``doc`` not a HAR 1.2 document (its required fields); [] if none."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("log"), Mapping):
        return ["no top-level 'log' object"]
    log = doc["log"]
    out = []
    if log.get("version") != "1.2":
        out.append(f"log.version is {log.get('version')!r}, expected '1.2'")
    creator = log.get("creator")
    if not isinstance(creator, Mapping) or "name" not in creator or "version" not in creator:
        out.append("log.creator needs name and version")
    entries = log.get("entries")
    if not isinstance(entries, list):
        return [*out, "log.entries is not a list"]
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            out.append(f"entries[{i}] is not an object")
            continue
        out += [f"entries[{i}].{k} is missing" for k in _ENTRY if k not in e]
        req, resp, tim = e.get("request"), e.get("response"), e.get("timings")
        if isinstance(req, Mapping):
            out += [f"entries[{i}].request.{k} is missing" for k in _REQUEST if k not in req]
        if isinstance(resp, Mapping):
            out += [f"entries[{i}].response.{k} is missing" for k in _RESPONSE if k not in resp]
            content = resp.get("content")
            if not isinstance(content, Mapping) or "size" not in content or "mimeType" not in content:
                out.append(f"entries[{i}].response.content needs size and mimeType")
        if isinstance(tim, Mapping):
            out += [f"entries[{i}].timings.{k} is missing" for k in _TIMINGS if k not in tim]
        if len(out) > 20:
            break
    return out


# -------------------------------------------------------------------------- import


def _parse_time(value: str) -> int:
    s = value.replace("Z", "+00:00")
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1e6) * 1000


def _pos(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and v > 0 else 0.0


def har_records(path: str | Path) -> tuple[list[TrialRecord], list[CellLabels], dict[str, Any]]:
    """The trial records, cells and metadata of a HAR 1.2 file (:func:`kit.from_har` makes the Result).

    One trial per entry (``trial_id`` ``e0000``...), one cell per method and URL path;
    times are on the HAR's wall clock. Raises :class:`~kit.BundleError` naming the file
    if it is not HAR 1.2.
    """
    try:
        return _from_har(path)
    except BundleError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
        # a HAR is untrusted data: a field of the wrong type is a bad file, not a crash
        raise BundleError(f"{path}: a HAR field has the wrong type or value ({type(exc).__name__}: {exc})") from None


def read_har(path: str | Path) -> dict[str, Any]:
    """The parsed HAR document at ``path``; BundleError naming the file if it is not HAR 1.2."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise BundleError(f"{path}: no such HAR file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not JSON, so not a HAR file ({exc})") from None
    problems = validate_har(doc)
    if problems:
        raise BundleError(f"{path}: not a HAR 1.2 file: " + "; ".join(problems[:5]))
    return doc


def _from_har(path: str | Path) -> tuple[list[TrialRecord], list[CellLabels], dict[str, Any]]:

    path = Path(path)
    doc = read_har(path)
    cells: dict[tuple[str, str], CellLabels] = {}
    records: list[TrialRecord] = []
    for i, e in enumerate(doc["log"]["entries"]):
        req, resp, tim = e["request"], e["response"], e["timings"]
        url = redact_url(str(req.get("url", "")))
        host_path = url.partition("://")[2].partition("?")[0].rpartition("@")[2]  # no urlsplit: [redacted]@ is no IPv6
        ckey = (str(req.get("method", "GET")), host_path)
        if ckey not in cells:
            cells[ckey] = CellLabels(len(cells), f"{ckey[0]} {ckey[1]}", "recorded", "recorded")
        cell = cells[ckey]
        try:
            start = _parse_time(str(e["startedDateTime"]))
        except ValueError:
            raise BundleError(f"{path}: entries[{i}].startedDateTime is not an ISO 8601 time") from None
        blocked, dns, connect, ssl = (_pos(tim.get(k)) for k in ("blocked", "dns", "connect", "ssl"))
        send, wait, receive = (_pos(tim.get(k)) for k in ("send", "wait", "receive"))
        ms = 1_000_000
        c_start = start + int((blocked + dns) * ms)
        c_done = c_start + int((connect + ssl) * ms) if tim.get("connect", -1) not in (-1, None) else None
        s_start = start + int((blocked + dns + connect) * ms)
        s_done = s_start + int(send * ms)
        status = int(resp.get("status") or 0)
        h_ns = s_done + int(wait * ms) if status else None
        total = e.get("time")
        end = start + int(
            (
                float(total)
                if isinstance(total, int | float) and total >= 0
                else blocked + dns + connect + send + wait + receive
            )
            * ms
        )
        connection = []
        if c_done is not None:
            connection += [("connection.connect_tcp.started", c_start), ("connection.connect_tcp.complete", c_done)]
        connection += [("http11.send_request_headers.started", s_start), ("http11.send_request_body.complete", s_done)]
        if h_ns is not None:
            connection.append(("http11.receive_response_headers.complete", h_ns))
        kit_meta = e.get("_kit") or {}
        size = resp.get("content", {}).get("size", -1)
        if isinstance(e.get("_chunks"), list):
            chunk_t = [start + round(float(c["t"]) * ms) for c in e["_chunks"]]
            chunk_size = [int(c.get("size", 0)) for c in e["_chunks"]]
        elif h_ns is not None and isinstance(size, int) and size > 0:
            chunk_t, chunk_size = [end], [size]  # no per-chunk times in a plain HAR: the whole body at the end
        else:
            chunk_t, chunk_size = [], []
        event_t, event_type, event_size = [], [], []
        msgs = e.get("_eventSourceMessages")
        if isinstance(msgs, list) and msgs:
            for m in msgs:
                t = float(m.get("time", 0))
                # Chrome stamps messages in epoch seconds; fall back to the response end otherwise
                t_ns = round(t * 1e9) if t > 1e9 else end
                event_t.append(t_ns)
                event_type.append(str(m.get("eventName") or "message"))
                event_size.append(int(m.get("_size", len(str(m.get("data", "")).encode()))))
        else:
            text = resp.get("content", {}).get("text")
            mime = str(resp.get("content", {}).get("mimeType", ""))
            if isinstance(text, str) and "event-stream" in mime:
                for ev in SSEParser().feed(text.encode()):
                    event_t.append(end)
                    event_type.append(ev.event)
                    event_size.append(ev.size)
        phase = kit_meta.get("phase") or ("done" if 200 <= status < 400 else ("headers" if status else "connect"))
        cause = kit_meta.get("cause") or ("ok" if 200 <= status < 400 else ("http_status" if status else "closed"))
        headers = {h["name"]: h["value"] for h in resp.get("headers", []) if isinstance(h, Mapping) and "name" in h}
        sent = [(h["name"], h["value"]) for h in req.get("headers", []) if isinstance(h, Mapping) and "name" in h]
        attempt = AttemptRecord(
            index=int(kit_meta.get("attempt", 1)),
            request_id=str(kit_meta.get("request_id", f"har-{i}")),
            method=ckey[0],
            url=url,
            start_ns=start,
            connection=tuple(connection),
            headers_ns=h_ns,
            status=status or None,
            headers=redact_headers(headers),
            request_headers=redact_headers(sent),
            framing=kit_meta.get("framing"),
            chunk_t=chunk_t,
            chunk_size=chunk_size,
            event_t=event_t,
            event_type=event_type,
            event_size=event_size,
            saw_terminator=any(t in ("message_stop",) for t in event_type),
            end_ns=end,
            phase=phase,
            cause=cause,
            message=str(kit_meta.get("message", "")),
            error=kit_meta.get("error"),
        )
        records.append(
            TrialRecord(
                trial_id=f"e{i:04d}",
                cell=cell.index,
                trial=sum(1 for r in records if r.cell == cell.index),
                seed=0,
                url=url,
                protocol=kit_meta.get("protocol") or "raw",
                start_ns=start,
                end_ns=end,
                attempts=(attempt,),
            )
        )
    creator = doc["log"].get("creator", {})
    meta = {
        "source": "har",
        "har_file": str(path),
        "creator": f"{creator.get('name')} {creator.get('version')}",
        "clock_anchor": {"unix_ns": 0, "perf_ns": 0},
    }
    return records, list(cells.values()), meta
