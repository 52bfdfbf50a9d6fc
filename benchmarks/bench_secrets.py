"""Secret scan: plant secrets everywhere a run can see them, then search every output for them.

    .venv/bin/python benchmarks/bench_secrets.py

Planted: request headers (``authorization``, ``x-api-key``, ``cookie``, and a custom
``x-team-token`` no deny-list knows), URL query values (``session``, ``jwt``, ``key``,
``AWSAccessKeyId``), URL userinfo, ``set-cookie`` and a key in the fault server's error
responses, and an upstream that reflects the request (its headers quoted in a 401 body,
``x-echo-*`` headers, a bad status line quoting the request line). Outputs of the run: a
bundle (Parquet and CSV), an experiment run folder, HARs (trace and result), a HAR
re-imported and saved, the journal record of a trace, the HTML report, and SDK-style calls
recorded by ``kit.instrument``. Every byte of every file is searched for each secret (raw,
URL-encoded, and inside decoded Parquet values). Prints the number of hits (target: 0).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pandas as pd

import kit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _upstream import reflector

SECRETS = {
    "authorization": "sk-ant-api03-PLANTEDKEY0123456789abcdef",
    "x-api-key": "plantedapikey-7c1e55d0",
    "cookie": "plantedcookie-1b2f9a44",
    "x-team-token": "plantedteamtoken-93ad7e10",
    "session": "plantedsession-5d0c8e2b",
    "jwt": "eyJplanted.jwtpayload.sig4411",
    "key": "plantedquerykey-66f2a1c9",
    "AWSAccessKeyId": "AKIAPLANTED00112233",
    "userinfo": "planteduserpass-0a9b8c7d",
    "set-cookie": "plantedsetcookie-2e4f6a8b",
}
HEADERS = {
    "authorization": f"Bearer {SECRETS['authorization']}",
    "x-api-key": SECRETS["x-api-key"],
    "cookie": f"session={SECRETS['cookie']}",
    "x-team-token": SECRETS["x-team-token"],
}
QUERY = "&".join(f"{k}={SECRETS[k]}" for k in ("session", "jwt", "key", "AWSAccessKeyId"))


def needles() -> set[str]:
    out = set()
    for v in SECRETS.values():
        out |= {v, quote(v), quote_plus(v), v[4:-4]}
    return out


def produce(root: Path) -> None:
    """Run everything that writes files into ``root``."""
    refusal = kit.HttpStatus(  # the fault server quotes a key and sets a cookie
        status=429,
        message=f"invalid x-api-key {SECRETS['authorization']}",
        headers=(("set-cookie", f"s={SECRETS['set-cookie']}"),),
    )
    leaky = kit.Scenario(events=5, gap=0.0, name="leaky", attempts=(kit.Scenario(faults=(refusal,)),))
    policy = kit.Policy(max_retries=1, backoff_initial=0.01)
    traces = []
    with kit.FaultServer() as server:
        exp = kit.Experiment(scenarios=[leaky, "ok"], policies=[policy], trials=3, seed=1, headers=HEADERS)
        result = exp.run(4, server=server, out=root / "run", progress=False)
        url = server.url_for(leaky).replace("http://", f"http://user:{SECRETS['userinfo']}@")
        traces.append(kit.stream(f"{url}/v1/messages?{QUERY}", headers=HEADERS, policy=policy))
        traces.append(kit.stream(f"{server.url}/v1/messages?{QUERY}", headers=HEADERS))  # a 404 for no scenario
    for mode in ("body", "status_line"):
        with reflector(mode) as up:
            traces.append(kit.stream(f"{up.url}/v1/messages?{QUERY}", headers=HEADERS))
            with httpx.Client() as client:
                rec = kit.instrument(client)
                try:
                    client.post(f"{up.url}/v1/messages?{QUERY}", headers=HEADERS, json={})
                except httpx.HTTPError:
                    pass
                traces.extend(rec.traces)
    single = kit.Result.from_traces(traces)
    single.save(root / "calls")
    single.save(root / "calls-csv", format="csv")
    result.save(root / "run-csv", format="csv")
    result.to_har(root / "run.har")
    for i, t in enumerate(traces):
        t.to_har(root / f"trace{i}.har")
        (root / f"journal{i}.jsonl").write_text(json.dumps(t.to_record(f"t{i}").to_dict(), default=str))
    kit.from_har(root / "trace0.har").save(root / "from-har")
    result.report(root / "report.html")


def scan(root: Path) -> tuple[int, int, int, list[str]]:
    """Files, bytes and hits (with where) of every planted secret under ``root``."""
    files = bytes_ = 0
    hits: list[str] = []
    search = needles()
    for f in sorted(Path(root).rglob("*")):
        if not f.is_file():
            continue
        data = f.read_bytes()
        files += 1
        bytes_ += len(data)
        text = data.decode("latin-1")
        if f.suffix == ".parquet":
            text += pd.read_parquet(f).astype(str).to_csv()
        hits += [f"{n!r} in {f.relative_to(root)}" for n in search if n in text]
    return files, bytes_, len(hits), hits


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kit-secrets-") as tmp:
        root = Path(tmp)
        produce(root)
        files, nbytes, n_hits, hits = scan(root)
        control = root.parent / (root.name + "-control")
        control.mkdir()
        (control / "leak.txt").write_text(f"x-api-key: {quote(SECRETS['x-api-key'])}")  # the scan must see this
        control_hits = scan(control)[2]
        (control / "leak.txt").unlink()
        control.rmdir()
    print(f"secret scan: {len(SECRETS)} secrets planted ({len(needles())} search strings incl. encoded forms)")
    print(f"  {files} files, {nbytes:,} bytes scanned (Parquet values decoded too) in {time.perf_counter() - t0:.1f}s")
    print(f"  hits: {n_hits}   (control: a planted leak file gives {control_hits} hit(s), so the scan sees leaks)")
    for h in hits[:20]:
        print("   ", h)


if __name__ == "__main__":
    main()
