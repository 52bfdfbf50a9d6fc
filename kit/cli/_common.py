"""What the foreground commands (``kit serve``, ``kit proxy``) share."""

from __future__ import annotations

import signal
import threading
import time

__all__ = ["run_until_interrupted"]


def run_until_interrupted() -> None:
    """Block until Ctrl-C (or SIGTERM, treated the same so ``kill`` stops cleanly too)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
