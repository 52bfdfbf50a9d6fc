"""The Claude Code CLI (npm ``@anthropic-ai/claude-code``) against the fault server."""

from __future__ import annotations

import pytest

import kit
from kit import claude_code, node

pytestmark = pytest.mark.node


def test_claude_code_falls_back_to_json_and_says_so():
    if node.unavailable():
        pytest.skip(f"no Claude Code here: {node.unavailable()}")
    with kit.FaultServer() as server:
        try:
            run = claude_code.run("empty_200", server=server, max_retries=0, hang_after=90)
        except node.NodeUnavailable as exc:
            pytest.skip(str(exc))
    assert run.outcome == "raised" and run.exception == "exit 1"
    assert "API Error" in run.message and run.client_version == node.PINNED[claude_code.PACKAGE]
    # a failed stream, then its non-streaming fallback (answered with the API's JSON); the HEAD probe is not counted
    assert [q.get("stream") for q in run.server_requests if q.get("end") != "probe"] == [True, False]
    assert run.attempts == 2 and run.options["env"]["CLAUDE_CODE_MAX_RETRIES"] == "0"


def test_without_node_a_skipped_run_says_why(monkeypatch):
    monkeypatch.setattr(node, "unavailable", lambda: "node not found on PATH")
    monkeypatch.setattr(claude_code, "unavailable", lambda: "node not found on PATH")
    with kit.FaultServer() as server:
        run = claude_code.run("ok", server=server)
    assert run.outcome == "skipped" and "node" in run.message
