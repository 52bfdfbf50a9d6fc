"""A FaultServer in its own process, so its timing does not share a GIL with clients.

On a small machine, a client streaming 100 responses in the same process starves the
server thread of the interpreter lock and its writes go out late. ``FaultServer(
isolate=True)`` runs the server in a child interpreter (``kit._isolated.main``, started
by :class:`kit._child.Child`); the parent keeps the same API. Commands: register,
reset, stop; the child pushes ``("log", entries)`` and ``("request", info)`` as they
happen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._child import Child, connect_to_parent, start_for_parent

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
    if not start_for_parent(conn, server):
        return
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
        def on_push(kind: str, payload: Any) -> None:
            if kind == "log":
                on_log(payload)
            elif kind == "request":
                on_request(payload)

        config = {"host": host, "port": port, "allow_remote": allow_remote}
        self._child = Child("from kit._isolated import main; main()", config, on_push, "fault server")
        self.address: tuple[str, int] = tuple(self._child.info)  # type: ignore[assignment]
        self.pid = self._child.pid

    def call(self, op: str, payload: Any = None, timeout: float = 30) -> Any:
        return self._child.call(op, payload, timeout)

    def stop(self) -> None:
        self._child.stop()


def main() -> None:
    """Entry point of the child (see :mod:`kit._child`)."""
    conn, config = connect_to_parent()
    _child_main(conn, config["host"], int(config["port"]), bool(config["allow_remote"]))
