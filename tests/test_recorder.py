"""The recording reverse proxy against a real TLS upstream (a FaultServer with a trustme CA)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kit
from kit.recorder import RecordedAttempt

SECRET = "sk-ant-api03-plantedSECRET0123456789"
STREAM = kit.Scenario(events=12, gap=0.02, first_byte_delay=0.03, name="recorded")


def _record(tls_server, tls_ca, scenario=STREAM, **kwargs):
    with kit.Recorder(tls_server.url_for(scenario), ca=tls_ca[1], **kwargs) as rec:
        client = kit.stream(kit.ScenarioURL(rec.url, scenario), headers={"x-api-key": SECRET})
    return rec, client


def test_records_bytes_times_and_events_while_streaming_through(tls_server, tls_ca):
    rec, client = _record(tls_server, tls_ca)
    assert client.ok, client
    (trace,) = rec.traces
    a = trace.attempt
    assert isinstance(a, RecordedAttempt) and trace.ok and trace.protocol == "anthropic"
    assert a.status == 200 and a.framing == "chunked"
    # every chunk's bytes; the client got the same body, event for event
    assert sum(len(c) for c in a.chunk_data) == a.bytes_received == client.attempt.bytes_received
    assert list(a.event_type) == list(client.attempt.event_type)
    assert list(a.event_size) == list(client.attempt.event_size)
    # no buffering: each chunk reached the client soon after the recorder read it
    rec_t, cli_t = trace.chunks["t_ns"].to_numpy(), client.chunks["t_ns"].to_numpy()
    if len(rec_t) == len(cli_t):  # same read boundaries (usual on loopback)
        assert ((cli_t - rec_t) / 1e9 < 0.05).all()
    # arrival times on the kit's clock: the recorder saw the stream as the upstream wrote it
    writes = [
        e.t_ns
        for e in tls_server.log_for(client.attempt.request_id)
        if e.nbytes and e.kind not in ("request", "headers", "end")
    ]
    assert 0 <= a.chunk_t[0] - writes[0] < 0.2e9 and 0 <= a.chunk_t[-1] - writes[-1] < 0.2e9
    assert a.request["method"] == "POST" and a.request["target"].endswith("/v1/messages")


def test_planted_secrets_never_reach_any_output(tls_server, tls_ca, tmp_path):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"my key is {SECRET}"}]}
    with kit.Recorder(tls_server.url_for(STREAM) + f"?key={SECRET}", ca=tls_ca[1]) as rec:
        import httpx

        with httpx.Client() as c:
            r = c.post(
                rec.url + f"/v1/messages?api_key={SECRET}",
                json=body,
                headers={"x-api-key": SECRET, "authorization": f"Bearer {SECRET}", "cookie": f"s={SECRET}"},
            )
            assert r.status_code == 200 and b"message_stop" in r.content
    out = rec.save(tmp_path / "rec")
    # an upstream that echoes the key: masked in the recorded bytes, same length (replay stays exact)
    echo = kit.Scenario(events=2, faults=(kit.ErrorEvent(after=3, message=f"bad key {SECRET}"),), name="echo")
    with kit.Recorder(tls_server.url_for(echo), ca=tls_ca[1]) as rec2:
        kit.stream(kit.ScenarioURL(rec2.url, echo), headers={"x-api-key": SECRET})
    echoed = rec2.traces[0].attempt
    assert b"*" * len(SECRET) in b"".join(echoed.chunk_data) and SECRET not in repr(echoed.outcome)
    assert sum(len(c) for c in echoed.chunk_data) == echoed.bytes_received
    texts = [repr(rec.traces), repr(rec.traces[0].attempt.request), repr(rec.result().meta)]
    texts += [p.read_bytes().decode("latin-1") for p in Path(out).rglob("*") if p.is_file()]
    for text in texts:
        assert SECRET not in text and "plantedSECRET" not in text
    # what is kept is still useful: the request line and redacted header names
    req = rec.traces[0].attempt.request
    assert dict(req["headers"])["x-api-key"] == "[redacted]" and "[redacted]" in req["body"]


def test_bundle_and_har_load_and_replay(tls_server, tls_ca, tmp_path):
    rec, _ = _record(tls_server, tls_ca, out=tmp_path / "rec")
    assert rec.saved == tmp_path / "rec"
    result = kit.load(rec.saved)
    assert result.trials["cause"].tolist() == ["ok"] and result.meta["recording"]["calls"][0]["scenario"] == 0
    body = b"".join(rec.traces[0].attempt.chunk_data)
    from_bundle = kit.replay_scenario(rec.saved)
    from_har = kit.replay_scenario(rec.saved / "recording.har")
    assert from_bundle.replay.body == from_har.replay.body == body
    assert from_bundle.replay.times == pytest.approx(from_har.replay.times, abs=2e-3)  # HAR keeps ms to 3 places
    assert kit.from_har(rec.saved / "recording.har").trials["bytes"].tolist() == [len(body)]
    with pytest.raises(kit.ConfigError, match="exists"):
        kit.Recorder(tls_server.url_for(STREAM), out=rec.saved)


def test_real_sdk_gets_the_same_result_through_the_recorder(tls_server, tls_ca):
    anthropic = pytest.importorskip("anthropic")
    url = tls_server.url_for(STREAM)
    ctx = ssl.create_default_context(cafile=str(tls_ca[1]))

    def call(base_url, http_client=None):
        sdk = anthropic.Anthropic(base_url=base_url, api_key=SECRET, max_retries=0, http_client=http_client)
        try:
            with sdk.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
                types = [ev.type for ev in s]
                msg = s.get_final_message()
            return types, msg.content[0].text, msg.stop_reason
        finally:
            sdk.close()

    direct = call(url, anthropic.DefaultHttpxClient(verify=ctx))
    with kit.Recorder(url, ca=tls_ca[1]) as rec:
        recorded = call(rec.url)
    assert recorded == direct and direct[2] == "end_turn"
    assert rec.traces[0].ok and SECRET not in repr(rec.traces[0].attempt.request)


def test_replay_of_a_recording_matches_bytes_gaps_and_events(tls_server, tls_ca, server):
    rec, _ = _record(tls_server, tls_ca)
    original = rec.traces[0]
    replayed = kit.stream(server.url_for(kit.replay_scenario(original)))
    assert replayed.ok
    assert replayed.attempt.bytes_received == original.attempt.bytes_received
    assert list(replayed.attempt.event_type) == list(original.attempt.event_type)
    assert list(replayed.attempt.event_size) == list(original.attempt.event_size)
    fit = kit.replay_fidelity(original, replayed)
    assert fit["bytes_identical"] and fit["events_identical"]
    assert fit["gap_error_p50_s"] < 0.005  # the median: a shared, loaded machine puts anything in the tail


# ------------------------------------------------------------------ bad input


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_refused_upstream_is_an_outcome_and_the_client_fails_as_directly():
    port = _closed_port()
    direct = kit.stream(kit.ScenarioURL(f"http://127.0.0.1:{port}", STREAM))
    with kit.Recorder(f"https://127.0.0.1:{port}") as rec:
        via = kit.stream(kit.ScenarioURL(rec.url, STREAM))
    assert direct.outcome.cause == "refused"
    assert not via.ok and via.outcome.cause in ("reset", "closed")  # a failed connection, no response
    (t,) = rec.traces
    assert (t.outcome.phase, t.outcome.cause) == ("connect", "refused") and t.attempt.error


def test_an_sdk_raises_the_same_exception_through_the_recorder_as_directly():
    anthropic = pytest.importorskip("anthropic")
    port = _closed_port()

    def error(base_url: str) -> str:
        sdk = anthropic.Anthropic(base_url=base_url, api_key=SECRET, max_retries=0, timeout=5)
        try:
            sdk.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        except anthropic.APIError as exc:
            return type(exc).__name__
        finally:
            sdk.close()
        return "returned"

    direct = error(f"http://127.0.0.1:{port}")
    with kit.Recorder(f"https://127.0.0.1:{port}") as rec:
        via = error(rec.url)
    assert direct == via == "APIConnectionError"
    assert rec.traces[0].outcome.cause == "refused"


def test_tls_failure_is_an_outcome(tls_server):
    # no ca=: the system trust store does not know the test CA, so verification fails
    with kit.Recorder(tls_server.url_for(STREAM)) as rec:
        via = kit.stream(kit.ScenarioURL(rec.url, STREAM))
    direct = kit.stream(tls_server.url_for(STREAM))
    assert not via.ok and not direct.ok and direct.outcome.phase == "connect"
    (t,) = rec.traces
    assert t.outcome.phase == "connect" and "CERTIFICATE_VERIFY_FAILED" in t.outcome.message


def test_non_http_bytes_reach_the_client_as_non_http(tls_ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca[0].issue_cert("127.0.0.1").configure_cert(ctx)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = listener.accept()
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    request = b""
                    while b"\r\n\r\n" not in request or not request.endswith(b"}"):  # the whole JSON request
                        data = tls.recv(65536)
                        if not data:
                            break
                        request += data
                    tls.sendall(b"SSH-2.0-OpenSSH_9.6\r\nthis is not http\r\n\r\n")
                    time.sleep(0.2)  # let the recorder read it all: closing now could reset, not close
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    try:
        with kit.Recorder(f"https://127.0.0.1:{port}", ca=tls_ca[1]) as rec:
            via = kit.stream(kit.ScenarioURL(rec.url, STREAM))
    finally:
        listener.close()
    (t,) = rec.traces
    assert (t.outcome.phase, t.outcome.cause) == ("headers", "malformed")
    assert (via.outcome.phase, via.outcome.cause) == ("headers", "malformed")  # as a direct client sees it


def test_stalled_upstream_the_client_gives_up_as_directly(tls_server, tls_ca):
    stall = kit.Scenario(events=6, gap=0.01, faults=(kit.Stall(after=4),), name="stalls")
    policy = kit.Policy(idle=0.3)
    with kit.Recorder(tls_server.url_for(stall), ca=tls_ca[1]) as rec:
        via = kit.stream(kit.ScenarioURL(rec.url, stall), policy=policy)
        deadline = time.monotonic() + 3
        while not rec.traces and time.monotonic() < deadline:
            time.sleep(0.01)
    assert via.outcome.cause == "timeout.idle"
    (t,) = rec.traces
    assert (t.outcome.phase, t.outcome.cause) == ("stream", "cancelled") and "without data" in t.outcome.message
    # with the recorder's own limit the stall is recorded as a timeout
    with kit.Recorder(tls_server.url_for(stall), ca=tls_ca[1], idle_timeout=0.2) as rec:
        via = kit.stream(kit.ScenarioURL(rec.url, stall), policy=kit.Policy(idle=2))
    assert rec.traces[0].outcome.cause == "timeout.idle" and via.outcome.cause == "closed"


def test_size_cap_stops_recording_but_not_the_stream(tls_server, tls_ca):
    with pytest.warns(UserWarning, match="max_bytes=500"):
        rec, client = _record(tls_server, tls_ca, max_bytes=500)
    assert client.ok
    a = rec.traces[0].attempt
    assert a.capped and rec.capped and "max_bytes=500" in rec.notes[0]
    assert sum(len(c) for c in a.chunk_data) <= 500 < a.bytes_received
    assert rec.result().meta["recording"]["capped"] is True


def test_bad_arguments_are_config_errors():
    with pytest.raises(kit.ConfigError, match="loopback"):
        kit.Recorder("https://example.com", host="0.0.0.0")
    with pytest.raises(kit.ConfigError, match="https://"):
        kit.Recorder("ftp://example.com")
    with pytest.raises(kit.ConfigError, match="instrument"):
        kit.Recorder(object())
    with pytest.raises(kit.ConfigError, match="PEM"):
        kit.Recorder("https://example.com", ca="/nonexistent/ca.pem")
    with pytest.warns(DeprecationWarning):
        from kit.instrument import Recorder  # the old name of kit.Instrumented
    assert Recorder is kit.Instrumented


def test_kit_record_command(tls_server, tls_ca, tmp_path):
    out = tmp_path / "recordings" / "one"
    env = {**os.environ, "PYTHONPATH": str(Path(kit.__file__).parent.parent)}
    args = ["record", "--upstream", tls_server.url_for(STREAM), "--listen", "127.0.0.1:0"]
    args += ["--ca", str(tls_ca[1]), "-o", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "recording on http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split("recording on ")[1].split()[0]
        assert kit.stream(kit.ScenarioURL(url, STREAM)).ok
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "POST /v1/messages" in stdout and "saved" in stdout
    assert json.loads((out / "bundle.json").read_text())["run"]["recording"]["calls"][0]["scenario"] == 0
    assert kit.replay_scenario(out).replay.status == 200
