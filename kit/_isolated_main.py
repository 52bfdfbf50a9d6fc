"""The program ``FaultServer(isolate=True)`` runs in its child interpreter (see :mod:`kit._isolated`).

It runs an in-process :class:`~kit.FaultServer` and ships what it logs to the parent:
a finished request at once (clients wait for their log), the rest every few ms. It sits
above :mod:`kit.server` (it is a user of the server, like ``kit serve``), so the modes
below the facade never import it back.
"""

from __future__ import annotations

import threading
from typing import Any

from ._child import connect_to_parent, start_for_parent
from .scenarios import Scenario
from .server import FaultServer

__all__ = ["main"]

_SHIP_EVERY = 0.05  # seconds between log shipments from the child


def _serve(conn, host: str, port: int, allow_remote: bool) -> None:
    ship_lock = threading.Lock()
    sent = [0, 0]  # log entries and requests shipped so far

    def ship() -> None:
        with ship_lock:
            sent[0], sent[1] = _ship(conn, server, sent[0], sent[1])

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


def _ship(conn, server: FaultServer, sent_log: int, sent_req: int) -> tuple[int, int]:
    store = server._log  # the live lists (FaultServer.log is a snapshot): ship only what is new
    entries, requests = store.entries, store.requests
    n = len(entries)
    if n > sent_log:
        conn.send(("log", 0, [tuple(getattr(e, f) for f in e.__slots__) for e in entries[sent_log:n]]))
    m = len(requests)
    for info in requests[sent_req:m]:
        conn.send(("request", 0, info))
    return n, m


def main() -> None:
    """Entry point of the child (see :mod:`kit._child`)."""
    conn, config = connect_to_parent()
    _serve(conn, config["host"], int(config["port"]), bool(config["allow_remote"]))
