"""The proxy's data path: one socket side, one direction's pipe with its toxic planner.

Each connection has two pipes, ``upstream`` (client -> server) and ``downstream``
(server -> client). Sockets are asyncio protocols reading 256 KiB at a time; data is
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
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque

from .._clock import now_ns, ns_to_s
from ..network import Bandwidth, Latency, LimitData, Loss, Slicer, SlowClose, Stall, Timeout, Toxic
from ._head import RequestHeads
from ._roles import Connection

READ_SIZE = 256 * 1024
HIGH_WATER = 4 * 1024 * 1024  # bytes queued in one pipe before reading from its source pauses
HEAD_SCAN = 64 * 1024  # bytes searched for the end of the first HTTP header block (Stall(body=True))
BANDWIDTH_QUANTUM = 0.010  # seconds of transmission per piece under a Bandwidth toxic

_EOF = "eof"  # queue markers: the source closed its side (FIN) ...
_RST = "rst"  # ... or reset the connection


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

    def __init__(self, conn: Connection, role: str) -> None:
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

    def __init__(self, conn: Connection, direction: str, src: _Side, dst: _Side) -> None:
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
        self.base = 0  # `sent` when the connection was last keyed: per-trial byte counts start here
        self.dropped = 0
        self.link_free = 0  # when the bandwidth-limited link finishes its current piece
        self.stalls: dict[Toxic, int] = {}  # stall toxic -> when it started on this pipe
        self.head_end: int | None = None  # offset just past the first HTTP header block (Stall(body=True))
        self._head_tail = b""
        self._head_from = 0  # where the current response's header block starts (rekey moves it)
        self._stalled = False
        self._rngs: dict[str, random.Random] = {}
        # client -> server bytes name their requests (kit headers): see _head
        self.heads = RequestHeads() if direction == "upstream" else None
        self._wake: asyncio.Future[bool] | None = None
        self._writable: asyncio.Future[bool] | None = None

    # -- input (called from the source's protocol callbacks) --------------------------

    def feed(self, data: bytes) -> None:
        t = now_ns()
        n = len(data)
        if self.heads is not None and not self.heads.done:
            for head in self.heads.feed(data):
                self.conn.on_head(head)
        if not self.conn.decided and not (self.heads is not None and self.heads.pending):
            self.conn.decide()  # no kit trial named (yet): draws follow connection order
        if self.head_end is None and self.received - self._head_from < HEAD_SCAN:
            seen = self._head_tail + data
            i = seen.find(b"\r\n\r\n")
            if i >= 0:
                self.head_end = self.received - len(self._head_tail) + i + 4
            self._head_tail = seen[-3:]
        self.received += n
        if self.task is None and not self.active:
            # fast path: nothing applies and nothing is queued ahead of this chunk
            transport = self.dst.transport
            if transport is not None and not self.dst.lost and not transport.is_closing():
                transport.write(data)
                self.sent += n
                t_sent = now_ns()
                self.log.append((self.cid, self.direction, t, t_sent, n, (), t))  # planned: at once
                self.conn.note_late(t_sent - t)
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

    def rekey(self) -> None:
        """The connection now serves another trial: fresh draws and byte counts."""
        self._rngs.clear()
        self.base = self.sent
        self.head_end, self._head_tail, self._head_from = None, b"", self.received
        self.stalls.clear()
        self._stalled = False

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
                    allowed = toxic.bytes - (self.sent - self.base)
                    if allowed <= 0:
                        self._drop(n - offset, item.t_recv)
                        self.conn.event("limit_data", self.direction, f"{toxic.name}: {self.sent - self.base} bytes")
                        self.conn.shutdown("limit_data")
                        return
                    size = min(size, allowed)
                elif isinstance(toxic, Stall) and toxic not in self.stalls and self._stall_at(toxic) > self.sent:
                    size = min(size, self._stall_at(toxic) - self.sent)  # stop exactly at the boundary
            if stalled_until is None or stalled_until > now:
                self._stalled = True
                woken = await self._sleep_until(stalled_until)
                # what follows a stall is planned from its end (or from the change that ended it)
                ready = max(ready, now_ns() if woken or stalled_until is None else stalled_until)
                continue  # re-plan: the stall may have ended or been removed
            if self._stalled:
                self._stalled = False
                self.conn.event("stall_end", self.direction, f"after {self.sent - self.base} bytes")
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
                ready = max(ready, now_ns())  # the destination held us back, not the plan
                continue
            self.dst.transport.write(view[offset : offset + size])  # type: ignore[union-attr]
            t_sent = now_ns()
            offset += size
            slice_left -= size
            self.sent += size
            self.log.append((self.cid, self.direction, item.t_recv, t_sent, size, self.names, target))
            self.conn.note_late(t_sent - target)
            if rate:
                self.link_free = target
            ready = target
            self._arm_stalls(active, t_sent)
            for toxic in active:
                if isinstance(toxic, LimitData) and self.sent - self.base >= toxic.bytes:
                    self._drop(n - offset, item.t_recv)
                    self.conn.event("limit_data", self.direction, f"{toxic.name}: {self.sent - self.base} bytes")
                    self.conn.shutdown("limit_data")
                    return

    def _stall_at(self, toxic: Stall) -> int | float:
        """The forwarded-byte count at which ``toxic`` starts (body offsets need the header end)."""
        if not toxic.body:
            return self.base + toxic.after_bytes
        return math.inf if self.head_end is None else max(self.head_end, self.base) + toxic.after_bytes

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
            if isinstance(toxic, Stall) and toxic not in self.stalls and self.sent >= self._stall_at(toxic):
                self.stalls[toxic] = t
                self.conn.event("stall_start", self.direction, f"{toxic.name}: after {self.sent - self.base} bytes")

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
            handle = self.loop.call_later(ns_to_s(delay - overshoot.ns), _resolve, fut, False)
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
            seed = f"{self.conn.key}:{toxic.name}:{self.direction}"
            rng = self._rngs[toxic.name] = random.Random(seed)
        return rng

    def _drop(self, n: int, t_recv: int) -> None:
        self.dropped += n
        self.log.append((self.cid, self.direction, t_recv, None, n, self.names, None))
