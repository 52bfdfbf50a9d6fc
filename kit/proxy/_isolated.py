"""``NetworkProxy(isolate=True)``: the same proxy in a child interpreter, its log shipped back.

A proxy in the process that also runs many clients competes with them for the
interpreter lock: its timers fire late and its forwards go out late (the soak saw
connects time out and 100 ms added to a configured latency). Isolated, it runs in its
own process (started by :class:`kit._child.Child`: pure Python, no fork), and the
parent keeps the whole API: live toxic changes are sent to the child and applied to
its open connections before the call returns; forwards, events, connection records
and per-request lateness are pushed back every :data:`SHIP_EVERY` seconds, and every
log view (``log``, ``forwards_df()``, ``connections()``, ...) first asks the child to
ship what it has, so the parent's view is current when it is read.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .. import _registry
from .._child import Child, connect_to_parent, start_for_parent
from .._errors import ConfigError, ServerError
from .._rerun import replace_previous
from ..network import Network
from ._api import NetworkProxy

__all__ = ["IsolatedProxy"]

SHIP_EVERY = 0.02  # seconds between shipments from the child
_ENTRY = "from kit.proxy._isolated import main; main()"


class IsolatedProxy(NetworkProxy):
    """Parent side of ``NetworkProxy(isolate=True)`` (same API; see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._child: Child | None = None
        self._address: tuple[str, int] | None = None
        self._records: dict[int, dict[str, Any]] = {}

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> IsolatedProxy:
        if self._child is not None:
            return self
        replace_previous(self)
        config = {
            "upstream": self.upstream,
            "listen": self._listen,
            "network": self.network.to_dict(),
            "seed": self.seed,
            "allow_remote": self._allow_remote,
        }
        self._child = Child(_ENTRY, config, self._on_push, "network proxy")
        self._address = tuple(self._child.info)  # type: ignore[assignment]
        _registry.register_proxy(self)
        return self

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop()  # the child ships everything before it exits

    async def __aenter__(self) -> IsolatedProxy:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def running(self) -> bool:
        return self._child is not None

    @property
    def address(self) -> tuple[str, int]:
        if self._child is None or self._address is None:
            raise ServerError("the NetworkProxy is not running; use it in a `with` block or call start()")
        return self._address

    def _sync(self) -> None:
        self._snapshot = tuple(self._toxics.values())
        if self._child is not None:
            self._child.call("network", self.network.to_dict())

    # -- logs, shipped from the child ----------------------------------------------------

    def _on_push(self, kind: str, payload: Any) -> None:
        if kind == "forwards":
            self._forwards.extend(payload)
        elif kind == "events":
            for row in payload:
                self._event(row)
        elif kind == "connections":
            for record in payload:
                self._records[record["conn"]] = record
        elif kind == "late":
            self._late.update(payload)

    def child_state(self) -> dict[str, Any]:
        """What the child process holds now: ``pid``, ``open`` connections, loop ``tasks``, ``fds``.

        For leak checks (benchmarks/soak.py); ``fds`` is None where ``/proc`` is missing.
        """
        if self._child is None:
            raise ServerError("the NetworkProxy is not running")
        return self._child.call("state")

    def _flush(self) -> None:
        if self._child is not None:
            self._child.call("flush")

    @property
    def log(self) -> list[dict[str, Any]]:
        self._flush()
        return super().log

    def forwards_df(self):  # type: ignore[no-untyped-def]
        self._flush()
        return super().forwards_df()

    def events_df(self):  # type: ignore[no-untyped-def]
        self._flush()
        return super().events_df()

    def connection(self, conn: int) -> dict[str, Any]:
        self._flush()
        try:
            return dict(self._records[conn])
        except KeyError:
            raise ConfigError("conn", conn, "the id of a connection in connections()") from None

    def connections(self) -> list[dict[str, Any]]:
        self._flush()
        return [dict(self._records[k]) for k in sorted(self._records)]

    def clear_log(self) -> None:
        if self._child is not None:
            self._child.call("clear_log")
        self._forwards.clear()
        self._events.clear()
        self._late.clear()
        self._records = {k: r for k, r in self._records.items() if r["close_reason"] is None}


# -- the child ---------------------------------------------------------------------------


class _Shipper:
    """Sends the child proxy's new log rows to the parent (from the child's main thread)."""

    def __init__(self, conn: Any, proxy: NetworkProxy) -> None:
        self.conn, self.proxy = conn, proxy
        self.forwards = self.events = 0  # rows shipped so far

    def ship(self, everything: bool = False) -> None:
        proxy, send = self.proxy, self.conn.send
        n = len(proxy._forwards)
        if n > self.forwards:
            send(("forwards", 0, proxy._forwards[self.forwards : n]))
            self.forwards = n
        m = len(proxy._events)
        conns: set[int] = set()
        if m > self.events:
            new = proxy._events[self.events : m]
            send(("events", 0, new))
            conns = {row[1] for row in new}  # connections with news: their records too
            self.events = m
        if everything:
            conns.update(proxy._all)
        records = [c.record() for i in conns if (c := proxy._all.get(i)) is not None]
        if records:
            send(("connections", 0, records))
        dirty = proxy._late_dirty
        if dirty:
            ids = list(dirty)
            dirty.difference_update(ids)
            send(("late", 0, {rid: proxy._late[rid] for rid in ids}))

    def forget(self) -> None:
        self.forwards = self.events = 0


def _state(proxy: NetworkProxy) -> dict[str, Any]:
    async def tasks() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    fds = f"/proc/{os.getpid()}/fd"
    return {
        "pid": os.getpid(),
        "open": len(proxy._open),
        "tasks": proxy._thread.call(tasks(), timeout=10) if proxy._thread is not None else 0,
        "fds": len(os.listdir(fds)) if os.path.isdir(fds) else None,
    }


def main() -> None:
    """Entry point of the child (see :mod:`kit._child`)."""
    conn, config = connect_to_parent()
    proxy = NetworkProxy(
        tuple(config["upstream"]),
        listen=tuple(config["listen"]),
        network=config["network"],
        seed=config["seed"],
        allow_remote=config["allow_remote"],
    )
    proxy._late_dirty = set()
    if not start_for_parent(conn, proxy):
        return
    shipper = _Shipper(conn, proxy)
    try:
        while True:
            if conn.poll(SHIP_EVERY):
                op, cid, payload = conn.recv()
                result: Any = None
                if op == "network":
                    with proxy._lock:
                        proxy._toxics = {t.name: t for t in Network.from_dict(payload).toxics}
                    proxy._sync()
                elif op == "flush":
                    shipper.ship(everything=True)
                elif op == "state":
                    result = _state(proxy)
                elif op == "clear_log":
                    shipper.ship()
                    proxy.clear_log()
                    shipper.forget()
                elif op == "stop":
                    proxy.stop()
                    shipper.ship(everything=True)
                    conn.send(("ack", cid, None))
                    return
                conn.send(("ack", cid, result))
            shipper.ship()
    except (EOFError, OSError, KeyboardInterrupt):
        proxy.stop()
