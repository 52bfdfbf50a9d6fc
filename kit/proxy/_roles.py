"""What the proxy's layers need from each other, as protocols: the imports point one way.

:mod:`kit.proxy._api` (``NetworkProxy``) creates connections (:mod:`kit.proxy._connection`),
which create their sides and pipes (:mod:`kit.proxy._pipe`). Going back up, a pipe calls
its connection and a connection updates the proxy that accepted it; they know them by
these protocols (``NetworkProxy`` and ``_Conn`` satisfy them), not by importing the
modules above them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Protocol

from ..network import Toxic
from ._head import Head


class Proxy(Protocol):
    """The proxy state a connection reads and updates (``NetworkProxy``'s)."""

    upstream: tuple[str, int]
    seed: int
    _ids: Iterator[int]
    _open: dict[int, Any]  # connection id -> connection, while open
    _all: dict[int, Any]  # connection id -> connection, kept for the log
    _snapshot: tuple[Toxic, ...]  # the current toxics
    _stopping: bool
    _late: dict[str, int]
    _late_dirty: set[str] | None
    _forwards: list[tuple[Any, ...]]
    _overshoot: Any  # kit.proxy._pipe._Overshoot

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop: ...

    def _event(self, row: tuple[Any, ...]) -> None: ...


class Connection(Protocol):
    """What a socket side or a pipe calls on its connection (``_Conn``)."""

    proxy: Proxy
    id: int
    loop: asyncio.AbstractEventLoop
    key: str
    decided: bool

    def client_made(self) -> None: ...

    def side_lost(self, side: Any, exc: Exception | None) -> None: ...

    def on_head(self, head: Head) -> None: ...

    def decide(self) -> None: ...

    def note_late(self, late_ns: int) -> None: ...

    def note_end(self, reason: str) -> None: ...

    def pipe_done(self) -> None: ...

    def shutdown(self, reason: str, mode: str = "close") -> None: ...

    def event(self, name: str, direction: str | None, detail: str = "") -> None: ...
