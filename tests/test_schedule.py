"""Sans-IO response plans: timing, framing decisions and fault placement, no sockets."""

from __future__ import annotations

import pytest

import kit
from kit._schedule import build_response


def ops(sc, attempt=1):
    return [(a.op, a.kind) for a in build_response(sc.plan(attempt)).actions]


def actions(sc):
    return list(build_response(sc.plan()).actions)


def test_healthy_stream_ends_cleanly_with_cumulative_times():
    acts = actions(kit.Scenario(events=3, gap=0.1, first_byte_delay=0.5))
    writes = [a for a in acts if a.op == "write"]
    assert [round(a.t, 6) for a in writes[:3]] == [0.5, 0.6, 0.7]
    assert acts[-1].op == "end"


def test_close_clean_and_unclean():
    assert ops(kit.Scenario(events=2, faults=[kit.Close(after=0, clean=True)])) == [("end", "close")]
    assert ops(kit.Scenario(events=2, faults=[kit.Close(after=0)])) == [("close", "close")]


def test_stall_shifts_later_units():
    writes = [
        a
        for a in actions(kit.Scenario(events=2, gap=0, faults=[kit.Stall(after=1, duration=2.0)]))
        if a.op == "write" and a.data
    ]
    assert writes[0].t == 0 and writes[1].t == pytest.approx(2.0)


def test_pings_fill_silences():
    acts = actions(
        kit.Scenario(events=0, ping_every=0.1, first_byte_delay=0.35, faults=[kit.Close(after=0, clean=True)])
    )
    assert [a.kind for a in acts] == ["ping", "ping", "ping", "close"]


def test_no_terminator_drops_message_stop():
    kinds = [k for _, k in ops(kit.Scenario(events=1, faults=[kit.NoTerminator()]))]
    assert "message_stop" not in kinds and kinds[-1] == "end"


def test_content_length_declares_full_body_when_cut():
    sc = kit.Scenario(events=3, framing="length", faults=[kit.Close(after=2)])
    resp = build_response(sc.plan())
    written = sum(len(a.data) for a in resp.actions if a.op == "write")
    assert resp.content_length > written


def test_status_response_has_retry_after():
    resp = build_response(kit.Scenario.preset("rate_limited_429").plan())
    assert resp.status == 429 and ("retry-after", "1") in resp.headers


def test_buffer_releases_in_one_write():
    writes = [a for a in actions(kit.Scenario(events=5, gap=0.01, faults=[kit.Buffer()])) if a.op == "write"]
    assert len(writes) == 1 and writes[0].kind.startswith("buffered")


def test_json_instead_of_stream_is_a_json_body():
    resp = build_response(kit.Scenario.preset("json_instead_of_stream").plan())
    assert ("content-type", "application/json") in resp.headers


def test_wrong_format_is_the_other_protocols_stream():
    resp = build_response(kit.Scenario.preset("wrong_format").plan())
    body = b"".join(a.data for a in resp.actions if a.op == "write")
    assert ("content-type", "text/event-stream; charset=utf-8") in resp.headers
    assert b"chat.completion.chunk" in body and b"data: [DONE]" in body and b"message_start" not in body
    back = build_response(kit.Scenario.preset("wrong_format", protocol="openai").plan())
    assert b"event: message_start" in b"".join(a.data for a in back.actions if a.op == "write")
