"""Event loops for the kit: a precise timer, a background loop thread, sync bridges.

Why a custom selector: asyncio's epoll selector rounds every timeout *up* to the next
millisecond (and float rounding can add one more), so ``asyncio.sleep`` overshoots by
about 1 ms at the median. A fault server that mis-times chunks by a millisecond teaches
the wrong lesson, so the kit's loops wait with microsecond resolution instead: they
``select()`` on the epoll descriptor itself (readable as soon as any registered event
is ready), then collect the events from epoll without waiting. kqueue (macOS)
and select (Windows) already take fractional timeouts and are used as they are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import select
import selectors
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "new_event_loop", "run_sync"]

T = TypeVar("T")

_FD_SETSIZE = 1024  # select() cannot watch descriptors at or above this number


if hasattr(selectors, "EpollSelector"):

    class _PreciseEpollSelector(selectors.EpollSelector):
        def select(self, timeout: float | None = None):  # type: ignore[override]
            if timeout is not None and timeout > 0 and self.fileno() < _FD_SETSIZE:
                # select() takes microseconds; the epoll descriptor is readable as soon as
                # any registered event is ready, so this waits exactly like epoll would
                with contextlib.suppress(InterruptedError):
                    select.select([self.fileno()], [], [], timeout)
                timeout = 0
            return super().select(timeout)

    def _new_selector() -> selectors.BaseSelector:
        return _PreciseEpollSelector()

else:  # pragma: no cover - kqueue/select already honour fractional timeouts

    def _new_selector() -> selectors.BaseSelector:
        return selectors.DefaultSelector()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A selector event loop whose timers fire within tens of microseconds."""
    return asyncio.SelectorEventLoop(_new_selector())


class LoopThread:
    """An event loop running in a daemon thread, for servers used from sync code.

    ``start()`` returns once the loop runs; ``submit()`` schedules a coroutine on it
    from any thread; ``stop()`` cancels what is left, closes the loop and joins.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        loop = new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self.loop is None:
            coro.close()
            raise RuntimeError(f"{self.name} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop and wait for its result."""
        return self.submit(coro).result(timeout)

    def start_serving(self, bind: Coroutine[Any, Any, Any], where: str) -> None:
        """Start the loop and run ``bind`` (which opens a listening socket) on it; if the
        socket cannot be bound, stop again and raise a ServerError naming ``where``."""
        from ._errors import ServerError

        self.start()
        try:
            self.call(bind)
        except OSError as exc:
            self.stop()
            raise ServerError(f"cannot bind {where}: {exc.strerror or exc}") from None

    def stop(self) -> None:
        if self._thread is None or self.loop is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self._thread = None
        self.loop = None
        self._ready.clear()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code.

    In a plain script this runs a fresh precise loop in the calling thread. Inside a
    running loop (a Jupyter kernel) it runs the coroutine on a fresh loop in a worker
    thread and blocks until it is done; Ctrl-C (or a kernel interrupt) cancels it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(coro)

    result: concurrent.futures.Future[T] = concurrent.futures.Future()
    holder: dict[str, Any] = {}

    def worker() -> None:
        loop = new_event_loop()
        try:
            task = loop.create_task(coro)
            holder["loop"], holder["task"] = loop, task
            ready.set()
            try:
                result.set_result(loop.run_until_complete(task))
            except BaseException as exc:
                result.set_exception(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    ready = threading.Event()
    thread = threading.Thread(target=worker, name="kit-run-sync", daemon=True)
    thread.start()
    ready.wait()
    try:
        return result.result()
    except KeyboardInterrupt:
        holder["loop"].call_soon_threadsafe(holder["task"].cancel)
        thread.join()
        raise
    finally:
        thread.join()
