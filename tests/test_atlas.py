"""The symptom atlas: the stored table, fuzzy lookup, and a small rebuild."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kit
from kit import atlas

INCIDENT = "request ended without sending any chunks"


def test_normalize_ignores_case_numbers_ids_and_punctuation():
    a = atlas.normalize("Error: 529 {'type': 'overloaded_error'} request_id req_011CKabc123 at 12:03:44")
    b = atlas.normalize("error: 503 {type: overloaded_error} request_id req_9ZZZ at 1:2:3")
    assert a == b
    assert atlas.normalize("Request ENDED without sending any chunks.") == INCIDENT
    assert atlas.normalize("id 3f2a9c0d1e2b ok") == atlas.normalize("id 77aa00ffee11 ok")


SAMPLE = pd.DataFrame(
    [
        ("anthropic-node", "0.39.0", "empty_200", "AnthropicError", INCIDENT),
        ("anthropic-node", "1.14.0", "pings_only", "AnthropicError", INCIDENT),
        ("anthropic-node", "1.14.0", "headers_then_close", "AnthropicError", "terminated"),
        ("anthropic-python", "2.14.0", "empty_200", "AssertionError", ""),
        ("openai-python", "3.57.0", "overloaded_529", "openai.InternalServerError", "Error code: 529 - Overloaded"),
    ],
    columns=["client", "client_version", "scenario", "exception", "message"],
)


def test_lookup_fuzzy():
    hits = atlas.lookup("Error: Request ended without sending any chunks\n    at MessageStream._endRequest", SAMPLE)
    assert set(hits["scenario"]) == {"empty_200", "pings_only"} and (hits["score"] == 1).all()
    assert list(atlas.lookup("request ended without sending any chunk", SAMPLE)["scenario"]) == [
        "empty_200",
        "pings_only",
    ]  # a near variant still matches
    assert list(atlas.lookup("Error code: 503 - overloaded", SAMPLE)["scenario"]) == ["overloaded_529"]
    assert list(atlas.lookup("AssertionError", SAMPLE)["client"]) == ["anthropic-python"]
    assert atlas.lookup("something else entirely went wrong", SAMPLE).empty
    with pytest.raises(kit.ConfigError):
        atlas.lookup("  ", SAMPLE)


def test_lookup_matches_whole_words_only():
    rows = pd.DataFrame(
        [
            ("anthropic-node", "1.15.0", "headers_then_close", "TypeError", "terminated"),
            ("anthropic-node", "1.15.0", "malformed_sse", "SyntaxError", "Unterminated string in JSON at position 97"),
        ],
        columns=["client", "client_version", "scenario", "exception", "message"],
    )
    assert list(atlas.lookup("terminated", rows)["scenario"]) == ["headers_then_close"]
    assert list(atlas.lookup("TypeError: terminated", rows)["scenario"]) == ["headers_then_close"]
    hit = atlas.lookup("Unterminated string in JSON at position 12", rows)
    assert list(hit["scenario"]) == ["malformed_sse"] and hit["printed_by"].iloc[0] == "anthropic-node 1.15.0"


@given(
    word=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8),
    prefix=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=4),
    n=st.integers(0, 10**6),
)
@settings(max_examples=60, deadline=None)
def test_a_word_inside_a_longer_word_is_no_hit(word, prefix, n):
    rows = pd.DataFrame(
        [("c", "1", "s", "E", f"{prefix}{word} at position {n}")],
        columns=["client", "client_version", "scenario", "exception", "message"],
    )
    hits = atlas.lookup(word, rows)
    assert hits.empty or (hits["score"] < 1).all()
    assert (atlas.lookup(f"{prefix}{word} at position {n + 7}", rows)["score"] == 1).all()


def test_every_stored_message_finds_its_own_scenarios():
    df = atlas.load()
    norm = df["message"].map(atlas.normalize)
    for message in sorted(set(df.loc[norm != "", "message"])):
        hits = atlas.lookup(message, df)
        want = df[norm == atlas.normalize(message)]
        got = set(zip(hits["client"], hits["mode"], hits["scenario"], strict=True))
        assert set(zip(want["client"], want["mode"], want["scenario"], strict=True)) <= got, message
        words = atlas.normalize(message).split()
        for hit in hits[
            hits["score"] == 1
        ].itertuples():  # a full-score hit holds the query as whole words (or inside it)
            m = atlas.normalize(f"{hit.exception.rsplit('.', 1)[-1]} {hit.message}").split()
            assert any(m[i : i + len(words)] == words for i in range(len(m))) or any(
                words[i : i + len(atlas.normalize(hit.message).split())] == atlas.normalize(hit.message).split()
                for i in range(len(words))
            ), (message, hit.message)


def test_stored_atlas_has_timeout_hang_abort_helper_and_claude_code_rows():
    df = atlas.load()
    if "claude-code" not in set(df["client"]):
        pytest.skip("the stored atlas was built without node")
    assert {"default", "timeout", "abort"} <= set(df["mode"])
    assert (df["outcome"] == "hang").any()
    assert {"openai-python:stream", "openai-node:stream", "claude-code"} <= set(df["client"])
    assert not atlas.lookup("Request timed out.", df).empty
    assert not atlas.lookup("Request was aborted.", df).empty
    claude = df[(df["client"] == "claude-code") & (df["mode"] == "default") & (df["scenario"] == "empty_200")].iloc[0]
    assert claude["requests"] == "stream json"  # its non-streaming fallback, answered with JSON
    env = atlas.environment()
    assert env["pinned_npm"] and env["node"]


def test_stored_atlas_reproduces_the_incident_message_in_node():
    df = atlas.load()
    assert set(atlas.COLUMNS) <= set(df.columns)
    env = atlas.environment()
    assert env["python"] and "anthropic-python" in env["clients"]
    if "anthropic-node" not in set(df["client"]):
        pytest.skip("the stored atlas was built without node")
    hits = atlas.lookup(INCIDENT)
    node_hits = hits[hits["client"] == "anthropic-node"]
    assert {"empty_200", "pings_only", "close_delimited_empty"} <= set(node_hits["scenario"])
    # network cuts read differently ("terminated", "Premature close"): never this message
    assert not set(hits["scenario"]) & {"headers_then_close", "headers_then_reset", "close_mid_stream"}
    assert {"0.39.0"} <= set(node_hits["client_version"])
    cut = df[(df["client"] == "anthropic-node") & (df["scenario"] == "headers_then_close")]
    assert set(cut["message"]) <= {"terminated", "Premature close"}


def test_build_a_small_atlas(tmp_path):
    df = atlas.build(
        ["anthropic-python", "openai-python"], ["empty_200", "overloaded_529"], modes=["default"], out=tmp_path
    )
    assert list(df.columns) == atlas.COLUMNS and len(df) == 4
    row = df[(df["client"] == "anthropic-python") & (df["scenario"] == "overloaded_529")].iloc[0]
    assert row["exception"] == "anthropic.OverloadedError" and row["attempts"] == 3  # the SDK's own 2 retries
    assert row["requests"] == "stream stream stream" and (row["trace_phase"], row["trace_cause"]) == (
        "headers",
        "http_status",
    )
    again = atlas.load(tmp_path)
    assert again["attempts"].tolist() == df["attempts"].tolist()
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["options"]["scenarios"] == ["empty_200", "overloaded_529"] and env["clients"]["openai-python"]
    assert "@anthropic-ai/sdk" in env["pinned_npm"]
    assert len(atlas.lookup("Error code: 529", again)) == 2


def test_timeout_hang_and_abort_rows(tmp_path):
    df = atlas.build(
        ["anthropic-python"], ["stall_forever_first_byte", "empty_200"], hang_after=6.0, out=None, workers=4
    )
    got = {
        (r.mode, r.scenario): (r.outcome, r.exception if isinstance(r.exception, str) else None)
        for r in df.itertuples()
    }
    assert got[("default", "stall_forever_first_byte")] == ("hang", None)
    assert got[("timeout", "stall_forever_first_byte")] == ("raised", "httpx2.ReadTimeout")
    assert got[("abort", "stall_forever_first_byte")] == ("raised", "asyncio.CancelledError")
    assert got[("abort", "empty_200")] == ("raised", "AssertionError")  # the fault came before the abort
    hang = df[df["outcome"] == "hang"].iloc[0]
    assert hang["elapsed"] >= 6.0 and "after 6 s" in hang["message"]
    assert (hang["trace_phase"], hang["trace_cause"]) == ("first_chunk", "timeout.idle")


def test_build_rejects_unknown_scenarios(tmp_path):
    with pytest.raises(kit.ConfigError):
        atlas.build(["anthropic-python"], ["empty_2000"], out=tmp_path)


def test_missing_atlas_file(tmp_path):
    with pytest.raises(kit.BundleError, match="kit atlas build"):
        atlas.load(tmp_path)
