"""The network-conditions proxy: a userspace TCP proxy that applies toxics, and logs.

``NetworkProxy(upstream=server.address, latency="200ms")`` listens on loopback and
forwards every connection to ``upstream`` through the toxics in effect (see
:mod:`kit.network`). It is the *network* vantage point of a trace: per connection and
direction it logs every forward (when the bytes arrived, when they left, which toxics
applied) and every connection event (open, upstream connect or refusal, EOF, stall,
reset, close), on the kit's shared clock.

How it works, and why:

- Each connection has two pipes, ``upstream`` (client -> server) and ``downstream``
  (server -> client). Sockets are asyncio protocols reading 64 KiB at a time; data is
  stamped the moment it arrives.
- With no toxic applying to a pipe, a chunk is written to the other socket inside the
  read callback (the fast path: one write, one log tuple).
- Otherwise chunks queue, and one writer task per pipe processes them in order. For
  every chunk, and every piece of it, the writer reads the *current* toxic set, so
  adding, changing or removing a toxic changes open connections at once: a sleeping
  writer is woken and re-plans with the new set. Targets are absolute
  (``perf_counter_ns``), so sleeps that overshoot do not accumulate.
- Backpressure: when a socket's write buffer fills, reading from its peer pauses; a
  pipe also stops reading once 4 MiB are queued (a long delay on a fast stream).
- The event loop is the kit's precise loop on a background thread (``LoopThread``), so
  timers fire within tens of microseconds, and the proxy works from sync code,
  notebooks and other event loops alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from . import _registry
from ._bind import check_bind
from ._clock import now_ns
from ._errors import ConfigError, KitError, ServerError
from ._loop import LoopThread
from ._rerun import replace_previous
from .network import (
    Bandwidth,
    Down,
    Latency,
    LimitData,
    Loss,
    Network,
    ResetPeer,
    Slicer,
    SlowClose,
    Stall,
    Timeout,
    Toxic,
    _coerce_toxic,
    toxics_from_kwargs,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NetworkProxy"]

READ_SIZE = 256 * 1024
HIGH_WATER = 4 * 1024 * 1024  # bytes queued in one pipe before reading from its source pauses
BANDWIDTH_QUANTUM = 0.010  # seconds of transmission per piece under a Bandwidth toxic

_EOF = "eof"  # queue markers: the source closed its side (FIN) ...
_RST = "rst"  # ... or reset the connection

FORWARD_COLUMNS = ("conn", "direction", "t_recv_ns", "t_sent_ns", "nbytes", "delay_ns", "toxics", "hit", "dropped")
EVENT_COLUMNS = ("t_ns", "conn", "event", "direction", "detail")
CONNECTION_COLUMNS = (
    "conn",
    "client",
    "upstream",
    "t_open_ns",
    "t_upstream_ns",
    "t_close_ns",
    "duration_s",
    "bytes_up",
    "bytes_down",
    "received_up",
    "received_down",
    "dropped_up",
    "dropped_down",
    "close_reason",
    "reset",
    "toxics_hit",
    "toxics_missed",
)


def _rst(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST: ``SO_LINGER`` on with a zero timeout, then close."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # struct linger is two ints on POSIX, two u_shorts on Windows
        linger = struct.pack("HH", 1, 0) if sys.platform == "win32" else struct.pack("ii", 1, 0)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    transport.abort()  # type: ignore[attr-defined]


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class _Overshoot:
    """A running estimate of how late timers fire on this machine, in ns.

    It tracks the *median* lateness: each observation moves it a fixed step up (late)
    or down (early), so a thread preempted for 20 ms on a loaded machine moves it by
    one step, not by a fraction of 20 ms.
    """

    __slots__ = ("ns",)

    STEP = 10_000  # 10 us: from 0 to a typical 200 us in 20 sleeps
    CAP = 1_000_000  # beyond 1 ms the machine is overloaded: waking earlier would not help

    def __init__(self) -> None:
        self.ns = 0

    def observe(self, error_ns: int) -> None:
        """``error_ns``: how late (>0) or early (<0) a compensated sleep ended."""
        step = self.STEP if error_ns > 0 else -self.STEP
        self.ns = max(0, min(self.CAP, self.ns + step))


class _Item:
    """A chunk (or an EOF/RST marker) waiting in a pipe, with its per-toxic samples."""

    __slots__ = ("data", "samples", "t_recv")

    def __init__(self, data: bytes | str, t_recv: int) -> None:
        self.data = data
        self.t_recv = t_recv
        self.samples: dict[Toxic, float] | None = None


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: the client's or the upstream's."""

    source: _Pipe  # the pipe this side's bytes feed
    sink: _Pipe  # the pipe that writes to this side

    def __init__(self, conn: _Conn, role: str) -> None:
        self.conn = conn
        self.role = role
        self.transport: asyncio.Transport | None = None
        self.write_paused = False
        self.lost = False
        self._blocks: set[str] = set()  # why reading is paused: connect, backpressure, queue

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # recv() up to READ_SIZE bytes at a time: 256 KiB (asyncio's default) halves the CPU
        # per GB against 64 KiB; toxics still pace within a read (Bandwidth in 10 ms quanta).
        # (A plain Protocol, not a BufferedProtocol: the bytes recv() returns are passed
        # straight to write(), with no second copy out of a reusable buffer.)
        transport.max_size = READ_SIZE  # type: ignore[attr-defined]
        if self._blocks:
            transport.pause_reading()  # type: ignore[attr-defined]
        if self.role == "client":
            self.conn.client_made()

    def data_received(self, data: bytes) -> None:
        self.source.feed(data)

    def eof_received(self) -> bool:
        self.source.feed_end(_EOF)
        return True  # keep the socket open for writing: half-close is the peer's right

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.conn.side_lost(self, exc)
        self.sink.wake_writable()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.sink.src.block_reading("backpressure")

    def resume_writing(self) -> None:
        self.write_paused = False
        self.sink.src.unblock_reading("backpressure")
        self.sink.wake_writable()

    # flow control
    def block_reading(self, why: str) -> None:
        self._blocks.add(why)
        if self.transport is not None and not self.lost:
            self.transport.pause_reading()

    def unblock_reading(self, why: str) -> None:
        self._blocks.discard(why)
        if not self._blocks and self.transport is not None and not self.lost:
            self.transport.resume_reading()

    def can_write(self) -> bool:
        return self.transport is not None and not self.lost and not self.transport.is_closing()


class _Pipe:
    """One direction of a connection: reads from ``src``, applies toxics, writes to ``dst``."""

    def __init__(self, conn: _Conn, direction: str, src: _Side, dst: _Side) -> None:
        self.conn = conn
        self.cid = conn.id
        self.direction = direction
        self.src = src
        self.dst = dst
        self.loop = conn.loop
        self.log = conn.proxy._forwards
        self.overshoot = conn.proxy._overshoot
        self.queue: deque[_Item] = deque()
        self.queued = 0
        self.active: tuple[Toxic, ...] = ()
        self.names: tuple[str, ...] = ()
        self.task: asyncio.Task[None] | None = None
        self.ended = False  # the source sent EOF or reset
        self.reset_queued = False
        self.done = False  # the end was delivered (or the destination is gone)
        self.received = 0
        self.sent = 0
        self.dropped = 0
        self.link_free = 0  # when the bandwidth-limited link finishes its current piece
        self.stalls: dict[Toxic, int] = {}  # stall toxic -> when it started on this pipe
        self._stalled = False
        self._rngs: dict[str, random.Random] = {}
        self._wake: asyncio.Future[bool] | None = None
        self._writable: asyncio.Future[bool] | None = None

    # -- input (called from the source's protocol callbacks) --------------------------

    def feed(self, data: bytes) -> None:
        t = now_ns()
        n = len(data)
        self.received += n
        if self.task is None and not self.active:
            # fast path: nothing applies and nothing is queued ahead of this chunk
            transport = self.dst.transport
            if transport is not None and not self.dst.lost and not transport.is_closing():
                transport.write(data)
                self.sent += n
                self.log.append((self.cid, self.direction, t, now_ns(), n, ()))
            else:
                self._drop(n, t)
            return
        self.queue.append(_Item(data, t))
        self.queued += n
        if self.queued > HIGH_WATER:
            self.src.block_reading("queue")
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    def feed_end(self, marker: str, detail: str = "") -> None:
        if self.ended and (marker == _EOF or self.reset_queued):
            return
        if marker == _RST:
            self.reset_queued = True
            if self.done:  # the FIN went through already: pass the reset on at once
                self.conn.shutdown(f"{self.src.role} reset", mode="reset")
                return
        self.ended = True
        self.conn.event("eof" if marker == _EOF else "reset_received", self.direction, detail or self.src.role)
        self.conn.note_end(f"{self.src.role} {'closed' if marker == _EOF else 'reset'}")
        self.queue.append(_Item(marker, now_ns()))
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    # -- control (called by the connection) ----------------------------------------

    def set_active(self, applied: tuple[Toxic, ...]) -> None:
        if applied != self.active:
            self.active = applied
            self.names = tuple(t.name for t in applied)
            # a removed stall is forgotten, so adding it again arms it again
            self.stalls = {t: start for t, start in self.stalls.items() if t in applied}
        self.changed()

    def changed(self) -> None:
        """Wake a sleeping writer so it re-plans with the current toxics."""
        if self._wake is not None:
            _resolve(self._wake, True)

    def wake_writable(self) -> None:
        if self._writable is not None:
            _resolve(self._writable, True)

    def dst_lost(self) -> None:
        """The destination is gone: nothing queued can be delivered any more."""
        for item in self.queue:
            if isinstance(item.data, bytes):
                self._drop(len(item.data), item.t_recv)
        self.queue.clear()
        self.queued = 0
        self.src.unblock_reading("queue")
        self.done = True
        self.cancel()

    def cancel(self) -> None:
        task = self.task
        if task is not None and task is not asyncio.current_task(self.loop):
            task.cancel()
            self.task = None

    # -- the writer ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.queue:
                item = self.queue[0]
                await self._process(item)
                if self.queue and self.queue[0] is item:
                    self.queue.popleft()
                    if isinstance(item.data, bytes):
                        self.queued -= len(item.data)
                        if self.queued < HIGH_WATER // 2:
                            self.src.unblock_reading("queue")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the connection hanging
            self.conn.event("error", self.direction, repr(exc))
            self.conn.shutdown("proxy error", mode="reset")
        finally:
            if self.task is asyncio.current_task(self.loop):
                self.task = None

    async def _process(self, item: _Item) -> None:
        data = item.data
        while True:  # wait for the item's delay; re-plan whenever the toxics change
            active = self.active
            blackhole = any(isinstance(t, Timeout) for t in active)
            if blackhole and isinstance(data, bytes):
                self._drop(len(data), item.t_recv)
                return
            due = item.t_recv + self._delay_ns(item, active)
            if data == _EOF:
                due += int(sum(t.delay for t in active if isinstance(t, SlowClose)) * 1e9)
            if blackhole:  # hold a FIN or reset until the blackhole goes away
                await self._sleep_until(None)
                continue
            if await self._sleep_until(due):
                continue
            if not isinstance(data, bytes):  # a stall holds the FIN or reset too
                self._arm_stalls(active, now_ns())
                until = self._stalled_until(active)
                if until is None or until > now_ns():
                    await self._sleep_until(until)
                    continue
            break
        if data == _EOF:
            self._deliver_eof()
        elif data == _RST:
            self.conn.shutdown(f"{self.src.role} reset", mode="reset")
        else:
            await self._send(item, data, due)  # type: ignore[arg-type]

    def _delay_ns(self, item: _Item, active: tuple[Toxic, ...]) -> int:
        total = 0.0
        for toxic in active:
            if not isinstance(toxic, Latency | Loss):
                continue
            if item.samples is None:
                item.samples = {}
            value = item.samples.get(toxic)
            if value is None:
                value = item.samples[toxic] = toxic.sample(self._rng(toxic))
            total += value
        return int(total * 1e9)

    async def _send(self, item: _Item, data: bytes, ready: int) -> None:
        view = memoryview(data)
        offset, n = 0, len(data)
        slice_left = 0
        first_slice = True
        while offset < n:
            active = self.active
            if not self.dst.can_write():
                self._drop(n - offset, item.t_recv)
                return
            if any(isinstance(t, Timeout) for t in active):
                self._drop(n - offset, item.t_recv)
                return
            size = n - offset
            rate = 0.0
            now = now_ns()
            self._arm_stalls(active, now)
            stalled_until = self._stalled_until(active)
            for toxic in active:
                if isinstance(toxic, Slicer):
                    if slice_left <= 0:
                        slice_left = toxic.piece_size(self._rng(toxic))
                        if not first_slice:
                            ready += int(toxic.delay * 1e9)
                        first_slice = False
                    size = min(size, slice_left)
                elif isinstance(toxic, Bandwidth):
                    rate = toxic.rate if not rate else min(rate, toxic.rate)
                elif isinstance(toxic, LimitData):
                    allowed = toxic.bytes - self.sent
                    if allowed <= 0:
                        self._drop(n - offset, item.t_recv)
                        self.conn.event("limit_data", self.direction, f"{toxic.name}: {self.sent} bytes")
                        self.conn.shutdown("limit_data")
                        return
                    size = min(size, allowed)
                elif isinstance(toxic, Stall) and toxic not in self.stalls:
                    size = min(size, toxic.after_bytes - self.sent)  # stop exactly at the boundary
            if stalled_until is None or stalled_until > now:
                self._stalled = True
                await self._sleep_until(stalled_until)
                continue  # re-plan: the stall may have ended or been removed
            if self._stalled:
                self._stalled = False
                self.conn.event("stall_end", self.direction, f"after {self.sent} bytes")
            if rate:
                size = min(size, max(1, int(rate * BANDWIDTH_QUANTUM)))
                start_ns = max(ready, self.link_free)
                target = start_ns + int(size / rate * 1e9)
            else:
                target = ready
            if await self._sleep_until(target):
                continue  # toxics changed mid-wait: re-plan this piece
            if self.dst.write_paused:
                await self._wait_writable()
                continue
            self.dst.transport.write(view[offset : offset + size])  # type: ignore[union-attr]
            t_sent = now_ns()
            offset += size
            slice_left -= size
            self.sent += size
            self.log.append((self.cid, self.direction, item.t_recv, t_sent, size, self.names))
            if rate:
                self.link_free = target
            ready = target
            self._arm_stalls(active, t_sent)
            for toxic in active:
                if isinstance(toxic, LimitData) and self.sent >= toxic.bytes:
                    self._drop(n - offset, item.t_recv)
                    self.conn.event("limit_data", self.direction, f"{toxic.name}: {self.sent} bytes")
                    self.conn.shutdown("limit_data")
                    return

    def _stalled_until(self, active: tuple[Toxic, ...]) -> int | None:
        """When the stalls in effect end (ns; 0: no stall; None: not until removed)."""
        until = 0
        for toxic in active:
            if isinstance(toxic, Stall) and toxic in self.stalls:
                if toxic.duration is None:
                    return None
                until = max(until, self.stalls[toxic] + int(toxic.duration * 1e9))
        return until

    def _arm_stalls(self, active: tuple[Toxic, ...], t: int) -> None:
        for toxic in active:
            if isinstance(toxic, Stall) and toxic not in self.stalls and self.sent >= toxic.after_bytes:
                self.stalls[toxic] = t
                self.conn.event("stall_start", self.direction, f"{toxic.name}: after {self.sent} bytes")

    def _deliver_eof(self) -> None:
        transport = self.dst.transport
        if self.dst.can_write():
            assert transport is not None
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
            self.conn.event("eof_sent", self.direction, self.dst.role)
        self.done = True
        self.conn.pipe_done()

    async def _sleep_until(self, target: int | None) -> bool:
        """Sleep until ``target`` (ns; None: until woken). True if woken by a toxic change.

        Timers fire late by the machine's wake-up latency (70-200 us on a VM), so the
        timer is set that much early: ``_Overshoot`` keeps a running estimate of it.
        """
        handle = None
        overshoot = self.overshoot
        if target is not None:
            delay = target - now_ns()
            if delay <= overshoot.ns:  # due, or too close to sleep without overshooting
                return False
        fut = self.loop.create_future()
        self._wake = fut
        if target is not None:
            handle = self.loop.call_later((delay - overshoot.ns) / 1e9, _resolve, fut, False)
        try:
            woken = await fut
        finally:
            self._wake = None
            if handle is not None:
                handle.cancel()
        if target is not None and not woken:
            overshoot.observe(now_ns() - target)
        return woken

    async def _wait_writable(self) -> None:
        while self.dst.write_paused and not self.dst.lost:
            self._writable = self.loop.create_future()
            try:
                await self._writable
            finally:
                self._writable = None

    def _rng(self, toxic: Toxic) -> random.Random:
        rng = self._rngs.get(toxic.name)
        if rng is None:
            seed = f"{self.conn.proxy.seed}:{self.cid}:{toxic.name}:{self.direction}"
            rng = self._rngs[toxic.name] = random.Random(seed)
        return rng

    def _drop(self, n: int, t_recv: int) -> None:
        self.dropped += n
        self.log.append((self.cid, self.direction, t_recv, None, n, self.names))


class _Conn:
    """One proxied connection: two sides, two pipes, the toxicity rolls and timers."""

    def __init__(self, proxy: NetworkProxy) -> None:
        self.proxy = proxy
        self.id = next(proxy._ids)
        self.loop = proxy._loop_or_raise()
        self.client = _Side(self, "client")
        self.upstream = _Side(self, "upstream")
        self.up = _Pipe(self, "upstream", self.client, self.upstream)
        self.down = _Pipe(self, "downstream", self.upstream, self.client)
        self.client.source, self.client.sink = self.up, self.down
        self.upstream.source, self.upstream.sink = self.down, self.up
        self.peer = ""
        self.status = "pending"
        self.t_open: int | None = None
        self.t_upstream: int | None = None
        self.t_close: int | None = None
        self.reason: str | None = None  # why the connection ended
        self.end_reason: str | None = None  # who ended it first, for a normal close
        self.reset_sent = False
        self.closing = False
        self.finished = False
        self.rolls: dict[str, float] = {}
        self.seen: dict[str, None] = {}  # toxic names rolled for, in order
        self.hits: dict[str, None] = {}  # toxic names whose roll hit
        self.timers: dict[Toxic, asyncio.TimerHandle] = {}
        self.connect_task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def client_made(self) -> None:
        self.t_open = now_ns()
        transport = self.client.transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        proxy = self.proxy
        proxy._open[self.id] = self
        proxy._all[self.id] = self
        down = [t for t in proxy._snapshot if isinstance(t, Down) and self.applies(t)]
        if proxy._stopping or down:
            self.event("open", None, self.peer)
            if down:
                self.event("down", None, down[0].name)
            self.shutdown("down" if down else "proxy stopped", mode="reset")
            return
        self.client.block_reading("connect")
        self.apply()  # rolls toxicity before "open" is logged, so the event can name the hits
        self.event("open", None, self.peer)
        if not self.closing:
            self.connect_task = self.loop.create_task(self._connect())
            self.connect_task.add_done_callback(lambda _: self._maybe_finish())

    async def _connect(self) -> None:
        host, port = self.proxy.upstream
        try:
            await self.loop.create_connection(lambda: self.upstream, host, port)
        except OSError as exc:
            self.status = "refused" if isinstance(exc, ConnectionRefusedError) else "error"
            self.event(f"upstream_{self.status}", None, f"{host}:{port}: {exc.strerror or exc}")
            # a reset, so the client sees the failure as it would through a real network
            self.shutdown(f"upstream {self.status}", mode="reset")
            return
        self.t_upstream = now_ns()
        self.status = "connected"
        self.event("upstream_connected", None, f"{host}:{port}")
        if self.closing:  # a toxic or the client ended it while we connected
            if self.upstream.transport is not None:
                self.upstream.transport.close()
            return
        self.client.unblock_reading("connect")

    def applies(self, toxic: Toxic) -> bool:
        """Roll (once per connection and toxic name) whether ``toxic`` applies here."""
        roll = self.rolls.get(toxic.name)
        if roll is None:
            roll = self.rolls[toxic.name] = random.Random(f"{self.proxy.seed}:{self.id}:{toxic.name}").random()
        self.seen[toxic.name] = None
        hit = roll < toxic.toxicity
        if hit:
            self.hits[toxic.name] = None
        return hit

    def apply(self) -> None:
        """Bring the pipes and timers in line with the proxy's current toxics."""
        if self.closing:
            return
        toxics = self.proxy._snapshot
        for pipe in (self.up, self.down):
            applied = tuple(
                t
                for t in toxics
                if t.stream == pipe.direction and not isinstance(t, Down | ResetPeer) and self.applies(t)
            )
            pipe.set_active(applied)
        timed = [t for t in toxics if isinstance(t, ResetPeer) or (isinstance(t, Timeout) and t.timeout is not None)]
        wanted = {t for t in timed if self.applies(t)}
        for toxic in [t for t in self.timers if t not in wanted]:
            self.timers.pop(toxic).cancel()
        for toxic in wanted:
            if toxic not in self.timers:
                delay = toxic.timeout or 0.0
                self.timers[toxic] = self.loop.call_later(delay, self._fire, toxic)

    def _fire(self, toxic: Toxic) -> None:
        self.timers.pop(toxic, None)
        if isinstance(toxic, ResetPeer):
            self.event("reset_peer", toxic.stream, toxic.name)
            self.shutdown("reset_peer", mode="reset")
        else:
            self.event("timeout", toxic.stream, toxic.name)
            self.shutdown("timeout")

    def note_end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    def pipe_done(self) -> None:
        if self.up.done and self.down.done:
            self.shutdown(self.end_reason or "closed")

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if not self.closing:
            if self.status == "pending":
                self.shutdown(f"{side.role} {'reset' if exc else 'closed'}", mode="reset" if exc else "close")
            else:
                # the peer went away by itself: pass that on, in order, after its data
                if exc is None:
                    side.source.feed_end(_EOF)
                else:
                    side.source.feed_end(_RST, f"{side.role}: {exc}")
                side.sink.dst_lost()
                self.pipe_done()
        self._maybe_finish()

    def shutdown(self, reason: str, mode: str = "close") -> None:
        """End the connection: ``close`` (flush, FIN), ``reset`` (RST) or ``abort``."""
        if self.reason is None:
            self.reason = reason
        if self.closing and mode != "abort":
            return
        self.closing = True
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        if self.connect_task is not None and self.connect_task is not asyncio.current_task(self.loop):
            self.connect_task.cancel()
        self.up.cancel()
        self.down.cancel()
        for side in (self.client, self.upstream):
            transport = side.transport
            if transport is None or side.lost:
                continue
            if mode == "reset":
                _rst(transport)
                self.reset_sent = True
                self.event("reset", None, f"{side.role}: {reason}")
            elif mode == "abort":
                transport.abort()
            else:
                transport.close()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.finished or not self.closing:
            return
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.lost:
                return
        if self.connect_task is not None and not self.connect_task.done():
            return
        self.finished = True
        self.t_close = now_ns()
        self.event("close", None, self.reason or "closed")
        self.proxy._open.pop(self.id, None)

    # -- logging --------------------------------------------------------------------

    def event(self, name: str, direction: str | None, detail: str = "") -> None:
        self.proxy._event((now_ns(), self.id, name, direction, detail))

    def record(self) -> dict[str, Any]:
        duration = None
        if self.t_open is not None and self.t_close is not None:
            duration = (self.t_close - self.t_open) / 1e9
        return {
            "conn": self.id,
            "client": self.peer,
            "upstream": self.status,
            "t_open_ns": self.t_open,
            "t_upstream_ns": self.t_upstream,
            "t_close_ns": self.t_close,
            "duration_s": duration,
            "bytes_up": self.up.sent,
            "bytes_down": self.down.sent,
            "received_up": self.up.received,
            "received_down": self.down.received,
            "dropped_up": self.up.dropped,
            "dropped_down": self.down.dropped,
            "close_reason": self.reason if self.finished else None,
            "reset": self.reset_sent,
            "toxics_hit": tuple(self.hits),
            "toxics_missed": tuple(n for n in self.seen if n not in self.hits),
        }


def _hostport(field: str, value: object) -> tuple[str, int]:
    """``(host, port)`` from a tuple, ``"host:port"``, ``"[::1]:port"`` or a URL."""
    if isinstance(value, str):
        text = value if "//" in value else f"//{value}"
        try:
            parts = urlsplit(text)
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host or port is None:
            raise ConfigError(field, value, "HOST:PORT such as 127.0.0.1:8080, or a (host, port) tuple")
        return host, port
    if isinstance(value, tuple | list) and len(value) >= 2:
        host, port = value[0], value[1]
        if isinstance(host, str) and isinstance(port, int) and not isinstance(port, bool) and 0 <= port < 65536:
            return host, port
    raise ConfigError(field, value, "HOST:PORT such as 127.0.0.1:8080, or a (host, port) tuple")


class NetworkProxy:
    """A TCP proxy on loopback that applies network toxics to every connection.

    ``upstream``: ``(host, port)``, ``"host:port"``, or an object with an ``address``
    (a :class:`~kit.FaultServer`: then ``url_for`` also takes scenarios).
    ``listen``: where to listen; 127.0.0.1 on a free port by default. Addresses other
    than loopback need ``allow_remote=True`` (and warn). ``network``: a
    :class:`~kit.network.Network`, a list of toxics, or ``Network.to_dict()`` output.
    ``seed``: decides which connections each toxic's ``toxicity`` hits, and every
    random draw (jitter, slice sizes, loss).

    Shorthand keywords (``latency=0.2, jitter=0.05, bandwidth="20KB/s", stall_after="4KB",
    stall_for=2, loss=0.01, ...``; see :func:`kit.network.toxics_from_kwargs`) build
    toxics on the **downstream** direction (server -> client), where a streamed
    response travels; use toxic objects with ``stream="upstream"`` for the other way.

    ``on_event``: called on the proxy's thread with every connection event dict.

    Use it as a context manager (``with`` from sync code and notebooks, ``async with``
    from async code) or call :meth:`start` and :meth:`stop`. It runs on its own thread
    either way. Toxics can change at any time with :meth:`set`, :meth:`add`,
    :meth:`remove` and :meth:`clear`; changes apply to open connections at once.
    """

    def __init__(
        self,
        upstream: tuple[str, int] | str | Any,
        listen: tuple[str, int] | str = ("127.0.0.1", 0),
        network: Network | Iterable[Toxic] | Mapping[str, Any] | None = None,
        seed: int | str = 0,
        *,
        allow_remote: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        **toxics: Any,
    ) -> None:
        self._upstream_obj = upstream if hasattr(upstream, "address") else None
        self.upstream: tuple[str, int] = _hostport("upstream", upstream.address if self._upstream_obj else upstream)
        host, port = _hostport("listen", listen)
        if host == "localhost":
            host = "127.0.0.1"  # one socket, one address: not ::1 and 127.0.0.1 both
        check_bind("listen", listen, host, allow_remote, "the network proxy")
        self._listen = (host, port)
        self.seed = seed
        self._on_event = on_event
        if network is None:
            network = Network()
        elif isinstance(network, Mapping):
            network = Network.from_dict(network)
        elif not isinstance(network, Network):
            network = Network(tuple(network))
        self._name = network.name
        self._toxics: dict[str, Toxic] = {t.name: t for t in network.toxics}
        if toxics:
            built, removed = toxics_from_kwargs(self._toxics.values(), **toxics)
            self._replace(built, removed)
        self._snapshot: tuple[Toxic, ...] = tuple(self._toxics.values())
        self._lock = threading.Lock()
        self._thread: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._stopping = False
        self._ids = itertools.count()
        self._open: dict[int, _Conn] = {}
        self._all: dict[int, _Conn] = {}
        self._forwards: list[tuple[Any, ...]] = []
        self._overshoot = _Overshoot()
        self._events: list[tuple[Any, ...]] = []

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> NetworkProxy:
        """Start listening; returns once the port is bound. Returns the proxy."""
        if self._server is not None:
            return self
        replace_previous(self)  # a rerun notebook cell stops the proxy its last run started
        thread = self._start_thread()
        try:
            thread.call(self._astart(), timeout=10)
        except OSError as exc:
            self._stop_thread()
            raise ServerError(f"cannot listen on {self._listen[0]}:{self._listen[1]}: {exc.strerror or exc}") from None
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread."""
        if self._thread is None:
            return
        if self._server is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):
                self._thread.call(self._astop(), timeout=10)
        self._stop_thread()

    def _start_thread(self) -> LoopThread:
        self._stopping = False
        self._thread = LoopThread("kit-network-proxy")
        self._thread.start()
        self._loop = self._thread.loop
        return self._thread

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.stop()
        self._thread = None
        self._loop = None
        self._server = None

    async def _astart(self) -> None:
        loop = asyncio.get_running_loop()
        self._snapshot = tuple(self._toxics.values())
        self._server = await loop.create_server(
            lambda: _Conn(self).client, self._listen[0], self._listen[1], reuse_address=True, backlog=1024
        )

    async def _astop(self) -> None:
        self._stopping = True
        if self._server is not None:
            # Stop accepting first, then let accepts already under way finish while the server
            # is still open: on 3.11 a transport made after Server.close() fails an assertion,
            # leaking its socket and leaving that client hanging. Finished, they see _stopping.
            loop = asyncio.get_running_loop()
            for sock in self._server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            self._server.close()
        for conn in list(self._open.values()):
            conn.shutdown("proxy stopped", mode="abort")
        for _ in range(3):  # let the transports' connection_lost callbacks run
            await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):  # 3.12+ waits for connections: bounded
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def __enter__(self) -> NetworkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> NetworkProxy:
        if self._server is None:
            thread = self._start_thread()
            try:
                await asyncio.wrap_future(thread.submit(self._astart()))
            except OSError as exc:
                self._stop_thread()
                raise ServerError(
                    f"cannot listen on {self._listen[0]}:{self._listen[1]}: {exc.strerror or exc}"
                ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._thread is not None and self._server is not None:
            with contextlib.suppress(RuntimeError):
                await asyncio.wrap_future(self._thread.submit(self._astop()))
        self._stop_thread()

    @property
    def running(self) -> bool:
        """True between start and stop."""
        return self._server is not None

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ServerError("the NetworkProxy is not running")
        return self._loop

    # -- addresses ------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the proxy listens on."""
        if self._server is None:
            raise ServerError("the NetworkProxy is not running; use it in a `with` block or call start()")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def url_for(self, target: Any) -> str:
        """The URL ``target`` points at, moved onto the proxy's host and port.

        ``target`` is a URL string (``server.url_for(scenario)``: its ``with_origin``
        keeps the scenario attached) or a scenario or preset name, when the upstream is a
        FaultServer (given as the object, or its address while it runs in this process).
        """
        if isinstance(target, str) and "://" in target:
            with_origin = getattr(target, "with_origin", None)
            if callable(with_origin):
                return with_origin(self.url)
            parts = urlsplit(target)
            return urlunsplit(parts._replace(netloc=urlsplit(self.url).netloc))
        server = self._upstream_obj if hasattr(self._upstream_obj, "url_for") else self._upstream_server()
        if server is not None:
            return self.url_for(server.url_for(target))
        raise ConfigError(
            "target", target, "a URL such as server.url_for(scenario), or pass upstream=server to resolve scenarios"
        )

    def _upstream_server(self) -> Any:
        """The FaultServer running in this process at the upstream address, if there is one."""
        for server in _registry.running_servers():
            try:
                if tuple(server.address) == tuple(self.upstream):
                    return server
            except KitError:  # stopped meanwhile
                continue
        return None

    # -- toxics ---------------------------------------------------------------------

    @property
    def toxics(self) -> tuple[Toxic, ...]:
        """The toxics in effect, in the order they were added."""
        return tuple(self._toxics.values())

    @property
    def network(self) -> Network:
        """The toxics in effect as a :class:`~kit.network.Network` (to store or replay)."""
        return Network(self.toxics, name=self._name)

    def set(self, **kwargs: Any) -> None:
        """Change shorthand toxics live: ``set(latency="500ms")``, ``set(bandwidth=None)``.

        Keywords left out keep their values; a group's main keyword set to ``None``
        removes that toxic. Applies to open connections at once.
        """
        with self._lock:
            built, removed = toxics_from_kwargs(self._toxics.values(), **kwargs)
            self._replace(built, removed)
        self._sync()

    def add(self, toxic: Toxic | Mapping[str, Any], *, replace: bool = False) -> Toxic:
        """Add a toxic (or its ``to_dict()``); ``replace=True`` replaces one of the same name."""
        toxic = _coerce_toxic(toxic)
        with self._lock:
            if toxic.name in self._toxics and not replace:
                raise ConfigError(
                    "name", toxic.name, "a name not in use: remove() it, pass replace=True, or give another name="
                )
            self._replace([toxic], [])
        self._sync()
        return toxic

    def remove(self, name: str) -> Toxic:
        """Remove the toxic called ``name``; returns it."""
        with self._lock:
            if name not in self._toxics:
                raise ConfigError.unknown("toxic name", name, self._toxics)
            toxic = self._toxics[name]
            self._replace([], [name])
        self._sync()
        return toxic

    def clear(self) -> None:
        """Remove every toxic: the direct path, from now on."""
        with self._lock:
            self._replace([], list(self._toxics))
        self._sync()

    def _replace(self, built: Iterable[Toxic], removed: Iterable[str]) -> None:
        toxics = dict(self._toxics)  # copy on write: the loop thread reads a snapshot
        for name in removed:
            toxics.pop(name, None)
        for toxic in built:
            toxics[toxic.name] = toxic
        self._toxics = toxics

    def _sync(self) -> None:
        """Apply the current toxics to open connections, on the loop, and wait for it."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            self._snapshot = tuple(self._toxics.values())
            return
        if threading.current_thread() is getattr(thread, "_thread", None):
            self._apply()
            return

        async def apply() -> None:
            self._apply()

        with contextlib.suppress(RuntimeError):
            thread.call(apply(), timeout=10)

    def _apply(self) -> None:
        self._snapshot = tuple(self._toxics.values())
        for conn in list(self._open.values()):
            conn.apply()

    # -- logs -----------------------------------------------------------------------

    def _event(self, row: tuple[Any, ...]) -> None:
        self._events.append(row)
        if self._on_event is not None:
            try:
                self._on_event(dict(zip(EVENT_COLUMNS, row, strict=True)))
            except Exception as exc:  # a broken callback must not break the proxy
                warnings.warn(f"NetworkProxy on_event callback failed: {exc!r}", stacklevel=1)

    @property
    def log(self) -> list[dict[str, Any]]:
        """Everything the proxy saw, in time order: forwards and connection events.

        Each dict has ``type`` (``"forward"`` or ``"event"``) and ``t_ns`` (when it
        happened: a forward's ``t_sent_ns``, or ``t_recv_ns`` if dropped), plus the
        columns of :meth:`forwards_df` or :meth:`events_df`; ``toxics`` is a tuple here.
        """
        rows = [{"type": "event", **dict(zip(EVENT_COLUMNS, e, strict=True))} for e in list(self._events)]
        for conn, direction, t_recv, t_sent, nbytes, toxics in list(self._forwards):
            rows.append(
                {
                    "type": "forward",
                    "t_ns": t_recv if t_sent is None else t_sent,
                    "conn": conn,
                    "direction": direction,
                    "t_recv_ns": t_recv,
                    "t_sent_ns": t_sent,
                    "nbytes": nbytes,
                    "delay_ns": None if t_sent is None else t_sent - t_recv,
                    "toxics": toxics,
                    "hit": bool(toxics),
                    "dropped": t_sent is None,
                }
            )
        rows.sort(key=lambda r: r["t_ns"])
        return rows

    def connection(self, conn: int) -> dict[str, Any]:
        """One connection's record by id (the columns of :meth:`connections_df`)."""
        try:
            return self._all[conn].record()
        except KeyError:
            raise ConfigError("conn", conn, "the id of a connection in connections()") from None

    def connections(self) -> list[dict[str, Any]]:
        """Every connection's record, open or closed (see :meth:`connections_df`)."""
        return [c.record() for c in list(self._all.values())]

    def clear_log(self) -> None:
        """Forget logged forwards, events and closed connections (ids keep counting)."""
        self._forwards.clear()
        self._events.clear()
        self._all = {i: c for i, c in list(self._all.items()) if not c.finished}

    def forwards_df(self) -> pd.DataFrame:
        """One row per forward (a write, or bytes dropped), on the kit's clock.

        Columns: ``conn`` (connection id, 0-based in accept order), ``direction``
        (``upstream`` client->server, ``downstream`` server->client), ``t_recv_ns``
        (when the proxy read the bytes), ``t_sent_ns`` (when it wrote them; missing if
        dropped), ``nbytes``, ``delay_ns`` (sent - received), ``toxics`` (the names of
        the toxics that applied, comma-separated), ``hit`` (any applied), ``dropped``.
        A chunk cut into pieces (slicer, bandwidth, stall) gives one row per piece,
        all with the chunk's ``t_recv_ns``.
        """
        import pandas as pd

        rows = list(self._forwards)
        df = pd.DataFrame(rows, columns=["conn", "direction", "t_recv_ns", "t_sent_ns", "nbytes", "toxics"])
        df["t_sent_ns"] = df["t_sent_ns"].astype("Int64")
        df["delay_ns"] = df["t_sent_ns"] - df["t_recv_ns"].astype("Int64")
        df["hit"] = df["toxics"].map(bool).astype(bool)
        df["toxics"] = df["toxics"].map(",".join).astype(str)
        df["dropped"] = df["t_sent_ns"].isna().astype(bool)
        return df[list(FORWARD_COLUMNS)]

    def events_df(self) -> pd.DataFrame:
        """One row per connection event.

        Columns: ``t_ns``, ``conn``, ``event``, ``direction`` (for per-direction events),
        ``detail``. Events: ``open``, ``down``, ``upstream_connected``,
        ``upstream_refused``, ``upstream_error``, ``eof`` (a side sent FIN; direction is
        the pipe it feeds), ``reset_received``, ``eof_sent`` (the proxy passed the FIN
        on), ``stall_start``, ``stall_end``, ``limit_data``, ``timeout``,
        ``reset_peer``, ``reset`` (the proxy sent an RST; detail names the side and
        why), ``error``, ``close`` (detail: the reason).
        """
        import pandas as pd

        return pd.DataFrame(list(self._events), columns=list(EVENT_COLUMNS))

    def connections_df(self) -> pd.DataFrame:
        """One row per connection.

        Columns: ``conn``, ``client`` (its host:port), ``upstream`` (``pending``,
        ``connected``, ``refused``, ``error``), ``t_open_ns``, ``t_upstream_ns`` (upstream
        connected), ``t_close_ns``, ``duration_s``, ``bytes_up``/``bytes_down``
        (forwarded client->server / server->client), ``received_up``/``received_down``
        (read by the proxy), ``dropped_up``/``dropped_down``, ``close_reason``
        (``client closed``, ``upstream closed``, ``client reset``, ``upstream reset``,
        ``upstream refused``, ``upstream error``, ``reset_peer``, ``timeout``,
        ``limit_data``, ``down``, ``proxy stopped``; missing while open), ``reset`` (the
        proxy sent an RST), ``toxics_hit`` and ``toxics_missed`` (names, comma-separated:
        which toxics' toxicity roll hit or missed this connection).
        """
        import pandas as pd

        df = pd.DataFrame(self.connections(), columns=list(CONNECTION_COLUMNS))
        for column in ("t_open_ns", "t_upstream_ns", "t_close_ns"):
            df[column] = df[column].astype("Int64")
        for column in ("toxics_hit", "toxics_missed"):
            df[column] = df[column].map(",".join).astype(str)
        return df

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        toxics = self.network.describe()
        return f"<NetworkProxy {where} -> {self.upstream[0]}:{self.upstream[1]} ({toxics})>"
