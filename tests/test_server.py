"""The fault server: routing, bad requests, logs, lifecycle (real sockets on loopback)."""

from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time

import httpx
import pytest

import kit


def test_unknown_scenario_is_404_naming_the_known_ones(server):
    r = httpx.post(server.url + "/s/empty200/v1/messages", json={})
    assert r.status_code == 404
    err = r.json()["error"]
    assert "empty200" in err["message"] and "empty_200" in err["known_scenarios"]


def test_path_without_scenario_is_404(server):
    assert httpx.post(server.url + "/v1/messages", json={}).status_code == 404


def test_root_lists_scenarios(server):
    listing = httpx.get(server.url + "/").json()["scenarios"]
    assert listing["ok"].endswith("/s/ok")


def test_malformed_request_body_is_400(server):
    r = httpx.post(
        server.url_for("ok") + "/v1/messages", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


def test_garbage_request_line_is_400(server):
    with socket.create_connection(server.address) as s:
        s.sendall(b"\x00\x01 garbage\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 400")


def test_request_body_over_the_cap_is_413(server):
    r = httpx.post(
        server.url_for("ok") + "/v1/messages", content=b"x" * (2 << 20), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 413


def test_any_path_under_the_base_gets_the_scenario(server):
    for path in ("/v1/messages", "/v1/chat/completions", "/stream", "/anything/else"):
        r = httpx.post(server.url_for("overloaded_529") + path, json={})
        assert r.status_code == 529


def test_custom_scenarios_get_distinct_urls(server):
    a = server.url_for(kit.Scenario(events=1))
    b = server.url_for(kit.Scenario(events=2))
    assert a != b and isinstance(a, kit.ScenarioURL) and a.scenario.events == 1
    assert a.with_origin("http://127.0.0.1:1").startswith("http://127.0.0.1:1/s/")


def test_log_has_scheduled_and_actual_times(server):
    sc = kit.Scenario(events=5, gap=0.02, first_byte_delay=0.05)
    trace = kit.stream(server.url_for(sc))
    log = trace.server
    writes = log[log["kind"] == "content_block_delta"]
    assert len(writes) == 5
    assert (writes["late_s"].abs() < 0.05).all()
    first = log[log["kind"] == "message_start"].iloc[0]
    headers = log[log["kind"] == "headers"].iloc[0]
    assert abs((first["scheduled_ns"] - headers["t_ns"]) / 1e9 - 0.05) < 0.001


def test_attempt_header_selects_the_per_attempt_scenario(server):
    url = server.url_for("fail_fail_succeed") + "/v1/messages"
    statuses = [httpx.post(url, json={}, headers={"x-kit-attempt": str(n)}).status_code for n in (1, 2, 3)]
    assert statuses == [529, 529, 200]


def test_stainless_retry_count_is_an_attempt_number(server):
    url = server.url_for("fail_fail_succeed") + "/v1/messages"
    assert httpx.post(url, json={}, headers={"x-stainless-retry-count": "2"}).status_code == 200


def test_keep_alive_reuses_the_connection():
    with kit.FaultServer() as srv, httpx.Client() as c:
        for _ in range(3):
            assert c.post(srv.url_for("overloaded_529") + "/v1/messages", json={}).status_code == 529
        connections = {e.connection for e in srv.log if e.kind == "request"}
    assert len(connections) == 1  # three requests, one TCP connection


def test_on_request_callback_sees_each_request():
    seen = []
    with kit.FaultServer(on_request=seen.append) as srv:
        kit.stream(srv.url_for("empty_200"))
        kit.stream(srv.url_for("ok"))
    # empty_200 is Close(clean=True): the body ends cleanly, then the FIN it promises
    assert [(r["scenario"], r["end"]) for r in seen] == [("empty_200", "end_close"), ("ok", "end")]


def test_non_loopback_bind_is_refused():
    with pytest.raises(kit.ConfigError) as info:
        kit.FaultServer(host="0.0.0.0")
    assert info.value.field == "host"


def test_taken_port_is_a_clear_error(server):
    with pytest.raises(kit.ServerError, match="cannot bind"):
        kit.FaultServer(port=server.address[1]).start()


def test_stop_leaves_no_threads_or_sockets():
    before = set(threading.enumerate())
    srv = kit.FaultServer().start()
    port = srv.address[1]
    # leave a stream hanging to check that stop() tears it down
    sc = kit.Scenario(events=3, faults=[kit.Stall(after=1)])
    t = threading.Thread(target=kit.stream, args=(srv.url_for(sc),), kwargs={"policy": kit.Policy(total=3)})
    t.start()
    import time

    time.sleep(0.3)
    srv.stop()
    t.join(5)
    assert not t.is_alive()
    assert set(threading.enumerate()) <= before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_server_survives_a_client_that_disappears(server):
    with socket.create_connection(server.address) as s:
        body = json.dumps({}).encode()
        s.sendall(
            b"POST /s/stall_mid_stream/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        s.recv(100)
    assert kit.stream(server.url_for("ok")).ok


def test_async_context_manager():
    import asyncio

    async def main():
        async with kit.FaultServer() as srv:
            return (await kit.astream(srv.url_for("ok"))).ok

    assert asyncio.run(main())


def test_isolated_server_has_the_same_api():
    with kit.FaultServer(isolate=True) as srv:
        custom = kit.Scenario(events=3, gap=0.001, faults=[kit.Close(after=4)])
        cut = kit.stream(srv.url_for(custom))
        ok = kit.stream(srv.url_for("ok"))
        assert cut.outcome.cause == "closed" and ok.ok
        import time

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (ok.server.empty or len(srv.requests) < 2):
            time.sleep(0.05)
        assert ok.server["kind"].iloc[-1] == "end"
        assert len(srv.requests) == 2
        # the child ships every field of its log, payload bytes too
        assert int(ok.server.query("kind != 'request'")["body_bytes"].sum()) == ok.attempt.bytes_received
    with pytest.raises(kit.ServerError):
        _ = srv.address


@pytest.mark.parametrize("isolate", [False, True])
def test_both_modes_serve_scenarios_registered_before_the_start_and_report_alive(isolate):
    srv = kit.FaultServer(isolate=isolate)
    early = kit.Scenario(name="early", events=2, gap=0.0)
    token = srv.register(early)  # before start: the mode hears of it when it starts
    assert not srv.alive and srv.pid is None
    with srv:
        assert srv.alive and (srv.pid is not None) == isolate and srv.pid != os.getpid()
        assert kit.stream(f"{srv.url}/s/{token}").ok
    assert not srv.alive and srv.pid is None


def test_log_is_a_snapshot_list_like_the_proxy_log(server):
    before = server.log
    assert isinstance(before, list) and isinstance(kit.NetworkProxy.log, property)
    n = len(before)
    assert kit.stream(server.url_for("ok")).ok
    assert len(before) == n and len(server.log) > n  # later writes reach new snapshots only
    before.clear()
    assert server.log  # clearing a snapshot does not touch the server's log


def test_slowloris_gets_408_and_a_healthy_client_is_unaffected():
    import time

    with kit.FaultServer(request_timeout=0.5) as srv:
        slow = socket.create_connection(srv.address)
        slow.sendall(b"POST /s/ok/v1/messages HTTP/1.1\r\nhost: x\r\n")  # headers never finish
        healthy = kit.stream(srv.url_for("ok"))
        assert healthy.ok
        slow.settimeout(5)
        assert slow.recv(100).startswith(b"HTTP/1.1 408")
        slow.close()
        time.sleep(0.05)
        assert any(r.get("status") == 408 and r["end"] == "rejected" for r in srv.requests)


@pytest.mark.slow
def test_a_thousand_idle_connections_do_not_disturb_a_stream():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    with kit.FaultServer() as srv:
        idle = [socket.create_connection(srv.address) for _ in range(1000)]
        try:
            trace = kit.stream(srv.url_for(kit.Scenario(events=50, gap=0.01)))
            assert trace.ok
            late = trace.server[trace.server["nbytes"] > 0]["late_s"].abs()
            assert late.quantile(0.99) < 0.05  # generous: the benchmark holds the tight bound
        finally:
            for s in idle:
                s.close()


# ------------------------------------------- issue 14 items 7-9: hostile requests and scenarios


def _exchange(server, raw: bytes, timeout: float = 10.0, until_close: bool = False) -> bytes:
    """Send ``raw``, read the response (``until_close``: until the server closes, else fail)."""
    with socket.create_connection(server.address, timeout=timeout) as s:
        s.sendall(raw)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if not until_close and b"\r\n\r\n" in out and b"content-length" in out.lower():
                    head, _, body = out.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(body) >= length:
                        break
        except TimeoutError:
            assert not until_close, f"the server left the connection open: {out[:200]!r}"
    return out


def _post(path: str, body: bytes, **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-kit-attempt", "²"),
        ("x-kit-attempt", "9" * 5000),
        ("x-kit-attempt", "0"),
        ("x-kit-attempt", "-1"),
        ("x-stainless-retry-count", "9" * 5000),
        ("x-stainless-retry-count", "³"),
    ],
)
def test_bad_attempt_headers_get_a_400_json_error(server, header, value, caplog):
    n = len(server.requests)
    reply = _exchange(server, _post("/s/ok/v1/messages", b"{}", **{header.replace("-", "_"): value}))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:200]
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and header in error["message"]
    assert any(e["status"] == 400 and e["method"] == "POST" for e in server.requests[n:])
    assert "Unhandled exception" not in caplog.text


def test_a_400k_deep_json_body_gets_a_400(server, caplog):
    reply = _exchange(server, _post("/s/ok/v1/messages", b"[" * 400_000 + b"]" * 400_000))
    assert reply.startswith(b"HTTP/1.1 400") and b"not valid JSON" in reply
    assert "Unhandled exception" not in caplog.text


def test_http_1_0_gets_a_close_delimited_body_then_close(server):
    req = b'POST /s/ok/v1/messages HTTP/1.0\r\ncontent-length: 16\r\n\r\n{"stream": true}'
    reply = _exchange(server, req, until_close=True)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"chunked" not in head.lower() and b"connection: close" in head.lower()
    assert body.startswith(b"event: ")  # no chunk-size line before it
    assert b"message_stop" in body and b"\r\n0\r\n" not in body


def test_unknown_scenarios_and_rejected_requests_are_logged_like_any_request(server):
    from kit.cli.serve import format_request

    n = len(server.requests)
    _exchange(server, b"GET /s/nope/v1/messages?key=hush HTTP/1.1\r\nhost: x\r\n\r\n")
    _exchange(server, b"NOT A REQUEST\r\n\r\n")
    new = server.requests[n:]  # (a request of an earlier test may finish in between)
    not_found = next(e for e in new if e.get("end") == "not_found")
    rejected = next(e for e in new if e.get("end") == "rejected")
    assert (not_found["status"], not_found["method"], not_found["path"]) == (404, "GET", "/s/nope/v1/messages")
    assert rejected["status"] == 400 and rejected["end"] == "rejected"
    for info in (not_found, rejected):
        line = format_request(info, info["t_ns"])
        assert "? ?" not in line and str(info["status"]) in line and "hush" not in line


def test_planning_a_big_scenario_does_not_block_other_clients():
    big = kit.Scenario(events=30_000, gap=0.0, seed=14)  # ~0.1 ms per event to plan, never planned before
    with kit.FaultServer() as srv:
        url = srv.url_for(big)
        heavy: list[kit.Trace] = []
        t = threading.Thread(target=lambda: heavy.append(kit.stream(url, policy=kit.Policy(total=120))))
        t.start()
        time.sleep(0.3)  # the big request has arrived and is being planned
        quick = kit.stream(srv.url_for("ok"), policy=kit.Policy(total=60))
        t.join(120)
    # both answered: the big plan did not wedge the server's loop. Whether the quick call also
    # ends before the big one's headers depends on how the GIL is shared between the planning
    # thread and the loop (it did in one quiet full run, not in the next), so it is not asserted.
    assert quick.outcome.ok and heavy and heavy[0].outcome.ok


def test_keep_bounds_the_log_of_a_long_running_server():
    sc = kit.Scenario(events=2, gap=0.0)
    with kit.FaultServer(keep=20) as srv, httpx.Client() as client:
        url = srv.url_for(sc) + "/v1/messages"
        for _ in range(200):
            client.post(url, json={"stream": True}).read()
        deadline = time.monotonic() + 30  # the server records a request just after its last byte went out
        while srv.requests_seen < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.requests_seen == 200
        assert len(srv.requests) < 20 + 10 + 1 and len({e.request_id for e in srv.log}) < 31
        per_request = len(srv.log_for(srv.requests[-1]["request_id"]))
        assert len(srv.log) <= 31 * per_request
        assert srv.log_for(srv.requests[-1]["request_id"])  # the newest are kept
    with pytest.raises(kit.ConfigError, match="keep"):
        kit.FaultServer(keep=0)


def test_clean_close_ends_the_body_then_sends_fin(server):
    """Close(clean=True): the zero-length chunk, then the FIN (the connection is not kept alive)."""
    import socket

    url = server.url_for("empty_200")
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1] + "/v1/messages"
    with socket.create_connection((host, int(port)), timeout=5) as s:
        body = b'{"stream": true}'
        s.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        data = b""
        while chunk := s.recv(65536):  # returns b"" on FIN; a kept-alive connection would time out here
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"0\r\n\r\n")
