"""Running trials on one event loop: staggered starts, adaptive concurrency, fidelity.

This is what a worker process does with its share of an experiment (and what the
driver does itself when told to, e.g. with ``server=``):

- **Staggered (open-loop) starts.** A new trial starts when a slot is free *and* the
  pacing clock allows it: starts are spaced by ``typical trial duration / cap``, so
  trials spread evenly over time instead of starting in synchronized waves whose
  connects and headers queue behind each other on the loop.
- **Adaptive concurrency.** :class:`Concurrency` watches the loop's lag (a heartbeat's
  lateness, :class:`kit._fidelity.LagMonitor`) in short windows: while the lag stays
  well inside the fidelity budget and the cap is what limits, the cap grows (doubling
  at first, then one at a time); when the lag exceeds the budget it shrinks by a
  third. ``settled`` is the cap the run held in its second half.
- **Fidelity per trial.** Each trial's record carries the kit's own distortion while it
  was in flight (server lateness, proxy lateness, client loop lag) and whether it was
  within the budget.

:func:`run_chunk` is the picklable task an executor runs: it keeps one isolated fault
server and one proxy per network alive in its process for the next chunk.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import math
import os
import socket
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from . import _fidelity
from ._clock import now_ns

__all__ = ["DEFAULT_BUDGET", "ChunkResult", "ChunkSpec", "Concurrency", "run_chunk", "run_trials"]

DEFAULT_BUDGET = _fidelity.DEFAULT_BUDGET.added_s  # s the kit may add to any timestamp (p99)
WINDOW = 0.1  # s between concurrency decisions
START_CAP = 4
MAX_CAP = 256  # per event loop; beyond this a 2-core machine is far outside any budget
MIN_SPACING = 0.001  # s between two trial starts on one loop


class Concurrency:
    """How many trials one event loop runs at once: fixed, or adapted to the loop's lag.

    ``fixed``: a number of trials, or None (adaptive). ``budget``: the lag (s) above
    which the cap shrinks. ``limit``: never more than this.

    The lag the loop shows with almost nothing in flight (``floor``: at most
    ``START_CAP`` trials) is the machine's, not the kit's: on a busy shared machine it
    can exceed the budget at any concurrency. Then backing off cannot help, so the cap
    only keeps the lag near that floor (``2 x floor``) instead of falling to one; the
    trials are flagged either way, and :attr:`attainable` says the budget was out of reach.
    """

    def __init__(self, fixed: int | None = None, budget: float = DEFAULT_BUDGET, limit: int = MAX_CAP) -> None:
        self.fixed = fixed
        self.budget = budget
        self.limit = max(1, limit)
        self.cap = min(fixed if fixed is not None else START_CAP, self.limit)
        self._slow_start = True
        self._over = False  # the last window was over the limit
        self._light: deque[float] = deque(maxlen=20)  # lags of windows with few trials in flight
        self.samples: list[int] = []  # the cap in each window
        self.lags: list[float] = []  # the loop's worst lag in each window

    @property
    def floor(self) -> float:
        """The loop's lag with at most ``START_CAP`` trials in flight (median of recent windows)."""
        return statistics.median(self._light) if self._light else 0.0

    @property
    def attainable(self) -> bool:
        """False if the machine alone (nearly idle loop) lags more than half the budget."""
        return self.floor <= self.budget / 2

    def observe(self, lag: float, busy: bool, in_flight: int = 0) -> None:
        """One window passed with worst loop lag ``lag`` (s); ``busy``: the cap was reached;
        ``in_flight``: the most trials in flight during it."""
        self.lags.append(lag)
        if in_flight <= START_CAP:
            self._light.append(lag)
        if self.fixed is None:
            bad = max(self.budget, 2 * self.floor)
            good = max(self.budget / 2, 1.25 * self.floor)
            if lag > bad and (self._over or lag > 4 * bad):
                # two windows in a row, or one far over: one stray hiccup of a shared
                # machine is not the kit's load
                self.cap = max(1, math.floor(self.cap * 2 / 3))
                self._slow_start = False
            elif busy and lag <= good:
                self.cap = min(self.limit, MAX_CAP, self.cap * 2 if self._slow_start else self.cap + 1)
            self._over = lag > bad
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
    from ._fidelity import LagMonitor
    from .client import astream

    if warm_url:
        await _warm_up(warm_url)
    monitor = LagMonitor.for_running_loop()
    queue = deque(plan)
    idle: list[httpx.AsyncClient] = []
    clients: list[httpx.AsyncClient] = []
    running: set[asyncio.Task[None]] = set()
    durations: deque[float] = deque(maxlen=32)

    async def one(cell: Any, t: int, client: httpx.AsyncClient) -> None:
        tseed = seed_of(cell, t)
        try:
            trace = await astream(
                urls[cell.index], policy=cell.policy, client=client, trial=str(tseed), seed=tseed, headers=headers
            )
            if server_isolated:  # its log arrives a moment after the client saw the end
                for a in trace.attempts:
                    await a.await_server_log()
        finally:
            idle.append(client)
        durations.append((trace.end_ns - trace.start_ns) / 1e9)
        on_record(record(trace, cell, t, tseed))

    next_start = 0
    window_start = now_ns()
    busy = False
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
            busy = busy or len(running) >= concurrency.cap
            peak = max(peak, len(running))
            if t - window_start >= WINDOW * 1e9:
                concurrency.observe(monitor.lag_between(window_start, t), busy, peak)
                if on_window is not None:
                    on_window(concurrency)
                window_start, busy, peak = t, len(running) >= concurrency.cap, len(running)
            wake = min(next_start - t, WINDOW * 1e9) / 1e9 if queue and len(running) < concurrency.cap else WINDOW
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
    from .client import _ssl_context

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits, trust_env=False, verify=_ssl_context())


# ------------------------------------------------------------ a chunk in a worker


@dataclasses.dataclass(frozen=True)
class ChunkSpec:
    """One task for an executor: some trials of an experiment (all picklable values)."""

    index: int
    config: dict[str, Any]  # Experiment.to_dict(redact=False)
    trials: tuple[tuple[int, int], ...]  # (cell index, trial)
    concurrency: int | None  # per worker; None: adaptive
    budget: float = DEFAULT_BUDGET
    stop_file: str | None = None  # the driver creates it to stop the chunk early
    part_file: str | None = None  # where to journal this chunk's trials (if that folder exists here)


@dataclasses.dataclass
class ChunkResult:
    index: int
    worker: str
    records: list[dict[str, Any]]  # empty when they were streamed to the driver already
    streamed: int
    proxy: dict[str, Any]  # network label -> forward rows (a DataFrame)
    settled: int
    caps: list[int]
    lag_p99_s: float
    floor_s: float
    stopped: bool
    wall_s: float


_WORKER: dict[str, Any] = {}  # this process's fault server, proxies and controller, kept between chunks


def run_chunk(spec: ChunkSpec) -> ChunkResult:
    """Run one chunk of trials in this process (an executor's worker); see :class:`ChunkSpec`."""
    from . import _pool
    from ._loop import new_event_loop
    from .experiment import Experiment, trial_id, trial_seed

    t0 = time.perf_counter()
    exp = Experiment.from_dict(spec.config)
    server = _worker_server()
    proxies = {c.network_label: _worker_proxy(server, exp, c.network) for c in exp.cells if c.network is not None}
    urls = {c.index: _url(server, proxies, c) for c in exp.cells}
    key = ("concurrency", spec.concurrency, spec.budget)
    control = _WORKER.get(key)
    if control is None:  # kept between chunks, so a worker does not ramp up from scratch each time
        control = _WORKER[key] = Concurrency(spec.concurrency, spec.budget)
    records: list[dict[str, Any]] = []
    streamed = 0
    part = _open_part(spec.part_file)

    def on_record(rec: dict[str, Any]) -> None:
        nonlocal streamed
        if part is not None:
            part.write(_json_line(rec))
            part.flush()
        if _pool.emit(("record", spec.index, rec)):
            streamed += 1
        else:
            records.append(rec)

    def record(trace: Any, cell: Any, t: int, tseed: int) -> dict[str, Any]:
        # JSON-ready: it crosses to the driver (and into its journal) as it is
        return trace.to_record(trial_id(cell.index, t), cell.index, t, tseed, budget=spec.budget).to_dict()

    stop_file = spec.stop_file
    plan = [(exp.cells[c], t) for c, t in spec.trials]
    control.samples.clear()
    control.lags.clear()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        finished = runner.run(
            run_trials(
                plan,
                urls,
                seed_of=lambda cell, t: trial_seed(exp.seed, cell.conditions_key, t),
                record=record,
                on_record=on_record,
                concurrency=control,
                headers=exp.headers or None,
                stop=(lambda: os.path.exists(stop_file)) if stop_file else (lambda: False),
                warm_url=f"http://{server.address[0]}:{server.address[1]}/",
            )
        )
    if part is not None:
        part.close()
    proxy_rows = {}
    for label, p in proxies.items():
        df = p.forwards_df()
        p.clear_log()
        proxy_rows[label] = df
    lags = sorted(control.lags)
    return ChunkResult(
        index=spec.index,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        records=records,
        streamed=streamed,
        proxy=proxy_rows,
        settled=control.settled,
        caps=list(control.samples),
        lag_p99_s=lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else 0.0,
        floor_s=control.floor,
        stopped=not finished,
        wall_s=time.perf_counter() - t0,
    )


def _json_line(rec: Mapping[str, Any]) -> str:
    import json

    return json.dumps(rec, separators=(",", ":")) + "\n"


def _open_part(path: str | None) -> Any:
    if not path or not os.path.isdir(os.path.dirname(path)):
        return None  # e.g. a worker on another machine: its records come back with the result
    return open(path, "w", encoding="utf-8")


def _url(server: Any, proxies: Mapping[str, Any], cell: Any) -> Any:
    url = server.url_for(cell.scenario)
    if cell.network is not None:
        return proxies[cell.network_label].url_for(url)
    return url


def _worker_server() -> Any:
    from .server import FaultServer

    server = _WORKER.get("server")
    if server is None or not _alive(server):
        # in its own process: this worker's clients would otherwise delay its writes (GIL)
        server = FaultServer(isolate=True).start()
        _WORKER["server"] = server
        _WORKER["proxies"] = {}
        _at_exit(server.stop)
    return server


def _worker_proxy(server: Any, exp: Any, network: Any) -> Any:
    from ._params import canonical
    from .experiment import network_seed
    from .proxy import NetworkProxy

    proxies = _WORKER.setdefault("proxies", {})
    key = (canonical(network.to_dict()), exp.seed)
    proxy = proxies.get(key)
    if proxy is None or not _alive(proxy):
        # in its own process too: a proxy thread here would compete with the clients (GIL)
        proxy = NetworkProxy(upstream=server, network=network, seed=network_seed(exp.seed, network), isolate=True)
        proxy.start()
        proxies[key] = proxy
        _at_exit(proxy.stop)
    return proxy


def _alive(component: Any) -> bool:
    """Whether an isolated server's or proxy's child process still runs (a worker keeps them)."""
    handle = getattr(component, "_child", None)
    proc = getattr(handle, "_proc", None) or getattr(getattr(handle, "_child", None), "_proc", None)
    return proc is not None and proc.poll() is None


def _at_exit(fn: Callable[[], None]) -> None:
    """Stop what this worker started when its process exits (atexit, and multiprocessing's
    finalizers, which are what a multiprocessing child runs on its way out)."""
    from multiprocessing import util

    done: list[bool] = []

    def once() -> None:
        if not done:
            done.append(True)
            with contextlib.suppress(Exception):
                fn()

    atexit.register(once)
    util.Finalize(None, once, exitpriority=10)
