"""Interrupts: SIGTERM means what Ctrl-C means, and saving finished work is not cut short.

``sigterm_as_sigint()``: a ``kill`` (SIGTERM) runs whatever Ctrl-C runs at that moment
(asyncio's graceful cancel, or ``KeyboardInterrupt``). ``saving(note)``: while finished
work is written, further Ctrl-C / SIGTERM print ``note`` (how to recover if the process
is killed after all) instead of interrupting the write. Both only act in the main thread
(Python delivers signals there; in a Jupyter worker thread they do nothing).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["saving", "sigterm_as_sigint"]

_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def sigterm_as_sigint() -> None:
    """From now on SIGTERM calls the current SIGINT handler (no-op off the main thread / Windows)."""
    if not _main_thread() or not hasattr(signal, "SIGTERM"):
        return

    def forward(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        elif handler == signal.SIG_DFL:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, forward)


@contextlib.contextmanager
def saving(note: str) -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM off while finished work is saved; each one prints ``note``."""
    if not _main_thread():
        yield
        return
    previous = {}

    def hold(signum: int, frame: Any) -> None:
        print(note, file=sys.stderr, flush=True)

    try:
        for s in _SIGNALS:
            previous[s] = signal.signal(s, hold)
    except ValueError:  # not the main interpreter
        pass
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
