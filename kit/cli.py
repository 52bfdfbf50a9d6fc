"""The ``kit`` command: ``kit serve``, ``kit proxy``, ``kit run``, ``kit report`` and more.

Each subcommand lives in its own ``kit/_cli_<name>.py`` module exposing
``register(subparsers)``; this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._errors import KitError

__all__ = ["main"]

# one module per subcommand; each defines register(subparsers) and sets `func` on its parser
COMMANDS = (
    "_cli_proxy",
    "_cli_serve",
    "_cli_record",
    "_cli_atlas",
    "_cli_run",
    "_cli_report",
    "_cli_postmortem",
    "_cli_export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kit", description="Investigate streaming API failures.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"kit.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KitError as exc:
        print(f"kit {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
