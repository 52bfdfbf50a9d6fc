"""Running trials on one event loop: staggered starts, adaptive concurrency, fidelity.

This is what a worker process does with its share of an experiment (and what the
driver does itself when told to, e.g. with ``server=``):

- **Staggered (open-loop) starts.** A new trial starts when a slot is free *and* the
  pacing clock allows it: starts are spaced by ``typical trial duration / cap``, so
  trials spread evenly over time instead of starting in synchronized waves whose
  connects and headers queue behind each other on the loop.
- **Adaptive concurrency.** :class:`Concurrency` steers on the finished trials' own
  stamps (the budget's measure: at most 1% of them later than the budget): the first
  trials run two at a time and show the machine's own share; the cap then grows while
  each level's trials keep within the budget (or twice a machine's share that already
  exceeds it) and shrinks by a third when they do not. The loop's typical lag (the 90th percentile of a heartbeat's lateness,
  :meth:`kit._fidelity.LagMonitor.typical_lag`) in short windows brakes a saturated
  loop before any trial of a new level has ended. ``settled`` is the cap the run held
  in its second half.
- **Fidelity per trial.** Each trial's record carries the kit's own distortion while it
  was in flight (server lateness, proxy lateness, client loop lag) and whether it was
  within the budget.

A worker process runs these through :func:`kit.experiment._worker.run_chunk`; the
driver's own loop runs them for ``run(server=...)`` and ``run(workers=0)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from .. import _fidelity
from .._clock import now_ns, ns_to_s

__all__ = ["DEFAULT_BUDGET", "Concurrency", "run_trials"]

DEFAULT_BUDGET = _fidelity.DEFAULT_BUDGET.added_s  # s the kit may add to any timestamp (p99)
WINDOW = 0.1  # s between concurrency decisions
START_CAP = 2  # trials at once until the first EVIDENCE trials have shown the machine's floor
EVIDENCE = 6  # finished trials of one level before the cap moves
WARM = 2  # a loop's first trials, not counted in its floor
LATE_SHARE = 0.01  # the budget is a p99: at most 1% of stamps later than it
MAX_CAP = 256  # per event loop; beyond this a 2-core machine is far outside any budget
MIN_SPACING = 0.001  # s between two trial starts on one loop


class Concurrency:
    """How many trials one event loop runs at once: fixed, or adapted to the trials' lag.

    ``fixed``: a number of trials, or None (adaptive). ``budget``: the most the kit may
    add to a timestamp (s). ``limit``: never more than this.

    Adaptive, it steers on what the budget is about: each finished trial's client lag
    (:meth:`finished`; the most the loop delayed any of its stamps,
    :meth:`kit._fidelity.LagMonitor.lag_at`). The first trials run ``START_CAP`` at a
    time; after ``WARM`` trials, theirs are the machine's own figures (``floor``: their
    median lag; ``floor_share``: the share of their stamps later than the budget; a
    shared machine delays some stamps whatever the kit does). Once ``EVIDENCE`` trials
    started at the current cap have finished, the cap grows (doubling at first, then by
    a quarter) if at most :attr:`bound` of their stamps were later than the budget (1%:
    the budget is a p99 over timestamps; or twice the machine's own share where that
    is higher), else (twice in a row, or far over) shrinks by a third. Growing needs evidence from
    the new level, so it never runs ahead of what the trials showed; :meth:`observe`
    adds a fast brake for a loop that is late at most heartbeats (saturated) before any
    trial of the new level has ended. :attr:`attainable` says whether the machine alone
    kept within half the budget.
    """

    def __init__(self, fixed: int | None = None, budget: float = DEFAULT_BUDGET, limit: int = MAX_CAP) -> None:
        self.fixed = fixed
        self.budget = budget
        self.limit = max(1, limit)
        self.cap = min(fixed if fixed is not None else START_CAP, self.limit)
        self._slow_start = True
        self._over = False  # the last window was over the brake's limit
        self._first: list[tuple[float, float]] = []  # (lag, share) of the first trials (at START_CAP)
        self._level: list[float] = []  # shares of late stamps of trials started at the current cap
        self._strike = False  # the last level's verdict was "over"
        self.samples: list[int] = []  # the cap in each window
        self.lags: list[float] = []  # the loop's typical lag in each window
        self.trial_lags: list[float] = []  # every finished trial's client lag

    @property
    def floor(self) -> float:
        """The median client lag (s) of the first trials, run ``START_CAP`` at a time: the machine's."""
        return statistics.median(lag for lag, _ in self._first) if self._first else 0.0

    @property
    def floor_share(self) -> float:
        """The share of the first trials' stamps later than the budget: the machine's."""
        return statistics.fmean(share for _, share in self._first) if self._first else 0.0

    @property
    def attainable(self) -> bool:
        """False if the machine alone (nearly idle loop) lags more than half the budget."""
        return self.floor <= self.budget / 2

    @property
    def bound(self) -> float:
        """The share of stamps over budget the cap keeps to: 1% (the budget is a p99), or
        twice the machine's own share (plus 0.5%) where that is higher."""
        return max(LATE_SHARE, 2 * self.floor_share + LATE_SHARE / 2)

    def finished(self, lag: float, cap: int, share: float | None = None) -> None:
        """A trial started when the cap was ``cap`` ended: its client lag ``lag`` (s, its
        worst stamp) and ``share``, the part of its stamps later than the budget (default:
        all of them if ``lag`` is over it, else none)."""
        self.trial_lags.append(lag)
        if self.fixed is not None:
            return
        if share is None:
            share = 1.0 if lag > self.budget else 0.0
        # the floor: the first trials at START_CAP, after a new loop's first (its one-off costs)
        if len(self._first) < EVIDENCE and cap <= START_CAP and len(self.trial_lags) > WARM:
            self._first.append((lag, share))
        if cap != self.cap:
            return  # evidence of another level
        self._level.append(share)
        if len(self._level) < EVIDENCE or len(self._first) < EVIDENCE:
            return
        share = statistics.fmean(self._level)
        if share <= self.bound:
            grown = self.cap * 2 if self._slow_start else self.cap + max(1, self.cap // 4)
            self.cap = min(self.limit, MAX_CAP, grown)
            self._strike = False
        elif self._strike or share > 2 * self.bound:
            # over twice in a row, or far over: six trials on a shared machine are a small
            # sample, and one unlucky level is no reason to give up a third of the rate
            self.cap = max(1, math.floor(self.cap * 2 / 3))
            self._slow_start = False
            self._strike = False
        else:
            self._strike = True
        self._level = []

    def observe(self, lag: float, in_flight: int = 0) -> None:
        """One window passed with typical loop lag ``lag`` (s) and at most ``in_flight``
        trials in flight."""
        self.lags.append(lag)
        if self.fixed is None:
            brake = max(self.budget, 2 * self.floor)
            if lag > brake and (self._over or lag > 4 * brake) and in_flight > START_CAP:
                # saturated: most heartbeats late, two windows in a row or one far over
                self.cap = max(START_CAP, math.floor(self.cap * 2 / 3))
                self._slow_start = False
                self._level = []
            self._over = lag > brake
        self.samples.append(self.cap)

    @property
    def settled(self) -> int:
        """The cap held over the second half of the run so far (median of its windows)."""
        if not self.samples:
            return self.cap
        return int(statistics.median_low(self.samples[len(self.samples) // 2 :]))


async def run_trials(
    plan: Sequence[tuple[Any, int]],
    urls: Mapping[int, Any],
    *,
    seed_of: Callable[[Any, int], int],
    record: Callable[[Any, Any, int, int], Any],
    on_record: Callable[[Any], None],
    concurrency: Concurrency,
    headers: Mapping[str, str] | None = None,
    server_isolated: bool = True,
    stop: Callable[[], bool] = lambda: False,
    warm_url: str | None = None,
    on_window: Callable[[Concurrency], None] | None = None,
) -> bool:
    """Run ``plan`` (``(cell, trial)`` pairs) on the running loop; returns False if stopped.

    ``record(trace, cell, trial, seed)`` makes a trial's record; each record goes
    to ``on_record`` as its trial finishes. Trials in flight when ``stop()`` turns true
    (or when the task is cancelled) are dropped, not recorded.
    """
    from .._fidelity import LagMonitor
    from ..client import _stamps, astream, connection_in_doubt

    if warm_url:
        await _warm_up(warm_url)
    monitor = LagMonitor.for_running_loop()
    queue = deque(plan)
    idle: list[httpx.AsyncClient] = []
    clients: list[httpx.AsyncClient] = []
    retiring: set[asyncio.Future[None]] = set()  # clients being closed after an interrupted trial
    running: set[asyncio.Task[None]] = set()
    durations: deque[float] = deque(maxlen=32)

    async def one(cell: Any, t: int, client: httpx.AsyncClient) -> None:
        tseed = seed_of(cell, t)
        cap = concurrency.cap
        trace = None
        try:
            trace = await astream(
                urls[cell.index], policy=cell.policy, client=client, trial=str(tseed), seed=tseed, headers=headers
            )
            if server_isolated:  # its log arrives a moment after the client saw the end
                for a in trace.attempts:
                    await a.await_server_log()
        finally:
            if trace is not None and not any(connection_in_doubt(a) for a in trace.attempts):
                idle.append(client)
            else:  # its pool may wait on the broken request forever (kit.client.connection_in_doubt)
                clients.remove(client)
                retiring.add(asyncio.ensure_future(client.aclose()))
        durations.append(ns_to_s(trace.end_ns - trace.start_ns))
        late = monitor.stamp_lags(_stamps(trace), trace.start_ns, trace.end_ns or trace.start_ns)
        over = sum(1 for d in late if d > concurrency.budget * 1e9)
        concurrency.finished(trace.client_lag_s or 0.0, cap, over / len(late) if late else 0.0)
        on_record(record(trace, cell, t, tseed))

    next_start = 0
    window_start = now_ns()
    peak = 0
    try:
        while queue or running:
            if stop():
                return False
            t = now_ns()
            while queue and len(running) < concurrency.cap and t >= next_start:
                cell, trial = queue.popleft()
                if not idle:
                    client = _client()
                    clients.append(client)
                    idle.append(client)
                task = asyncio.ensure_future(one(cell, trial, idle.pop()))
                running.add(task)
                typical = statistics.median(durations) if durations else 0.0
                next_start = t + int(max(MIN_SPACING, typical / max(concurrency.cap, 1)) * 1e9)
                t = now_ns()
            peak = max(peak, len(running))
            if t - window_start >= WINDOW * 1e9:
                concurrency.observe(monitor.typical_lag(window_start, t), peak)
                if on_window is not None:
                    on_window(concurrency)
                window_start, peak = t, len(running)
            wake = ns_to_s(min(next_start - t, WINDOW * 1e9)) if queue and len(running) < concurrency.cap else WINDOW
            if running:
                done, _ = await asyncio.wait(running, timeout=max(wake, 0.0005), return_when=asyncio.FIRST_COMPLETED)
                running -= done
                for task in done:
                    task.result()  # a bug in the kit surfaces; faults are data and never raise
            else:
                await asyncio.sleep(max(wake, 0.0005))
        return True
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        for c in clients:
            with contextlib.suppress(Exception):
                await c.aclose()
        if retiring:
            await asyncio.gather(*retiring, return_exceptions=True)


_WARM: set[str] = set()


async def _warm_up(url: str) -> None:
    """One request to the fault server (never through a proxy, whose draws it would
    consume) before the clock starts: the first request of a process imports httpcore's
    and anyio's connection code (tens to hundreds of ms on the loop), a one-off cost
    that is no trial's latency."""
    if url in _WARM:
        return
    async with _client() as client:
        with contextlib.suppress(httpx.HTTPError):
            await client.get(url)
    _WARM.add(url)


def _client() -> httpx.AsyncClient:
    """One single-connection client per slot.

    Why not one shared pool: httpcore's pool re-scans every connection for every queued
    request (O(n^2) per assignment, with a socket poll per idle check); at 100
    connections that ate two thirds of the client's CPU. A slot keeps its own keep-alive
    connection, as one concurrent user of an API would.
    """
    from ..client import _ssl_context

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits, trust_env=False, verify=_ssl_context())
