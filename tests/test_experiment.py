"""Experiment: grids, derived seeds, replay, bounded concurrency, interrupts."""

from __future__ import annotations

import _thread
import asyncio
import json
import threading
import time

import pandas as pd
import pytest

import kit
from kit.experiment import JOURNAL, Experiment, trial_seed
from kit.network import Network

JITTERY = kit.Scenario(events=8, gap=kit.Gap.uniform(0.002, 0.03), name="jittery")
# faults on about half the trials, decided per trial from the seed
COIN = kit.Scenario(events=8, gap=0.005, faults=(kit.Close(after=4),), fault_probability=0.5, name="coin")


def schedule(result: kit.Result) -> pd.DataFrame:
    """Each server write's planned offset from its response's headers (exact plan times, ns)."""
    s = result.server
    s = s[s["kind"] != "request"]
    head = s[s["kind"] == "headers"].set_index("request_id")["t_ns"]
    out = s.assign(offset=s["scheduled_ns"] - s["request_id"].map(head))
    return out[out["kind"] != "headers"][["trial_id", "seq", "kind", "offset"]].reset_index(drop=True)


def test_grid_is_the_product_with_labels():
    exp = Experiment(
        scenarios=[JITTERY, "headers_then_close"],
        policies=[kit.Policy(first_chunk=1), kit.Policy(first_chunk=2)],
        trials=3,
    )
    assert len(exp.cells) == 4 and len(exp) == 12
    assert [c.scenario_label for c in exp.cells] == ["jittery", "jittery", "headers_then_close", "headers_then_close"]
    assert [c.policy_label for c in exp.cells] == ["first_chunk=1s", "first_chunk=2s"] * 2
    assert exp.cells[0].network is None and exp.cells[0].network_label == "direct"


def test_same_labels_are_made_unique():
    a, b = kit.Scenario(first_byte_delay=0.1), kit.Scenario(first_byte_delay=0.2)
    exp = Experiment(scenarios=[a, b])
    labels = [c.scenario_label for c in exp.cells]
    assert len(set(labels)) == 2 and "first_byte_delay=0.1" in labels[0]


def test_config_round_trips_through_json():
    exp = Experiment(
        scenarios=[JITTERY, COIN, "slow_first_byte"],
        networks=[None, Network.from_kwargs(latency="50ms")],
        policies=[kit.Policy(idle=1)],
        trials=2,
        seed=11,
        name="rt",
    )
    again = Experiment.from_dict(json.loads(json.dumps(exp.to_dict())))
    assert again == exp
    assert [c.key for c in again.cells] == [c.key for c in exp.cells]
    cells = Experiment(cells=[(JITTERY, None, kit.Policy()), {"scenario": "ok", "policy": {"idle": 2}}], trials=1)
    assert Experiment.from_dict(json.loads(json.dumps(cells.to_dict()))) == cells


def test_toml_style_entries():
    exp = Experiment.from_dict(
        {
            "scenarios": ["ok", {"preset": "slow_first_byte", "first_byte_delay": 0.5}],
            "networks": ["direct", {"latency": "100ms"}],
            "policies": [{"first_chunk": "250ms"}],
            "trials": 2,
        }
    )
    assert exp.scenarios[1].first_byte_delay == 0.5 and exp.scenarios[1].name == "slow_first_byte"
    assert exp.networks[0] is None and exp.networks[1].toxics[0].latency == 0.1
    assert exp.policies[0].first_chunk == 0.25


def test_bad_input():
    with pytest.raises(kit.ConfigError, match=r"polices.*did you mean 'policies'"):
        Experiment.from_dict({"scenarios": ["ok"], "polices": []})
    with pytest.raises(kit.ConfigError, match="0 cells"):
        Experiment(scenarios=[])
    with pytest.raises(kit.ConfigError, match="0 cells"):
        Experiment(scenarios=["ok"], policies=[])
    for bad in (0, -3, 1.5, True):
        with pytest.raises(kit.ConfigError, match="trials"):
            Experiment(scenarios=["ok"], trials=bad)
    with pytest.raises(kit.ConfigError, match="scenario field"):
        Experiment.from_dict({"scenarios": [{"evnts": 3}]})
    with pytest.raises(kit.ConfigError, match="concurrency"):
        Experiment(scenarios=["ok"]).run(0)


def test_seeds_are_derived_from_content_not_position():
    exp = Experiment(scenarios=[JITTERY], policies=[kit.Policy()], trials=2, seed=5)
    bigger = Experiment(scenarios=[JITTERY], policies=[kit.Policy(idle=9), kit.Policy()], trials=2, seed=5)
    key = exp.cells[0].conditions_key
    assert exp.seed_of("c000-t0001") == bigger.seed_of("c001-t0001") == trial_seed(5, key, 1)
    assert exp.seed_of("c000-t0000") != exp.seed_of("c000-t0001")
    assert Experiment(scenarios=[JITTERY], trials=2, seed=6).seed_of("c000-t0000") != exp.seed_of("c000-t0000")


def test_policies_meet_the_same_draws():
    """Common random numbers: under one scenario, trial t of every policy sees the same outage."""
    outage = kit.Scenario.preset("empty_200", fault_probability=0.5, events=3, gap=0)
    policies = [kit.Policy(name="a"), kit.Policy(name="b", first_chunk=5)]
    result = Experiment(scenarios=[outage], policies=policies, trials=30, seed=3).run(progress=False)
    t = result.trials
    a = t[t["policy"] == "a"].sort_values("trial")["cause"].tolist()
    b = t[t["policy"] == "b"].sort_values("trial")["cause"].tolist()
    assert a == b and {"ok", "ended"} <= set(a)


def test_same_seed_same_timings_and_outcomes(server):
    exp = Experiment(scenarios=[JITTERY, COIN], trials=12, seed=42)
    a = exp.run(8, server=server, progress=False)
    b = Experiment.from_dict(exp.to_dict()).run(8, server=server, progress=False)
    pd.testing.assert_frame_equal(schedule(a), schedule(b))
    cols = ["trial_id", "seed", "phase", "cause", "ok", "chunks", "events"]
    pd.testing.assert_frame_equal(a.trials[cols], b.trials[cols])
    coin = a.trials[a.trials["scenario"] == "coin"]
    assert 0 < coin["ok"].sum() < len(coin)  # the seed really decides per trial
    c = Experiment(scenarios=[JITTERY, COIN], trials=12, seed=43).run(8, server=server, progress=False)
    assert not schedule(a)["offset"].equals(schedule(c)["offset"])


def test_a_trial_replayed_alone_matches_its_row(server):
    exp = Experiment(scenarios=[JITTERY, COIN], trials=6, seed=9)
    result = exp.run(6, server=server, progress=False)
    for tid in ("c000-t0003", "c001-t0000", "c001-t0005"):
        trace = exp.replay(tid)
        row = result.trials.set_index("trial_id").loc[tid]
        assert (trace.outcome.phase, trace.outcome.cause) == (row["phase"], row["cause"])
        alone = kit.Result.from_traces([trace], ids=[tid])
        mine = schedule(result)
        pd.testing.assert_frame_equal(
            schedule(alone).drop(columns="trial_id"),
            mine[mine["trial_id"] == tid].drop(columns="trial_id").reset_index(drop=True),
        )
    with pytest.raises(kit.ConfigError, match="trial_id"):
        exp.replay("c009-t0000")


def test_replay_meets_the_network_draws_of_its_trial(server):
    # which connections a toxic hits is keyed by trial and attempt, not by the order in
    # which the proxy accepted connections (which concurrency and keep-alive shuffle)
    flaky = Network([kit.network.ResetPeer(toxicity=0.5), kit.network.Latency(0.002, jitter=0.002, toxicity=0.5)])
    exp = Experiment(scenarios=[kit.Scenario(events=3, gap=0.002)], networks=[flaky], trials=10, seed=5)
    result = exp.run(4, server=server, progress=False)
    causes = dict(zip(result.trials["trial_id"], result.trials["cause"], strict=True))
    assert 0 < list(causes.values()).count("reset") < len(causes)  # the roll really decides per trial
    replayed = {tid: exp.replay(tid, server=server).outcome.cause for tid in causes}
    assert replayed == causes


def test_concurrency_is_bounded_and_pays_off(server):
    slow = kit.Scenario(events=2, first_byte_delay=0.2, gap=0.0, name="slow")
    exp = Experiment(scenarios=[slow], trials=12, seed=1)
    t0 = time.perf_counter()
    result = exp.run(4, server=server, progress=False)
    wall = time.perf_counter() - t0
    t = result.trials
    starts, ends = t["start_ns"].to_numpy(), (t["start_ns"] + t["duration_s"] * 1e9).to_numpy()
    in_flight = max(((starts <= s) & (ends > s)).sum() for s in starts)
    assert in_flight <= 4
    assert t["ok"].all()
    assert wall < 12 * 0.2 * 0.75  # clearly concurrent (sequential would take 2.4 s)


def test_run_works_inside_a_running_loop(server):
    exp = Experiment(scenarios=["ok"], trials=3)

    async def notebook_cell():
        return exp.run(3, server=server, progress=False)  # sync call inside a running loop, like Jupyter

    result = asyncio.run(notebook_cell())
    assert len(result.trials) == 3 and result.trials["ok"].all()


def test_arun_in_async_code(server):
    result = asyncio.run(Experiment(scenarios=["ok"], trials=2).arun(2, server=server, progress=False))
    assert list(result.trials["trial_id"]) == ["c000-t0000", "c000-t0001"]


def test_trials_are_journalled_as_they_finish(server, tmp_path):
    out = tmp_path / "run"
    exp = Experiment(scenarios=[kit.Scenario(events=2, first_byte_delay=0.1, gap=0)], trials=30, seed=2)

    async def cancel_midway():
        task = asyncio.ensure_future(exp.arun(3, out=out, server=server, progress=False))
        while not (out / JOURNAL).exists() or len((out / JOURNAL).read_text().splitlines()) < 6:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    partial = exp.last_result
    assert 6 <= len(partial.trials) < 30 and not partial.complete
    saved = kit.load(out)  # the finished trials were saved as a bundle on the way out
    pd.testing.assert_frame_equal(saved.trials, partial.trials)
    assert saved.meta["interrupted"] is True


def test_ctrl_c_keeps_finished_trials(server, tmp_path):
    exp = Experiment(scenarios=[kit.Scenario(events=2, first_byte_delay=0.1, gap=0)], trials=40, seed=3)
    timer = threading.Timer(0.6, _thread.interrupt_main)  # what Ctrl-C (or a kernel interrupt) does
    timer.start()
    with pytest.warns(UserWarning, match="interrupted: kept"):
        result = exp.run(2, out=tmp_path / "run", server=server, progress=False)
    timer.join()
    assert 2 <= len(result.trials) < 40 and not result.complete
    assert result.trials["ok"].all()  # trials in flight were dropped, not recorded as cancelled
    assert len(kit.load(tmp_path / "run").trials) == len(result.trials)


def test_a_crash_leaves_a_recoverable_journal(server, tmp_path):
    from kit.experiment import CONFIG_FILE, trial_id

    exp = Experiment(scenarios=[kit.Scenario(events=3, gap=0.0)], trials=4, seed=3)
    done = exp.run(2, server=server, progress=False)
    # a crash mid-run leaves the config and the journal, and no bundle.json
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / CONFIG_FILE).write_text(json.dumps(exp.to_dict()))
    lines = []
    for t in range(4):
        tid = trial_id(0, t)
        trace = kit.stream(server.url_for(exp.cells[0].scenario), trial=str(exp.seed_of(tid)))
        lines.append(json.dumps(trace.to_record(tid, 0, t, exp.seed_of(tid)).to_dict()))
    (crashed / JOURNAL).write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # the last line half-written
    with pytest.raises(kit.BundleError, match="recover=True"):
        kit.load(crashed)
    with pytest.warns(UserWarning, match="half-written"):
        rec = kit.load(crashed, recover=True)
    assert len(rec.trials) == 3 and not rec.complete
    assert list(rec.trials.columns) == list(done.trials.columns)
    pd.testing.assert_frame_equal(rec.trials[["trial_id", "seed"]], done.trials[["trial_id", "seed"]].iloc[:3])


def test_existing_output_folder_is_refused(server, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    exp = Experiment(scenarios=["ok"], trials=1)
    with pytest.raises(kit.ConfigError, match="exists"):
        exp.run(1, out=out, server=server, progress=False)
    with pytest.raises(kit.ConfigError, match="not written by kit"):
        exp.run(1, out=out, overwrite=True, server=server, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    exp.run(1, out=tmp_path / "fresh", server=server, progress=False)
    exp.run(1, out=tmp_path / "fresh", overwrite=True, server=server, progress=False)
    assert len(kit.load(tmp_path / "fresh").trials) == 1


def test_networks_go_through_one_proxy_each(server):
    net = Network.from_kwargs(latency="60ms", name="slow")
    exp = Experiment(scenarios=[kit.Scenario(events=3, gap=0.0)], networks=[None, net], trials=4, seed=1)
    result = exp.run(4, server=server, progress=False)
    t = result.trials.set_index("network")
    assert (t.loc["slow", "ttfb_s"] >= 0.06).all()  # the proxy delays the headers by its latency
    assert t.loc["slow", "ttfb_s"].median() > t.loc["direct", "ttfb_s"].median() + 0.03
    assert set(result.proxy["network"]) == {"slow"} and (result.proxy["nbytes"] > 0).any()
    assert result.trials.loc[result.trials["network"] == "slow", "network.latency"].eq(0.06).all()
