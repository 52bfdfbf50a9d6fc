"""Storms: a short fault-storm soak (the full one is benchmarks/soak.py), and hostile clients at the proxy.

The soak runs every scenario preset and hostile byte streams through random toxics,
then checks that nothing leaked (descriptors, threads, tasks, proxy connections,
memory), that every trial has exactly one outcome, and that the server and the proxies
still answer a healthy stream. The hostile-client tests throw garbage, a slowloris
trickle and a thousand idle connections at a NetworkProxy while a healthy client
streams through it.
"""

from __future__ import annotations

import importlib.util
import resource
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

import kit
from kit.proxy import NetworkProxy

LINUX = sys.platform.startswith("linux")


def _soak_module():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("kit_bench_soak", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="counts descriptors in /proc")
def test_short_soak_leaves_nothing_behind():
    soak = _soak_module()
    r = soak.run_soak(trials=480, concurrency=40, n_networks=3, seed=11, progress=False)
    print(soak.report(r))
    assert r["recorded"] == 480 and r["lost"] == 0 and r["doubled"] == 0
    assert r["leaks"] == {}, r["leaks"]
    assert all(r["healthy_after"].values()), r["healthy_after"]
    # live Python memory back near the start; the start here is small (the modules were
    # imported before tracing began), so allow 10% or 1 MB, whichever is larger
    before, after = r["before"]["traced_mb"], r["after"]["traced_mb"]
    assert after - before <= max(0.10 * before, 1.0), (before, after)
    assert r["server_late_p50_ms"] < 20  # generous: the benchmark records the real figures
    assert len(r["causes"]) >= 8  # the storm really was a storm: many kinds of failure


# ------------------------------------------------------------------ hostile clients


@pytest.fixture()
def guarded():
    """A server with a short request timeout (slowloris -> 408) behind a proxy with latency."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 5000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    with kit.FaultServer(request_timeout=1.0) as srv, NetworkProxy(upstream=srv, latency="5ms") as proxy:
        yield srv, proxy


def _healthy(proxy: NetworkProxy, srv: kit.FaultServer, out: list) -> None:
    out.append(kit.stream(proxy.url_for(srv.url_for(kit.Scenario(events=60, gap=0.01))), policy=kit.Policy(total=20)))


def _check_healthy(trace: kit.Trace) -> None:
    assert trace.ok, trace.outcome
    late = trace.server[trace.server["nbytes"] > 0]["late_s"].abs()
    assert late.quantile(0.99) < 0.05  # generous: benchmarks/soak.py records the tight figures
    gaps = trace.chunks["gap"].dropna()
    assert gaps.median() == pytest.approx(0.01, abs=0.005)  # the stream kept its rhythm through the proxy


def test_garbage_through_the_proxy_is_answered_and_logged(guarded):
    srv, proxy = guarded
    out: list = []
    healthy = threading.Thread(target=_healthy, args=(proxy, srv, out))
    healthy.start()
    replies = []
    for junk in (
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00" + b"\x01" * 200,
    ):
        with socket.create_connection(proxy.address, timeout=5) as s:
            s.sendall(junk)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            replies.append(data)
    healthy.join(30)
    _check_healthy(out[0])
    assert all(r.startswith(b"HTTP/1.1 400") for r in replies), replies  # forwarded, answered, closed
    rejected = [r for r in srv.requests if r.get("end") == "rejected"]
    assert len(rejected) >= 3
    closes = proxy.events_df().query("event == 'close'")
    assert len(closes) >= 4  # every connection logged its end (3 junk + the healthy one)


def test_slowloris_through_the_proxy_gets_408(guarded):
    srv, proxy = guarded
    out: list = []
    healthy = threading.Thread(target=_healthy, args=(proxy, srv, out))
    slow = socket.create_connection(proxy.address, timeout=10)
    healthy.start()
    t0 = time.monotonic()
    reply = b""
    for byte in b"POST /s/ok/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n":
        try:
            slow.sendall(bytes([byte]))  # one byte at a time, forever if let
        except OSError:
            break
        slow.settimeout(0.05)
        try:
            reply += slow.recv(4096)
            if reply:
                break
        except TimeoutError:
            continue
    slow.settimeout(5)
    while not reply.endswith(b"}"):
        chunk = slow.recv(4096)
        if not chunk:
            break
        reply += chunk
    slow.close()
    healthy.join(30)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert time.monotonic() - t0 < 5
    _check_healthy(out[0])
    assert any(r.get("status") == 408 and r["end"] == "rejected" for r in srv.requests)


@pytest.mark.slow
def test_a_thousand_idle_connections_at_the_proxy(guarded):
    srv, proxy = guarded
    idle = [socket.create_connection(proxy.address, timeout=10) for _ in range(1000)]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(proxy._open) < 1000:
            time.sleep(0.05)
        assert len(proxy._open) >= 1000  # all accepted and connected upstream, none refused
        out: list = []
        _healthy(proxy, srv, out)
        _check_healthy(out[0])
        # the server closes idle connections after its request timeout; the proxy passes that on
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proxy._open:
        time.sleep(0.05)
    assert not proxy._open  # every proxied connection finished, none left behind
    events = proxy.events_df()
    assert (events["event"] == "close").sum() >= 1000
