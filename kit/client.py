"""The instrumented streaming client: one call in, one :class:`~kit.trace.Trace` out.

It never raises for a network or server fault (the fault is the data); it raises only
for misuse. Timing uses one ``asyncio.timeout`` per attempt whose deadline moves as the
phase changes (connect -> send -> headers -> first chunk -> each chunk), so each limit of
the :class:`~kit.policy.Policy` fires as its own cause with no extra task per chunk.
Connection events come from httpcore's ``trace`` extension.

Why over 600 lines: the call loop, the phase clock and the body reader live together; the
body reader (framing, phase tracking, SSE feed) is the part meant to move to a socket-free
``kit/_body.py`` shared with :mod:`kit.instrument` (not done yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import random
import ssl
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from ._classify import classify_exception, is_reset
from ._clock import now_ns
from ._errors import ConfigError
from ._fidelity import LagMonitor
from ._loop import run_sync
from ._redact import redact_headers, redact_text, redact_url, scrub, secret_values
from ._safejson import loads as safe_json
from .policy import Policy
from .protocols import Protocol, SSEParser
from .records import Deadline
from .retry import decide as _retry_decide
from .trace import Attempt, Outcome, Trace

__all__ = ["astream", "stream"]

_KNOWN_SUFFIXES = ("/v1/messages", "/chat/completions", "/stream")
ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error response body kept for the message


def _target(url: str, protocol: Protocol) -> str:
    """``url`` with the protocol's API path appended to its path (a query string stays at the end)."""
    u = httpx.URL(str(url))
    path = u.path.rstrip("/")
    if any(path.endswith(s) for s in _KNOWN_SUFFIXES):
        return str(u.copy_with(path=path or "/"))
    return str(u.copy_with(path=path + protocol.path))


def stream(
    url: str,
    *,
    policy: Policy | None = None,
    protocol: str | None = None,
    json_body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    trial: str | None = None,
    max_event_bytes: int | None = 16 * 1024 * 1024,
    seed: int | None = None,
) -> Trace:
    """Stream one request and return its :class:`~kit.trace.Trace` (blocking).

    ``url`` is a base URL (``server.url_for(scenario)``, an API origin) or a full
    endpoint URL. ``protocol`` (anthropic, openai, ndjson, raw) picks the path, the
    request body and how the body is parsed; a scenario URL carries its own.
    Works in scripts and inside Jupyter (it then runs on a worker thread).
    """
    return run_sync(
        astream(
            url,
            policy=policy,
            protocol=protocol,
            json_body=json_body,
            headers=headers,
            method=method,
            trial=trial,
            max_event_bytes=max_event_bytes,
            seed=seed,
        )
    )


async def astream(
    url: str,
    *,
    policy: Policy | None = None,
    protocol: str | None = None,
    json_body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    client: httpx.AsyncClient | None = None,
    trial: str | None = None,
    max_event_bytes: int | None = 16 * 1024 * 1024,
    seed: int | None = None,
) -> Trace:
    """Async :func:`stream`; pass ``client`` to reuse an ``httpx.AsyncClient`` and its pool.

    The policy's retries (see :mod:`kit.retry`) add attempts to the trace, each with its
    ``wait_before``; ``seed`` (else ``policy.seed``) seeds the backoff jitter.
    """
    policy = policy if policy is not None else Policy()
    if not isinstance(policy, Policy):
        raise ConfigError("policy", policy, "expected a kit.Policy")
    proto = Protocol.of(protocol or getattr(url, "protocol", None) or "anthropic")
    protocol = proto.name
    try:
        target = _target(url, proto)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError("url", url, f"expected an http(s) URL ({exc})") from None
    if httpx.URL(target).scheme not in ("http", "https"):
        raise ConfigError("url", url, "expected an http:// or https:// URL")
    body = dict(json_body) if json_body is not None else proto.request_body()
    scenario = getattr(url, "scenario", None)
    # Set-up is not latency: what the call needs before its first byte is sent (one-off
    # imports and TLS context, a client of its own) happens before its clock starts.
    setup_ns = now_ns()
    await _warm()
    monitor = LagMonitor.for_running_loop()  # the client's own lag while this call is in flight
    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(timeout=httpx.Timeout(None), trust_env=False, verify=_ssl_context())
    start_ns = now_ns()
    trace = Trace(
        url=redact_url(target),
        protocol=protocol,
        start_ns=start_ns,
        policy=policy.to_dict(),
        scenario=scenario.to_dict() if scenario is not None else None,
        label=getattr(scenario, "label", None),
        setup_s=(start_ns - setup_ns) / 1e9,
    )
    try:
        rng = random.Random(seed if seed is not None else policy.seed)
        wait = 0.0
        for index in range(1, policy.max_retries + 2):
            attempt = _new_attempt(trace, index, method, target, wait)
            await _run_attempt(client, attempt, target, trace, policy, body, headers, trial, max_event_bytes)
            decision = _retry_decide(
                policy,
                attempt.outcome or Outcome("connect", "cancelled"),
                retries_done=index - 1,
                status=attempt.status,
                headers=attempt.headers,
                u=rng.random(),
            )
            if not decision.retry:
                break
            wait = decision.wait
            if policy.total is not None and now_ns() + wait * 1e9 >= trace.start_ns + policy.total * 1e9:
                break  # the call's deadline would pass while waiting: the client gives up here
            await asyncio.sleep(wait)
    finally:
        trace.end_ns = now_ns()
        trace.client_lag_s = monitor.lag_between(trace.start_ns)
        if own_client:
            await client.aclose()
    return trace


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once: building it costs ~30 ms per client."""
    return httpx.create_ssl_context()


# modules httpx and httpcore import on a client's first request, not at import time
_LAZY_IMPORTS = ("httpcore", "sniffio", "anyio", "anyio._backends._asyncio", "httpcore._backends.anyio")
_warmed = False


async def _warm() -> None:
    """The client's one-off set-up, once per process: 50-300 ms that the first call's
    TTFB would otherwise count (the TLS context and its CA bundle, the modules httpx
    loads lazily on its first request, a first client built and closed)."""
    global _warmed
    if _warmed:
        return
    _ssl_context()
    for name in _LAZY_IMPORTS:
        with contextlib.suppress(ImportError):  # another httpx/httpcore version: less to warm
            importlib.import_module(name)
    async with httpx.AsyncClient(timeout=httpx.Timeout(None), trust_env=False, verify=_ssl_context()):
        pass
    _warmed = True


def _new_attempt(trace: Trace, index: int, method: str, target: str, wait_before: float = 0.0) -> Attempt:
    attempt = Attempt(
        index=index,
        request_id=uuid.uuid4().hex[:16],
        method=method,
        url=trace.url,
        start_ns=now_ns(),
        protocol=trace.protocol,
        wait_before=wait_before,
    )
    trace.attempts.append(attempt)
    return attempt


class _Clock:
    """Moves one ``asyncio.timeout`` deadline as the attempt changes phase.

    The deadline is the earlier of the current phase's limit and the call's ``total``
    deadline; ``cause`` says which one it is, so a timeout is classified without guessing.
    Every deadline it arms is recorded in ``armed`` (the attempt's ``deadlines``) as
    ``(phase, cause, limit_s, at_ns)``; the idle limit's re-arms update its last entry.
    """

    __slots__ = ("_phase_cause", "_phase_deadline", "armed", "cause", "cm", "loop", "phase", "policy", "total_ns")

    def __init__(self, policy: Policy, start_ns: int, call_start_ns: int, armed: list[Deadline]) -> None:
        self.policy = policy
        self.armed = armed
        self.cm: asyncio.Timeout | None = None
        self.loop = asyncio.get_running_loop()
        self.total_ns = call_start_ns + int(policy.total * 1e9) if policy.total else None
        if self.total_ns is not None:
            armed.append(Deadline("call", "timeout.total", policy.total, self.total_ns))
        self.phase = "connect"
        self.cause = "timeout.total"
        self._phase_deadline: int | None = None
        self._phase_cause = "timeout.connect"
        self.enter("connect", start_ns)

    def enter(self, phase: str, t_ns: int) -> None:
        """Enter ``phase`` at ``t_ns``: its limit starts counting from then."""
        p = self.policy
        self.phase = phase
        if phase == "headers":
            return  # the headers limit started counting with `send`
        if phase == "connect":
            limit, cause = p.connect, "timeout.connect"
        elif phase == "send":
            limit, cause = p.headers, "timeout.headers"
        elif phase == "first_chunk" and p.first_chunk is not None:
            limit, cause = p.first_chunk, "timeout.first_chunk"
        else:  # first_chunk without its own limit, stream, done: the idle limit
            limit, cause = p.idle, "timeout.idle"
        if limit is None:
            self._set(None, cause)
            return
        at = t_ns + int(limit * 1e9)
        self.armed.append(Deadline(phase, cause, limit, at))
        self._set(at, cause)

    def chunk(self, t_ns: int) -> None:
        """A body chunk arrived: the idle limit restarts."""
        idle = self.policy.idle
        if idle is not None:
            at = t_ns + int(idle * 1e9)
            d = Deadline(self.phase, "timeout.idle", idle, at)
            if self.armed and self.armed[-1].cause == "timeout.idle":
                self.armed[-1] = d
            else:
                self.armed.append(d)
            self._set(at, "timeout.idle")

    def arm(self, cm: asyncio.Timeout) -> None:
        """Attach the ``asyncio.timeout`` this clock drives."""
        self.cm = cm
        self._set(self._phase_deadline, self._phase_cause)

    def _set(self, phase_deadline: int | None, phase_cause: str) -> None:
        self._phase_deadline, self._phase_cause = phase_deadline, phase_cause
        deadline, self.cause = phase_deadline, phase_cause
        if self.total_ns is not None and (deadline is None or self.total_ns <= deadline):
            deadline, self.cause = self.total_ns, "timeout.total"
        if self.cm is not None:
            self.cm.reschedule(None if deadline is None else self.loop.time() + (deadline - now_ns()) / 1e9)


async def _run_attempt(
    client: httpx.AsyncClient,
    attempt: Attempt,
    target: str,
    trace: Trace,
    policy: Policy,
    body: dict[str, Any],
    extra_headers: Mapping[str, str] | None,
    trial: str | None,
    max_event_bytes: int | None,
) -> None:
    clock = _Clock(policy, attempt.start_ns, trace.start_ns, attempt.deadlines)
    conn_events = attempt.connection

    async def on_trace(name: str, info: Mapping[str, Any]) -> None:
        t = now_ns()
        conn_events.append((name, t))
        if (
            name in ("connection.connect_tcp.complete", "http11.send_request_headers.started")
            and clock.phase == "connect"
        ):
            clock.enter("send", t)
        elif name == "http11.receive_response_headers.started" and clock.phase == "send":
            clock.enter("headers", t)

    protocol = Protocol.of(attempt.protocol)
    headers = {
        "accept": protocol.accept,
        "x-kit-request-id": attempt.request_id,
        "x-kit-attempt": str(attempt.index),
        **dict(protocol.request_headers),
    }
    if trial is not None:
        headers["x-kit-trial"] = str(trial)
    if extra_headers:
        headers.update(extra_headers)
    request = client.build_request(attempt.method, target, json=body, headers=headers)
    attempt.request_headers = redact_headers(request.headers.multi_items())
    request.extensions["trace"] = on_trace
    reader = _BodyReader(attempt, max_event_bytes)
    response: httpx.Response | None = None
    try:
        async with asyncio.timeout(None) as cm:
            clock.arm(cm)
            response = await client.send(request, stream=True)
            try:
                t = now_ns()
                attempt.headers_ns = t
                attempt.status = response.status_code
                attempt.headers = redact_headers(response.headers.multi_items())
                attempt.framing = _framing(response)
                clock.enter("first_chunk", t)
                if response.status_code >= 400:
                    error_body = await _read_error_body(response, attempt, clock)
                    attempt.outcome = Outcome(  # the body is the server's text: keys in it are redacted
                        "headers", "http_status", redact_text(_status_message(response.status_code, error_body))
                    )
                else:
                    await _read_body(response, attempt, clock, reader)
            finally:
                await response.aclose()
    except TimeoutError:
        attempt.outcome = Outcome(_phase_for(attempt, clock), clock.cause, _timeout_message(clock))
    except asyncio.CancelledError:
        attempt.outcome = Outcome(_phase_for(attempt, clock), "cancelled", "cancelled by the caller")
        attempt.end_ns = now_ns()
        _attach_server_log(attempt)
        raise
    except httpx.HTTPError as exc:
        attempt.outcome = classify_exception(exc, _phase_for(attempt, clock))
        attempt.error = f"{type(exc).__name__}: {exc}"
    except OSError as exc:  # raised below httpx's mapping, e.g. while closing
        attempt.outcome = Outcome(_phase_for(attempt, clock), "reset" if is_reset(exc) else "closed", str(exc))
        attempt.error = f"{type(exc).__name__}: {exc}"
    attempt.end_ns = attempt.end_ns or now_ns()
    if attempt.outcome is None:
        attempt.outcome = reader.outcome(attempt)
    _note_truncation(attempt, policy.max_recorded)
    _scrub_attempt(attempt, secret_values(request.headers.multi_items(), target))
    _attach_server_log(attempt)


def _scrub_attempt(attempt: Attempt, secrets: tuple[str, ...]) -> None:
    """The request's own secret values out of whatever the upstream echoed (message, error, headers)."""
    o = attempt.outcome
    if o is not None and o.message:
        attempt.outcome = Outcome(o.phase, o.cause, scrub(o.message, secrets))
    if attempt.error:
        attempt.error = scrub(attempt.error, secrets)
    if secrets and attempt.headers:
        attempt.headers = {k: scrub(v, secrets) for k, v in attempt.headers.items()}


def _framing(response: httpx.Response) -> str:
    if "chunked" in response.headers.get("transfer-encoding", "").lower():
        return "chunked"
    if "content-length" in response.headers:
        return "length"
    return "close"


def _phase_for(attempt: Attempt, clock: _Clock) -> str:
    if attempt.saw_terminator:
        return "done"
    if attempt.chunk_t:
        return "stream"
    if attempt.headers_ns is not None:
        return "first_chunk"
    return clock.phase


def _timeout_message(clock: _Clock) -> str:
    p = clock.policy
    limit = {
        "timeout.connect": p.connect,
        "timeout.headers": p.headers,
        "timeout.first_chunk": p.first_chunk,
        "timeout.idle": p.idle,
        "timeout.total": p.total,
    }.get(clock.cause)
    return f"{clock.cause} after {limit:g} s" if limit is not None else clock.cause


class _BodyReader:
    """Parses the body as it arrives and decides when the stream is over."""

    def __init__(self, attempt: Attempt, max_event_bytes: int | None) -> None:
        self.attempt = attempt
        self.protocol = Protocol.of(attempt.protocol)
        self.kind = self.protocol.event_format
        self.sse = SSEParser(max_event_bytes=max_event_bytes) if self.kind == "sse" else None
        self.line_buf = b""
        self.stop: Outcome | None = None
        self.max_event_bytes = max_event_bytes
        self.record = True  # False past Policy.max_recorded: events are counted, not recorded

    def feed(self, data: bytes, t: int) -> None:
        a = self.attempt
        if self.sse is not None:
            for ev in self.sse.feed(data):
                if self.record:
                    a.event_t.append(t)
                    a.event_type.append(ev.event)
                    a.event_size.append(ev.size)
                else:
                    a.unrecorded_events += 1
                self._check_sse(ev.event, ev.data)
                if self.stop is not None:
                    return
            if self.stop is None:
                if self.sse.oversized:
                    self.stop = Outcome(
                        self._phase(),
                        "malformed",
                        f"an event over the client's cap of max_event_bytes={self.max_event_bytes}",
                    )
                elif self.sse.bad_lines:
                    self.stop = Outcome(
                        self._phase(), "malformed", "a line that is not an SSE field (not data/event/id/retry)"
                    )
                elif self.sse.decode_errors:
                    self.stop = Outcome(self._phase(), "malformed", "event data that is not valid UTF-8")
        elif self.kind == "ndjson":
            buf = self.line_buf + data
            *lines, self.line_buf = buf.split(b"\n")
            if self.max_event_bytes is not None and len(self.line_buf) > self.max_event_bytes:
                self.line_buf = b""
                self.stop = Outcome(
                    "stream",
                    "malformed",
                    f"an NDJSON line over the client's cap of max_event_bytes={self.max_event_bytes}",
                )
                return
            for line in lines:
                if not line.strip():
                    continue
                try:
                    obj = safe_json(line)
                except ValueError:
                    self._line(t, len(line) + 1, "invalid")
                    self.stop = Outcome("stream", "malformed", "an NDJSON line that is not JSON")
                    return
                if isinstance(obj, dict) and "error" in obj:
                    self._line(t, len(line) + 1, "error")
                    self.stop = Outcome("stream", "error_event", _error_text(obj))
                    return
                self._line(t, len(line) + 1, "line")

    def _line(self, t: int, size: int, kind: str) -> None:
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

    def outcome(self, attempt: Attempt) -> Outcome:
        """The outcome of a body that ended cleanly (no exception)."""
        if self.stop is not None:
            return self.stop
        started = bool(attempt.chunk_t)
        if self.sse is not None and self.sse.pending:
            return Outcome(self._phase(), "malformed", "the body ended inside an event (not a complete SSE stream)")
        if self.kind == "ndjson" and self.line_buf.strip():
            return Outcome("stream", "malformed", "the body ended inside an NDJSON line")
        if attempt.saw_terminator or self.protocol.terminator is None:
            return Outcome("done", "ok")
        phase = "stream" if started else "first_chunk"
        what = "no events" if not attempt.event_t else f"{len(attempt.event_t)} events"
        first = attempt.first_event_type
        detail = f"; first event {first!r}" if first else ""
        return Outcome(
            phase, "ended", f"the body ended cleanly ({attempt.framing}) with {what}{detail} and no terminator"
        )


def _error_text(obj: Any) -> str:
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):  # the server's text: keys in it are redacted, as in headers
        return redact_text(f"{err.get('type', 'error')}: {err.get('message', '')}".strip())
    return redact_text(str(err or obj)[:200])


async def _read_body(response: httpx.Response, attempt: Attempt, clock: _Clock, reader: _BodyReader) -> None:
    chunk_t = attempt.chunk_t.append
    chunk_size = attempt.chunk_size.append
    feed = reader.feed
    track = clock.policy.idle is not None
    first = True
    cap = clock.policy.max_recorded
    recording = True
    async for data in response.aiter_raw():
        t = now_ns()
        if recording and cap is not None and len(attempt.chunk_t) + len(attempt.event_t) >= cap:
            recording = _reached_cap(attempt, reader, clock.policy)
            if reader.stop is not None:
                return
        if recording:
            chunk_t(t)
            chunk_size(len(data))
        else:
            attempt.unrecorded_chunks += 1
            attempt.unrecorded_bytes += len(data)
        if first:
            first = False
            clock.enter("stream", t)
        elif track:
            clock.chunk(t)
        feed(data, t)
        if reader.stop is not None:
            return


def _reached_cap(attempt: Attempt, reader: _BodyReader, policy: Policy) -> bool:
    """Policy.max_recorded reached: stop recording (returns False); with ``on_max_recorded="stop"``, stop reading."""
    attempt.truncated = True
    reader.record = False
    if policy.on_max_recorded == "stop":
        reader.stop = Outcome(
            reader._phase(),
            "cancelled",
            f"stopped reading after recording {policy.max_recorded:,} chunks and events "
            "(Policy.max_recorded, on_max_recorded='stop')",
        )
    return False


def _note_truncation(attempt: Attempt, cap: int | None) -> None:
    """Say in the outcome's message that the attempt was recorded only in part."""
    o = attempt.outcome
    if not attempt.truncated or o is None or "Policy.max_recorded" in o.message:
        return
    note = (
        f"recorded the first {cap:,} chunks and events (Policy.max_recorded), then counted "
        f"{attempt.unrecorded_chunks:,} chunks and {attempt.unrecorded_events:,} events more"
    )
    attempt.outcome = Outcome(o.phase, o.cause, f"{o.message}; {note}" if o.message else note)


async def _read_error_body(response: httpx.Response, attempt: Attempt, clock: _Clock) -> bytes:
    body = bytearray()
    async for data in response.aiter_raw():
        t = now_ns()
        attempt.chunk_t.append(t)
        attempt.chunk_size.append(len(data))
        clock.chunk(t)
        if len(body) < ERROR_BODY_LIMIT:
            body += data[: ERROR_BODY_LIMIT - len(body)]
    return bytes(body)


def _status_message(status: int, body: bytes) -> str:
    detail = ""
    try:
        detail = _error_text(safe_json(body))
    except ValueError:
        detail = body[:200].decode("utf-8", "replace")
    return f"{status} {detail}".strip()


def _attach_server_log(attempt: Attempt) -> None:
    attempt.refresh_server_log()
