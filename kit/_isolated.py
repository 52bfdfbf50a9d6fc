"""A FaultServer in its own process, so its timing does not share a GIL with clients.

On a small machine, a client streaming 100 responses in the same process starves the
server thread of the interpreter lock and its writes go out late. ``FaultServer(
isolate=True)`` runs the server in a child interpreter (``kit._isolated.main``,
started the same way on Linux, macOS and Windows, and without re-importing the
caller's ``__main__`` as multiprocessing's spawn would); the parent keeps the same API.
The two talk over a ``multiprocessing.connection`` on loopback with a random key. Both processes use ``perf_counter_ns``,
which is system-wide, so the child's log joins the client's trace directly.

Protocol over one duplex pipe: the parent sends ``(op, id, payload)`` commands
(register, reset, stop) and waits for ``("ack", id, result)``; the child pushes
``("log", entries)`` and ``("request", info)`` as they happen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Listener
from typing import Any

from ._errors import ServerError

__all__ = ["IsolatedServer"]

_SHIP_EVERY = 0.05  # seconds between log shipments from the child


def _child_main(conn, host: str, port: int, allow_remote: bool) -> None:  # runs in the child
    from .scenarios import Scenario
    from .server import FaultServer

    ship_lock = threading.Lock()
    sent = [0, 0]  # log entries and requests shipped so far

    def ship() -> None:
        with ship_lock:
            sent[0], sent[1] = _ship(conn, server, sent[0], sent[1])

    # a finished request ships at once (clients wait for their log); the rest every few ms
    server = FaultServer(host, port, allow_remote=allow_remote, on_request=lambda info: ship())
    try:
        server.start()
    except Exception as exc:
        conn.send(("error", 0, str(exc)))
        return
    conn.send(("ready", 0, server.address))
    try:
        while True:
            if conn.poll(_SHIP_EVERY):
                op, cid, payload = conn.recv()
                if op == "register":
                    result: Any = server.register(Scenario.from_dict(payload))
                elif op == "reset":
                    result = server.reset_attempts()
                elif op == "stop":
                    server.stop()
                    ship()
                    with ship_lock:
                        conn.send(("ack", cid, None))
                    return
                else:
                    result = None
                with ship_lock:
                    conn.send(("ack", cid, result))
            ship()
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        server.stop()


def _ship(conn, server, sent_log: int, sent_req: int) -> tuple[int, int]:
    log = server.log
    n = len(log)
    if n > sent_log:
        conn.send(("log", 0, [tuple(getattr(e, f) for f in e.__slots__) for e in log[sent_log:n]]))
    m = len(server.requests)
    for info in server.requests[sent_req:m]:
        conn.send(("request", 0, info))
    return n, m


class IsolatedServer:
    """Parent-side handle of a child-process fault server."""

    def __init__(
        self,
        host: str,
        port: int,
        allow_remote: bool,
        on_log: Callable[[list[tuple]], None],
        on_request: Callable[[dict[str, Any]], None],
    ) -> None:
        self._on_log, self._on_request = on_log, on_request
        self._acks: dict[int, Any] = {}
        self._ack_ready = threading.Condition()
        self._next_id = 1
        self._send_lock = threading.Lock()
        key = os.urandom(16)
        with Listener(("127.0.0.1", 0), authkey=key) as listener:
            lhost, lport = listener.address
            entry = "from kit._isolated import main; main()"
            args = [sys.executable, "-c", entry, lhost, str(lport), key.hex(), host, str(port), str(int(allow_remote))]
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
            accepted: list[Any] = []
            waiter = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
            waiter.start()
            waiter.join(60)
            if not accepted:
                self._proc.kill()
                self._proc.wait()
                raise ServerError("the isolated fault server did not start within 60 s")
        self._conn = accepted[0]
        kind, _, payload = self._conn.recv()
        if kind != "ready":
            self._proc.wait(5)
            raise ServerError(f"cannot start the isolated fault server: {payload}")
        self.address: tuple[str, int] = tuple(payload)  # type: ignore[assignment]
        self._reader = threading.Thread(target=self._read, name="kit-fault-server-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                kind, cid, payload = self._conn.recv()
            except (EOFError, OSError):
                break
            if kind == "log":
                self._on_log(payload)
            elif kind == "request":
                self._on_request(payload)
            elif kind == "ack":
                with self._ack_ready:
                    self._acks[cid] = payload
                    self._ack_ready.notify_all()
        with self._ack_ready:
            self._acks[-1] = None  # the child is gone: wake every waiter
            self._ack_ready.notify_all()

    def call(self, op: str, payload: Any = None, timeout: float = 30) -> Any:
        with self._send_lock:
            cid = self._next_id
            self._next_id += 1
            self._conn.send((op, cid, payload))
        with self._ack_ready:
            if not self._ack_ready.wait_for(lambda: cid in self._acks or -1 in self._acks, timeout):
                raise ServerError(f"the isolated fault server did not answer {op!r}")
            if cid not in self._acks:
                raise ServerError("the isolated fault server has exited")
            return self._acks.pop(cid)

    def stop(self) -> None:
        try:
            self.call("stop", timeout=15)
        except (ServerError, OSError, BrokenPipeError):
            pass
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._conn.close()
        self._reader.join(5)


def main() -> None:
    """Entry point of the child; argv: LHOST LPORT KEY HOST PORT ALLOW_REMOTE."""
    lhost, lport, key, host, port, allow_remote = sys.argv[-6:]
    conn = Client((lhost, int(lport)), authkey=bytes.fromhex(key))
    _child_main(conn, host, int(port), allow_remote == "1")
