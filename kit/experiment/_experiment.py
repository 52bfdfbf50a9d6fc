"""The :class:`Experiment`: a grid as a value, and the entry points that run it.

An :class:`Experiment` is a value: its scenarios, networks and policies are kit values
with ``to_dict``/``from_dict``, so the whole config round-trips through JSON
(:meth:`Experiment.to_dict`) and a saved bundle can be rerun exactly. :meth:`run`
hands the trials to workers (:mod:`kit.experiment._driver`) or, with ``server=`` or
``workers=0``, runs them on this process's loop (:mod:`kit.experiment._scheduler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .._loop import run_sync
from .._signals import saving
from ..records import TrialRecord
from ..trace import Trace
from ._grid import Grid
from ._journal import (
    CONFIG_FILE,
    JOURNAL,
    PARTS,
    _budget,
    _concat,
    _concurrency,
    _note,
    _proxy_log,
    _Run,
    _saving_note,
)
from ._plan import (
    Cell,
    network_seed,
    parse_trial_id,
    trial_id,
    trial_seed,
)
from ._scheduler import DEFAULT_BUDGET, Concurrency, run_trials

__all__ = ["DEFAULT_CONCURRENCY", "Experiment"]

DEFAULT_CONCURRENCY = "auto"  # adapt the trials in flight to the client loop's lag


class Experiment(Grid):
    """A grid of scenario x network x policy, each cell run ``trials`` times.

    ``Experiment(scenarios=[...], networks=[...], policies=[...], trials=20, seed=7)``
    takes the product of the lists; ``cells=[(scenario, network, policy), ...]`` (or
    dicts with those keys) gives the cells explicitly. Scenarios may be preset names;
    ``networks`` default to ``[None]`` (direct, no proxy); ``policies`` to ``[Policy()]``.
    ``headers`` are extra request headers sent by every trial (secret ones are redacted
    in saved configs). :meth:`run` / :meth:`arun` return a :class:`~kit.Result`.
    """

    # -- trials ----------------------------------------------------------------------

    def trial_ids(self) -> list[str]:
        return [trial_id(c.index, t) for c in self.cells for t in range(self.trials)]

    def seed_of(self, tid: str) -> int:
        """The derived seed of trial ``tid`` (see the module docstring)."""
        c, t = self._locate(tid)
        return trial_seed(self.seed, self.cells[c].conditions_key, t)

    def _locate(self, tid: str) -> tuple[int, int]:
        c, t = parse_trial_id(tid)
        if not (0 <= c < len(self.cells) and 0 <= t < self.trials):
            raise ConfigError(
                "trial_id", tid, f"this experiment has cells 0..{len(self.cells) - 1} and trials 0..{self.trials - 1}"
            )
        return c, t

    def result_of(self, records: Iterable[Any], **kw: Any) -> Any:
        """A :class:`~kit.Result` of this grid's trial records (``meta``, ``proxy_logs`` as in ``Result.from_records``)."""
        from ..result import Result

        meta = dict(kw.pop("meta", None) or {})
        meta.setdefault("trials_planned", len(self))
        return Result.from_records(records, [c.labels for c in self.cells], config=self.to_dict(), meta=meta, **kw)

    # -- running ---------------------------------------------------------------------

    def run(
        self,
        concurrency: int | str = DEFAULT_CONCURRENCY,
        *,
        executor: Any = None,
        workers: int | None = None,
        budget: float = DEFAULT_BUDGET,
        out: str | Path | None = None,
        overwrite: bool = False,
        progress: bool | Any = True,
        server: Any = None,
        resume: Any = None,
    ) -> Any:
        """Run every trial and return a :class:`~kit.Result` (blocking; works inside Jupyter).

        Where trials run: this process only plans and collects. By default the clients
        run in ``workers`` local worker processes (one per two cores), each with its own
        event loop, fault server and proxies in further processes. ``executor``: any
        ``concurrent.futures.Executor`` or a Dask ``distributed.Client`` instead (each
        worker runs chunks of trials with its own loopback server and proxies; same seed,
        same per-trial outcomes). ``server``: a running FaultServer to use instead; the
        clients then run in this process (as with ``workers=0``, which starts its own
        isolated server).

        ``concurrency``: ``"auto"`` (default) adapts the trials in flight on each worker
        to its event loop's lag (ramp up while the kit stays within ``budget``, back off
        when it does not; ``result.meta["concurrency"]`` is what it settled at), or a
        fixed number of trials in flight in total. Trials start staggered, never in
        waves. ``budget``: the most the kit may add to a timestamp (s); trials over it
        are flagged (``result.trials["within_budget"]``).

        ``out``: a folder to journal trials into as they finish and to save the bundle
        in (refused if it exists, unless ``overwrite=True``). ``progress``: a bar in
        notebooks, a line on terminals. ``resume``: a partial Result of this experiment
        (interrupted, or with ``meta["lost"]`` trials of a worker that died): only its
        missing trials run, and the merged Result is returned.

        On Ctrl-C (or a kernel interrupt) the finished trials are kept: the partial result
        is returned (``result.complete`` is False) and saved to ``out`` if given.
        """
        self.last_result = None
        conc = _concurrency(concurrency)
        budget = _budget(budget)
        if server is not None or workers == 0:
            try:
                return run_sync(
                    self.arun(
                        concurrency,
                        workers=0,
                        budget=budget,
                        out=out,
                        overwrite=overwrite,
                        progress=progress,
                        server=server,
                        resume=resume,
                    )
                )
            except KeyboardInterrupt:
                return self._interrupted(out)
        stop = threading.Event()
        try:
            return self._drive(conc, executor, workers, budget, out, overwrite, progress, resume, stop)
        except KeyboardInterrupt:
            return self._interrupted(out)

    def _interrupted(self, out: Any) -> Any:
        partial = self.last_result
        if partial is None:
            raise KeyboardInterrupt
        warnings.warn(
            f"interrupted: kept {len(partial.trials)} finished trials of {len(self)}"
            + (f" (saved to {out})" if out else ""),
            stacklevel=3,
        )
        return partial

    async def arun(
        self,
        concurrency: int | str = DEFAULT_CONCURRENCY,
        *,
        executor: Any = None,
        workers: int | None = None,
        budget: float = DEFAULT_BUDGET,
        out: str | Path | None = None,
        overwrite: bool = False,
        progress: bool | Any = True,
        server: Any = None,
        resume: Any = None,
    ) -> Any:
        """Async :meth:`run`. If cancelled, the partial result is left in ``self.last_result``
        (and saved to ``out``) before the cancellation propagates."""
        conc = _concurrency(concurrency)
        budget = _budget(budget)
        if server is None and workers != 0:
            stop = threading.Event()
            fut = asyncio.ensure_future(
                asyncio.to_thread(self._drive, conc, executor, workers, budget, out, overwrite, progress, resume, stop)
            )
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                stop.set()
                with contextlib.suppress(BaseException):
                    await fut
                raise
        run = self._begin(out, overwrite, progress, resume, conc, budget)
        interrupted = False
        records: list[TrialRecord] = []
        proxies: dict[str, Any] = {}
        control = Concurrency(conc, budget)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if server is None:
                    from ..server import FaultServer

                    # in its own process: the clients here would otherwise delay its writes (GIL)
                    server = FaultServer(isolate=True)
                    await asyncio.to_thread(server.start)
                    stack.push_async_callback(asyncio.to_thread, server.stop)
                # proxies in their own processes next to an isolated server (a thread server
                # given by the caller is for tests and debugging: its proxies stay threads too)
                proxies = await self._start_proxies(server, stack, isolate=bool(server.isolate))
                urls = {c.index: self._url(server, proxies, c) for c in self.cells}

                def on_record(rec: TrialRecord) -> None:
                    records.append(rec)
                    run.add(rec)

                def record(trace: Any, cell: Cell, t: int, tseed: int) -> TrialRecord:
                    return trace.to_record(trial_id(cell.index, t), cell.index, t, tseed, budget=budget)

                try:
                    await run_trials(
                        [(self.cells[c], t) for c, t in run.plan],
                        urls,
                        seed_of=lambda cell, t: trial_seed(self.seed, cell.conditions_key, t),
                        record=record,
                        on_record=on_record,
                        concurrency=control,
                        headers=self.headers or None,
                        server_isolated=bool(server.isolate),
                        warm_url=f"http://{server.address[0]}:{server.address[1]}/",
                        on_window=lambda c: _note(run.bar, f"concurrency {c.cap}"),
                    )
                except (asyncio.CancelledError, KeyboardInterrupt):
                    interrupted = True
                finally:
                    proxy_logs = {label: _proxy_log(p) for label, p in proxies.items()}
        finally:
            meta = {
                "executor": "this process",
                "workers": 0,
                "interrupted": interrupted,
                "lost": [],
                "errors": [],
                "concurrency": control.settled,
                "lag_p99_s": sorted(control.lags)[int(0.99 * (len(control.lags) - 1))] if control.lags else 0.0,
                "lag_floor_s": control.floor,
            }
            result = run.finish(self, meta, proxy_logs if "proxy_logs" in locals() else {}, records)
        if interrupted:
            raise asyncio.CancelledError
        return result

    def _drive(
        self,
        conc: int | None,
        executor: Any,
        workers: int | None,
        budget: float,
        out: Any,
        overwrite: bool,
        progress: Any,
        resume: Any,
        stop: threading.Event,
    ) -> Any:
        from ._driver import Collected, drive

        run = self._begin(out, overwrite, progress, resume, conc, budget)
        collected = Collected(run.journal, run.bar, {trial_id(c, t) for c, t in run.plan})
        meta: dict[str, Any] = {"interrupted": True}
        try:
            meta = drive(
                self.to_dict(redact=False),
                run.plan,
                executor=executor,
                workers=workers,
                concurrency=conc,
                budget=budget,
                collected=collected,
                stop=stop,
                parts_dir=run.out / PARTS if run.out is not None else None,
            )
        finally:
            with saving(_saving_note(run.out)):  # more interrupts do not cut the save short
                meta["concurrency"] = collected.concurrency or conc
                meta["concurrency_by_worker"] = dict(collected.settled)
                meta["lag_p99_s"] = max(collected.lag_p99.values(), default=0.0)
                meta["lag_floor_s"] = max(collected.floor.values(), default=0.0)
                proxy_logs = {label: _concat(dfs) for label, dfs in collected.proxy.items()}
                records = list(collected.records.values())
                result = run.finish(self, meta, proxy_logs, records, collected.parts)
                if run.out is not None:  # the bundle holds what the parts held now
                    shutil.rmtree(run.out / PARTS, ignore_errors=True)
        if meta.get("interrupted"):
            raise KeyboardInterrupt
        return result

    def _begin(self, out: Any, overwrite: bool, progress: Any, resume: Any, conc: int | None, budget: float) -> _Run:
        from .._progress import Progress

        self.last_result = None
        done: set[str] = set()
        if resume is not None:
            if not hasattr(resume, "trials") or (resume.config and Experiment.from_dict(resume.config) != self):
                raise ConfigError("resume", type(resume).__name__, "a Result of this same experiment")
            done = set(resume.trials["trial_id"])
        plan = [(c.index, t) for c in self.cells for t in range(self.trials) if trial_id(c.index, t) not in done]
        out_path = Path(out) if out is not None else None
        journal = None
        aside = None  # an old kit folder at out, set aside until the new bundle is saved
        if out_path is not None:
            from ..bundle import prepare_folder

            aside = prepare_folder(out_path, overwrite=overwrite)
            (out_path / CONFIG_FILE).write_text(json.dumps(self.to_dict(), indent=2))
            journal = (out_path / JOURNAL).open("a", encoding="utf-8")
        bar = progress if not isinstance(progress, bool) else Progress(len(plan), "trials", enabled=progress)
        run = _Run(plan, out_path, journal, bar, resume, conc, budget)
        run.aside = aside
        return run

    async def _start_proxies(
        self, server: Any, stack: contextlib.AsyncExitStack, *, isolate: bool = False
    ) -> dict[str, Any]:
        nets = {}
        for c in self.cells:
            if c.network is not None:
                nets.setdefault(c.network_label, c.network)
        if not nets:
            return {}
        from ..proxy import NetworkProxy  # written alongside; only needed when a grid has networks

        proxies = {}
        for label, net in nets.items():
            # one proxy per distinct network, seeded from the experiment's; it keys its draws
            # (toxicity, jitter, loss, slices) by the trial and attempt each request names
            # (x-kit-trial, x-kit-attempt), so a replayed trial meets the same network
            proxy = NetworkProxy(
                upstream=server.address, network=net, seed=network_seed(self.seed, net), isolate=isolate
            )
            await asyncio.to_thread(proxy.__enter__)
            stack.push_async_callback(asyncio.to_thread, proxy.__exit__, None, None, None)
            proxies[label] = proxy
        return proxies

    def _url(self, server: Any, proxies: Mapping[str, Any], cell: Cell) -> Any:
        url = server.url_for(cell.scenario)
        if cell.network is not None:
            return proxies[cell.network_label].url_for(url)
        return url

    # -- replay ----------------------------------------------------------------------

    def replay(self, tid: str, *, server: Any = None) -> Trace:
        """Run trial ``tid`` alone (same scenario, network, policy and seed); blocking."""
        return run_sync(self.areplay(tid, server=server))

    async def areplay(self, tid: str, *, server: Any = None) -> Trace:
        """Async :meth:`replay`."""
        from ..client import astream

        c, t = self._locate(tid)
        cell = self.cells[c]
        async with contextlib.AsyncExitStack() as stack:
            if server is None:
                from ..server import FaultServer

                server = FaultServer()
                await asyncio.to_thread(server.start)
                stack.push_async_callback(asyncio.to_thread, server.stop)
            sub = Experiment(cells=[(cell.scenario, cell.network, cell.policy)], seed=self.seed)
            sub.cells[0] = dataclasses.replace(sub.cells[0], network_label=cell.network_label)
            proxies = await sub._start_proxies(server, stack)
            url = sub._url(server, proxies, sub.cells[0])
            tseed = trial_seed(self.seed, cell.conditions_key, t)
            return await astream(url, policy=cell.policy, trial=str(tseed), seed=tseed, headers=self.headers or None)
