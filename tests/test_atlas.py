"""The symptom atlas: the stored table, fuzzy lookup, and a small rebuild."""

from __future__ import annotations

import json

import pandas as pd
import pytest

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
        ["anthropic-python", "openai-python"], ["empty_200", "overloaded_529"], max_retries=1, out=tmp_path
    )
    assert list(df.columns) == atlas.COLUMNS and len(df) == 4
    row = df[(df["client"] == "anthropic-python") & (df["scenario"] == "overloaded_529")].iloc[0]
    assert row["exception"] == "anthropic.OverloadedError" and row["attempts"] == 2
    again = atlas.load(tmp_path)
    assert again["attempts"].tolist() == df["attempts"].tolist()
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["options"]["scenarios"] == ["empty_200", "overloaded_529"] and env["clients"]["openai-python"]
    assert len(atlas.lookup("Error code: 529", again)) == 2


def test_build_rejects_unknown_scenarios(tmp_path):
    with pytest.raises(kit.ConfigError):
        atlas.build(["anthropic-python"], ["empty_2000"], out=tmp_path)


def test_missing_atlas_file(tmp_path):
    with pytest.raises(kit.BundleError, match="kit atlas build"):
        atlas.load(tmp_path)
