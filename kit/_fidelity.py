"""How much the kit itself distorted a measurement: its own error bar, per call.

Every timestamp the kit reports passes through three places the kit owns, and each can
be late for reasons of its own rather than of the scenario or network under study:

- the **server** writes late (its log has each write's scheduled and actual time);
- a **proxy** forwards late (its log has each forward's planned and actual time);
- the **client's event loop** runs late: a socket was readable but the callback that
  stamps the chunk ran later, because the loop was busy with other trials (or blocked).

The first two are logged where they happen. The third is what :class:`LagMonitor`
measures: a heartbeat timer on the loop, every :data:`PERIOD_S`, that records how late
it fired. A heartbeat due at ``d`` that fires at ``d + L`` says the loop could not run
callbacks from ``d`` until ``d + L``: any chunk that arrived in that stretch was stamped
up to ``L`` late.

:class:`Fidelity` holds the three figures for one call (``trace.fidelity``);
:class:`FidelityBudget` says how much the kit may add (default: 2 ms, p99 over a run's
trials). Per call, every figure is a **maximum** (the worst the kit added to any
timestamp of the call), so a trial within budget is within it everywhere.
"""

from __future__ import annotations

import asyncio
import selectors
import weakref
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._clock import now_ns, ns_to_s
from ._errors import ConfigError

__all__ = ["PERIOD_S", "Fidelity", "FidelityBudget", "LagMonitor", "server_lateness"]

PERIOD_S = 0.0005  # heartbeat period: a block of 1 ms is always seen as >= 0.5 ms of lateness
RING = 1 << 17  # samples kept per loop: ~65 s of history at 2,000 heartbeats a second

# server log kinds logged after a deliberate flush or by the peer: not the server's timing
_SERVER_UNTIMED = frozenset({"close", "reset", "client_closed", "accept", "request", "error"})


@dataclass(frozen=True)
class FidelityBudget:
    """How much the kit may add to a timestamp: ``added_s`` at quantile ``quantile``.

    A call is within budget when its :attr:`Fidelity.kit_added_s` (its worst) is at most
    ``added_s``; a run is within budget when the ``quantile`` of its trials' figures is.
    """

    added_s: float = 0.002
    quantile: float = 0.99

    def __post_init__(self) -> None:
        if isinstance(self.added_s, bool) or not isinstance(self.added_s, int | float) or not self.added_s >= 0:
            raise ConfigError("budget.added_s", self.added_s, "a number of seconds >= 0, such as 0.002")
        if isinstance(self.quantile, bool) or not isinstance(self.quantile, int | float) or not 0 < self.quantile <= 1:
            raise ConfigError("budget.quantile", self.quantile, "a fraction in (0, 1], such as 0.99")


DEFAULT_BUDGET = FidelityBudget()


@dataclass(frozen=True)
class Fidelity:
    """The kit's own lateness during one call, from each vantage it owns (seconds).

    ``server_late_s``: the latest of the call's server writes against their schedule;
    ``proxy_late_s``: the latest of the call's proxy forwards against what the toxics
    planned (None without a proxy); ``client_lag_s``: the most the client's event loop
    ran late while the call was in flight (see :class:`LagMonitor`). None: that vantage
    was not there (no proxy, a server in another process whose log never came, ...).
    """

    server_late_s: float | None = None
    proxy_late_s: float | None = None
    client_lag_s: float | None = None

    @property
    def kit_added_s(self) -> float | None:
        """The worst of the three: how late the kit may have made any timestamp of the call."""
        values = [v for v in (self.server_late_s, self.proxy_late_s, self.client_lag_s) if v is not None]
        return max(values) if values else None

    def within(self, budget_s: float | FidelityBudget = DEFAULT_BUDGET) -> bool:
        """True if the kit added at most ``budget_s`` (seconds, or a budget) to every timestamp.

        A call with no figure at all is within budget: there is nothing it says against it.
        """
        limit = budget_s.added_s if isinstance(budget_s, FidelityBudget) else budget_s
        added = self.kit_added_s
        return added is None or added <= limit

    def to_dict(self) -> dict[str, float | None]:
        return {
            "server_late_s": self.server_late_s,
            "proxy_late_s": self.proxy_late_s,
            "client_lag_s": self.client_lag_s,
        }


def server_lateness(entries: Iterable[Any]) -> float | None:
    """The latest of a server log's writes against their schedule (s; None: no timed write).

    Entries logged after a deliberate flush (``close``, ``reset``) or when the peer acted
    (``client_closed``, ``request``) are not the server's timing and are left out; an
    early write counts as 0.
    """
    late = None
    for e in entries:
        if e.kind in _SERVER_UNTIMED:
            continue
        d = e.t_ns - e.scheduled_ns
        late = d if late is None or d > late else late
    return None if late is None else ns_to_s(max(0, late))


# -- the client's loop ---------------------------------------------------------------

_MONITORS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LagMonitor] = weakref.WeakKeyDictionary()


def _timer_granularity_ns(loop: asyncio.AbstractEventLoop) -> int:
    """How much a timer on ``loop`` may fire late by design (timeout rounding), in ns.

    asyncio's epoll and poll selectors round every timeout up to the next millisecond;
    the kit's precise loop (:mod:`kit._loop`), kqueue and select do not. Lateness under
    this granularity is not the loop being busy, so it is not counted as lag.
    """
    from . import _loop

    selector = getattr(loop, "_selector", None)
    precise = tuple(
        c
        for c in (
            getattr(_loop, "_PreciseEpollSelector", None),
            selectors.SelectSelector,
            getattr(selectors, "KqueueSelector", None),
        )
        if c is not None
    )
    return 0 if selector is not None and isinstance(selector, precise) else 1_000_000


class _Ring:
    """A sequence view of a ring buffer, oldest first (so ``bisect`` works on it)."""

    __slots__ = ("_data", "_first", "_len", "_size")

    def __init__(self, data: array, first: int, length: int) -> None:
        self._data, self._first, self._len, self._size = data, first, length, len(data)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, k: int) -> int:
        return self._data[(self._first + k) % self._size]


class LagMonitor:
    """A heartbeat on one event loop recording how late it runs (the client's own lag).

    Every ``period`` seconds a timer fires and records ``(t_ns, late)``: when it ran and
    how long after its due time. :meth:`for_running_loop` gives the one monitor of the
    current loop (started on first use, stopped when the loop closes); a call asks
    :meth:`lag_at` how late its own stamps may be (:meth:`lag_between`: a window's worst). Samples live in a fixed ring (~65 s at the
    default period), so memory stays bounded however long the loop runs. Cost: one
    timer callback per period; on an idle loop each beat is a wake-up of its own (about
    20 us measured on a loaded 2-vCPU machine: ~5% of a core), on a busy loop it rides
    on iterations the loop runs anyway (benchmarks/README.md).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = PERIOD_S, size: int = RING) -> None:
        self._loop_ref = weakref.ref(loop)  # the registry is keyed by the loop: never hold it strongly
        self.period_ns = int(period * 1e9)
        self.granularity_ns = _timer_granularity_ns(loop)
        self._t = array("q", bytes(8 * size))
        self._late = array("q", bytes(8 * size))
        self._size = size
        self._n = 0  # samples recorded so far (the ring holds the last `size`)
        self._due = 0
        self._handle: asyncio.TimerHandle | None = None
        self.started_ns: int | None = None

    @classmethod
    def for_running_loop(cls) -> LagMonitor:
        """The monitor of the running loop, started on first use (call from a coroutine)."""
        loop = asyncio.get_running_loop()
        monitor = _MONITORS.get(loop)
        if monitor is None:
            monitor = _MONITORS[loop] = cls(loop)
            monitor.start()
        return monitor

    def start(self) -> None:
        """Start the heartbeat (from the loop's thread)."""
        if self._handle is not None:
            return
        self.started_ns = now_ns()
        self._arm(self.started_ns)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def _arm(self, t: int) -> None:
        loop = self._loop_ref()
        if loop is None or loop.is_closed():
            self._handle = None
            return
        self._due = t + self.period_ns
        self._handle = loop.call_later(ns_to_s(self.period_ns), self._beat)

    def _beat(self) -> None:
        t = now_ns()
        late = t - self._due - self.granularity_ns
        i = self._n % self._size
        self._t[i] = t
        self._late[i] = late if late > 0 else 0
        self._n += 1
        self._arm(t)

    # -- queries ---------------------------------------------------------------------

    def _ordered(self) -> tuple[_Ring, _Ring]:
        """The samples held, oldest first (views on the ring, no copy)."""
        n, size = self._n, self._size
        held, first = min(n, size), (n % size if n > size else 0)
        return _Ring(self._t, first, held), _Ring(self._late, first, held)

    def samples_between(self, start_ns: int, end_ns: int) -> list[tuple[int, float]]:
        """The heartbeats that ran in ``[start_ns, end_ns]``: ``(t_ns, late_s)`` pairs."""
        ts, lates = self._ordered()
        lo, hi = bisect_left(ts, start_ns), bisect_right(ts, end_ns)
        return [(ts[k], ns_to_s(lates[k])) for k in range(lo, hi)]

    def pending_late_ns(self) -> int:
        """How late the heartbeat due now already is (0 if not yet due): lag still in progress."""
        if self._handle is None:
            return 0
        return max(0, now_ns() - self._due - self.granularity_ns)

    def lag_between(self, start_ns: int, end_ns: int | None = None) -> float:
        """The most the loop ran late during ``[start_ns, end_ns]``, in seconds (a maximum).

        A heartbeat that ran at ``t``, ``L`` late, means the loop was busy from ``t - L``
        to ``t``; the part of that stretch inside the window counts (a heartbeat just
        after the window still reports a stretch that began inside it). Asked from the
        loop itself while the window is open (``end_ns`` None: now), a heartbeat that is
        due but has not run yet counts too, so a block that just ended is not missed.
        """
        live = end_ns is None
        end = now_ns() if live else end_ns
        worst = 0
        ts, lates = self._ordered()
        for k in range(bisect_left(ts, start_ns), len(ts)):
            t, late = ts[k], lates[k]
            if t - late > end:
                break  # later stretches began after the window (t grows with k)
            worst = max(worst, min(late, t - start_ns))
        if live:
            pending = self.pending_late_ns()
            worst = max(worst, min(pending, end - start_ns))
        return ns_to_s(worst)

    def typical_lag(self, start_ns: int, end_ns: int, quantile: float = 0.9) -> float:
        """The ``quantile`` of the heartbeats' lateness in ``[start_ns, end_ns]``, in seconds.

        Where :meth:`lag_between` gives the worst stretch (one preemption of the process
        by a shared machine is enough), this says how late the loop *usually* ran: what
        a loop busy with too many trials raises and a rare hiccup does not. The runner's
        adaptive concurrency steers on it (:mod:`kit.experiment._scheduler`).
        """
        ts, lates = self._ordered()
        lo, hi = bisect_left(ts, start_ns), bisect_right(ts, end_ns)
        if lo >= hi:
            return self.pending_late_ns() / 1e9
        window = sorted(lates[k] for k in range(lo, hi))
        return window[min(len(window) - 1, int(quantile * len(window)))] / 1e9

    def lag_at(self, stamps: Iterable[int], start_ns: int, end_ns: int) -> float:
        """The most any of ``stamps`` (ns, taken on this loop during ``[start_ns, end_ns]``)
        may have been taken late because the loop was busy, in seconds (a maximum).

        A heartbeat due at ``d`` that ran at ``f`` means the loop ran no callback from
        ``d`` to ``f``: a chunk that arrived then was seen by the loop's next poll and
        stamped up to ``stamp - d`` after it arrived. The loop works such a backlog off
        over the next iteration or two (a socket's callback, then the task it wakes), so
        a stamp counts against a late beat until the beat after it has run, if that one
        was late too (the loop still catching up), else until the next beat was due.
        Stamps outside every such window were taken by a loop that had just proved it
        was free: late by less than one period, or one iteration of a busy loop. Unlike
        :meth:`lag_between`, a stall between two stamps (the loop blocked while the call
        was waiting anyway) distorts no figure and is not counted.
        """
        late = self.stamp_lags(stamps, start_ns, end_ns)
        return max(late) / 1e9 if late else 0.0

    def stamp_lags(self, stamps: Iterable[int], start_ns: int, end_ns: int) -> list[int]:
        """How late each of ``stamps`` may have been taken (ns; sorted by stamp), by the rule
        of :meth:`lag_at` (which is their maximum)."""
        marks = sorted(stamps)
        late_of = [0] * len(marks)
        if not marks:
            return late_of
        reach = self.period_ns  # beats up to one period late are on time (a wake-up costs microseconds)
        after = self.period_ns + self.granularity_ns  # the most the next beat may come after one, on time
        ts, lates = self._ordered()
        n = len(ts)
        for k in range(bisect_left(ts, start_ns), n):
            f, late = ts[k], lates[k]
            due = f - late
            if due > end_ns:
                break  # later beats fell due after the call ended (t grows with k)
            if late <= reach:
                continue
            until = ts[k + 1] if k + 1 < n and lates[k + 1] > reach else f + after
            began = max(due, start_ns)
            for m in range(bisect_left(marks, began), bisect_right(marks, until)):
                late_of[m] = max(late_of[m], marks[m] - began)
        pending = self.pending_late_ns()  # asked from the loop: a stretch still in progress
        if pending:
            began = max(now_ns() - pending, start_ns)
            for m in range(bisect_left(marks, began), len(marks)):
                late_of[m] = max(late_of[m], marks[m] - began)
        return late_of

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LagMonitor {state} period={self.period_ns / 1e6:g}ms samples={self._n}>"
