"""The driver of a multi-process run: plan chunks, hand them to an executor, collect.

The driver process does no client work: it splits the trials into chunks, submits
:func:`kit.experiment._worker.run_chunk` for each to an executor (the kit's own
:class:`~kit.experiment._pool.LocalPool` by default, any ``concurrent.futures.Executor``, or a
Dask ``Client`` through ``client.get_executor()``), journals each finished trial,
and advances one progress bar. Trials come back at once while a chunk runs when the
worker can stream them (the local pool: one record each, journalled to ``trials.jsonl``),
else with the chunk's result as Parquet parts (the tables of its trials, built by the
worker: :mod:`kit.experiment._parts`; saved under ``out/parts/`` until the bundle is). The
Result merges both (:func:`kit.tables.merge`): the same tables as a single-process run.

The local pool is kept for the next run of the process, and shut down once it has been
idle for :data:`POOL_IDLE_S` (its workers' fault servers and proxies exit with them).

Stopping (Ctrl-C, a kernel interrupt, a cancelled ``arun``): chunks not started are
cancelled and the driver creates the stop file that running chunks poll (workers on
this machine see it at once; a chunk on another machine runs to its end), then waits
for them: every trial that finished is kept. A second interrupt stops waiting.

A worker that dies: the trials it had finished are kept (streamed, or read back from
its chunk's JSON-line journal when that folder is shared), the rest are listed in
``result.meta["lost"]``; ``experiment.run(resume=result)`` runs just those. A part that
cannot be read is the same: its chunk's journal stands in, and what it lacks is lost,
named in ``meta["errors"]`` and ``meta["lost"]``.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._errors import BundleError
from . import _parts
from ._plan import trial_id
from ._worker import ChunkSpec, run_chunk

__all__ = ["CHUNKS_PER_WORKER", "Collected", "default_workers", "drive"]

CHUNKS_PER_WORKER = 4  # enough to balance uneven chunks; each chunk's tail drains its loop once
STOP_WAIT = 60.0  # s to wait for running chunks after a stop


def default_workers() -> int:
    """Worker processes for a run on this machine: one per two cores (the other core of
    each pair runs that worker's fault server and proxies), at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def is_dask_client(obj: Any) -> bool:
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")


class Collected:
    """What the driver gathered: streamed records by trial id, the tables of parts, proxy
    logs, per-worker concurrency."""

    def __init__(self, journal: Any, bar: Any, expected: set[str] | None = None) -> None:
        self.expected = expected
        self.records: dict[str, dict[str, Any]] = {}
        self.parts: list[dict[str, Any]] = []
        self.ids: set[str] = set()  # every trial recorded, streamed or in a part
        self.proxy: dict[str, list[Any]] = {}
        self.settled: dict[str, int] = {}
        self.lag_p99: dict[str, float] = {}
        self.floor: dict[str, float] = {}
        self.errors: list[str] = []
        self.workers: set[str] = set()
        self._journal = journal
        self._bar = bar
        self._lock = threading.Lock()

    def add(self, rec: dict[str, Any]) -> None:
        with self._lock:
            tid = rec["trial_id"]
            if tid in self.ids or (self.expected is not None and tid not in self.expected):
                return  # a chunk rerun after its worker died; a chunk of an earlier, stopped run
            self.records[tid] = rec
            self.ids.add(tid)
            if self._journal is not None:
                self._journal.write(json.dumps(rec, separators=(",", ":")) + "\n")
                self._journal.flush()
        self._bar.update(1)

    def add_part(self, tables: dict[str, Any]) -> None:
        """The tables of a chunk's trials (a decoded Parquet part): kept for the merge."""
        with self._lock:
            ids = tables["trials"]["trial_id"]
            new = ~ids.isin(self.ids)
            if self.expected is not None:
                new &= ids.isin(self.expected)
            if not new.all():  # see add(): trials already recorded, or not of this run
                keep = set(ids[new])
                tables = {name: df[df["trial_id"].isin(keep)] for name, df in tables.items()}
            n = int(new.sum())
            if n:
                self.parts.append(tables)
                self.ids.update(ids[new])
        if n:
            self._bar.update(n)

    def chunk_done(self, res: Any) -> None:
        with self._lock:
            for label, df in res.proxy.items():
                if df is not None and len(df):
                    # connection ids count per proxy, and each worker has its own proxy
                    self.proxy.setdefault(label, []).append(df.assign(worker=res.worker))
            self.workers.add(res.worker)
            self.settled[res.worker] = res.settled
            self.lag_p99[res.worker] = max(self.lag_p99.get(res.worker, 0.0), res.lag_p99_s)
            self.floor[res.worker] = res.floor_s
        with contextlib.suppress(AttributeError):  # a caller's own progress object
            self._bar.note = f"concurrency {self.concurrency}"

    @property
    def concurrency(self) -> int:
        return sum(self.settled.values())


_POOL: Any = None  # the local pool, kept for the next run of this process (workers start in seconds)
_POOL_IN_USE = threading.Lock()
# A kept pool's workers (each with its fault server and proxies: 3+ processes) exit after
# this long without a run; the next run starts a new pool (a few seconds).
POOL_IDLE_S = 300.0
_IDLE: dict[str, Any] = {"timer": None, "since": 0.0}


def _local_pool(n: int, on_emit: Callable[[int, Any], None]) -> tuple[Any, bool]:
    """(pool, shut it down after this run). The shared pool unless another run holds it."""
    global _POOL
    from ._pool import LocalPool

    if not _POOL_IN_USE.acquire(blocking=False):
        return LocalPool(n, on_emit=on_emit), True
    try:
        if _POOL is None or len(_POOL) != n or not _POOL.healthy:
            if _POOL is not None:
                _POOL.shutdown(wait=True)
            else:
                atexit.register(_close_pool)
            _POOL = LocalPool(n)
        _POOL.on_emit = on_emit
    except BaseException:
        _POOL_IN_USE.release()
        raise
    return _POOL, False


def _close_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True)
        _POOL = None


def _release_pool() -> None:
    """A run is done with the kept pool: it stays for the next one, until idle for :data:`POOL_IDLE_S`."""
    _POOL.on_emit = None
    _IDLE["since"] = time.monotonic()
    timer = threading.Timer(POOL_IDLE_S, _close_idle_pool)
    timer.daemon = True
    old, _IDLE["timer"] = _IDLE["timer"], timer
    if old is not None:
        old.cancel()
    _POOL_IN_USE.release()
    timer.start()


def _close_idle_pool() -> None:
    if not _POOL_IN_USE.acquire(blocking=False):
        return  # a run holds it; its release starts the wait again
    try:
        if time.monotonic() - _IDLE["since"] >= POOL_IDLE_S * 0.99:
            _close_pool()
    finally:
        _POOL_IN_USE.release()


def _executor_of(executor: Any, workers: int | None, on_emit: Callable[[int, Any], None]) -> tuple[Any, int, bool, str]:
    """(executor, number of workers, shut down after the run, description)."""
    if executor is None:
        n = workers or default_workers()
        pool, own = _local_pool(n, on_emit)
        return pool, n, own, f"local processes x{n}"
    if is_dask_client(executor):
        n = len(executor.scheduler_info().get("workers", {})) or 1
        return executor.get_executor(pure=False), n, False, f"dask {executor.scheduler.address} x{n}"
    if isinstance(executor, cf.Executor):
        n = workers or getattr(executor, "_max_workers", None) or default_workers()
        return executor, n, False, f"{type(executor).__name__} x{n}"
    from .._errors import ConfigError

    raise ConfigError("executor", executor, "expected None, a concurrent.futures.Executor or a dask.distributed.Client")


def chunks(plan: Sequence[tuple[int, int]], n_workers: int) -> list[tuple[tuple[int, int], ...]]:
    """Contiguous chunks, about ``CHUNKS_PER_WORKER`` per worker."""
    if not plan:
        return []
    n = min(len(plan), n_workers * CHUNKS_PER_WORKER)
    size = math.ceil(len(plan) / n)
    return [tuple(plan[i : i + size]) for i in range(0, len(plan), size)]


def drive(
    config: dict[str, Any],
    plan: Sequence[tuple[int, int]],
    *,
    executor: Any,
    workers: int | None,
    concurrency: int | None,
    budget: float,
    collected: Collected,
    stop: threading.Event,
    parts_dir: Path | None,
) -> dict[str, Any]:
    """Run ``plan`` (``(cell, trial)`` pairs) on workers; fill ``collected``. Returns run metadata.

    Stops early when ``stop`` is set (or on KeyboardInterrupt in this thread).
    """

    def on_emit(_worker: int, msg: Any) -> None:
        if isinstance(msg, tuple) and msg and msg[0] == "record":
            collected.add(msg[2])

    ex, n, owned, about = _executor_of(executor, workers, on_emit)
    tmp = tempfile.TemporaryDirectory(prefix="kit-run-")
    stop_file = os.path.join(tmp.name, "stop")
    part_root = parts_dir if parts_dir is not None else Path(tmp.name)
    part_root.mkdir(parents=True, exist_ok=True)
    per_worker = None if concurrency is None else max(1, math.ceil(concurrency / n))
    keep = str(parts_dir) if parts_dir is not None else None  # Parquet parts on disk only for a run folder
    specs = [
        ChunkSpec(i, config, c, per_worker, budget, stop_file, str(part_root / f"chunk-{i:05d}.jsonl"), keep)
        for i, c in enumerate(chunks(plan, n))
    ]
    interrupted = False
    try:
        futures = {ex.submit(run_chunk, s): s for s in specs}
        pending = set(futures)
        while pending and not stop.is_set():
            try:
                done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            except KeyboardInterrupt:
                stop.set()
                continue
            for f in done:
                _settle(f, futures[f], collected)
        if pending:  # stopped: cancel what has not started, let running chunks return what they finished
            interrupted = True
            Path(stop_file).touch()
            for f in pending:
                f.cancel()
            pending = {f for f in pending if not f.cancelled()}
            try:
                done, pending = cf.wait(pending, timeout=STOP_WAIT)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                done = {f for f in pending if f.done()}
            for f in done:
                _settle(f, futures[f], collected)
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)
        elif ex is _POOL:
            _release_pool()
        tmp.cleanup()
    lost = [t for t in _ids(plan) if t not in collected.ids]
    return {
        "executor": about,
        "workers": n,
        "interrupted": interrupted,
        "lost": [] if interrupted else lost,
        "errors": collected.errors,
        "streamed": len(collected.records),  # trials streamed one by one; the rest came in Parquet parts
    }


def _ids(plan: Sequence[tuple[int, int]]) -> list[str]:
    return [trial_id(c, t) for c, t in plan]


def _settle(f: cf.Future, spec: ChunkSpec, collected: Collected) -> None:
    if f.cancelled():
        return
    exc = f.exception()
    if exc is None:
        res = f.result()
        if res.parts:
            where = f"{_parts.part_name(spec.index)} from {res.worker}"
            try:
                tables = _parts.decode(res.parts, where)
            except BundleError as err:  # its trials' journal lines stand in (when reachable)
                collected.errors.append(str(err))
                _from_journal(spec, collected)
            else:
                if spec.parts_dir:  # the worker could not reach the run folder: the driver keeps the part
                    _parts.write(Path(spec.parts_dir), spec.index, res.parts)
                collected.add_part(tables)
        collected.chunk_done(res)
        _parts.remove(spec.part_file)
        return
    # the worker died (or the chunk failed): keep what its part or its journal holds
    collected.errors.append(f"chunk {spec.index} ({len(spec.trials)} trials): {type(exc).__name__}: {exc}")
    _from_journal(spec, collected)


def _from_journal(spec: ChunkSpec, collected: Collected) -> None:
    """The finished trials of a chunk whose result is missing or unreadable: its written
    Parquet part if it got that far, and the JSON lines it journalled as each trial finished."""
    written = Path(spec.parts_dir) / _parts.part_name(spec.index) if spec.parts_dir else None
    if written is not None and written.is_dir():
        try:
            collected.add_part(_parts.read_part(written))
        except BundleError as err:
            collected.errors.append(str(err))
    with contextlib.suppress(OSError):
        for line in Path(spec.part_file).read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                collected.add(json.loads(line))
