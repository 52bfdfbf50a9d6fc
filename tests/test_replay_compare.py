"""Recording vs replay: the per-chunk table (matched by byte offset), the fidelity metric, the chart."""

from __future__ import annotations

from array import array

import pandas as pd
import pytest

import kit
import kit.charts
from kit.replay_compare import COLUMNS, fidelity, table
from kit.trace import Attempt, Trace


def _trace(times_ms, sizes, headers_ms=0.0) -> Trace:
    a = Attempt(index=1, request_id="r", method="POST", url="u", start_ns=0)
    a.headers_ns = int(headers_ms * 1e6)
    a.chunk_t = array("q", [int(a.headers_ns + t * 1e6) for t in times_ms])
    a.chunk_size = array("q", sizes)
    return Trace(url="u", protocol="raw", start_ns=0, attempts=[a])


def test_chunks_are_matched_by_byte_offset_not_index():
    rec = _trace([10, 20, 30], [100, 100, 100])
    rep = _trace([11, 31], [200, 100], headers_ms=5)  # the client's read merged two writes
    df = table(rec, rep)
    assert list(df.columns) == COLUMNS and df["bytes"].tolist() == [100, 200, 300]
    assert df["replayed_s"].tolist() == pytest.approx([0.011, 0.011, 0.031])
    assert df["error_s"].tolist() == pytest.approx([0.001, -0.009, 0.001])
    fit = fidelity(rec, rep)
    assert fit["bytes_identical"] and fit["bytes_compared"] == "count" and fit["chunks"] == 3
    assert fit["error_max_s"] == pytest.approx(0.009) and fit["gap_error_max_s"] == pytest.approx(0.01)


def test_a_short_replay_leaves_the_missing_chunks_empty():
    df = table(_trace([1, 2, 3], [10, 10, 10]), _trace([1], [15]))
    assert df["replayed_s"].isna().tolist() == [False, True, True]
    assert not fidelity(_trace([1, 2, 3], [10, 10, 10]), _trace([1], [15]))["bytes_identical"]


def test_chart_of_recording_and_replay():
    rec, rep = _trace([10, 20, 30], [100, 100, 100]), _trace([10.5, 20.2, 31], [100, 100, 100])
    spec = kit.charts.replay_comparison(rec, rep).to_dict()
    assert "gap error p99" in str(spec) and "Difference per chunk" in str(spec)
    assert kit.charts.replay_comparison(table(rec, rep)).to_dict()
    big = table(_trace(list(range(5000)), [1] * 5000), _trace(list(range(5000)), [1] * 5000))
    assert "every 3th chunk drawn" in str(kit.charts.replay_comparison(big).to_dict())
    assert "nothing to draw" in str(kit.charts.replay_comparison(big.iloc[:0]).to_dict())
    with pytest.raises(kit.ConfigError):
        kit.charts.replay_comparison(pd.DataFrame({"x": [1]}))


def test_a_saved_recording_alone_gives_the_same_comparison(server, tmp_path):
    sc = kit.Scenario(events=6, gap=0.01, name="src")
    with kit.Recorder(server.url_for(sc), out=tmp_path / "rec") as rec:
        kit.stream(kit.ScenarioURL(rec.url, sc))
    replay = kit.replay_scenario(tmp_path / "rec")  # what a colleague has: the folder
    replayed = kit.stream(server.url_for(replay))
    from_trace, from_folder = table(rec.traces[0], replayed), table(replay, replayed)
    pd.testing.assert_frame_equal(from_trace, from_folder, atol=1e-6)
    fit = fidelity(replay, replayed)
    assert fit["events_identical"] and fit["bytes_identical"]
