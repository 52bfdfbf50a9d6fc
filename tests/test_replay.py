"""Replay scenarios: recorded bytes and timing from the fault server, faults on top, files in."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import kit
from kit.protocols import generate_units
from kit.replay import Replay

UNITS = generate_units("anthropic", 8, None)  # 14 SSE events, one per chunk
SSE = (("content-type", "text/event-stream; charset=utf-8"), ("x-ratelimit-remaining", "7"))


def _replay(times=None, chunks=None, **kw) -> kit.Scenario:
    chunks = chunks if chunks is not None else tuple(u.payload for u in UNITS)
    times = times if times is not None else tuple(0.01 + 0.015 * i for i in range(len(chunks)))
    return kit.Scenario(events=0, replay=Replay(headers=SSE, times=times, chunks=chunks, **kw), name="rec")


def _scheduled(trace) -> pd.Series:
    """When the server planned each body write (s after its first), from its log of the call."""
    log = trace.server
    writes = log[(log["kind"] == "chunk") & (log["nbytes"] > 0)]
    return (writes["scheduled_ns"] - writes["scheduled_ns"].iloc[0]).reset_index(drop=True) / 1e9


def _recorded(server, scenario) -> kit.Trace:
    """Record what the fault server sends for ``scenario`` (bytes and all), over plain HTTP."""
    with kit.Recorder(server.url_for(scenario)) as rec:
        kit.stream(kit.ScenarioURL(rec.url, scenario))
    return rec.traces[0]


def test_replay_is_byte_exact_with_the_original_timing_and_headers(server):
    sc = _replay()
    t = _recorded(server, sc)
    assert b"".join(t.attempt.chunk_data) == sc.replay.body
    assert t.attempt.headers["x-ratelimit-remaining"] == "7" and t.attempt.framing == "chunked"
    assert [e for e in t.attempt.event_type][:2] == ["message_start", "content_block_start"] and t.ok
    # a recording of the replay, replayed again, gives the same bytes: the format round-trips
    again = _recorded(server, kit.replay_scenario(t))
    fit = kit.replay_fidelity(t, again)
    assert fit["bytes_identical"] and fit["bytes_compared"] == "content" and fit["events_identical"]
    assert fit["gap_error_p50_s"] < 0.005  # generous: CI machines are shared


def test_faults_by_event_index_land_at_that_event(server):
    sc = _replay(times=tuple(0.005 * i for i in range(len(UNITS))))
    stall = kit.stream(server.url_for(kit.replay_scenario(sc, faults=[kit.Stall(after=5, duration=0.2)])))
    # the server's schedule (the client's arrival times move with the load on the machine)
    gaps = _scheduled(stall).diff().dropna()
    assert gaps.iloc[4] == pytest.approx(0.205, abs=1e-6) and (gaps.drop(index=gaps.index[4]) < 0.01).all()
    assert stall.ok and stall.attempt.events_received == len(UNITS)
    closed = kit.stream(server.url_for(kit.replay_scenario(sc, faults=[kit.Close(after=7)])))
    assert closed.outcome.cause == "closed" and closed.attempt.events_received == 7
    err = kit.stream(server.url_for(kit.replay_scenario(sc, faults=[kit.ErrorEvent(after=3)])))
    assert err.outcome.cause == "error_event" and list(err.attempt.event_type[:3]) == list(stall.attempt.event_type[:3])


def test_faults_at_a_byte_offset_cut_inside_a_chunk(server):
    sc = kit.replay_scenario(_replay(), at="byte", faults=[kit.Close(after=300)])
    t = kit.stream(server.url_for(sc))
    assert t.attempt.bytes_received == 300 and t.outcome.cause == "closed"
    with pytest.raises(kit.ConfigError, match="after must be"):
        kit.replay_scenario(_replay(), at="byte", faults=[kit.Close(after=10**6)])


def test_speed_scales_the_recorded_timing(server):
    slow = _replay(times=tuple(0.02 * i for i in range(len(UNITS))))
    normal = kit.stream(server.url_for(slow))
    fast = kit.stream(server.url_for(kit.replay_scenario(slow, speed=2.0)))
    span = lambda t: _scheduled(t).iloc[-1] - _scheduled(t).iloc[0]  # noqa: E731
    assert span(normal) == pytest.approx(0.26, abs=1e-6) and span(fast) == pytest.approx(0.13, abs=1e-6)
    assert normal.ok and fast.ok and fast.attempt.bytes_received == normal.attempt.bytes_received


def test_recorded_endings_and_statuses_replay(server):
    closed = _replay(ending="close", chunks=tuple(u.payload for u in UNITS[:5]), times=(0, 0, 0, 0, 0))
    assert kit.stream(server.url_for(closed)).outcome.cause == "closed"
    err_body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    status = kit.Scenario(
        events=0,
        replay=Replay(
            status=529,
            reason="Overloaded",
            headers=(("content-type", "application/json"),),
            framing="length",
            times=(0.0,),
            chunks=(err_body,),
        ),
    )
    t = kit.stream(server.url_for(status))
    assert t.attempt.status == 529 and t.outcome.cause == "http_status" and "Overloaded" in t.outcome.message


def test_replay_serializes_like_any_scenario(server):
    sc = kit.replay_scenario(_replay(), faults=[kit.Stall(after=2, duration=0.01)], speed=1.5)
    back = kit.Scenario.from_dict(json.loads(sc.to_json()))
    assert back == sc and back.key == sc.key and back.replay.body == sc.replay.body
    assert "replay" not in kit.Scenario().to_dict()  # other scenarios' keys do not change
    result = kit.Experiment(scenarios=[sc], trials=2).run(progress=False, server=server)
    assert result.trials["ok"].all() and kit.Experiment.from_dict(result.config).scenarios[0] == sc


def test_chrome_eventstream_export_replays(server, tmp_path):
    msgs = [
        {"time": 1700000000.5 + 0.02 * i, "eventName": "message", "eventId": "", "data": f'{{"n": {i}}}'}
        for i in range(4)
    ]
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": "537"},
            "entries": [
                {
                    "startedDateTime": "2023-11-14T22:13:20.400Z",
                    "time": 200,
                    "request": {
                        "method": "GET",
                        "url": "https://example.com/events",
                        "httpVersion": "HTTP/1.1",
                        "headers": [],
                        "queryString": [],
                        "cookies": [],
                        "headersSize": -1,
                        "bodySize": 0,
                    },
                    "response": {
                        "status": 200,
                        "statusText": "OK",
                        "httpVersion": "HTTP/1.1",
                        "cookies": [],
                        "headers": [{"name": "Content-Type", "value": "text/event-stream"}],
                        "content": {"size": 0, "mimeType": "text/event-stream"},
                        "redirectURL": "",
                        "headersSize": -1,
                        "bodySize": -1,
                    },
                    "cache": {},
                    "timings": {"blocked": 0, "dns": 0, "connect": 0, "ssl": 0, "send": 0, "wait": 50, "receive": 150},
                    "_eventSourceMessages": msgs,
                }
            ],
        }
    }
    (tmp_path / "chrome.har").write_text(json.dumps(har))
    sc = kit.replay_scenario(tmp_path / "chrome.har")
    assert sc.replay.times == pytest.approx([0.05 + 0.02 * i for i in range(4)], abs=1e-6)
    t = kit.stream(server.url_for(sc))
    assert t.attempt.events_received == 4


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.update(headers=[["x-evil", "a\r\nset-cookie: 1"]]), "CR, LF"),
        (lambda d: d.update(sizes=[1, 2, 3]), "add up"),
        (lambda d: d.update(times=[-1.0] * len(d["times"])), "non-decreasing"),
        (lambda d: d.update(body="%%%not base64"), "base64"),
        (lambda d: d.update(status="200"), "status"),
        (lambda d: d.update(exploit=1), r"unknown|expected one of"),
    ],
)
def test_hostile_recording_files_are_bundle_errors(tmp_path, server, mutate, match):
    with kit.Recorder(server.url_for(_replay())) as rec:
        kit.stream(kit.ScenarioURL(rec.url, _replay()))
    path = rec.save(tmp_path / "rec")
    assert kit.replay_scenario(path).replay.status == 200
    doc = json.loads((path / "bundle.json").read_text())
    mutate(doc["experiment"]["scenarios"][0]["replay"])
    (path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(kit.BundleError, match=match):
        kit.replay_scenario(path)


def test_truncated_and_wrong_files_are_bundle_errors(tmp_path, server):
    with kit.Recorder(server.url_for(_replay())) as rec:
        kit.stream(kit.ScenarioURL(rec.url, _replay()))
    path = rec.save(tmp_path / "rec")
    har = (path / "recording.har").read_text()
    (tmp_path / "cut.har").write_text(har[: len(har) // 2])
    with pytest.raises(kit.BundleError, match="not JSON"):
        kit.replay_scenario(tmp_path / "cut.har")
    doc = json.loads(har)
    doc["log"]["entries"][0]["response"]["content"]["text"] = doc["log"]["entries"][0]["response"]["content"]["text"][
        :50
    ]
    (tmp_path / "short.har").write_text(json.dumps(doc))
    with pytest.raises(kit.BundleError, match=r"more than the body|cut short"):
        kit.replay_scenario(tmp_path / "short.har")
    text = (path / "bundle.json").read_text()
    (path / "bundle.json").write_text(text[: len(text) // 3])
    with pytest.raises(kit.BundleError, match="corrupt JSON"):
        kit.replay_scenario(path)
    result = kit.Experiment(scenarios=["ok"], trials=1).run(progress=False, server=server, out=tmp_path / "exp")
    with pytest.raises(kit.BundleError, match="not a recording"):
        kit.replay_scenario(tmp_path / "exp")
    assert result.complete
    with pytest.raises(kit.BundleError, match="no such"):
        kit.replay_scenario(tmp_path / "missing.har")
    with pytest.raises(kit.ConfigError, match="body bytes"):
        kit.replay_scenario(kit.stream(server.url_for("ok")))  # kit's client keeps sizes, not bytes


def test_pieces_cut_chunks_at_the_offsets_and_keep_their_times():
    r = Replay(times=(0.0, 0.5), chunks=(b"abcdef", b"ghij"))
    assert r.pieces([]) == [(0.0, b"abcdef", 0), (0.5, b"ghij", 6)]
    assert r.pieces([2, 6, 8, 8]) == [(0.0, b"ab", 0), (0.0, b"cdef", 2), (0.5, b"gh", 6), (0.5, b"ij", 8)]
    assert r.pieces([10]) == r.pieces([])  # the body's end cuts nothing


def test_a_replay_plan_puts_each_fault_where_its_event_ends():
    sc = _replay().replace(faults=(kit.Stall(after=2, duration=0.1), kit.Close(after=5)))
    plan = sc.plan()
    ends = sc.replay.event_ends()
    offsets = [0]
    for u in plan.units:
        offsets.append(offsets[-1] + len(u.payload))
    assert plan.faults_at(offsets.index(ends[1])) == [kit.Stall(after=2, duration=0.1)]
    assert plan.faults_at(offsets.index(ends[4])) == [kit.Close(after=5)]
