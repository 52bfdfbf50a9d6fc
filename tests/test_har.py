"""HAR 1.2: export validates, reimports to the same chunk times; browser HARs load; bad HARs are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import kit
from kit.har import validate_har

STEADY = kit.Scenario(events=6, gap=0.01, name="steady")


def test_trace_to_har_validates_and_round_trips(server, tmp_path):
    trace = kit.stream(server.url_for(STEADY))
    har = trace.to_har(tmp_path / "t.har")
    assert validate_har(har) == []
    assert json.loads((tmp_path / "t.har").read_text()) == har
    (entry,) = har["log"]["entries"]
    assert set(entry["timings"]) == {"blocked", "dns", "connect", "ssl", "send", "wait", "receive"}
    assert entry["response"]["status"] == 200 and entry["_kit"]["cause"] == "ok"
    assert len(entry["_chunks"]) == len(trace.chunks)
    assert [m["eventName"] for m in entry["_eventSourceMessages"]] == list(trace.events["type"])
    back = kit.from_har(tmp_path / "t.har")
    np.testing.assert_allclose(back.chunks["t_attempt"], trace.chunks["t_attempt"], atol=1e-3)  # ms precision
    np.testing.assert_allclose(back.events["t_attempt"], trace.events["t_attempt"], atol=1e-3)
    assert list(back.chunks["size"]) == list(trace.chunks["size"])
    assert back.trials.loc[0, "cause"] == "ok" and back.trials.loc[0, "chunks"] == len(trace.chunks)


def test_result_to_har_has_every_attempt(server, tmp_path):
    exp = kit.Experiment(scenarios=[STEADY, "headers_then_close"], trials=3, seed=1)
    result = exp.run(4, server=server, progress=False)
    har = result.to_har(tmp_path / "r.har")
    assert validate_har(har) == [] and len(har["log"]["entries"]) == len(result.attempts)
    back = kit.from_har(tmp_path / "r.har")
    assert list(back.trials["cause"]) == list(result.trials["cause"])
    assert list(back.trials["chunks"]) == list(result.trials["chunks"])
    saved = kit.load(result.save(tmp_path / "bundle"))
    assert saved.to_har()["log"]["entries"][0]["_chunks"] == har["log"]["entries"][0]["_chunks"]
    sub = result.to_har(trial_ids=["c001-t0000"])
    assert len(sub["log"]["entries"]) == 1 and sub["log"]["entries"][0]["_kit"]["cause"] == "closed"


def browser_har(tmp_path, **extra):
    """A HAR shaped like Chrome's "Save all as HAR" of an EventSource and a fetch."""
    sse = "event: message_start\ndata: {}\n\nevent: content_block_delta\ndata: {}\n\n"
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": "537.36"},
            "pages": [],
            "entries": [
                {
                    "startedDateTime": "2025-03-14T10:00:00.000Z",
                    "time": 1500.0,
                    "request": {"method": "GET", "url": "https://api.example/stream?key=abc", "httpVersion": "http/1.1", "cookies": [], "headers": [], "queryString": [], "headersSize": -1, "bodySize": 0},
                    "response": {"status": 200, "statusText": "OK", "httpVersion": "http/1.1", "cookies": [], "headers": [{"name": "content-type", "value": "text/event-stream"}], "content": {"size": 80, "mimeType": "text/event-stream"}, "redirectURL": "", "headersSize": -1, "bodySize": -1},
                    "cache": {},
                    "timings": {"blocked": 1.0, "dns": -1, "ssl": -1, "connect": -1, "send": 0.5, "wait": 200.0, "receive": 1298.5},
                    "_eventSourceMessages": [
                        {"time": 1741946400.3, "eventName": "message_start", "eventId": "", "data": "{}"},
                        {"time": 1741946401.2, "eventName": "content_block_delta", "eventId": "", "data": "{}"},
                    ],
                },
                {
                    "startedDateTime": "2025-03-14T10:00:05.000+00:00",
                    "time": 900.0,
                    "request": {"method": "POST", "url": "https://api.example/v1/messages", "httpVersion": "http/1.1", "cookies": [], "headers": [], "queryString": [], "headersSize": -1, "bodySize": 10},
                    "response": {"status": 200, "statusText": "OK", "httpVersion": "http/1.1", "cookies": [], "headers": [], "content": {"size": len(sse), "mimeType": "text/event-stream", "text": sse}, "redirectURL": "", "headersSize": -1, "bodySize": -1},
                    "cache": {},
                    "timings": {"blocked": -1, "dns": -1, "ssl": -1, "connect": -1, "send": 1, "wait": 99, "receive": 800},
                },
            ],
            **extra,
        }
    }  # fmt: skip
    path = tmp_path / "browser.har"
    path.write_text(json.dumps(har))
    return path


def test_browser_har_reads_into_the_same_tables(tmp_path):
    r = kit.from_har(browser_har(tmp_path))
    assert len(r.trials) == 2 and list(r.trials["cell"]) == [0, 1]
    assert "abc" not in r.trials.loc[0, "url"]  # key-looking query parameters are redacted on import too
    ev = r.events[r.events["trial_id"] == "e0000"]
    assert list(ev["type"]) == ["message_start", "content_block_delta"]
    assert ev["t"].round(3).tolist() == [0.3, 1.2]  # Chrome's epoch-second stamps, relative to the start
    assert r.trials.loc[0, "ttfb_s"] == pytest.approx(0.2015)
    fetch = r.events[r.events["trial_id"] == "e0001"]
    assert list(fetch["type"]) == ["message_start", "content_block_delta"]
    assert r.metrics().shape[0] == 2 * 6


def test_not_har_12_is_refused(tmp_path):
    bad = tmp_path / "old.har"
    bad.write_text(json.dumps({"log": {"version": "1.1", "creator": {"name": "x", "version": "1"}, "entries": []}}))
    with pytest.raises(kit.BundleError, match=r"old.har: not a HAR 1.2 file: log.version is '1.1'"):
        kit.from_har(bad)
    broken = tmp_path / "broken.har"
    doc = json.loads(browser_har(tmp_path).read_text())
    del doc["log"]["entries"][0]["timings"]
    broken.write_text(json.dumps(doc))
    with pytest.raises(kit.BundleError, match=r"entries\[0\].timings is missing"):
        kit.from_har(broken)
    (tmp_path / "x.har").write_text("<html>")
    with pytest.raises(kit.BundleError, match="not JSON"):
        kit.from_har(tmp_path / "x.har")


def test_har_keeps_every_request_header_redacted(server, tmp_path):
    url = server.url_for(STEADY)
    trace = kit.stream(url, headers={"x-api-key": "sk-ant-secret-123456", "cookie": "session=abcdef123", "x-team": "a"})
    (entry,) = trace.to_har()["log"]["entries"]
    sent = {h["name"]: h["value"] for h in entry["request"]["headers"]}
    assert {"accept", "content-type", "host", "user-agent", "x-kit-request-id", "x-kit-attempt"} <= set(sent)
    assert sent["x-kit-request-id"] == trace.attempt.request_id and sent["content-type"] == "application/json"
    for secret in ("x-api-key", "cookie", "x-team"):  # not known to be harmless: kept, value redacted
        assert sent[secret] == kit._redact.REDACTED
    text = json.dumps(entry)
    assert "sk-ant-secret" not in text and "abcdef123" not in text
    # through a Result, its bundle and a HAR re-import too
    saved = kit.load(kit.Result.from_traces([trace]).save(tmp_path / "b"))
    (again,) = saved.to_har()["log"]["entries"]
    assert again["request"]["headers"] == entry["request"]["headers"]
    har = tmp_path / "t.har"
    har.write_text(json.dumps(trace.to_har()))
    back = kit.from_har(har)
    assert json.loads(back.attempts.loc[0, "request_headers"])["x-api-key"] == kit._redact.REDACTED


def test_har_url_with_a_query_keeps_the_api_path_before_it(server):
    trace = kit.stream(server.url_for(STEADY) + "?beta=true&key=sk-ant-secret-123456")
    (entry,) = trace.to_har()["log"]["entries"]
    path, _, query = entry["request"]["url"].partition("?")
    assert path.endswith("/v1/messages") and "/v1/messages" not in query
    assert {q["name"]: q["value"] for q in entry["request"]["queryString"]} == {
        "beta": "true",
        "key": kit._redact.REDACTED,
    }
    assert trace.ok  # the server got the scenario: its path was intact
