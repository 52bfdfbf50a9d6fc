"""The real anthropic and openai Python SDKs against the fault server.

Each row: what the SDK raises (its real exception class) and how many requests the
server saw, with and without kit.instrument on its HTTP client (which must change neither).
"""

from __future__ import annotations

import re

import pytest

import kit
from kit import sdk

pytest.importorskip("anthropic")
pytest.importorskip("openai")

# (client, scenario) -> (exception class or "returned", attempts the server saw, trace cause)
EXPECTED = {
    ("anthropic-python", "empty_200"): ("AssertionError", 1, "ended"),
    ("anthropic-python", "headers_then_close"): ("httpx2.RemoteProtocolError", 1, "closed"),
    ("anthropic-python", "pings_only"): ("AssertionError", 1, "ended"),
    ("anthropic-python", "close_mid_stream"): ("httpx2.RemoteProtocolError", 1, "closed"),
    ("anthropic-python", "error_event_mid_stream"): ("anthropic.APIStatusError", 1, "error_event"),
    ("anthropic-python", "overloaded_529"): ("anthropic.OverloadedError", 3, "http_status"),
    ("anthropic-python", "rate_limited_429"): ("anthropic.RateLimitError", 2, "http_status"),
    ("anthropic-python:create", "empty_200"): ("returned", 1, "ended"),
    ("anthropic-python:create", "headers_then_close"): ("httpx2.RemoteProtocolError", 1, "closed"),
    ("anthropic-python:create", "pings_only"): ("returned", 1, "ended"),
    ("anthropic-python:create", "close_mid_stream"): ("httpx2.RemoteProtocolError", 1, "closed"),
    ("anthropic-python:create", "error_event_mid_stream"): ("anthropic.APIStatusError", 1, "error_event"),
    ("anthropic-python:create", "overloaded_529"): ("anthropic.OverloadedError", 3, "http_status"),
    ("anthropic-python:create", "rate_limited_429"): ("anthropic.RateLimitError", 2, "http_status"),
    ("openai-python", "empty_200"): ("returned", 1, "ended"),
    ("openai-python", "headers_then_close"): ("openai.APIConnectionError", 1, "closed"),
    ("openai-python", "pings_only"): ("returned", 1, "ended"),
    ("openai-python", "close_mid_stream"): ("openai.APIConnectionError", 1, "closed"),
    ("openai-python", "error_event_mid_stream"): ("openai.APIError", 1, "error_event"),
    ("openai-python", "overloaded_529"): ("openai.InternalServerError", 3, "http_status"),
    ("openai-python", "rate_limited_429"): ("openai.RateLimitError", 2, "http_status"),
}


@pytest.fixture(scope="module")
def server():
    with kit.FaultServer() as s:
        yield s


def _options(scenario):
    # 529 keeps the SDK's default retries (3 attempts); 429 says retry-after: 1, so one retry keeps it short
    return {"max_retries": 1} if scenario == "rate_limited_429" else {}


@pytest.mark.parametrize(("client", "scenario"), list(EXPECTED))
def test_sdk_exception_and_attempts(server, client, scenario):
    want_exc, want_attempts, want_cause = EXPECTED[(client, scenario)]
    plain = sdk.run(client, scenario, server=server, timeout=5, instrument=False, **_options(scenario))
    watched = sdk.run(client, scenario, server=server, timeout=5, instrument=True, **_options(scenario))
    for r in (plain, watched):
        assert (r.exception or r.outcome) == want_exc, r
        assert r.attempts == want_attempts, r
        assert [q["attempt"] for q in r.server_requests] == list(range(1, want_attempts + 1))
    same_but_ids = re.compile(r"req_[0-9A-Za-z]+")  # each request gets its own API request id
    assert same_but_ids.sub("req", plain.message) == same_but_ids.sub("req", watched.message)
    assert plain.result == watched.result
    assert plain.trace is None
    tr = watched.trace
    assert len(tr.attempts) == want_attempts  # the SDK's retries are separate attempts of one trace
    assert tr.outcome.cause == want_cause
    assert tr.label == scenario
    # the server's log is joined to each attempt through x-kit-request-id
    assert all(a.server_log and a.server_log[0].kind == "request" for a in tr.attempts)


def test_retries_show_their_waits(server):
    r = sdk.run("anthropic-python", "overloaded_529", server=server, timeout=5)
    waits = [a.wait_before for a in r.trace.attempts]
    assert waits[0] == 0
    # SDK backoff: 0.5 * (1 - 0.25 u), then 1.0 * (1 - 0.25 u); plus a little scheduling
    assert 0.37 <= waits[1] <= 0.6 and 0.75 <= waits[2] <= 1.1
    assert r.elapsed >= sum(waits)


def test_ok_stream_returns_and_matches_the_server(server):
    r = sdk.run("anthropic-python", "ok", server=server, timeout=5)
    assert r.outcome == "returned" and r.result["stop_reason"] == "end_turn"
    assert r.trace.ok and r.trace.events["type"].iloc[0] == "message_start"
    assert r.trace.summary()["bytes"] > 0
    o = sdk.run("openai-python", "ok", server=server, timeout=5)
    assert o.result["finish_reason"] == "stop" and o.trace.ok


def test_read_timeout_is_not_retried(server):
    sc = kit.Scenario.preset("stall_mid_stream")  # 3 s stall after 10 events
    r = sdk.run("anthropic-python", sc, server=server, timeout=0.5)
    assert r.exception == "httpx2.ReadTimeout" and r.attempts == 1
    assert r.trace.outcome.cause == "timeout.idle"


def test_bad_client_and_missing_server():
    with pytest.raises(kit.ConfigError):
        sdk.run("anthropic-pyton", "ok")
    with pytest.raises(kit.ConfigError):
        sdk.run("anthropic-python", "ok")  # a scenario name needs server=
    with pytest.raises(kit.ConfigError):
        sdk.run_anthropic("http://127.0.0.1:9/", method="complete")


def test_missing_sdk_message(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "openai":
            raise ImportError("no")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(sdk.SDKNotInstalled, match="pip install openai"):
        sdk.run_openai("http://127.0.0.1:9/")


def test_run_through_a_proxy_keeps_the_proxy_when_switching_protocol(server):
    from kit.proxy import NetworkProxy

    with NetworkProxy(server) as proxy:
        url = proxy.url_for("ok")  # an Anthropic scenario URL on the proxy's origin
        run = sdk.run("openai-python", url, server=server, timeout=5)
        assert run.outcome == "returned" and run.url.startswith(proxy.url + "/s/")
        assert len(proxy.connections()) >= 1  # the SDK's connection went through the proxy
        assert run.attempts == 1


def test_run_refuses_a_url_in_the_other_protocol_without_its_server(server):
    url = server.url_for("ok").with_origin("http://127.0.0.1:9")
    with pytest.raises(kit.ConfigError, match="speaks anthropic"):
        sdk.run("openai-python", url)
