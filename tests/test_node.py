"""The Node SDKs (installed with npm into a cache folder) against the fault server.

Runs where node and npm exist; skips with the reason elsewhere (or when the npm
registry cannot be reached to install a package the first time).
"""

from __future__ import annotations

import pytest

import kit
from kit import node

pytestmark = pytest.mark.node
needs_node = pytest.mark.skipif(node.unavailable() is not None, reason=f"{node.unavailable()}")

INCIDENT = "request ended without sending any chunks"


@pytest.fixture(scope="module")
def server():
    with kit.FaultServer() as s:
        yield s


def _run(client, scenario, server, **kw):
    try:
        return node.run(client, scenario, server=server, timeout=5, **kw)
    except node.NodeUnavailable as exc:
        pytest.skip(str(exc))


@needs_node
@pytest.mark.parametrize("version", ["0.39", "latest"])
@pytest.mark.parametrize("scenario", ["empty_200", "pings_only", "close_delimited_empty"])
def test_the_incident_message_comes_from_a_clean_empty_body(server, version, scenario):
    r = _run(f"anthropic-node@{version}", scenario, server)
    assert r.outcome == "raised" and r.message == INCIDENT and r.attempts == 1
    assert r.exception == "AnthropicError"
    if version == "0.39":
        assert r.client_version.startswith("0.39.")


@needs_node
def test_a_network_cut_reads_differently(server):
    latest = _run("anthropic-node", "headers_then_close", server)
    assert latest.message == "terminated"  # undici (Node fetch)
    old = _run("anthropic-node@0.39", "headers_then_close", server)
    assert old.message == "Premature close"  # node-fetch, which 0.39 used in Node
    assert INCIDENT not in (latest.message, old.message)


@needs_node
def test_retries_and_ok(server):
    r = _run("anthropic-node", "overloaded_529", server)
    assert r.exception == "OverloadedError" and r.attempts == 3
    ok = _run("openai-node", "ok", server)
    assert ok.outcome == "returned" and ok.result["finish_reason"] == "stop"
    create = _run("anthropic-node:create@0.39", "empty_200", server)
    assert create.outcome == "returned" and create.result["events"] == 0  # no error without MessageStream


@needs_node
def test_a_stall_past_the_deadline_is_a_hang(server):
    sc = kit.atlas.scenario("stall_forever_mid_stream")  # the TS SDK has no body timer
    r = _run("anthropic-node", sc, server, hang_after=4)
    assert r.outcome == "hang" and r.attempts == 1


@needs_node
def test_cache_holds_exact_versions():
    try:
        folder, exact = node.ensure_package("@anthropic-ai/sdk", "0.39")
    except node.NodeUnavailable as exc:
        pytest.skip(str(exc))
    assert folder.name == f"anthropic-ai-sdk-{exact}" and exact in node.installed("@anthropic-ai/sdk")
    assert node.cache_dir() in folder.parents


def test_missing_node_is_skipped_with_a_reason(monkeypatch, server):
    monkeypatch.setattr(node.shutil, "which", lambda name: None)
    reason = node.unavailable()
    assert "node" in reason and "install" in reason.lower()
    r = node.run("anthropic-node", "empty_200", server=server)
    assert r.outcome == "skipped" and r.message == reason
    with pytest.raises(node.NodeUnavailable):
        node.ensure_package("openai")


def test_unknown_client():
    with pytest.raises(kit.ConfigError):
        node.run("anthropic-deno", "http://127.0.0.1:9/s/ok")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KIT_NODE_CACHE", str(tmp_path))
    assert node.cache_dir() == tmp_path.resolve() and node.installed("openai") == []


@needs_node
def test_caller_abort_and_the_openai_stream_helper(server):
    abort = _run("anthropic-node@0.39", "slow_first_byte", server, signal_timeout=1.0)
    assert (abort.exception, abort.message) == ("APIUserAbortError", "Request was aborted.") and abort.attempts == 1
    helper = _run("openai-node:stream", "empty_200", server)
    assert helper.message == INCIDENT  # the OpenAI stream helper says it too


def test_engines_ranges():
    assert node.engines_fit(">=18.0.0", (20, 20, 2)) and not node.engines_fit(">=22.0.0", (20, 20, 2))
    assert node.engines_fit("^18 || ^20", (20, 1, 0)) and not node.engines_fit("^18 || ^22", (20, 1, 0))
    assert node.engines_fit(None, (20,)) and node.engines_fit("*", (20,))
