"""The fault server in this process: asyncio + h11 on a background loop thread.

Requests are parsed with h11; responses are written by hand, byte by byte, because
the point is to break HTTP framing on purpose (cut a chunk in half, close before the
zero-length chunk, reset). Every write is logged (:mod:`kit._server_log`) with the time
it was due and the time it went out, on the kit's shared clock, keyed by the client's
``x-kit-request-id``. One of the two modes behind :class:`kit.FaultServer` (the other:
:mod:`kit._isolated`, which runs this one in a child process).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import h11

from ._clock import now_ns, ns_to_s
from ._loop import LoopThread
from ._redact import redact_text
from ._safejson import loads as safe_json
from ._schedule import Response, build_response
from ._server_log import RequestLog, ServerLog
from .protocols import Protocol
from .scenarios import Plan, Scenario

__all__ = ["MAX_REQUEST_BODY", "REQUEST_TIMEOUT", "LocalMode"]

MAX_REQUEST_BODY = 1 << 20  # 1 MiB: a chat request is a few KB; refuse more with 413
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send its request (slowloris guard)

_logger = logging.getLogger("kit.server")


class LocalMode:
    """Serves in this process on a background loop thread (see the module docstring).

    ``scenario(token)`` finds the scenario a URL token names and ``tokens()`` lists them
    (the :class:`~kit.FaultServer`'s registry); every write and request goes to ``log``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        request_timeout: float,
        scenario: Callable[[str], Scenario | None],
        tokens: Callable[[], Iterable[str]],
        log: ServerLog,
    ) -> None:
        self.host, self._port, self.tls, self.request_timeout = host, port, tls, request_timeout
        self._scenario, self._tokens, self._log = scenario, tokens, log
        self._thread = LoopThread("kit-fault-server")
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._conn_ids = itertools.count(1)
        self._req_ids = itertools.count(1)
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.pid: int | None = None  # serves in this process
        log.on_trim = self._forget_attempts

    # -- the mode's interface (kit.server.ServerMode) ----------------------------

    def start(self) -> None:
        self._thread.start_serving(self._astart(), f"{self.host}:{self._port}")

    async def _astart(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self._port, reuse_address=True, backlog=1024, ssl=self.tls
        )

    def stop(self) -> None:
        if self._server is None:
            return
        with contextlib.suppress(RuntimeError):
            self._thread.call(self._astop(), timeout=10)
        self._thread.stop()
        self._server = None

    async def _astop(self) -> None:
        assert self._server is not None
        # Stop accepting, then let accepts under way become connections before closing: on
        # 3.11 a transport made after Server.close() fails an assertion, leaking its socket
        # and leaving that client hanging (found by tests/test_lifecycle.py).
        loop = asyncio.get_running_loop()
        for sock in self._server.sockets:
            loop.remove_reader(sock.fileno())
        for _ in range(4):
            await asyncio.sleep(0)
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    def alive(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    def registered(self, token: str, scenario: Scenario) -> None:
        """Nothing to do: requests look scenarios up in the server's registry as they come."""

    def reset_attempts(self) -> None:
        with self._lock:
            self._attempts.clear()

    def _forget_attempts(self, keep: int) -> None:
        """A ``keep`` window trimmed the log: forget the attempt counters of old trials too."""
        with self._lock:
            for key in list(self._attempts)[: max(len(self._attempts) - 4 * keep, 0)]:
                del self._attempts[key]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    # -- connection handling -----------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        conn_id = next(self._conn_ids)
        try:
            await self._serve_connection(conn_id, reader, writer)
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            self._conns.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort() if writer.transport.get_write_buffer_size() else writer.close()

    async def _serve_connection(self, conn_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        leftover = b""
        while True:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
            if leftover:
                conn.receive_data(leftover)
            try:
                request, body, received_ns = await asyncio.wait_for(
                    self._read_request(conn, reader), self.request_timeout
                )
            except TimeoutError:
                if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                    return  # an idle keep-alive connection: close it quietly, as servers do
                await self._reject(conn_id, writer, 408, "request_timeout", "request not received in time")
                return
            except h11.RemoteProtocolError as exc:
                await self._reject(conn_id, writer, exc.error_status_hint or 400, "invalid_request_error", str(exc))
                return
            except _BodyTooLarge:
                await self._reject(
                    conn_id, writer, 413, "request_too_large", f"request body over {MAX_REQUEST_BODY} bytes"
                )
                return
            if request is None:
                return
            leftover = conn.trailing_data[0]
            keep = await self._respond(conn_id, request, body, received_ns, reader, writer)
            if not keep or request.http_version < b"1.1":  # HTTP/1.0: one response, then close
                return

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes, int]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data and request is None and not conn.trailing_data[0]:
                    return None, b"", 0
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_REQUEST_BODY:
                    raise _BodyTooLarge
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body), now_ns()
            elif isinstance(event, h11.ConnectionClosed):
                return None, b"", 0

    async def _reject(
        self, conn_id: int, writer: asyncio.StreamWriter, status: int, error_type: str, message: str
    ) -> None:
        """Answer a bad request with ``status`` and a JSON error, log it, and close."""
        message = redact_text(message)  # h11 quotes the bad line, which may hold a key
        _logger.info("connection %d rejected with %d: %s", conn_id, status, message)
        self._log.record_request(
            {
                "request_id": None,
                "connection": conn_id,
                "method": "-",  # the request line could not be read
                "path": "-",
                "status": status,
                "end": "rejected",
                "reason": message,
                "t_ns": now_ns(),
            }
        )
        body = json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()
        head = (
            f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(ConnectionError):
            writer.write(head + body)
            await writer.drain()

    def _resolve(self, target: str) -> tuple[str | None, Scenario | None]:
        path = unquote(target.split("?", 1)[0])
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "s":
            token = parts[1]
            return token, self._scenario(token)
        return None, None

    async def _respond(
        self,
        conn_id: int,
        request: h11.Request,
        body: bytes,
        received_ns: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        target = request.target.decode("latin-1")
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        token, scenario = self._resolve(target)
        if _is_probe(request.method, target, token):
            await self._probe(conn_id, request.method, target, token, writer)
            return True
        if token is None and request.method == b"GET" and target.split("?")[0] in ("/", "/s", "/s/"):
            listing = {"scenarios": {t: f"{self.url}/s/{t}" for t in self._tokens()}}
            await self._json(writer, 200, listing)
            return True
        if scenario is None:
            known = sorted(self._tokens())
            # the path only: a query may hold a key, and an error body is stored by clients
            what = f"unknown scenario {token!r}" if token else f"no scenario in path {target.split('?', 1)[0]!r}"
            message = f"{what}; use a path /s/<scenario>/... with one of: {', '.join(known)}"
            self._log.record_request(_refused(conn_id, request, headers, token, 404, "not_found", message, received_ns))
            error = {"type": "not_found_error", "message": message, "known_scenarios": known}
            await self._json(writer, 404, {"type": "error", "error": error})
            return True
        problem = _bad_request(headers, body)
        if problem:
            self._log.record_request(_refused(conn_id, request, headers, token, 400, "rejected", problem, received_ns))
            await self._json(
                writer, 400, {"type": "error", "error": {"type": "invalid_request_error", "message": problem}}
            )
            return True
        payload: Any = None
        if body and "json" in headers.get("content-type", "json"):
            payload = safe_json(body)  # checked by _bad_request

        request_id = headers.get("x-kit-request-id") or f"srv-{next(self._req_ids)}"
        trial = headers.get("x-kit-trial", "")
        attempt = self._attempt_number(token, trial, headers)
        plan = await _plan(scenario, attempt, trial)
        api_id = Protocol.of(plan.scenario.protocol).api.request_id(f"{request_id}:{attempt}:{next(self._req_ids)}")
        response = build_response(plan, request_id=api_id, stream=_wants_stream(payload))
        if request.http_version < b"1.1":
            response = _http10(response)
        info = {
            "request_id": request_id,
            "scenario": token,
            "attempt": attempt,
            "method": request.method.decode(),
            "path": target.split("?", 1)[0],
            "status": response.status,
            "t_ns": received_ns,
            "stream": _wants_stream(payload),
            "api_request_id": api_id,
        }
        log = self._log.writer(request_id, conn_id, token, attempt)
        log("request", len(body), received_ns, received_ns, len(body))
        watcher = asyncio.ensure_future(_watch_disconnect(reader))
        writer_task = asyncio.ensure_future(self._send(response, writer, log, received_ns, request_id))
        try:
            done, _ = await asyncio.wait({watcher, writer_task}, return_when=asyncio.FIRST_COMPLETED)
            if writer_task in done:
                info["end"] = writer_task.result()
            else:
                writer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await writer_task
                t = now_ns()  # scheduled: when the write the server was waiting to make was due
                log("client_closed", 0, t if log.next_due is None else log.next_due, t)
                info["end"] = "client_closed"
        finally:
            if not watcher.done():
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        self._log.record_request(info)
        return info["end"] == "end" and response.framing != "close"

    def _attempt_number(self, token: str, trial: str, headers: dict[str, str]) -> int:
        for name, offset in ATTEMPT_HEADERS:
            value = headers.get(name)
            if value is not None:
                return int(value) + offset  # checked by _bad_request
        key = f"{token}\0{trial}"
        with self._lock:
            self._attempts[key] = self._attempts.get(key, 0) + 1
            return self._attempts[key]

    async def _json(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        writer.write(head + body)
        await writer.drain()

    async def _send(
        self, response: Response, writer: asyncio.StreamWriter, log: RequestLog, t0_ns: int, request_id: str
    ) -> str:
        """Execute the response's actions on time; returns how the response ended."""
        transport = writer.transport
        due = log.next_due = t0_ns + int(response.headers_delay * 1e9)
        await _sleep_until(due)
        lines = [f"HTTP/1.1 {response.status} {response.reason}"]
        lines += [f"{k}: {v}" for k, v in response.headers]
        lines.append(f"x-kit-request-id: {request_id}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        t = now_ns()
        if response.endless_headers:
            log("endless_headers", len(head) - 2, due, t)
            transport.write(head[:-2])  # no blank line: the headers never end
            for n in itertools.count():
                await asyncio.sleep(0.001)
                transport.write(b"x-kit-filler-%d: %s\r\n" % (n, b"h" * 64))
                if transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()
        log("headers", len(head), due, t)
        transport.write(head)
        headers_ns = t
        chunked = response.framing == "chunked"
        for action in response.actions:
            due = log.next_due = headers_ns + int(action.t * 1e9)
            if action.t > 0:
                await _sleep_until(due)
            op = action.op
            if op == "write":
                data = action.data
                if not data:
                    log(action.kind, 0, due, now_ns())
                    continue
                wire = b"%x\r\n%b\r\n" % (len(data), data) if chunked else data
                t = now_ns()
                log(action.kind, len(wire), due, t, len(data))
                transport.write(wire)
                if transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
            elif op == "raw":
                # outside the body's framing: payload only where there is no chunk framing to break
                log(action.kind, len(action.data), due, now_ns(), 0 if chunked else len(action.data))
                transport.write(action.data)
            elif op == "end":
                tail = b"0\r\n\r\n" if chunked else b""
                t = now_ns()
                log("end", len(tail), due, t)
                if tail:
                    transport.write(tail)
                await writer.drain()
                if action.kind == "close":  # Close(clean=True): the body ended, then the FIN it promises
                    log("close", 0, due, now_ns())
                    writer.close()
                    return "end_close"
                if response.framing == "close":
                    writer.close()
                return "end"
            elif op == "close":
                await writer.drain()
                log("close", 0, due, now_ns())
                writer.close()
                return "close"
            elif op == "reset":
                await _flushed(writer)
                log("reset", 0, due, now_ns())
                _reset(transport)
                return "reset"
            elif op == "truncate":
                wire = b"%x\r\n%b" % (len(action.data) * 2, action.data)
                log("truncate", len(wire), due, now_ns(), len(action.data))
                transport.write(wire)
                await writer.drain()
                writer.close()
                return "truncate"
            elif op == "hang":
                log.next_due = None  # nothing more is planned
                log("stall_start", 0, due, now_ns())
                await self._hang(response, writer, log)
        return "end"  # pragma: no cover - every plan ends with a terminal action

    async def _probe(self, conn_id: int, method: bytes, target: str, token: str | None, writer) -> None:
        """Answer a request that is not an API call (``HEAD /``, ``OPTIONS``...): logged, not an attempt."""
        self._log.record_request(
            {
                "request_id": None,
                "connection": conn_id,
                "scenario": token,
                "method": method.decode(),
                "path": target.split("?", 1)[0],
                "status": 200,
                "end": "probe",
                "t_ns": now_ns(),
            }
        )
        body = b"" if method in (b"HEAD", b"OPTIONS") else json.dumps({"scenario": token}).encode()
        length = len(json.dumps({"scenario": token}).encode()) if method == b"HEAD" else len(body)
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()

    async def _hang(self, response: Response, writer: asyncio.StreamWriter, log: RequestLog) -> None:
        if response.ping is None or not response.ping_every:
            await asyncio.Event().wait()
        due = now_ns()
        step = int(response.ping_every * 1e9)
        ping = response.ping
        wire = b"%x\r\n%b\r\n" % (len(ping), ping) if response.framing == "chunked" else ping
        while True:
            due += step
            await _sleep_until(due)
            log("ping", len(wire), due, now_ns(), len(ping))
            writer.transport.write(wire)


def _is_probe(method: bytes, target: str, token: str | None) -> bool:
    """Not an API call: HEAD or OPTIONS anywhere, or GET of a scenario's base URL itself."""
    if method in (b"HEAD", b"OPTIONS"):
        return True
    rest = unquote(target.split("?", 1)[0]).strip("/").split("/")
    return method == b"GET" and token is not None and len(rest) <= 2


def _wants_stream(payload: Any) -> bool:
    """A JSON request body asks for a stream unless it says ``"stream": false`` or leaves it out
    (as the APIs read it); anything else (no body, not JSON) gets the stream."""
    return not isinstance(payload, dict) or bool(payload.get("stream", False))


class _BodyTooLarge(Exception):
    pass


ATTEMPT_HEADERS = (("x-kit-attempt", 0), ("x-stainless-retry-count", 1))  # header, offset to a 1-based attempt
MAX_ATTEMPT = 1_000_000


def _bad_request(headers: dict[str, str], body: bytes) -> str | None:
    """Why a request cannot be served (a 400), or None: attempt headers and the JSON body are checked."""
    for name, offset in ATTEMPT_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        v = value.strip()
        if not (v.isascii() and v.isdigit() and len(v) <= 7 and 1 <= int(v) + offset <= MAX_ATTEMPT):
            shown = v if len(v) <= 20 else v[:20] + "..."
            return f"{name}={shown!r} is not valid: expected a whole number {1 - offset}..{MAX_ATTEMPT - offset}"
    if body and "json" in headers.get("content-type", "json"):
        try:
            safe_json(body)
        except ValueError as exc:
            return f"request body is not valid JSON: {exc}"
    return None


def _refused(
    conn_id: int,
    request: h11.Request,
    headers: dict[str, str],
    token: str | None,
    status: int,
    end: str,
    reason: str,
    t_ns: int,
) -> dict[str, Any]:
    """A ``requests`` entry for a request answered with an error (logged like any request)."""
    return {
        "request_id": headers.get("x-kit-request-id"),
        "connection": conn_id,
        "scenario": token,
        "method": request.method.decode("latin-1"),
        "path": request.target.decode("latin-1").split("?", 1)[0],
        "status": status,
        "end": end,
        "reason": reason,
        "t_ns": t_ns,
    }


def _http10(response: Response) -> Response:
    """An HTTP/1.0 client gets no chunked encoding: the body is close-delimited (or keeps its length)."""
    headers = [(k, v) for k, v in response.headers if k.lower() not in ("transfer-encoding", "connection")]
    framing = "length" if response.framing == "length" else "close"
    return dataclasses.replace(response, headers=[*headers, ("connection", "close")], framing=framing)


INLINE_PLAN_EVENTS = 500  # planning more events than this runs off the loop (~0.01-0.1 ms per event)


async def _plan(scenario: Scenario, attempt: int, trial: str) -> Plan:
    """Plan one attempt; a big plan is made in a worker thread so it never blocks the loop."""
    if scenario.for_attempt(attempt, trial).events <= INLINE_PLAN_EVENTS:
        return scenario.plan(attempt, key=trial)
    return await asyncio.to_thread(scenario.plan, attempt, trial)


async def _sleep_until(due_ns: int) -> None:
    delay = ns_to_s(due_ns - now_ns())
    if delay > 0:
        await asyncio.sleep(delay)


async def _flushed(writer: asyncio.StreamWriter) -> None:
    await writer.drain()
    while writer.transport.get_write_buffer_size():
        await asyncio.sleep(0.001)


def _reset(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _watch_disconnect(reader: asyncio.StreamReader) -> None:
    """Return when the client closes its side (or resets) while we respond."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
