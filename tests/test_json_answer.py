"""Non-streaming requests (``"stream": false``) get the API's JSON, with the scenario's faults applied."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

import kit
from kit.sdk import scenario_url

BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
PATH = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
ID = {
    "anthropic": ("request-id", re.compile(r"^req_011C[1-9A-HJ-NP-Za-km-z]{20}$")),
    "openai": ("x-request-id", re.compile(r"^req_[0-9a-f]{32}$")),
}


def _post(url: str, protocol: str, stream: bool | None = False) -> httpx.Response:
    body = dict(BODY) if stream is None else {**BODY, "stream": stream}
    with httpx.Client(trust_env=False, timeout=5) as c:
        return c.post(url + PATH[protocol], json=body)


def _is_document(protocol: str, doc: dict) -> bool:
    if protocol == "anthropic":
        return doc["type"] == "message" and doc["content"][0]["type"] == "text"
    return doc["object"] == "chat.completion" and doc["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
def test_whole_document_compact_with_api_headers(server, protocol):
    r = _post(scenario_url(server, "ok", protocol), protocol, stream=None)  # "stream" left out: JSON
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert _is_document(protocol, r.json())
    assert r.content == json.dumps(r.json(), separators=(",", ":")).encode()  # compact, as the APIs send it
    header, pattern = ID[protocol]
    assert pattern.match(r.headers[header]), r.headers[header]
    prefix = "anthropic-ratelimit-" if protocol == "anthropic" else "x-ratelimit-"
    assert any(k.startswith(prefix) for k in r.headers)
    streamed = _post(scenario_url(server, "ok", protocol), protocol, stream=True)
    assert streamed.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
def test_status_faults_have_the_documented_error_body(server, protocol):
    r = _post(scenario_url(server, "overloaded_529", protocol), protocol)
    body = r.json()
    assert r.status_code == 529
    if protocol == "anthropic":
        assert body["type"] == "error" and body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
        assert body["request_id"] == r.headers["request-id"]
    else:
        assert body["error"]["type"] == "server_error" and set(body["error"]) == {"message", "type", "param", "code"}
    # a mid-stream error event becomes the status the same failure gets without a stream
    r = _post(scenario_url(server, "error_event_mid_stream", protocol), protocol)
    assert r.status_code == 529 and "Overloaded" in r.text


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
def test_empty_and_cut_bodies(server, protocol):
    r = _post(scenario_url(server, "empty_200", protocol), protocol)
    assert r.status_code == 200 and r.content == b""
    for preset in ("malformed_sse", "no_terminator"):
        r = _post(scenario_url(server, preset, protocol), protocol)
        assert r.status_code == 200 and r.content
        with pytest.raises(ValueError):
            json.loads(r.content)
    for preset in ("headers_then_close", "close_mid_stream", "truncated_chunk", "reset_mid_stream"):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            _post(scenario_url(server, preset, protocol), protocol)


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
def test_wrong_format_and_json_presets(server, protocol):
    other = "openai" if protocol == "anthropic" else "anthropic"
    assert _is_document(other, _post(scenario_url(server, "wrong_format", protocol), protocol).json())
    assert _is_document(protocol, _post(scenario_url(server, "json_instead_of_stream", protocol), protocol).json())


def test_slow_headers_and_stalls_delay_the_document(server):
    sc = kit.Scenario(events=3, gap=0.0, headers_delay=0.3, faults=(kit.Stall(after=2, duration=0.3),))
    t = time.monotonic()
    r = _post(server.url_for(sc), "anthropic")
    assert r.status_code == 200 and _is_document("anthropic", r.json())
    assert time.monotonic() - t >= 0.55
    forever = kit.Scenario(events=3, faults=(kit.Stall(after=1),))
    with pytest.raises(httpx.ReadTimeout), httpx.Client(trust_env=False, timeout=0.5) as c:
        c.post(server.url_for(forever) + "/v1/messages", json=BODY)


def test_probes_are_answered_not_counted(server):
    url = server.url_for("fail_fail_succeed")
    with httpx.Client(trust_env=False) as c:
        assert c.head(server.url + "/").status_code == 200
        assert c.head(url).status_code == 200 and c.get(url).status_code == 200
        statuses = [c.post(url + "/v1/messages", json={**BODY, "stream": True}).status_code for _ in range(3)]
    assert statuses == [529, 529, 200]  # the probes did not use up attempts
    probes = [r for r in server.requests if r.get("end") == "probe"]
    assert len(probes) == 3
