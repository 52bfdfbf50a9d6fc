"""The socket-free body reader (kit/_body.py), in the style of h11's tests: small exact cases.

Most cases go through h11, the HTTP/1.1 framing decoder httpcore uses under the kit's
client and the SDKs, so each framing (chunked, Content-Length, close-delimited), a cut
body, a bad chunk size and trailers reach the reader exactly as they do in a real call,
without a socket. The property tests feed the same bytes split anywhere.
"""

from __future__ import annotations

import itertools
import json

import h11
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit._body import (
    ERROR_BODY_LIMIT,
    BodyReader,
    body_phase,
    framing,
    note_truncation,
    request_phase,
    status_message,
)
from kit.trace import Attempt, Outcome


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


START = sse("message_start", {"type": "message_start"})
DELTA = sse("content_block_delta", {"type": "content_block_delta", "delta": {"text": "hi"}})
PING = sse("ping", {"type": "ping"})
STOP = sse("message_stop", {"type": "message_stop"})
OK_BODY = START + DELTA + PING + DELTA + STOP
ERROR = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def chunked(*parts: bytes, last: bytes = b"0\r\n\r\n") -> bytes:
    """The fault server's chunked framing of ``parts`` (``last``: the final chunk and trailers)."""
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + last


def head(frame: str, body: bytes = b"", status: int = 200) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "content-type: text/event-stream"]
    if frame == "chunked":
        lines.append("transfer-encoding: chunked")
    elif frame == "length":
        lines.append(f"content-length: {len(body)}")
    else:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(frame: str, body: bytes, status: int = 200) -> bytes:
    """A whole response: ``body`` framed as ``frame`` (chunked: one chunk)."""
    wire = chunked(body) if frame == "chunked" and body else chunked() if frame == "chunked" else body
    return head(frame, body, status) + wire


def attempt(protocol: str = "anthropic") -> Attempt:
    return Attempt(index=1, request_id="r", method="POST", url="http://x", start_ns=0, protocol=protocol)


def read(
    wire: bytes,
    protocol: str = "anthropic",
    cuts: list[int] | None = None,
    eof: bool = True,
    **kw: object,
) -> Attempt:
    """Decode ``wire`` with h11 (cut at ``cuts``) and read its body; EOF at the end unless ``eof=False``."""
    a = attempt(protocol)
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "0")]))
    conn.send(h11.EndOfMessage())
    bounds = [0, *sorted(set(cuts or ())), len(wire)]
    pieces = [wire[i:j] for i, j in itertools.pairwise(bounds) if j > i]
    reader: BodyReader | None = None
    t = 0
    try:
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                if pieces:
                    conn.receive_data(pieces.pop(0))
                elif eof and conn.their_state is not h11.CLOSED:
                    conn.receive_data(b"")
                else:  # the caller stopped reading before the end
                    assert reader is not None
                    reader.finish("closed")
                    return a
                continue
            t += 1
            if isinstance(ev, h11.Response):
                a.headers_ns, a.status = t, ev.status_code
                a.framing = framing({k.decode(): v.decode() for k, v in ev.headers})
                reader = BodyReader(a, **kw)  # type: ignore[arg-type]
            elif isinstance(ev, h11.Data):
                assert reader is not None
                reader.take(bytes(ev.data), t)  # after a stop: recorded, not parsed (read on, as the recorder does)
            elif isinstance(ev, h11.EndOfMessage):
                assert reader is not None
                reader.finish("end")
                return a
    except h11.RemoteProtocolError as exc:
        assert reader is not None
        reader.finish("raised", exc)
        return a


def outcome(a: Attempt) -> tuple[str, str]:
    assert a.outcome is not None
    return a.outcome.phase, a.outcome.cause


def payload_and_events(a: Attempt) -> tuple[int, list[tuple[str, int]]]:
    return sum(a.chunk_size), list(zip(a.event_type, a.event_size, strict=True))


# ---------------------------------------------------------------------------- framing


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"transfer-encoding": "chunked"}, "chunked"),
        ({"transfer-encoding": "gzip, chunked"}, "chunked"),
        ({"content-length": "10"}, "length"),
        ({"content-length": "0"}, "length"),
        ({"transfer-encoding": "chunked", "content-length": "10"}, "chunked"),  # chunked wins (RFC 9112)
        ({}, "close"),
        ({"content-type": "text/event-stream"}, "close"),
    ],
)
def test_framing_from_headers(headers, expected):
    assert framing(headers) == expected


def test_framing_reads_httpx_headers_whatever_their_case():
    assert framing(httpx.Headers({"Transfer-Encoding": "Chunked"})) == "chunked"
    assert framing(httpx.Headers({"Content-Length": "3"})) == "length"


# ------------------------------------------------------------- a whole body, every framing


@pytest.mark.parametrize("frame", ["chunked", "length", "close"])
def test_complete_stream_is_ok_in_every_framing(frame):
    a = read(response(frame, OK_BODY))
    assert outcome(a) == ("done", "ok") and a.saw_terminator and a.framing == frame
    assert a.event_type == ["message_start", "content_block_delta", "ping", "content_block_delta", "message_stop"]
    assert sum(a.chunk_size) == len(OK_BODY)
    assert list(a.event_size) == [len(x) for x in (START, DELTA, PING, DELTA, STOP)]


@pytest.mark.parametrize("frame", ["chunked", "length", "close"])
def test_clean_end_without_terminator_is_ended_and_names_the_framing(frame):
    a = read(response(frame, START + DELTA))
    assert outcome(a) == ("stream", "ended")
    assert a.outcome.message == (
        f"the body ended cleanly ({frame}) with 2 events; first event 'message_start' and no terminator"
    )


@pytest.mark.parametrize("frame", ["chunked", "length", "close"])
def test_empty_body_is_ended_before_the_first_chunk(frame):
    a = read(response(frame, b""))
    assert outcome(a) == ("first_chunk", "ended") and not a.chunk_t
    assert "no events" in a.outcome.message


def test_openai_terminator_is_done_and_anthropic_words_are_not_openai_s():
    body = b'data: {"choices": []}\n\ndata: [DONE]\n\n'
    assert outcome(read(response("chunked", body), "openai")) == ("done", "ok")
    # each protocol's own terminator only: a misrouted stream does not end cleanly
    assert outcome(read(response("chunked", OK_BODY), "openai")) == ("stream", "ended")
    assert outcome(read(response("chunked", body), "anthropic")) == ("stream", "malformed")  # [DONE] is not JSON


def test_events_split_across_chunks_are_one_event_at_the_later_time():
    half = len(DELTA) // 2
    a = read(head("chunked") + chunked(START + DELTA[:half], DELTA[half:] + STOP))
    assert a.event_type == ["message_start", "content_block_delta", "message_stop"]
    assert list(a.chunk_size) == [len(START) + half, len(DELTA) - half + len(STOP)]
    t_start, t_delta, t_stop = a.event_t
    assert t_start == a.chunk_t[0] and t_delta == t_stop == a.chunk_t[1]


# ----------------------------------------------------------------- what a payload can say


@pytest.mark.parametrize(
    ("body", "cause", "message"),
    [
        (START + ERROR + DELTA + STOP, "error_event", "overloaded_error: Overloaded"),
        (START + b"event: x\ndata: {not json\n\n", "malformed", "event 'x' has data that is not JSON"),
        (START + b"bogus: field\n\n", "malformed", "a line that is not an SSE field (not data/event/id/retry)"),
        (START + b'data: "\xff\xfe"\n\n', "malformed", "event data that is not valid UTF-8"),
        (START + b"data: {}", "malformed", "the body ended inside an event (not a complete SSE stream)"),
    ],
)
def test_what_stops_an_sse_stream(body, cause, message):
    a = read(response("chunked", body))
    assert outcome(a) == ("stream", cause) and a.outcome.message == message


def test_nothing_after_the_error_event_is_recorded():
    a = read(response("chunked", START + ERROR + DELTA + STOP))
    assert a.event_type == ["message_start", "error"] and not a.saw_terminator


def test_an_event_over_the_cap_is_malformed():
    big = sse("content_block_delta", {"text": "x" * 200})
    a = read(response("chunked", START + big + STOP), max_event_bytes=100)
    assert outcome(a) == ("stream", "malformed") and "max_event_bytes=100" in a.outcome.message


@pytest.mark.parametrize(
    ("body", "expected", "types"),
    [
        (b'{"a": 1}\n{"b": 2}\n', ("done", "ok"), ["line", "line"]),
        (b'{"a": 1}\n\n\n{"b": 2}\n', ("done", "ok"), ["line", "line"]),
        (b'{"a": 1}\nnot json\n{"b": 2}\n', ("stream", "malformed"), ["line", "invalid"]),
        (b'{"a": 1}\n{"error": {"type": "boom", "message": "m"}}\n', ("stream", "error_event"), ["line", "error"]),
        (b'{"a": 1}\n{"b": ', ("stream", "malformed"), ["line"]),
        (b"", ("done", "ok"), []),
    ],
)
def test_ndjson_lines(body, expected, types):
    a = read(response("length", body), "ndjson")
    assert outcome(a) == expected and a.event_type == types


def test_an_ndjson_line_over_the_cap_is_malformed_after_the_lines_before_it():
    a = read(response("close", b'{"a": 1}\n' + b"x" * 50), "ndjson", max_event_bytes=20)
    assert outcome(a) == ("stream", "malformed") and a.event_type == ["line"]
    assert "max_event_bytes=20" in a.outcome.message


@pytest.mark.parametrize("frame", ["chunked", "length", "close"])
def test_a_raw_body_that_ends_cleanly_is_ok_whatever_it_holds(frame):
    a = read(response(frame, b"\x00\xffnot an event"), "raw")
    assert outcome(a) == ("done", "ok") and a.event_type == [] and sum(a.chunk_size) == 14


# ------------------------------------------------------------------------ error bodies


def test_an_error_status_is_the_outcome_with_the_body_s_message():
    body = json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}).encode()
    a = read(response("length", body, status=429))
    assert outcome(a) == ("headers", "http_status")
    assert a.outcome.message == "429 rate_limit_error: slow down" and a.event_type == []


def test_an_error_body_that_is_not_json_gives_its_start():
    a = read(response("close", b"<html>bad gateway</html>", status=502))
    assert a.outcome.message == "502 <html>bad gateway</html>"


def test_an_error_body_is_kept_up_to_its_limit_and_its_chunks_are_recorded():
    body = b"x" * (ERROR_BODY_LIMIT + 1000)
    a = attempt()
    a.status = 500
    reader = BodyReader(a)
    for i in range(0, len(body), 4096):
        reader.take(body[i : i + 4096], i)
    assert len(reader.error_body) == ERROR_BODY_LIMIT and sum(a.chunk_size) == len(body)
    assert reader.finish("end") == a.outcome and outcome(a) == ("headers", "http_status")


def test_a_secret_echoed_in_an_error_body_is_redacted():
    key = "sk-ant-api03-" + "a" * 40
    assert key not in status_message(401, f"invalid key {key}".encode())


def test_an_error_status_stays_the_outcome_when_its_body_is_cut():
    a = read(head("length", b"x" * 10, status=500) + b"xxx")
    assert outcome(a) == ("headers", "http_status")


# ------------------------------------------------- cut bodies, bad framing, trailers (via h11)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        # chunked: cut inside a chunk's data, at a chunk boundary, inside a size line, before the last chunk's CRLF
        (head("chunked") + chunked(START, DELTA, last=b"")[:-5], ("stream", "closed")),
        (head("chunked") + chunked(START, DELTA, last=b""), ("stream", "closed")),
        (head("chunked") + chunked(START, last=b"3"), ("stream", "closed")),
        (head("chunked") + chunked(START, last=b"0\r\n"), ("stream", "closed")),
        (head("chunked"), ("first_chunk", "closed")),
        # the fault server's truncated chunk: a size line claiming twice the data, then EOF
        (head("chunked") + chunked(START, last=b"%x\r\n" % (2 * len(DELTA)) + DELTA), ("stream", "closed")),
        # Content-Length: fewer bytes than promised
        (head("length", OK_BODY) + OK_BODY[:-1], ("stream", "closed")),
        (head("length", OK_BODY), ("first_chunk", "closed")),
    ],
    ids=["mid-data", "chunk-boundary", "size-line", "last-chunk", "no-body", "truncated-chunk", "short", "none"],
)
def test_a_cut_body_is_closed(wire, expected):
    a = read(wire)
    assert outcome(a) == expected, a.outcome
    assert a.error is not None and "RemoteProtocolError" in a.error


@pytest.mark.parametrize("frame", ["chunked", "length"])
def test_eof_at_every_byte_of_a_delimited_body_is_a_cut(frame):
    wire = response(frame, OK_BODY)
    for n in range(len(head(frame, OK_BODY)), len(wire)):
        assert outcome(read(wire[:n]))[1] == "closed", n
    assert outcome(read(wire)) == ("done", "ok")


def test_eof_at_every_byte_of_a_close_delimited_body_ends_it():
    parts = (START, DELTA, PING, DELTA, STOP)
    bounds = {sum(map(len, parts[:i])) for i in range(1, len(parts))}
    for n in range(1, len(OK_BODY)):
        a = read(head("close") + OK_BODY[:n])
        expected = ("stream", "ended") if n in bounds else ("stream", "malformed")
        assert outcome(a) == expected, (n, a.outcome)
    assert outcome(read(head("close") + OK_BODY)) == ("done", "ok")
    assert outcome(read(head("close"))) == ("first_chunk", "ended")


@pytest.mark.parametrize("frame", ["chunked", "length", "close"])
def test_every_single_cut_gives_what_the_whole_gives(frame):
    wire = head("chunked") + chunked(START, DELTA, PING, STOP) if frame == "chunked" else response(frame, OK_BODY)
    whole = result(read(wire))
    for n in range(1, len(wire)):
        assert result(read(wire, cuts=[n])) == whole, n


def test_a_close_delimited_body_ends_at_eof():
    assert outcome(read(head("close") + OK_BODY)) == ("done", "ok")
    assert outcome(read(head("close") + START)) == ("stream", "ended")


@pytest.mark.parametrize(
    "bad",
    [b"zz\r\nnot a hex size\r\n", b"-1\r\n", b"0x10\r\n", b"1" * 40 + b"\r\n"],
    ids=["not-hex", "negative", "0x-prefix", "too-long"],
)
def test_a_bad_chunk_size_is_malformed(bad):
    a = read(head("chunked") + chunked(START, last=bad))
    assert outcome(a) == ("stream", "malformed"), a.outcome
    assert a.event_type == ["message_start"]
    assert outcome(read(head("chunked") + bad)) == ("first_chunk", "malformed")


def test_trailers_and_chunk_extensions_are_not_payload():
    wire = head("chunked") + b"%x;name=value\r\n%b\r\n" % (len(OK_BODY), OK_BODY) + b"0\r\nx-trailer: 1\r\n\r\n"
    a = read(wire)
    assert outcome(a) == ("done", "ok") and sum(a.chunk_size) == len(OK_BODY)


def test_bytes_after_a_content_length_body_are_not_payload():
    a = read(head("length", OK_BODY) + OK_BODY + b"HTTP/1.1 200 OK\r\n")
    assert outcome(a) == ("done", "ok") and sum(a.chunk_size) == len(OK_BODY)


def test_a_reset_while_reading_is_a_reset():
    a = attempt()
    a.headers_ns, a.status, a.framing = 1, 200, "chunked"
    reader = BodyReader(a)
    reader.take(START, 2)
    reader.finish("raised", ConnectionResetError(104, "Connection reset by peer"))
    assert outcome(a) == ("stream", "reset") and a.error.startswith("ConnectionResetError")


# ------------------------------------------------------------- the caller stopping early


def test_closing_before_the_end_is_cancelled_and_after_the_terminator_is_ok():
    a = read(head("chunked") + chunked(START, last=b""), eof=False)
    assert outcome(a) == ("stream", "cancelled")
    assert "closed the response before its end" in a.outcome.message
    a = read(head("chunked") + chunked(OK_BODY, last=b""), eof=False)
    assert outcome(a) == ("done", "ok") and "after the terminator" in a.outcome.message


def test_a_body_still_open_says_so():
    a = attempt()
    a.headers_ns, a.status = 1, 200
    reader = BodyReader(a)
    reader.take(START, 2)
    assert reader.finish("open") == Outcome(
        "stream", "cancelled", "the client has not finished reading the response before its end"
    )


def test_the_payload_s_verdict_wins_over_a_later_cut():
    a = read(head("chunked") + chunked(START, ERROR, last=b""))
    assert outcome(a) == ("stream", "error_event")


# --------------------------------------------------------------------- recording cap


def test_past_the_cap_chunks_and_events_are_counted_not_recorded():
    parts = [DELTA] * 10 + [STOP]
    a = read(head("chunked") + chunked(*parts), max_recorded=6)
    assert outcome(a) == ("done", "ok") and a.saw_terminator  # the stream is read to its end
    assert a.truncated and len(a.chunk_t) + len(a.event_t) <= 6 + 1
    assert a.chunks_received == 11 and a.events_received == 11 and a.bytes_received == sum(map(len, parts))
    note_truncation(a, 6)
    assert "recorded the first 6 chunks and events (Policy.max_recorded)" in a.outcome.message


def test_the_cap_can_stop_the_reading():
    a = read(head("chunked") + chunked(*[DELTA] * 10, STOP), max_recorded=6, stop_at_cap=True)
    assert outcome(a) == ("stream", "cancelled") and a.truncated
    assert "on_max_recorded='stop'" in a.outcome.message
    note_truncation(a, 6)
    assert a.outcome.message.count("Policy.max_recorded") == 1  # said once


# -------------------------------------------------------------------------- body_phase


def test_body_phase_from_what_was_seen():
    a = attempt()
    assert body_phase(a, "send") == "send"
    a.headers_ns = 1
    assert body_phase(a, "send") == "first_chunk"
    a.chunk_t.append(2)
    assert body_phase(a) == "stream"
    a.saw_terminator = True
    assert body_phase(a) == "done"


@pytest.mark.parametrize(
    ("phase", "event", "expected"),
    [
        ("connect", "connection.connect_tcp.started", "connect"),
        ("connect", "connection.connect_tcp.complete", "send"),
        ("connect", "http11.send_request_headers.started", "send"),  # a kept-alive connection: no connect
        ("send", "connection.start_tls.complete", "send"),
        ("send", "http11.send_request_body.complete", "send"),
        ("send", "http11.receive_response_headers.started", "headers"),
        ("headers", "http11.receive_response_headers.complete", "headers"),
        ("headers", "connection.connect_tcp.complete", "headers"),  # never back
        ("first_chunk", "http11.receive_response_headers.started", "first_chunk"),
    ],
)
def test_request_phase_from_httpcore_trace_events(phase, event, expected):
    assert request_phase(phase, event) == expected


# ---------------------------------------------------------- split anywhere, same result

EVENTS = [
    START,
    DELTA,
    PING,
    STOP,
    ERROR,
    b"event: x\ndata: {bad\n\n",
    b": comment\n\n",
    b"data: {}\r\n\r\n",
    sse("content_block_delta", {"text": "x" * 150}),  # over max_event_bytes=120
]


@st.composite
def sse_bodies(draw: st.DrawFn) -> bytes:
    body = b"".join(draw(st.lists(st.sampled_from(EVENTS), max_size=8)))
    return body + draw(st.sampled_from([b"", STOP, b"data: {", b"\r"]))


def cuts_of(n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, n), max_size=12)


def result(a: Attempt) -> tuple:
    return (*payload_and_events(a), a.saw_terminator, a.outcome)


@settings(max_examples=150, deadline=None)
@given(st.data(), sse_bodies(), st.sampled_from(["chunked", "length", "close"]))
def test_wire_split_anywhere_gives_the_same_payload_events_and_outcome(data, body, frame):
    parts = data.draw(st.lists(st.binary(min_size=1), max_size=3)) if frame == "chunked" else []
    wire = head(frame, body) + (chunked(body, *parts) if frame == "chunked" else body)
    whole = read(wire)
    split = read(wire, cuts=data.draw(cuts_of(len(wire))))
    assert result(split) == result(whole)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from(["anthropic", "openai", "ndjson", "raw"]), st.sampled_from([None, 120]))
def test_payload_split_anywhere_gives_the_same_events(data, protocol, cap):
    body = (
        data.draw(sse_bodies())
        if protocol != "ndjson"
        else data.draw(st.sampled_from([b'{"a": 1}\n', b"x\n", b'{"error": 1}\n', b"\n", b'{"b"'])) * 3
    )

    def run(cuts: list[int]) -> tuple:
        a = attempt(protocol)
        a.headers_ns, a.status, a.framing = 0, 200, "close"
        reader = BodyReader(a, cap)
        bounds = [0, *sorted(set(cuts)), len(body)]
        for i, j in itertools.pairwise(bounds):
            if j > i and reader.stop is None:
                reader.take(body[i:j], j)
        reader.finish("end")
        return (list(zip(a.event_type, a.event_size, strict=True)), a.saw_terminator, a.outcome)

    assert run(data.draw(cuts_of(len(body)))) == run([])
