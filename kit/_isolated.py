"""``FaultServer(isolate=True)``: the fault server in its own process, so its timing does not share a GIL with clients.

On a small machine, a client streaming 100 responses in the same process starves the
server thread of the interpreter lock and its writes go out late. This mode runs the
server in a child interpreter (the program :mod:`kit._isolated_main`, started by
:class:`kit._child.Child`); the parent's :class:`~kit.FaultServer` keeps the same API.
Commands: register, reset, stop; the child pushes ``("log", rows)`` and
``("request", info)`` as they happen, and they land in the parent's
:class:`~kit._server_log.ServerLog`.
"""

from __future__ import annotations

from typing import Any

from ._child import Child
from ._errors import ServerError
from ._server_log import ServerLog
from .scenarios import Scenario

__all__ = ["IsolatedMode"]


class IsolatedMode:
    """Serves from a child process (one of the two modes behind ``kit.server.ServerMode``)."""

    def __init__(self, host: str, port: int, allow_remote: bool, log: ServerLog) -> None:
        self._config = {"host": host, "port": port, "allow_remote": allow_remote}
        self._log = log
        self._child: Child | None = None
        self.pid: int | None = None

    def _on_push(self, kind: str, payload: Any) -> None:
        if kind == "log":
            self._log.add_rows(payload)
        elif kind == "request":
            self._log.record_request(payload)

    def start(self) -> None:
        self._child = Child("from kit._isolated_main import main; main()", self._config, self._on_push, "fault server")
        self.pid = self._child.pid

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None

    def alive(self) -> bool:
        return self._child is not None and self._child.alive()

    @property
    def address(self) -> tuple[str, int]:
        return tuple(self._running().info)  # type: ignore[return-value]

    def registered(self, token: str, scenario: Scenario) -> None:
        self._running().call("register", scenario.to_dict())

    def reset_attempts(self) -> None:
        self._running().call("reset")

    def _running(self) -> Child:
        if self._child is None:
            raise ServerError("the isolated fault server is not running")
        return self._child
