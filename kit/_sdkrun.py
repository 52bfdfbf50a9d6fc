"""What an SDK run is and where it runs: shared by :mod:`kit.sdk` (Python) and :mod:`kit.node`.

``SDKRun`` (what one SDK call did), the scenario URL in a client's protocol, and the
count of requests the fault server saw for it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from . import _registry
from ._errors import ConfigError, KitError
from .scenarios import Scenario
from .server import FaultServer, ScenarioURL
from .trace import Trace

__all__ = ["SDKNotInstalled", "SDKRun", "ServerCount", "exception_name", "resolve", "scenario_url"]


class SDKNotInstalled(KitError, ImportError):
    """The SDK a run needs is not installed; the message has the install command."""


@dataclass
class SDKRun:
    """What one SDK call did: the exception it raised (or its result), attempts, time, trace.

    ``outcome`` is ``returned`` (no exception), ``raised``, ``hang`` (no answer before the
    kit's own deadline; Node only) or ``skipped`` (the client could not run here).
    ``attempts`` counts the requests the fault server saw (None if unknown).
    """

    client: str
    client_version: str
    method: str
    scenario: str | None
    url: str
    outcome: str
    exception: str | None = None
    message: str = ""
    result: dict[str, Any] | None = None
    attempts: int | None = None
    elapsed: float = 0.0
    trace: Trace | None = None
    server_requests: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The atlas columns of this run."""
        t = self.trace.outcome if self.trace is not None and self.trace.attempts else None
        return {
            "client": self.client,
            "client_version": self.client_version,
            "method": self.method,
            "scenario": self.scenario,
            "outcome": self.outcome,
            "exception": self.exception,
            "message": self.message,
            "attempts": self.attempts,
            "elapsed": round(self.elapsed, 3),
            "trace_phase": t.phase if t else None,
            "trace_cause": t.cause if t else None,
        }

    def __repr__(self) -> str:
        what = f"{self.exception}: {self.message[:60]!r}" if self.exception else self.outcome
        return f"<SDKRun {self.client} {self.scenario} {what} attempts={self.attempts} {self.elapsed:.2f}s>"


def exception_name(exc: BaseException) -> str:
    """``module.Class`` for library exceptions (``anthropic.OverloadedError``), ``Class`` for builtins."""
    mod = type(exc).__module__.partition(".")[0]
    return type(exc).__name__ if mod == "builtins" else f"{mod}.{type(exc).__name__}"


def _find_server(url: str) -> FaultServer | None:
    for s in _registry.running_servers():
        try:
            if str(url).startswith(s.url + "/"):
                return s
        except KitError:
            continue
    return None


def scenario_url(server: FaultServer, scenario: Scenario | str, protocol: str) -> ScenarioURL:
    """The URL of ``scenario`` (a preset name or Scenario) speaking ``protocol`` on ``server``."""
    sc = Scenario.preset(scenario) if isinstance(scenario, str) else scenario
    if sc.protocol != protocol:
        sc = _with_protocol(sc, protocol)
    return server.url_for(sc)


def _with_protocol(sc: Scenario, protocol: str) -> Scenario:
    attempts = tuple(_with_protocol(a, protocol) for a in sc.attempts)
    return dataclasses.replace(sc, protocol=protocol, attempts=attempts)


def resolve(
    url: str | Scenario, server: FaultServer | None, protocol: str
) -> tuple[str, str | None, FaultServer | None]:
    if isinstance(url, Scenario) or (isinstance(url, str) and "://" not in url):
        if server is None:
            raise ConfigError("server", None, "pass server= (a running kit.FaultServer) to run a scenario by name")
        url = scenario_url(server, url, protocol)
    sc = getattr(url, "scenario", None)
    if sc is not None and sc.protocol != protocol:
        # the same scenario in this client's protocol, on the SAME origin (a proxy stays in the path)
        server = server or _find_server(url)
        if server is None:
            raise ConfigError(
                "url",
                str(url),
                f"this URL's scenario speaks {sc.protocol}, the client speaks {protocol}; pass server= (the "
                f"FaultServer behind it) or a URL made by kit.sdk.scenario_url(server, scenario, {protocol!r})",
            )
        origin = "/".join(str(url).split("/", 3)[:3])
        url = scenario_url(server, sc, protocol).with_origin(origin)
    server = server or _find_server(str(url))
    name = sc.name if sc is not None else None
    return str(url), name, server


class ServerCount:
    """Counts the requests a FaultServer receives for one scenario token during a run."""

    def __init__(self, server: FaultServer | None, url: str) -> None:
        self.server = server
        parts = str(url).split("/s/", 1)
        self.token = parts[1].split("/", 1)[0] if len(parts) == 2 else None
        self.log_start = len(server.log) if server is not None else 0
        self.req_start = len(server.requests) if server is not None else 0

    def attempts(self) -> int | None:
        if self.server is None or self.token is None:
            return None
        entries = self.server.log[self.log_start :]
        return sum(1 for e in entries if e.kind == "request" and e.scenario == self.token)

    def requests(self, settle: float = 0.3) -> list[dict[str, Any]]:
        if self.server is None:
            return []
        n = self.attempts() or 0
        deadline = time.monotonic() + settle  # the server logs a request's end just after the client leaves
        while time.monotonic() < deadline:
            got = [r for r in self.server.requests[self.req_start :] if r.get("scenario") == self.token]
            if len(got) >= n:
                return got
            time.sleep(0.01)
        return [r for r in self.server.requests[self.req_start :] if r.get("scenario") == self.token]
