"""kit.evidence: chunk logs into tables, and similarity to the scenario presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import kit
import kit.charts
from kit import BundleError, ConfigError
from kit.evidence import FEATURES, _cost, features, load_csv, match, reference

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"


def test_reference_covers_every_preset():
    ref = reference()
    assert set(ref.scenario) == set(kit.Scenario.presets())
    assert set(FEATURES) <= set(ref.columns)
    empty = ref[ref.scenario == "empty_200"].iloc[0]
    assert (empty.phase, empty.cause, empty.message_start, empty.chunks) == ("first_chunk", "ended", False, 0)


def test_load_csv_example_into_result_tables():
    res = load_csv(EXAMPLES / "chunk-log.csv")
    t = res.trials.set_index("trial_id")
    assert list(t.index) == ["call-1", "call-2", "call-3"]
    assert (t.loc["call-1", "phase"], t.loc["call-1", "cause"], t.loc["call-1", "chunks"]) == (
        "first_chunk",
        "ended",
        0,
    )
    assert t.loc["call-1", "message"] == "request ended without sending any chunks"
    assert (t.loc["call-2", "phase"], t.loc["call-2", "cause"]) == ("done", "ok")
    assert t.loc["call-2", "chunks"] == 14 and math.isclose(t.loc["call-2", "first_chunk_s"], 0.52)
    assert set(res.chunks.columns) >= {"trial_id", "attempt", "t", "size", "gap"}
    kit.charts.timeline(res).to_dict()  # the same charts work on it


def test_load_csv_errors(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("size\n3\n")
    with pytest.raises(BundleError, match="'t' column"):
        load_csv(p)
    p.write_text("t,colour\n1,red\n")
    with pytest.raises(BundleError, match="unknown column"):
        load_csv(p)
    p.write_text("t,size\nsoon,3\n")
    with pytest.raises(BundleError, match=r"x.csv:2"):
        load_csv(p)
    with pytest.raises(BundleError, match="no such"):
        load_csv(tmp_path / "missing.csv")


def test_each_preset_trace_matches_itself():
    with kit.FaultServer() as server:
        pol = kit.Policy(connect=5, headers=10, idle=10, total=30)
        traces = [
            kit.stream(server.url_for(n), policy=pol) for n in ("ok", "empty_200", "headers_then_reset", "pings_only")
        ]
    for name, t in zip(("ok", "empty_200", "headers_then_reset", "pings_only"), traces, strict=True):
        m = match(t, top=3)
        best = m.iloc[0]
        assert best.scenario == name or (name == "empty_200" and best.scenario == "close_delimited_empty"), m
        assert 0.8 < best.similarity <= 1.0
        assert m.similarity.is_monotonic_decreasing


def test_match_from_har_and_bundle_examples():
    har = match(EXAMPLES / "incident.har", top=1).set_index("trial_id").scenario
    # an empty 200 is empty_200 or close_delimited_empty: the same features, only the framing differs
    empty = {"empty_200", "close_delimited_empty"}
    assert har.iloc[0] == "ok" and har.iloc[1] in empty and har.iloc[2] == "stall_mid_stream"
    b = match(kit.load(EXAMPLES / "outage-bundle"), top=1)
    assert set(b.scenario) <= {"ok", *empty, "slow_first_byte", "slow_headers"}
    assert "ok" in set(b.scenario) and set(b.scenario) & empty


def test_cost_measure():
    assert _cost("phase", "done", "done") == 0
    assert _cost("phase", "done", "stream") == FEATURES["phase"][1]
    assert _cost("message_start", None, True) == FEATURES["message_start"][1] / 2
    assert _cost("chunks", 26.0, 26.0) == 0
    assert _cost("duration_s", 0.1, 100.0) == FEATURES["duration_s"][1]  # capped at the weight
    assert _cost("first_chunk_s", float("nan"), float("nan")) == 0
    assert _cost("first_chunk_s", float("nan"), 0.1) == FEATURES["first_chunk_s"][1]
    assert 0 < _cost("duration_s", 0.3, 0.35) < 0.1  # small differences cost little


def test_features_and_bad_input():
    f = features(EXAMPLES / "chunk-log.csv")
    assert list(f.columns) == list(FEATURES)
    assert f.loc["call-3", "message_start"] is False or f.loc["call-3", "message_start"] == False  # noqa: E712
    with pytest.raises(ConfigError):
        features(42)
    with pytest.raises(ConfigError):
        match(EXAMPLES / "chunk-log.csv", top=0)


# ------------------------------------------- issue 14 item 12: hostile CSV -> BundleError

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("t,size\n1e300,3\n", r"x.csv:2: column 't'"),
        ("t,size\n1e10,3\n", r"x.csv:2: column 't'"),
        ("t,size\n-1,3\n", r"x.csv:2: column 't'"),
        ("t,kind,status\n0.1,headers,abc\n", r"x.csv:2: column 'status'"),
        ("t,kind,status\n0.1,headers,nan\n", r"x.csv:2: column 'status'"),
        ("t,kind,status\n0.1,headers,1e400\n", r"x.csv:2: column 'status'"),
        ("t,size\n0.1,1e300\n", r"x.csv:2: column 'size'"),
        ("t,attempt\n0.1,1e300\n", r"x.csv:2: column 'attempt'"),
        ("t,size,message\n0.1,3,ok\n0.2,3," + "m" * 300_000 + "\n", r"x.csv:3: not valid CSV \(column 'message'\)"),
    ],
)
def test_hostile_csv_values_name_file_line_and_column(tmp_path, body, where):
    p = tmp_path / "x.csv"
    p.write_text(body)
    with pytest.raises(BundleError, match=where):
        load_csv(p)


def test_binary_csv_is_a_bundle_error_naming_the_line(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b"t,size\n0.1,3\n\xff\xfe\x00binary\n")
    with pytest.raises(BundleError, match=r"x.csv:3: not UTF-8"):
        load_csv(p)
    p.write_bytes(b"t,size\n0.1,3\n0.2,\x00\n")
    with pytest.raises(BundleError, match=r"x.csv:3: a NUL byte"):
        load_csv(p)


FIELD = st.one_of(
    st.sampled_from(["", "0", "0.5", "1e300", "-1", "nan", "inf", "1e400", "abc", "²", "200", "chunk", "end", '"']),
    st.text(max_size=12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(
        st.sampled_from(["t", "size", "kind", "status", "attempt", "event", "message", "trial_id"]),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    rows=st.lists(st.lists(FIELD, min_size=1, max_size=6), max_size=6),
    raw=st.binary(max_size=40),
)
def test_any_csv_loads_or_is_a_bundle_error(tmp_path, header, rows, raw):
    p = tmp_path / "h.csv"
    text = ",".join(header) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    p.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
    try:
        load_csv(p)
    except BundleError as exc:
        assert str(p) in str(exc)
