"""Bundles: save/load round trip, provenance, bad bundles, rerun and compare, size."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

import kit
from kit.bundle import SCHEMA_VERSION
from kit.experiment import Experiment, trial_id
from kit.network import Network
from kit.result import TABLES

JITTERY = kit.Scenario(events=8, gap=kit.Gap.uniform(0.002, 0.02), name="jittery")
COIN = kit.Scenario(events=8, gap=0.005, faults=(kit.Reset(after=3),), fault_probability=0.5, name="coin")


@pytest.fixture(scope="module")
def experiment():
    net = Network.from_kwargs(latency="20ms", name="lan")
    return Experiment(scenarios=[JITTERY, COIN], networks=[None, net], policies=[kit.Policy(idle=1)], trials=5, seed=4)


@pytest.fixture(scope="module")
def result(experiment, server):
    return experiment.run(10, server=server, progress=False)


@pytest.fixture()
def saved(result, tmp_path):
    return result.save(tmp_path / "run")


def assert_same(a: kit.Result, b: kit.Result) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True, obj=name)
    assert a.equals(b)


def test_round_trip_is_equal(result, saved):
    loaded = kit.load(saved)
    assert_same(result, loaded)
    assert kit.Experiment.from_dict(loaded.config) == kit.Experiment.from_dict(result.config)
    assert len(loaded.proxy) and set(loaded.proxy["network"]) == {"lan"}
    assert loaded.metrics().equals(result.metrics())


def test_csv_on_request_round_trips(result, tmp_path):
    path = result.save(tmp_path / "csv", format="csv")
    assert sorted(p.name for p in (path / "tables").iterdir()) == sorted(f"{t}.csv" for t in TABLES)
    assert_same(result, kit.load(path))


def test_bundle_json_has_the_provenance(saved, experiment):
    doc = json.loads((saved / "bundle.json").read_text())
    assert doc["format"] == "kit.bundle" and doc["schema_version"] == SCHEMA_VERSION
    for key in ("kit_version", "created_utc", "python", "platform", "packages", "clock_source", "git_commit"):
        assert key in doc, key
    assert doc["clock_source"] == "time.perf_counter_ns"
    assert doc["packages"]["pandas"] == pd.__version__
    assert doc["created_utc"].endswith("Z")
    assert doc["experiment"] == experiment.to_dict()
    assert doc["seeds"]["experiment"] == 4
    assert doc["run"]["concurrency"] == 10 and doc["run"]["trials_done"] == 20
    assert set(doc["tables"]) == set(TABLES)
    files = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert files == {
        ".kit-folder",
        "bundle.json",
        *(f"tables/{t}.parquet" for t in TABLES),
    }  # no pickles, no journal left


def test_existing_path_is_refused(result, saved):
    with pytest.raises(kit.ConfigError, match="exists"):
        result.save(saved)
    result.save(saved, overwrite=True)
    assert kit.load(saved).equals(result)


def test_newer_schema_is_refused(saved):
    doc = json.loads((saved / "bundle.json").read_text())
    doc["schema_version"] = SCHEMA_VERSION + 1
    (saved / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(kit.BundleError, match=r"bundle.json.*newer kit"):
        kit.load(saved)


def test_missing_table_names_the_file(saved):
    (saved / "tables" / "events.parquet").unlink()
    with pytest.raises(kit.BundleError, match=r"tables/events.parquet: missing"):
        kit.load(saved)


def test_corrupt_table_names_the_file(saved):
    f = saved / "tables" / "chunks.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(kit.BundleError, match=r"tables/chunks.parquet: corrupt"):
        kit.load(saved)


def test_unreadable_table_even_with_a_matching_checksum(saved):
    f = saved / "tables" / "trials.parquet"
    f.write_bytes(b"not parquet at all")
    doc = json.loads((saved / "bundle.json").read_text())
    import hashlib

    doc["tables"]["trials"]["sha256"] = hashlib.sha256(b"not parquet at all").hexdigest()
    (saved / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(kit.BundleError, match=r"tables/trials.parquet: cannot read"):
        kit.load(saved)


def test_corrupt_or_missing_manifest(saved, tmp_path):
    (saved / "bundle.json").write_text("{not json")
    with pytest.raises(kit.BundleError, match=r"bundle\.json: corrupt JSON"):
        kit.load(saved)
    with pytest.raises(kit.BundleError, match="no such bundle"):
        kit.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(kit.BundleError, match=r"bundle\.json: missing"):
        kit.load(tmp_path / "empty")


def test_a_table_path_cannot_escape_the_bundle(saved):
    doc = json.loads((saved / "bundle.json").read_text())
    doc["tables"]["trials"]["file"] = "../../etc/passwd"
    (saved / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(kit.BundleError, match="outside the bundle"):
        kit.load(saved)


def test_rerun_and_compare_agree(saved, result):
    again = kit.rerun(saved, progress=False)
    # a generous tolerance: other test runs share this machine's two cores
    # trials the kit itself distorted (a busy machine: an in-process proxy) are left out of the tests
    cmp = kit.compare(saved, again, resolution=0.05)
    assert len(cmp) == 4 * 4  # 4 cells x (outcome + 3 timings)
    assert cmp["agree"].all(), cmp[~cmp["agree"]]
    outcome = cmp[cmp["test"] == "outcome"]
    # the seed decides which COIN trials fail: identical outcomes in both runs
    pd.testing.assert_frame_equal(
        again.trials[["trial_id", "phase", "cause"]], result.trials[["trial_id", "phase", "cause"]]
    )
    assert set(outcome["method"]) <= {"identical", "fisher", "chi2", "n/a"}  # n/a: every trial was flagged
    # where neither run had a trial flagged over the fidelity budget, the same trials are
    # compared and agree exactly; where one had, each run leaves out its own flagged
    # trials, so the two sets differ (the outcomes of every trial are equal, above)
    clean = outcome[(outcome["excluded_a"] == 0) & (outcome["excluded_b"] == 0)]
    assert (clean["p_value"].eq(1.0) | clean["method"].eq("n/a")).all()


def test_compare_leaves_out_trials_the_kit_distorted(result):
    """Trials over the fidelity budget (e.g. a run at a concurrency the machine could not
    keep) are no evidence that two runs differ: compare leaves them out and counts them."""
    faithful = result.tables["trials"].assign(within_budget=True)
    a = kit.Result({**result.tables, "trials": faithful}, result.config, result.meta)
    t = faithful.copy()
    late = t.index[t["scenario"] == "jittery"]
    t.loc[late, ["ttfb_s", "first_chunk_s", "duration_s"]] += 0.5  # the kit's own queueing
    t.loc[late, "within_budget"] = False
    b = kit.Result({**result.tables, "trials": t}, result.config, result.meta)
    cmp = kit.compare(a, b)
    jittery = cmp[cmp["scenario"] == "jittery"]
    assert (jittery["excluded_b"] == 5).all() and (jittery["excluded_a"] == 0).all()
    assert cmp["agree"].all()
    assert not kit.compare(a, b, within_budget=False)["agree"].all()


def test_compare_detects_a_difference(result):
    other = kit.Result({k: v.copy() for k, v in result.tables.items()}, result.config, result.meta)
    t = other.tables["trials"]
    t.loc[t["scenario"] == "jittery", ["phase", "cause", "ok"]] = ["stream", "reset", False]
    t.loc[t["scenario"] == "jittery", "duration_s"] += 0.5
    cmp = kit.compare(result, other, within_budget=False).set_index(["cell", "test"])  # flags aside
    jittery_cells = sorted(set(result.trials.loc[result.trials["scenario"] == "jittery", "cell"]))
    for c in jittery_cells:
        assert cmp.loc[(c, "outcome"), "method"] == "fisher"
        assert cmp.loc[(c, "outcome"), "p_value"] < 0.01 and not cmp.loc[(c, "outcome"), "agree"]
        assert cmp.loc[(c, "duration_s"), "p_value"] < 0.01
        assert cmp.loc[(c, "ttfb_s"), "agree"]


def _synthetic_records(n_trials: int, n_events: int, exp: Experiment) -> list[dict]:
    """Realistic trial records without a server: timing jitter as on a real machine."""
    rng = random.Random(1)
    out = []
    t0 = 10**12
    for i in range(n_trials):
        cell = i % len(exp.cells)
        start = t0 + i * 10_000_000
        a0 = start + 20_000
        h = a0 + rng.randint(200_000, 3_000_000)
        ts, t = [], h
        for _ in range(n_events):
            t += int(rng.uniform(0.015, 0.025) * 1e9)
            ts.append(t)
        rid = f"{rng.getrandbits(64):016x}"
        server = [
            [rid, i, "sc", 1, k, "content_block_delta", 120, tt - 300_000, tt - rng.randint(200_000, 400_000)]
            for k, tt in enumerate(ts)
        ]
        conn = [["connection.connect_tcp.started", a0 + 1000], ["connection.connect_tcp.complete", a0 + 90_000]]
        out.append(
            {
                "trial_id": trial_id(cell, i // len(exp.cells)),
                "cell": cell,
                "trial": i // len(exp.cells),
                "seed": rng.getrandbits(60),
                "url": "http://127.0.0.1:5555/s/x/v1/messages",
                "protocol": "anthropic",
                "start_ns": start,
                "end_ns": ts[-1] + 100_000,
                "attempts": [
                    {
                        "index": 1, "request_id": rid, "method": "POST", "url": "http://127.0.0.1:5555/s/x/v1/messages",
                        "start_ns": a0, "wait_before": 0.0, "connection": conn, "headers_ns": h, "status": 200,
                        "headers": {"content-type": "text/event-stream"}, "framing": "chunked",
                        "chunk_t": ts, "chunk_size": [rng.randint(90, 140) for _ in ts],
                        "event_t": ts, "event_type": ["content_block_delta"] * len(ts), "event_size": [rng.randint(90, 140) for _ in ts],
                        "saw_terminator": True, "end_ns": ts[-1] + 100_000, "phase": "done", "cause": "ok",
                        "message": "", "error": None, "server": server,
                    }
                ],
            }
        )  # fmt: skip
    return out


def test_an_1800_trial_bundle_is_small(tmp_path):
    # 30 trials x 5 first-chunk timeouts x 4 latencies x 3 scenarios = 1,800 streams of 50 events
    exp = Experiment(
        scenarios=["ok", "slow_first_byte", "stall_mid_stream"],
        networks=[None, *(Network.from_kwargs(latency=f"{ms}ms") for ms in (50, 100, 200))],
        policies=[kit.Policy(first_chunk=s) for s in (0.5, 1, 2, 4, 8)],
        trials=30,
    )
    records = _synthetic_records(1800, 50, exp)
    result = exp.result_of(records)
    path = result.save(tmp_path / "big")
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert size < 10 * 1024 * 1024, size
    assert len(kit.load(path).events) == 1800 * 50


def _age(bundle, drop_columns=(), drop_tables=()):
    """Make ``bundle`` look saved by an older kit: without these columns and tables."""
    import hashlib

    doc = json.loads((bundle / "bundle.json").read_text())
    for table, col in drop_columns:
        info = doc["tables"][table]
        file = bundle / info["file"]
        pd.read_parquet(file).drop(columns=[col]).to_parquet(file, index=False)
        del info["columns"][col]
        info["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    for table in drop_tables:
        (bundle / doc["tables"].pop(table)["file"]).unlink()
    (bundle / "bundle.json").write_text(json.dumps(doc))


def test_a_bundle_from_before_request_headers_loads_without_them(result, saved):
    assert result.attempts["request_headers"].notna().all()
    _age(saved, drop_columns=[("attempts", "request_headers")])
    loaded = kit.load(saved)
    assert list(loaded.attempts.columns) == list(result.attempts.columns)
    assert loaded.attempts["request_headers"].isna().all()
    entry = loaded.to_har()["log"]["entries"][0]  # the HAR says only what the kit knows it sent
    assert {h["name"] for h in entry["request"]["headers"]} == {"x-kit-request-id", "x-kit-attempt"}


def test_a_bundle_from_before_payload_bytes_and_local_addresses_loads_without_them(result, saved):
    assert result.server["body_bytes"].notna().all() and result.attempts["local_addr"].notna().all()
    _age(saved, drop_columns=[("server", "body_bytes"), ("attempts", "local_addr")])
    loaded = kit.load(saved)
    assert list(loaded.server.columns) == list(result.server.columns)
    assert list(loaded.attempts.columns) == list(result.attempts.columns)
    assert loaded.attempts["local_addr"].isna().all()
    assert loaded.server["body_bytes"].isna().all() and str(loaded.server["body_bytes"].dtype) == "Int64"
    pd.testing.assert_series_equal(loaded.server["nbytes"], result.server["nbytes"])


def test_a_bundle_from_before_recorded_deadlines_loads_with_none(result, saved):
    assert len(result.deadlines) and result.deadlines["fired"].dtype == bool
    assert kit.load(saved).deadlines.equals(result.deadlines)
    _age(saved, drop_tables=["deadlines"])
    loaded = kit.load(saved)
    assert len(loaded.deadlines) == 0 and list(loaded.deadlines.columns) == list(result.deadlines.columns)
    assert len(loaded.trials) == len(result.trials)
