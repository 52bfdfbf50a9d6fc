"""The fault server: HTTP/1.1 on loopback that misbehaves byte-exactly on demand.

Responses are written by hand, byte by byte, because the point is to break HTTP framing
on purpose (cut a chunk in half, close before the zero-length chunk, reset). Every write
is logged with the time it was due and the time it went out, on the kit's shared clock,
keyed by the client's ``x-kit-request-id``: that log is the *server* vantage point of a
trace.

URLs name scenarios: ``POST {server.url_for(scenario)}/v1/messages`` gets that scenario
(any path under the base works, so SDKs with a ``base_url`` just work). ``GET /``
lists the scenarios as JSON.

:class:`FaultServer` is a thin facade: the scenarios it answers for, its log
(:mod:`kit._server_log`) and the lifecycle; the serving is done by one of two modes
behind :class:`ServerMode`: :class:`~kit._server_local.LocalMode` (in this process,
asyncio + h11 on a background thread) or :class:`~kit._isolated.IsolatedMode` (the same
in a child process, its log shipped back: ``isolate=True``).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from typing import Any, Protocol

from . import _registry
from ._bind import check_bind
from ._errors import ConfigError, ServerError
from ._isolated import IsolatedMode
from ._rerun import replace_previous
from ._server_local import REQUEST_TIMEOUT, LocalMode
from ._server_log import ServerLog
from ._window import check_keep
from .records import ServerLogEntry
from .scenarios import PRESETS, Scenario

__all__ = ["FaultServer", "ScenarioURL", "ServerLogEntry", "ServerMode"]


class ScenarioURL(str):
    """A base URL that names a scenario; it is a ``str`` and carries the scenario.

    Clients that know the kit (``kit.stream``) read ``.protocol`` to choose the request
    path and body; any other client sees a plain URL.
    """

    scenario: Scenario
    protocol: str

    def __new__(cls, url: str, scenario: Scenario) -> ScenarioURL:
        obj = super().__new__(cls, url)
        obj.scenario = scenario
        obj.protocol = scenario.protocol
        return obj

    def with_origin(self, origin: str) -> ScenarioURL:
        """The same scenario path on another origin (``http://host:port``), e.g. a proxy."""
        path = self.split("/", 3)[3] if self.count("/") >= 3 else ""
        return ScenarioURL(f"{origin.rstrip('/')}/{path}", self.scenario)


class ServerMode(Protocol):
    """How a :class:`FaultServer` serves: the one interface of its two modes.

    ``start`` binds (a :class:`~kit.ServerError` if it cannot), ``stop`` closes every
    connection, ``address`` is where it listens while running, ``alive`` whether it still
    serves (a child process may have died), ``pid`` the serving process if it is not
    this one; ``registered`` hears of a scenario added to the server's registry,
    ``reset_attempts`` forgets attempt counters.
    """

    pid: int | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def alive(self) -> bool: ...

    @property
    def address(self) -> tuple[str, int]: ...

    def registered(self, token: str, scenario: Scenario) -> None: ...

    def reset_attempts(self) -> None: ...


class FaultServer:
    """An HTTP/1.1 fault server on 127.0.0.1 running in a background thread.

    Use it as a context manager (``with`` or ``async with``) or call
    :meth:`start`/:meth:`stop`. ``port=0`` picks a free port. Binding anything but a
    loopback address requires ``allow_remote=True`` and warns.

    ``request_timeout`` (s) bounds how long a client may take to send a request
    (slowloris guard: 408). ``log`` is every write (:class:`ServerLogEntry`; a snapshot
    list, like ``NetworkProxy.log``), ``requests`` every request handled, rejected ones
    included. ``keep=N`` keeps only the last N requests' log and ``requests`` entries
    (memory stays flat on a long-running server; ``kit serve`` keeps 1,000); the default
    keeps everything (call :meth:`clear_log` to forget). ``requests_seen`` counts them
    all. ``isolate=True`` runs the server in a child process instead (same API): use it
    when one process also drives many concurrent clients, which would otherwise delay
    the server's writes by competing for the interpreter lock.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_remote: bool = False,
        on_request: Callable[[dict[str, Any]], None] | None = None,
        isolate: bool = False,
        request_timeout: float = REQUEST_TIMEOUT,
        tls: ssl.SSLContext | None = None,
        keep: int | None = None,
    ) -> None:
        check_bind("host", host, host, allow_remote, "the fault server")
        self.keep = check_keep(keep, isolate, "requests")
        if tls is not None and (isolate or not isinstance(tls, ssl.SSLContext)):
            raise ConfigError("tls", tls, "an ssl.SSLContext with a certificate, and isolate=False")
        self.tls = tls  # serve HTTPS: a local stand-in for a provider (see kit.Recorder)
        self.host = host
        self._port = port
        self.request_timeout = request_timeout
        self._allow_remote = allow_remote
        self.isolate = isolate
        self._mode: ServerMode | None = None
        self._registry: dict[str, Scenario] = {}
        self._lock = threading.Lock()
        self._log = ServerLog(self.keep, on_request)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> FaultServer:
        """Start serving; returns once the port is bound."""
        if self._mode is not None:
            return self
        replace_previous(self)  # a rerun notebook cell stops the server its last run started
        mode: ServerMode
        if self.isolate:
            mode = IsolatedMode(self.host, self._port, self._allow_remote, self._log)
        else:
            mode = LocalMode(
                self.host,
                self._port,
                tls=self.tls,
                request_timeout=self.request_timeout,
                scenario=self._scenario,
                tokens=lambda: self.scenarios().keys(),
                log=self._log,
            )
        mode.start()
        with self._lock:
            known = list(self._registry.items())
        for token, scenario in known:  # registered before the start
            mode.registered(token, scenario)
        self._mode = mode
        _registry.register(self)
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; join the thread (or the child)."""
        if self._mode is None:
            return
        self._mode.stop()
        self._mode = None
        _registry.unregister(self)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FaultServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # -- addresses ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        if self._mode is None:
            raise ServerError("the FaultServer is not running; use it in a `with` block or call start()")
        return self._mode.address

    @property
    def alive(self) -> bool:
        """Running (with ``isolate=True``: its child process too)."""
        return self._mode is not None and self._mode.alive()

    @property
    def pid(self) -> int | None:
        """The child process's id while ``isolate=True`` runs it; None in-process or stopped."""
        return None if self._mode is None else self._mode.pid

    @property
    def url(self) -> str:
        host, port = self.address
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def url_for(self, scenario: Scenario | str) -> ScenarioURL:
        """A base URL whose path names ``scenario`` (a Scenario or a preset name)."""
        if isinstance(scenario, str):
            scenario = Scenario.preset(scenario)
        if not isinstance(scenario, Scenario):
            raise ConfigError("scenario", scenario, "expected a kit.Scenario or a preset name")
        token = self.register(scenario)
        return ScenarioURL(f"{self.url}/s/{token}", scenario)

    def register(self, scenario: Scenario) -> str:
        """Make ``scenario`` reachable; returns the token used in its URL path."""
        if scenario.name in PRESETS and PRESETS[scenario.name] == scenario:
            return scenario.name
        # a name is a label, not a path: "../../x" or "a b" must stay one URL segment
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in scenario.name or "custom")
        token = f"{safe}-{scenario.key}"
        with self._lock:
            known = self._registry.get(token) == scenario
            self._registry[token] = scenario
        if self._mode is not None and not known:
            self._mode.registered(token, scenario)
        return token

    def scenarios(self) -> dict[str, Scenario]:
        """Every scenario this server answers for, by URL token."""
        with self._lock:
            return {**PRESETS, **self._registry}

    def _scenario(self, token: str) -> Scenario | None:
        sc = PRESETS.get(token)
        if sc is None:
            with self._lock:
                sc = self._registry.get(token)
        return sc

    def reset_attempts(self) -> None:
        """Forget per-scenario attempt counters (for clients that send no attempt header)."""
        if self._mode is not None:
            self._mode.reset_attempts()

    # -- logs --------------------------------------------------------------------

    @property
    def log(self) -> list[ServerLogEntry]:
        """Every write so far, in order (a snapshot: later writes do not change it)."""
        return list(self._log.entries)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request handled (rejected ones and probes included), in order."""
        return self._log.requests

    @property
    def requests_seen(self) -> int:
        """Requests handled, also those a ``keep`` window has dropped."""
        return self._log.requests_seen

    def log_for(self, request_id: str) -> list[ServerLogEntry]:
        """The log entries of one request."""
        return list(self._log.by_request.get(request_id, ()))

    def clear_log(self) -> None:
        """Forget logged writes and requests: a long-running server's log otherwise only grows."""
        self._log.clear()

    def log_df(self):
        """The whole log as a DataFrame (one row per :class:`ServerLogEntry`)."""
        from .tables import server_log_table

        return server_log_table(self.log)
