"""Experiment throughput and timing fidelity; bundle size.

1. 1,000 trials of a 1-second scenario (50 units 20 ms apart) at a given concurrency:
   wall time, trials/s, and the fault server's schedule error (``late_s``: actual minus
   planned write time) p50/p99/max, plus the client's end-to-end p50/p99. The baseline
   is the same scenario run sequentially (a few trials, extrapolated to 1,000).
2. Bundle size of 1,800 trials x 50 events (synthetic records with realistic jitter).

    .venv/bin/python benchmarks/bench_experiment.py [--trials 1000] [--concurrency 100 150]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import kit

ONE_SECOND = kit.Scenario(events=44, gap=0.02, name="one_second")  # 50 units, 49 gaps of 20 ms = 0.98 s


def run(trials: int, concurrency: int) -> dict[str, float]:
    exp = kit.Experiment(scenarios=[ONE_SECOND], trials=trials, seed=1)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = exp.run(concurrency, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    s = result.server
    late = s.loc[~s["kind"].isin(["request"]), "late_s"].to_numpy() * 1e3
    d = result.trials["duration_s"].to_numpy()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "trials_per_s": trials / wall,
        "ok": float(result.trials["ok"].mean()),
        "late_p50_ms": float(np.percentile(late, 50)),
        "late_p99_ms": float(np.percentile(late, 99)),
        "late_max_ms": float(late.max()),
        "e2e_p50_s": float(np.percentile(d, 50)),
        "e2e_p99_s": float(np.percentile(d, 99)),
    }


def bundle_size() -> tuple[int, float]:
    from test_bundle import _synthetic_records

    from kit.network import Network

    exp = kit.Experiment(
        scenarios=["ok", "slow_first_byte", "stall_mid_stream"],
        networks=[None, *(Network.from_kwargs(latency=f"{ms}ms") for ms in (50, 100, 200))],
        policies=[kit.Policy(first_chunk=s) for s in (0.5, 1, 2, 4, 8)],
        trials=30,
    )
    records = _synthetic_records(1800, 50, exp)
    result = exp.result_of(records)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = result.save(Path(tmp) / "b")
        save_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        t0 = time.perf_counter()
        kit.load(path)
        load_s = time.perf_counter() - t0
    return size, save_s, load_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[100])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    seq = run(5, 1)
    print(f"baseline sequential: {seq['e2e_p50_s']:.3f} s per trial -> {1000 * seq['e2e_p50_s']:.0f} s for 1,000")
    for c in args.concurrency:
        for _ in range(args.repeat):
            r = run(args.trials, c)
            print(
                f"concurrency {c}: {args.trials} trials in {r['wall_s']:.1f} s wall ({r['cpu_s']:.1f} s CPU), "
                f"{r['trials_per_s']:.1f} trials/s, ok {r['ok']:.3f}; schedule error p50 {r['late_p50_ms']:.2f} ms, "
                f"p99 {r['late_p99_ms']:.1f} ms, max {r['late_max_ms']:.0f} ms; e2e p50 {r['e2e_p50_s']:.3f} s, "
                f"p99 {r['e2e_p99_s']:.3f} s; speed-up vs sequential x{1000 * seq['e2e_p50_s'] / r['wall_s'] * args.trials / 1000:.0f}"
            )
    size, save_s, load_s = bundle_size()
    print(f"bundle 1,800 trials x 50 events: {size / 1e6:.2f} MB (save {save_s:.2f} s, load {load_s:.2f} s)")


if __name__ == "__main__":
    main()
