"""Progress of a long run: an ipywidgets bar in notebooks, a line on terminals.

Updates may come from any thread (a notebook's run executes on a worker loop); the
terminal line is redrawn at most ten times a second so printing never slows a run.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TextIO, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "progress"]


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """Counts finished items out of ``total``; ``update(n)``, ``close()``.

    ``enabled=False`` makes it silent. In a Jupyter kernel it shows an ipywidgets
    bar; elsewhere it writes ``label: done/total (rate/s, eta)`` to ``stream``
    (stderr): redrawn in place on a terminal, one line per 10% otherwise.
    """

    def __init__(
        self, total: int, label: str = "trials", *, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._widget = None
        self._text = None
        self._closed = False
        self.note = ""  # shown after the counts, e.g. the concurrency a run settled at
        if not enabled:
            return
        if _in_notebook():
            try:
                import ipywidgets as w
                from IPython.display import display

                self._widget = w.IntProgress(value=0, min=0, max=max(total, 1), description=label)
                self._text = w.Label(value=f"0/{total}")
                display(w.HBox([self._widget, self._text]))
            except Exception:  # no widget front end: fall back to text
                self._widget = None
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, n: int = 1) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.done += n
            self._draw(final=False)

    def _status(self) -> str:
        elapsed = time.perf_counter() - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_s = f", eta {eta:.0f}s" if self.done < self.total and rate > 0 else f", {elapsed:.1f}s"
        note = f", {self.note}" if self.note else ""
        return f"{self.label}: {self.done}/{self.total} ({rate:.1f}/s{eta_s}{note})"

    def _draw(self, final: bool) -> None:
        now = time.perf_counter()
        if self._widget is not None:
            if final or now - self._last_draw >= 0.1 or self.done == self.total:
                self._widget.value = self.done
                self._text.value = self._status()
                self._last_draw = now
            return
        if self._tty:
            if final or now - self._last_draw >= 0.1:
                self.stream.write("\r" + self._status() + ("\n" if final else ""))
                self.stream.flush()
                self._last_draw = now
            return
        decile = (10 * self.done) // max(self.total, 1)
        if decile != self._last_decile or final:
            self._last_decile = decile
            self.stream.write(self._status() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if not self.enabled or self._closed:
            return
        self._closed = True
        with self._lock:
            if self._widget is not None:
                self._widget.bar_style = "success" if self.done == self.total else "warning"
                self._draw(final=True)
            elif self._tty:
                self._draw(final=True)
            elif self.done != self.total:
                self.stream.write(self._status() + " (stopped)\n")
                self.stream.flush()


def progress(items: Iterable[T], label: str = "", *, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while a :class:`Progress` counts them (``kit.progress``): a bar in
    notebooks, a line on terminals. ``total`` defaults to the number of items."""
    if total is None:
        items = items if isinstance(items, Sized) else list(items)
        total = len(items)
    bar = Progress(total, label, enabled=enabled)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
