"""kit.widgets, headless: set controls, await the run, check the outcome line and the charts.

The explorer's runs are tasks on the running event loop (the kernel's, in Jupyter; here
the one ``asyncio.run`` makes), exactly as in a notebook.
"""

from __future__ import annotations

import asyncio

import pytest

import kit
from kit.widgets import Explorer, SweepPanel, describe_outcome


def _rows(jchart) -> list[dict]:
    spec = jchart.spec or {}
    return [r for d in spec.get("datasets", {}).values() for r in d]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_explorer_flips_between_first_chunk_timeout_and_ok():
    async def main():
        ex = Explorer("slow_first_byte", autorun=False)
        try:
            ex.scenario_controls.set(first_byte_delay=0.6)
            ex.policy_controls.set(first_chunk=0.2)
            trace = await ex.wait()
            assert trace.outcome.cause == "timeout.first_chunk"
            assert "first_chunk/timeout.first_chunk" in ex.outcome.value
            assert "after 0.20 s" in ex.outcome.value and "first byte was due at 0.60 s" in ex.outcome.value
            before = _rows(ex.timeline)
            assert any(r.get("cause") == "timeout.first_chunk" for r in before)
            assert not [r for r in before if "count" in r]  # no chunk ticks

            ex.policy_controls.controls["first_chunk"].value = 2.0  # the slider, as a user moves it
            trace = await ex.wait()
            assert trace.ok and "done/ok" in ex.outcome.value
            after = _rows(ex.timeline)
            assert after != before
            assert [r for r in after if "count" in r], "the redrawn timeline has chunk ticks"
            assert max(r["cum_bytes"] for r in _rows(ex.cumulative)) == trace.summary()["bytes"]
            assert ex.runs == 2
            # redraw latency: the run's own duration plus drawing; a bound that only catches a hang
            # (the figure itself is a benchmark: a full-suite run once took 3.5 s, alone it takes ~0.1 s)
            assert ex.last_latency_s - trace.duration < 10
        finally:
            ex.close()

    run(main())


def test_explorer_layout_keeps_every_control_whole():
    ex = Explorer("ok", autorun=False)
    try:
        columns = ex.children[0]
        assert columns.layout.flex_flow == "row wrap"  # narrow notebooks wrap, never squeeze
        assert all(c.layout.flex == "0 0 auto" for c in columns.children)
        assert ex.status.layout.flex == "0 0 auto"  # "run 2, 1.52 s" on one line
        box = ex.policy_controls.controls["retry_before_first_chunk"]
        assert box.indent is False  # its whole label shows
    finally:
        ex.close()


def test_a_superseded_run_is_cancelled():
    async def main():
        ex = Explorer("slow_first_byte", autorun=False)
        try:
            ex.scenario_controls.set(first_byte_delay=3.0)  # run 1: would wait 3 s for the first byte
            await asyncio.sleep(0.3)
            first = ex._task
            ex.policy_controls.set(first_chunk=0.25)  # run 2 supersedes it
            trace = await ex.wait()
            assert first.cancelled()
            assert ex.cancelled >= 1 and ex.runs == 1  # only the latest run drew
            assert trace.outcome.cause == "timeout.first_chunk"
            assert trace.duration < 2.0
        finally:
            ex.close()

    run(main())


def test_network_controls_change_the_proxy_live():
    async def main():
        ex = Explorer("ok", autorun=False)
        try:
            ex.network_controls.set(latency=0.3)
            trace = await ex.wait()
            assert trace.ok and trace.summary()["first_chunk_s"] >= 0.3
            assert ex._proxy is not None
            ex.network_controls.set(latency=0.0)
            trace = await ex.wait()
            assert trace.summary()["first_chunk_s"] < 0.25
        finally:
            ex.close()
        assert ex._server is None and ex._proxy is None

    run(main())


def test_idle_timeout_names_the_stall():
    async def main():
        ex = Explorer("stall_mid_stream", autorun=False)
        try:
            ex.policy_controls.set(idle=0.3, first_chunk=0.0)
            trace = await ex.wait()
            assert trace.outcome.cause == "timeout.idle"
            assert "stream/timeout.idle" in ex.outcome.value and "stalled after 10 events" in ex.outcome.value
        finally:
            ex.close()

    run(main())


def test_scenario_controls_follow_the_preset():
    ex = Explorer("ok", autorun=False)
    try:
        sc = ex.scenario_controls
        sc.controls["preset"].value = "close_mid_stream"
        assert sc.controls["fault"].value == "close (FIN mid-body)" and sc.controls["fault_after"].value == 10
        assert any(isinstance(f, kit.Close) for f in sc.value.faults)
        sc.set(fault="none")
        assert not sc.value.faults
    finally:
        ex.close()


def _settled(trace):
    asyncio.run(trace.attempt.await_server_log())  # the server notes the client went away a moment later
    return trace


def test_describe_outcome_plain_words(server):
    trace = _settled(kit.stream(server.url_for("slow_first_byte"), policy=kit.Policy(first_chunk=0.2)))
    text = describe_outcome(trace)
    assert text.startswith("first_chunk/timeout.first_chunk: timeout.first_chunk after 0.20 s")
    assert "first byte was due at 3.00 s" in text


def test_describe_outcome_reads_when_bytes_were_due_from_the_server_log(server):
    sc = kit.Scenario(events=6, gap=0.01, faults=(kit.Stall(after=3, duration=1.0),), name="pause")
    trace = _settled(kit.stream(server.url_for(sc), policy=kit.Policy(idle=0.2)))
    (closed,) = [e for e in trace.attempt.server_log if e.kind == "client_closed"]
    assert closed.scheduled_ns > closed.t_ns  # the write the server still meant to make
    assert "stalled after" in describe_outcome(trace) and "due 1.0" in describe_outcome(trace)
    # the log, not the scenario: a different scenario passed in changes nothing
    assert describe_outcome(trace, kit.Scenario.preset("ok")) == describe_outcome(trace)
    forever = _settled(
        kit.stream(server.url_for(sc.replace(faults=(kit.Stall(after=3),), name="hang")), policy=kit.Policy(idle=0.2))
    )
    assert "with no end" in describe_outcome(forever)
    slow = _settled(kit.stream(server.url_for("slow_headers"), policy=kit.Policy(headers=0.2)))
    assert describe_outcome(slow).endswith(
        f"headers were due at {kit.Scenario.preset('slow_headers').headers_delay:.2f} s (0 chunks, 0 bytes received)"
    )


@pytest.mark.slow
def test_sweep_panel_runs_shows_heatmap_and_cell_timelines():
    async def main():
        panel = SweepPanel(
            "slow_first_byte",
            x="policy.first_chunk",
            y="scenario.first_byte_delay",
            x_values="0.2, 1",
            y_values="0.4",
            trials=2,
        )
        try:
            panel.run()
            result = await panel.wait()
            assert result is not None and len(result.trials) == 4
            assert panel.progress.value == 4
            cells = {(r["x"], r["y"]): r for r in _rows(panel.heatmap) if "shares" in r}

            def shown(first_chunk, cause):  # trials over the fidelity budget (a busy machine) are left out
                kept = result.trials[result.trials["policy.first_chunk"] == first_chunk]["within_budget"]
                return cause if kept.any() else "over budget"

            assert cells[("0.2", "0.4")]["outcome"] == shown(0.2, "timeout.first_chunk")
            assert cells[("1", "0.4")]["outcome"] == shown(1.0, "ok")
            assert sum(c["flagged"] for c in cells.values()) == (~result.trials["within_budget"]).sum()
            # a click on a heatmap cell, as the browser reports it
            panel.heatmap._vl_selections = {
                "cell": {"value": {"vlPoint": {"or": [{"x": "1", "y": "0.4"}]}}, "store": []}
            }
            rows = _rows(panel.detail)
            assert {r.get("cause") for r in rows if "cause" in r} == {"ok"}
            assert "policy.first_chunk=1" in repr(panel.detail.spec)
        finally:
            panel.close()

    run(main())


@pytest.mark.slow
def test_sweep_panel_stop_keeps_finished_trials():
    async def main():
        panel = SweepPanel(
            x="scenario.first_byte_delay", y="policy.first_chunk", x_values="0, 2", y_values="5", trials=3
        )
        try:
            panel.run()
            await asyncio.sleep(1.0)  # the 0 s cells finish, the 2 s cells are still waiting
            panel.stop()
            await panel.wait()
            assert "stopped" in panel.message.value
            assert not panel.run_button.disabled and panel.stop_button.disabled
        finally:
            panel.close()

    run(main())


def test_every_what_to_try_step_of_the_explorer_notebook_does_what_it_says():
    """Notebook 01's "What to try" list, step by step, on short delays."""

    async def main():
        ex = Explorer("slow_first_byte", autorun=False)
        try:
            sc, net, pol = ex.scenario_controls, ex.network_controls, ex.policy_controls
            sc.set(first_byte_delay=0.4)
            pol.set(first_chunk=0.2)  # 1. below the delay: no chunks; above: done
            assert (await ex.wait()).outcome.cause == "timeout.first_chunk"
            pol.set(first_chunk=2.0)
            base = await ex.wait()
            assert base.ok
            pol.set(first_chunk=0.0, idle=0.2)  # 2. no first-chunk limit: idle covers the wait
            assert (await ex.wait()).outcome.cause == "timeout.idle"
            pol.set(first_chunk=2.0, idle=5.0)
            net.set(latency=0.3)  # 3. latency shifts the whole stream right
            shifted = await ex.wait()
            assert shifted.summary()["first_chunk_s"] >= base.summary()["first_chunk_s"] + 0.25
            net.set(latency=0.0)
            sc.controls["preset"].value = "stall_mid_stream"  # 4. a stall longer than the idle limit
            pol.set(idle=0.3)
            t = await ex.wait()
            assert (t.outcome.phase, t.outcome.cause) == ("stream", "timeout.idle") and t.summary()["chunks"] > 0
            for preset, cause in (
                ("close_mid_stream", "closed"),
                ("headers_then_close", "closed"),
                ("empty_200", "ended"),
            ):
                sc.controls["preset"].value = preset  # 5. cut by the server, or ended cleanly with nothing
                assert (await ex.wait()).outcome.cause == cause, preset
            sc.controls["preset"].value = "slow_first_byte"  # 6. retries before the first chunk
            sc.set(first_byte_delay=0.4)
            pol.set(first_chunk=0.1, max_retries=2)
            pol.controls["retry_before_first_chunk"].value = False
            assert len((await ex.wait()).attempts) == 1
            pol.controls["retry_before_first_chunk"].value = True
            t = await ex.wait()
            assert len(t.attempts) == 3 and t.outcome.cause == "timeout.first_chunk"
            assert len({r["row"] for r in _rows(ex.timeline) if "row" in r}) == 3  # a row per attempt
        finally:
            ex.close()

    run(main())


def test_a_script_that_builds_an_explorer_exits_cleanly():
    """Widgets closed by ipywidgets' __del__ at interpreter exit do not raise (no kernel, no close())."""
    import subprocess
    import sys

    code = "import kit.widgets\nex = kit.widgets.Explorer('ok', autorun=False)\nex.server\nprint('built')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "built" in done.stdout
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
