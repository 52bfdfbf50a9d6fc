"""The kit's own distortion (kit/_fidelity.py): loop lag, server and proxy lateness, budgets.

Real loops, real sockets. Lateness on a shared machine is noisy, so the assertions are
one-sided where the load can only add (a blocked loop must show at least its block)
and "some quiet call is within budget" where the load could push one call over.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

import kit
from kit._clock import now_ns
from kit._fidelity import Fidelity, FidelityBudget, LagMonitor, server_lateness
from kit._loop import new_event_loop, run_sync

QUICK = kit.Scenario(protocol="anthropic", events=5, gap=0.002)
BLOCK_S = 0.05


# -- LagMonitor ------------------------------------------------------------------------


def test_one_monitor_per_loop_started_lazily_and_stopped_with_the_loop():
    async def get():
        return LagMonitor.for_running_loop(), LagMonitor.for_running_loop()

    loop = new_event_loop()
    try:
        a, b = loop.run_until_complete(get())
        assert a is b and a.running
        loop.run_until_complete(asyncio.sleep(0.02))
        assert a.samples_between(0, now_ns())  # it beat while the loop ran
    finally:
        loop.close()
    c, _ = run_sync(get())
    assert c is not a  # another loop, another monitor
    c._arm(now_ns())  # its loop is closed: arming again stops it rather than failing
    assert not c.running


def test_a_blocked_loop_shows_its_block_and_only_inside_the_window():
    async def main():
        monitor = LagMonitor.for_running_loop()
        await asyncio.sleep(0.01)
        before = now_ns()
        await asyncio.sleep(0.01)
        t0 = now_ns()
        time.sleep(BLOCK_S)  # the loop can run nothing for 50 ms
        live = monitor.lag_between(t0)  # asked at once: the overdue heartbeat counts
        await asyncio.sleep(0.01)
        return monitor, before, t0, live

    monitor, before, t0, live = run_sync(main())
    period = monitor.period_ns / 1e9
    assert live >= BLOCK_S - period
    assert monitor.lag_between(t0, now_ns()) >= BLOCK_S - period
    assert max(late for _, late in monitor.samples_between(t0, now_ns())) >= BLOCK_S - period
    # a window that ended before the block began does not see it
    assert monitor.lag_between(before, t0 - 1_000_000) < BLOCK_S / 2
    # a window that starts in the middle of the block sees only its part
    mid = t0 + int(BLOCK_S / 2 * 1e9)
    assert monitor.lag_between(mid, now_ns()) <= BLOCK_S / 2 + 0.01


def test_a_stamp_counts_a_block_only_if_it_was_taken_as_the_loop_came_back():
    async def main():
        monitor = LagMonitor.for_running_loop()
        await asyncio.sleep(0.01)
        start = now_ns()
        time.sleep(BLOCK_S)  # a chunk arriving now would be stamped when the block ends
        await asyncio.sleep(0)
        right_after = now_ns()
        await asyncio.sleep(0.02)
        quiet = now_ns()  # stamped long after the loop came back
        time.sleep(BLOCK_S)  # a block with no stamp after it inside the call
        end = now_ns()
        await asyncio.sleep(0.01)
        return monitor, start, right_after, quiet, end

    monitor, start, right_after, quiet, end = run_sync(main())
    period = monitor.period_ns / 1e9
    assert monitor.lag_at([start, right_after], start, quiet) >= BLOCK_S - period
    # the same call, had it stamped nothing as the loop came back, was not made late
    assert monitor.lag_at([start, quiet], start, quiet) < BLOCK_S / 2
    # the window alone (lag_between) counts a block whether or not a stamp followed it
    assert monitor.lag_between(quiet, end) >= BLOCK_S - period
    assert monitor.lag_at([quiet, end], quiet, end) >= BLOCK_S - period  # `end` came right after it
    assert monitor.lag_at([], start, end) == 0.0


def test_the_ring_is_bounded():
    async def main():
        monitor = LagMonitor(asyncio.get_running_loop(), period=0.0005, size=16)
        monitor.start()
        await asyncio.sleep(0.05)
        monitor.stop()
        return monitor

    monitor = run_sync(main())
    samples = monitor.samples_between(0, now_ns())
    assert monitor._n > 16 and len(samples) == 16
    assert [t for t, _ in samples] == sorted(t for t, _ in samples)


# -- values ----------------------------------------------------------------------------


def test_fidelity_takes_the_worst_vantage_and_is_none_safe():
    assert Fidelity().kit_added_s is None and Fidelity().within()
    f = Fidelity(server_late_s=0.001, proxy_late_s=None, client_lag_s=0.004)
    assert f.kit_added_s == 0.004
    assert not f.within() and f.within(0.005) and f.within(FidelityBudget(added_s=0.004))
    assert Fidelity(server_late_s=0.0015).within()


@pytest.mark.parametrize("kwargs", [{"added_s": -1}, {"added_s": "2ms"}, {"quantile": 0}, {"quantile": 1.5}])
def test_budget_rejects_bad_values(kwargs):
    with pytest.raises(kit.ConfigError):
        FidelityBudget(**kwargs)


def test_server_lateness_counts_timed_writes_only():
    def entry(kind, scheduled, t):
        return SimpleNamespace(kind=kind, scheduled_ns=scheduled, t_ns=t)

    log = [entry("request", 0, 0), entry("headers", 0, 300_000), entry("delta", 1_000_000, 1_100_000)]
    assert server_lateness(log) == pytest.approx(0.0003)
    assert server_lateness([*log, entry("close", 0, 90_000_000)]) == pytest.approx(0.0003)  # after a flush
    assert server_lateness([entry("request", 5, 5)]) is None
    assert server_lateness([entry("delta", 10, 5)]) == 0.0  # early counts as on time


# -- one call: trace.fidelity ------------------------------------------------------------


def test_a_blocked_client_loop_puts_the_call_out_of_budget(server):
    url = server.url_for(kit.Scenario(protocol="anthropic", events=10, gap=0.01))

    async def main():
        async def block():
            await asyncio.sleep(0.03)  # the stream is under way
            time.sleep(BLOCK_S)

        blocker = asyncio.create_task(block())
        trace = await kit.astream(url)
        await blocker
        return trace

    trace = run_sync(main())
    assert trace.ok
    f = trace.fidelity
    assert f.client_lag_s is not None and f.client_lag_s >= BLOCK_S - 0.001
    assert f.kit_added_s >= f.client_lag_s and not f.within()
    assert f.server_late_s is not None  # the server's vantage is there too
    assert f.proxy_late_s is None  # no proxy on the way


def test_a_quiet_call_is_within_budget(server):
    # The default budget (2 ms) holds for a quiet call on a quiet machine (see
    # benchmarks/README.md); the test machine is shared and preempts whole processes
    # for several ms under load, so this asks for far less than the blocked call shows.
    url = server.url_for(QUICK)
    kit.stream(url)  # one-off set-up out of the way
    traces = [kit.stream(url) for _ in range(4)]
    assert all(t.ok for t in traces)
    assert any(t.fidelity.within(FidelityBudget(added_s=BLOCK_S / 2)) for t in traces), [t.fidelity for t in traces]


def test_a_call_through_a_proxy_gets_the_proxy_vantage(server):
    with kit.NetworkProxy(upstream=server, latency=0.02) as proxy:
        trace = kit.stream(proxy.url_for(QUICK))
        forwards = proxy.forwards_df()
        conns = proxy.connections_df()
    assert trace.ok
    f = trace.fidelity
    assert f.proxy_late_s is not None and f.proxy_late_s < 0.02  # the 20 ms are planned, not late
    assert f.kit_added_s >= f.proxy_late_s
    down = forwards[forwards.direction == "downstream"]
    # planned = received + the latency drawn; late = sent - planned
    assert ((down.planned_ns - down.t_recv_ns) >= 19_000_000).all()
    assert (down.late_ns == down.t_sent_ns - down.planned_ns).all()
    assert conns.requests.tolist() == [trace.attempt.request_id]  # the exact join
