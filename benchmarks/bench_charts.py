"""Charts and explorer timings.

1. Time to a Vega-Lite spec (``chart.to_dict()``, schema validation included) for each
   chart at 10^4, 10^5 and 10^6 chunks (a Result-shaped input of 200 trials on a 2 x 2
   grid), median of a few runs.
2. Explorer: a control change to a redrawn chart (headless: the JupyterChart's spec
   replaced), minus the scenario's own duration, over repeated changes.

Run: ``.venv/bin/python benchmarks/bench_charts.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_charts import big_result

import kit.charts as kc

CHARTS = {
    "timeline": kc.timeline,
    "vantage_points": kc.vantage_points,
    "cumulative_bytes": kc.cumulative_bytes,
    "gaps (hist)": kc.gaps,
    "gaps (ecdf, log)": lambda d: kc.gaps(d, kind="ecdf", log=True),
    "first_chunk_ecdf": kc.first_chunk_ecdf,
    "outcome_heatmap": kc.outcome_heatmap,
    "attempts_gantt": kc.attempts_gantt,
}


def time_to_spec(sizes: list[int], repeats: int) -> None:
    print(f"{'chart':<20}" + "".join(f"{n:>12,}" for n in sizes) + "   (median s to spec)")
    data = {n: big_result(n, 200) for n in sizes}
    for name, f in CHARTS.items():
        cols = []
        for n in sizes:
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                f(data[n]).to_dict()
                ts.append(time.perf_counter() - t0)
            cols.append(statistics.median(ts))
        print(f"{name:<20}" + "".join(f"{c:>12.3f}" for c in cols))


async def explorer_latency(changes: int) -> None:
    from kit.widgets import Explorer

    ex = Explorer("slow_first_byte", autorun=False)
    try:
        ex.scenario_controls.set(first_byte_delay=0.3)
        await ex.wait()
        over, draw = [], []
        for i in range(changes):
            ex.policy_controls.set(first_chunk=0.1 if i % 2 else 1.0)  # flips timeout <-> ok
            await ex.wait()
            over.append(ex.last_latency_s - ex.trace.duration)
            t0 = time.perf_counter()
            ex.timeline.chart = kc.timeline(ex.trace)
            ex.cumulative.chart = kc.cumulative_bytes(ex.trace)
            draw.append(time.perf_counter() - t0)
        over.sort()
        print(
            f"explorer: change -> redrawn (minus the stream's own duration) over {changes} changes: "
            f"median {statistics.median(over) * 1000:.0f} ms, p90 {over[int(0.9 * (len(over) - 1))] * 1000:.0f} ms, "
            f"max {over[-1] * 1000:.0f} ms; of which building both charts + specs: median "
            f"{statistics.median(draw) * 1000:.0f} ms"
        )
    finally:
        ex.close()


def main() -> None:
    quick = "--quick" in sys.argv
    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, {platform.system()}"
    )
    time_to_spec([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000], 1 if quick else 3)
    asyncio.run(explorer_latency(6 if quick else 20))


if __name__ == "__main__":
    main()
