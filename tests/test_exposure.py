"""Exposure: nothing listens beyond loopback unless asked, and no planted secret reaches a file.

Fake keys go into request headers, URLs (query and userinfo), request bodies, response
headers and response bodies; then every byte of every file the kit writes is scanned
(raw, and decoded for Parquet): bundles (Parquet and CSV), the journal, HAR exports,
the HTML report and the symptom atlas (``atlas.csv``, ``environment.json``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

import kit
from kit import atlas
from kit.cli import main as cli
from kit.network import Network
from kit.proxy import NetworkProxy

KEY = "sk-ant-api03-EXPOSUREexposure0123456789"  # key-shaped: redacted wherever it appears in text
SECRET = "kit-opaque-secret-5d1e8b"  # shaped like nothing: only where it is (a header, a query name) hides it
BODY_SECRET = "kit-body-secret-93c2aa"  # only in request bodies, which the kit never stores
NEEDLES = [KEY, SECRET, BODY_SECRET, quote(KEY), quote(SECRET), KEY[13:30], SECRET[4:], BODY_SECRET[4:]]

HEADERS = {
    "x-api-key": SECRET,
    "authorization": f"Bearer {KEY}",
    "cookie": f"session={SECRET}",
    "proxy-authorization": f"Basic {SECRET}",
    "anthropic-api-key": KEY,  # not a known secret header name: its key-shaped value is still redacted
}
BODY = {"model": "m", "stream": True, "metadata": {"user_id": BODY_SECRET, "api_key": KEY}, "messages": []}


def leaky_scenario(name: str = "leaky") -> kit.Scenario:
    """Fails once with a key in the response body and secret response headers, then streams."""
    return kit.Scenario(
        events=3,
        gap=0.0,
        name=name,
        attempts=(
            kit.Scenario(
                faults=(
                    kit.HttpStatus(
                        status=500,
                        message=f"invalid x-api-key {KEY}",
                        headers=(("set-cookie", f"session={SECRET}"), ("x-api-key", SECRET)),
                    ),
                )
            ),
            kit.Scenario(events=3, faults=(kit.ErrorEvent(after=2, message=f"key {KEY} revoked"),)),
        ),
    )


def scan(root: Path) -> list[Path]:
    """Every file under ``root``: no needle in its bytes (or, for Parquet, in its values)."""
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    for f in files:
        data = f.read_bytes()
        for needle in NEEDLES:
            assert needle.encode() not in data, f"{needle!r} in {f}"
            assert needle.encode("utf-16-le") not in data, f"{needle!r} (utf-16) in {f}"
        if f.suffix == ".parquet":  # compressed: look inside the decoded values too
            text = pd.read_parquet(f).astype(str).to_csv()
            for needle in NEEDLES:
                assert needle not in text, f"{needle!r} in a value of {f}"
    return files


# ------------------------------------------------------------------------- binding


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_proxy_refuses_non_loopback_listen(server, host):
    with pytest.raises(kit.ConfigError) as info:
        NetworkProxy(upstream=server, listen=(host, 0))
    assert info.value.field == "listen" and "allow_remote" in str(info.value)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_servers_warn_when_remote_is_allowed(server, host):
    # constructed, not started: the warning is the point, and tests stay on loopback
    with pytest.warns(UserWarning, match="other machines"):
        NetworkProxy(upstream=server, listen=(host, 0), allow_remote=True)
    with pytest.warns(UserWarning, match="other machines can reach it"):
        kit.FaultServer(host, 0, allow_remote=True)
    with pytest.raises(kit.ConfigError):
        kit.FaultServer(host, 0)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_no_flag(server, host):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proxy = NetworkProxy(upstream=server, listen=(host, 0))
    try:
        proxy.start()
    except kit.ServerError:
        pytest.skip(f"{host} is not configured on this machine")
    with proxy:
        assert kit.stream(proxy.url_for(server.url_for("ok"))).ok if host != "::1" else True
    proxy.stop()


def test_clis_refuse_non_loopback_binds(server, capsys):
    up = f"{server.address[0]}:{server.address[1]}"
    assert cli(["proxy", "--upstream", up, "--listen", "0.0.0.0:0"]) == 2
    err = capsys.readouterr().err
    assert "kit proxy" in err and "allow_remote" in err
    assert cli(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "kit serve" in err and "allow_remote" in err


# ------------------------------------------------------------------------- secrets


def test_no_planted_secret_in_any_output(server, tmp_path):
    lan = Network.from_kwargs(latency="2ms", name="lan")
    policy = kit.Policy(max_retries=1, backoff_initial=0.01, idle=2, total=10)
    exp = kit.Experiment(
        scenarios=[leaky_scenario()], networks=[None, lan], policies=[policy], trials=2, seed=1, headers=HEADERS
    )
    out = tmp_path / "out"
    result = exp.run(2, out=out / "run", server=server, progress=False)
    assert len(result.trials) == 4
    assert (result.attempts["status"] == 500).any()  # the secrets did go over the wire

    # one call straight from the client: keys in userinfo, query, headers and body
    base = server.url_for(leaky_scenario("leaky-single"))
    leaky_url = (
        base.replace("http://", f"http://user:{SECRET}@")
        + f"/v1/messages?api_key={SECRET}&token={KEY}&q={quote(KEY)}&access_token={SECRET}"
    )
    trace = kit.stream(leaky_url, protocol="anthropic", headers=HEADERS, json_body=BODY, policy=policy)
    assert [a.status for a in trace.attempts][:1] == [500]
    # ... and the same through a proxy
    with NetworkProxy(upstream=server, latency="1ms") as proxy:
        proxied = kit.stream(proxy.url_for(leaky_url), protocol="anthropic", headers=HEADERS, json_body=BODY)
    single = kit.Result.from_traces([trace, proxied], ids=["single", "proxied"])

    result.save(out / "csv", format="csv")
    single.save(out / "single")
    single.save(out / "single-csv", format="csv")
    (out / "har").mkdir()
    result.to_har(out / "har" / "run.har")
    trace.to_har(out / "har" / "trace.har")
    single.to_har(out / "har" / "single.har")
    kit.from_har(out / "har" / "trace.har").save(out / "from-har")
    from kit.report import write_report

    write_report(result, out / "report.html")
    write_report(single, out / "single.html")
    # what a notebook shows is no file, but it is output too
    (out / "repr.txt").write_text(
        repr(trace) + trace.attempts_df.to_csv() + trace.summary().to_csv() + str(trace.outcome) + repr(result)
    )
    files = scan(out)
    assert len(files) >= 25, files


def test_atlas_build_writes_no_secret(server, tmp_path, monkeypatch):
    """The atlas keeps what SDKs said; a key echoed in an error body must not reach atlas.csv."""
    pytest.importorskip("anthropic")
    from kit.scenarios import PRESETS

    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.setenv(var, KEY)
    leaky = kit.Scenario(
        events=3,
        gap=0.0,
        name="leaky_atlas",
        faults=(kit.HttpStatus(status=400, error_type="invalid_request_error", message=f"bad key {KEY}"),),
    )
    monkeypatch.setitem(PRESETS, "leaky_atlas", leaky)
    clients = ["anthropic-python", "openai-python"]
    df = atlas.build(clients, ["leaky_atlas"], modes=("default",), hang_after=10, out=tmp_path / "atlas")
    assert len(df) == 2 and df["exception"].notna().all()
    assert "[redacted]" in " ".join(df["message"].astype(str))  # the key was in the message, and taken out
    files = scan(tmp_path / "atlas")
    assert {f.name for f in files} == {"atlas.csv", "environment.json"}
    env = json.loads((tmp_path / "atlas" / "environment.json").read_text())
    assert env["options"]["scenarios"] == ["leaky_atlas"]
