"""What the foreground commands (``kit serve``, ``kit proxy``) share."""

from __future__ import annotations

import signal
import threading
import time

__all__ = ["add_foreground_options", "run_until_interrupted"]


def run_until_interrupted() -> None:
    """Block until Ctrl-C (or SIGTERM, treated the same so ``kill`` stops cleanly too)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def add_foreground_options(parser, what: str) -> None:
    """The flags every foreground command has: ``--allow-remote``, ``--quiet``, ``--keep``.

    ``what``: what one log line is about ("request", "connection").
    """
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    parser.add_argument("--quiet", action="store_true", help=f"print no per-{what} lines")
    parser.add_argument(
        "--keep",
        type=int,
        default=1000,
        help=f"keep the log of the last N {what}s in memory (default 1000; memory stays flat)",
    )
