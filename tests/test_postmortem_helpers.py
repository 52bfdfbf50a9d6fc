"""kit.postmortem: asking many clients, the recorded fallback, verdicts."""

from __future__ import annotations

import pandas as pd

import kit
from kit import postmortem

RECORDED = pd.DataFrame(
    [
        ("anthropic-node", "0.39.0", "default", "empty_200", "raised", "AnthropicError", "request ended", 1),
        ("anthropic-node", "0.39.0", "abort", "slow_first_byte", "raised", "APIUserAbortError", "aborted", 1),
    ],
    columns=["client", "client_version", "mode", "scenario", "outcome", "exception", "message", "attempts"],
).assign(elapsed=0.5, requests="stream")


def test_ask_live_python_and_recorded_node():
    with kit.FaultServer() as server:
        a = postmortem.ask(
            "empty_200", ["anthropic-node@0.39", "anthropic-python"], server=server, live_node=False, atlas=RECORDED
        )
        b = postmortem.ask(
            "slow_first_byte",
            ["anthropic-node@0.39", "claude-code", "anthropic-python"],
            server=server,
            live_node=False,
            atlas=RECORDED,
            abort_after=0.5,
        )
    assert list(a.columns) == postmortem.ASK_COLUMNS
    assert a.set_index("client").loc["anthropic-node@0.39", "source"] == "atlas"
    assert a.set_index("client").loc["anthropic-python", "exception"] == "AssertionError"
    got = b.set_index("client")
    assert got.loc["anthropic-node@0.39", "message"] == "aborted" and (got["mode"] == "abort").all()
    assert got.loc["claude-code", "outcome"] == "not applicable"
    assert got.loc["anthropic-python", "exception"] == "asyncio.CancelledError"
    v = postmortem.verdict(
        "x",
        a.assign(message="request ended"),
        None,
        symptom="request ended",
        judge=["anthropic-node@0.39"],
        show=["anthropic-python"],
    )
    assert v["reproduces symptom"] is True and v["anthropic-python"].startswith("AssertionError")
