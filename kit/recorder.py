"""The recording reverse proxy: a real provider's stream, captured with its timing.

``with kit.Recorder(upstream="https://api.anthropic.com") as rec:`` listens on
loopback over plain HTTP (point a client's base URL at ``rec.url``) and forwards each
request upstream over TLS with httpx, certificate checks on (``ca=`` a PEM file for a
private CA). Each body chunk goes to the client the moment it arrives (one write, no
buffering), so the client's timing stays real. Per call it records, on the kit's clock:
the request line, headers and body (redacted: the API key is never stored), the status
and headers, every body chunk's bytes and arrival time, and the SSE events. The call is
a :class:`~kit.Trace` (``rec.traces``) whose attempt also holds the bytes, so
:func:`kit.replay_scenario` can replay it from the fault server.

Failures are outcomes, not kit tracebacks: upstream refused, TLS failure, bytes that are
not HTTP, a reset or a stall become the call's phase x cause, and the client gets the
same kind of failure it would have had directly (a refused or failed connection resets
the client's; a response cut short is cut short for the client too). The recorder asks
upstream for ``accept-encoding: identity`` so the recorded bytes are the stream itself.
Over ``max_bytes`` of body the recorder stops keeping bytes (the stream still flows, the
chunk times are still taken) and says so.

:meth:`Recorder.save` (or ``out=``) writes a bundle that :func:`kit.load` reads (its
experiment section replays every call: :func:`kit.rerun`) plus ``recording.har``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx

from ._bind import check_bind
from ._body import BodyReader, body_phase, framing
from ._classify import classify_exception, is_reset
from ._clock import now_ns, ns_to_s
from ._errors import ConfigError, ServerError
from ._loop import LoopThread
from ._recorded import MAX_REPLAY_BYTES
from ._redact import redact_headers, redact_text, redact_url, scrub, secret_values
from ._rerun import replace_previous
from ._server_local import _reset, _watch_disconnect
from .client import _ssl_context
from .trace import Attempt, Outcome, Trace

__all__ = ["DEFAULT_MAX_BYTES", "RecordedAttempt", "Recorder"]

DEFAULT_MAX_BYTES = MAX_REPLAY_BYTES  # body bytes kept per recorder: what one replay may hold
MAX_REQUEST_BODY = 16 << 20
REQUEST_BODY_KEPT = 64 << 10  # of the (redacted) request body, in the recording
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)
_NOT_UPSTREAM = _HOP | {"content-length", "accept-encoding"}


@dataclass
class RecordedAttempt(Attempt):
    """An :class:`~kit.Attempt` seen by the recorder: with the body bytes and the request.

    ``chunk_data[i]`` is the bytes of chunk ``i`` (fewer than ``chunk_t`` once the
    recorder's size cap was reached: ``capped``); ``header_list`` the response headers in
    order (redacted); ``request`` the client's request (method, target, redacted headers
    and body).
    """

    chunk_data: list[bytes] = field(default_factory=list)
    reason: str = ""
    header_list: list[tuple[str, str]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
    capped: bool = False


class Recorder:
    """A recording reverse proxy on loopback; see the module docstring.

    ``upstream``: ``https://HOST[:PORT][/prefix]`` (``http://`` works too, e.g. for a
    fault server). ``ca``: a PEM file of the CA that signs upstream's certificate (else
    the system's trust store). ``out``: a folder to save the recording in when the
    recorder stops. ``max_bytes``: body bytes kept in all. ``idle_timeout``: give up on
    a silent upstream after this many seconds (None: wait as long as the client does).
    ``on_call``: called with each finished call's Trace (from the recorder's thread).
    """

    def __init__(
        self,
        upstream: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ca: str | Path | None = None,
        out: str | Path | None = None,
        overwrite: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        idle_timeout: float | None = None,
        connect_timeout: float = 10.0,
        allow_remote: bool = False,
        on_call: Callable[[Trace], None] | None = None,
    ) -> None:
        check_bind("host", host, host, allow_remote, "the recorder")
        if not isinstance(upstream, str):
            raise ConfigError(
                "upstream",
                type(upstream).__name__,
                "a URL such as https://api.anthropic.com (kit.Recorder is the recording proxy; "
                "to record an SDK client in process use kit.instrument(client))",
            )
        parts = urlsplit(str(upstream))
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError("upstream", upstream, "expected https://HOST[:PORT] (or http://)")
        self.upstream = str(upstream).rstrip("/")
        if ca is not None:
            if not Path(ca).is_file():
                raise ConfigError("ca", str(ca), "expected the path of a PEM file of CA certificates")
            try:
                self._verify: ssl.SSLContext = ssl.create_default_context(cafile=str(ca))
            except ssl.SSLError as exc:
                raise ConfigError("ca", str(ca), f"a PEM file of CA certificates ({exc})") from None
        else:
            self._verify = _ssl_context()
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 0 <= max_bytes <= MAX_REPLAY_BYTES:
            raise ConfigError("max_bytes", max_bytes, f"expected a whole number of bytes in [0, {MAX_REPLAY_BYTES:,}]")
        for name, value in (("idle_timeout", idle_timeout), ("connect_timeout", connect_timeout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise ConfigError(name, value, "expected seconds > 0" + (" or None" if name == "idle_timeout" else ""))
        if out is not None:
            from ._folders import check_target

            out = Path(out)
            check_target(out, overwrite=overwrite)  # refuse before recording, not after
        self.host, self._port = host, port
        self.out, self.overwrite = out, overwrite
        self.max_bytes = max_bytes
        self.idle_timeout, self.connect_timeout = idle_timeout, connect_timeout
        self.on_call = on_call
        self.kept_bytes = 0
        self.capped = False
        self.notes: list[str] = []
        self._traces: list[Trace] = []
        self._thread = LoopThread("kit-recorder")
        self._server: asyncio.base_events.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._anchor = {"unix_ns": time.time_ns(), "perf_ns": now_ns()}
        self.saved: Path | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Recorder:
        """Start listening; returns once the port is bound."""
        if self._server is not None:
            return self
        replace_previous(self)  # a rerun notebook cell stops the recorder its last run started
        self._thread.start_serving(self._astart(), f"{self.host}:{self._port}")
        return self

    async def _astart(self) -> None:
        timeout = httpx.Timeout(connect=self.connect_timeout, read=self.idle_timeout, write=30.0, pool=None)
        self._client = httpx.AsyncClient(verify=self._verify, timeout=timeout, follow_redirects=False)
        self._server = await asyncio.start_server(self._handle, self.host, self._port, reuse_address=True)

    def stop(self) -> None:
        """Close every connection and the listening socket; save to ``out`` if given."""
        if self._server is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):
                self._thread.call(self._astop(), timeout=10)
            self._thread.stop()
            self._server = None
        if self.out is not None and self.saved is None:
            self.saved = self.save(self.out, overwrite=self.overwrite)

    async def _astop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise ServerError("the Recorder is not running; use it in a `with` block or call start()")
        return self._server.sockets[0].getsockname()[:2]

    @property
    def url(self) -> str:
        """The base URL to give a client (plain HTTP on loopback)."""
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def traces(self) -> list[Trace]:
        """Every finished call, in the order they finished (each attempt a :class:`RecordedAttempt`)."""
        return list(self._traces)

    # -- saving ------------------------------------------------------------------

    def result(self) -> Any:
        """The recording as a :class:`~kit.Result` (what :meth:`save` writes)."""
        from .experiment import Experiment
        from .replay import replay_scenario
        from .result import Result

        traces = self.traces
        if not traces:
            raise ConfigError("recording", "no calls", "record at least one call before saving")
        ids = [f"call-{i:03d}" for i in range(len(traces))]
        base = Result.from_traces(traces, ids=ids)
        scenarios, calls = [], []
        for tid, t in zip(ids, traces, strict=True):
            a: RecordedAttempt = t.attempts[-1]  # type: ignore[assignment]
            index = None
            if a.headers_ns is not None:
                scenarios.append(replay_scenario(t, name=f"{tid} {t.label}"))
                index = len(scenarios) - 1
            calls.append(
                {
                    "trial_id": tid,
                    "request": a.request,
                    "outcome": str(t.outcome),
                    "scenario": index,
                    "capped": a.capped,
                    "bytes_kept": sum(len(c) for c in a.chunk_data),
                }
            )
        config = Experiment(scenarios=scenarios, trials=1, name="recording").to_dict() if scenarios else {}
        meta = {
            "source": "recording",
            "clock_anchor": self._anchor,
            "recording": {
                "upstream": redact_url(self.upstream),
                "calls": calls,
                "max_bytes": self.max_bytes,
                "capped": self.capped,
                "notes": list(self.notes),
            },
            "trials_done": len(traces),
            "trials_planned": len(traces),
        }
        return Result(base.tables, config, {**base.meta, **meta})

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the recording: a bundle at ``path`` (:func:`kit.load`) and ``path/recording.har``."""
        from .har import result_to_har

        result = self.result()
        out = result.save(path, overwrite=overwrite)
        har = result_to_har(result)
        for entry, t in zip(har["log"]["entries"], self.traces, strict=True):
            _har_detail(entry, t.attempts[-1])
        (out / "recording.har").write_text(json.dumps(har, indent=1))
        return out

    # -- one connection ----------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            leftover = b""
            while True:
                conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
                if leftover:
                    conn.receive_data(leftover)
                got = await self._read_request(conn, reader, writer)
                if got is None:
                    return
                request, body = got
                leftover = conn.trailing_data[0]
                if not await self._forward(request, body, reader, writer):
                    return
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            self._conns.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[h11.Request, bytes] | None:
        request, body = None, bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data and request is None:
                        return None
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_REQUEST_BODY:
                        await _error(writer, 413, f"request body over {MAX_REQUEST_BODY} bytes")
                        return None
                elif isinstance(event, h11.EndOfMessage):
                    return request, bytes(body)
                else:
                    return None
        except h11.RemoteProtocolError as exc:
            await _error(writer, exc.error_status_hint or 400, f"not an HTTP/1.1 request: {exc}")
            return None

    async def _forward(
        self, request: h11.Request, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Forward one request upstream and its response back; record it. Returns keep-alive."""
        assert self._client is not None
        t0 = now_ns()
        method, target = request.method.decode(), request.target.decode("latin-1")
        in_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        url = self.upstream + (target if target.startswith("/") else "/" + target)
        rid = uuid.uuid4().hex[:16]
        a = RecordedAttempt(index=1, request_id=rid, method=method, url=redact_url(url), start_ns=t0, protocol="raw")
        secrets = secret_values(in_headers, url) + secret_values(url=self.upstream)
        a.request = {
            "method": method,
            "target": redact_url(target),
            "headers": list(redact_headers(in_headers).items()),
            "body": scrub(body[:REQUEST_BODY_KEPT].decode("utf-8", "replace"), secrets),
            "body_bytes": len(body),
        }
        a.request_headers = redact_headers(in_headers)
        trace = Trace(url=a.url, protocol="raw", start_ns=t0, attempts=[a], label=f"{method} {target.split('?')[0]}")
        out = [(k, v) for k, v in in_headers if k.lower() not in _NOT_UPSTREAM] + [("accept-encoding", "identity")]
        keep = False
        try:
            req = self._client.build_request(method, url, headers=out, content=body)
            try:
                resp = await self._client.send(req, stream=True)
            except httpx.HTTPError as exc:
                a.outcome = classify_exception(exc, "connect" if _connect_failure(exc) else "headers")
                a.error = redact_text(f"{type(exc).__name__}: {a.outcome.message}")
                # the client gets the same kind of failure: a failed connection resets its
                # connection, bytes that are not HTTP reach it as such, no response closes it
                if a.outcome.phase == "connect" or a.outcome.cause == "reset":
                    _reset(writer.transport)
                else:
                    if a.outcome.cause == "malformed":
                        writer.write(b"KIT-RECORDER upstream answered with bytes that are not HTTP\r\n\r\n")
                    writer.close()
                return False
            try:
                keep = await self._relay(resp, a, trace, reader, writer)
            finally:
                await resp.aclose()
        finally:
            a.end_ns = a.end_ns or now_ns()
            trace.end_ns = a.end_ns
            _scrub_recorded(a, secrets)
            self._traces.append(trace)
            if self.on_call is not None:
                with contextlib.suppress(Exception):
                    self.on_call(trace)
        return keep and not _wants_close(in_headers)

    async def _relay(
        self,
        resp: httpx.Response,
        a: RecordedAttempt,
        trace: Trace,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        a.headers_ns = now_ns()
        a.status, a.reason = resp.status_code, resp.reason_phrase
        items = resp.headers.multi_items()
        a.headers = redact_headers(items)
        a.header_list = [(k.lower(), v) for k, v in _redact_list(items)]
        a.framing = framing(resp.headers)
        event_stream = "event-stream" in resp.headers.get("content-type", "")
        a.protocol = trace.protocol = (
            "anthropic" if event_stream else ("ndjson" if "ndjson" in resp.headers.get("content-type", "") else "raw")
        )
        chunked, close = a.framing == "chunked", a.framing == "close"
        head = [f"HTTP/1.1 {a.status} {a.reason}"]
        head += [f"{k}: {v}" for k, v in items if k.lower() not in _HOP]
        if chunked:
            head.append("transfer-encoding: chunked")
        if close:
            head.append("connection: close")
        transport = writer.transport
        transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        reader_ = BodyReader(a, None)

        async def pump() -> None:
            for_client = transport.write
            keep_bytes = not self.capped
            async for data in resp.aiter_raw():
                t = now_ns()
                for_client(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                if transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
                reader_.take(data, t)  # recorded, and parsed (an error body: its start kept)
                if keep_bytes:
                    if self.kept_bytes + len(data) > self.max_bytes:
                        keep_bytes = False
                        self._cap(a)
                    else:
                        a.chunk_data.append(data)
                        self.kept_bytes += len(data)
                elif not a.capped:
                    self._cap(a)

        watcher = asyncio.ensure_future(_watch_disconnect(reader))
        pumping = asyncio.ensure_future(pump())
        try:
            done, _ = await asyncio.wait({watcher, pumping}, return_when=asyncio.FIRST_COMPLETED)
            if pumping not in done:
                pumping.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pumping
                silent = ns_to_s(now_ns() - (a.chunk_t[-1] if a.chunk_t else a.headers_ns))
                a.outcome = Outcome(
                    body_phase(a), "cancelled", f"the client closed the connection after {silent:.3f} s without data"
                )
                return False
            exc = pumping.exception()
        finally:
            if not watcher.done():
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        a.end_ns = now_ns()
        _refine_protocol(a, trace)
        if exc is not None:
            if not isinstance(exc, httpx.HTTPError | OSError):
                raise exc
            a.outcome = classify_exception(exc, body_phase(a))
            a.error = redact_text(f"{type(exc).__name__}: {a.outcome.message}")
            # cut the client's body short the same way: RST for a reset, else a close mid-body
            _reset(writer.transport) if a.outcome.cause == "reset" or is_reset(exc) else writer.close()
            return False
        if chunked and a.method != "HEAD" and a.status not in (204, 304):
            transport.write(b"0\r\n\r\n")
        a.outcome = reader_.outcome()
        if close:
            await writer.drain()
            writer.close()
            return False
        return True

    def _cap(self, a: RecordedAttempt) -> None:
        a.capped = True
        if not self.capped:
            self.capped = True
            note = (
                f"recording stopped keeping body bytes at max_bytes={self.max_bytes} "
                "(the stream still went to the client; chunk times are still recorded)"
            )
            self.notes.append(note)
            warnings.warn(f"kit.Recorder: {note}", stacklevel=1)


# ------------------------------------------------------------------------ helpers


def _refine_protocol(a: RecordedAttempt, trace: Trace) -> None:
    """An event stream whose events look like OpenAI's (data-only, ``[DONE]``) is openai."""
    if a.protocol == "anthropic" and "message_start" not in a.event_type:
        head = b"".join(a.chunk_data[:64])
        if b"[DONE]" in b"".join(a.chunk_data[-4:]) or b"chat.completion" in head:
            a.protocol = trace.protocol = "openai"


def _connect_failure(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "PoolTimeout"})


def _redact_list(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, next(iter(redact_headers([(k, v)]).values()))) for k, v in items]


def _wants_close(headers: list[tuple[str, str]]) -> bool:
    return any(k.lower() == "connection" and "close" in v.lower() for k, v in headers)


async def _error(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}}).encode()
    head = f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    with contextlib.suppress(ConnectionError):
        writer.write((head + "connection: close\r\n\r\n").encode() + body)
        await writer.drain()


def _scrub_recorded(a: RecordedAttempt, secrets: tuple[str, ...]) -> None:
    """The request's own secrets out of what upstream echoed: message, headers, and body bytes.

    In the body each echoed secret is masked with ``*`` of the same length, so the byte
    counts, chunk boundaries and event sizes the replay reproduces stay as recorded.
    """
    a.scrub(secrets)
    if not secrets:
        return
    a.header_list = [(k, scrub(v, secrets)) for k, v in a.header_list]
    body = b"".join(a.chunk_data)
    masked = body
    for value in secrets:
        raw = value.encode("utf-8", "replace")
        masked = masked.replace(raw, b"*" * len(raw))
    if masked != body:
        out, i = [], 0
        for c in a.chunk_data:
            out.append(masked[i : i + len(c)])
            i += len(c)
        a.chunk_data = out


def _har_detail(entry: dict[str, Any], a: Any) -> None:
    """The recorder's detail in a HAR entry: the request as sent, the body text, the cap."""
    import base64

    req = a.request
    entry["request"]["headers"] = [{"name": k, "value": v} for k, v in req.get("headers", [])]
    if req.get("body"):
        ctype = next((v for k, v in req.get("headers", []) if k == "content-type"), "application/octet-stream")
        entry["request"]["postData"] = {"mimeType": ctype, "text": req["body"]}
        entry["request"]["bodySize"] = req.get("body_bytes", -1)
    body = b"".join(a.chunk_data)
    content = entry["response"]["content"]
    try:
        content["text"] = body.decode("utf-8")
    except UnicodeDecodeError:
        content["text"], content["encoding"] = base64.b64encode(body).decode("ascii"), "base64"
    # _chunks must describe exactly the bytes kept, so the HAR replays byte-exactly
    entry["_chunks"] = entry["_chunks"][: len(a.chunk_data)]
    entry["_kit"]["capped"] = a.capped
    entry["response"]["headers"] = [{"name": k, "value": v} for k, v in a.header_list]
