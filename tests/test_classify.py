"""Exception -> phase x cause: one mapping for httpx (the kit's client) and httpx2 (SDKs)."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from kit._classify import classify_exception


@pytest.mark.parametrize("lib", [httpx, httpx2])
@pytest.mark.parametrize(
    ("make", "phase", "expected"),
    [
        (
            lambda m: m.RemoteProtocolError("peer closed connection without sending complete message body"),
            "stream",
            "closed",
        ),
        (lambda m: m.RemoteProtocolError("peer unexpectedly closed connection"), "stream", "closed"),
        (lambda m: m.RemoteProtocolError("Server disconnected without sending a response."), "headers", "closed"),
        (lambda m: m.RemoteProtocolError("illegal chunk header"), "stream", "malformed"),
        (lambda m: m.ConnectError("[Errno 111] Connection refused"), "connect", "refused"),
        (lambda m: m.ReadError("[Errno 104] Connection reset by peer"), "stream", "reset"),
        (lambda m: m.ConnectTimeout("timed out"), "connect", "timeout.connect"),
        (lambda m: m.ReadTimeout("timed out"), "first_chunk", "timeout.first_chunk"),
        (lambda m: m.ReadTimeout("timed out"), "stream", "timeout.idle"),
    ],
)
def test_same_cause_for_httpx_and_httpx2(lib, make, phase, expected):
    assert classify_exception(make(lib), phase).cause == expected
