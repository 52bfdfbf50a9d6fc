"""``kit proxy``: run the network-conditions proxy from a shell until Ctrl-C.

Prints where it listens, then one line per connection when it opens and when it
closes (bytes each way, why it closed, which toxics hit it)::

    kit proxy --upstream 127.0.0.1:8080 --latency 200ms --jitter 50ms --bandwidth 20KB/s
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._clock import now_ns, ns_to_s
from .._errors import KitError
from .._units import format_size
from ..proxy import NetworkProxy
from ._common import add_foreground_options, run_until_interrupted

__all__ = ["main", "register"]

# (flag, shorthand keyword, help): every value is a string with units, parsed by the toxics
_TOXIC_FLAGS = [
    ("--latency", "latency", "delay per chunk, e.g. 200ms"),
    ("--jitter", "jitter", "latency spread, e.g. 50ms"),
    ("--distribution", "distribution", "jitter distribution: uniform (default), normal, pareto"),
    ("--bandwidth", "bandwidth", "rate limit, e.g. 20KB/s, 1MiB/s, 160kbps"),
    ("--slice-size", "slice_size", "cut chunks into pieces of this size, e.g. 100B"),
    ("--slice-variation", "slice_variation", "piece size spread, e.g. 20B"),
    ("--slice-delay", "slice_delay", "pause between pieces, e.g. 1ms"),
    ("--stall-after", "stall_after", "stop forwarding after this many bytes, e.g. 4KB"),
    ("--stall-for", "stall_for", "for this long (default: forever), e.g. 2s"),
    ("--loss", "loss", "probability a chunk is 'lost' and retransmitted, e.g. 0.01 or 1%%"),
    ("--rto", "rto", "retransmission delay of a lost chunk (default 200ms)"),
    ("--limit-data", "limit_data", "close the connection after this many bytes, e.g. 10KB"),
    ("--reset-after", "reset_after", "reset (RST) every connection after this long, e.g. 1s"),
    ("--timeout", "timeout", "drop all data, close after this long (0: never, a blackhole)"),
    ("--slow-close", "slow_close", "hold the server's FIN for this long, e.g. 500ms"),
]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``proxy`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "proxy",
        help="run the network-conditions proxy (latency, bandwidth, stalls, resets...)",
        description=(
            "Forward TCP connections to --upstream through network toxics until Ctrl-C. "
            "Toxics apply to the downstream direction (server -> client). Durations take "
            "units (200ms, 1.5s), rates too (20KB/s, 160kbps), sizes too (4KB, 4KiB)."
        ),
    )
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="where to forward connections")
    parser.add_argument(
        "--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="where to listen (default 127.0.0.1, a free port)"
    )
    for flag, _, help_text in _TOXIC_FLAGS:
        parser.add_argument(flag, default=None, metavar="VALUE", help=help_text)
    parser.add_argument("--down", action="store_true", help="reset every new connection at once")
    parser.add_argument("--toxicity", default=None, help="probability each toxic hits a connection (default 1)")
    parser.add_argument("--seed", default="0", help="seed for toxicity rolls and random draws (default 0)")
    add_foreground_options(parser, "connection")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the proxy until interrupted; returns the exit status."""
    kwargs: dict[str, Any] = {kw: getattr(args, flag[2:].replace("-", "_")) for flag, kw, _ in _TOXIC_FLAGS}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if args.down:
        kwargs["down"] = True
    if args.toxicity is not None:
        kwargs["toxicity"] = args.toxicity
    seed: int | str = int(args.seed) if args.seed.lstrip("-").isdigit() else args.seed
    start = now_ns()
    proxy: NetworkProxy | None = None

    def on_event(event: dict[str, Any]) -> None:
        if args.quiet or proxy is None or event["event"] not in ("open", "close"):
            return
        record = proxy.connection(event["conn"])
        stamp = f"[{ns_to_s(event['t_ns'] - start):9.3f}s] #{record['conn']}"
        hit = ",".join(record["toxics_hit"]) or "-"
        if event["event"] == "open":
            line = f"{stamp} opened from {record['client']}  toxics hit: {hit}"
        else:
            line = (
                f"{stamp} closed ({event['detail']})  up {format_size(record['bytes_up'])}"
                f"  down {format_size(record['bytes_down'])}  toxics hit: {hit}"
            )
        print(line, flush=True)

    try:
        proxy = NetworkProxy(
            args.upstream,
            args.listen,
            seed=seed,
            allow_remote=args.allow_remote,
            on_event=on_event,
            keep=args.keep,
            **kwargs,
        )
        proxy.start()
    except KitError as exc:
        print(f"kit proxy: error: {exc}", file=sys.stderr)
        return 2
    host, port = proxy.upstream
    print(f"kit proxy listening on {proxy.url} -> {host}:{port}  ({proxy.network.describe()})", flush=True)
    try:  # the banner inside: a Ctrl-C right after it still stops cleanly
        print("Ctrl-C to stop", flush=True)
        run_until_interrupted()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    count = proxy.connections_seen
    print(f"kit proxy stopped after {count} connection{'s' if count != 1 else ''}", flush=True)
    return 0
