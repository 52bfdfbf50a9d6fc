"""Benchmark the recording reverse proxy (kit.Recorder) and the fidelity of a replay.

Run: ``.venv/bin/python benchmarks/bench_recorder.py`` (``--quick`` for a smaller run).

The TLS upstream (a FaultServer with a trustme certificate) and the recorder each run in
their own process, so neither competes with the client (this process) for the GIL; the
client reads with httpx, timestamping every body read. Timestamps are
``perf_counter_ns``, one clock for every process on the machine.

Figures:

1. added delay per chunk: a stream of small SSE-sized units every 5 ms; for every unit,
   the time from the upstream's write (its own log) to the client's read of its last
   byte, direct over TLS vs through the recorder (plain HTTP to the recorder, TLS from
   it); the added delay is the difference of the percentiles (p50, p99), and the paired
   per-unit differences' percentiles are shown too;
2. throughput of a 100 MB body (64 KiB units, no gaps), direct vs through the recorder
   (which keeps every byte), MB/s and the ratio;
3. replay timing error: a recorded stream (300 chunks, lognormal gaps) replayed from a
   fault server in its own process; per chunk, the replay's arrival minus the
   recording's (both after the response headers, matched by byte offset) and the error
   of each inter-chunk gap (``kit.replay_fidelity``), p50, p99, max.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import ssl
import statistics
import tempfile
import time
from typing import Any

import httpx
import numpy as np

import kit
from kit.replay import Replay

# ---------------------------------------------------------------- child processes


def _upstream(conn: Any, cert_dir: str) -> None:
    """A TLS FaultServer; answers 'register' (scenario dict -> URL), 'log' (request id) and 'stop'."""
    import trustme  # noqa: F401  - the CA files are made by the parent

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(cert_dir, "cert.pem"), os.path.join(cert_dir, "key.pem"))
    with kit.FaultServer(tls=ctx) as srv:
        conn.send(srv.url)
        while True:
            msg, arg = conn.recv()
            if msg == "register":
                conn.send(str(srv.url_for(kit.Scenario.from_dict(arg))))
            elif msg == "big":  # a body over the synthetic scenarios' 64 MiB bound: a replay of zeros
                block = 64 * 1024
                n = arg * 1024 * 1024 // block
                replay = Replay(
                    headers=(("content-type", "application/octet-stream"),),
                    framing="length",
                    times=(0.0,) * n,
                    chunks=(bytes(block),) * n,
                )
                conn.send(str(srv.url_for(kit.Scenario(protocol="raw", events=0, replay=replay, name="big"))))
            elif msg == "log":
                conn.send([(e.kind, e.nbytes, e.t_ns) for e in srv.log_for(arg)])
            else:
                conn.send(None)
                return


def _recorder(conn: Any, upstream: str, ca: str) -> None:
    """A kit.Recorder to ``upstream``; answers 'stats' and 'stop'."""
    with kit.Recorder(upstream, ca=ca) as rec:
        conn.send(rec.url)
        while True:
            msg = conn.recv()
            if msg == "stats":
                conn.send(
                    {
                        "calls": len(rec.traces),
                        "kept_bytes": rec.kept_bytes,
                        "capped": rec.capped,
                        "cpu_s": time.process_time(),
                        "reads": [(list(t.attempt.chunk_t), list(t.attempt.chunk_size)) for t in rec.traces],
                    }
                )
            else:
                conn.send(None)
                return


# ------------------------------------------------------------------ client side


async def _read(client: httpx.AsyncClient, url: str, rid: str) -> tuple[list[int], list[int], int]:
    """POST and read the body: (read times, read sizes, headers time)."""
    t, n = [], []
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with client.stream("POST", url, json=body, headers={"x-kit-request-id": rid}) as resp:
        h = time.perf_counter_ns()
        async for data in resp.aiter_raw():
            t.append(time.perf_counter_ns())
            n.append(len(data))
    return t, n, h


def _unit_delays(log: list[tuple[str, int, int]], t: list[int], n: list[int]) -> np.ndarray:
    """Per unit written by the server: client read time of its last byte minus write time (s)."""
    writes = [(nb, tn) for kind, nb, tn in log if nb > 0 and kind not in ("request", "headers", "end")]
    server_cum = np.cumsum([nb for nb, _ in writes])
    client_cum = np.cumsum(n)
    idx = np.searchsorted(client_cum, server_cum, side="left")
    ok = idx < len(t)
    return (np.asarray(t)[idx[ok]] - np.asarray([tn for _, tn in writes])[ok]) / 1e9


def pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    units = 200 if args.quick else 600
    runs = 2 if args.quick else 4
    mb = 20 if args.quick else 100

    import trustme

    tmp = tempfile.mkdtemp(prefix="kit-bench-rec-")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(os.path.join(tmp, "ca.pem"))
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(os.path.join(tmp, "cert.pem"))
    cert.private_key_pem.write_to_path(os.path.join(tmp, "key.pem"))
    ca_file = os.path.join(tmp, "ca.pem")

    spawn = mp.get_context("spawn")
    up_parent, up_child = spawn.Pipe()
    up = spawn.Process(target=_upstream, args=(up_child, tmp), daemon=True)
    up.start()
    up_parent.recv()

    def register(sc: kit.Scenario) -> str:
        up_parent.send(("register", sc.to_dict()))
        return up_parent.recv()

    def recorder(upstream: str) -> tuple[Any, Any, str]:
        parent, child = spawn.Pipe()
        p = spawn.Process(target=_recorder, args=(child, upstream, ca_file), daemon=True)
        p.start()
        return p, parent, parent.recv()

    def stop(p: Any, parent: Any, msg: Any = "stop") -> Any:
        parent.send(msg)
        out = parent.recv()
        if msg == "stop":
            p.join(10)
        return out

    print(f"# bench_recorder  python {platform.python_version()}  {platform.platform()}  cpus {os.cpu_count()}")
    print(f"# load average at start: {os.getloadavg()}")
    verify = ssl.create_default_context(cafile=ca_file)

    async def fetch(url: str, rid: str, tls: bool) -> tuple[list[int], list[int], int]:
        async with httpx.AsyncClient(verify=verify if tls else True, timeout=None) as c:
            return await _read(c, url, rid)

    # 1. added delay per chunk -------------------------------------------------------
    sc = kit.Scenario(events=units, gap=0.005, framing="length", name="bench-delay")
    url = register(sc)
    p, conn, rec_url = recorder(url)
    direct_all, via_all, paired, client_reads = [], [], [], []
    for r in range(runs):
        for how in ("direct", "via") if r % 2 == 0 else ("via", "direct"):
            rid = f"d{r}-{how}"
            target = (url if how == "direct" else rec_url) + "/v1/messages"
            t, n, _ = asyncio.run(fetch(target, rid, how == "direct"))
            up_parent.send(("log", rid))
            d = _unit_delays(up_parent.recv(), t, n)
            if how == "via":
                client_reads.append((t, n))
            (direct_all if how == "direct" else via_all).append(d)
        m = min(len(direct_all[-1]), len(via_all[-1]))
        paired.append(via_all[-1][:m] - direct_all[-1][:m])
    hop = []  # recorder's read of a chunk (it writes it on at once) -> the client's read of its last byte
    for (rt, rn), (ct, cn) in zip(stop(p, conn, "stats")["reads"], client_reads, strict=True):
        idx = np.searchsorted(np.cumsum(cn), np.cumsum(rn), side="left")
        ok = idx < len(ct)
        hop.append((np.asarray(ct)[idx[ok]] - np.asarray(rt)[ok]) / 1e9)
    stop(p, conn)
    hop_all = np.concatenate(hop)
    direct, via, pair = np.concatenate(direct_all), np.concatenate(via_all), np.concatenate(paired)
    print(f"\n## 1. added delay per chunk ({units} units every 5 ms, {runs} runs each, alternating)")
    print(f"direct TLS       : p50 {pct(direct, 50) * 1e6:8.1f} us   p99 {pct(direct, 99) * 1e6:8.1f} us")
    print(f"through recorder : p50 {pct(via, 50) * 1e6:8.1f} us   p99 {pct(via, 99) * 1e6:8.1f} us")
    print(
        f"added (p_via - p_direct): p50 {(pct(via, 50) - pct(direct, 50)) * 1e6:8.1f} us   "
        f"p99 {(pct(via, 99) - pct(direct, 99)) * 1e6:8.1f} us"
    )
    print(f"paired per-unit difference: p50 {pct(pair, 50) * 1e6:8.1f} us   p99 {pct(pair, 99) * 1e6:8.1f} us")
    print(
        f"recorder read -> client read (the extra hop): p50 {pct(hop_all, 50) * 1e6:8.1f} us   "
        f"p99 {pct(hop_all, 99) * 1e6:8.1f} us"
    )

    # 2. throughput ----------------------------------------------------------------------
    up_parent.send(("big", mb))
    url = up_parent.recv()
    print(f"\n## 2. throughput of a {mb} MiB body (64 KiB units, no gaps)")
    rates: dict[str, list[float]] = {"direct": [], "via": []}
    cpu: dict[str, list[float]] = {"direct": [], "via": [], "recorder": []}
    for r in range(max(2, runs // 2) if not args.quick else 1):
        p, conn, rec_url = recorder(url)
        cpu0 = stop(p, conn, "stats")["cpu_s"]
        for how in ("direct", "via") if r % 2 == 0 else ("via", "direct"):
            target = (url if how == "direct" else rec_url) + "/stream"
            c0 = time.process_time()
            t, n, h = asyncio.run(fetch(target, f"t{r}-{how}", how == "direct"))
            cpu[how].append(time.process_time() - c0)
            secs = (t[-1] - h) / 1e9
            rates[how].append(sum(n) / secs / 1e6)
        stats = stop(p, conn, "stats")
        cpu["recorder"].append(stats["cpu_s"] - cpu0)
        stop(p, conn)
    d, v = statistics.median(rates["direct"]), statistics.median(rates["via"])
    print(f"direct TLS       : {d:8.1f} MB/s  (runs: {', '.join(f'{x:.0f}' for x in rates['direct'])})")
    print(f"through recorder : {v:8.1f} MB/s  (runs: {', '.join(f'{x:.0f}' for x in rates['via'])})")
    print(
        f"ratio            : {v / d:8.2f}   (recorder kept {stats['kept_bytes'] / 1e6:.0f} MB, capped={stats['capped']})"
    )
    med = {k: statistics.median(x) for k, x in cpu.items()}
    print(
        f"CPU seconds per {mb} MiB (load-independent): client direct (TLS) {med['direct']:.2f}, "
        f"recorder (TLS in, plain out, keeps bytes) {med['recorder']:.2f}, client via recorder {med['via']:.2f}"
    )

    # 3. replay timing error -------------------------------------------------------------
    shape = kit.Scenario(events=294, gap=kit.Gap.lognormal(0.01, 0.6), seed=3, name="bench-replay")
    with kit.Recorder(register(shape), ca=ca_file) as rec:
        asyncio.run(fetch(rec.url + "/v1/messages", "rec", False))
    recorded = rec.traces[0]
    replay = kit.replay_scenario(recorded)
    errs, gaps = [], []
    with kit.FaultServer(isolate=True) as srv:
        replay_url = srv.url_for(replay)
        for _ in range(runs):
            replayed = kit.stream(replay_url)
            df = kit.replay_compare.table(recorded, replayed)
            errs.append(df["error_s"].abs().dropna().to_numpy())
            gaps.append(df["gap_error_s"].abs().dropna().to_numpy())
    fit = kit.replay_fidelity(recorded, replayed)
    e, g = np.concatenate(errs), np.concatenate(gaps)
    print(f"\n## 3. replay timing error ({len(recorded.attempt.chunk_t)} chunks, {runs} replays)")
    print(
        f"arrival after headers : p50 {pct(e, 50) * 1e3:6.3f} ms   p99 {pct(e, 99) * 1e3:6.3f} ms   max {e.max() * 1e3:6.3f} ms"
    )
    print(
        f"inter-chunk gap       : p50 {pct(g, 50) * 1e3:6.3f} ms   p99 {pct(g, 99) * 1e3:6.3f} ms   max {g.max() * 1e3:6.3f} ms"
    )
    print(
        f"bytes identical {fit['bytes_identical']} ({fit['bytes_compared']}), events identical {fit['events_identical']}"
    )

    up_parent.send(("stop", None))
    up_parent.recv()
    up.join(10)
    print(f"\n# load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
