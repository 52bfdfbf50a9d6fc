"""Benchmark the NetworkProxy: overhead with no toxics, throughput, delay precision.

Run: ``.venv/bin/python benchmarks/bench_proxy.py`` (``--quick`` for a smaller run).

The proxy runs in this process on its own LoopThread; every traffic source and sink
(echo server, ping-pong clients, the 200 MB sender and its sink) runs in a separate
process, so they never compete with the proxy for the GIL. Every figure is measured
against a direct connection in the same run. Timestamps are ``perf_counter_ns``,
which is one clock for every process on the machine.

Figures:

1. added latency per small chunk with no toxics: 64-byte ping-pong through an echo
   server, direct vs proxied; a round trip crosses the proxy twice, so the added
   latency per chunk is half the added round trip (p50, p99), and the proxy's own log
   gives its read-to-write time per forward;
2. the same with 100 concurrent connections, each sending a record every 10 ms (open
   loop, like 100 concurrent streams), and (2b) the round trips per second the proxy
   sustains when 100 connections ping-pong as fast as they can (closed loop);
3. throughput of a 200 MB transfer, direct vs proxied (MB/s and the ratio);
4. precision of a 100 ms latency (jitter 0): 16-byte stamped records every 2 ms, the
   error of the added delay seen by the client and in the proxy's log (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from kit._clock import now_ns
from kit._loop import new_event_loop
from kit.proxy import READ_SIZE, NetworkProxy

Address = tuple[str, int]


# -- traffic processes (module level: they are started with "spawn") -----------------


def echo_server(pipe: Any) -> None:
    """Echo every byte back, from a protocol callback (the least overhead asyncio has)."""

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    loop = new_event_loop()
    server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0, backlog=1024))
    pipe.send(server.sockets[0].getsockname()[:2])
    loop.run_forever()


def sink_server(pipe: Any) -> None:
    """Accept connections one at a time; read each to EOF; report (bytes, t_last_ns)."""
    listener = socket.create_server(("127.0.0.1", 0))
    pipe.send(listener.getsockname()[:2])
    buffer = bytearray(1 << 20)
    while True:
        conn, _ = listener.accept()
        total = 0
        while n := conn.recv_into(buffer):
            total += n
        t_last = now_ns()
        conn.close()
        pipe.send((total, t_last))


def send_bytes(address: Address, total: int, pipe: Any) -> None:
    """Send ``total`` bytes as fast as possible; report when it started."""
    block = os.urandom(1 << 20)
    t_start = now_ns()
    with socket.create_connection(address) as sock:
        sent = 0
        while sent < total:
            n = min(len(block), total - sent)
            sock.sendall(block[:n] if n < len(block) else block)
            sent += n
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)
    pipe.send(t_start)


def ping_pong(address: Address, conns: int, rounds: int, size: int, pipe: Any) -> None:
    """``conns`` concurrent connections, each doing ``rounds`` round trips; report RTTs (ns).

    Protocol callbacks, not streams: with 100 connections on 2 cores the load generator
    must cost as little CPU as possible, or it measures itself.
    """
    warmup = 20
    message = b"x" * size
    rtts: list[int] = []

    class PingPong(asyncio.Protocol):
        def __init__(self, done: asyncio.Future[None]) -> None:
            self.done = done
            self.pending = 0
            self.count = 0
            self.t = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.send()

        def send(self) -> None:
            self.pending = size
            self.t = now_ns()
            self.transport.write(message)

        def data_received(self, data: bytes) -> None:
            self.pending -= len(data)
            if self.pending > 0:
                return
            if self.count >= warmup:
                rtts.append(now_ns() - self.t)
            self.count += 1
            if self.count < warmup + rounds:
                self.send()
            else:
                self.transport.close()
                self.done.set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = [loop.create_future() for _ in range(conns)]
        for future in done:
            await loop.create_connection(lambda f=future: PingPong(f), *address)
        await asyncio.gather(*done)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        start = now_ns()
        runner.run(main())
        elapsed = now_ns() - start
    pipe.send((rtts, elapsed))


def paced(address: Address, conns: int, count: int, interval: float, pipe: Any) -> None:
    """``conns`` connections, each sending a 16-byte stamped record every ``interval`` s
    (starts staggered), echoed back; report the round trips (ns). Open loop: the offered
    load is fixed, like many concurrent streams, so the RTT measures latency, not queueing
    at saturation."""
    rtts: list[int] = []

    class Paced(asyncio.Protocol):
        def __init__(self, offset: float, done: asyncio.Future[None]) -> None:
            self.offset = offset
            self.done = done
            self.buffer = b""
            self.received = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            loop = asyncio.get_running_loop()
            self.start = loop.time() + 0.05 + self.offset
            for i in range(count):
                loop.call_at(self.start + i * interval, self.send)

        def send(self) -> None:
            self.transport.write(struct.pack("!qq", 0, now_ns()))

        def data_received(self, data: bytes) -> None:
            t = now_ns()
            self.buffer += data
            while len(self.buffer) >= 16:
                _, t_sent = struct.unpack("!qq", self.buffer[:16])
                self.buffer = self.buffer[16:]
                rtts.append(t - t_sent)
                self.received += 1
            if self.received == count:
                self.transport.close()
                self.done.set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = [loop.create_future() for _ in range(conns)]
        for i, future in enumerate(done):
            await loop.create_connection(lambda o=i * interval / conns, f=future: Paced(o, f), *address)
        await asyncio.gather(*done)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
    pipe.send(rtts)


def stamped(address: Address, count: int, interval: float, pipe: Any) -> None:
    """Send 16-byte records (seq, t_sent_ns) every ``interval`` s; report arrival - t_sent."""

    async def main() -> list[int]:
        reader, writer = await asyncio.open_connection(*address)
        delays: list[int] = []

        async def receive() -> None:
            for _ in range(count):
                _, t_sent = struct.unpack("!qq", await reader.readexactly(16))
                delays.append(now_ns() - t_sent)

        receiver = asyncio.create_task(receive())
        start = now_ns()
        for i in range(count):
            delay = (start + int(i * interval * 1e9) - now_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(struct.pack("!qq", i, now_ns()))
        await receiver
        writer.close()
        return delays

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        pipe.send(runner.run(main()))


# -- orchestration ------------------------------------------------------------------

CTX = mp.get_context("spawn")


def run_child(target: Callable[..., None], *args: Any, timeout: float = 600) -> Any:
    """Run ``target(*args, pipe)`` in a fresh process and return what it sends back."""
    ours, theirs = CTX.Pipe()
    proc = CTX.Process(target=target, args=(*args, theirs), daemon=True)
    proc.start()
    if not ours.poll(timeout):
        proc.kill()
        raise RuntimeError(f"{target.__name__} timed out")
    result = ours.recv()
    proc.join(10)
    return result


class Server:
    """A long-running server process (echo or sink) and its address."""

    def __init__(self, target: Callable[[Any], None]) -> None:
        self.pipe, theirs = CTX.Pipe()
        self.proc = CTX.Process(target=target, args=(theirs,), daemon=True)
        self.proc.start()
        self.address: Address = tuple(self.pipe.recv())  # type: ignore[assignment]

    def close(self) -> None:
        self.proc.kill()
        self.proc.join(10)


def cpu_seconds() -> float:
    """CPU time of this process, which runs nothing but the proxy during a measurement."""
    try:
        import resource
    except ImportError:  # Windows
        return time.process_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def us(ns: float) -> str:
    return f"{ns / 1e3:8.1f} us"


def small_chunks(echo: Server, measure: Callable[[Address], list[int]], repeats: int) -> dict[str, float]:
    direct: list[int] = []
    proxied: list[int] = []
    in_proxy: list[int] = []
    cpu = 0.0
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        direct += measure(echo.address)
        with NetworkProxy(echo.address) as proxy:
            before = cpu_seconds()
            proxied += measure(proxy.address)
            cpu += cpu_seconds() - before
            forwards = proxy.forwards_df()
        in_proxy += forwards.delay_ns.dropna().astype("int64").tolist()
    result = {
        "direct_p50": pct(direct, 50),
        "direct_p99": pct(direct, 99),
        "proxied_p50": pct(proxied, 50),
        "proxied_p99": pct(proxied, 99),
        "in_proxy_p50": pct(in_proxy, 50),
        "in_proxy_p99": pct(in_proxy, 99),
        "samples": len(proxied),
        "cpu_per_forward": cpu / len(in_proxy) * 1e9,
    }
    # a round trip crosses the proxy twice: once upstream, once downstream
    result["added_per_chunk_p50"] = (result["proxied_p50"] - result["direct_p50"]) / 2
    result["added_per_chunk_p99"] = (result["proxied_p99"] - result["direct_p99"]) / 2
    return result


def print_small(title: str, r: dict[str, float]) -> None:
    print(f"\n{title} ({r['samples']} round trips each way)")
    print(f"  direct RTT             p50 {us(r['direct_p50'])}   p99 {us(r['direct_p99'])}")
    print(f"  proxied RTT            p50 {us(r['proxied_p50'])}   p99 {us(r['proxied_p99'])}")
    print(f"  added per chunk        p50 {us(r['added_per_chunk_p50'])}   p99 {us(r['added_per_chunk_p99'])}")
    print(f"  in-proxy read->write   p50 {us(r['in_proxy_p50'])}   p99 {us(r['in_proxy_p99'])}")
    print(f"  proxy CPU per forward      {us(r['cpu_per_forward'])} (user + system, includes the syscalls)")


def capacity(echo: Server, conns: int, rounds: int, repeats: int) -> dict[str, float]:
    """Closed loop at saturation: round trips per second, direct vs proxied."""
    direct, proxied = [], []
    for _ in range(repeats):
        rtts, elapsed = run_child(ping_pong, echo.address, conns, rounds, 64)
        direct.append(len(rtts) / (elapsed / 1e9))
        with NetworkProxy(echo.address) as proxy:
            rtts, elapsed = run_child(ping_pong, proxy.address, conns, rounds, 64)
        proxied.append(len(rtts) / (elapsed / 1e9))
    return {"direct": statistics.median(direct), "proxied": statistics.median(proxied)}


def throughput(sink: Server, total: int, repeats: int) -> dict[str, float]:
    def once(address: Address) -> float:
        t_start = run_child(send_bytes, address, total)
        nbytes, t_last = sink.pipe.recv()
        assert nbytes == total, (nbytes, total)
        return total / ((t_last - t_start) / 1e9) / 1e6

    direct, proxied = [], []
    cpu = 0.0
    for _ in range(repeats):
        direct.append(once(sink.address))
        with NetworkProxy(sink.address) as proxy:
            before = cpu_seconds()
            proxied.append(once(proxy.address))
            cpu += cpu_seconds() - before
    return {
        "cpu_s_per_gb": cpu / (repeats * total / 1e9),
        "direct_mb_s": statistics.median(direct),
        "proxied_mb_s": statistics.median(proxied),
        "ratio": statistics.median(proxied) / statistics.median(direct),
        "direct_all": direct,
        "proxied_all": proxied,
    }


def latency_precision(echo: Server, latency: float, count: int, interval: float) -> dict[str, float]:
    base = run_child(stamped, echo.address, count, interval)
    baseline = statistics.median(base)
    with NetworkProxy(echo.address, latency=latency) as proxy:
        delays = run_child(stamped, proxy.address, count, interval)
        forwards = proxy.forwards_df().query("direction == 'downstream'")
    target = latency * 1e9
    client_error = [abs(d - baseline - target) for d in delays]
    proxy_error = [abs(d - target) for d in forwards.delay_ns.astype("int64")]
    return {
        "baseline_p50": baseline,
        "client_err_p50": pct(client_error, 50),
        "client_err_p99": pct(client_error, 99),
        "client_err_max": max(client_error),
        "proxy_err_p50": pct(proxy_error, 50),
        "proxy_err_p99": pct(proxy_error, 99),
        "proxy_err_max": max(proxy_error),
        "samples": len(delays),
    }


def machine() -> str:
    lines = [f"nproc: {os.cpu_count()}", f"python: {platform.python_version()} ({sys.executable})"]
    lines.append(f"platform: {platform.platform()}")
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()[:10]
        lines += [f"lscpu: {line}" for line in lscpu]
    except (OSError, subprocess.SubprocessError):
        pass
    with_load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if with_load:
        lines.append(f"load average at start: {with_load[0]:.2f} {with_load[1]:.2f} {with_load[2]:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    args = parser.parse_args()
    rounds, repeats, total = (500, 2, 50_000_000) if args.quick else (2000, 3, 200_000_000)
    paced_count = 50 if args.quick else 200

    print(machine())
    echo, sink = Server(echo_server), Server(sink_server)
    try:
        started = time.perf_counter()
        one = small_chunks(echo, lambda a: run_child(ping_pong, a, 1, rounds, 64)[0], repeats)
        print_small("1. small chunks (64 B ping-pong), 1 connection, no toxics", one)
        many = small_chunks(echo, lambda a: run_child(paced, a, 100, paced_count, 0.010), repeats)
        print_small("2. small chunks (16 B), 100 concurrent connections, each every 10 ms, no toxics", many)
        cap = capacity(echo, 100, max(50, rounds // 10), repeats)
        print("\n2b. saturation, 100 connections in closed-loop ping-pong: round trips per second")
        print(
            f"  direct {cap['direct']:8.0f}/s   proxied {cap['proxied']:8.0f}/s   ratio {cap['proxied'] / cap['direct']:.0%}"
        )

        tp = throughput(sink, total, repeats)
        print(f"\n3. throughput, {total / 1e6:.0f} MB, no toxics (median of {repeats})")
        print(f"  direct   {tp['direct_mb_s']:8.0f} MB/s   runs: {', '.join(f'{x:.0f}' for x in tp['direct_all'])}")
        print(f"  proxied  {tp['proxied_mb_s']:8.0f} MB/s   runs: {', '.join(f'{x:.0f}' for x in tp['proxied_all'])}")
        print(f"  ratio    {tp['ratio']:8.0%}")
        print(f"  proxy CPU {tp['cpu_s_per_gb']:.2f} s per GB forwarded ({READ_SIZE // 1024} KiB reads)")

        lp = latency_precision(echo, 0.100, 500 if args.quick else 1500, 0.002)
        print(f"\n4. latency 100 ms, jitter 0: error of the added delay ({lp['samples']} records, 2 ms apart)")
        print(f"  client-side   p50 {us(lp['client_err_p50'])}   p99 {us(lp['client_err_p99'])}", end="")
        print(f"   max {us(lp['client_err_max'])}")
        print(f"  proxy's log   p50 {us(lp['proxy_err_p50'])}   p99 {us(lp['proxy_err_p99'])}", end="")
        print(f"   max {us(lp['proxy_err_max'])}")
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
    finally:
        echo.close()
        sink.close()


if __name__ == "__main__":
    main()
