"""``kit atlas``: rebuild the symptom atlas, or look a message up in it.

kit atlas build                       # every preset through every available real client
kit atlas build --client anthropic-node@0.39 --scenario empty_200
kit atlas lookup "request ended without sending any chunks"
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd

__all__ = ["main", "register"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``atlas`` subcommand to an argparse ``subparsers`` object."""
    from ..atlas import DEFAULT_CLIENTS

    parser = subparsers.add_parser(
        "atlas",
        help="build the symptom atlas (scenario x real client -> message) or look a message up",
        description="Run scenario presets through real SDKs and store what each said in data/atlas/.",
    )
    sub = parser.add_subparsers(dest="atlas_command", metavar="ACTION")
    b = sub.add_parser("build", help="regenerate data/atlas/ (takes a few minutes)")
    b.add_argument(
        "--client",
        action="append",
        default=None,
        help=f"client to run (repeatable; default: {', '.join(DEFAULT_CLIENTS)})",
    )
    b.add_argument("--scenario", action="append", default=None, help="scenario preset (repeatable; default: all)")
    b.add_argument(
        "--mode", action="append", default=None, help="default, timeout or abort (repeatable; default: all three)"
    )
    b.add_argument(
        "--hang-after", type=float, default=20.0, help="record a run as a hang after this long (default 20 s)"
    )
    b.add_argument("--workers", type=int, default=4, help="runs at a time (default 4)")
    b.add_argument("--out", default=None, help="folder to write (default: data/atlas of the repository)")
    b.add_argument("--quiet", action="store_true", help="print no per-run lines")
    b.set_defaults(func=main)
    lk = sub.add_parser("lookup", help="which scenarios and clients produce a message")
    lk.add_argument("message", help="the error message (or a log line containing it)")
    lk.add_argument("--atlas", default=None, help="atlas folder or CSV (default: data/atlas)")
    lk.set_defaults(func=main)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    return parser


def main(args: argparse.Namespace) -> int:
    from .. import atlas

    if args.atlas_command == "build":
        df = atlas.build(
            args.client or atlas.DEFAULT_CLIENTS,
            args.scenario,
            modes=args.mode or tuple(atlas.MODES),
            hang_after=args.hang_after,
            workers=args.workers,
            out=args.out or atlas.ATLAS_DIR,
            progress=None if args.quiet else (lambda line: print(line, flush=True)),
        )
        print(f"kit atlas: {len(df)} runs written to {args.out or atlas.ATLAS_DIR}", flush=True)
        return 0
    table = atlas.load(args.atlas) if args.atlas else None
    hits = atlas.lookup(args.message, table)
    if hits.empty:
        print("no scenario in the atlas produces that message", file=sys.stderr)
        return 1
    cols = ["client", "client_version", "mode", "scenario", "exception", "message", "trace_phase", "trace_cause"]
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(hits[cols].to_string(index=False))
    return 0
