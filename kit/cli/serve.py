"""``kit serve``: the fault server in the foreground, for any client you point at it.

Lists the base URL of every scenario preset, then prints one line per request: the
scenario, the attempt number the server read from the request, the status it answered
and how the response ended as the server saw it::

    kit serve --port 8765
    ANTHROPIC_BASE_URL=http://127.0.0.1:8765/s/headers_then_close node my_app.js
    curl -N http://127.0.0.1:8765/s/pings_only/v1/messages -H 'content-type: application/json' -d '{"stream": true}'
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._clock import now_ns, ns_to_s
from .._errors import KitError
from ..server import FaultServer
from ._common import add_foreground_options, run_until_interrupted

__all__ = ["format_request", "main", "register"]

# how a response ended, as the server saw it (FaultServer's `end` field)
_ENDS = {
    "end": "ended cleanly",
    "end_close": "ended cleanly, then closed (FIN)",
    "close": "closed (FIN) before the body ended",
    "reset": "reset (RST)",
    "truncate": "closed inside a chunk",
    "client_closed": "the client went away first",
    "not_found": "no such scenario",
    "rejected": "rejected",
}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "serve",
        help="run the fault server in the foreground and log every request",
        description=(
            "Serve every scenario preset on loopback until Ctrl-C. Point any client at "
            "http://127.0.0.1:PORT/s/<scenario> (e.g. ANTHROPIC_BASE_URL=...); each request "
            "prints the scenario, the attempt and how the response ended."
        ),
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless --allow-remote)")
    add_foreground_options(parser, "request")
    parser.set_defaults(func=main)
    return parser


def format_request(info: dict[str, Any], start_ns: int) -> str:
    """One log line for a request the server finished (``FaultServer.requests`` entry)."""
    end = info.get("end", "?")
    return (
        f"[{ns_to_s(info.get('t_ns', start_ns) - start_ns):9.3f}s] {info.get('method', '?')} {info.get('path', '?')}  "
        f"scenario={info.get('scenario')} attempt={info.get('attempt')} status={info.get('status')}  "
        f"{_ENDS.get(end, end)}" + (f": {info['reason']}" if info.get("reason") and end == "rejected" else "")
    )


def main(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit status."""
    start = now_ns()

    def on_request(info: dict[str, Any]) -> None:
        if not args.quiet:
            print(format_request(info, start), flush=True)

    try:
        server = FaultServer(
            args.host, args.port, allow_remote=args.allow_remote, on_request=on_request, keep=args.keep
        ).start()
    except KitError as exc:
        print(f"kit serve: error: {exc}", file=sys.stderr)
        return 2
    print(f"kit serve listening on {server.url}", flush=True)
    for token in server.scenarios():
        print(f"  {server.url}/s/{token}", flush=True)
    from ..scenarios import PRESETS
    from ..sdk import scenario_url  # the same faults speaking the OpenAI chat protocol

    print("OpenAI protocol (use <url>/v1 as OPENAI_BASE_URL):", flush=True)
    for name in PRESETS:
        print(f"  {scenario_url(server, name, 'openai')}", flush=True)
    print(
        f"e.g. ANTHROPIC_BASE_URL={server.url}/s/empty_200   "
        f"OPENAI_BASE_URL={scenario_url(server, 'empty_200', 'openai')}/v1",
        flush=True,
    )
    try:  # the banner inside: a Ctrl-C right after it still stops cleanly
        print("Ctrl-C to stop", flush=True)
        run_until_interrupted()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    n = server.requests_seen
    print(f"kit serve stopped after {n} request{'s' if n != 1 else ''}", flush=True)
    return 0
