"""A fault server's log: every write it made, and every request it handled.

One :class:`ServerLog` per :class:`~kit.FaultServer`, whichever mode serves: the
in-process mode (:mod:`kit._server_local`) appends entries as it writes (through a
:class:`RequestLog` per request), the child-process mode (:mod:`kit._isolated`) adds the
rows the child ships. ``keep=N`` keeps the last N requests' entries (lists are trimmed in
place: running requests hold their ``append``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from .records import ServerLogEntry

__all__ = ["RequestLog", "ServerLog"]


class ServerLog:
    """The entries (``ServerLogEntry``), by request too, and the ``requests`` handled."""

    def __init__(self, keep: int | None, on_request: Callable[[dict[str, Any]], None] | None) -> None:
        self.keep = keep
        self.entries: list[ServerLogEntry] = []
        self.by_request: dict[str, list[ServerLogEntry]] = {}
        self.requests: list[dict[str, Any]] = []
        self.requests_seen = 0  # every request handled, also those a `keep` window has dropped
        self.on_trim: Callable[[int], None] | None = None  # the mode forgets state of trimmed requests
        self._on_request = on_request
        self._lock = threading.Lock()

    def writer(self, request_id: str, conn: int, scenario: str, attempt: int) -> RequestLog:
        """The writer of one request's entries (called on the serving loop)."""
        mine = self.by_request.setdefault(request_id, [])
        return RequestLog(self.entries, mine, request_id, conn, scenario, attempt)

    def add_rows(self, rows: list[tuple]) -> None:
        """Entries shipped as tuples (from a child process)."""
        for row in rows:
            entry = ServerLogEntry(*row)
            self.entries.append(entry)
            self.by_request.setdefault(entry.request_id, []).append(entry)

    def record_request(self, info: dict[str, Any]) -> None:
        """A request handled (rejected ones included); trims the window when it is over ``keep``."""
        self.requests.append(info)
        self.requests_seen += 1
        if self.keep is not None and len(self.requests) >= self.keep + max(self.keep // 2, 1):
            self._trim(self.keep)
        if self._on_request is not None:
            with contextlib.suppress(Exception):
                self._on_request(info)

    def _trim(self, keep: int) -> None:
        with self._lock:
            del self.requests[: len(self.requests) - keep]
            ids = list(self.by_request)
            for rid in ids[: max(len(ids) - keep, 0)]:
                del self.by_request[rid]
            kept = self.by_request.keys()
            self.entries[:] = [e for e in self.entries if e.request_id in kept]
        if self.on_trim is not None:
            self.on_trim(keep)

    def clear(self) -> None:
        self.entries.clear()
        self.by_request.clear()
        self.requests.clear()


class RequestLog:
    """Appends the entries of one request, numbered (``list.append`` is atomic under the GIL)."""

    __slots__ = ("_append", "_append_request", "_attempt", "_conn", "_rid", "_scenario", "_seq", "next_due")

    def __init__(
        self,
        entries: list[ServerLogEntry],
        mine: list[ServerLogEntry],
        rid: str,
        conn: int,
        scenario: str,
        attempt: int,
    ) -> None:
        self._append = entries.append
        self._append_request = mine.append
        self._rid, self._conn, self._scenario, self._attempt = rid, conn, scenario, attempt
        self._seq = 0
        self.next_due: int | None = None  # when the write the server waits for is due (None: none planned)

    def __call__(self, kind: str, nbytes: int, scheduled_ns: int, t_ns: int, body_bytes: int = 0) -> None:
        """Log a write of ``nbytes`` on the wire, ``body_bytes`` of them payload (the rest framing or headers)."""
        entry = ServerLogEntry(
            self._rid,
            self._conn,
            self._scenario,
            self._attempt,
            self._seq,
            kind,
            nbytes,
            scheduled_ns,
            t_ns,
            body_bytes,
        )
        self._append(entry)
        self._append_request(entry)
        self._seq += 1
