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

from collections.abc import Callable
from typing import Any

from ._clock import now_ns
from ._errors import ConfigError
from ._sdkrun import SDKNotInstalled, SDKRun, ServerCount, exception_name, resolve, scenario_url
from .scenarios import Scenario
from .server import FaultServer

__all__ = ["CLIENTS", "SDKNotInstalled", "SDKRun", "run", "run_anthropic", "run_openai", "scenario_url"]

MODEL = {"anthropic": "claude-kit-1", "openai": "gpt-kit-1"}
PROMPT = [{"role": "user", "content": "Say hello, slowly."}]


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
    count = ServerCount(server, url)
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
    url, scenario, server = resolve(url, server, "anthropic")
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
    url, scenario, server = resolve(url, server, "openai")
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
