"""Secrets never reach a saved file: plant a fake key everywhere one can be, look for it in every byte."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd

import kit
from kit.experiment import trace_record

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
    (tmp_path / "journal.jsonl").write_text(json.dumps(trace_record(trace, "x", 0, 0, 0)))
    kit.from_har(tmp_path / "har" / "trace.har").save(tmp_path / "from-har")
    try:
        from kit.report import write_report

        write_report(result, tmp_path / "report.html")
    except ImportError:
        pass
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
