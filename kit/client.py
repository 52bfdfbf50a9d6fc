"""The instrumented streaming client: one call in, one :class:`~kit.trace.Trace` out.

It never raises for a network or server fault (the fault is the data); it raises only
for misuse. Timing uses one ``asyncio.timeout`` per attempt whose deadline moves as the
phase changes (connect -> send -> headers -> first chunk -> each chunk), so each limit of
the :class:`~kit.policy.Policy` fires as its own cause with no extra task per chunk.
Connection events come from httpcore's ``trace`` extension; the body is read by the
socket-free :class:`~kit._body.BodyReader` that :mod:`kit.instrument` and the recorder use too.
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

from ._body import BodyReader, body_phase, framing, note_truncation, request_phase
from ._classify import classify_exception, is_reset
from ._clock import now_ns, ns_to_s
from ._errors import ConfigError
from ._fidelity import LagMonitor
from ._loop import run_sync
from ._redact import redact_headers, redact_url, secret_values
from .policy import Policy
from .protocols import Protocol
from .records import Deadline
from .retry import decide as _retry_decide
from .trace import Attempt, Outcome, Trace

__all__ = ["astream", "stream"]

_KNOWN_SUFFIXES = ("/v1/messages", "/chat/completions", "/stream")


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
    owned: list[httpx.AsyncClient] = []  # clients this call made, closed when it ends
    if client is None:
        client = _new_client()
        owned.append(client)
    start_ns = now_ns()
    trace = Trace(
        url=redact_url(target),
        protocol=protocol,
        start_ns=start_ns,
        policy=policy.to_dict(),
        scenario=scenario.to_dict() if scenario is not None else None,
        label=getattr(scenario, "label", None),
        setup_s=ns_to_s(start_ns - setup_ns),
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
            if connection_in_doubt(attempt):
                # the pool may still count the broken request against its connection and
                # make the retry wait for it (a "connect" timeout with nothing sent): retry
                # on a fresh pool, as a sound one would (a new connection after a broken one)
                client = _new_client()
                owned.append(client)
            wait = decision.wait
            if policy.total is not None and now_ns() + wait * 1e9 >= trace.start_ns + policy.total * 1e9:
                break  # the call's deadline would pass while waiting: the client gives up here
            await asyncio.sleep(wait)
    finally:
        trace.end_ns = now_ns()
        trace.client_lag_s = monitor.lag_at(_stamps(trace), trace.start_ns, trace.end_ns)
        for c in owned:
            await c.aclose()
    return trace


def connection_in_doubt(attempt: Attempt) -> bool:
    """Whether ``attempt`` left its connection in a state a pool may mishandle: it was
    given up mid-way (a timeout, a cancellation) or broke before its body ended (a
    close, a reset, a cut body). httpcore can leave such a request counted against its
    connection, so the next request on that pool waits for it (seen in the soak: every
    later call of the client "timed out connecting" with nothing sent). A complete body
    (phase ``done``) or an HTTP error status leaves a connection fit to reuse."""
    o = attempt.outcome
    return o is None or not (o.phase == "done" or o.cause == "http_status")


def _new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(None), trust_env=False, verify=_ssl_context())


def _stamps(trace: Trace) -> list[int]:
    """Every instant the call recorded (connection steps, headers, chunks, ends): what the
    client's loop lag could have made late (:meth:`kit._fidelity.LagMonitor.lag_at`)."""
    marks: list[int] = [trace.end_ns] if trace.end_ns is not None else []
    for a in trace.attempts:
        marks.extend(t for _, t in a.connection)
        marks.extend(a.chunk_t)
        marks.extend(t for t in (a.headers_ns, a.end_ns) if t is not None)
    return marks


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
    async with httpx.AsyncClient(timeout=httpx.Timeout(None), trust_env=False, verify=_ssl_context()) as client:
        await _first_request(client)
    _warmed = True


async def _first_request(client: httpx.AsyncClient) -> None:
    """One streamed request to a throwaway loopback server: the code a request runs for
    the first time in a process (connecting, the h11 state machines, streaming a chunked
    body, tracing) does its one-off work here, not in the first call's TTFB."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"10\r\nevent: x\ndata: {}\n\n\r\n0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def on_trace(name: str, info: Mapping[str, Any]) -> None:
        pass

    try:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
    except OSError:
        return  # no loopback socket to spare: the first call pays its own way, as before
    try:
        port = server.sockets[0].getsockname()[1]
        with contextlib.suppress(httpx.HTTPError, OSError):
            url = f"http://127.0.0.1:{port}/warm"
            async with client.stream("POST", url, json={}, extensions={"trace": on_trace}) as response:
                async for _ in response.aiter_raw():
                    pass
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


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
            self.cm.reschedule(None if deadline is None else self.loop.time() + ns_to_s(deadline - now_ns()))


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
        if name == "connection.connect_tcp.complete":
            attempt.connected_from(info.get("return_value"))
        phase = request_phase(clock.phase, name)
        if phase != clock.phase:
            clock.enter(phase, t)

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
    reader = BodyReader(
        attempt, max_event_bytes, max_recorded=policy.max_recorded, stop_at_cap=policy.on_max_recorded == "stop"
    )
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
                attempt.framing = framing(response.headers)
                attempt.connected_from(response.extensions.get("network_stream"))  # a kept-alive connection
                clock.enter("first_chunk", t)
                await _read_body(response, clock, reader)
            finally:
                await response.aclose()
    except TimeoutError:
        attempt.outcome = Outcome(body_phase(attempt, clock.phase), clock.cause, _timeout_message(clock))
    except asyncio.CancelledError:
        attempt.outcome = Outcome(body_phase(attempt, clock.phase), "cancelled", "cancelled by the caller")
        attempt.end_ns = now_ns()
        attempt.refresh_server_log()
        raise
    except httpx.HTTPError as exc:
        attempt.outcome = classify_exception(exc, body_phase(attempt, clock.phase))
        attempt.error = f"{type(exc).__name__}: {exc}"
    except OSError as exc:  # raised below httpx's mapping, e.g. while closing
        cause = "reset" if is_reset(exc) else "closed"
        attempt.outcome = Outcome(body_phase(attempt, clock.phase), cause, str(exc))
        attempt.error = f"{type(exc).__name__}: {exc}"
    attempt.end_ns = attempt.end_ns or now_ns()
    if attempt.outcome is None:
        attempt.outcome = reader.outcome()
    note_truncation(attempt, policy.max_recorded)
    attempt.scrub(secret_values(request.headers.multi_items(), target))
    attempt.refresh_server_log()


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


async def _read_body(response: httpx.Response, clock: _Clock, reader: BodyReader) -> None:
    """Hand each body chunk to ``reader`` as it arrives; the first starts the stream, each restarts the idle limit.

    An error body (status >= 400) is read to its end, its chunks restarting the idle limit.
    """
    count, feed = reader.count, reader.feed
    streaming = (response.status_code or 0) < 400
    track = clock.policy.idle is not None
    first = True
    async for data in response.aiter_raw():
        t = now_ns()
        if not count(data, t):
            return  # Policy.max_recorded reached with on_max_recorded="stop"
        if first and streaming:
            first = False
            clock.enter("stream", t)
        elif track:
            clock.chunk(t)
        feed(data, t)
        if reader.stop is not None:
            return
