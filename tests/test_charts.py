"""kit.charts: every chart gives a valid Vega-Lite spec for a Trace, a Result, an empty
table and a 1,000,000-chunk table, within its time budget, and exports PNG/SVG."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import kit
import kit.charts as kc

CHARTS = {
    "timeline": kc.timeline,
    "vantage_points": kc.vantage_points,
    "cumulative_bytes": kc.cumulative_bytes,
    "gaps": kc.gaps,
    "gaps_ecdf_log": lambda d: kc.gaps(d, kind="ecdf", log=True),
    "first_chunk_ecdf": kc.first_chunk_ecdf,
    "ttfb_ecdf": kc.ttfb_ecdf,
    "latency_ecdf": kc.latency_ecdf,
    "outcome_heatmap": kc.outcome_heatmap,
    "attempts_gantt": kc.attempts_gantt,
}


def _spec(chart) -> dict:
    spec = chart.to_dict()  # validates against the Vega-Lite schema; raises MaxRowsError if too big
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    return spec


def _datasets(spec: dict) -> list[list]:
    return [v for v in spec.get("datasets", {}).values()]


def _titles(spec: dict) -> str:
    return repr(spec)


@pytest.fixture(scope="module")
def traces():
    with kit.FaultServer() as server:
        ok = kit.stream(server.url_for("ok"), policy=kit.Policy(first_chunk=1, idle=1))
        slow = kit.stream(server.url_for("slow_first_byte"), policy=kit.Policy(first_chunk=0.3))
        stall = kit.stream(server.url_for("stall_mid_stream"), policy=kit.Policy(idle=0.3))
        close = kit.stream(server.url_for("close_mid_stream"))
    return {"ok": ok, "slow": slow, "stall": stall, "close": close}


@pytest.fixture(scope="module")
def result(traces):
    from kit.result import Result

    return Result.from_traces(list(traces.values()))


def big_result(n_chunks: int = 1_000_000, n_trials: int = 200) -> SimpleNamespace:
    """A Result-shaped object with ``n_chunks`` chunk rows over a 2 x 2 grid."""
    rng = np.random.default_rng(0)
    per = n_chunks // n_trials
    tids = np.array([f"c{i % 4}-t{i}" for i in range(n_trials)])
    gap = rng.exponential(0.01, size=n_chunks)
    trial = np.repeat(np.arange(n_trials), per)
    t = np.cumsum(gap).reshape(n_trials, per)
    t = (t - t[:, :1] + 0.05).ravel()
    size = rng.integers(20, 200, size=n_chunks)
    chunks = pd.DataFrame(
        {
            "trial_id": tids[trial],
            "attempt": 1,
            "request_id": "r",
            "seq": np.tile(np.arange(per), n_trials),
            "t_ns": (t * 1e9).astype("int64"),
            "t": t,
            "t_attempt": t,
            "size": size,
            "cum_bytes": pd.Series(size).groupby(trial).cumsum().to_numpy(),
            "gap": np.where(np.tile(np.arange(per), n_trials) == 0, np.nan, gap),
        }
    )
    ends = chunks.groupby("trial_id", sort=False)["t"].max()
    causes = np.array(["ok", "timeout.first_chunk", "timeout.idle", "closed"])
    attempts = pd.DataFrame(
        {
            "trial_id": tids,
            "attempt": 1,
            "request_id": "r",
            "wait_before": 0.0,
            "start": 0.0,
            "connected": 0.01,
            "headers": 0.02,
            "first_chunk": 0.05,
            "end": ends.reindex(tids).to_numpy(),
            "phase": "done",
            "cause": causes[np.arange(n_trials) % 4],
            "ok": np.arange(n_trials) % 4 == 0,
            "message": "",
        }
    )
    trials = pd.DataFrame(
        {
            "trial_id": tids,
            "cell": np.arange(n_trials) % 4,
            "policy.first_chunk": np.where(np.arange(n_trials) % 2 == 0, 1.0, np.nan),
            "network.latency": np.where(np.arange(n_trials) % 4 < 2, 0.0, 0.2),
            "phase": attempts["phase"],
            "cause": attempts["cause"],
            "ok": attempts["ok"],
            "ttfb_s": 0.02,
            "first_chunk_s": rng.uniform(0.04, 0.06, n_trials),
            "duration_s": ends.reindex(tids).to_numpy(),
        }
    )
    server = pd.DataFrame(
        {"trial_id": tids, "attempt": 1, "kind": "content_block_delta", "nbytes": 100, "t": 0.04, "t_ns": 0}
    )
    return SimpleNamespace(chunks=chunks, attempts=attempts, trials=trials, events=None, server=server, proxy=None)


@pytest.mark.parametrize("name", CHARTS)
def test_chart_of_one_trace(traces, name):
    spec = _spec(CHARTS[name](traces["ok"]))
    assert any(len(d) for d in _datasets(spec))


@pytest.mark.parametrize("name", CHARTS)
def test_chart_of_a_list_of_traces_labels_each(traces, name):
    spec = _spec(CHARTS[name](list(traces.values())))
    if name in ("timeline", "cumulative_bytes", "attempts_gantt"):
        text = repr(spec)
        for label in ("ok", "slow_first_byte", "stall_mid_stream", "close_mid_stream"):
            assert label in text


@pytest.mark.parametrize("name", CHARTS)
def test_chart_of_a_result(result, name):
    _spec(CHARTS[name](result))


@pytest.mark.parametrize("name", CHARTS)
def test_empty_input_gives_a_message_not_an_exception(name):
    empty_result = SimpleNamespace(
        chunks=pd.DataFrame(), attempts=pd.DataFrame(), trials=pd.DataFrame(), server=pd.DataFrame(), events=None
    )
    for data in (pd.DataFrame(), [], empty_result):
        spec = _spec(CHARTS[name](data))
        assert "nothing to draw" in repr(spec)


@pytest.mark.slow
@pytest.mark.parametrize("name", CHARTS)
def test_a_million_chunks_no_max_rows_error_under_5s(name):
    big = test_a_million_chunks_no_max_rows_error_under_5s.big = (
        getattr(test_a_million_chunks_no_max_rows_error_under_5s, "big", None) or big_result()
    )
    assert len(big.chunks) == 1_000_000
    t0 = time.perf_counter()
    spec = _spec(CHARTS[name](big))
    elapsed = time.perf_counter() - t0
    assert all(len(d) <= kc.MAX_ROWS + 500 for d in _datasets(spec))
    assert elapsed < 5.0, f"{name} took {elapsed:.2f}s at 10^6 chunks"


def test_a_bare_million_row_chunks_dataframe():
    big = big_result(1_000_000, 50).chunks
    for f in (kc.timeline, kc.cumulative_bytes, kc.gaps, kc.vantage_points):
        _spec(f(big))


def test_result_fixture_labels_each_trace_with_its_own_cell(result):
    t = result.trials
    assert t["cell"].nunique() == 4
    assert list(t["scenario"]) == ["ok", "slow_first_byte", "stall_mid_stream", "close_mid_stream"]
    assert list(t["policy.first_chunk"].fillna(-1)) == [1.0, 0.3, -1, -1]


def test_timeline_of_a_result_draws_each_trials_own_deadline(result):
    rows = [r for d in _datasets(_spec(kc.timeline(result))) for r in d]
    limits = {r["row"]: (r["seconds"], r["fired"]) for r in rows if r.get("limit") == "first_chunk"}
    # slow_first_byte's own 0.3 s limit fired; ok's 1 s was met (not everyone's the first trace's 1 s)
    assert limits["slow_first_byte #1"] == (0.3, True)
    assert limits.get("ok #1", (1.0, False)) == (1.0, False) and set(limits) <= {"ok #1", "slow_first_byte #1"}


def test_timeline_draws_the_fired_deadline_and_the_fault(traces):
    spec = _spec(kc.timeline([traces["slow"], traces["close"]]))
    rows = [r for d in _datasets(spec) for r in d]
    fired = [r for r in rows if r.get("limit") == "first_chunk" and r.get("status") == "fired"]
    assert (
        fired and abs(fired[0]["t"] - (traces["slow"].attempt.headers_ns - traces["slow"].start_ns) / 1e9 - 0.3) < 1e-6
    )
    assert fired[0]["left"]  # at the right edge its label goes left of the tick (the plot clips it)
    assert any(r.get("kind") == "close" for r in rows)  # the injected FIN
    assert any(r.get("cause") == "timeout.first_chunk" for r in rows)


def _deadline_rows(chart) -> list[dict]:
    return [r for d in _datasets(_spec(chart)) for r in d if "limit" in r]


def test_timeline_draws_the_recorded_deadlines_not_the_policy(result):
    from kit.result import Result

    recorded = result.deadlines
    assert set(recorded["cause"]) >= {"timeout.first_chunk", "timeout.idle"} and recorded["fired"].sum() == 2
    moved = dict(result.tables)
    moved["deadlines"] = recorded.assign(t=recorded["t"] + 0.05)  # a recorded instant the policy cannot give
    drawn = {(r["row"], r["limit"]): r["t"] for r in _deadline_rows(kc.timeline(Result(moved, {}, {})))}
    slow = recorded[recorded["fired"] & (recorded["cause"] == "timeout.first_chunk")].iloc[0]
    assert drawn[("slow_first_byte #1", "first_chunk")] == pytest.approx(slow["t"] + 0.05)
    # without recorded deadlines (an old bundle, an SDK's attempts): none drawn, none guessed from policy.*
    old = dict(result.tables)
    old["deadlines"] = recorded.iloc[:0]
    assert "policy.first_chunk" in result.trials and _deadline_rows(kc.timeline(Result(old, {}, {}))) == []


def test_timeline_draws_no_pending_deadline_of_a_completed_stream(server, traces):
    ok = kit.stream(server.url_for("ok"), policy=kit.Policy(first_chunk=0.2, idle=0.1))
    (idle,) = [d for d in ok.attempt.deadlines if d.cause == "timeout.idle"]  # armed after the last chunk
    assert (idle.at_ns - ok.start_ns) / 1e9 < 2 * ok.duration  # within the drawn horizon, yet not drawn
    rows = _deadline_rows(kc.timeline(ok))
    assert [r["limit"] for r in rows] == ["first_chunk"] and rows[0]["status"].startswith("met")
    stall = _deadline_rows(kc.timeline(traces["stall"]))
    # no first_chunk limit: idle covered the wait for the first byte (met), then fired mid-stream
    assert [(r["limit"], r["status"][:3]) for r in stall] == [("idle", "met"), ("idle", "fir")]


def test_latency_ecdf_defaults_to_end_to_end_latency_not_first_chunk(result):
    default = _spec(kc.latency_ecdf(result, within_budget=False))  # (a busy machine flags trials)
    first = _spec(kc.latency_ecdf(result, metric="first_chunk_s", within_budget=False))
    assert default != first and "end-to-end latency" in _titles(default)
    values = sorted(r["value"] for d in _datasets(default) for r in d)
    assert values == sorted(result.trials["duration_s"])  # every call has a duration, failed ones too


def test_cumulative_bytes_starts_at_zero_and_flat_for_no_chunks(traces):
    spec = _spec(kc.cumulative_bytes([traces["ok"], traces["slow"]]))
    rows = [r for d in _datasets(spec) for r in d]
    slow = [r for r in rows if r.get("trial_id") == "slow_first_byte"]
    assert slow and all(r["cum_bytes"] == 0 for r in slow)
    ok = [r for r in rows if r.get("trial_id") == "ok"]
    assert ok[0]["cum_bytes"] == 0 and max(r["cum_bytes"] for r in ok) == traces["ok"].summary()["bytes"]
    # the attempt that got nothing is named at its dot, lifted off the axis line
    assert [r["label"] for r in rows if "label" in r] == ["slow_first_byte #1: no bytes"]
    assert "1 attempts got no bytes" in _titles(spec)
    assert any(layer["encoding"]["y"].get("scale", {}).get("padding") for layer in spec["layer"] if "encoding" in layer)


def test_outcome_heatmap_shares_and_selection():
    trials = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(8)],
            "policy.first_chunk": [1.0, 1.0, 1.0, 1.0, None, None, None, None],
            "network.latency": [0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5],
            "cause": ["ok", "timeout.first_chunk", "ok", "ok", "ok", "ok", "closed", "closed"],
            "phase": "done",
            "ok": True,
        }
    )
    chart = kc.outcome_heatmap(trials, "policy.first_chunk", "network.latency")
    spec = _spec(chart)
    cells = {(r["x"], r["y"]): r for d in _datasets(spec) for r in d}
    assert cells[("1", "0")]["share"] == 0.5
    assert cells[("none", "0.5")]["outcome"] == "closed" and cells[("none", "0.5")]["share"] == 1.0
    assert "ok 100%" in cells[("1", "0.5")]["shares"]
    assert any(p.get("name") == "cell" for p in spec["params"])
    with pytest.raises(kit.ConfigError):
        kc.outcome_heatmap(trials, "policy.nope")


def test_outcome_heatmap_marks_trials_over_the_fidelity_budget_and_names_direct_as_the_table_does():
    trials = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(8)],
            "network": ["direct"] * 4 + ["lan"] * 4,
            "network.name": [None] * 4 + ["lan"] * 4,
            "policy.first_chunk": [1.0, 1.0, 2.0, 2.0] * 2,
            "cause": ["ok", "timeout.first_chunk", "ok", "ok", "ok", "ok", "ok", "ok"],
            "phase": "done",
            "ok": True,
            "within_budget": [True, False, True, True, True, True, False, False],
        }
    )
    spec = _spec(kc.outcome_heatmap(trials, "policy.first_chunk", "network.name"))
    cells = {(r["x"], r["y"]): r for r in _datasets(spec)[0]}
    assert {y for _, y in cells} == {"direct", "lan"}  # not "none": the trials table calls it direct
    # the flagged timeout is left out of its cell's shares, and the cell says so
    assert cells[("1", "direct")]["outcome"] == "ok" and cells[("1", "direct")]["share"] == 1.0
    assert cells[("1", "direct")]["flagged"] == 1 and cells[("1", "direct")]["note"] == "1 over budget"
    assert cells[("2", "lan")]["text"] == "all 2 over budget" and cells[("2", "lan")]["n"] == 0
    assert cells[("2", "direct")]["flagged"] == 0 and cells[("2", "direct")]["note"] == ""
    assert "3 trials over the kit's fidelity budget left out" in _titles(spec)
    assert '"strokeDash": [4, 3]' in json.dumps(spec)  # the dashed outline of the flagged cells
    mixed = {
        (r["x"], r["y"]): r
        for r in _datasets(
            _spec(kc.outcome_heatmap(trials, "policy.first_chunk", "network.name", within_budget=False))
        )[0]
    }
    assert mixed[("1", "direct")]["share"] == 0.5 and mixed[("1", "direct")]["flagged"] == 1


def test_attempts_gantt_shows_backoff_waits():
    att = pd.DataFrame(
        {
            "trial_id": ["a", "a", "a"],
            "attempt": [1, 2, 3],
            "wait_before": [0.0, 0.5, 1.0],
            "start": [0.0, 0.6, 1.7],
            "end": [0.1, 0.7, 2.0],
            "cause": ["http_status", "http_status", "ok"],
            "phase": ["headers", "headers", "done"],
        }
    )
    spec = _spec(kc.attempts_gantt(att))
    waits = [r for d in _datasets(spec) for r in d if "wait_start" in r]
    assert [round(w["wait_start"], 3) for w in waits] == [0.1, 0.7]


def test_vantage_points_with_and_without_a_proxy_log(traces):
    spec = _spec(kc.vantage_points(traces["ok"]))
    assert "no proxy log" in repr(spec)
    tr = traces["ok"]
    fake_proxy = pd.DataFrame(
        {
            "conn": 0,
            "direction": "downstream",
            "t_sent_ns": tr.chunks["t_ns"] - 1000,
            "nbytes": tr.chunks["size"],
        }
    )
    spec = _spec(kc.vantage_points(tr, fake_proxy))
    layers = {r["layer"] for d in _datasets(spec) for r in d if "layer" in r}
    assert layers == {"server sent", "proxy forwarded", "client received"}


def test_bad_input_is_a_config_error():
    with pytest.raises(kit.ConfigError):
        kc.timeline(42)
    with pytest.raises(kit.ConfigError):
        kc.gaps(pd.DataFrame(), kind="violin")


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_save_writes_a_static_image(traces, tmp_path, suffix):
    path = kc.save(kc.timeline(list(traces.values())), tmp_path / f"timeline{suffix}")
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:200]
    with pytest.raises(kit.ConfigError):
        kc.save(kc.timeline(traces["ok"]), tmp_path / "x.gif")


def test_import_changes_no_renderer_and_enable_offline_does():
    import subprocess
    import sys

    code = (
        "import altair as alt; import kit.charts as kc; a = alt.renderers.active; "
        "kc.enable_offline(); print(a, alt.renderers.active)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["default", "jupyter"]


def test_heatmap_shows_every_varying_dimension():
    rows = [
        {"trial_id": f"{fc}-{lat}-{r}-{i}", "policy.first_chunk": fc, "network.latency": lat, "policy.max_retries": r}
        | {"policy.name": f"retries {r}", "cause": "ok" if r else "ended", "phase": "done", "ok": bool(r)}
        for fc in (0.5, 1.0)
        for lat in (0.0, 0.3)
        for r in (0, 2)
        for i in range(2)
    ]
    tr = pd.DataFrame(rows)
    cells = _datasets(_spec(kc.outcome_heatmap(tr)))[0]
    assert len(cells) == 8  # 2 x 2 x 2: the third dimension is named on the rows, not pooled
    assert {c["share"] for c in cells} == {1.0}
    assert "pooled over policy.max_retries" in _titles(
        _spec(kc.outcome_heatmap(tr, "policy.first_chunk", "network.latency"))
    )


def test_a_label_keeps_its_colour_across_charts_with_different_series(traces):
    def colours(chart) -> dict[str, str]:
        spec = _spec(chart)
        scales = [
            layer["encoding"]["color"]["scale"]
            for layer in spec.get("layer", [spec])
            if "scale" in layer.get("encoding", {}).get("color", {})
        ]
        return dict(zip(scales[0]["domain"], scales[0]["range"], strict=True))

    every = colours(kc.cumulative_bytes([traces["ok"], traces["slow"], traces["stall"], traces["close"]]))
    some = colours(kc.cumulative_bytes([traces["stall"], traces["close"]]))
    assert len(set(every.values())) == 4 and all(every[k] == v for k, v in some.items())
    mine = kc.color_scale(["close_mid_stream", "ok"])  # for a notebook's own altair chart
    assert mine.to_dict()["range"] == [every["close_mid_stream"], every["ok"]]
