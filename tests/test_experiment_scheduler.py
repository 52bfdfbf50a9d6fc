"""The runner's scheduling: adaptive concurrency, staggered starts, fidelity flags under overload."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest

import kit
from kit._progress import Progress
from kit.experiment import Experiment
from kit.experiment._scheduler import START_CAP, Concurrency

BUDGET = 0.002


def test_adaptive_concurrency_ramps_up_while_the_budget_holds():
    c = Concurrency(budget=BUDGET)
    for _ in range(8):
        c.observe(0.0003, busy=True, in_flight=c.cap)
    assert c.cap >= START_CAP * 16  # doubling while nothing lags
    assert c.settled >= START_CAP * 4


def test_adaptive_concurrency_backs_off_and_settles():
    """A loop whose lag grows with the trials in flight (1 ms per 20): it settles near 40."""
    c = Concurrency(budget=BUDGET)
    for _ in range(300):
        c.observe(c.cap / 20 * 1e-3, busy=True, in_flight=c.cap)
    tail = c.samples[-100:]
    assert min(tail) >= 20 and max(tail) <= 45, tail
    assert 20 <= c.settled <= 45
    assert c.attainable


def test_one_stray_hiccup_does_not_halve_the_cap():
    c = Concurrency(budget=BUDGET)
    for _ in range(5):
        c.observe(0.0003, busy=True, in_flight=c.cap)
    before = c.cap
    c.observe(0.005, busy=True, in_flight=c.cap)  # over budget once, not far over
    assert c.cap == before


def test_a_busy_machine_does_not_drive_the_cap_to_one():
    """Lag that is there with almost nothing in flight is the machine's: backing off cannot fix it."""
    c = Concurrency(budget=BUDGET)
    for _ in range(100):
        c.observe(0.008 + c.cap * 1e-5, busy=True, in_flight=c.cap)
    assert not c.attainable
    assert c.settled > START_CAP


def test_a_fixed_concurrency_stays_fixed():
    c = Concurrency(7, budget=BUDGET)
    for lag in (0.0, 0.1, 0.0, 0.1):
        c.observe(lag, busy=True, in_flight=7)
    assert c.cap == c.settled == 7


def test_adaptive_run_reports_the_concurrency_it_settled_at(server):
    exp = Experiment(scenarios=[kit.Scenario(events=10, gap=0.01)], trials=40, seed=1)
    line = io.StringIO()
    bar = Progress(len(exp), "trials", stream=line)
    result = exp.run(server=server, progress=bar)
    assert "concurrency " in line.getvalue()  # the progress line says it as it adapts
    assert result.meta["concurrency_mode"] == "adaptive"
    assert isinstance(result.meta["concurrency"], int) and result.meta["concurrency"] >= 1
    assert result.trials["ok"].all()
    starts = np.sort(result.trials["start_ns"].to_numpy())
    assert (np.diff(starts) >= 0.0009e9).all()  # staggered: never two starts within a millisecond


def test_a_blocked_client_loop_is_flagged(server):
    """Overload the kit on purpose: block the client's loop for 30 ms every 60 ms."""
    exp = Experiment(scenarios=[kit.Scenario(events=20, gap=0.01)], trials=12, seed=2)

    async def run_with_a_blocker() -> kit.Result:
        async def blocker() -> None:
            while True:
                await asyncio.sleep(0.06)
                time.sleep(0.03)  # the point: a loop that cannot run its callbacks

        task = asyncio.ensure_future(blocker())
        try:
            return await exp.arun(4, server=server, progress=False)
        finally:
            task.cancel()

    with pytest.warns(UserWarning, match="2 ms fidelity budget"):
        result = asyncio.run(run_with_a_blocker())
    t = result.trials
    assert (t["client_lag_s"] >= 0.02).all()  # every trial (>= 200 ms) lived through a block
    assert not t["within_budget"].any()
    assert (t["kit_added_s"] >= t["client_lag_s"]).all()
    m = result.metrics()
    assert (m["excluded"] == len(t)).all() and (m["n"] == 0).all()  # no conclusion from flagged trials
