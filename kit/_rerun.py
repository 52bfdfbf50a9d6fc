"""Rerunning a notebook cell that starts a server stops the server that cell started before.

``server = kit.FaultServer().start()`` in a cell, run twice, would otherwise leave the
first server (its thread and port) running with no name left to stop it. In a Jupyter
kernel every cell's code has a stable file name (a hash of its source), so the kit keys
each start by (cell, line, kind): a start from a *later execution* of the same line stops
what the earlier execution started. Several servers started by one execution (a list
comprehension) all stay up. Outside a kernel this does nothing.
"""

from __future__ import annotations

import re
import sys
import threading
import weakref
from typing import Any

__all__ = ["replace_previous"]

_STARTED: dict[tuple[str, int, str], list[tuple[int, weakref.ref[Any]]]] = {}
_LOCK = threading.Lock()
_CELL_FILE = re.compile(r"ipykernel_\d+[/\\]")  # ipykernel's cell files: /tmp/ipykernel_<pid>/<hash>.py


def _cell_frame() -> Any:
    """The outermost frame running a notebook cell's code (None outside a kernel).

    Outermost, so a helper defined in one cell and called from two others counts as two
    lines, not one: only rerunning the *calling* line replaces what it started.
    """
    frame, cell = sys._getframe(2), None
    while frame is not None:
        if _CELL_FILE.search(frame.f_code.co_filename):
            cell = frame
        frame = frame.f_back
    return cell


def _execution_count() -> int | None:
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return getattr(shell, "execution_count", None)


def replace_previous(obj: Any) -> None:
    """Stop what an earlier run of the notebook line calling ``obj.start()`` started."""
    frame = _cell_frame()
    if frame is None:
        return
    count = _execution_count()
    if count is None:
        return
    key = (frame.f_code.co_filename, frame.f_lineno, type(obj).__name__)
    with _LOCK:
        entries = _STARTED.setdefault(key, [])
        stale = [ref() for n, ref in entries if n < count]
        entries[:] = [(n, ref) for n, ref in entries if n >= count and ref() is not None]
        entries.append((count, weakref.ref(obj)))
    for old in stale:
        if old is not None and old is not obj:
            old.stop()
