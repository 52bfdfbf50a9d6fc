"""The fault servers running in this process, for joining their logs to client traces.

A neutral low-level module: servers register here and traces look their logs up here,
so the trace layer never imports the server layer.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["find_server_log", "register", "running_servers", "unregister"]

_SERVERS: weakref.WeakSet[Any] = weakref.WeakSet()


def register(server: Any) -> None:
    """Make a running server's log findable (it must have ``log_for(request_id)``)."""
    _SERVERS.add(server)


def unregister(server: Any) -> None:
    _SERVERS.discard(server)


def running_servers() -> list[Any]:
    """The fault servers running in this process."""
    return list(_SERVERS)


def find_server_log(request_id: str) -> list[Any]:
    """The log entries of ``request_id`` from whichever running server handled it."""
    for server in list(_SERVERS):
        entries = server.log_for(request_id)
        if entries:
            return entries
    return []
