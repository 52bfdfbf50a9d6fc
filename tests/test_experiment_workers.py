"""Experiments on worker processes: executors, Dask, interrupts, a worker that dies."""

from __future__ import annotations

import _thread
import concurrent.futures as cf
import json
import multiprocessing
import os
import signal
import sys
import threading
import time

import pandas as pd
import pytest

import kit
from kit.experiment import JOURNAL, PARTS, Experiment

JITTERY = kit.Scenario(events=6, gap=kit.Gap.uniform(0.002, 0.02), name="jittery")
# faults on about half the trials, decided per trial from the seed
COIN = kit.Scenario(events=6, gap=0.004, faults=(kit.Close(after=3),), fault_probability=0.5, name="coin")
SAME = ["trial_id", "seed", "phase", "cause", "ok", "chunks", "events", "bytes"]


def schedule(result: kit.Result) -> pd.DataFrame:
    """Each server write's planned offset from its response's headers (exact plan times, ns)."""
    s = result.server
    s = s[s["kind"] != "request"]
    head = s[s["kind"] == "headers"].set_index("request_id")["t_ns"]
    out = s.assign(offset=s["scheduled_ns"] - s["request_id"].map(head))
    out = out[out["kind"] != "headers"][["trial_id", "seq", "kind", "offset"]]
    return out.sort_values(["trial_id", "seq"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def grid():
    return Experiment(scenarios=[JITTERY, COIN], trials=8, seed=21)


@pytest.fixture(scope="module")
def alone(grid):
    """The single-process reference: clients in this process, one isolated server."""
    return grid.run(workers=0, progress=False)


def assert_same_trials(a: kit.Result, b: kit.Result) -> None:
    pd.testing.assert_frame_equal(a.trials[SAME], b.trials[SAME])
    pd.testing.assert_frame_equal(schedule(a), schedule(b))
    for name in kit.result.TABLES[:-1]:  # every table but the proxies' logs: same columns and dtypes
        assert dict(a.tables[name].dtypes) == dict(b.tables[name].dtypes), name
    for name in ("attempts", "events"):  # rows per trial in the same order (socket reads and connection events vary)
        pd.testing.assert_series_equal(a.tables[name]["trial_id"], b.tables[name]["trial_id"], obj=name)


def test_default_run_uses_worker_processes(grid, alone):
    result = grid.run(progress=False)
    assert result.meta["executor"].startswith("local processes") and result.meta["workers"] >= 1
    assert result.meta["streamed"] == len(grid)  # the kit's own pool streams each trial as it finishes
    assert result.complete and len(result.trials) == len(grid)
    assert_same_trials(alone, result)
    coin = result.trials[result.trials["scenario"] == "coin"]
    assert 0 < coin["ok"].sum() < len(coin)  # the seed decides per trial, in every process alike
    assert result.meta["concurrency_mode"] == "adaptive" and result.meta["concurrency"] >= 1


def test_a_process_pool_executor_equals_one_process(grid, alone):
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        result = grid.run(executor=ex, progress=False)
    assert "ProcessPoolExecutor" in result.meta["executor"]
    assert result.meta["streamed"] == 0  # every trial came back in a Parquet part
    assert_same_trials(alone, result)


@pytest.mark.slow
def test_a_dask_local_cluster_equals_one_process(grid, alone):
    distributed = pytest.importorskip("distributed")  # the dev extra installs it
    with (
        distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = grid.run(executor=client, progress=False)
    assert result.meta["executor"].startswith("dask") and len(result.meta["concurrency_by_worker"]) >= 1
    assert result.meta["streamed"] == 0
    assert_same_trials(alone, result)


def test_ctrl_c_keeps_every_finished_trial_and_the_bundle_loads(tmp_path):
    out = tmp_path / "run"
    exp = Experiment(scenarios=[kit.Scenario(events=2, first_byte_delay=0.1, gap=0)], trials=60, seed=3)

    seen: set[str] = set()

    def interrupt_when_started() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / JOURNAL).exists():
                lines = (out / JOURNAL).read_text().splitlines()
                if len(lines) >= 5:
                    seen.update(json.loads(line)["trial_id"] for line in lines[:-1])
                    break
            time.sleep(0.02)
        _thread.interrupt_main()  # what Ctrl-C (or a kernel interrupt) does

    watcher = threading.Thread(target=interrupt_when_started, daemon=True)
    watcher.start()
    with pytest.warns(UserWarning, match="interrupted: kept"):
        result = exp.run(4, out=out, progress=False)
    watcher.join()
    assert 5 <= len(result.trials) < 60 and not result.complete
    assert result.trials["ok"].all()  # trials in flight were dropped, not recorded as cancelled
    saved = kit.load(out)
    assert seen <= set(saved.trials["trial_id"]) == set(result.trials["trial_id"])
    assert saved.meta["interrupted"] is True
    rest = exp.run(8, resume=saved, progress=False)  # one call runs what is missing
    assert rest.complete and list(rest.trials["trial_id"]) == exp.trial_ids()


def test_interrupting_an_executor_run_keeps_the_trials_of_its_parts(tmp_path):
    out = tmp_path / "run"
    exp = Experiment(scenarios=[kit.Scenario(events=2, first_byte_delay=0.1, gap=0)], trials=40, seed=6)
    seen: set[str] = set()

    def interrupt_when_started() -> None:  # the workers journal each trial under parts/ as it finishes
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = [x for f in (out / PARTS).glob("chunk-*.jsonl") for x in f.read_text().splitlines()[:-1]]
            if len(lines) >= 3:
                seen.update(json.loads(x)["trial_id"] for x in lines)
                break
            time.sleep(0.02)
        _thread.interrupt_main()

    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        watcher = threading.Thread(target=interrupt_when_started, daemon=True)
        watcher.start()
        with pytest.warns(UserWarning, match="interrupted: kept"):
            result = exp.run(4, executor=ex, out=out, progress=False)
        watcher.join()
    assert seen and seen <= set(result.trials["trial_id"]) and len(result.trials) < 40
    assert result.meta["streamed"] == 0 and result.trials["ok"].all()
    saved = kit.load(out)
    assert saved.equals(result) and not (out / PARTS).exists()


def test_a_kept_pool_exits_when_idle(monkeypatch):
    from kit.experiment import _driver

    monkeypatch.setattr(_driver, "POOL_IDLE_S", 1.0)
    exp = Experiment(scenarios=[kit.Scenario(events=2, gap=0)], trials=2, seed=8)
    assert exp.run(workers=1, progress=False).complete
    pool = _driver._POOL
    assert pool is not None and pool.healthy  # kept for the next run
    deadline = time.monotonic() + 30
    while _driver._POOL is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _driver._POOL is None and all(w.proc.poll() is not None for w in pool._workers)
    assert exp.run(workers=1, progress=False).complete  # the next run starts a new pool


@pytest.mark.skipif(sys.platform == "win32", reason="kills a worker with SIGKILL")
def test_a_dead_worker_loses_only_its_trials_in_flight():
    from kit.experiment import _driver

    exp = Experiment(scenarios=[kit.Scenario(events=2, first_byte_delay=0.05, gap=0)], trials=60, seed=5)
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pool = _driver._POOL
            if pool is not None and pool.healthy and pool.on_emit is not None:
                time.sleep(0.3)  # let some trials finish first
                pid = pool.pids[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    threading.Thread(target=kill_one_worker, daemon=True).start()
    result = exp.run(8, progress=False)
    assert killed
    lost = result.meta["lost"]
    assert lost and not result.complete and result.meta["errors"]
    assert set(lost).isdisjoint(result.trials["trial_id"])
    assert set(lost) | set(result.trials["trial_id"]) == set(exp.trial_ids())
    assert result.trials["ok"].all()
    full = exp.run(8, resume=result, progress=False)  # a rerun of just the lost ones
    assert full.complete and list(full.trials["trial_id"]) == exp.trial_ids()
