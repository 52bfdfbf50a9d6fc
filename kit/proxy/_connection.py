"""One proxied connection: its two sides and pipes, the toxicity rolls, timed toxics.

Which random draws a connection gets (toxicity rolls, jitter, slice sizes, loss) is
decided by its **key**. A kit client names each request's trial (``x-kit-trial``, the
trial's seed) and attempt (``x-kit-attempt``); the proxy reads them from the request
head it forwards (:mod:`kit.proxy._head`) and keys the connection by
``(proxy seed, trial, attempt)``: the place of the connection within its trial. A
replayed trial, alone on a fresh proxy, then meets the same draws as in the original
run, however many connections the proxy had accepted before. A connection that
carries the next trial (keep-alive) is re-keyed at its request head: fresh rolls,
draws, timers and byte counts. Other clients' connections are keyed by connection
order (``(proxy seed, connection id)``), decided at their first bytes.

Until its key is known (the first bytes), a connection has no toxic whose toxicity is
between 0 and 1: such a toxic cannot act before the request that names the trial.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import sys
from typing import Any

from .._clock import now_ns, ns_to_s
from ..network import Down, ResetPeer, Timeout, Toxic
from ._head import Head
from ._pipe import _EOF, _RST, _Pipe, _Side
from ._roles import Proxy


def _rst(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST: ``SO_LINGER`` on with a zero timeout, then close."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # struct linger is two ints on POSIX, two u_shorts on Windows
        linger = struct.pack("HH", 1, 0) if sys.platform == "win32" else struct.pack("ii", 1, 0)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    transport.abort()  # type: ignore[attr-defined]


class _Conn:
    """One proxied connection: two sides, two pipes, the toxicity rolls and timers."""

    def __init__(self, proxy: Proxy) -> None:
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
        self.request_id: str | None = None  # the request this connection is carrying now
        self.requests: list[str] = []  # the kit request ids it carried, in order
        self.key = f"{proxy.seed}:{self.id}"  # what its random draws are keyed by (see the module doc)
        self.trial: tuple[str, str] | None = None  # (trial, attempt) it serves, from the request head
        self.trials: list[str] = []  # every "trial:attempt" it served, in order
        self.decided = False  # whether the key is known, so fractional toxicity may be rolled

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
        """Roll (once per connection key and toxic name) whether ``toxic`` applies here."""
        if not self.decided and 0 < toxic.toxicity < 1:
            return False  # rolled once the key is known
        roll = self.rolls.get(toxic.name)
        if roll is None:
            roll = self.rolls[toxic.name] = random.Random(f"{self.key}:{toxic.name}").random()
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
        if not self.decided:  # it ends before any bytes said who it was: roll for the record
            self.decided = True
            for toxic in self.proxy._snapshot:
                self.applies(toxic)
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

    # -- what the client's requests say (kit headers; see _head) ---------------------

    def on_head(self, head: Head) -> None:
        """A request head went by: what follows on this connection belongs to it."""
        self.request_id = head.request_id
        if head.request_id is not None:
            self.requests.append(head.request_id)
        if head.trial is not None:
            trial = (head.trial, head.attempt or "1")
            if trial != self.trial:
                self._rekey(trial)

    def _rekey(self, trial: tuple[str, str]) -> None:
        """Key the connection by the trial and attempt its next request belongs to."""
        self.trial = trial
        self.trials.append(":".join(trial))
        self.key = f"{self.proxy.seed}:{trial[0]}:{trial[1]}"
        self.rolls.clear()
        for pipe in (self.up, self.down):
            pipe.rekey()
        for handle in self.timers.values():  # timed toxics count from this request
            handle.cancel()
        self.timers.clear()
        self.decided = False
        self.decide()

    def decide(self) -> None:
        """The key is known: roll what waited for it and apply it."""
        self.decided = True
        if self.closing:
            return
        down = [t for t in self.proxy._snapshot if isinstance(t, Down) and self.applies(t)]
        if down:
            self.event("down", None, down[0].name)
            self.shutdown("down", mode="reset")
            return
        self.apply()

    def note_late(self, late_ns: int) -> None:
        """A forward went out ``late_ns`` after its planned time: keep the request's worst."""
        rid = self.request_id
        if rid is not None:
            worst = self.proxy._late
            if late_ns > worst.get(rid, -(1 << 62)):
                worst[rid] = late_ns
                dirty = self.proxy._late_dirty
                if dirty is not None:
                    dirty.add(rid)

    # -- logging --------------------------------------------------------------------

    def event(self, name: str, direction: str | None, detail: str = "") -> None:
        self.proxy._event((now_ns(), self.id, name, direction, detail))

    def record(self) -> dict[str, Any]:
        duration = None
        if self.t_open is not None and self.t_close is not None:
            duration = ns_to_s(self.t_close - self.t_open)
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
            "requests": tuple(self.requests),
            "trials": tuple(self.trials),
        }
