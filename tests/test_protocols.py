"""The SSE parser: WHATWG rules, and independence from chunk boundaries (property tests)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kit
from kit import ConfigError
from kit.protocols import (
    ANTHROPIC,
    NDJSON,
    OPENAI,
    PROTOCOLS,
    RAW,
    Protocol,
    SSEEvent,
    SSEParser,
    anthropic_units,
    encode_sse,
    for_path,
    generate_units,
    openai_units,
    sniff,
)


def parse_all(data: bytes, pieces: list[int] | None = None) -> list[SSEEvent]:
    parser = SSEParser()
    if not pieces:
        return parser.feed(data)
    out, start = [], 0
    for cut in sorted(set(pieces)):
        out += parser.feed(data[start:cut])
        start = cut
    out += parser.feed(data[start:])
    return out


def test_basic_fields_and_multiline_data():
    events = parse_all(b"event: a\ndata: 1\ndata: 2\nid: 7\nretry: 30\n\n")
    assert events == [SSEEvent("a", "1\n2", "7", 30, size=len(b"event: a\ndata: 1\ndata: 2\nid: 7\nretry: 30\n\n"))]


def test_line_endings_crlf_cr_lf_are_equivalent():
    for sep in (b"\n", b"\r\n", b"\r"):
        events = parse_all(sep.join([b"data: x", b"", b"event: e", b"data: y", b"", b""]))
        assert [(e.event, e.data) for e in events] == [("message", "x"), ("e", "y")]


def test_comments_unknown_fields_and_no_space():
    p = SSEParser()
    events = p.feed(b": comment\ndata:tight\nbogus: 1\n\n")
    assert [(e.event, e.data) for e in events] == [("message", "tight")]
    assert p.bad_lines == 1


def test_empty_data_line_dispatches_and_no_data_does_not():
    assert [e.data for e in parse_all(b"data\n\n")] == [""]
    assert parse_all(b"event: x\n\n") == []


def test_bom_is_skipped_even_when_split():
    assert [e.data for e in parse_all(b"\xef\xbb\xbfdata: a\n\n", [1, 2])] == ["a"]


def test_last_event_id_persists():
    events = parse_all(b"id: 1\ndata: a\n\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]


def test_invalid_utf8_is_replaced_and_counted():
    p = SSEParser()
    events = p.feed(b"data: \xff\xfe\n\n")
    assert events[0].data == "\ufffd\ufffd" and p.decode_errors == 1


def test_oversized_event_is_flagged():
    p = SSEParser(max_event_bytes=100)
    p.feed(b"data: " + b"x" * 200)
    assert p.oversized


def test_anthropic_stream_shape():
    units = anthropic_units(3)
    kinds = [u.kind for u in units]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert units[-1].terminator
    events = parse_all(b"".join(u.payload for u in units))
    assert [e.event for e in events] == kinds
    for e in events:
        assert json.loads(e.data)["type"] == e.event


def test_openai_stream_ends_with_done():
    events = parse_all(b"".join(u.payload for u in openai_units(2)))
    assert events[-1].data == "[DONE]"
    assert json.loads(events[0].data)["object"] == "chat.completion.chunk"


# -- property: output does not depend on where chunk boundaries fall ---------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20)
_event = st.tuples(
    st.one_of(st.none(), _text.filter(lambda s: s.strip() == s and s)), st.lists(_text, min_size=1, max_size=3)
)


@st.composite
def sse_streams(draw):
    sep = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    events = draw(st.lists(_event, max_size=8))
    out = b""
    for name, lines in events:
        if draw(st.booleans()):
            out += b": keep-alive" + sep
        if name is not None:
            out += b"event: " + name.encode() + sep
        for line in lines:
            out += b"data: " + line.encode() + sep
        out += sep
    return out


@settings(max_examples=300, deadline=None)
@given(data=sse_streams(), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_split_anywhere_same_events(data, cuts):
    whole = parse_all(data)
    assert parse_all(data, [c for c in cuts if c <= len(data)]) == whole


@settings(max_examples=100, deadline=None)
@given(data=sse_streams())
def test_byte_by_byte_same_events(data):
    assert parse_all(data, list(range(len(data)))) == parse_all(data)


@settings(max_examples=50, deadline=None)
@given(protocol=st.sampled_from(["anthropic", "openai"]), n=st.integers(0, 20), cuts=st.lists(st.integers(0, 5000)))
def test_generated_streams_split_anywhere(protocol, n, cuts):
    body = b"".join(u.payload for u in generate_units(protocol, n))
    whole = parse_all(body)
    assert len(whole) == len(generate_units(protocol, n))
    assert parse_all(body, [c for c in cuts if c <= len(body)]) == whole


def test_encode_sse_round_trip():
    assert parse_all(encode_sse("a\nb", event="x", id="3")) == [
        SSEEvent("x", "a\nb", "3", None, size=len(encode_sse("a\nb", event="x", id="3")))  # LF ends: 1 byte each
    ]


# -- the Protocol values: what differs per protocol, held once --------------------------


def test_protocol_of_takes_names_and_values_and_names_the_allowed_on_a_bad_one():
    assert Protocol.of("openai") is OPENAI and Protocol.of(OPENAI) is OPENAI
    assert [Protocol.of(n).name for n in PROTOCOLS] == ["anthropic", "openai", "ndjson", "raw"]
    with pytest.raises(ConfigError) as err:
        Protocol.of("antropic", field="scenario.protocol")
    assert err.value.field == "scenario.protocol" and err.value.value == "antropic"
    assert "anthropic, ndjson, openai, raw" in str(err.value) and "did you mean 'anthropic'" in str(err.value)
    with pytest.raises(ConfigError):
        Protocol.of(None)


@pytest.mark.parametrize(("protocol", "extra"), [(ANTHROPIC, 6), (OPENAI, 3), (NDJSON, 0), (RAW, 0)])
def test_extra_units_are_counted_from_the_generated_stream(protocol, extra):
    assert protocol.extra_units == extra
    assert len(protocol.units(5)) == 5 + extra
    assert kit.Scenario(protocol=protocol.name, events=5).unit_count() == 5 + extra


def test_terminators_end_only_their_own_stream():
    anthropic_body = b"".join(u.payload for u in ANTHROPIC.units(2))
    openai_body = b"".join(u.payload for u in OPENAI.units(2))
    for protocol, body in ((ANTHROPIC, anthropic_body), (OPENAI, openai_body)):
        ends = [e for e in parse_all(body) if protocol.is_terminator(e.event, e.data)]
        assert len(ends) == 1 and ends[0] == parse_all(body)[-1]  # the last event, and only it
    other = [e for e in parse_all(openai_body) if ANTHROPIC.is_terminator(e.event, e.data)]
    assert other == []  # a misrouted gateway's [DONE] does not end an Anthropic stream
    assert not NDJSON.is_terminator("message", "[DONE]") and RAW.terminator is None


def test_error_events_carry_the_request_id_where_the_api_does():
    anthropic = parse_all(ANTHROPIC.error_event("overloaded_error", "Overloaded", "req_1"))[0]
    assert anthropic.event == "error" and json.loads(anthropic.data)["request_id"] == "req_1"
    openai = json.loads(parse_all(OPENAI.error_event("server_error", "boom", "req_1"))[0].data)
    assert openai == {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    assert json.loads(NDJSON.error_event("api_error", "x"))["error"]["type"] == "api_error"


def test_malformed_units_break_their_format():
    for protocol in (ANTHROPIC, OPENAI):
        (event,) = parse_all(protocol.malformed("json"))
        with pytest.raises(json.JSONDecodeError):
            json.loads(event.data)
        parser = SSEParser()
        assert parser.feed(protocol.malformed("field")) == [] and parser.bad_lines == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(NDJSON.malformed("field"))


def test_request_side_and_misrouting():
    assert ANTHROPIC.accept == "text/event-stream" and RAW.accept == "*/*"
    assert ANTHROPIC.request_body()["model"] == "claude-kit-1" and "max_tokens" not in OPENAI.request_body()
    assert dict(OPENAI.request_headers)["authorization"].startswith("Bearer ")
    assert Protocol.of(ANTHROPIC.other) is OPENAI and Protocol.of(OPENAI.other) is ANTHROPIC
    assert for_path("/s/ok/v1/messages") is ANTHROPIC and for_path("/v1/chat/completions") is OPENAI
    assert sniff("text/event-stream", b"data: [DONE]\n\n") is OPENAI and sniff("application/x-ndjson", b"") is NDJSON


def test_every_protocol_has_a_non_empty_ping_and_content_type():
    for name in PROTOCOLS:
        p = Protocol.of(name)
        assert p.ping and p.content_type and p.path.startswith("/")
