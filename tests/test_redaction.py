"""Secrets never reach a saved file: plant a fake key everywhere one can be, look for it in every byte."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

import kit

KEY = "sk-ant-api03-FAKEKEYFAKEKEY0123456789"  # looks like a provider key: redacted anywhere in text
SECRET = "kit-secret-7f3a9c51"  # looks like nothing: must be caught by where it is (header name, query name)
NEEDLES = [KEY, SECRET, quote(KEY), quote(SECRET), KEY[8:24], SECRET[4:]]


def scenario() -> kit.Scenario:
    return kit.Scenario(
        events=3,
        gap=0.0,
        name="leaky",
        attempts=(
            kit.Scenario(
                faults=(
                    kit.HttpStatus(
                        status=429,
                        message=f"invalid x-api-key {KEY}",
                        headers=(("set-cookie", f"session={SECRET}"), ("x-api-key", SECRET)),
                    ),
                )
            ),
            kit.Scenario(events=3, faults=(kit.ErrorEvent(after=4, message=f"key {KEY} revoked"),)),
        ),
    )


HEADERS = {
    "x-api-key": SECRET,
    "authorization": f"Bearer {KEY}",
    "cookie": f"session={SECRET}",
    "proxy-authorization": f"Basic {SECRET}",
}


def assert_clean(root: Path) -> None:
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    assert files
    for f in files:
        data = f.read_bytes()
        for needle in NEEDLES:
            assert needle.encode() not in data, f"{needle!r} in {f}"
        if f.suffix == ".parquet":  # compressed: look inside the decoded values too
            text = pd.read_parquet(f).astype(str).to_csv()
            for needle in NEEDLES:
                assert needle not in text, f"{needle!r} in a value of {f}"


def test_no_secret_in_any_saved_file(server, tmp_path):
    sc = scenario()
    policy = (
        kit.Policy(max_retries=1, backoff_initial=0.01)
        if "max_retries" in kit.Policy.__dataclass_fields__
        else kit.Policy()
    )
    exp = kit.Experiment(scenarios=[sc], policies=[policy], trials=2, seed=1, headers=HEADERS)
    result = exp.run(2, out=tmp_path / "run", server=server, progress=False)
    assert len(result.trials) == 2
    # the secrets did go over the wire (they are in the server's view of the request, not in any file)
    assert any(a["status"] == 429 for a in json.loads(result.attempts.to_json(orient="records")))

    # a single call with keys in the URL (query and userinfo) and headers
    url = server.url_for(sc)
    leaky_url = url.replace("http://", f"http://user:{SECRET}@") + f"/v1/messages?api_key={SECRET}&token={KEY}"
    trace = kit.stream(leaky_url, protocol="anthropic", headers=HEADERS, trial="1")
    single = kit.Result.from_traces([trace], ids=["single"])

    result.save(tmp_path / "csv", format="csv")
    single.save(tmp_path / "single")
    single.save(tmp_path / "single-csv", format="csv")
    result.to_har(tmp_path / "har" / "run.har") if (tmp_path / "har").mkdir() is None else None
    trace.to_har(tmp_path / "har" / "trace.har")
    (tmp_path / "journal.jsonl").write_text(json.dumps(trace.to_record("x", 0, 0, 0).to_dict()))
    kit.from_har(tmp_path / "har" / "trace.har").save(tmp_path / "from-har")
    from kit.report import write_report

    write_report(result, tmp_path / "report.html")
    assert_clean(tmp_path)


def test_opting_out_is_explicit(server, tmp_path):
    exp = kit.Experiment(scenarios=["ok"], trials=1, headers={"x-api-key": SECRET})
    assert exp.to_dict()["headers"]["x-api-key"] == "[redacted]"
    assert exp.to_dict(redact=False)["headers"]["x-api-key"] == SECRET
    result = exp.run(1, server=server, progress=False)
    assert SECRET not in json.dumps(result.config)
    result.config = exp.to_dict(redact=False)
    path = result.save(tmp_path / "raw", redact=False)
    doc = json.loads((path / "bundle.json").read_text())
    assert doc["redacted"] is False and doc["experiment"]["headers"]["x-api-key"] == SECRET


# --------------------------------------------------------------------- issue 14, items 3-5

import socket  # noqa: E402
from urllib.parse import parse_qsl, urlsplit  # noqa: E402

from _upstream import reflector  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kit._redact import SAFE_HEADERS, SAFE_PARAMS, header_is_safe, redact_headers, redact_url, unredact  # noqa: E402

PLAIN = "plainvalue-4b1d9e7c"  # a secret that looks like nothing


def test_the_server_never_echoes_a_query_and_no_stored_message_holds_it(server, tmp_path):
    with socket.create_connection(server.address) as s:
        s.sendall(f"GET /v1/messages?key={PLAIN} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        reply = s.recv(65536)
    assert b"404" in reply.split(b"\r\n")[0] and PLAIN.encode() not in reply
    trace = kit.stream(server.url + f"/v1/messages?key={PLAIN}")
    assert trace.outcome.cause == "http_status"
    result = kit.Result.from_traces([trace], ids=["t"])
    result.save(tmp_path / "b")
    trace.to_har(tmp_path / "t.har")
    assert PLAIN not in repr(trace.attempts_df.to_dict()) and PLAIN not in trace.url
    assert_no(tmp_path, PLAIN)


def assert_no(root: Path, *needles: str) -> None:
    for f in Path(root).rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            text = pd.read_parquet(f).astype(str).to_csv() if f.suffix == ".parquet" else ""
            for n in needles:
                assert n.encode() not in data and n not in text, f"{n!r} in {f}"


@pytest.mark.parametrize("name", ["session", "sid", "jwt", "authorization", "hapikey", "AWSAccessKeyId", "x"])
def test_query_values_are_redacted_unless_known_harmless(name):
    out = redact_url(f"https://api.example.com/v1?{name}={PLAIN}&model=claude&beta=true")
    assert PLAIN not in out
    assert dict(parse_qsl(urlsplit(out).query)) == {name: "[redacted]", "model": "claude", "beta": "true"}


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=20),
    value=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
)
def test_any_header_not_known_harmless_is_redacted(name, value):
    out = redact_headers({name: value})
    if not header_is_safe(name):
        assert out == {name.lower(): "[redacted]"}


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=15),
    value=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
)
def test_any_query_value_not_known_harmless_is_redacted(name, value):
    from urllib.parse import urlencode

    out = redact_url("http://h/p?" + urlencode({name: value}))
    if name.lower() not in SAFE_PARAMS:
        assert [v for _, v in parse_qsl(urlsplit(out).query)] == ["[redacted]"]


def test_harmless_headers_pass_and_opting_out_is_per_name(server, tmp_path):
    safe = {"content-type": "text/event-stream", "anthropic-version": "2023-06-01", "x-kit-trial": "7"}
    assert redact_headers(safe) == safe and {"accept", "user-agent"} <= SAFE_HEADERS
    exp = kit.Experiment(scenarios=["ok"], trials=1, headers={"x-auth-token": PLAIN, "x-team": "blue-team-1"})
    exp.run(1, server=server, progress=False, out=tmp_path / "run")
    doc = (tmp_path / "run" / "bundle.json").read_text()
    assert PLAIN not in doc and "blue-team-1" not in doc
    kit.unredact("x-team")
    try:
        assert redact_headers({"x-team": "blue-team-1", "x-auth-token": PLAIN}) == {
            "x-team": "blue-team-1",
            "x-auth-token": "[redacted]",
        }
        unredact("authorization")  # always secret: not unredactable
        assert redact_headers({"authorization": PLAIN}) == {"authorization": "[redacted]"}
    finally:
        from kit import _redact

        _redact._unredacted.discard("x-team")
        _redact._unredacted.discard("authorization")


@pytest.mark.parametrize("mode", ["body", "status_line"])
def test_what_an_upstream_reflects_is_scrubbed_everywhere(tmp_path, mode):
    up = reflector(mode)
    try:
        secret_header, secret_query = "hdrsecret-91c2d7aa", "qrysecret-5e8f0b13"
        headers = {"x-custom-auth": secret_header, "cookie": f"sess={PLAIN}"}
        trace = kit.stream(f"{up.url}/v1/messages?session={secret_query}", headers=headers)
        assert trace.outcome.cause in ("http_status", "closed", "malformed", "reset"), trace.outcome
        # an SDK under kit.instrument meets the same upstream
        import httpx

        with httpx.Client() as client:
            rec = kit.instrument(client)
            with contextlib.suppress(httpx.HTTPError):
                client.post(f"{up.url}/v1/messages?session={secret_query}", headers=headers, json={})
            sdk_traces = rec.traces
    finally:
        up.close()
    result = kit.Result.from_traces([trace, *sdk_traces], ids=["t", "sdk"][: 1 + len(sdk_traces)])
    result.save(tmp_path / "bundle")
    result.to_har(tmp_path / "r.har")
    (tmp_path / "journal.jsonl").write_text(json.dumps(trace.to_record("x", 0, 0, 0).to_dict()))
    needles = (secret_header, secret_query, PLAIN)
    for t in (trace, *sdk_traces):
        for a in t.attempts:
            stored = json.dumps([a.outcome.message if a.outcome else "", a.error, a.headers, a.url])
            assert not any(n in stored for n in needles), stored
    assert_no(tmp_path, *needles)
