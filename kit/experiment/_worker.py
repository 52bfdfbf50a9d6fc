"""A chunk of an experiment's trials in a worker process (any executor's, on any machine).

:func:`run_chunk` is the task the driver submits: a pure function of picklable values
(:class:`ChunkSpec` in, :class:`ChunkResult` out). Its process keeps one isolated fault
server and one isolated proxy per network alive between chunks (started on first use,
stopped when the process exits), so a worker's traffic stays on its own loopback and its
timings stay local, and it keeps its :class:`~kit.experiment._scheduler.Concurrency` so it
does not ramp up from scratch for every chunk.

Each finished trial is journalled as a JSON line in the chunk's journal when the
driver's folder is reachable from here (a worker that dies loses only its trials in
flight), and streamed to the driver at once when the worker can
(:func:`kit.experiment._pool.emit`: the kit's own pool). The trials it did not stream
(other executors, Dask) come back at the chunk's end as Parquet parts: the Result
tables of those trials, built here (:mod:`kit.experiment._parts`), so the driver only
merges them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._child import settle_heap
from .._params import canonical
from ..records import TrialRecord
from ..tables import build
from ._grid import Grid
from ._plan import network_seed, trial_id, trial_seed
from ._scheduler import DEFAULT_BUDGET, Concurrency, run_trials

__all__ = ["ChunkResult", "ChunkSpec", "run_chunk"]


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
    parts_dir: str | None = None  # the run's parts folder: where to write this chunk's Parquet part (if it exists here)


@dataclasses.dataclass
class ChunkResult:
    index: int
    worker: str
    parts: dict[str, bytes]  # table name -> Parquet bytes of the trials not streamed ({} when all were)
    trials: int  # trials in the parts
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
    from .._loop import new_event_loop
    from . import _parts, _pool

    t0 = time.perf_counter()
    exp = Grid.from_dict(spec.config)
    server = _worker_server()
    proxies = {c.network_label: _worker_proxy(server, exp, c.network) for c in exp.cells if c.network is not None}
    urls = {c.index: _url(server, proxies, c) for c in exp.cells}
    if not _WORKER.get("heap_settled"):  # once per process: full collections stay cheap (kit._child.settle_heap)
        settle_heap()
        _WORKER["heap_settled"] = True
    key = ("concurrency", spec.concurrency, spec.budget)
    control = _WORKER.get(key)
    if control is None:  # kept between chunks, so a worker does not ramp up from scratch each time
        control = _WORKER[key] = Concurrency(spec.concurrency, spec.budget)
    records: list[TrialRecord] = []  # not streamed: they go into the chunk's Parquet part
    streamed = 0
    part = _open_part(spec.part_file)

    def on_record(rec: TrialRecord) -> None:
        nonlocal streamed
        doc = rec.to_dict() if part is not None or _pool.streaming() else None
        if part is not None:
            part.write(_json_line(doc))
            part.flush()
        if doc is not None and _pool.emit(("record", spec.index, doc)):
            streamed += 1
        else:
            records.append(rec)

    def record(trace: Any, cell: Any, t: int, tseed: int) -> TrialRecord:
        return trace.to_record(trial_id(cell.index, t), cell.index, t, tseed, budget=spec.budget)

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
    blobs = _parts.encode(build(records, [c.labels for c in exp.cells])[0]) if records else {}
    if blobs and spec.parts_dir:
        _parts.write(Path(spec.parts_dir), spec.index, blobs)
    proxy_rows = {}
    for label, p in proxies.items():
        df = p.forwards_df()
        p.clear_log()
        proxy_rows[label] = df
    lags = sorted(control.lags)
    return ChunkResult(
        index=spec.index,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        parts=blobs,
        trials=len(records),
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
    from ..server import FaultServer

    server = _WORKER.get("server")
    if server is None or not _alive(server):
        # in its own process: this worker's clients would otherwise delay its writes (GIL)
        server = FaultServer(isolate=True).start()
        _WORKER["server"] = server
        _WORKER["proxies"] = {}
        _at_exit(server.stop)
    return server


def _worker_proxy(server: Any, exp: Any, network: Any) -> Any:
    from ..proxy import NetworkProxy

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
    if isinstance(getattr(component, "alive", None), bool):  # FaultServer.alive
        return component.alive
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
