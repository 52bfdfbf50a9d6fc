"""Run one streaming call through a real SDK against a scenario, and keep what it said.

Each function makes the call the way an application would, catches what the SDK
raised (or keeps what it returned), counts the attempts the fault server saw, and (with
``instrument=True``) records the SDK's HTTP traffic with :func:`kit.instrument`::

    with kit.FaultServer() as server:
        run = kit.sdk.run("anthropic-python", "empty_200", server=server)
        run.exception, run.message, run.attempts       # 'AssertionError', '', 1
        run.trace.attempts_df                           # what the SDK's HTTP client received

Clients (:data:`CLIENTS`): ``anthropic-python`` (``messages.stream``),
``anthropic-python:create`` (``messages.create(stream=True)``), ``openai-python``
(``chat.completions.create(stream=True)``); the Node ones live in :mod:`kit.node`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _registry
from ._clock import now_ns
from ._errors import ConfigError, KitError
from .scenarios import Scenario
from .server import FaultServer, ScenarioURL
from .trace import Trace

__all__ = ["CLIENTS", "SDKNotInstalled", "SDKRun", "run", "run_anthropic", "run_openai", "scenario_url"]

MODEL = {"anthropic": "claude-kit-1", "openai": "gpt-kit-1"}
PROMPT = [{"role": "user", "content": "Say hello, slowly."}]


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


def _resolve(
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


class _ServerCount:
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


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise SDKNotInstalled(
            f"the {name} Python SDK is not installed: pip install {name}  (or: pip install 'kit[sdk]')"
        ) from None


def _sdk_client(module: Any, cls: str, base_url: str, max_retries: int | None, timeout: float | None, instrument: bool):
    import httpx2

    http = httpx2.Client(trust_env=False, follow_redirects=True)  # the SDKs' own client options, no env proxies
    recorder = None
    if instrument:
        from .instrument import instrument as _instrument

        recorder = _instrument(http)
    kwargs: dict[str, Any] = {"base_url": base_url, "api_key": "kit-dummy-key", "http_client": http}
    if max_retries is not None:
        kwargs["max_retries"] = max_retries
    if timeout is not None:
        kwargs["timeout"] = timeout
    else:
        kwargs["timeout"] = module.DEFAULT_TIMEOUT  # what the SDK uses when it builds its own client
    return getattr(module, cls)(**kwargs), recorder, http


def _call(
    client: str,
    version: str,
    method: str,
    url: str,
    scenario: str | None,
    server: FaultServer | None,
    body: Callable[[], dict[str, Any]],
    recorder: Any,
    options: dict[str, Any],
) -> SDKRun:
    count = _ServerCount(server, url)
    t0 = now_ns()
    exc_name, message, result, outcome = None, "", None, "returned"
    try:
        result = body()
    except Exception as exc:  # the SDK's exception is the finding
        exc_name, message, outcome = exception_name(exc), str(exc), "raised"
    elapsed = (now_ns() - t0) / 1e9
    trace = None
    if recorder is not None:
        traces = recorder.traces
        trace = traces[-1] if traces else None
        if trace is not None and scenario:
            trace.label = scenario
    return SDKRun(
        client=client,
        client_version=version,
        method=method,
        scenario=scenario,
        url=url,
        outcome=outcome,
        exception=exc_name,
        message=message,
        result=result,
        attempts=count.attempts(),
        elapsed=elapsed,
        trace=trace,
        server_requests=count.requests(),
        options=options,
    )


def run_anthropic(
    url: str | Scenario,
    *,
    method: str = "stream",
    server: FaultServer | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    instrument: bool = True,
) -> SDKRun:
    """One ``messages.stream`` (``method="stream"``) or ``messages.create(stream=True)``
    (``method="create"``) call through the ``anthropic`` Python SDK.

    ``url`` is a scenario URL, or a preset name / Scenario with ``server``. ``max_retries``
    and ``timeout`` (seconds) default to the SDK's own (2 and 600 s with connect 5 s).
    """
    if method not in ("stream", "create"):
        raise ConfigError.unknown("method", method, ("stream", "create"))
    anthropic = _import("anthropic")
    url, scenario, server = _resolve(url, server, "anthropic")
    sdk, recorder, http = _sdk_client(anthropic, "Anthropic", url, max_retries, timeout, instrument)
    request = {"model": MODEL["anthropic"], "max_tokens": 1024, "messages": PROMPT}

    def via_stream() -> dict[str, Any]:
        with sdk.messages.stream(**request) as s:
            events = sum(1 for _ in s)
            msg = s.get_final_message()
        text = "".join(getattr(b, "text", "") for b in msg.content)
        return {"events": events, "stop_reason": msg.stop_reason, "text_chars": len(text)}

    def via_create() -> dict[str, Any]:
        types: list[str] = []
        for ev in sdk.messages.create(**request, stream=True):
            types.append(ev.type)
        return {"events": len(types), "last_event": types[-1] if types else None}

    name = "messages.stream" if method == "stream" else "messages.create(stream=True)"
    opts = {"max_retries": max_retries, "timeout": timeout}
    try:
        return _call(
            "anthropic-python" if method == "stream" else "anthropic-python:create",
            anthropic.__version__,
            name,
            url,
            scenario,
            server,
            via_stream if method == "stream" else via_create,
            recorder,
            opts,
        )
    finally:
        http.close()


def run_openai(
    url: str | Scenario,
    *,
    server: FaultServer | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    instrument: bool = True,
) -> SDKRun:
    """One ``chat.completions.create(stream=True)`` call through the ``openai`` Python SDK.

    An Anthropic-protocol scenario URL on a FaultServer of this process is switched to the
    same scenario speaking the OpenAI protocol. The SDK's ``base_url`` gets ``/v1``.
    """
    openai = _import("openai")
    url, scenario, server = _resolve(url, server, "openai")
    sdk, recorder, http = _sdk_client(openai, "OpenAI", url.rstrip("/") + "/v1", max_retries, timeout, instrument)

    def body() -> dict[str, Any]:
        n, finish, text = 0, None, 0
        for chunk in sdk.chat.completions.create(model=MODEL["openai"], messages=PROMPT, stream=True):
            n += 1
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                text += len(choice.delta.content or "") if choice.delta else 0
        return {"chunks": n, "finish_reason": finish, "text_chars": text}

    try:
        return _call(
            "openai-python",
            openai.__version__,
            "chat.completions.create(stream=True)",
            url,
            scenario,
            server,
            body,
            recorder,
            {"max_retries": max_retries, "timeout": timeout},
        )
    finally:
        http.close()


#: Python clients by name -> (runner, keyword arguments)
CLIENTS: dict[str, tuple[Callable[..., SDKRun], dict[str, Any]]] = {
    "anthropic-python": (run_anthropic, {"method": "stream"}),
    "anthropic-python:create": (run_anthropic, {"method": "create"}),
    "openai-python": (run_openai, {}),
}


def run(client: str, url: str | Scenario, **kwargs: Any) -> SDKRun:
    """Run ``client`` (a name of :data:`CLIENTS`, or a Node client ``anthropic-node[@version]``,
    ``openai-node[@version]``; see :mod:`kit.node`) against ``url`` (or a scenario with ``server=``)."""
    if client in CLIENTS:
        fn, extra = CLIENTS[client]
        return fn(url, **extra, **kwargs)
    base = client.split("@", 1)[0].split(":", 1)[0]
    if base in ("anthropic-node", "openai-node"):
        from . import node

        return node.run(client, url, **kwargs)
    raise ConfigError.unknown("client", client, [*CLIENTS, "anthropic-node", "openai-node"])
