"""Fault-storm soak: thousands of streams through every preset and random toxics, then a leak check.

    .venv/bin/python benchmarks/soak.py                   # the full soak: 10,000 streams at concurrency 200
    .venv/bin/python benchmarks/soak.py --trials 600 --concurrency 50

One process drives every stream (``kit.astream``, one single-connection httpx client per
worker, as :class:`kit.Experiment` does) against one long-lived FaultServer and long-lived
NetworkProxies, each in its own process (``isolate=True``; ``--in-process`` puts them in
the driver, as before, for comparison): one proxy per random network (seeded toxics of
every kind, with random toxicity), one ``probe`` network (a constant latency, to measure
the proxy's timing error), and the direct path. Trial ``i`` takes scenario ``i % S`` and
network ``(i // S) % N``, so every pair is covered.

Measured (printed, and returned by :func:`run_soak`):

- trials/s during the storm;
- p50/p99 timing error under the storm: the server's ``late_s`` (actual - scheduled write
  time, from its log) and the probe proxy's forward delay minus its configured latency
  (its added-delay error), and every proxy's ``late_ns`` (sent - what its toxics planned);
- connect timeouts: no scenario or toxic here asks for one (a proxy accepts at once,
  whatever its toxics), so every ``timeout.connect`` is the kit's own doing;
- the kit's own distortion per trial (``trace.fidelity``): p50/p99 of ``kit_added_s`` and
  of the client loop's lag (one driver process runs every client: the runner's concern);
- outcomes: every trial recorded exactly once (nothing lost, nothing doubled);
- leaks, comparing the same quiet state before and after the storm (workers' clients
  closed, logs cleared): file descriptors of this process and of the server's process,
  kit threads, asyncio tasks on this loop and on each proxy's loop, open proxy
  connections, and memory (``tracemalloc``: live Python allocations, within 10% of the
  start; RSS is printed too but not judged: allocators keep freed pages);
- afterwards the server and every proxy still answer a healthy stream.
"""

from __future__ import annotations

import tracemalloc

if __name__ == "__main__":
    tracemalloc.start()  # before the imports, so "the start" is the whole process's Python memory

import argparse
import asyncio
import gc
import os
import platform
import random
import sys
import threading
import time
from typing import Any

import httpx
import numpy as np

import kit
from kit._child import settle_heap
from kit.client import connection_in_doubt
from kit.experiment._scheduler import _client
from kit.network import (
    Bandwidth,
    Latency,
    LimitData,
    Loss,
    Network,
    ResetPeer,
    Slicer,
    SlowClose,
    Stall,
    Timeout,
)
from kit.proxy import NetworkProxy

POLICY = kit.Policy(connect=2, headers=0.5, first_chunk=0.5, idle=0.5, total=3)
RETRYING = kit.Policy(
    connect=2, headers=0.5, first_chunk=0.5, idle=0.5, total=3, max_retries=2, backoff_initial=0.01, backoff_max=0.05
)
PROBE_LATENCY = 0.020  # s: the probe network's constant latency (no jitter)
HOSTILE = ("random_bytes", "random_chunks", "bad_chunk_size", "invalid_utf8")


# ------------------------------------------------------------------------- the grid


def scenarios() -> list[kit.Scenario]:
    """Every preset, plus the hostile byte streams a client must survive."""
    out = [kit.Scenario.preset(name) for name in kit.Scenario.presets()]
    out += [
        kit.Scenario(events=8, gap=0.002, name=f"hostile_{w}", faults=[kit.Hostile(after=3, what=w, size=4096)])
        for w in HOSTILE
    ]
    return out


def random_network(rng: random.Random, i: int) -> Network:
    """1-3 toxics of random kinds, values and toxicity."""
    makers = [
        lambda: Latency(
            rng.uniform(0, 0.05), jitter=rng.uniform(0, 0.01), distribution=rng.choice(["uniform", "normal", "pareto"])
        ),
        lambda: Bandwidth(rng.uniform(50e3, 5e6)),
        lambda: Slicer(rng.randint(16, 512), size_variation=rng.randint(0, 16), delay=rng.uniform(0, 0.001)),
        lambda: Stall(after_bytes=rng.randint(0, 4096), duration=rng.uniform(0.05, 0.3)),
        lambda: Loss(rng.uniform(0.01, 0.05), rto=0.02),
        lambda: LimitData(rng.randint(512, 8192)),
        lambda: ResetPeer(timeout=rng.uniform(0.05, 0.5)),
        lambda: Timeout(timeout=rng.uniform(0.1, 0.5)),
        lambda: SlowClose(rng.uniform(0.01, 0.1)),
    ]
    toxics = []
    for k, make in enumerate(rng.sample(makers, rng.randint(1, 3))):
        t = make()
        toxics.append(type(t)(**{**t.params(), "name": f"{t.kind}{k}", "toxicity": round(rng.uniform(0.3, 1.0), 2)}))
    return Network(tuple(toxics), name=f"random{i}")


# --------------------------------------------------------------------------- probes


def _fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _kit_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("kit-"))


def _proxy_tasks(proxy: NetworkProxy) -> int:
    if proxy.isolate:
        return proxy.child_state()["tasks"]

    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    return proxy._thread.call(count(), timeout=10)  # type: ignore[union-attr]


def _proxy_open(proxy: NetworkProxy) -> int:
    return proxy.child_state()["open"] if proxy.isolate else len(proxy._open)


def _proxy_fds(proxies: dict[str, NetworkProxy]) -> int | None:
    counts = [p.child_state()["fds"] for p in proxies.values() if p.isolate]
    return sum(counts) if counts and None not in counts else None


def _child_pid(server: kit.FaultServer) -> int | None:
    return server.pid


def _release_logs(server: kit.FaultServer, proxies: dict[str, NetworkProxy]) -> None:
    """Forget what the server and proxies logged (the storm's traces), as a long run would."""
    server.clear_log()
    for p in proxies.values():
        p.clear_log()


def _state(server: kit.FaultServer, proxies: dict[str, NetworkProxy], memory: bool) -> dict[str, Any]:
    gc.collect()
    pid = _child_pid(server)
    return {
        "fds": _fds(),
        "server_fds": _fds(pid) if pid else None,
        "server_rss_mb": _rss_mb(pid) if pid else None,
        "proxy_fds": _proxy_fds(proxies),
        "threads": _kit_threads(),
        "tasks": len(asyncio.all_tasks()) - 1,
        "proxy_tasks": sum(_proxy_tasks(p) for p in proxies.values()),
        "proxy_open": sum(_proxy_open(p) for p in proxies.values()),
        "traced_mb": tracemalloc.get_traced_memory()[0] / 2**20 if memory else None,
        "rss_mb": _rss_mb(),
    }


def _pct_ms(values: np.ndarray, q: float) -> float:
    """The ``q`` percentile in ms (NaN when nothing was measured)."""
    return float(np.percentile(values, q) * 1e3) if len(values) else float("nan")


def causes_of(causes: dict[str, int], cause: str) -> int:
    """How many trials ended with ``cause`` (in any phase)."""
    return sum(n for key, n in causes.items() if key.split("/", 1)[1] == cause)


# -------------------------------------------------------------------------- driving


def _clients(n: int) -> list[httpx.AsyncClient]:
    # the runner's own single-connection clients: they share one TLS context (building
    # one per client costs ~50 ms of loop each: 200 clients blocked the loop for 5-10 s)
    return [_client() for _ in range(n)]


async def _storm(
    plan: list[tuple[int, str, str, kit.Policy]],
    concurrency: int,
    isolate: bool,
    outcomes: dict[int, tuple[str, str]],
    doubled: list[int],
    late_ns: list[int],
    progress: bool,
    fidelity: list[tuple[float, float]] | None = None,
) -> float:
    """Run ``plan`` (trial, url, label, policy); returns the wall time."""
    queue: asyncio.Queue[tuple[int, str, str, kit.Policy]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    clients = _clients(min(concurrency, len(plan)))
    done = [0]
    t0 = time.perf_counter()

    async def worker(slot: int) -> None:
        while True:
            try:
                i, url, _, policy = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            trace = await kit.astream(url, policy=policy, client=clients[slot], trial=str(i))
            if any(connection_in_doubt(a) for a in trace.attempts):  # as the runner does: its pool may wait on it
                await clients[slot].aclose()
                clients[slot] = _client()
            for a in trace.attempts:
                if isolate:
                    await a.await_server_log()
                late_ns.extend(e.t_ns - e.scheduled_ns for e in a.server_log if e.kind not in ("request",))
            if fidelity is not None:
                f = trace.fidelity
                fidelity.append((f.kit_added_s or 0.0, f.client_lag_s or 0.0))
            if i in outcomes:
                doubled.append(i)
            o = trace.outcome
            outcomes[i] = (o.phase, o.cause)
            done[0] += 1
            if progress and done[0] % 1000 == 0:
                rate = done[0] / (time.perf_counter() - t0)
                print(f"  {done[0]:>6} trials  {rate:6.0f}/s", file=sys.stderr, flush=True)

    try:
        await asyncio.gather(*(worker(k) for k in range(len(clients))))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return time.perf_counter() - t0


async def _settle(server: kit.FaultServer, proxies: dict[str, NetworkProxy], target: dict[str, Any]) -> None:
    """Wait (up to 10 s) for connections the storm closed to finish closing everywhere."""
    deadline = time.monotonic() + 10
    pid = _child_pid(server)
    while time.monotonic() < deadline:
        gc.collect()
        quiet = _fds() <= target["fds"] and sum(_proxy_open(p) for p in proxies.values()) == 0
        if target.get("proxy_fds") is not None:
            quiet = quiet and (_proxy_fds(proxies) or 0) <= target["proxy_fds"]
        if pid and target.get("server_fds") is not None:
            quiet = quiet and _fds(pid) <= target["server_fds"]
        if quiet:
            return
        await asyncio.sleep(0.1)


async def arun_soak(
    trials: int = 10_000,
    concurrency: int = 200,
    seed: int = 8,
    n_networks: int = 8,
    memory: bool = True,
    isolate: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    if memory and not tracemalloc.is_tracing():
        tracemalloc.start()
    rng = random.Random(seed)
    nets = [random_network(rng, i) for i in range(n_networks)]
    probe = Network((Latency(PROBE_LATENCY),), name="probe")
    scs = scenarios()
    server = kit.FaultServer(isolate=isolate)
    await asyncio.to_thread(server.start)
    proxies: dict[str, NetworkProxy] = {}
    try:
        for i, net in enumerate([*nets, probe]):
            proxies[net.name] = NetworkProxy(
                upstream=server.address, network=net, seed=seed * 1000 + i, isolate=isolate
            )
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in proxies.values()))  # children start in parallel
        routes: list[tuple[str, NetworkProxy | None]] = [("direct", None)] + [(n, p) for n, p in proxies.items()]
        urls = {}
        for sc in scs:
            base = server.url_for(sc)
            for label, proxy in routes:
                urls[(sc.label, label)] = proxy.url_for(base) if proxy else base

        def plan(start: int, n: int) -> list[tuple[int, str, str, kit.Policy]]:
            out = []
            for i in range(start, start + n):
                sc = scs[i % len(scs)]
                label, _ = routes[(i // len(scs)) % len(routes)]
                out.append((i, urls[(sc.label, label)], label, RETRYING if i % 7 == 0 else POLICY))
            return out

        # warm-up: caches, pools and lazy imports settle before the baseline
        warm = plan(0, max(len(scs) * len(routes), min(1000, trials // 10)))
        await _storm(warm, concurrency, isolate, {}, [], [], False)
        _release_logs(server, proxies)
        settle_heap()  # as the kit's workers do: a full collection of this heap blocks the loop 100-250 ms
        await _settle(server, proxies, {"fds": 10**9})
        before = _state(server, proxies, memory)
        await _settle(server, proxies, before)
        before = _state(server, proxies, memory)
        snap0 = tracemalloc.take_snapshot() if memory and os.environ.get("KIT_SOAK_TRACE") else None

        outcomes: dict[int, tuple[str, str]] = {}
        doubled: list[int] = []
        late_ns: list[int] = []
        fidelity: list[tuple[float, float]] = []
        storm = plan(10**6, trials)
        wall = await _storm(storm, concurrency, isolate, outcomes, doubled, late_ns, progress, fidelity)
        fwd = proxies["probe"].forwards_df()
        fwd = fwd[(fwd["direction"] == "downstream") & ~fwd["dropped"] & (fwd["toxics"] == "latency")]
        proxy_err = (fwd["delay_ns"].astype("float64") / 1e9 - PROBE_LATENCY).to_numpy()
        planned = [p.forwards_df() for p in proxies.values()]
        proxy_late = np.concatenate([f["late_ns"].dropna().to_numpy(dtype="float64") / 1e9 for f in planned] or [[]])
        kit_added = np.asarray([a for a, _ in fidelity]) if fidelity else np.zeros(1)
        client_lag = np.asarray([c for _, c in fidelity]) if fidelity else np.zeros(1)
        if not late_ns:  # the clients gave up waiting for the logs (a starved machine): read the server's own
            await asyncio.sleep(1)
            late_ns = [e.t_ns - e.scheduled_ns for e in list(server.log) if e.kind != "request"]
        late = np.asarray(late_ns, dtype="float64") / 1e9
        causes: dict[str, int] = {}
        for phase, cause in outcomes.values():
            causes[f"{phase}/{cause}"] = causes.get(f"{phase}/{cause}", 0) + 1
        recorded, lost, n_doubled = len(outcomes), len(set(range(10**6, 10**6 + trials)) - set(outcomes)), len(doubled)
        connect_timeouts = causes_of(causes, "timeout.connect")
        del fwd, planned, storm, late_ns, outcomes, doubled  # the storm's traces, released
        _release_logs(server, proxies)
        await _settle(server, proxies, before)
        after = _state(server, proxies, memory)
        if snap0 is not None:
            for stat in tracemalloc.take_snapshot().compare_to(snap0, "lineno")[:15]:
                print("  grew:", stat, file=sys.stderr)

        healthy = {}
        for label, proxy in routes:
            base = server.url_for("ok")
            if proxy is not None and label != "probe":
                await asyncio.to_thread(proxy.clear)  # the proxy itself, without its toxics
            trace = await kit.astream(proxy.url_for(base) if proxy else base, policy=kit.Policy(total=10))
            healthy[label] = trace.ok
    finally:
        for p in proxies.values():
            await asyncio.to_thread(p.stop)
        await asyncio.to_thread(server.stop)

    leaks = {
        "fds": after["fds"] - before["fds"],
        "server_fds": (after["server_fds"] - before["server_fds"]) if before["server_fds"] is not None else 0,
        "proxy_fds": (after["proxy_fds"] - before["proxy_fds"]) if before["proxy_fds"] is not None else 0,
        "threads": len(after["threads"]) - len(before["threads"]),
        "tasks": after["tasks"] - before["tasks"],
        "proxy_tasks": after["proxy_tasks"] - before["proxy_tasks"],
        "proxy_open": after["proxy_open"],
    }
    leaks = {k: v for k, v in leaks.items() if v > 0}
    memory_ratio = after["traced_mb"] / before["traced_mb"] if memory else None
    return {
        "trials": trials,
        "concurrency": concurrency,
        "scenarios": len(scs),
        "networks": len(routes),
        "wall_s": wall,
        "trials_per_s": trials / wall,
        "recorded": recorded,
        "lost": lost,
        "doubled": n_doubled,
        "causes": dict(sorted(causes.items(), key=lambda kv: -kv[1])),
        "server_late_p50_ms": _pct_ms(late, 50),
        "server_late_p99_ms": _pct_ms(late, 99),
        "server_writes": len(late),
        "proxy_err_p50_ms": _pct_ms(proxy_err, 50),
        "proxy_err_p99_ms": _pct_ms(proxy_err, 99),
        "proxy_forwards": len(proxy_err),
        "proxy_late_p50_ms": _pct_ms(proxy_late, 50),
        "proxy_late_p99_ms": _pct_ms(proxy_late, 99),
        "proxy_late_forwards": len(proxy_late),
        "connect_timeouts": connect_timeouts,
        "kit_added_p50_ms": _pct_ms(kit_added, 50),
        "kit_added_p99_ms": _pct_ms(kit_added, 99),
        "client_lag_p50_ms": _pct_ms(client_lag, 50),
        "client_lag_p99_ms": _pct_ms(client_lag, 99),
        "isolated": isolate,
        "before": before,
        "after": after,
        "leaks": leaks,
        "memory_ratio": memory_ratio,
        "healthy_after": healthy,
    }


def run_soak(**kw: Any) -> dict[str, Any]:
    """Blocking :func:`arun_soak` (in a fresh event loop: the kit's precise one)."""
    from kit._loop import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(arun_soak(**kw))
    finally:
        loop.close()


def report(r: dict[str, Any]) -> str:
    b, a = r["before"], r["after"]
    lines = [
        f"machine: {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}, Python {platform.python_version()}",
        f"storm: {r['trials']} streams, concurrency {r['concurrency']}, {r['scenarios']} scenarios x {r['networks']} "
        f"networks (direct, probe, random)",
        f"trials/s: {r['trials_per_s']:.0f}  (wall {r['wall_s']:.1f} s)",
        f"outcomes: {r['recorded']} recorded, {r['lost']} lost, {r['doubled']} doubled",
        f"timing error under storm: server late_s p50 {r['server_late_p50_ms']:.2f} ms, "
        f"p99 {r['server_late_p99_ms']:.2f} ms ({r['server_writes']} writes); "
        f"proxy delay - latency p50 {r['proxy_err_p50_ms']:.2f} ms, p99 {r['proxy_err_p99_ms']:.2f} ms "
        f"({r['proxy_forwards']} forwards); every proxy's late_ns (sent - planned) p50 "
        f"{r['proxy_late_p50_ms']:.2f} ms, p99 {r['proxy_late_p99_ms']:.2f} ms ({r['proxy_late_forwards']} forwards)",
        f"connect timeouts (none asked for): {r['connect_timeouts']}; server and proxies "
        f"{'each in their own process' if r['isolated'] else 'in the driver process'}",
        f"kit's own distortion per trial (trace.fidelity): kit_added p50 {r['kit_added_p50_ms']:.1f} ms, "
        f"p99 {r['kit_added_p99_ms']:.1f} ms; client loop lag p50 {r['client_lag_p50_ms']:.1f} ms, "
        f"p99 {r['client_lag_p99_ms']:.1f} ms",
        f"leaks found: {len(r['leaks'])} {r['leaks'] or ''}",
        f"  fds {b['fds']} -> {a['fds']}; server fds {b['server_fds']} -> {a['server_fds']}; "
        f"proxy fds {b['proxy_fds']} -> {a['proxy_fds']}; "
        f"kit threads {len(b['threads'])} -> {len(a['threads'])}; tasks {b['tasks']} -> {a['tasks']}; "
        f"proxy tasks {b['proxy_tasks']} -> {a['proxy_tasks']}; open proxy conns {a['proxy_open']}",
        (
            f"memory (tracemalloc, live Python allocations): {b['traced_mb']:.1f} -> {a['traced_mb']:.1f} MB "
            f"({(r['memory_ratio'] - 1) * 100:+.1f}%)"
            if r["memory_ratio"] is not None
            else "memory: not traced"
        ),
        f"  RSS (not judged): {b['rss_mb']:.0f} -> {a['rss_mb']:.0f} MB; "
        f"server process RSS {b['server_rss_mb'] or 0:.0f} -> {a['server_rss_mb'] or 0:.0f} MB",
        f"healthy stream afterwards: {all(r['healthy_after'].values())} ({len(r['healthy_after'])} routes)",
        "outcomes by phase/cause: " + ", ".join(f"{k} {v}" for k, v in r["causes"].items()),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--networks", type=int, default=8, help="random networks (plus direct and the probe)")
    ap.add_argument("--no-tracemalloc", action="store_true", help="faster, but memory is judged by nothing")
    ap.add_argument("--in-process", action="store_true", help="server and proxies in the driver (the old way)")
    args = ap.parse_args()
    r = run_soak(
        trials=args.trials,
        concurrency=args.concurrency,
        seed=args.seed,
        n_networks=args.networks,
        memory=not args.no_tracemalloc,
        isolate=not args.in_process,
    )
    print(report(r))
    ok = not r["leaks"] and not r["lost"] and not r["doubled"] and all(r["healthy_after"].values())
    if r["memory_ratio"] is not None:
        ok = ok and r["memory_ratio"] <= 1.10
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
