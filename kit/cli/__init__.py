"""The ``kit`` command: ``kit serve``, ``kit proxy``, ``kit run``, ``kit report`` and more.

Each subcommand lives in its own module of this package (``kit/cli/<name>.py``)
exposing ``register(subparsers)``; ``kit/cli/_common.py`` holds what they share. This
module only assembles them, imported statically (each imports what its command
needs when it runs, so ``kit --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys

from .._errors import KitError
from . import atlas, export, postmortem, proxy, record, report, run, serve

__all__ = ["main"]

# one module per subcommand; each defines register(subparsers) and sets `func` on its parser
COMMANDS = (proxy, serve, record, atlas, run, report, postmortem, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kit", description="Investigate streaming API failures.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
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
