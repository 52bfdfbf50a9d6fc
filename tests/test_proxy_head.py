"""The proxy's request-head scanner (kit/proxy/_head.py): pure logic, any split of the bytes."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from kit.proxy._head import MAX_HEAD, Head, RequestHeads


def request(rid: str, trial: str | None = None, body: bytes = b'{"a": 1}') -> bytes:
    lines = [b"POST /s/ok/v1/messages HTTP/1.1", b"host: 127.0.0.1", b"X-Kit-Request-Id: " + rid.encode()]
    if trial is not None:
        lines.append(b"x-kit-trial: " + trial.encode())
    lines += [b"x-kit-attempt: 1", b"content-length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


STREAM = request("r1", "42", b'{"x-kit-request-id: fake\\r\\n\\r\\n"}') + request("r2", "43") + request("r3")
EXPECTED = [Head("r1", "42", "1"), Head("r2", "43", "1"), Head("r3", None, "1")]


def test_keep_alive_requests_each_named_and_bodies_skipped():
    assert RequestHeads().feed(STREAM) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_heads(cuts):
    scanner = RequestHeads()
    bounds = [0, *sorted(cuts), len(STREAM)]
    heads = [h for a, b in itertools.pairwise(bounds) for h in scanner.feed(STREAM[a:b])]
    assert heads == EXPECTED


def test_what_it_cannot_follow_ends_the_scanning():
    for stream in (
        b"\x16\x03\x01 TLS hello\r\n\r\n",  # not HTTP/1.x
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: -3\r\n\r\n",
        b"GET / HTTP/1.1\r\nx-filler: " + b"a" * (MAX_HEAD + 10),  # a head that never ends: bounded
    ):
        scanner = RequestHeads()
        scanner.feed(stream)
        assert scanner.done and not scanner._buf
        assert scanner.feed(request("late")) == []
