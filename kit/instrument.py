"""Record every attempt a real client makes, without changing what it sees.

:func:`instrument` wraps the transports of an ``httpx`` or ``httpx2`` client (sync or
async; the anthropic and openai SDKs take an httpx2 client as ``http_client=`` and keep
it as ``sdk._client``). Each HTTP request becomes an :class:`~kit.trace.Attempt`: its
connection events, status and headers, every body chunk as it is handed to the client,
and how it ended. Requests carrying ``x-stainless-retry-count`` > 0 (the SDKs' retries)
join the previous call's :class:`~kit.trace.Trace`, with their ``wait_before``.

The client gets the very same bytes and exceptions: the wrapper passes chunks through
and re-raises. On the hot path it only timestamps and keeps a reference to each chunk;
events are parsed and outcomes classified when :attr:`Instrumented.traces` is read. With
``link=True`` (default) each request also carries ``x-kit-request-id`` so a
:class:`~kit.FaultServer` in this process joins its log to the attempt.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._body import BodyReader, framing, note_truncation, request_phase
from ._classify import classify_exception
from ._clock import now_ns, ns_to_s
from ._errors import ConfigError
from ._redact import redact_headers, redact_url, secret_values
from .protocols import for_path
from .trace import Attempt, Trace

__all__ = ["Instrumented", "instrument"]


def __getattr__(name: str) -> Any:
    # the class was called Recorder until kit.Recorder became the recording proxy (kit/recorder.py)
    if name == "Recorder":
        import warnings

        warnings.warn(
            "kit.instrument.Recorder is now kit.instrument.Instrumented (kit.Recorder is the recording proxy)",
            DeprecationWarning,
            stacklevel=2,
        )
        return Instrumented
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SKIP = ("http11.receive_response_body", "http2.receive_response_body")  # chunk times are recorded anyway


class _Observed:
    """One attempt in flight: its body reader, the chunks it holds (by reference) and how it ended."""

    __slots__ = ("attempt", "data", "exc", "held", "how", "max_held", "parsing", "phase", "reader", "secrets", "trace")

    def __init__(
        self,
        attempt: Attempt,
        trace: Trace,
        secrets: tuple[str, ...] = (),
        limits: tuple[Any, ...] = (None, None, None),
    ) -> None:
        self.attempt = attempt
        self.trace = trace
        self.secrets = secrets  # the request's own secret values, scrubbed from what comes back
        max_recorded, self.max_held, max_event_bytes = limits  # (max_recorded, max_held_bytes, max_event_bytes)
        self.reader = BodyReader(attempt, max_event_bytes, max_recorded=max_recorded)
        self.data: list[tuple[int, bytes]] = []  # (arrival, chunk), parsed when the traces are read
        self.held = 0  # bytes in ``data``
        self.parsing = False  # past max_held bytes: chunks are parsed as they come, not held
        self.how = "open"
        self.exc: BaseException | None = None
        self.phase = "connect"

    def take(self, chunk: bytes, t: int) -> None:
        """Record one body chunk: held until the traces are read, or parsed at once past the byte limit."""
        reader = self.reader
        reader.count(chunk, t)
        if self.parsing or (self.attempt.status or 0) >= 400:  # an error body: the reader keeps its start
            reader.feed(chunk, t)
            return
        self.data.append((t, chunk))
        self.held += len(chunk)
        if self.max_held is not None and self.held > self.max_held:
            self.parsing = True
            self.parse_held()

    def parse_held(self) -> None:
        """Parse the held chunks and let them go (their events are recorded: the cap counted their chunks)."""
        reader = self.reader
        reader.record = True
        for t, chunk in self.data:
            reader.feed(chunk, t)
        self.data, self.held = [], 0

    def on_event(self, name: str, info: Any = None) -> None:
        if name.startswith(_SKIP):
            return
        t = now_ns()
        self.attempt.connection.append((name, t))
        if name == "connection.connect_tcp.complete" and hasattr(info, "get"):
            self.attempt.connected_from(info.get("return_value"))
        self.phase = request_phase(self.phase, name)

    def end(self, how: str, exc: BaseException | None = None) -> None:
        if self.how == "open":
            self.how, self.exc = how, exc
            self.attempt.end_ns = now_ns()


class Instrumented:
    """The traces of an instrumented client; one :class:`~kit.trace.Trace` per logical call.

    Read :attr:`traces` (or :attr:`trace`, the last) after the calls: reading them
    finishes the bookkeeping (event parsing, outcomes, server logs). :meth:`clear`
    forgets them; :meth:`uninstrument` puts the client's transports back.
    """

    def __init__(
        self,
        client: Any,
        *,
        link: bool,
        max_event_bytes: int | None,
        max_recorded: int | None = 200_000,
        max_held_bytes: int | None = 64 * 1024 * 1024,
    ) -> None:
        self.client = client
        self.link = link
        self.max_event_bytes = max_event_bytes
        self.max_recorded = max_recorded
        self.max_held_bytes = max_held_bytes
        self._traces: list[Trace] = []
        self._pending: list[_Observed] = []
        self._lock = threading.Lock()
        self._originals: dict[str, Any] = {}

    # -- reading --------------------------------------------------------------------

    @property
    def traces(self) -> list[Trace]:
        """Every call recorded so far, oldest first."""
        self._finish()
        return list(self._traces)

    @property
    def trace(self) -> Trace:
        """The last call recorded."""
        traces = self.traces
        if not traces:
            raise ConfigError("trace", None, "no request went through this client yet")
        return traces[-1]

    def clear(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self._traces.clear()
            self._pending.clear()

    def _finish(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, [o for o in self._pending if o.how == "open"]
        for o in pending:
            if o.how == "open":
                continue
            a = o.attempt
            if o.how == "error":  # an exception before the response headers
                assert o.exc is not None
                a.outcome = classify_exception(o.exc, o.phase)
                a.error = f"{type(o.exc).__name__}: {o.exc}"
            else:
                o.parse_held()
                o.reader.finish(o.how, o.exc)
            note_truncation(a, self.max_recorded)
            a.scrub(o.secrets)
            a.refresh_server_log()
            if o.trace.attempts[-1] is o.attempt:
                o.trace.end_ns = o.attempt.end_ns

    # -- recording ------------------------------------------------------------------

    def _begin(self, request: Any) -> _Observed:
        t = now_ns()
        retry = request.headers.get("x-stainless-retry-count")
        url = redact_url(str(request.url))
        with self._lock:
            last = self._traces[-1] if self._traces else None
            joins = retry not in (None, "0") and last is not None
            if joins:
                trace = last
                prev = trace.attempts[-1]
                wait = max(ns_to_s(t - (prev.end_ns or t)), 0.0)
            else:
                trace = Trace(url=url, protocol=for_path(request.url.path).name, start_ns=t, label=url)
                self._traces.append(trace)
                wait = 0.0
            attempt = Attempt(
                index=len(trace.attempts) + 1,
                request_id=uuid.uuid4().hex[:16],
                method=request.method,
                url=url,
                start_ns=t,
                protocol=trace.protocol,
                wait_before=wait,
            )
            trace.attempts.append(attempt)
            limits = (self.max_recorded, self.max_held_bytes, self.max_event_bytes)
            obs = _Observed(attempt, trace, secret_values(request.headers.multi_items(), str(request.url)), limits)
            self._pending.append(obs)
        if self.link:
            request.headers["x-kit-request-id"] = attempt.request_id
        attempt.request_headers = redact_headers(request.headers.multi_items())
        return obs

    @staticmethod
    def _headers(obs: _Observed, response: Any) -> None:
        a = obs.attempt
        a.headers_ns = now_ns()
        a.status = response.status_code
        a.headers = redact_headers(response.headers.multi_items())
        a.framing = framing(response.headers)
        a.connected_from(response.extensions.get("network_stream"))  # a kept-alive connection

    # -- (un)patching -------------------------------------------------------------------

    def _wrap_all(self, wrap: Any) -> None:
        c = self.client
        self._originals["_transport"] = c._transport
        c._transport = wrap(c._transport)
        mounts = getattr(c, "_mounts", None)
        if mounts:
            self._originals["_mounts"] = dict(mounts)
            c._mounts = {k: (wrap(v) if v is not None else None) for k, v in mounts.items()}

    def uninstrument(self) -> None:
        """Give the client its own transports back."""
        for name, value in self._originals.items():
            setattr(self.client, name, value)
        self._originals.clear()
        if getattr(self.client, "_kit_recorder", None) is self:
            self.client._kit_recorder = None

    def __enter__(self) -> Instrumented:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()

    def __repr__(self) -> str:
        return f"<Instrumented {type(self.client).__module__}.{type(self.client).__name__} calls={len(self._traces)}>"


_CLASSES: dict[str, tuple[type, type, type, type]] = {}


def _classes(modname: str) -> tuple[type, type, type, type]:
    """Transport and stream wrapper classes deriving from ``modname``'s (httpx or httpx2) bases."""
    if modname in _CLASSES:
        return _CLASSES[modname]
    mod = importlib.import_module(modname)

    class SyncStream(mod.SyncByteStream):  # type: ignore[name-defined,misc]
        __slots__ = ("_inner", "_obs")

        def __init__(self, inner: Any, obs: _Observed) -> None:
            self._inner, self._obs = inner, obs

        def __iter__(self) -> Iterator[bytes]:
            obs = self._obs
            take = obs.take
            try:
                for chunk in self._inner:
                    take(chunk, now_ns())
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                obs.end("raised", exc)
                raise
            obs.end("end")

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._obs.end("closed")

    class AsyncStream(mod.AsyncByteStream):  # type: ignore[name-defined,misc]
        __slots__ = ("_inner", "_obs")

        def __init__(self, inner: Any, obs: _Observed) -> None:
            self._inner, self._obs = inner, obs

        async def __aiter__(self) -> AsyncIterator[bytes]:
            obs = self._obs
            take = obs.take
            try:
                async for chunk in self._inner:
                    take(chunk, now_ns())
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                obs.end("raised", exc)
                raise
            obs.end("end")

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._obs.end("closed")

    class SyncTransport(mod.BaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, recorder: Instrumented) -> None:
            self._inner, self._recorder = inner, recorder

        def handle_request(self, request: Any) -> Any:
            rec = self._recorder
            obs = rec._begin(request)
            prev = request.extensions.get("trace")

            def on_trace(name: str, info: dict[str, Any]) -> None:
                obs.on_event(name, info)
                if prev is not None:
                    prev(name, info)

            request.extensions["trace"] = on_trace
            try:
                response = self._inner.handle_request(request)
            except BaseException as exc:
                obs.end("error", exc)
                raise
            rec._headers(obs, response)
            response.stream = SyncStream(response.stream, obs)
            return response

        def close(self) -> None:
            self._inner.close()

        def __enter__(self) -> Any:
            self._inner.__enter__()
            return self

        def __exit__(self, *args: Any) -> None:
            self._inner.__exit__(*args)

    class AsyncTransport(mod.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, recorder: Instrumented) -> None:
            self._inner, self._recorder = inner, recorder

        async def handle_async_request(self, request: Any) -> Any:
            rec = self._recorder
            obs = rec._begin(request)
            prev = request.extensions.get("trace")

            async def on_trace(name: str, info: dict[str, Any]) -> None:
                obs.on_event(name, info)
                if prev is not None:
                    ret = prev(name, info)
                    if inspect.isawaitable(ret):
                        await ret

            request.extensions["trace"] = on_trace
            try:
                response = await self._inner.handle_async_request(request)
            except BaseException as exc:
                obs.end("error", exc)
                raise
            rec._headers(obs, response)
            response.stream = AsyncStream(response.stream, obs)
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

        async def __aenter__(self) -> Any:
            await self._inner.__aenter__()
            return self

        async def __aexit__(self, *args: Any) -> None:
            await self._inner.__aexit__(*args)

    _CLASSES[modname] = (SyncTransport, AsyncTransport, SyncStream, AsyncStream)
    return _CLASSES[modname]


def instrument(
    client: Any,
    *,
    link: bool = True,
    max_event_bytes: int | None = 16 * 1024 * 1024,
    max_recorded: int | None = 200_000,
    max_held_bytes: int | None = 64 * 1024 * 1024,
) -> Instrumented:
    """Record every request ``client`` makes; returns the :class:`Instrumented` holding the traces.

    Memory is bounded per attempt: body chunks are held for parsing until :attr:`Instrumented.traces`
    is read, up to ``max_held_bytes`` (past it they are parsed as they arrive and let go), and at
    most ``max_recorded`` chunks and events are recorded (past it they are counted and the
    attempt is ``truncated``, as ``Policy.max_recorded`` does for ``kit.stream``).

    ``client`` is an ``httpx.Client``/``AsyncClient`` or an ``httpx2.Client``/``AsyncClient``
    (e.g. ``anthropic.Anthropic(http_client=client)``, or an SDK's own ``sdk._client``).
    The client is patched in place and keeps working as before::

        http = httpx2.Client()
        rec = kit.instrument(http)
        sdk = anthropic.Anthropic(base_url=url, api_key="x", http_client=http)
        ...
        rec.trace.attempts_df
    """
    modname = type(client).__module__.partition(".")[0]
    if modname not in ("httpx", "httpx2") or not hasattr(client, "_transport"):
        raise ConfigError("client", client, "expected an httpx or httpx2 Client / AsyncClient")
    if getattr(client, "_kit_recorder", None) is not None:
        return client._kit_recorder
    sync_t, async_t, _, _ = _classes(modname)
    is_async = isinstance(client, importlib.import_module(modname).AsyncClient)
    recorder = Instrumented(
        client, link=link, max_event_bytes=max_event_bytes, max_recorded=max_recorded, max_held_bytes=max_held_bytes
    )
    cls = async_t if is_async else sync_t
    recorder._wrap_all(lambda t: cls(t, recorder))
    client._kit_recorder = recorder
    return recorder
