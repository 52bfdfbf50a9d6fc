"""Timing fidelity of the fault server and overhead of the instrumented client.

Prints, for a 200-event stream with 10 ms gaps on loopback:
  - schedule error: the server's actual send time minus the time the plan wanted (one
    stream, then 100 concurrent streams), against a naive ``asyncio.sleep`` loop on the
    default event loop measured in the same run;
  - send-to-receive: the client's receipt time minus the server's send time, per chunk;
and the instrumentation overhead: ``kit.astream`` vs plain httpx ``aiter_raw`` on the
same 100 MB stream from the same server (throughput ratio, medians of alternating runs).

Run: ``.venv/bin/python benchmarks/bench_timing.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time

import httpx
import numpy as np

import kit
from kit._clock import now_ns


def pct(values, *qs):
    arr = np.asarray(values, dtype=float)
    return [float(np.percentile(arr, q)) for q in qs]


def fmt_ms(values) -> str:
    p50, p90, p99, mx = pct(values, 50, 90, 99, 100)
    return f"p50 {p50 * 1e3:7.3f} ms  p90 {p90 * 1e3:7.3f} ms  p99 {p99 * 1e3:7.3f} ms  max {mx * 1e3:7.3f} ms"


def content_writes(trace: kit.Trace):
    log = trace.server
    return log[(log["nbytes"] > 0) & ~log["kind"].isin(["request", "headers", "end"])]


def schedule_errors(traces) -> list[float]:
    out: list[float] = []
    for t in traces:
        w = content_writes(t)
        out += list(w["late_s"])
    return out


def send_to_receive(trace: kit.Trace) -> list[float]:
    """Pair each server write with the client chunk that completed its bytes."""
    w = content_writes(trace)
    chunks = trace.chunks
    # server bytes include chunked framing; compare payload arrival by order when 1:1
    if len(w) != len(chunks):
        return []
    return list((chunks["t_ns"].to_numpy() - w["t_ns"].to_numpy()) / 1e9)


async def naive_sleep_loop(n: int, gap: float) -> list[float]:
    """What a plain asyncio.sleep loop on the default loop achieves (the baseline)."""
    errors = []
    start = time.perf_counter()
    for i in range(1, n + 1):
        due = start + i * gap
        await asyncio.sleep(due - time.perf_counter())
        errors.append(time.perf_counter() - due)
    return errors


async def plain_httpx(url: str) -> tuple[int, float]:
    async with httpx.AsyncClient(timeout=None, trust_env=False) as c:
        t0 = now_ns()
        n = 0
        async with c.stream("POST", url + "/stream", json={}) as r:
            async for data in r.aiter_raw():
                n += len(data)
        return n, (now_ns() - t0) / 1e9


async def instrumented(url: str) -> tuple[int, float]:
    t0 = now_ns()
    trace = await kit.astream(url)
    assert trace.ok, trace.outcome
    return trace.attempt.bytes_received, (now_ns() - t0) / 1e9


def concurrent(isolate: bool, n: int = 100) -> None:
    label = "server in a child process (isolate=True)" if isolate else "server thread in the client's process"
    with kit.FaultServer(isolate=isolate) as server:
        url = server.url_for(kit.Scenario(protocol="anthropic", events=200, gap=0.01))

        async def many():
            limits = httpx.Limits(max_connections=2 * n, max_keepalive_connections=2 * n)
            async with httpx.AsyncClient(timeout=None, trust_env=False, limits=limits) as c:
                return await asyncio.gather(*(kit.astream(url, client=c) for _ in range(n)))

        t0 = time.perf_counter()
        traces = kit._loop.run_sync(many())
        wall = time.perf_counter() - t0
        time.sleep(0.2)  # let an isolated server ship its last log entries
        assert all(t.ok for t in traces), {t.outcome.cause for t in traces}
        print(f"-- {label}: wall {wall:.2f} s (ideal ~2.0 s)")
        print("schedule error (server actual - planned):  ", fmt_ms(schedule_errors(traces)))
        s2r = [x for t in traces for x in send_to_receive(t)]
        print("send-to-receive (client receipt - send):   ", fmt_ms(s2r) if s2r else "n/a")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    reps = 2 if args.quick else 5
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )

    with kit.FaultServer() as server:
        sc = kit.Scenario(protocol="anthropic", events=200, gap=0.01)
        url = server.url_for(sc)

        print("\n== one stream: 200 events, 10 ms gaps ==")
        traces = [kit.stream(url) for _ in range(reps)]
        assert all(t.ok for t in traces)
        print("schedule error (server actual - planned):  ", fmt_ms(schedule_errors(traces)))
        s2r = [x for t in traces for x in send_to_receive(t)]
        print("send-to-receive (client receipt - send):   ", fmt_ms(s2r) if s2r else "n/a (chunks coalesced)")
        base = asyncio.run(naive_sleep_loop(200, 0.01))
        print("baseline: naive asyncio.sleep, default loop:", fmt_ms(base))

        print("\n== instrumentation overhead: 100 MB raw stream ==")
        big = server.url_for(kit.Scenario(protocol="raw", events=1600, event_size=65536, gap=0))
        ratios, plain_rates, kit_rates = [], [], []
        for _ in range(reps):
            n1, t1 = asyncio.run(plain_httpx(big))
            n2, t2 = kit._loop.run_sync(instrumented(big))
            assert n1 == n2 == 1600 * 65536
            plain_rates.append(n1 / t1 / 1e6)
            kit_rates.append(n2 / t2 / 1e6)
            ratios.append((n2 / t2) / (n1 / t1))
        print(f"plain httpx aiter_raw: median {statistics.median(plain_rates):7.1f} MB/s")
        print(f"kit.astream:           median {statistics.median(kit_rates):7.1f} MB/s")
        print(
            f"throughput ratio kit/plain: median {statistics.median(ratios):.3f} (runs: {', '.join(f'{r:.3f}' for r in ratios)})"
        )

    print("\n== 100 concurrent streams: 200 events, 10 ms gaps, one client process ==")
    concurrent(isolate=False)
    concurrent(isolate=True)


if __name__ == "__main__":
    main()
