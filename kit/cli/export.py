"""``kit export NOTEBOOK -o page.html``: run a notebook and write a standalone offline HTML page."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["main", "register"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="execute a notebook and write it as a standalone HTML page (charts as PNG, offline)",
        description=(
            "Runs the notebook top to bottom in a fresh kernel with charts rendered as static PNG "
            "images, then writes one HTML file that opens offline, without Python."
        ),
    )
    parser.add_argument("notebook", help="the .ipynb file to export")
    parser.add_argument("-o", "--out", default=None, help="the .html file to write (default: beside the notebook)")
    parser.add_argument(
        "-p", "--parameters", default=None, help="code run after the 'parameters' cell, e.g. 'TRIALS = 20'"
    )
    parser.add_argument("--no-execute", action="store_true", help="convert the stored outputs without running")
    parser.add_argument("--timeout", type=int, default=600, help="seconds each cell may take (default 600)")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from ..export import export

    path = export(
        args.notebook, args.out, execute=not args.no_execute, parameters=args.parameters, timeout=args.timeout
    )
    print(f"kit export: {path}")
    return 0
