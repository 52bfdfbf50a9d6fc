"""NetworkProxy(isolate=True) (kit/proxy/_isolated.py): the same proxy in a child process.

One isolated proxy per module (a child interpreter takes a second or more to start on
a loaded machine); real sockets, a real FaultServer, the kit's client.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

import kit
from kit.proxy import NetworkProxy

QUICK = kit.Scenario(protocol="anthropic", events=5, gap=0.002)


@pytest.fixture(scope="module")
def isolated(server):
    events: list[dict] = []
    with NetworkProxy(upstream=server, latency=0.02, isolate=True, on_event=events.append) as proxy:
        yield proxy, events


def test_it_runs_in_another_process_with_the_same_api(isolated, server):
    proxy, events = isolated
    assert isinstance(proxy, NetworkProxy) and proxy.running and proxy.isolate
    assert not any(t.name == "kit-network-proxy" for t in threading.enumerate())  # no proxy loop here
    state = proxy.child_state()
    assert state["pid"] != os.getpid()
    trace = kit.stream(proxy.url_for(QUICK))
    assert trace.ok and trace.summary()["ttfb_s"] >= 0.02  # the toxic applied, in the child
    conn = next(c for c in proxy.connections() if trace.attempt.request_id in c["requests"])
    assert conn["close_reason"] and conn["bytes_down"] > 0
    assert proxy.connection(conn["conn"])["requests"] == conn["requests"]
    forwards = proxy.forwards_df()
    down = forwards[(forwards.conn == conn["conn"]) & (forwards.direction == "downstream")]
    assert len(down) and (down.delay_ns >= 19_000_000).all() and down.late_ns.notna().all()
    assert {"open", "upstream_connected", "close"} <= {e["event"] for e in events if e["conn"] == conn["conn"]}
    f = trace.fidelity  # the proxy's lateness for this request came back from the child
    assert f.proxy_late_s is not None and f.proxy_late_s < 0.02


def test_live_toxic_changes_reach_the_child(isolated):
    proxy, _ = isolated
    before = kit.stream(proxy.url_for(QUICK)).summary()["ttfb_s"]
    proxy.set(latency="150ms")
    try:
        after = kit.stream(proxy.url_for(QUICK)).summary()["ttfb_s"]
        assert proxy.network.toxics[0].latency == 0.15
    finally:
        proxy.set(latency="20ms")
    assert after >= 0.15 and after > before


def test_clear_log_forgets_in_both_processes(isolated):
    proxy, _ = isolated
    kit.stream(proxy.url_for(QUICK))
    assert len(proxy.forwards_df())
    proxy.clear_log()
    assert len(proxy.forwards_df()) == 0 and not proxy.log
    assert all(c["close_reason"] is None for c in proxy.connections())


def test_async_use_and_stop(server):
    async def main():
        async with NetworkProxy(upstream=server, isolate=True) as proxy:
            trace = await kit.astream(proxy.url_for(QUICK))
        return proxy, trace

    proxy, trace = asyncio.run(main())
    assert trace.ok and not proxy.running
    assert len(proxy.forwards_df())  # the log outlives the child
    with pytest.raises(kit.ServerError, match="not running"):
        _ = proxy.address


def test_a_port_in_use_is_a_clear_error(isolated, server):
    proxy, _ = isolated
    with pytest.raises(kit.ServerError, match="cannot start the isolated network proxy"):
        NetworkProxy(upstream=server, listen=proxy.address, isolate=True).start()
