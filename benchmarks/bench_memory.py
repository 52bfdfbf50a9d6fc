"""Long-running memory: ``kit serve`` RSS over 100k requests, ``kit proxy`` RSS over 10k connections.

    .venv/bin/python benchmarks/bench_memory.py                      # 100,000 requests, 10,000 connections
    .venv/bin/python benchmarks/bench_memory.py --requests 20000 --connections 3000

Both commands run as real subprocesses on loopback with their defaults (a log window of
the last 1,000 requests / connections). The same run measures a baseline: each command
again with ``--keep`` larger than the run (the old behaviour: every log entry kept), over
a tenth of the load, to show the growth per 1,000 the window removes. Requests are
``server_error_500`` answers (immediate, logged like any request) over one keep-alive connection (serve) and one new
connection per request through the proxy to a ``kit serve`` upstream (proxy). RSS comes
from psutil; the figure that counts is the growth from the first checkpoint to the last.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time

import psutil


def start(args: list[str]) -> tuple[subprocess.Popen, str]:
    """Start a kit command, return it and the URL its banner prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", *args, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            url = m.group(1)
        if line.startswith("Ctrl-C"):
            break
    assert url, "no banner"
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def rss_mb(proc: subprocess.Popen) -> float:
    return psutil.Process(proc.pid).memory_info().rss / 1e6


def drive(
    url: str, n: int, *, new_connection: bool, proc: subprocess.Popen, points: int = 10
) -> list[tuple[int, float]]:
    """``n`` requests to ``url`` (raw HTTP/1.1 on loopback); RSS of ``proc`` at ``points`` checkpoints."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    close = "connection: close\r\n" if new_connection else ""
    request = (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{close}content-length: 2\r\n\r\n{{}}"
    )
    samples = [(0, rss_mb(proc))]
    step = max(n // points, 1)
    sock = None
    for i in range(1, n + 1):
        if sock is None:
            sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(request.encode())
        _read_response(sock)
        if new_connection:
            sock.close()
            sock = None
        if i % step == 0:
            samples.append((i, rss_mb(proc)))
    if sock is not None:
        sock.close()
    return samples


def _read_response(sock: socket.socket) -> None:
    """Read one response with a content-length body (the 500 JSON error)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500"), head[:80]
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk


def report(title: str, samples: list[tuple[int, float]]) -> float:
    first = samples[1][1] if len(samples) > 1 else samples[0][1]
    last = samples[-1][1]
    print(f"{title}: " + "  ".join(f"{n:,}:{mb:.0f}MB" for n, mb in samples))
    print(f"  growth after the first checkpoint: {last - first:+.1f} MB")
    return last - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=10_000)
    a = parser.parse_args()
    print(f"machine: {psutil.cpu_count()} cpus, python {sys.version.split()[0]}; other work may be running")

    for keep, n in ((None, a.requests), (10**9, a.requests // 10)):
        measure(["serve", "--port", "0"], keep, n, "requests", new_connection=False)
    upstream, base = start(["serve", "--port", "0", "--keep", "100"])
    try:
        port = base.rsplit(":", 1)[1]
        for keep, n in ((None, a.connections), (10**9, a.connections // 10)):
            cmd = ["proxy", "--upstream", f"127.0.0.1:{port}", "--listen", "127.0.0.1:0"]
            measure(cmd, keep, n, "connections", new_connection=True)
    finally:
        stop(upstream)


def measure(cmd: list[str], keep: int | None, n: int, unit: str, *, new_connection: bool) -> None:
    """Run ``kit CMD`` (``--keep`` default, or ``keep``), drive ``n`` requests, print its RSS."""
    label = f"kit {cmd[0]} ({'default --keep 1000' if keep is None else 'baseline: --keep all'})"
    proc, url = start(cmd + ([] if keep is None else ["--keep", str(keep)]))
    try:
        t0 = time.perf_counter()
        samples = drive(f"{url}/s/server_error_500/v1/messages", n, new_connection=new_connection, proc=proc)
        dt = time.perf_counter() - t0
    finally:
        stop(proc)
    grow = report(f"{label}, {n:,} {unit} in {dt:.0f}s", samples)
    print(f"  per 1,000 {unit}: {grow / (n / 1000):+.2f} MB", flush=True)


if __name__ == "__main__":
    main()
