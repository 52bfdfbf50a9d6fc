"""kit.instrument: httpx and httpx2 clients, sync and async, record without changing anything."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

import kit

httpx2 = pytest.importorskip("httpx2")

BODY = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server():
    with kit.FaultServer() as s:
        yield s


def _read_sync(client, url):
    with client.stream("POST", url + "/v1/messages", json=BODY) as r:
        return r.status_code, b"".join(r.iter_bytes())


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_sync_client_same_bytes_and_a_trace(server, mod):
    url = server.url_for("ok")
    with mod.Client(trust_env=False) as plain:
        expected = _read_sync(plain, url)
    with mod.Client(trust_env=False) as c:
        rec = kit.instrument(c)
        got = _read_sync(c, url)
    assert got == expected
    tr = rec.trace
    assert tr.ok and len(tr.attempts) == 1 and tr.protocol == "anthropic"
    a = tr.attempt
    assert a.status == 200 and a.framing == "chunked"
    assert a.bytes_received == len(got[1])
    assert tr.events["type"].tolist()[0] == "message_start" and tr.events["type"].tolist()[-1] == "message_stop"
    assert a.connected_ns is not None and a.start_ns <= a.connected_ns <= a.headers_ns <= a.first_chunk_ns
    assert len(tr.server) > 3  # joined with the server log
    assert a.local_addr is not None and a.local_addr.startswith("127.0.0.1:")  # the socket's own address
    assert tr.attempts_df["local_addr"].tolist() == [a.local_addr]


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_async_client(server, mod):
    url = server.url_for("ok")

    async def go():
        async with mod.AsyncClient(trust_env=False) as c:
            rec = kit.instrument(c)
            async with c.stream("POST", url + "/v1/messages", json=BODY) as r:
                data = b"".join([x async for x in r.aiter_bytes()])
            return rec, data

    rec, data = asyncio.run(go())
    assert rec.trace.ok and rec.trace.attempt.bytes_received == len(data)
    assert rec.trace.attempt.local_addr.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("scenario", "exc", "phase", "cause"),
    [
        ("headers_then_close", "RemoteProtocolError", "first_chunk", "closed"),
        ("headers_then_reset", "ReadError", "first_chunk", "reset"),
        ("close_mid_stream", "RemoteProtocolError", "stream", "closed"),
        ("empty_200", None, "first_chunk", "ended"),
        ("error_event_mid_stream", None, "stream", "error_event"),
        ("overloaded_529", None, "headers", "http_status"),
    ],
)
def test_same_exceptions_and_classified_outcomes(server, scenario, exc, phase, cause):
    url = server.url_for(scenario)
    results = []
    for watch in (False, True):
        with httpx2.Client(trust_env=False) as c:
            rec = kit.instrument(c) if watch else None
            try:
                results.append(_read_sync(c, url))
            except Exception as e:
                results.append((type(e), str(e)))
    ids = re.compile(rb"req_[0-9A-Za-z]+" if isinstance(results[0][1], bytes) else r"req_[0-9A-Za-z]+")
    same = [(a, ids.sub(b"req" if isinstance(b, bytes) else "req", b)) for a, b in results]  # one API id per request
    assert same[0] == same[1]
    if exc:
        assert results[1][0].__name__ == exc
    o = rec.trace.outcome
    assert (o.phase, o.cause) == (phase, cause)


def test_timeout_before_headers_and_connect_refused(server):
    with httpx2.Client(trust_env=False, timeout=httpx2.Timeout(0.3)) as c:
        rec = kit.instrument(c)
        with pytest.raises(httpx2.ReadTimeout):
            _read_sync(c, server.url_for("slow_headers"))
        with pytest.raises(httpx2.ConnectError):
            c.get("http://127.0.0.1:9/")
    first, second = rec.traces
    assert first.outcome.cause == "timeout.headers" and first.outcome.phase == "headers"
    assert second.outcome.cause == "refused"


def test_early_close_is_cancelled_and_terminator_close_is_ok(server):
    with httpx2.Client(trust_env=False) as c:
        rec = kit.instrument(c)
        with c.stream("POST", server.url_for("ok") + "/v1/messages", json=BODY) as r:
            next(r.iter_raw())
    assert rec.trace.outcome.cause == "cancelled" and rec.trace.outcome.phase == "stream"


def test_uninstrument_and_idempotence(server):
    c = httpx2.Client(trust_env=False)
    rec = kit.instrument(c)
    assert kit.instrument(c) is rec
    rec.uninstrument()
    _read_sync(c, server.url_for("ok"))
    assert rec.traces == []
    c.close()
    with pytest.raises(kit.ConfigError):
        kit.instrument(object())


def test_retries_without_sdk_headers_are_separate_calls(server):
    with httpx.Client(trust_env=False) as c:
        rec = kit.instrument(c)
        for _ in range(2):
            _read_sync(c, server.url_for("ok"))
        assert len(rec.traces) == 2
        rec.clear()
        assert rec.traces == []


def test_sdk_retry_header_joins_the_call(server):
    url = server.url_for("overloaded_529") + "/v1/messages"
    with httpx2.Client(trust_env=False) as c:
        rec = kit.instrument(c)
        for n in range(3):
            c.post(url, json=BODY, headers={"x-stainless-retry-count": str(n)})
    (tr,) = rec.traces
    assert [a.index for a in tr.attempts] == [1, 2, 3] and tr.attempts[1].wait_before >= 0


# ------------------------------------------- issue 14 item 14: kit.instrument is bounded too


def test_instrument_holds_and_records_a_bounded_amount(server):
    import httpx

    url = server.url_for(kit.Scenario(events=20_000, gap=0.0, name="fast-endless")) + "/v1/messages"
    with httpx.Client() as client:
        rec = kit.instrument(client, max_recorded=1000, max_held_bytes=64 * 1024)
        with client.stream("POST", url, json={"stream": True}) as response:
            for _ in response.iter_raw():
                pass
            obs = rec._pending[-1]
            assert obs.held <= 64 * 1024 + 65536 and obs.parsing  # parsed as it came, not held
        trace = rec.trace
    a = trace.attempts[0]
    assert trace.outcome.ok, trace.outcome  # the terminator past the cap was still seen
    assert a.truncated and len(a.chunk_t) + len(a.event_t) < 1000 + 2_000
    assert a.events_received >= 20_000 and "Policy.max_recorded" in trace.outcome.message
