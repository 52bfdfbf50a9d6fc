"""Result: the column contract, agreement with Trace views, streaming metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kit
from kit.tables import CALL_METRICS, STREAM_METRICS, TRIAL_HEAD, TRIAL_TAIL

STEADY = kit.Scenario(events=10, gap=0.02, name="steady")


@pytest.fixture(scope="module")
def result(server):
    exp = kit.Experiment(
        scenarios=[STEADY, "headers_then_close"],
        policies=[kit.Policy(), kit.Policy(first_chunk=2)],
        trials=4,
        seed=1,
    )
    return exp.run(8, server=server, progress=False)


def test_trials_columns(result):
    t = result.trials
    assert len(t) == 16 and t["trial_id"].is_unique
    cols = list(t.columns)
    assert cols[: len(TRIAL_HEAD)] == list(TRIAL_HEAD)
    assert cols[-len(TRIAL_TAIL) :] == list(TRIAL_TAIL)
    assert {"scenario.events", "scenario.gap.value", "policy.first_chunk"} <= set(cols)
    assert t.loc[t["policy"] == "first_chunk=2s", "policy.first_chunk"].eq(2.0).all()
    assert str(t["trial_id"].dtype) == "str" and t["ok"].dtype == bool and t["attempts"].dtype == "int64"
    steady = t[t["scenario"] == "steady"]
    assert steady["ok"].all() and (steady["attempts"] == 1).all()
    broken = t[t["scenario"] == "headers_then_close"]
    assert set(broken["cause"]) == {"closed"} and not broken["ok"].any()


def test_tables_match_the_trace_views(server):
    trace = kit.stream(server.url_for(STEADY))
    r = kit.Result.from_traces([trace], ids=["one"])
    for name, view in (("chunks", trace.chunks), ("events", trace.events), ("connection", trace.connection)):
        mine = r.tables[name].drop(columns="trial_id")
        assert list(mine.columns) == list(view.columns), name
        pd.testing.assert_frame_equal(mine, view, check_dtype=False, obj=name)
    server_view = trace.server
    pd.testing.assert_frame_equal(r.server.drop(columns="trial_id"), server_view, check_dtype=False)
    a = r.attempts.drop(columns="trial_id")[list(trace.attempts_df.columns)]
    pd.testing.assert_frame_equal(a, trace.attempts_df, check_dtype=False)
    s = trace.summary()
    row = r.trials.iloc[0]
    assert list(s.index) == list(CALL_METRICS)
    for k in CALL_METRICS:
        assert row[k] == pytest.approx(s[k]), k


def test_metrics(result):
    m = result.metrics(within_budget=False)  # the definitions, whatever the machine's load did
    assert set(m["metric"]) == set(STREAM_METRICS)
    assert list(m.columns[-6:]) == ["n", "mean", "p50", "p90", "p99", "max"]
    for name in STREAM_METRICS:  # every metric is defined in the docstring
        assert f"``{name}``" in kit.Result.metrics.__doc__
    steady = m[(m["scenario"] == "steady") & (m["policy"] == "no limits")].set_index("metric")
    gap = steady.loc["inter_chunk_gap_s"]
    assert gap["p50"] == pytest.approx(0.02, abs=0.01)
    assert gap["p50"] <= gap["p90"] <= gap["p99"] <= gap["max"]
    assert steady.loc["e2e_s", "p50"] > steady.loc["first_chunk_s", "p50"] >= steady.loc["ttfb_s", "p50"]
    assert steady.loc["tpot_s", "n"] == 4 and steady.loc["tpot_s", "p50"] == pytest.approx(0.02, abs=0.01)
    broken = m[m["scenario"] == "headers_then_close"].set_index(["policy", "metric"])
    assert broken["ok_rate"].eq(0).all()
    assert broken.loc[("no limits", "first_chunk_s"), "n"] == 0 and np.isnan(
        broken.loc[("no limits", "first_chunk_s"), "p50"]
    )
    ok = result.metrics(ok_only=True, within_budget=False)
    assert ok[ok["scenario"] == "headers_then_close"]["n"].eq(0).all()


def test_outcomes_table(result):
    o = result.outcomes()
    assert o.loc[("steady", "direct", "no limits"), "done/ok"] == 4
    assert o.loc[("headers_then_close", "direct", "no limits")].filter(like="closed").sum() == 4


def test_repr_and_experiment(result):
    assert "16 trials in 4 cells, 8 ok" in repr(result)
    assert result.complete
    assert kit.Experiment.from_dict(result.config).trials == 4 and len(result.cells) == 4


def test_from_traces_gives_each_scenario_and_policy_its_own_cell(server):
    a = kit.stream(server.url_for(STEADY), policy=kit.Policy(first_chunk=1))
    b = kit.stream(server.url_for("headers_then_close"), policy=kit.Policy(first_chunk=0.3))
    c = kit.stream(server.url_for(STEADY), policy=kit.Policy(first_chunk=1))
    r = kit.Result.from_traces([a, b, c], ids=["a", "b", "c"])
    t = r.trials.set_index("trial_id")
    assert t.loc["a", "cell"] == t.loc["c", "cell"] != t.loc["b", "cell"]
    assert list(t.loc[["a", "b", "c"], "scenario"]) == ["steady", "headers_then_close", "steady"]
    assert list(t.loc[["a", "b", "c"], "policy.first_chunk"]) == [1.0, 0.3, 1.0]
    assert t.loc["b", "policy"] == "first_chunk=0.3s" and t.loc["b", "cause"] == "closed"
    assert list(t.loc[["a", "c"], "trial"]) == [0, 1]
    assert len(r.cells) == 2 and set(r.cells["scenario"]) == {"steady", "headers_then_close"}
    # the same cell content gets the same key as in an experiment
    exp = kit.Experiment(cells=[(STEADY, None, kit.Policy(first_chunk=1))])
    assert r.meta["cells"][0]["key"] == exp.cells[0].key


def test_select_keeps_the_rows_of_the_chosen_trials(result):
    ids = list(result.trials["trial_id"].iloc[[0, 5]])
    sub = result.select(ids)
    assert list(sub.trials["trial_id"]) == ids
    for name in ("attempts", "chunks", "events", "server", "connection"):
        assert set(sub.tables[name]["trial_id"]) <= set(ids), name
        assert len(sub.tables[name]) == result.tables[name]["trial_id"].isin(ids).sum(), name
    assert sub.complete and sub.config == result.config
    assert {c["cell"] for c in sub.meta["cells"]} == set(sub.trials["cell"])
    assert len(result.select([]).trials) == 0


def test_trace_record_round_trips(server):
    import json

    trace = kit.stream(server.url_for(STEADY))
    rec = trace.to_record("x", 2, 3, 4)
    again = kit.records.TrialRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec and all(isinstance(e, kit.records.ServerLogEntry) for e in again.attempts[0].server)
    back = kit.Trace.from_record(again)
    assert back.outcome == trace.outcome and back.label == "x"
    for name in ("chunks", "events", "server", "connection", "attempts_df"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(trace, name), obj=name)
