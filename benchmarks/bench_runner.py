"""The experiment runner under load: fidelity at default settings, ceilings, Dask.

Each part prints figures and, where a target compares two runs, both come from the
same invocation (the ratio is what counts on a shared machine):

1. ``zero``: a zero-delay scenario (50 events 10 ms apart), ``--trials`` trials at the
   default settings (adaptive concurrency, worker processes) vs ``--baseline`` of the
   same trials run one at a time: TTFB p50/p99 of both, client lag p99, the
   concurrency the runner settled at, the share of trials within the fidelity budget.
2. ``streams``: 100 concurrent 10 ms-gap streams (fixed concurrency 100 on one worker):
   client send-to-receive p99 (server write -> client event, matched in order), then
   the same trials with adaptive concurrency: the ceiling it settles at and its p99.
3. ``second``: ``--trials`` one-second trials at default settings: wall, trials/s,
   events/s, share within budget, settled concurrency.
4. ``dask``: ``--dask-trials`` short trials (seeded faults: varied outcomes) on a Dask
   ``LocalCluster`` (2 worker processes) and in one process: identical per-trial
   outcomes?, wall of each, overhead per trial.

    .venv/bin/python benchmarks/bench_runner.py [zero streams second dask] [--trials 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

import kit

ZERO = kit.Scenario(protocol="anthropic", events=50, gap=0.01, name="zero_delay")  # no first-byte delay
STREAM = kit.Scenario(protocol="anthropic", events=50, gap=0.01, name="stream_10ms")
ONE_SECOND = kit.Scenario(events=44, gap=0.02, name="one_second")  # 50 units, 49 gaps of 20 ms
SHORT = kit.Scenario(events=4, gap=0.002, faults=(kit.Close(after=2),), fault_probability=0.3, name="short")
OUTCOME = ["trial_id", "seed", "phase", "cause", "ok", "chunks", "events", "bytes"]


def q(values: np.ndarray | pd.Series, p: float) -> float:
    v = np.asarray(values, dtype="float64")
    v = v[~np.isnan(v)]
    return float(np.percentile(v, p)) if len(v) else float("nan")


def fidelity(result: kit.Result) -> str:
    t = result.trials
    lag = t["client_lag_s"] if "client_lag_s" in t else pd.Series(dtype="float64")
    within = t["within_budget"].mean() if "within_budget" in t else float("nan")
    return (
        f"client lag p50 {q(lag, 50) * 1e3:.2f} ms p99 {q(lag, 99) * 1e3:.2f} ms; "
        f"within budget {within:.1%}; concurrency {result.meta.get('concurrency')} "
        f"({result.meta.get('concurrency_mode')}, {result.meta.get('executor')})"
    )


def send_to_receive_ms(result: kit.Result) -> np.ndarray:
    """Client event time minus server write time, matching the k-th data write to the k-th event."""
    s = result.server
    s = s[~s["kind"].isin(["accept", "request", "headers", "end", "close", "reset", "client_closed", "error"])]
    e = result.events
    s = s.assign(k=s.groupby("request_id").cumcount())
    e = e.assign(k=e.groupby("request_id").cumcount())
    m = s.merge(e, on=["request_id", "k"], suffixes=("_s", "_c"))
    return (m["t_ns_c"] - m["t_ns_s"]).to_numpy() / 1e6


def zero(trials: int, baseline: int) -> None:
    exp = kit.Experiment(scenarios=[ZERO], policies=[kit.Policy(total=30)], trials=trials, seed=1)
    t0 = time.perf_counter()
    r = exp.run(progress=False)
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = kit.Experiment(scenarios=[ZERO], policies=[kit.Policy(total=30)], trials=baseline, seed=1).run(
        1, workers=0, progress=False
    )
    wall1 = time.perf_counter() - t0
    a, b = r.trials["ttfb_s"] * 1e3, one.trials["ttfb_s"] * 1e3
    print(f"zero: default, {trials} trials in {wall:.1f} s: TTFB p50 {q(a, 50):.2f} ms p99 {q(a, 99):.2f} ms")
    print(f"      {fidelity(r)}")
    print(f"zero: one at a time, {baseline} trials in {wall1:.1f} s: TTFB p50 {q(b, 50):.2f} ms p99 {q(b, 99):.2f} ms")
    print(f"      {fidelity(one)}")
    print(f"zero: difference p50 {q(a, 50) - q(b, 50):+.2f} ms, p99 {q(a, 99) - q(b, 99):+.2f} ms")
    if "within_budget" in r.trials:
        inb = r.trials[r.trials["within_budget"]]["ttfb_s"] * 1e3
        print(f"zero: default, within-budget trials only ({len(inb)}): p50 {q(inb, 50):.2f} ms p99 {q(inb, 99):.2f} ms")


def streams() -> None:
    exp = kit.Experiment(scenarios=[STREAM], trials=100, seed=2)
    fixed = exp.run(100, workers=1, progress=False)
    d = send_to_receive_ms(fixed)
    print(f"streams: 100 at once (fixed, 1 worker): send->receive p50 {q(d, 50):.2f} ms p99 {q(d, 99):.2f} ms")
    print(f"      {fidelity(fixed)}")
    auto = kit.Experiment(scenarios=[STREAM], trials=300, seed=2).run(workers=1, progress=False)
    d = send_to_receive_ms(auto)
    print(
        f"streams: adaptive (1 worker): ceiling {auto.meta['concurrency']} streams; "
        f"send->receive p50 {q(d, 50):.2f} ms p99 {q(d, 99):.2f} ms"
    )
    print(f"      {fidelity(auto)}")


def second(trials: int) -> None:
    exp = kit.Experiment(scenarios=[ONE_SECOND], trials=trials, seed=3)
    t0 = time.perf_counter()
    r = exp.run(progress=False)
    wall = time.perf_counter() - t0
    events = int(r.trials["events"].sum())
    print(
        f"second: {trials} one-second trials in {wall:.1f} s ({trials / wall:.1f} trials/s, "
        f"{events / wall:.0f} events/s); ok {r.trials['ok'].mean():.1%}"
    )
    print(f"      {fidelity(r)}")


def dask(trials: int) -> None:
    from distributed import Client, LocalCluster

    exp = kit.Experiment(scenarios=[SHORT], trials=trials, seed=4)
    t0 = time.perf_counter()
    alone = exp.run(workers=0, progress=False)
    wall1 = time.perf_counter() - t0
    with (
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        on = exp.run(executor=client, progress=False)
        wall2 = time.perf_counter() - t0
    same = alone.trials[OUTCOME].equals(on.trials[OUTCOME])
    print(f"dask: {trials} trials; one process {wall1:.1f} s ({wall1 / trials * 1e3:.2f} ms/trial)")
    print(f"      {fidelity(alone)}")
    print(f"dask: LocalCluster x2 {wall2:.1f} s ({wall2 / trials * 1e3:.2f} ms/trial); identical outcomes: {same}")
    print(f"      {fidelity(on)}")
    print(f"dask: outcomes {alone.trials['cause'].value_counts().to_dict()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["zero", "streams", "second", "dask"])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=200, help="zero: trials run one at a time")
    ap.add_argument("--dask-trials", type=int, default=10000)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    for part in args.parts:
        t0 = time.perf_counter()
        if part == "zero":
            zero(args.trials, args.baseline)
        elif part == "streams":
            streams()
        elif part == "second":
            second(args.trials)
        elif part == "dask":
            dask(args.dask_trials)
        print(f"({part}: {time.perf_counter() - t0:.0f} s, load average now {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
