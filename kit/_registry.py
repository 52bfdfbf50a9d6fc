"""The fault servers and proxies running in this process, for joining their logs to traces.

A neutral low-level module: servers register here and traces look their logs up here,
so the trace layer never imports the server layer.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = [
    "find_proxy_late",
    "find_server_log",
    "register",
    "register_proxy",
    "running_servers",
    "unregister",
]

_SERVERS: weakref.WeakSet[Any] = weakref.WeakSet()
_PROXIES: weakref.WeakSet[Any] = weakref.WeakSet()


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


def register_proxy(proxy: Any) -> None:
    """Make a proxy's lateness findable (it must have ``request_late(request_id)``).

    A proxy stays findable after it stops, while it exists: its log outlives it.
    """
    _PROXIES.add(proxy)


def find_proxy_late(request_id: str) -> float | None:
    """How late a proxy of this process forwarded ``request_id`` against plan (s), if one carried it."""
    for proxy in list(_PROXIES):
        late = proxy.request_late(request_id)
        if late is not None:
            return late
    return None
