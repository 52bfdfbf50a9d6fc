"""A kit component in a child interpreter: start it, call it, receive what it pushes.

Used by ``FaultServer(isolate=True)`` and ``NetworkProxy(isolate=True)``: a server or
proxy that shares a process with many clients competes with them for the interpreter
lock, and its timing suffers. The child is started the same way on Linux, macOS and
Windows (``python -c ENTRY``: no fork, and without re-importing the caller's
``__main__`` as multiprocessing's spawn would); the two talk over a
``multiprocessing.connection`` on loopback with a random key. Both use
``perf_counter_ns``, which is system-wide, so the child's logs join the parent's
traces directly.

Protocol over one duplex pipe: the parent sends its config, the child answers
``("ready", 0, info)`` or ``("error", 0, message)``; then the parent sends
``(op, id, payload)`` commands and waits for ``("ack", id, result)``, while the child
pushes ``(kind, 0, payload)`` messages whenever it likes (logs, as they happen).
Messages arrive in the order sent, so once a command's ack is in, everything the
child pushed before it has been handled.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from ._errors import ServerError

__all__ = ["Child", "connect_to_parent", "settle_heap", "start_for_parent"]


class Child:
    """Parent-side handle of a child interpreter running ``entry``.

    ``entry``: Python code run with ``-c`` that calls :func:`connect_to_parent`;
    ``config``: sent to it first; ``on_push(kind, payload)``: called on a reader thread
    with every message the child pushes; ``what``: its name in error messages.
    """

    def __init__(self, entry: str, config: Any, on_push: Callable[[str, Any], None], what: str) -> None:
        self.what = what
        self._on_push = on_push
        self._acks: dict[int, Any] = {}
        self._ack_ready = threading.Condition()
        self._next_id = 1
        self._send_lock = threading.Lock()
        key = os.urandom(16)
        with Listener(("127.0.0.1", 0), authkey=key) as listener:
            lhost, lport = listener.address
            self._proc = subprocess.Popen(
                [sys.executable, "-c", entry, lhost, str(lport), key.hex()], stdin=subprocess.DEVNULL
            )
            accepted: list[Any] = []
            waiter = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
            waiter.start()
            waiter.join(60)
            if not accepted:
                self._proc.kill()
                self._proc.wait()
                raise ServerError(f"the isolated {what} did not start within 60 s")
        self._conn: Connection = accepted[0]
        self._conn.send(config)
        kind, _, payload = self._conn.recv()
        if kind != "ready":
            self._proc.wait(5)
            raise ServerError(f"cannot start the isolated {what}: {payload}")
        self.info = payload
        self.pid = self._proc.pid
        self._reader = threading.Thread(target=self._read, name=f"kit-{what.replace(' ', '-')}-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                kind, cid, payload = self._conn.recv()
            except (EOFError, OSError):
                break
            if kind == "ack":
                with self._ack_ready:
                    self._acks[cid] = payload
                    self._ack_ready.notify_all()
            else:
                self._on_push(kind, payload)
        with self._ack_ready:
            self._acks[-1] = None  # the child is gone: wake every waiter
            self._ack_ready.notify_all()

    def alive(self) -> bool:
        """Whether the child process still runs."""
        return self._proc.poll() is None

    def call(self, op: str, payload: Any = None, timeout: float = 30) -> Any:
        """Send command ``op`` and wait for the child's answer."""
        with self._send_lock:
            cid = self._next_id
            self._next_id += 1
            try:
                self._conn.send((op, cid, payload))
            except OSError:
                raise ServerError(f"the isolated {self.what} has exited") from None
        with self._ack_ready:
            if not self._ack_ready.wait_for(lambda: cid in self._acks or -1 in self._acks, timeout):
                raise ServerError(f"the isolated {self.what} did not answer {op!r}")
            if cid not in self._acks:
                raise ServerError(f"the isolated {self.what} has exited")
            return self._acks.pop(cid)

    def stop(self) -> None:
        """Ask the child to stop (op ``stop``), wait for it, and close the pipe."""
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


def connect_to_parent() -> tuple[Connection, Any]:
    """In the child: connect to the parent (argv: LHOST LPORT KEY); returns the pipe and the config."""
    lhost, lport, key = sys.argv[-3:]
    conn = Client((lhost, int(lport)), authkey=bytes.fromhex(key))
    return conn, conn.recv()


def start_for_parent(conn: Connection, component: Any) -> bool:
    """In the child: start ``component``; tell the parent its address, or why it failed."""
    try:
        component.start()
    except Exception as exc:
        conn.send(("error", 0, str(exc)))
        return False
    settle_heap()
    conn.send(("ready", 0, component.address))
    return True


def settle_heap() -> None:
    """Move every object alive now (modules, classes, caches: what imports and start-up
    made) out of the garbage collector's reach, in a process the kit owns.

    A full collection scans every tracked object: with pandas and httpx imported, that
    is 100-250 ms during which the process's event loop runs nothing, often enough to
    put a stream's chunks over the fidelity budget (seen in the soak). Frozen, a full
    collection scans only what was made since, a few ms. Frozen objects are never freed,
    which is what start-up objects are anyway (:func:`gc.freeze`).
    """
    gc.collect()
    gc.freeze()
