"""Hostile responses: the client classifies each, with bounded memory, and never hangs."""

from __future__ import annotations

import resource
import time

import pytest
from _upstream import RawUpstream

import kit

POLICY = kit.Policy(connect=2, headers=2, first_chunk=2, idle=2, total=20)


def hostile(what, **kw):
    return kit.Scenario(events=5, gap=0.001, faults=[kit.Hostile(after=3, what=what, **kw)])


@pytest.mark.parametrize(
    ("what", "phase", "cause"),
    [
        ("random_bytes", "stream", "malformed"),
        ("bad_chunk_size", "stream", "malformed"),
        ("invalid_utf8", "stream", "malformed"),
        ("random_chunks", "done", "ok"),
    ],
)
def test_hostile_bytes_are_classified(server, what, phase, cause):
    trace = kit.stream(server.url_for(hostile(what)), policy=POLICY)
    assert (trace.outcome.phase, trace.outcome.cause) == (phase, cause), trace.outcome


def test_random_chunks_keep_every_event(server):
    trace = kit.stream(server.url_for(hostile("random_chunks")), policy=POLICY)
    assert len(trace.events) == 11  # 5 deltas + 6 framing events, however the body was cut
    writes = trace.server[trace.server["nbytes"] > 0]
    assert len(writes) > 11 + 2  # the server cut the units into more HTTP chunks than units


def test_endless_headers_are_malformed_not_a_hang(server):
    t0 = time.monotonic()
    trace = kit.stream(server.url_for(hostile("endless_headers")), policy=POLICY)
    assert trace.outcome.phase in ("headers", "send")
    assert trace.outcome.cause in ("malformed", "timeout.headers")
    assert time.monotonic() - t0 < 10


@pytest.mark.slow
def test_huge_event_hits_the_cap_with_bounded_memory(server):
    """A 100 MB event against a 1 MB cap: malformed at the cap, memory stays flat."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sc = hostile("huge_event", size=100 * 1024 * 1024)
    trace = kit.stream(server.url_for(sc), policy=POLICY, max_event_bytes=1 << 20)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert trace.outcome.cause == "malformed" and "max_event_bytes" in trace.outcome.message
    assert grown_mb < 80  # the 100 MB event was never held whole


def test_hostile_kinds_are_validated():
    with pytest.raises(kit.ConfigError) as info:
        kit.Hostile(what="gremlins")
    assert info.value.field == "hostile.what"
    with pytest.raises(kit.ConfigError):
        kit.Scenario(framing="length", faults=[kit.Hostile(what="bad_chunk_size")])


# ------------------------------------------- issue 14 item 6: hostile bodies are outcomes


def _http(body: bytes, status: int = 200, ctype: str = "text/event-stream") -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJ = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


@pytest.mark.parametrize(
    ("response", "protocol", "cause"),
    [
        (_http(b"event: content_block_delta\ndata: " + DEEP + b"\n\n"), "anthropic", "malformed"),
        (_http(b"data: " + DEEP_OBJ + b"\n\n"), "openai", "malformed"),
        (_http(DEEP, status=500, ctype="application/json"), "anthropic", "http_status"),
        (_http(DEEP_OBJ + b"\n", ctype="application/x-ndjson"), "ndjson", "malformed"),
        (_http("retry: ²\ndata: {}\n\n".encode()), "anthropic", "malformed"),
        (_http(b"retry: " + b"9" * 5000 + b"\ndata: {}\n\n"), "anthropic", "malformed"),
    ],
    ids=[
        "sse-deep-array",
        "sse-deep-object",
        "error-body-deep",
        "ndjson-deep",
        "retry-superscript",
        "retry-5000-digits",
    ],
)
def test_hostile_json_and_retry_fields_are_outcomes_not_exceptions(response, protocol, cause):
    with RawUpstream(lambda head, body: response) as up:
        trace = kit.stream(up.url + "/v1/messages", protocol=protocol, policy=POLICY)
    assert trace.outcome.cause == cause, trace.outcome
