"""``kit record``: record a real API's streams through a loopback reverse proxy until Ctrl-C.

::

    kit record --upstream https://api.anthropic.com -o data/recordings/incident-42
    # then point the client at it: ANTHROPIC_BASE_URL=http://127.0.0.1:8766

Prints one line per call (status, outcome, bytes, chunks, events) and, on Ctrl-C, saves
the bundle (``kit.load``) and ``recording.har`` in the ``-o`` folder. Replay it with
``kit.replay_scenario("data/recordings/incident-42")``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._clock import ns_to_s
from .._errors import KitError
from .._units import format_size, parse_size
from ._common import run_until_interrupted

__all__ = ["main", "register"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``record`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "record",
        help="record a real API's streams (bytes and timing) through a loopback reverse proxy",
        description=(
            "Listen on loopback over plain HTTP and forward every request to --upstream over TLS "
            "(certificates checked), streaming each chunk back at once and recording its bytes and "
            "arrival time. Ctrl-C saves a bundle and a HAR in -o. Secrets are redacted; the API key "
            "is never stored."
        ),
    )
    parser.add_argument("--upstream", required=True, metavar="URL", help="https://HOST[:PORT] of the real API")
    parser.add_argument(
        "--listen", default="127.0.0.1:8766", metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8766)"
    )
    parser.add_argument("-o", "--out", required=True, metavar="FOLDER", help="where to save the recording")
    parser.add_argument("--ca", default=None, metavar="FILE", help="PEM file of a private CA that signs upstream")
    parser.add_argument("--max-bytes", default="128MiB", help="body bytes to keep in all (default and most 128MiB)")
    parser.add_argument("--idle-timeout", default=None, type=float, help="give up on a silent upstream after N s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing recording folder")
    parser.add_argument("--allow-remote", action="store_true", help="allow listening on a non-loopback address")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Record until interrupted, then save; returns the exit status."""
    from .._clock import now_ns
    from ..recorder import Recorder

    host, _, port = args.listen.rpartition(":")
    start = now_ns()

    def on_call(trace: Any) -> None:
        a = trace.attempt
        print(
            f"[{ns_to_s(trace.start_ns - start):9.3f}s] {trace.label} -> {a.status or '-'} "
            f"{trace.outcome.phase}/{trace.outcome.cause}  {format_size(a.bytes_received)} "
            f"in {a.chunks_received} chunks, {a.events_received} events, {trace.duration:.3f}s",
            flush=True,
        )

    try:
        if not port.isdigit():
            print(f"kit record: error: --listen={args.listen!r} is not HOST:PORT", file=sys.stderr)
            return 2
        rec = Recorder(
            args.upstream,
            host or "127.0.0.1",
            int(port),
            ca=args.ca,
            out=args.out,
            overwrite=args.overwrite,
            max_bytes=parse_size("max_bytes", args.max_bytes),
            idle_timeout=args.idle_timeout,
            allow_remote=args.allow_remote,
            on_call=on_call,
        )
        rec.start()
    except KitError as exc:
        print(f"kit record: error: {exc}", file=sys.stderr)
        return 2
    print(f"kit record: recording on {rec.url} -> {args.upstream}  (saves to {args.out})", flush=True)
    print("point your client's base URL at it; Ctrl-C to stop and save", flush=True)
    try:
        run_until_interrupted()
    finally:
        rec.out = None  # save below, where an empty recording is a message rather than an error
        rec.stop()
    if not rec.traces:
        print("kit record: no calls were recorded; nothing saved", flush=True)
        return 1
    path = rec.save(args.out, overwrite=args.overwrite)
    note = f"; {rec.notes[0]}" if rec.notes else ""
    print(f"kit record: saved {len(rec.traces)} calls to {path} (bundle.json, recording.har){note}", flush=True)
    print(f'replay: kit.replay_scenario("{path}")', flush=True)
    return 0
