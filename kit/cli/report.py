"""``kit report data/runs/NAME -o report.html``: a standalone HTML report of a bundle."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["main", "register"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="write a standalone offline HTML report of a bundle (or a HAR file)",
        description="Metrics table and the main charts, inline (SVG); opens offline in any browser.",
    )
    parser.add_argument("bundle", help="bundle folder (from kit run or result.save) or a .har file")
    parser.add_argument("-o", "--out", required=True, help="the .html file to write")
    parser.add_argument("--title", default=None, help="report title (default: the experiment's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from ..compare import load
    from ..evidence import from_har
    from ..report import write_report

    result = from_har(args.bundle) if str(args.bundle).lower().endswith(".har") else load(args.bundle)
    path = write_report(result, args.out, overwrite=args.overwrite, title=args.title)
    print(f"kit report: {path}")
    return 0
