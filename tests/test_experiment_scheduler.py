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
from kit.experiment._scheduler import EVIDENCE, START_CAP, Concurrency

BUDGET = 0.002


def finish_level(c: Concurrency, lag_of_cap, share=None) -> None:
    """EVIDENCE trials of the current level end, each with the lag ``lag_of_cap(cap)``
    (and, if given, ``share()`` of its stamps over the budget)."""
    cap = c.cap
    for _ in range(EVIDENCE):
        c.finished(lag_of_cap(cap), cap, None if share is None else share())
        c.observe(0.0, in_flight=cap)


def test_adaptive_concurrency_ramps_up_while_the_trials_keep_the_budget():
    c = Concurrency(budget=BUDGET)
    assert c.cap == START_CAP
    for _ in range(8):
        finish_level(c, lambda cap: 0.0003)
    assert c.cap >= START_CAP * 16  # doubling while the trials stay within budget
    assert c.attainable and c.floor == pytest.approx(0.0003)


def test_the_cap_moves_only_on_evidence_from_its_own_level():
    c = Concurrency(budget=BUDGET)
    while c.cap == START_CAP:
        finish_level(c, lambda cap: 0.0003)
    grown = c.cap
    for _ in range(3 * EVIDENCE):
        c.finished(0.05, START_CAP)  # late news of the old level: no verdict on this one
    assert c.cap == grown


def test_adaptive_concurrency_backs_off_and_settles():
    """Trials whose lag grows with the trials in flight (1 ms per 20): it settles near 40."""
    c = Concurrency(budget=BUDGET)
    for _ in range(200):
        finish_level(c, lambda cap: cap / 20 * 1e-3)
    tail = c.samples[-300:]
    assert min(tail) >= 20 and max(tail) <= 50, sorted(set(tail))
    assert 20 <= c.settled <= 50
    assert c.attainable


def test_one_stray_late_trial_does_not_cut_the_cap():
    c = Concurrency(budget=BUDGET)
    finish_level(c, lambda cap: 0.0003)
    before = c.cap
    lags = iter([0.03] + [0.0003] * (EVIDENCE - 1))  # one trial of six hit a hiccup...
    shares = iter([1 / 50] + [0.0] * (EVIDENCE - 1))  # ...with one of its 50 stamps
    finish_level(c, lambda cap: next(lags), lambda: next(shares))
    assert c.cap > before  # 1 stamp in 300 is within the budget's p99


def test_a_busy_machine_does_not_drive_the_cap_to_one():
    """Lag that is there with almost nothing in flight is the machine's: backing off cannot fix it."""
    c = Concurrency(budget=BUDGET)
    for _ in range(40):
        finish_level(c, lambda cap: 0.008 + cap * 1e-5)
    assert not c.attainable
    assert c.bound == pytest.approx(2 * c.floor_share + 0.005)
    assert c.settled > START_CAP


def test_a_saturated_loop_brakes_before_its_trials_end():
    c = Concurrency(budget=BUDGET)
    for _ in range(5):
        finish_level(c, lambda cap: 0.0003)
    high = c.cap
    c.observe(0.05, in_flight=high)  # most heartbeats 50 ms late: far over
    assert c.cap < high


def test_a_fixed_concurrency_stays_fixed():
    c = Concurrency(7, budget=BUDGET)
    for lag in (0.0, 0.1, 0.0, 0.1):
        c.observe(lag, in_flight=7)
        c.finished(lag, 7)
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
