"""A small process pool whose workers stream messages back while a task runs.

Why not ``concurrent.futures.ProcessPoolExecutor``: its spawn start method re-imports
the caller's ``__main__`` in every worker (a script without an ``if __name__ ==
"__main__"`` guard would run itself again), and a task cannot report anything until it
returns. Here each worker is ``python -c "from kit.experiment._pool import main; main()"`` (the
same on Linux, macOS and Windows, as :mod:`kit._child` starts the fault server),
talks to the driver over a ``multiprocessing.connection`` on loopback with a random
key, and a running task may call :func:`emit` to send a message at once (the
experiment runner streams each finished trial that way, so progress is live and a
worker that dies loses only its trials in flight).

:class:`LocalPool` is a :class:`concurrent.futures.Executor`: ``submit(fn, *args)``
with an importable ``fn`` and picklable arguments (the driver's own values; nothing
read from a bundle is ever unpickled). A worker that exits mid-task fails that task's
future with :class:`WorkerDied`; the other workers go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Client, Connection, Listener, wait
from typing import Any

__all__ = ["LocalPool", "WorkerDied", "emit", "streaming"]

_CONN: Connection | None = None  # set in a worker process: where emit() sends
_LOCK = threading.Lock()


class WorkerDied(RuntimeError):
    """The worker process running a task exited before the task returned."""


def streaming() -> bool:
    """Whether this process is a :class:`LocalPool` worker (so :func:`emit` sends)."""
    return _CONN is not None


def emit(message: Any) -> bool:
    """From a task in a :class:`LocalPool` worker: send ``message`` to the driver now.

    Returns False (and sends nothing) outside such a worker, e.g. under another executor.
    """
    if _CONN is None:
        return False
    with _LOCK:
        _CONN.send(("emit", message))
    return True


class _Worker:
    def __init__(self, proc: subprocess.Popen, conn: Connection, index: int) -> None:
        self.proc, self.conn, self.index = proc, conn, index
        self.future: cf.Future | None = None


class LocalPool(cf.Executor):
    """``workers`` Python processes on this machine; ``on_emit(worker_index, message)``
    is called on the pool's reader thread for every :func:`emit` of a running task."""

    def __init__(self, workers: int, on_emit: Callable[[int, Any], None] | None = None) -> None:
        self.on_emit = on_emit
        self._queue: deque[tuple[cf.Future, Any]] = deque()
        self._lock = threading.Lock()
        self._shutdown = False
        self._workers: list[_Worker] = []
        key = os.urandom(16)
        with Listener(("127.0.0.1", 0), authkey=key) as listener:
            host, port = listener.address
            procs = []
            for i in range(workers):
                args = [
                    sys.executable,
                    "-c",
                    "from kit.experiment._pool import main; main()",
                    host,
                    str(port),
                    key.hex(),
                    str(i),
                ]
                procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL))
            conns: dict[int, Connection] = {}
            accepter = threading.Thread(target=_accept, args=(listener, conns, workers), daemon=True)
            accepter.start()
            accepter.join(120)
            if len(conns) < workers:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"only {len(conns)} of {workers} worker processes started within 120 s")
        self._workers = [_Worker(p, conns[i], i) for i, p in enumerate(procs)]
        self._reader = threading.Thread(target=self._read, name="kit-pool-reader", daemon=True)
        self._reader.start()

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def __len__(self) -> int:
        return len(self._workers)

    @property
    def healthy(self) -> bool:
        """Every worker is alive and the pool takes tasks."""
        return not self._shutdown and all(w.proc.poll() is None and not w.conn.closed for w in self._workers)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            fut: cf.Future = cf.Future()
            self._queue.append((fut, (fn, args, kwargs)))
            self._dispatch()
            return fut

    def _dispatch(self) -> None:  # holds self._lock
        for w in self._workers:
            if not self._queue:
                return
            if w.future is not None or w.proc.poll() is not None:
                continue
            while self._queue:
                fut, task = self._queue.popleft()
                if fut.set_running_or_notify_cancel():
                    w.future = fut
                    try:
                        w.conn.send(("task", task))
                    except (OSError, ValueError) as exc:
                        w.future = None
                        fut.set_exception(WorkerDied(f"worker {w.index} cannot take a task ({exc})"))
                        continue
                    break

    def _read(self) -> None:
        while True:
            with self._lock:
                live = [w for w in self._workers if not w.conn.closed]
            if not live:
                return
            ready = wait([w.conn for w in live], timeout=0.2)
            for w in live:
                if w.conn not in ready:
                    continue
                try:
                    kind, payload = w.conn.recv()
                except (EOFError, OSError):
                    self._lost(w)
                    continue
                if kind == "emit":
                    if self.on_emit is not None:
                        with contextlib.suppress(Exception):
                            self.on_emit(w.index, payload)
                    continue
                with self._lock:
                    fut, w.future = w.future, None
                    self._dispatch()
                if fut is not None:
                    if kind == "ok":
                        fut.set_result(payload)
                    else:
                        fut.set_exception(payload)

    def _lost(self, w: _Worker) -> None:
        with contextlib.suppress(OSError):
            w.conn.close()
        code = w.proc.wait()
        with self._lock:
            fut, w.future = w.future, None
            self._dispatch()  # what was queued goes to the workers still alive
            orphans = []
            if all(x.conn.closed for x in self._workers):
                orphans, self._queue = list(self._queue), deque()
        if fut is not None:
            fut.set_exception(WorkerDied(f"worker process {w.proc.pid} exited (code {code}) while running a task"))
        for f, _ in orphans:
            f.set_exception(WorkerDied("every worker process has exited"))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for f, _ in self._queue:
                    f.cancel()
                self._queue.clear()
        for w in self._workers:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(("stop", None))
        if not wait:
            return
        for w in self._workers:
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        self._reader.join(5)
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.conn.close()


def _accept(listener: Listener, conns: dict[int, Connection], n: int) -> None:
    while len(conns) < n:
        conn = listener.accept()
        conns[conn.recv()] = conn


def main() -> None:
    """Entry point of a worker; argv: HOST PORT KEY INDEX."""
    global _CONN
    host, port, key, index = sys.argv[-4:]
    # the driver decides when to stop: a terminal's Ctrl-C reaches the whole process
    # group, and a worker killed by it would lose the trials it already finished
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Client((host, int(port)), authkey=bytes.fromhex(key))
    conn.send(int(index))
    _CONN = conn
    try:
        while True:
            try:
                kind, task = conn.recv()
            except (EOFError, OSError):
                return
            if kind == "stop":
                return
            fn, args, kwargs = task
            try:
                reply = ("ok", fn(*args, **kwargs))
            except BaseException as exc:
                reply = ("error", exc)
            with _LOCK:
                try:
                    conn.send(reply)
                except Exception as exc:  # an unpicklable result or exception
                    conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        _CONN = None
