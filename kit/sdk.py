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

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ._clock import now_ns, ns_to_s
from ._errors import ConfigError
from ._loop import run_sync
from ._sdkrun import SDKNotInstalled, SDKRun, ServerCount, exception_name, resolve, scenario_url
from .protocols import ANTHROPIC, OPENAI
from .scenarios import Scenario
from .server import FaultServer

__all__ = ["CLIENTS", "SDKNotInstalled", "SDKRun", "run", "run_anthropic", "run_openai", "scenario_url"]

PROMPT = [{"role": "user", "content": "Say hello, slowly."}]


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise SDKNotInstalled(
            f"the {name} Python SDK is not installed: pip install {name}  (or: pip install 'kit[sdk]')"
        ) from None


def _sdk_client(
    module: Any,
    cls: str,
    base_url: str,
    max_retries: int | None,
    timeout: float | None,
    instrument: bool,
    asynchronous: bool = False,
):
    import httpx2

    # the SDKs' own client options, no env proxies
    http = (httpx2.AsyncClient if asynchronous else httpx2.Client)(trust_env=False, follow_redirects=True)
    cls = f"Async{cls}" if asynchronous else cls
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
    except (Exception, asyncio.CancelledError) as exc:  # the SDK's exception (or the caller's cancel) is the finding
        exc_name, message, outcome = exception_name(exc), str(exc), "raised"
    elapsed = ns_to_s(now_ns() - t0)
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


def _body(sync: Callable[[], Any], make_async: Callable[[], Any], abort_after: float | None) -> Callable[[], Any]:
    """The call as the application makes it; with ``abort_after`` (s) the async call runs as a
    task that the caller cancels after that long (``asyncio.CancelledError`` if still running)."""
    if abort_after is None:
        return sync

    async def cancelled() -> Any:
        task = asyncio.ensure_future(make_async())
        done, _ = await asyncio.wait({task}, timeout=abort_after)
        if not done:
            task.cancel()
        return await task

    return lambda: run_sync(cancelled())


def run_anthropic(
    url: str | Scenario,
    *,
    method: str = "stream",
    server: FaultServer | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    instrument: bool = True,
    abort_after: float | None = None,
) -> SDKRun:
    """One ``messages.stream`` (``method="stream"``) or ``messages.create(stream=True)``
    (``method="create"``) call through the ``anthropic`` Python SDK.

    ``url`` is a scenario URL, or a preset name / Scenario with ``server``. ``max_retries``
    and ``timeout`` (seconds) default to the SDK's own (2 and 600 s with connect 5 s).
    ``abort_after`` (s): the async client's call runs as a task the caller cancels then.
    """
    if method not in ("stream", "create"):
        raise ConfigError.unknown("method", method, ("stream", "create"))
    anthropic = _import("anthropic")
    url, scenario, server = resolve(url, server, "anthropic")
    asynchronous = abort_after is not None
    sdk, recorder, http = _sdk_client(anthropic, "Anthropic", url, max_retries, timeout, instrument, asynchronous)
    request = {"model": ANTHROPIC.api.model, "max_tokens": 1024, "messages": PROMPT}

    def via_stream() -> dict[str, Any]:
        with sdk.messages.stream(**request) as s:
            events = sum(1 for _ in s)
            msg = s.get_final_message()
        text = "".join(getattr(b, "text", "") for b in msg.content)
        return {"events": events, "stop_reason": msg.stop_reason, "text_chars": len(text)}

    async def via_stream_async() -> dict[str, Any]:
        async with sdk.messages.stream(**request) as s:
            events = 0
            async for _ in s:
                events += 1
            msg = await s.get_final_message()
        return {"events": events, "stop_reason": msg.stop_reason}

    def via_create() -> dict[str, Any]:
        types: list[str] = [ev.type for ev in sdk.messages.create(**request, stream=True)]
        return {"events": len(types), "last_event": types[-1] if types else None}

    async def via_create_async() -> dict[str, Any]:
        types = [ev.type async for ev in await sdk.messages.create(**request, stream=True)]
        return {"events": len(types), "last_event": types[-1] if types else None}

    body = (
        _body(via_stream, via_stream_async, abort_after)
        if method == "stream"
        else _body(via_create, via_create_async, abort_after)
    )
    name = "messages.stream" if method == "stream" else "messages.create(stream=True)"
    opts = {"max_retries": max_retries, "timeout": timeout, "abort_after": abort_after}
    try:
        return _call(
            "anthropic-python" if method == "stream" else "anthropic-python:create",
            anthropic.__version__,
            name,
            url,
            scenario,
            server,
            body,
            recorder,
            opts,
        )
    finally:
        _close(http)


def _close(http: Any) -> None:
    if hasattr(http, "aclose"):  # an AsyncClient: its connections belonged to the finished loop
        with contextlib.suppress(Exception):
            run_sync(http.aclose())
    else:
        http.close()


def run_openai(
    url: str | Scenario,
    *,
    method: str = "create",
    server: FaultServer | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    instrument: bool = True,
    abort_after: float | None = None,
) -> SDKRun:
    """One ``chat.completions.create(stream=True)`` (``method="create"``) or
    ``chat.completions.stream()`` (``method="stream"``, the stream helper) call through the
    ``openai`` Python SDK.

    An Anthropic-protocol scenario URL is switched to the same scenario speaking the
    OpenAI protocol on the same origin. The SDK's ``base_url`` gets ``/v1``.
    """
    if method not in ("stream", "create"):
        raise ConfigError.unknown("method", method, ("stream", "create"))
    openai = _import("openai")
    url, scenario, server = resolve(url, server, "openai")
    asynchronous = abort_after is not None
    sdk, recorder, http = _sdk_client(
        openai, "OpenAI", url.rstrip("/") + "/v1", max_retries, timeout, instrument, asynchronous
    )
    request = {"model": OPENAI.api.model, "messages": PROMPT}

    def tally(chunks: list[Any]) -> dict[str, Any]:
        finish, text = None, 0
        for chunk in chunks:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                text += len(choice.delta.content or "") if choice.delta else 0
        return {"chunks": len(chunks), "finish_reason": finish, "text_chars": text}

    def helper(api: Any) -> Any:
        return api.chat.completions if hasattr(api.chat.completions, "stream") else api.beta.chat.completions

    def via_create() -> dict[str, Any]:
        return tally(list(sdk.chat.completions.create(**request, stream=True)))

    async def via_create_async() -> dict[str, Any]:
        return tally([c async for c in await sdk.chat.completions.create(**request, stream=True)])

    def via_stream() -> dict[str, Any]:
        with helper(sdk).stream(**request) as s:
            events = sum(1 for _ in s)
            final = s.get_final_completion()
        return {"events": events, "finish_reason": final.choices[0].finish_reason if final.choices else None}

    async def via_stream_async() -> dict[str, Any]:
        async with helper(sdk).stream(**request) as s:
            events = 0
            async for _ in s:
                events += 1
            final = await s.get_final_completion()
        return {"events": events, "finish_reason": final.choices[0].finish_reason if final.choices else None}

    body = (
        _body(via_create, via_create_async, abort_after)
        if method == "create"
        else _body(via_stream, via_stream_async, abort_after)
    )
    try:
        return _call(
            "openai-python" if method == "create" else "openai-python:stream",
            openai.__version__,
            "chat.completions.create(stream=True)" if method == "create" else "chat.completions.stream",
            url,
            scenario,
            server,
            body,
            recorder,
            {"max_retries": max_retries, "timeout": timeout, "abort_after": abort_after},
        )
    finally:
        _close(http)


#: Python clients by name -> (runner, keyword arguments)
CLIENTS: dict[str, tuple[Callable[..., SDKRun], dict[str, Any]]] = {
    "anthropic-python": (run_anthropic, {"method": "stream"}),
    "anthropic-python:create": (run_anthropic, {"method": "create"}),
    "openai-python": (run_openai, {"method": "create"}),
    "openai-python:stream": (run_openai, {"method": "stream"}),
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

        kwargs.pop("abort_after", None) if kwargs.get("abort_after") is None else None
        if "abort_after" in kwargs:  # the Node caller aborts with AbortSignal.timeout
            kwargs["signal_timeout"] = kwargs.pop("abort_after")
        return node.run(client, url, **kwargs)
    if base == "claude-code":
        from . import claude_code

        version = client.partition("@")[2]
        return claude_code.run(url, version=version or "latest", **kwargs)
    raise ConfigError.unknown("client", client, [*CLIENTS, "anthropic-node", "openai-node", "claude-code"])
