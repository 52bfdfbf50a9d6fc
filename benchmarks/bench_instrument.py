"""Instrumentation overhead: an SDK streaming call over a 2,000-event stream, with and without kit.instrument.

Both variants run in the same process against the same FaultServer, interleaved
(plain, instrumented, plain, ...) so drift on a shared machine hits both alike. The
figure is the ratio of median wall times (target: <= 1.05).

    .venv/bin/python benchmarks/bench_instrument.py [--reps 21] [--events 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import httpx2

import kit


def one_call(sdk_name: str, url: str, watch: bool) -> float:
    http = httpx2.Client(trust_env=False)
    rec = kit.instrument(http) if watch else None
    try:
        if sdk_name == "anthropic":
            import anthropic

            client = anthropic.Anthropic(base_url=url, api_key="x", http_client=http, max_retries=0, timeout=30)
            t = time.perf_counter()
            with client.messages.stream(
                model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                for _ in stream:
                    pass
            elapsed = time.perf_counter() - t
        else:
            import openai

            client = openai.OpenAI(base_url=url + "/v1", api_key="x", http_client=http, max_retries=0, timeout=30)
            t = time.perf_counter()
            for _ in client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                pass
            elapsed = time.perf_counter() - t
    finally:
        http.close()
    if rec is not None:
        tr = rec.trace  # the deferred bookkeeping, outside the SDK call's wall time
        assert tr.ok, tr.outcome
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} python {platform.python_version()}"
    )
    with kit.FaultServer() as server:
        for sdk_name, protocol in (("anthropic", "anthropic"), ("openai", "openai")):
            url = server.url_for(
                kit.Scenario(protocol=protocol, events=args.events, gap=0.0, name=f"bench{args.events}")
            )
            for watch in (False, True):  # warm-up
                one_call(sdk_name, url, watch)
            plain, watched = [], []
            for _ in range(args.reps):
                plain.append(one_call(sdk_name, url, False))
                watched.append(one_call(sdk_name, url, True))
            mp, mw = statistics.median(plain), statistics.median(watched)
            # paired ratios: each instrumented call against the plain call just before it
            paired = statistics.median(w / p for w, p in zip(watched, plain, strict=True))
            print(
                f"{sdk_name:<9} {args.events} events  plain median {mp * 1e3:7.1f} ms  "
                f"instrumented median {mw * 1e3:7.1f} ms  ratio {mw / mp:.3f}  paired ratio {paired:.3f}  "
                f"(min {min(plain) * 1e3:.1f} / {min(watched) * 1e3:.1f} ms, reps={args.reps})"
            )


if __name__ == "__main__":
    main()
