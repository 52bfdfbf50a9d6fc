"""The first kit.stream of a process against the tenth: is one-off set-up counted as latency?

    .venv/bin/python benchmarks/bench_first_call.py [--processes 8]

Each of ``--processes`` fresh interpreters starts an isolated FaultServer, warms *the
server* with raw-socket requests (so only the client is cold), then makes ten
``kit.stream`` calls of a tiny scenario and reports each call's TTFB, client loop lag and
set-up time. Printed: medians over processes of call 1 and of calls 2-10, and their
ratio. Run it with ``PYTHONPATH`` pointing at another checkout to compare versions in
one sitting (the machine's load drifts: compare ratios from one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, socket
import kit
sc = kit.Scenario(protocol="anthropic", events=3, gap=0.001)
with kit.FaultServer(isolate=True) as s:
    url = s.url_for(sc)
    path = "/" + url.split("/", 3)[3] + "/v1/messages"
    for _ in range(3):  # warm the server with raw sockets, not the client
        with socket.create_connection(s.address) as c:
            c.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}".encode())
            got = b""
            while not got.endswith(b"0\r\n\r\n") and (data := c.recv(65536)):  # to the last chunk
                got += data
    calls = []
    for _ in range(10):
        tr = kit.stream(url)
        calls.append({"ttfb_s": float(tr.summary()["ttfb_s"]), "client_lag_s": getattr(tr, "client_lag_s", None),
                      "setup_s": getattr(tr, "setup_s", None)})
print(json.dumps(calls))
"""


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=8)
    args = ap.parse_args()
    runs = []
    for i in range(args.processes):
        # from a neutral directory, so PYTHONPATH (not the current one) decides which kit runs
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, cwd="/")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  process {i + 1}/{args.processes} done", file=sys.stderr)
    first = [r[0]["ttfb_s"] for r in runs]
    later = [statistics.median(c["ttfb_s"] for c in r[1:]) for r in runs]
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"kit from: {os.environ.get('PYTHONPATH') or 'installed'}; {args.processes} processes x 10 calls")
    print(f"TTFB call 1     median {_ms(first)}")
    print(f"TTFB calls 2-10 median {_ms(later)}")
    print(f"ratio call 1 / calls 2-10: {statistics.median(f / x for f, x in zip(first, later, strict=True)):.2f}")
    setups = [r[0]["setup_s"] for r in runs if r[0]["setup_s"] is not None]
    if setups:
        print(f"set-up of call 1 (Trace.setup_s, not in TTFB) median {_ms(setups)}")
        print(f"set-up of calls 2-10 median {_ms([statistics.median(c['setup_s'] for c in r[1:]) for r in runs])}")
    lags = [r[0]["client_lag_s"] for r in runs if r[0]["client_lag_s"] is not None]
    if lags:
        print(f"client lag of call 1 median {_ms(lags)}")


if __name__ == "__main__":
    main()
